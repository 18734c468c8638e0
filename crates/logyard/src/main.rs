//! The `logyard` binary: command line, configuration, wiring and shutdown.
//! The only crate that reads the process environment; `anyhow` lives here.

mod allocator;
mod archive_cmd;
mod config;
mod doctor;
mod import_cmd;
mod kinesis_cmd;
mod report_cmd;
mod search_cmd;
mod serve;
mod server_client;
mod services;
mod telemetry;
mod upload_cmd;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};

use logyard_ingest::forget::{ForgetSettings, Forgetter};
use logyard_ingest::maintenance::{RetentionPolicy, apply_retention, compact_streams};
use logyard_ingest::uploads::bundler::BundleOptions;
use logyard_query::{QueryEngine, QueryOptions};
use logyard_storage::aws::S3Options;
use logyard_storage::lease::TABLES;
use logyard_storage::{JobLease, Location, Storage, StoreMetrics, Tables};

use crate::config::{Config, LogFormat};

#[derive(Debug, Parser)]
#[command(name = "logyard", version, about = "Log archive and SQL log analytics for online shops on EKS")]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "LOGYARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: ingest, storage, SQL.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Storage: a path, file://, s3://bucket/prefix or memory:// (default ./logyard-data).
        #[arg(long)]
        storage: Option<String>,
        /// Write-ahead log directory.
        #[arg(long)]
        wal_dir: Option<PathBuf>,
        /// Serve without bearer tokens on a non-loopback address (anyone who reaches the
        /// server can read and write every stream).
        #[arg(long)]
        insecure_no_auth: bool,
        /// Other replicas whose events live tails merge (`tail.peers`): host:port names,
        /// comma-separated, each resolved to all its addresses.
        #[arg(long)]
        peers: Option<String>,
    },
    /// Check what a deployment needs (credentials, identity, storage, WAL, clock) and say
    /// how to fix what fails. Exits non-zero on any failure.
    Doctor {
        /// Storage to check (default from the configuration).
        #[arg(long)]
        storage: Option<String>,
        /// Write-ahead log directory to check.
        #[arg(long)]
        wal_dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Forget a customer everywhere: their rows in every stream and their lines in the raw
    /// archive, through a running server (`admin` scope); prints the erasure receipt.
    Forget {
        /// The customer's id (as in forget.subject_columns).
        #[arg(long)]
        customer: String,
        /// Comma-separated streams to look in (default: every stream).
        #[arg(long, value_delimiter = ',')]
        streams: Vec<String>,
        /// Find and count, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Wait until the bytes are gone (after forget.vacuum_after), not only removed.
        #[arg(long)]
        wait: bool,
        /// The logyard server.
        #[arg(long, env = "LOGYARD_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Bearer token with the admin scope.
        #[arg(long, env = "LOGYARD_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Run one SQL query, against the storage directly or a running server.
    Query {
        /// The SQL statement.
        sql: String,
        /// Query a running server instead of reading the storage.
        #[arg(long)]
        server: Option<String>,
        /// Bearer token with the query scope, for `--server`.
        #[arg(long, env = "LOGYARD_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Storage to read (default from the configuration: ./logyard-data).
        #[arg(long, conflicts_with = "server")]
        storage: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Search streams in the search language (newest events first), against the storage
    /// directly or a running server: `logyard search storefront 'status:>=500 checkout' --since 1h`.
    Search(search_cmd::SearchArgs),
    /// List the streams with their rows, size and time range.
    Streams {
        /// Storage to read (default from the configuration: ./logyard-data).
        #[arg(long)]
        storage: Option<String>,
    },
    /// Upload files through a server's presigned direct uploads (many files are packed into
    /// one tar.zst first); prints the upload id and the rows ingested.
    Upload {
        /// The logyard server, e.g. https://logs.example.com.
        #[arg(long, env = "LOGYARD_SERVER", required_unless_present = "direct")]
        server: Option<String>,
        /// Bearer token with the ingest scope.
        #[arg(long, env = "LOGYARD_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The stream to ingest into.
        #[arg(long, required_unless_present = "direct")]
        stream: Option<String>,
        /// ndjson, json, text or tar (default: from the file name).
        #[arg(long)]
        format: Option<String>,
        /// Put the file (or the packed bundle) under this s3://bucket/prefix with your own
        /// AWS credentials instead, without a server.
        #[arg(long, conflicts_with_all = ["server", "stream"])]
        direct: Option<String>,
        /// Files, directories and globs.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Merge each day's small files into files sorted by time (every stream, or those named).
    Compact {
        /// Only these streams.
        #[arg(long = "stream")]
        streams: Vec<String>,
        /// Storage (default from the configuration: ./logyard-data).
        #[arg(long)]
        storage: Option<String>,
    },
    /// Data retention.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Register the stream tables in a data catalog, for Athena and Spark.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Import logs from where other systems write them.
    #[command(subcommand)]
    Import(import_cmd::ImportCommand),
    /// Reports: the daily report job, and the list of reports written.
    Report {
        /// Storage holding the streams (default from the configuration: ./logyard-data).
        #[arg(long, global = true)]
        storage: Option<String>,
        #[command(subcommand)]
        command: report_cmd::ReportCommand,
    },
    /// Read a Kinesis data stream into a logyard stream until stopped (every shard, leases
    /// shared with other consumers of the same streams, exactly once into the table).
    Kinesis(kinesis_cmd::KinesisArgs),
    /// The raw archive: list bundles, fetch a member, verify checksums.
    Archive {
        /// Storage to read (default from the configuration: ./logyard-data).
        #[arg(long, global = true)]
        storage: Option<String>,
        #[command(subcommand)]
        command: archive_cmd::ArchiveCommand,
    },
}

#[derive(Debug, Subcommand)]
enum RetentionCommand {
    /// Drop the days older than each stream's retention (`retention.days`,
    /// `retention.streams`) from its table and archive, vacuum, and record it in the audit stream.
    Run {
        /// Storage (default from the configuration: ./logyard-data).
        #[arg(long)]
        storage: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum CatalogCommand {
    /// Create or update one AWS Glue table per stream (Athena's native Delta Lake tables,
    /// partitioned by `date`), and remove the tables of streams that are gone.
    Glue {
        /// The Glue database (e.g. `shop_logs`).
        #[arg(long)]
        database: String,
        /// Only these streams (and remove nothing).
        #[arg(long = "stream")]
        streams: Vec<String>,
        /// Create the database when it does not exist.
        #[arg(long)]
        create_database: bool,
        /// Storage (default from the configuration; must be s3://BUCKET/PREFIX).
        #[arg(long)]
        storage: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a new token: prints its secret once and the entry to add to the configuration.
    Create {
        /// A name for the token (shown in logs and the audit stream).
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: ingest, query, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Comma-separated stream names or globs the token is limited to (default: all).
        #[arg(long, value_delimiter = ',')]
        streams: Vec<String>,
        /// Comma-separated columns the token may not read (`email`, `user.email`).
        #[arg(long, value_delimiter = ',')]
        deny_fields: Vec<String>,
        /// Comma-separated columns the token reads as keyed hashes (needs masking.key_file).
        #[arg(long, value_delimiter = ',')]
        mask_fields: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Table,
    Csv,
    Json,
    Ndjson,
}

fn main() -> std::process::ExitCode {
    allocator::configure(|name| std::env::var(name).ok());
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let env = process_env();
    match cli.command {
        Command::Doctor { storage, wal_dir, json } => {
            let mut flags = Vec::new();
            if let Some(s) = storage {
                flags.push(("storage.url", s));
            }
            if let Some(w) = wal_dir {
                flags.push(("storage.wal_dir", w.display().to_string()));
            }
            let config = Config::load(cli.config.as_deref(), &env, &flags);
            init_logging_quiet();
            let checks = doctor::run(config, &env).await;
            if doctor::print(&checks, json) { Ok(()) } else { Err(anyhow::anyhow!("some checks failed")) }
        }
        Command::Token(TokenCommand::Create { name, scopes, streams, deny_fields, mask_fields }) => {
            let trimmed = |list: Vec<String>| list.into_iter().map(|s| s.trim().to_owned()).collect::<Vec<_>>();
            let entry = logyard_auth::TokenConfig {
                name,
                streams: (!streams.is_empty()).then(|| trimmed(streams)),
                deny_fields: trimmed(deny_fields),
                mask_fields: trimmed(mask_fields),
                ..Default::default()
            };
            token_create(entry, &scopes)
        }
        Command::Serve { listen, storage, wal_dir, insecure_no_auth, peers } => {
            let mut flags = Vec::new();
            if let Some(l) = listen {
                flags.push(("server.listen", l));
            }
            if let Some(s) = storage {
                flags.push(("storage.url", s));
            }
            if let Some(w) = wal_dir {
                flags.push(("storage.wal_dir", w.display().to_string()));
            }
            if let Some(p) = peers {
                flags.push(("tail.peers", p));
            }
            let config = Config::load(cli.config.as_deref(), &env, &flags)?;
            let telemetry = init_logging(&config, &env)?;
            log_panics();
            let served = serve::serve(config, &env, insecure_no_auth).await;
            // Exporting the last spans blocks: off the async workers.
            let _ = tokio::task::spawn_blocking(move || drop(telemetry)).await;
            served
        }
        Command::Query { sql, server, token, storage, format } => {
            let flags: Vec<_> = storage.map(|s| ("storage.url", s)).into_iter().collect();
            let config = Config::load(cli.config.as_deref(), &env, &flags)?;
            init_logging_quiet();
            match server {
                Some(url) => query_server(&url, token.as_deref(), &sql, format).await,
                None => query_local(&config, &env, &sql, format).await,
            }
        }
        Command::Forget { customer, streams, dry_run, wait, server, token } => {
            let streams = (!streams.is_empty()).then_some(streams);
            let request = serde_json::json!({"customer": customer, "streams": streams, "dry_run": dry_run});
            forget(&server, token.as_deref(), &request, wait).await
        }
        Command::Search(args) => {
            let flags: Vec<_> = args.storage.clone().map(|s| ("storage.url", s)).into_iter().collect();
            let config = Config::load(cli.config.as_deref(), &env, &flags)?;
            init_logging_quiet();
            search_cmd::run(args, &config, &env).await
        }
        Command::Upload { server, token, stream, format, direct, paths } => {
            init_logging_quiet();
            let format = format
                .map(|f| serde_json::from_value(serde_json::Value::String(f.clone())))
                .transpose()
                .map_err(|_| anyhow::anyhow!("--format: use ndjson, json, text or tar"))?;
            match direct {
                Some(url) => {
                    let config = Config::load(cli.config.as_deref(), &env, &[])?;
                    let location = Location::parse(&url)?;
                    let target = Storage::open(location, &s3_options(&config, &env), StoreMetrics::default())
                        .await
                        .with_context(|| format!("opening {url}"))?;
                    upload_cmd::direct(paths, format, target).await
                }
                None => {
                    let (Some(server), Some(stream)) = (server, stream) else {
                        bail!("--server and --stream are needed (or --direct)");
                    };
                    upload_cmd::run(upload_cmd::UploadArgs { server, token, stream, format, paths }).await
                }
            }
        }
        Command::Report { storage, command } => {
            let flags: Vec<_> = storage.map(|s| ("storage.url", s)).into_iter().collect();
            let config = Config::load(cli.config.as_deref(), &env, &flags)?;
            init_logging_quiet();
            report_cmd::run(&config, &env, command).await
        }
        Command::Compact { streams, storage } => {
            let flags: Vec<_> = storage.map(|s| ("storage.url", s)).into_iter().collect();
            let config = Config::load(cli.config.as_deref(), &env, &flags)?;
            init_logging_quiet();
            let tables = stream_tables(&config, open_storage(&config, &env, StoreMetrics::default()).await?);
            let streams = stream_names(&streams)?;
            let by = format!("logyard compact ({})", worker_id(""));
            let lease = job_lease(tables.storage(), TABLES, &by, &config);
            let compact = compact_streams(&tables, streams, config.compaction.target_file_bytes, &by);
            let reports = lease.run_when_free("compaction", Duration::from_secs(5), compact).await?;
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "compacted": reports }))?);
            Ok(())
        }
        Command::Retention(RetentionCommand::Run { storage }) => {
            let flags: Vec<_> = storage.map(|s| ("storage.url", s)).into_iter().collect();
            let config = Config::load(cli.config.as_deref(), &env, &flags)?;
            init_logging_quiet();
            let tables = Arc::new(stream_tables(&config, open_storage(&config, &env, StoreMetrics::default()).await?));
            let actor = format!("logyard retention run ({})", env.get("USER").map_or("cli", String::as_str));
            let lease = job_lease(tables.storage(), TABLES, &format!("{actor} ({})", worker_id("")), &config);
            let policy = retention_policy(&config);
            let retention = apply_retention(&tables, &policy, &actor);
            let results = lease.run_when_free("retention", Duration::from_secs(5), retention).await?;
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "streams": results }))?);
            Ok(())
        }
        Command::Catalog(CatalogCommand::Glue { database, streams, create_database, storage }) => {
            let flags: Vec<_> = storage.map(|s| ("storage.url", s)).into_iter().collect();
            let config = Config::load(cli.config.as_deref(), &env, &flags)?;
            init_logging_quiet();
            let tables = stream_tables(&config, open_storage(&config, &env, StoreMetrics::default()).await?);
            let only = stream_names(&streams)?;
            let sdk = logyard_storage::aws::load_sdk_config(config.storage.s3_region.clone()).await;
            let endpoint = env.get("AWS_ENDPOINT_URL_GLUE").or_else(|| env.get("AWS_ENDPOINT_URL")).cloned();
            let catalog = logyard_storage::catalog::GlueCatalog::new(&sdk, endpoint, &database)?;
            let report = catalog.sync(&tables, only, create_database).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Import(command) => {
            let import_cmd::ImportCommand::Alb { storage, .. } = &command;
            let flags: Vec<_> = storage.clone().map(|s| ("storage.url", s)).into_iter().collect();
            let config = Config::load(cli.config.as_deref(), &env, &flags)?;
            init_logging_quiet();
            import_cmd::run(command, &config, &env).await
        }
        Command::Kinesis(args) => {
            let flags: Vec<_> = args.storage.clone().map(|s| ("storage.url", s)).into_iter().collect();
            let config = Config::load(cli.config.as_deref(), &env, &flags)?;
            let telemetry = init_logging(&config, &env)?;
            log_panics();
            let ran = kinesis_cmd::run(args, &config, &env).await;
            let _ = tokio::task::spawn_blocking(move || drop(telemetry)).await;
            ran
        }
        Command::Archive {
            command: archive_cmd::ArchiveCommand::Pack { paths, output, level, frame_bytes }, ..
        } => archive_cmd::pack(paths, output, level, frame_bytes).await,
        Command::Archive { storage, command } => {
            let flags: Vec<_> = storage.map(|s| ("storage.url", s)).into_iter().collect();
            let config = Config::load(cli.config.as_deref(), &env, &flags)?;
            init_logging_quiet();
            archive_cmd::run(command, open_storage(&config, &env, StoreMetrics::default()).await?).await
        }
        Command::Streams { storage } => {
            let flags: Vec<_> = storage.map(|s| ("storage.url", s)).into_iter().collect();
            let config = Config::load(cli.config.as_deref(), &env, &flags)?;
            init_logging_quiet();
            let tables = stream_tables(&config, open_storage(&config, &env, StoreMetrics::default()).await?);
            let mut infos = Vec::new();
            for stream in tables.storage().list_streams().await? {
                if let Some(info) = tables.info(&stream).await? {
                    infos.push(info);
                }
            }
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({"streams": infos}))?);
            Ok(())
        }
    }
}

