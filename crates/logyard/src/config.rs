//! Configuration: defaults <- TOML file (`--config`) <- `LOGYARD_<SECTION>_<KEY>` environment
//! variables <- command-line flags. Validated once at start; an error names the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use logyard_auth::TokenConfig;
use serde::{Deserialize, Deserializer};

/// Every setting; `logyard.example.toml` shows each with its default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub ingest: IngestConfig,
    pub query: QueryConfig,
    pub tail: TailConfig,
    pub pgwire: PgwireConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub uploads: UploadsConfig,
    pub archive: ArchiveConfig,
    pub compaction: CompactionConfig,
    pub tables: TablesConfig,
    pub retention: RetentionConfig,
    pub orders: OrdersConfig,
    pub report: ReportConfig,
    pub elasticsearch: ElasticsearchConfig,
    pub otlp: OtlpConfig,
    pub loki: LokiConfig,
    pub kinesis: KinesisConfig,
    pub alerts: AlertsConfig,
    pub masking: MaskingConfig,
    pub forget: ForgetConfig,
}

/// Masking of personal data at ingest (`[[masking.rules]]`; docs/privacy.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskingConfig {
    pub rules: Vec<logyard_core::mask::MaskRule>,
    /// The secret of the `hash` action: a file of at least 32 bytes (trailing whitespace is
    /// not part of it). Keep it: other keys hash the same value differently.
    pub key_file: Option<PathBuf>,
    /// Streams (names or globs) whose archived request bodies (`archive.raw_streams`) stay as
    /// they were sent, unmasked; by default a masked stream's archive holds its events as
    /// masked NDJSON.
    pub keep_originals: Vec<String>,
}

impl MaskingConfig {
    /// The rules, checked, with the key read.
    pub fn build(&self) -> anyhow::Result<logyard_core::mask::Masking> {
        let key = match &self.key_file {
            None => None,
            Some(path) => {
                let bytes = std::fs::read(path).with_context(|| {
                    format!("invalid configuration at `masking.key_file`: reading {}", path.display())
                })?;
                let key = bytes.trim_ascii_end().to_vec();
                if key.len() < 32 {
                    bail!(
                        "invalid configuration at `masking.key_file`: {} holds {} bytes; use at least 32 (e.g. `openssl rand -hex 32`)",
                        path.display(),
                        key.len()
                    );
                }
                Some(key)
            }
        };
        logyard_core::mask::Masking::new(self.rules.clone(), key)
            .map_err(|e| anyhow::anyhow!("invalid configuration at `masking.rules[{}]`: {}", e.rule, e.message))
    }
}

/// Forgetting a customer (`logyard forget`, `POST /api/v1/forget`; docs/privacy.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForgetConfig {
    /// Columns holding a customer's id.
    pub subject_columns: Vec<String>,
    /// Columns whose values in a customer's rows (their sessions, their addresses) mark their
    /// other rows too.
    pub linked_columns: Vec<String>,
    /// How long the files and bundles a deletion replaced stay for queries still reading
    /// them before they are deleted.
    #[serde(deserialize_with = "duration")]
    pub vacuum_after: Duration,
    /// How often unfinished jobs are looked at (resumed, purged when due).
    #[serde(deserialize_with = "duration")]
    pub check_interval: Duration,
}

impl Default for ForgetConfig {
    fn default() -> Self {
        Self {
            subject_columns: vec!["customer_id".into()],
            linked_columns: vec!["session_id".into(), "email".into(), "customer_email".into(), "phone".into()],
            vacuum_after: Duration::from_secs(3600),
            check_interval: Duration::from_secs(30),
        }
    }
}

/// Alert rules (`[[alerts.rules]]`), the receivers they notify (`[[alerts.receivers]]`), and
/// how the evaluator shares the rules among replicas (docs/alerts.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    pub rules: Vec<logyard_alerts::Rule>,
    pub receivers: Vec<logyard_alerts::receivers::ReceiverConfig>,
    /// A rule's lease not renewed for this long moves to another replica.
    #[serde(deserialize_with = "duration")]
    pub lease: Duration,
    /// How often the rules are looked at.
    #[serde(deserialize_with = "duration")]
    pub tick: Duration,
    /// How long after a window's end it is evaluated; 0: the ingest flush interval and 5 s.
    #[serde(deserialize_with = "duration")]
    pub settle: Duration,
    /// The console's address for links in notifications (default: `uploads.public_url`).
    pub console_url: Option<String>,
    /// This process's name in the leases; empty: `<hostname>-<pid>` (a pod name).
    pub worker_id: String,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            receivers: Vec::new(),
            lease: Duration::from_secs(30),
            tick: Duration::from_secs(5),
            settle: Duration::ZERO,
            console_url: None,
            worker_id: String::new(),
        }
    }
}

/// Kinesis Data Streams consumers: the streams `serve` reads (`[[kinesis.streams]]`), and
/// the settings it and `logyard kinesis` share. Credentials, region and endpoint come from
/// the AWS SDK chain (`AWS_REGION`, `AWS_ENDPOINT_URL_KINESIS`, ...) unless set here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KinesisConfig {
    pub streams: Vec<KinesisStreamConfig>,
    /// This process's name in the shard leases; empty: `<hostname>-<pid>` (a pod name).
    pub worker_id: String,
    /// A lease not renewed for this long moves to another consumer.
    #[serde(deserialize_with = "duration")]
    pub lease: Duration,
    /// A shard's records are committed when this many bytes of events are held...
    pub flush_bytes: usize,
    /// ... or when the oldest was read this long ago.
    #[serde(deserialize_with = "duration")]
    pub flush_interval: Duration,
    /// Wait between reads of a shard that had nothing new.
    #[serde(deserialize_with = "duration")]
    pub idle_wait: Duration,
    /// Records per GetRecords call (1 to 10000).
    pub records_per_call: i32,
    pub region: Option<String>,
    pub endpoint: Option<String>,
}