fn init_logging(config: &Config, env: &BTreeMap<String, String>) -> anyhow::Result<telemetry::Telemetry> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match config.log.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    telemetry::init(filter, json, env)
}

/// Panics go to the log (JSON in production) with the thread they happened on; the
/// supervisor of the server's components then handles the component (see `services`).
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
        tracing::error!(thread, panic = %info, "panic");
    }));
}

fn init_logging_quiet() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
}

pub(crate) fn s3_options(config: &Config, env: &BTreeMap<String, String>) -> S3Options {
    S3Options {
        region: config.storage.s3_region.clone(),
        endpoint: config
            .storage
            .s3_endpoint
            .clone()
            .or_else(|| env.get("AWS_ENDPOINT_URL_S3").cloned())
            .or_else(|| env.get("AWS_ENDPOINT_URL").cloned()),
        force_path_style: config.storage.s3_force_path_style,
        role: config.storage.s3_role_arn.clone().map(|arn| logyard_storage::aws::AssumeRole {
            arn,
            external_id: config.storage.s3_role_external_id.clone(),
            session: config.storage.s3_role_session,
            session_name: format!("logyard-{}", worker_id("")).chars().take(64).collect(),
        }),
    }
}

/// The stream tables in `storage`, written as `config` says.
pub(crate) fn stream_tables(config: &Config, storage: Storage) -> Tables {
    Tables::new(storage)
        .with_bloom_filters(config.tables.bloom_filters())
        .with_row_group_rows(config.tables.row_group_rows)
        .with_encode_threads(config.tables.encode_threads)
        .with_text_fields(text_fields(config))
}

/// The streams' text fields: what searches look in, and what the text indexes cover.
fn text_fields(config: &Config) -> logyard_core::TextFields {
    logyard_core::TextFields {
        default: config.query.text_fields.clone(),
        streams: config.query.stream_text_fields.clone(),
    }
}

pub(crate) async fn open_storage(
    config: &Config,
    env: &BTreeMap<String, String>,
    metrics: StoreMetrics,
) -> anyhow::Result<Storage> {
    let location = Location::parse(&config.storage.url)?;
    Storage::open(location.clone(), &s3_options(config, env), metrics)
        .await
        .with_context(|| format!("opening storage {location}"))
}

/// The lease of work one replica at a time does (`logyard_storage::lease`), held by `owner`
/// for `server.job_lease`.
pub(crate) fn job_lease(storage: &Storage, lease: &str, owner: &str, config: &Config) -> JobLease {
    JobLease::new(storage, lease, owner, config.server.job_lease)
}

/// The streams a command was given (`--stream`), or `None` for all of them.
fn stream_names(streams: &[String]) -> anyhow::Result<Option<Vec<logyard_core::StreamName>>> {
    if streams.is_empty() {
        return Ok(None);
    }
    Ok(Some(streams.iter().map(|s| logyard_core::StreamName::new(s)).collect::<Result<Vec<_>, _>>()?))
}