impl Default for KinesisConfig {
    fn default() -> Self {
        Self {
            streams: Vec::new(),
            worker_id: String::new(),
            lease: Duration::from_secs(30),
            flush_bytes: 32 << 20,
            flush_interval: Duration::from_secs(10),
            idle_wait: Duration::from_secs(1),
            records_per_call: 10_000,
            region: None,
            endpoint: None,
        }
    }
}

/// One Kinesis stream `serve` reads into a logyard stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisStreamConfig {
    /// The Kinesis stream's name or ARN.
    pub stream_name: String,
    pub logyard_stream: String,
    /// Where shards without a checkpoint start: `trim_horizon` (the oldest record kept) or
    /// `latest`.
    #[serde(default)]
    pub start: logyard_ingest::kinesis::StartPosition,
}

/// Loki's push API (`POST /loki/api/v1/push`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LokiConfig {
    /// The label whose value names the stream; empty: none. The `X-Logyard-Stream` header
    /// overrides it.
    pub stream_label: String,
    /// The stream of entries nothing else places.
    pub default_stream: String,
}

impl Default for LokiConfig {
    fn default() -> Self {
        Self { stream_label: "app".into(), default_stream: "loki".into() }
    }
}

/// OTLP logs: `POST /v1/logs`, and OTLP/gRPC when `grpc_listen` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// The address of the OTLP/gRPC logs service (e.g. `0.0.0.0:4317`); empty: none.
    pub grpc_listen: Option<SocketAddr>,
    /// The attribute (of a record, else its resource) whose value names the stream; empty:
    /// none. Requests may name it with the `X-Logyard-Stream` header instead.
    pub stream_attribute: String,
    /// The stream of records nothing else places.
    pub default_stream: String,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self { grpc_listen: None, stream_attribute: "service.name".into(), default_stream: "otel".into() }
    }
}

/// The Elasticsearch bulk API (`POST /_bulk`): how index names become streams.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchConfig {
    /// Cut from the start of index names, e.g. `logs-`.
    pub strip_prefix: String,
    /// Cut a date suffix such as `-2026.11.25` (Logstash-style daily indexes).
    pub strip_date_suffix: bool,
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        Self { strip_prefix: String::new(), strip_date_suffix: true }
    }
}

/// The daily report: which stream holds the shop's HTTP traffic and how to read it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    pub stream: String,
    /// Columns of the stream.
    pub route_column: String,
    pub status_column: String,
    pub latency_column: String,
    pub session_column: String,
    pub order_column: String,
    pub message_column: String,
    /// The checkout funnel, in order: each step counts the sessions that called one of
    /// its routes (with a status below 400 when `ok_only`).
    pub funnel: Vec<FunnelStepConfig>,
    /// Routes where a 5xx puts an order at risk.
    pub checkout_routes: Vec<String>,
    /// Where reports go (a storage URL); default: `reports/` under `storage.url`.
    pub out: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunnelStepConfig {
    pub step: String,
    pub routes: Vec<String>,
    #[serde(default)]
    pub ok_only: bool,
}

impl Default for ReportConfig {
    fn default() -> Self {
        let step = |step: &str, routes: &[&str], ok_only| FunnelStepConfig {
            step: step.into(),
            routes: routes.iter().map(|r| (*r).to_owned()).collect(),
            ok_only,
        };
        Self {
            stream: "storefront".into(),
            route_column: "route".into(),
            status_column: "status".into(),
            latency_column: "latency_ms".into(),
            session_column: "session_id".into(),
            order_column: "order_id".into(),
            message_column: "message".into(),
            funnel: vec![
                step("view", &["/products/{id}"], false),
                step("cart", &["/cart", "/api/cart/items"], false),
                step("checkout", &["/checkout", "/api/checkout"], false),
                step("paid", &["/api/payments"], true),
            ],
            checkout_routes: vec!["/checkout".into(), "/api/checkout".into(), "/api/payments".into()],
            out: None,
        }
    }
}

/// The shop's orders database (PostgreSQL / RDS), queried as `pg.<table>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersConfig {
    /// Empty: no orders database (unless a secret names the host).
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    /// The password: one of a file (re-read for each new connection), an environment
    /// variable, a Secrets Manager secret in the RDS format (re-read when the database
    /// refuses it), or RDS IAM authentication tokens.
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub secret_id: Option<String>,
    pub iam_auth: bool,
    /// AWS region for secrets and IAM tokens (default: the SDK's).
    pub region: Option<String>,
    /// `verify-full` (default) or `disable`.
    pub sslmode: String,
    /// CA bundle (for RDS: global-bundle.pem).
    pub ca_file: Option<PathBuf>,
    /// Also trust the public roots (Amazon Trust Services), for RDS Proxy.
    pub trust_public_roots: bool,
    #[serde(deserialize_with = "duration")]
    pub statement_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    pub pool_size: usize,
    /// The SQL schema the tables appear in.
    pub schema: String,
    /// Tables shown in SQL: `table` or `schema.table`.
    pub tables: Vec<String>,
    /// The orders table (one of `tables`, by its SQL name) and what its columns are called.
    pub orders_table: String,
    pub columns: OrderColumns,
    /// The status value of an order not paid yet.
    pub pending_status: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrderColumns {
    pub id: String,
    pub status: String,
    pub amount: String,
    pub currency: String,
    pub created_at: String,
    pub updated_at: String,
    pub customer_id: String,
}