/// This process's name in the leases it takes (Kinesis shards, alert rules): `configured`, or
/// `<hostname>-<pid>` (in Kubernetes the hostname is the pod's name).
pub(crate) fn worker_id(configured: &str) -> String {
    if !configured.is_empty() {
        return configured.to_owned();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "logyard".into());
    format!("{host}-{}", std::process::id())
}

pub(crate) fn wal_dir(config: &Config) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &config.storage.wal_dir {
        return Ok(dir.clone());
    }
    Ok(match Location::parse(&config.storage.url)? {
        Location::Local(dir) => dir.join("wal"),
        _ => PathBuf::from("./logyard-wal"),
    })
}

/// The orders database's tables as `<orders.schema>.<table>`, when one is configured.
pub(crate) async fn with_orders(
    engine: QueryEngine,
    config: &Config,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<QueryEngine> {
    match orders_schema(config, env).await? {
        Some(schema) => Ok(engine.with_schema(&config.orders.schema, schema)),
        None => Ok(engine),
    }
}

async fn orders_schema(
    config: &Config,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<Option<Arc<logyard_pg::PgSchema>>> {
    if !config.orders.enabled() {
        return Ok(None);
    }
    let settings = config.orders.settings(env)?;
    let needs_aws = matches!(
        settings.password,
        logyard_pg::PasswordSource::Secret(_) | logyard_pg::PasswordSource::IamToken { .. }
    );
    let sdk = match needs_aws {
        true => Some(logyard_storage::aws::load_sdk_config(config.orders.region.clone()).await),
        false => None,
    };
    let mut settings = settings;
    if let (logyard_pg::PasswordSource::IamToken { region }, Some(sdk)) = (&mut settings.password, &sdk)
        && region.is_empty()
    {
        *region = sdk.region().map(|r| r.to_string()).context("orders.iam_auth needs an AWS region (orders.region)")?;
    }
    let pg = logyard_pg::Pg::new(settings, sdk).context("the orders database")?;
    Ok(Some(Arc::new(logyard_pg::PgSchema::new(pg, &config.orders.tables).context("orders.tables")?)))
}

pub(crate) fn query_options(config: &Config) -> QueryOptions {
    QueryOptions {
        timeout: config.query.timeout,
        memory_limit: config.query.memory_limit,
        max_json_rows: config.query.max_json_rows,
        target_partitions: config.query.threads,
        text_fields: text_fields(config),
        datafusion: config.query.datafusion.clone().into_iter().collect(),
    }
}

/// Prints a new token's secret and its configuration entry: `entry` with its scopes and hash.
fn token_create(mut entry: logyard_auth::TokenConfig, scopes: &[String]) -> anyhow::Result<()> {
    use logyard_auth::{Scope, TokenConfig, Tokens, hash_secret, new_secret};
    entry.scopes = scopes.iter().map(|s| Scope::parse(s)).collect::<Result<Vec<_>, _>>().map_err(anyhow::Error::msg)?;
    let secret = new_secret(rand::random());
    entry.sha256 = hash_secret(&secret);
    Tokens::new(std::slice::from_ref(&entry)).map_err(anyhow::Error::msg)?;
    #[derive(serde::Serialize)]
    struct Entry<'a> {
        auth: Auth<'a>,
    }
    #[derive(serde::Serialize)]
    struct Auth<'a> {
        tokens: [&'a TokenConfig; 1],
    }
    let toml = toml::to_string(&Entry { auth: Auth { tokens: [&entry] } })?;
    println!("Secret (shown only now; give it to the client as `Authorization: Bearer <secret>`):\n\n  {secret}\n");
    println!("Add this to the configuration file or to the tokens file (LOGYARD_TOKENS_FILE):\n\n{toml}");
    Ok(())
}

pub(crate) fn retention_policy(config: &Config) -> RetentionPolicy {
    RetentionPolicy {
        days: config.retention.days,
        streams: config.retention.streams.clone(),
        vacuum_keep: config.retention.vacuum_keep,
    }
}

pub(crate) fn bundle_options(config: &Config) -> BundleOptions {
    BundleOptions {
        target_bytes: config.archive.bundle_bytes,
        max_age: config.archive.bundle_max_age,
        level: config.archive.level,
        frame_bytes: config.archive.frame_bytes,
    }
}

pub(crate) fn forgetter(config: &Config, tables: Arc<Tables>, key: Option<Arc<[u8]>>) -> Forgetter {
    Forgetter::new(
        tables,
        ForgetSettings {
            subject_columns: config.forget.subject_columns.clone(),
            linked_columns: config.forget.linked_columns.clone(),
            text_fields: text_fields(config),
            vacuum_after: config.forget.vacuum_after,
            bundle_level: config.archive.level,
            bundle_frame_bytes: config.archive.frame_bytes,
            key,
        },
    )
}

pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

async fn query_local(
    config: &Config,
    env: &BTreeMap<String, String>,
    sql: &str,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let storage = open_storage(config, env, StoreMetrics::default()).await?;
    let engine =
        with_orders(QueryEngine::new(Arc::new(stream_tables(config, storage)), query_options(config)), config, env)
            .await?;
    let running = engine.execute(sql).await?;
    match format {
        OutputFormat::Table => {
            use futures::TryStreamExt;
            let batches: Vec<_> =
                running.stream.try_collect().await.map_err(logyard_query::QueryError::from_datafusion)?;
            print_table(&running.schema, &batches)
        }
        other => {
            let f = match other {
                OutputFormat::Csv => logyard_query::Format::Csv,
                OutputFormat::Json => logyard_query::Format::Json,
                _ => logyard_query::Format::Ndjson,
            };
            let max_rows = if f == logyard_query::Format::Json { usize::MAX / 2 } else { config.query.max_json_rows };
            let mut out = logyard_query::output::encode(running, f, max_rows).await?;
            use futures::StreamExt;
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            while let Some(chunk) = out.next().await {
                stdout.write_all(&chunk?)?;
            }
            if f == logyard_query::Format::Json {
                writeln!(stdout)?;
            }
            Ok(())
        }
    }
}

fn print_table(
    schema: &arrow::datatypes::SchemaRef,
    batches: &[arrow::record_batch::RecordBatch],
) -> anyhow::Result<()> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if batches.is_empty() {
        let empty = arrow::record_batch::RecordBatch::new_empty(schema.clone());
        println!("{}", arrow::util::pretty::pretty_format_batches(&[empty])?);
    } else {
        println!("{}", arrow::util::pretty::pretty_format_batches(batches)?);
    }
    println!("({rows} row{})", if rows == 1 { "" } else { "s" });
    Ok(())
}