impl Default for OrderColumns {
    fn default() -> Self {
        Self {
            id: "id".into(),
            status: "status".into(),
            amount: "amount".into(),
            currency: "currency".into(),
            created_at: "created_at".into(),
            updated_at: "updated_at".into(),
            customer_id: "customer_id".into(),
        }
    }
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 5432,
            database: "postgres".into(),
            user: "logyard".into(),
            password_file: None,
            password_env: None,
            secret_id: None,
            iam_auth: false,
            region: None,
            sslmode: "verify-full".into(),
            ca_file: None,
            trust_public_roots: false,
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            pool_size: 4,
            schema: "pg".into(),
            tables: vec!["orders".into()],
            orders_table: "orders".into(),
            columns: OrderColumns::default(),
            pending_status: "pending".into(),
        }
    }
}

impl OrdersConfig {
    pub fn enabled(&self) -> bool {
        !self.host.is_empty() || self.secret_id.is_some()
    }

    /// The connection settings (the password of `password_env` read from `env`); errors
    /// name the key.
    pub fn settings(&self, env: &BTreeMap<String, String>) -> anyhow::Result<logyard_pg::PgSettings> {
        use logyard_pg::{Password, PasswordSource};
        let region = || self.region.clone().unwrap_or_default();
        let from_env = match &self.password_env {
            Some(var) => match env.get(var) {
                Some(password) => Some(PasswordSource::Given(Password::new(password.as_str()))),
                None => bail!("invalid configuration at `orders.password_env`: the variable {var} is not set"),
            },
            None => None,
        };
        let sources = [
            self.password_file.clone().map(PasswordSource::File),
            from_env,
            self.secret_id.clone().map(PasswordSource::Secret),
            self.iam_auth.then(|| PasswordSource::IamToken { region: region() }),
        ];
        let mut given = sources.into_iter().flatten();
        let password = given.next().unwrap_or(PasswordSource::None);
        if given.next().is_some() {
            bail!("invalid configuration at `orders`: set one of password_file, password_env, secret_id and iam_auth");
        }
        let ssl_mode =
            self.sslmode.parse().map_err(|e| anyhow::anyhow!("invalid configuration at `orders.sslmode`: {e}"))?;
        Ok(logyard_pg::PgSettings {
            password,
            ssl_mode,
            ca_file: self.ca_file.clone(),
            trust_public_roots: self.trust_public_roots,
            statement_timeout: self.statement_timeout,
            connect_timeout: self.connect_timeout,
            pool_size: self.pool_size,
            ..logyard_pg::PgSettings::new(&self.host, self.port, &self.database, &self.user)
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// How often the server merges small files (0s: never; `logyard compact` still does).
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    /// Size of the files compaction writes.
    pub target_file_bytes: u64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self { interval: Duration::from_secs(3600), target_file_bytes: 128 << 20 }
    }
}

/// The Parquet files of the stream tables: which columns get bloom filters, so that a query
/// for one order, trace or customer id skips the row groups that cannot hold it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TablesConfig {
    /// Columns given a bloom filter in every stream that has them, e.g. `["order_id"]`. A list,
    /// or one string with commas (`LOGYARD_TABLES_BLOOM_FILTER_COLUMNS`).
    #[serde(deserialize_with = "list_or_commas")]
    pub bloom_filter_columns: Vec<String>,
    /// Columns given one in a stream, beside `bloom_filter_columns`, e.g.
    /// `{ alb = ["client_ip"] }`.
    pub stream_bloom_filter_columns: BTreeMap<String, Vec<String>>,
    /// Text columns that look like identifiers (short values without spaces, many distinct in
    /// a sample of each commit) get a bloom filter too.
    pub detect_identifiers: bool,
    /// The false-positive rate each filter is sized for (above 0, below 1).
    pub bloom_filter_fpp: f64,
    /// Rows per Parquet row group (at least 1).
    pub row_group_rows: usize,
    /// Files a flush is encoded into at once, one per core, each at least half a row group
    /// (0: as many as the cores this process may run on).
    pub encode_threads: usize,
}

impl Default for TablesConfig {
    fn default() -> Self {
        Self {
            bloom_filter_columns: Vec::new(),
            stream_bloom_filter_columns: BTreeMap::new(),
            detect_identifiers: true,
            bloom_filter_fpp: 0.05,
            row_group_rows: logyard_storage::tables::ROW_GROUP_ROWS,
            encode_threads: 0,
        }
    }
}

impl TablesConfig {
    pub fn bloom_filters(&self) -> logyard_storage::tables::BloomFilters {
        logyard_storage::tables::BloomFilters {
            columns: self.bloom_filter_columns.clone(),
            streams: self.stream_bloom_filter_columns.clone().into_iter().collect(),
            detect: self.detect_identifiers,
            fpp: self.bloom_filter_fpp,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days of data kept for every stream not named in `streams` (0: for ever).
    pub days: u32,
    /// Days kept per stream, e.g. `{ alb = 90, app = 30 }` (0: for ever). The audit stream
    /// is kept for ever unless named here.
    pub streams: BTreeMap<String, u32>,
    /// How often the server applies retention (0s: never; `logyard retention run` still does).
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    /// Files a deletion or compaction leaves behind are deleted once this old, so that
    /// queries already running can finish.
    #[serde(deserialize_with = "duration")]
    pub vacuum_keep: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            days: 0,
            streams: BTreeMap::new(),
            interval: Duration::from_secs(6 * 3600),
            vacuum_keep: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// Largest upload.
    pub max_bytes: u64,
    /// How long an upload URL stays valid (at most 15 minutes).
    #[serde(deserialize_with = "duration")]
    pub url_expiry: Duration,
    /// Bytes of an uploaded file read per commit.
    pub chunk_bytes: usize,
    /// The server's URL as clients reach it, for upload URLs on local storage (default:
    /// `http://` and the listen address).
    pub public_url: Option<String>,
    /// How often uploads that were never completed, or expired, are looked for.
    #[serde(deserialize_with = "duration")]
    pub sweep_interval: Duration,
    /// Files larger than this are sent in parts (a multipart plan).
    pub multipart_threshold: u64,
    /// Smallest part of a multipart plan (S3 needs at least 5 MiB).
    pub part_bytes: u64,
    /// A multipart upload not completed by then is aborted (its parts deleted).
    #[serde(deserialize_with = "duration")]
    pub multipart_expiry: Duration,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        Self {
            max_bytes: 50 << 30,
            url_expiry: Duration::from_secs(15 * 60),
            chunk_bytes: 32 << 20,
            public_url: None,
            sweep_interval: Duration::from_secs(60),
            multipart_threshold: 100 << 20,
            part_bytes: 16 << 20,
            multipart_expiry: Duration::from_secs(86_400),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Bytes of originals gathered into one bundle.
    pub bundle_bytes: u64,
    /// A smaller bundle is written once its oldest file waited this long.
    #[serde(deserialize_with = "duration")]
    pub bundle_max_age: Duration,
    /// zstd level of the bundles.
    pub level: i32,
    /// Decompressed bytes per zstd frame: small files share a frame, so the ratio stays near a
    /// single stream's while one member is still one ranged read (0: a frame per member).
    pub frame_bytes: u64,
    /// Streams (names or globs) whose ingest request bodies are archived byte-exact, beside
    /// the rows they became.
    pub raw_streams: Vec<String>,
    /// A smaller bundle of request bodies is written once its oldest body waited this long
    /// (bodies wait in the write-ahead log, which keeps its segments until then).
    #[serde(deserialize_with = "duration")]
    pub raw_max_age: Duration,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            bundle_bytes: 64 << 20,
            bundle_max_age: Duration::from_secs(600),
            level: 3,
            frame_bytes: 1 << 20,
            raw_streams: Vec::new(),
            raw_max_age: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Requests per second per token (0: no limit); over it, 429 with Retry-After.
    pub requests_per_second: u32,
    /// Request body bytes per second per token (0: no limit).
    pub bytes_per_second: u64,
    /// Requests served at once; over it, 503 with Retry-After.
    pub max_concurrent_requests: usize,
    /// Queries running at once; over it, 503 with Retry-After.
    pub max_concurrent_queries: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self { requests_per_second: 0, bytes_per_second: 0, max_concurrent_requests: 1024, max_concurrent_queries: 8 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Time allowed after SIGTERM to finish requests and commit the write-ahead log.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long `/readyz` answers 503 while requests are still taken, so that a
    /// load balancer that polls it stops sending new ones before the listener closes. In
    /// Kubernetes the pod's `preStop` wait does this for the ALB: 0s.
    #[serde(deserialize_with = "duration")]
    pub drain_delay: Duration,
    /// A job that one replica at a time runs (compaction, retention, forget jobs, uploads
    /// sweeping) moves to another replica when its holder has not renewed the lease for this
    /// long (renewed every third of it).
    #[serde(deserialize_with = "duration")]
    pub job_lease: Duration,
    /// Largest request body as sent.
    pub max_body_bytes: usize,
    /// Largest request body after decompression.
    pub max_decoded_bytes: usize,
    /// Serve HTTPS with this certificate chain (PEM) and the key below; both are reloaded
    /// when they change. Without them, plain HTTP (behind the ALB, which terminates TLS).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// How often the certificate files are checked for changes.
    #[serde(deserialize_with = "duration")]
    pub tls_reload_interval: Duration,
    /// Proxies (CIDRs, e.g. the ALB's subnets) whose X-Forwarded-For is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("static address"),
            shutdown_grace: Duration::from_secs(25),
            drain_delay: Duration::ZERO,
            job_lease: Duration::from_secs(60),
            max_body_bytes: 16 << 20,
            max_decoded_bytes: 128 << 20,
            tls_cert_file: None,
            tls_key_file: None,
            tls_reload_interval: Duration::from_secs(10),
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// A path, `file://` URL, `s3://bucket/prefix`, or `memory://`.
    pub url: String,
    /// Write-ahead log directory (local disk). Default: `<url>/wal` for a local storage
    /// directory, `./logyard-wal` otherwise.
    pub wal_dir: Option<PathBuf>,
    /// S3 endpoint for S3-compatible servers (default: `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`).
    pub s3_endpoint: Option<String>,
    /// AWS region (default: the SDK's, from `AWS_REGION`, the profile or IMDS).
    pub s3_region: Option<String>,
    /// Path-style S3 requests (default: on with a custom endpoint).
    pub s3_force_path_style: Option<bool>,
    /// A role to assume for the storage (a bucket in another account), from the credentials
    /// of the default chain (Pod Identity, IRSA, ...); its credentials are refreshed 5 minutes
    /// before they expire. Other AWS calls (Kinesis, Secrets Manager, RDS) keep the pod's.
    pub s3_role_arn: Option<String>,
    /// The external id the role's trust policy asks for (`sts:ExternalId`).
    pub s3_role_external_id: Option<String>,
    /// How long each set of the role's credentials lasts (900s to the role's maximum).
    #[serde(deserialize_with = "duration")]
    pub s3_role_session: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: "./logyard-data".into(),
            wal_dir: None,
            s3_endpoint: None,
            s3_region: None,
            s3_force_path_style: None,
            s3_role_arn: None,
            s3_role_external_id: None,
            s3_role_session: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Commit a stream once this many bytes of events are buffered.
    pub flush_bytes: usize,
    /// ... or once its oldest buffered event is this old.
    #[serde(deserialize_with = "duration")]
    pub flush_interval: Duration,
    /// Size of a write-ahead log segment.
    pub wal_segment_bytes: u64,
    /// Most columns a table gets; further fields are kept in `_conflicts`.
    pub max_columns: usize,
    /// Streams committed at once.
    pub flush_concurrency: usize,
    /// Bytes of events kept in memory until committed; a request that would pass it waits
    /// for a commit to free room.
    pub memory_budget_bytes: usize,
    /// Write-ahead log bytes allowed before ingest answers 503 (0: half the space its
    /// filesystem offers it).
    pub wal_budget_bytes: u64,
    /// When a request that does not say (`?ack=`) is answered, on every ingest path: `wal`
    /// (once fsynced in the write-ahead log) or `commit` (once committed to the table: where
    /// the write-ahead log's disk may vanish with the node, as on Fargate).
    pub ack: AckConfig,
}

/// `ingest.ack`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckConfig {
    #[default]
    Wal,
    Commit,
}

impl From<AckConfig> for logyard_ingest::Ack {
    fn from(a: AckConfig) -> Self {
        match a {
            AckConfig::Wal => logyard_ingest::Ack::Wal,
            AckConfig::Commit => logyard_ingest::Ack::Commit,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            flush_bytes: 64 << 20,
            flush_interval: Duration::from_secs(10),
            wal_segment_bytes: 64 << 20,
            max_columns: 1000,
            flush_concurrency: 4,
            memory_budget_bytes: 256 << 20,
            wal_budget_bytes: 0,
            ack: AckConfig::Wal,
        }
    }
}

/// SQL over the PostgreSQL wire protocol (psql, Grafana, drivers).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PgwireConfig {
    /// Address to listen on, e.g. "127.0.0.1:5433"; none: off.
    pub listen: Option<SocketAddr>,
    /// Refuse connections without TLS.
    pub require_tls: bool,
    /// The listener's own certificate and key (PEM, reloaded when they change); without
    /// them, server.tls_cert_file and tls_key_file. An HTTP port behind a load balancer
    /// often has no TLS of its own, while PostgreSQL clients connect directly.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

/// The live tail (`GET /api/v1/tail`, the console's Live button).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TailConfig {
    /// Events per second one tail sends; past it, it samples and says how many it dropped.
    pub max_events_per_second: u32,
    /// Time between heartbeats of an idle tail (below the load balancer's idle timeout).
    #[serde(deserialize_with = "duration")]
    pub heartbeat: Duration,
    /// The other replicas, whose events a tail merges: `host:port` names resolved to every
    /// address (the chart's headless service), or `https://host:port`. A list, or one string
    /// with commas (`LOGYARD_TAIL_PEERS`, `--peers`).
    #[serde(deserialize_with = "list_or_commas")]
    pub peers: Vec<String>,
}

impl Default for TailConfig {
    fn default() -> Self {
        Self { max_events_per_second: 200, heartbeat: Duration::from_secs(15), peers: Vec::new() }
    }
}

/// A list of strings, written as a list or as one string with commas.
fn list_or_commas<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        One(String),
    }
    let list = match Either::deserialize(d)? {
        Either::List(list) => list,
        Either::One(text) => text.split(',').map(str::to_owned).collect(),
    };
    Ok(list.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// A query running longer is stopped.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// A query needing more memory is stopped.
    pub memory_limit: usize,
    /// Rows the `json` format returns at most.
    pub max_json_rows: usize,
    /// Threads per query (0: one per core).
    pub threads: usize,
    /// The fields searches look for words and phrases in, for every stream not named in
    /// `stream_text_fields`.
    pub text_fields: Vec<String>,
    /// Text fields per stream, e.g. `{ alb = ["request", "user_agent"] }`.
    pub stream_text_fields: BTreeMap<String, Vec<String>>,
    /// DataFusion settings every query runs with, by their names in DataFusion's
    /// configuration (with or without `datafusion.`), e.g.
    /// `{ "execution.parquet.pushdown_filters" = false }`.
    #[serde(deserialize_with = "settings")]
    pub datafusion: BTreeMap<String, String>,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            memory_limit: 1 << 30,
            max_json_rows: 10_000,
            threads: 0,
            text_fields: vec!["message".into()],
            stream_text_fields: BTreeMap::new(),
            datafusion: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Bearer tokens, by the SHA-256 of their secret (`logyard token create` makes one).
    pub tokens: Vec<TokenConfig>,
    /// A TOML file of more `[[auth.tokens]]` entries (also `LOGYARD_TOKENS_FILE`), reloaded
    /// when it changes.
    pub tokens_file: Option<PathBuf>,
    /// Require a token for `/metrics` too.
    pub protect_metrics: bool,
}

/// A tokens file: `[[auth.tokens]]` entries and nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    auth: TokensFileAuth,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFileAuth {
    #[serde(default)]
    tokens: Vec<TokenConfig>,
}

/// Reads the tokens of a tokens file.
pub fn read_tokens_file(path: &std::path::Path) -> anyhow::Result<Vec<TokenConfig>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading tokens file {}", path.display()))?;
    let file: TokensFile = toml::from_str(&text).with_context(|| format!("tokens file {}", path.display()))?;
    Ok(file.auth.tokens)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `auto` (JSON unless stderr is a terminal), `json` or `text`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `logyard=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Auto, level: "info,buoyant_kernel=warn,deltalake_core=warn".into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s)
        .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a duration like \"10s\" or \"2m\": {e}")))
}

const SECTIONS: [&str; 23] = [
    "server",
    "storage",
    "ingest",
    "query",
    "tail",
    "pgwire",
    "log",
    "auth",
    "limits",
    "uploads",
    "archive",
    "compaction",
    "tables",
    "retention",
    "orders",
    "report",
    "elasticsearch",
    "otlp",
    "loki",
    "kinesis",
    "alerts",
    "masking",
    "forget",
];

impl Config {
    /// Builds the configuration from a file (optional), environment variables (given as a
    /// map, so tests need not touch the process environment) and flag overrides
    /// (`section.key` -> value).
    pub fn load(
        file: Option<&std::path::Path>,
        env: &BTreeMap<String, String>,
        flags: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let mut table = match file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("config file {} is not valid TOML", path.display()))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            if name == "LOGYARD_TOKENS_FILE" {
                set(&mut table, "auth", "tokens_file", value).context("environment variable LOGYARD_TOKENS_FILE")?;
                continue;
            }
            let Some(rest) = name.strip_prefix("LOGYARD_") else { continue };
            let lower = rest.to_ascii_lowercase();
            let Some((section, key)) = lower.split_once('_') else { continue };
            if !SECTIONS.contains(&section) {
                continue;
            }
            set(&mut table, section, key, value).with_context(|| format!("environment variable {name}"))?;
        }
        for (path, value) in flags {
            let (section, key) = path.split_once('.').expect("flag paths are section.key");
            set(&mut table, section, key, value)?;
        }
        let de = toml::Value::Table(table);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("invalid configuration at `{path}`: {}", e.inner())
        })?;
        config.validate(env)?;
        Ok(config)
    }

    fn validate(&self, env: &BTreeMap<String, String>) -> anyhow::Result<()> {
        if self.ingest.flush_bytes == 0 {
            bail!("invalid configuration at `ingest.flush_bytes`: must be above 0");
        }
        if self.ingest.flush_interval.is_zero() {
            bail!("invalid configuration at `ingest.flush_interval`: must be above 0");
        }
        if self.server.max_body_bytes == 0 || self.server.max_decoded_bytes < self.server.max_body_bytes {
            bail!("invalid configuration at `server.max_decoded_bytes`: must be at least `server.max_body_bytes`");
        }
        if self.server.tls_cert_file.is_some() != self.server.tls_key_file.is_some() {
            bail!(
                "invalid configuration at `server.tls_cert_file`: set both tls_cert_file and tls_key_file, or neither"
            );
        }
        if !(self.tables.bloom_filter_fpp > 0.0 && self.tables.bloom_filter_fpp < 1.0) {
            bail!("invalid configuration at `tables.bloom_filter_fpp`: must be above 0 and below 1");
        }
        if self.tables.row_group_rows == 0 {
            bail!("invalid configuration at `tables.row_group_rows`: must be above 0");
        }
        if self.query.max_json_rows == 0 {
            bail!("invalid configuration at `query.max_json_rows`: must be above 0");
        }
        let datafusion: Vec<(String, String)> = self.query.datafusion.clone().into_iter().collect();
        logyard_query::check_datafusion_settings(&datafusion)
            .map_err(|e| anyhow::anyhow!("invalid configuration at `query.datafusion`: {e}"))?;
        logyard_storage::Location::parse(&self.storage.url).context("invalid configuration at `storage.url`")?;
        if let Some(p) = self.archive.raw_streams.iter().find(|p| !logyard_auth::is_stream_pattern(p)) {
            bail!("invalid configuration at `archive.raw_streams`: {p:?} is not a stream name or glob");
        }
        if let Some(p) = self.masking.keep_originals.iter().find(|p| !logyard_auth::is_stream_pattern(p)) {
            bail!("invalid configuration at `masking.keep_originals`: {p:?} is not a stream name or glob");
        }
        self.masking.build()?;
        if self.orders.enabled() {
            self.orders.settings(env)?;
            if !is_sql_name(&self.orders.schema) || self.orders.schema == "public" {
                bail!(
                    "invalid configuration at `orders.schema`: {:?} is not a schema name other than public",
                    self.orders.schema
                );
            }
        }
        if !logyard_core::StreamName::is_valid(&self.otlp.default_stream) {
            bail!(
                "invalid configuration at `otlp.default_stream`: {:?} is not a stream name",
                self.otlp.default_stream
            );
        }
        for (i, k) in self.kinesis.streams.iter().enumerate() {
            if k.stream_name.is_empty() {
                bail!("invalid configuration at `kinesis.streams[{i}].stream_name`: empty");
            }
            if !logyard_core::StreamName::is_valid(&k.logyard_stream) {
                bail!(
                    "invalid configuration at `kinesis.streams[{i}].logyard_stream`: {:?} is not a stream name",
                    k.logyard_stream
                );
            }
        }
        if !(1..=10_000).contains(&self.kinesis.records_per_call) {
            bail!("invalid configuration at `kinesis.records_per_call`: must be 1 to 10000");
        }
        if let Some(arn) = &self.storage.s3_role_arn
            && !(arn.starts_with("arn:aws") && arn.contains(":iam::") && arn.contains(":role/"))
        {
            bail!(
                "invalid configuration at `storage.s3_role_arn`: {arn:?} is not a role ARN (arn:aws:iam::<account>:role/<name>)"
            );
        }
        if self.server.job_lease < Duration::from_secs(1) {
            bail!("invalid configuration at `server.job_lease`: must be at least 1s");
        }
        if self.kinesis.lease < Duration::from_secs(1) {
            bail!("invalid configuration at `kinesis.lease`: must be at least 1s");
        }
        if !logyard_core::StreamName::is_valid(&self.loki.default_stream) {
            bail!(
                "invalid configuration at `loki.default_stream`: {:?} is not a stream name",
                self.loki.default_stream
            );
        }
        if self.archive.raw_max_age.is_zero() {
            bail!("invalid configuration at `archive.raw_max_age`: must be above 0");
        }
        logyard_auth::Tokens::new(&self.auth.tokens)
            .map_err(|e| anyhow::anyhow!("invalid configuration at `auth.tokens`: {e}"))?;
        Ok(())
    }
}

/// A plain SQL identifier: lower-case letters, digits and `_`, not starting with a digit.
fn is_sql_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Sets `section.key`, reading the value as a TOML literal when it is one (numbers,
/// booleans) and as a string otherwise.
/// A table of settings whose values are text, numbers or booleans, each kept as text.
fn settings<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let table = BTreeMap::<String, toml::Value>::deserialize(d)?;
    (table.into_iter())
        .map(|(key, value)| match value {
            toml::Value::String(s) => Ok((key, s)),
            toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => Ok((key, value.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "`{key}` must be text, a number or a boolean, not {}",
                other.type_str()
            ))),
        })
        .collect()
}

fn set(table: &mut toml::Table, section: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !matches!(v, toml::Value::Table(_)))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let entry = table.entry(section.to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(section_table) = entry else {
        bail!("`{section}` must be a table");
    };
    section_table.insert(key.to_owned(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// DataFusion settings are checked when the configuration is loaded: a name DataFusion
    /// does not know, or a value of the wrong type, is an error that names it.
    #[test]
    fn datafusion_settings_are_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        let load = |settings: &str| {
            std::fs::write(&file, format!("[query.datafusion]\n{settings}\n")).unwrap();
            Config::load(Some(&file), &BTreeMap::new(), &[]).map_err(|e| format!("{e:#}"))
        };
        let c =
            load("\"execution.parquet.pushdown_filters\" = false\n\"datafusion.execution.batch_size\" = 4096").unwrap();
        assert_eq!(c.query.datafusion["execution.parquet.pushdown_filters"], "false");
        assert_eq!(c.query.datafusion["datafusion.execution.batch_size"], "4096");
        let e = load("\"execution.parquet.no_such_thing\" = 1").unwrap_err();
        assert!(e.contains("query.datafusion") && e.contains("no_such_thing"), "{e}");
        let e = load("\"execution.batch_size\" = \"many\"").unwrap_err();
        assert!(e.contains("execution.batch_size"), "{e}");
        let e = load("\"execution.batch_size\" = [1]").unwrap_err();
        assert!(e.contains("query.datafusion") && e.contains("batch_size"), "{e}");
    }

    #[test]
    fn defaults_file_env_and_flags_in_that_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[ingest]\nflush_bytes = 1000\nflush_interval = \"3s\"\n[query]\ntimeout = \"5s\"\n")
            .unwrap();
        let c = Config::load(
            Some(&file),
            &env(&[
                ("LOGYARD_INGEST_FLUSH_BYTES", "2000"),
                ("LOGYARD_SERVER_LISTEN", "0.0.0.0:9000"),
                ("LOGYARD_TEST_OTHER", "x"),
            ]),
            &[("server.listen", "127.0.0.1:7000".into())],
        )
        .unwrap();
        assert_eq!(c.ingest.flush_bytes, 2000);
        assert_eq!(c.ingest.flush_interval, Duration::from_secs(3));
        assert_eq!(c.query.timeout, Duration::from_secs(5));
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(c.query.max_json_rows, 10_000);
    }

    #[test]
    fn tokens_inline_and_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens.toml");
        let hash = logyard_auth::hash_secret("x");
        std::fs::write(
            &file,
            format!(
                "[[auth.tokens]]\nname = \"ship\"\nsha256 = \"{hash}\"\nscopes = [\"ingest\"]\nstreams = [\"app-*\"]\n"
            ),
        )
        .unwrap();
        let c = Config::load(None, &env(&[("LOGYARD_TOKENS_FILE", file.to_str().unwrap())]), &[]).unwrap();
        assert_eq!(c.auth.tokens_file.as_deref(), Some(file.as_path()));
        let tokens = read_tokens_file(&file).unwrap();
        assert_eq!(tokens[0].name, "ship");
        std::fs::write(&file, "[[auth.tokens]]\nname = \"bad\"\nsha256 = \"zz\"\nscopes = [\"fly\"]\n").unwrap();
        let e = read_tokens_file(&file).unwrap_err();
        assert!(format!("{e:#}").contains("fly"), "{e:#}");
        let config = dir.path().join("c.toml");
        std::fs::write(&config, "[[auth.tokens]]\nname = \"short\"\nsha256 = \"abc\"\nscopes = [\"query\"]\n").unwrap();
        let e = Config::load(Some(&config), &env(&[]), &[]).unwrap_err();
        assert!(format!("{e:#}").contains("auth.tokens"), "{e:#}");
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::load(None, &env(&[("LOGYARD_INGEST_FLUSH_BYTSE", "1")]), &[]).unwrap_err();
        assert!(format!("{e:#}").contains("ingest.flush_bytse"), "{e:#}");
        let e = Config::load(None, &env(&[("LOGYARD_QUERY_TIMEOUT", "soon")]), &[]).unwrap_err();
        assert!(format!("{e:#}").contains("query.timeout"), "{e:#}");
        let e = Config::load(None, &env(&[("LOGYARD_SERVER_LISTEN", "nowhere")]), &[]).unwrap_err();
        assert!(format!("{e:#}").contains("server.listen"), "{e:#}");
        let e = Config::load(None, &env(&[("LOGYARD_STORAGE_URL", "gs://x")]), &[]).unwrap_err();
        assert!(format!("{e:#}").contains("storage.url"), "{e:#}");
    }

    #[test]
    fn the_masking_key_file_can_come_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("mask.key");
        std::fs::write(&key, [7u8; 32]).unwrap();
        let c = Config::load(None, &env(&[("LOGYARD_MASKING_KEY_FILE", key.to_str().unwrap())]), &[]).unwrap();
        assert_eq!(c.masking.key_file, Some(key));
    }
}

#[cfg(test)]
mod kinesis {
    use super::*;

    fn load(text: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logyard.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), &BTreeMap::from([("LOGYARD_KINESIS_LEASE".into(), "5s".into())]), &[])
    }

    #[test]
    fn streams_are_read_and_checked() {
        let c = load(
            "[[kinesis.streams]]\nstream_name = \"shop-logs\"\nlogyard_stream = \"shop-web\"\nstart = \"latest\"\n",
        )
        .unwrap();
        assert_eq!(c.kinesis.lease, Duration::from_secs(5));
        assert_eq!(c.kinesis.streams.len(), 1);
        assert_eq!(c.kinesis.streams[0].start, logyard_ingest::kinesis::StartPosition::Latest);
        let e = load("[[kinesis.streams]]\nstream_name = \"shop-logs\"\nlogyard_stream = \"Shop Web\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("kinesis.streams[0].logyard_stream"), "{e:#}");
        let e =
            load("[[kinesis.streams]]\nstream_name = \"s\"\nlogyard_stream = \"w\"\nstart = \"oldest\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("kinesis.streams[0].start"), "{e:#}");
    }
}

#[cfg(test)]
mod example {
    use super::*;

    #[test]
    fn the_example_file_is_valid_and_shows_the_defaults() {
        // Cargo names the crate's directory at run time too: the checkout the tests run from.
        let dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
        let path = &std::path::Path::new(&dir).join("../../logyard.example.toml");
        let c = Config::load(Some(path), &BTreeMap::new(), &[]).unwrap();
        let d = Config::default();
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
    }
}

#[cfg(test)]
mod privacy {
    use super::*;

    #[test]
    fn the_documented_masking_rules_load() {
        let doc = include_str!("../../../docs/privacy.md");
        let block = doc.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).expect("a TOML block");
        let c: Config = toml::from_str(block).unwrap();
        assert_eq!(c.masking.rules.len(), 3);
        let masking = logyard_core::mask::Masking::new(c.masking.rules, Some(vec![7; 32])).unwrap();
        assert!(masking.for_stream("storefront-web").is_some());
        assert!(masking.for_stream("audit").is_none());
    }
}

#[cfg(test)]
mod alerts {
    use super::*;

    /// The TOML blocks of docs/alerts.md, as one file.
    fn documented() -> String {
        let doc = include_str!("../../../docs/alerts.md");
        doc.split("```toml\n").skip(1).filter_map(|block| block.split("```").next()).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn the_documented_rules_and_receivers_load_and_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logyard.toml");
        std::fs::write(&path, documented()).unwrap();
        let env = [("LOGYARD_ALERTS_LEASE", "12s"), ("LOGYARD_ALERTS_WORKER_ID", "pod-a")];
        let env: BTreeMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let c = Config::load(Some(&path), &env, &[]).unwrap();
        assert_eq!((c.alerts.lease, c.alerts.worker_id.as_str()), (Duration::from_secs(12), "pod-a"));
        let names: Vec<&str> = c.alerts.receivers.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["oncall-slack", "alertmanager", "shop-hook", "ops-topic", "payments-slack"]);
        let rules: Vec<&str> = c.alerts.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            rules,
            [
                "checkout-5xx",
                "checkout-payment-5xx-rate",
                "p95-latency-by-route",
                "payment-declines",
                "pending-orders-hit-by-5xx",
                "storefront-silent"
            ]
        );
        for rule in &c.alerts.rules {
            rule.check(&names).unwrap();
        }
    }

    #[test]
    fn the_chart_carries_the_documented_ready_rules() {
        let load = |text: &str| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("logyard.toml");
            std::fs::write(&path, text).unwrap();
            Config::load(Some(&path), &BTreeMap::new(), &[]).unwrap().alerts.rules
        };
        let doc = include_str!("../../../docs/alerts.md");
        let ready = doc.split("## Ready rules for a shop").nth(1).unwrap();
        let documented = load(ready.split("```toml\n").nth(1).unwrap().split("```").next().unwrap());
        let chart = load(include_str!("../../../deploy/helm/logyard/files/shop-alert-rules.toml"));
        assert_eq!(chart.len(), 5);
        assert_eq!(chart, documented, "deploy/helm/logyard/files/shop-alert-rules.toml differs from docs/alerts.md");
    }

    #[test]
    fn a_mistaken_rule_is_named_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logyard.toml");
        std::fs::write(
            &path,
            "[[alerts.rules]]\nname = \"x\"\nsql = \"SELECT 1 AS value\"\nevery = \"1m\"\ncondition = \"value >> 1\"\n",
        )
        .unwrap();
        let e = Config::load(Some(&path), &BTreeMap::new(), &[]).unwrap_err();
        assert!(
            format!("{e:#}").contains("alerts.rules[0].condition") || format!("{e:#}").contains("expected a number"),
            "{e:#}"
        );
    }
}