/// Asks `server` to forget a customer and follows the job until its rows are removed (or, with
/// `wait`, until the bytes are gone); prints the receipt.
async fn forget(server: &str, token: Option<&str>, request: &serde_json::Value, wait: bool) -> anyhow::Result<()> {
    let base = server.trim_end_matches('/');
    let client = reqwest::Client::new();
    let authorized = |r: reqwest::RequestBuilder| match token {
        Some(t) => r.bearer_auth(t),
        None => r,
    };
    let url = format!("{base}/api/v1/forget");
    let created: serde_json::Value = server_client::answer(authorized(client.post(&url).json(request)))
        .await
        .with_context(|| format!("POST {url}"))?;
    let url = format!("{base}{}", created["url"].as_str().context("the server's answer names no job url")?);
    let mut reported: Option<String> = None;
    loop {
        let job: serde_json::Value =
            server_client::answer(authorized(client.get(&url))).await.with_context(|| format!("GET {url}"))?;
        let phase = job["phase"].as_str().unwrap_or_default();
        if let Some(error) = job["last_error"].as_str()
            && reported.as_deref() != Some(error)
        {
            eprintln!("The forget job stopped at `{phase}`: {error}. The server tries it again; waiting.");
            reported = Some(error.to_owned());
        }
        if phase == "done" || (phase == "waiting" && !wait) {
            println!("{}", serde_json::to_string_pretty(&job)?);
            if phase == "waiting" {
                eprintln!(
                    "The rows are removed; the files and bundles they were in are deleted after {} (see `purge_after`). Follow with: GET {url}",
                    job["purge_after"].as_str().unwrap_or("the vacuum window")
                );
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn query_server(server: &str, token: Option<&str>, sql: &str, format: OutputFormat) -> anyhow::Result<()> {
    let url = format!("{}/api/v1/query", server.trim_end_matches('/'));
    let wire = match format {
        OutputFormat::Table => "arrow",
        OutputFormat::Csv => "csv",
        OutputFormat::Json => "json",
        OutputFormat::Ndjson => "ndjson",
    };
    let mut request = reqwest::Client::new().post(&url).json(&serde_json::json!({"sql": sql, "format": wire}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let body = server_client::answer_bytes(request).await.with_context(|| format!("POST {url}"))?;
    if format == OutputFormat::Table {
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)?;
        let schema = reader.schema();
        let batches = reader.collect::<Result<Vec<_>, _>>()?;
        return print_table(&schema, &batches);
    }
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&body)?;
    if format == OutputFormat::Json {
        writeln!(stdout)?;
    }
    Ok(())
}
