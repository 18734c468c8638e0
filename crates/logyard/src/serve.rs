//! `logyard serve`: opens the storage, the write-ahead log and the query engine from the
//! configuration, then runs the server's components as [`Services`]: the HTTP API, the
//! OTLP/gRPC service, the Kinesis consumers, upload sweeping and bundling, maintenance, the
//! file watchers and the flusher. After they stop, the final commit empties the write-ahead
//! log.
//!
//! | component | stage | when it fails |
//! |---|---|---|
//! | `http`, `otlp-grpc` | listeners | stops the process (a server that no longer serves must not look alive) |
//! | `kinesis:<stream>` | consumers | restarted (a stream not there yet, no permission, no network) |
//! | `pgwire` | listeners | stops the process |
//! | `uploads`, `maintenance`, `tokens-file`, `tls-files`, `pgwire-tls-files` | background | restarted |
//! | `flusher` | flusher | restarted (what it holds stays in the write-ahead log) |

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use logyard_ingest::maintenance::{apply_retention, compact_streams};
use logyard_ingest::uploads::bundler::BundleOptions;
use logyard_ingest::uploads::{UploadOptions, Uploads};
use logyard_ingest::{IngestMetrics, IngestOptions, Ingestor};
use logyard_query::QueryEngine;
use logyard_server::{AppState, BodyLimits, HttpMetrics, ProtocolSettings};
use logyard_storage::lease::TABLES;
use logyard_storage::{JobLease, StoreMetrics, Tables, Turn};

use crate::config::Config;
use crate::services::{OnFailure, Services, Shutdown, Stage};

/// Runs the server until SIGTERM or SIGINT (or a listener fails), then stops every component
/// in order and commits what the write-ahead log holds, within `server.shutdown_grace`.
pub async fn serve(config: Config, env: &BTreeMap<String, String>, insecure_no_auth: bool) -> anyhow::Result<()> {
    let tokens = load_tokens(&config)?;
    if tokens.is_empty() && !config.server.listen.ip().is_loopback() && !insecure_no_auth {
        bail!(
            "refusing to listen on {} without bearer tokens: anyone who reaches it could read and write every stream.\n\
             Create a token with `logyard token create --name NAME --scopes ingest,query`, add the entry it prints \
             to the configuration (or to the file named by LOGYARD_TOKENS_FILE), and start again; \
             or pass --insecure-no-auth to serve without tokens anyway.",
            config.server.listen
        );
    }
    let insecure = tokens.is_empty() && !config.server.listen.ip().is_loopback();
    if insecure {
        tracing::warn!(listen = %config.server.listen, "authentication is off (--insecure-no-auth): anyone who reaches this server can read and write every stream");
    }
    let token_store = logyard_auth::TokenStore::new(tokens);
    let mut registry = Registry::default();
    let store_metrics = StoreMetrics::default();
    store_metrics.register(&mut registry);
    let ingest_metrics = IngestMetrics::default();
    ingest_metrics.register(&mut registry);
    let http_metrics = HttpMetrics::default();
    http_metrics.register(&mut registry);
    let kinesis_metrics = logyard_ingest::kinesis::KinesisMetrics::default();
    kinesis_metrics.register(&mut registry);

    let storage = crate::open_storage(&config, env, store_metrics).await?;
    let tables = Arc::new(crate::stream_tables(&config, storage.clone()));
    let wal_dir = crate::wal_dir(&config)?;
    let masking = Arc::new(config.masking.build()?);
    let ingestor = Ingestor::open(ingest_options(&config, &wal_dir, masking.clone()), tables.clone(), ingest_metrics)
        .with_context(|| format!("opening the write-ahead log in {}", wal_dir.display()))?;
    let query = QueryEngine::new(tables.clone(), crate::query_options(&config)).with_mask_key(masking.key());
    let query = crate::with_orders(query, &config, env).await?;

    let listener = std::net::TcpListener::bind(config.server.listen)
        .with_context(|| format!("listening on {}", config.server.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let tls = match (&config.server.tls_cert_file, &config.server.tls_key_file) {
        (Some(cert), Some(key)) => Some(load_tls(cert, key).await?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };

    let public_url = config.uploads.public_url.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
    let uploads = Uploads::new(tables.clone(), upload_options(&config, public_url, masking.clone()));
    let reports = crate::report_cmd::report_store(&config, env, None, &storage).await?;
    let receiver_names = config.alerts.receivers.iter().map(|r| r.name.clone()).collect();
    let alerts = logyard_alerts::AlertStore::new(storage.clone(), config.alerts.rules.clone(), receiver_names)?;
    let state = AppState {
        alerts: alerts.clone(),
        forget: crate::forgetter(&config, tables.clone(), masking.key()),
        forget_wake: Arc::default(),
        uploads: uploads.clone(),
        ingestor: ingestor.clone(),
        query,
        storage: storage.clone(),
        body_limits: BodyLimits {
            max_body_bytes: config.server.max_body_bytes,
            max_decoded_bytes: config.server.max_decoded_bytes,
        },
        limits: logyard_server::limits::Limits::new(logyard_server::limits::LimitSettings {
            requests_per_second: config.limits.requests_per_second,
            bytes_per_second: config.limits.bytes_per_second,
            max_concurrent_requests: config.limits.max_concurrent_requests,
            max_concurrent_queries: config.limits.max_concurrent_queries,
            max_body_bytes: config.server.max_body_bytes,
        }),
        wal_dir: wal_dir.clone(),
        registry: Arc::new(registry),
        http_metrics,
        trusted_proxies: Arc::new(config.server.trusted_proxies.clone()),
        raw_streams: Arc::new(config.archive.raw_streams.clone()),
        reports,
        protocols: ProtocolSettings {
            index_mapping: logyard_protocols::elastic::IndexMapping {
                strip_prefix: config.elasticsearch.strip_prefix.clone(),
                strip_date_suffix: config.elasticsearch.strip_date_suffix,
            },
            otlp: logyard_protocols::otlp::StreamChoice {
                attribute: Some(config.otlp.stream_attribute.clone()).filter(|a| !a.is_empty()),
                default: logyard_core::StreamName::new(&config.otlp.default_stream)?,
            },
            loki: logyard_protocols::loki::LokiChoice {
                label: Some(config.loki.stream_label.clone()).filter(|l| !l.is_empty()),
                default: logyard_core::StreamName::new(&config.loki.default_stream)?,
            },
            ack: config.ingest.ack.into(),
        },
        firehose_requests: Default::default(),
        tail: logyard_server::TailSettings {
            max_events_per_second: config.tail.max_events_per_second,
            heartbeat: config.tail.heartbeat,
            peers: config.tail.peers.clone(),
            ..Default::default()
        },
        stopping: Default::default(),
        downloads: Default::default(),
        auth: logyard_server::AuthSettings {
            tokens: token_store.clone(),
            insecure,
            protect_metrics: config.auth.protect_metrics,
        },
    };

    let grace = config.server.shutdown_grace;
    let mut services = Services::new(env.get("LOGYARD_FAULT_PANIC").cloned());

    // The listeners.
    let http = Arc::new(std::sync::Mutex::new(Some(listener)));
    {
        let (state, tls) = (state.clone(), tls.clone());
        services.add("http", Stage::Listeners, OnFailure::StopProcess, move |shutdown: Shutdown| {
            let listener = http.lock().expect("listener lock").take();
            let (state, tls) = (state.clone(), tls.clone());
            async move {
                let listener = listener.context("the HTTP listener is gone (it is started once)")?;
                match tls {
                    Some(tls) => logyard_server::run_tls(listener, tls, state, shutdown.wait(), grace).await,
                    None => logyard_server::run(TcpListener::from_std(listener)?, state, shutdown.wait()).await,
                }
                .context("serving HTTP")
            }
        });
    }
    if let Some(pg_addr) = config.pgwire.listen {
        let listener =
            std::net::TcpListener::bind(pg_addr).with_context(|| format!("listening on {pg_addr} (pgwire.listen)"))?;
        listener.set_nonblocking(true)?;
        let tls = match (&config.pgwire.tls_cert_file, &config.pgwire.tls_key_file) {
            (Some(cert), Some(key)) => {
                let own = load_tls(cert, key).await?;
                watch_tls_files(&mut services, "pgwire-tls-files", cert, key, config.server.tls_reload_interval, &own);
                Some(own)
            }
            (None, None) => tls.clone(),
            _ => bail!("pgwire.tls_cert_file and pgwire.tls_key_file are given together, or neither"),
        };
        tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), "PostgreSQL protocol listening");
        if config.pgwire.require_tls && tls.is_none() {
            bail!("pgwire.require_tls needs a certificate: pgwire.tls_cert_file and tls_key_file, or server's");
        }
        let listener = Arc::new(std::sync::Mutex::new(Some(listener)));
        let state = state.clone();
        let settings = logyard_server::pgwire::PgSettings { require_tls: config.pgwire.require_tls };
        services.add("pgwire", Stage::Listeners, OnFailure::StopProcess, move |shutdown: Shutdown| {
            let listener = listener.lock().expect("listener lock").take();
            let (state, tls, settings) = (state.clone(), tls.clone(), settings.clone());
            async move {
                let listener = listener.context("the PostgreSQL listener is gone (it is started once)")?;
                logyard_server::pgwire::run_pgwire(
                    TcpListener::from_std(listener)?,
                    state,
                    tls,
                    settings,
                    shutdown.wait(),
                )
                .await
                .context("serving the PostgreSQL protocol")
            }
        });
    }
    if let Some(grpc_addr) = config.otlp.grpc_listen {
        let listener = std::net::TcpListener::bind(grpc_addr)
            .with_context(|| format!("listening on {grpc_addr} (otlp.grpc_listen)"))?;
        listener.set_nonblocking(true)?;
        tracing::info!(addr = %listener.local_addr()?, "OTLP/gRPC logs service listening");
        let listener = Arc::new(std::sync::Mutex::new(Some(listener)));
        let state = state.clone();
        services.add("otlp-grpc", Stage::Listeners, OnFailure::StopProcess, move |shutdown: Shutdown| {
            let listener = listener.lock().expect("listener lock").take();
            let service = logyard_server::otlp::Grpc::service(state.clone());
            async move {
                let listener = listener.context("the gRPC listener is gone (it is started once)")?;
                let incoming = tonic::transport::server::TcpIncoming::from(TcpListener::from_std(listener)?);
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, shutdown.wait())
                    .await
                    .context("serving OTLP/gRPC")
            }
        });
    }

    // What feeds and tends the tables.
    crate::kinesis_cmd::add_consumers(&mut services, &config, &tables, ingestor.metrics(), &kinesis_metrics).await?;
    add_alerts(&mut services, &config, &state, &tables, alerts).await?;
    {
        let (uploads, config) = (uploads.clone(), config.clone());
        let lease = crate::job_lease(&storage, "uploads", ingestor.writer_id(), &config);
        services.add("uploads", Stage::Background, OnFailure::Restart, move |shutdown: Shutdown| {
            run_upload_tasks(uploads.clone(), config.clone(), lease.clone(), shutdown)
        });
    }
    {
        let state = state.clone();
        let every = config.forget.check_interval;
        let lease = crate::job_lease(&storage, TABLES, ingestor.writer_id(), &config);
        services.add("forget", Stage::Background, OnFailure::Restart, move |shutdown: Shutdown| {
            run_forget_jobs(state.clone(), every, lease.clone(), shutdown)
        });
    }
    {
        let (tables, config) = (tables.clone(), config.clone());
        let lease = crate::job_lease(&storage, TABLES, ingestor.writer_id(), &config);
        services.add("maintenance", Stage::Background, OnFailure::Restart, move |shutdown: Shutdown| {
            run_maintenance(tables.clone(), config.clone(), lease.clone(), shutdown)
        });
    }
    if let Some(file) = config.auth.tokens_file.clone() {
        let (config, ingestor) = (config.clone(), ingestor.clone());
        services.add("tokens-file", Stage::Background, OnFailure::Restart, move |shutdown: Shutdown| {
            watch_tokens(file.clone(), config.clone(), token_store.clone(), ingestor.clone(), shutdown)
        });
    }
    if let (Some(tls), Some(cert), Some(key)) = (&tls, &config.server.tls_cert_file, &config.server.tls_key_file) {
        watch_tls_files(&mut services, "tls-files", cert, key, config.server.tls_reload_interval, tls);
    }
    {
        let ingestor = ingestor.clone();
        services.add("flusher", Stage::Flusher, OnFailure::Restart, move |shutdown: Shutdown| {
            let ingestor = ingestor.clone();
            async move {
                // Commit what the write-ahead log held at start, then keep flushing.
                if let Err(e) = ingestor.flush_all().await {
                    tracing::warn!(error = %e, "committing the replayed write-ahead log failed; the flusher will retry");
                }
                ingestor.run_flusher(shutdown.wait()).await;
                Ok(())
            }
        });
    }

    // The first query after a start finds the streams' tables loaded (each a checkpoint and
    // the commits after it), or waits only for what is left after `WARM_AT_MOST`.
    let warming = std::time::Instant::now();
    match tokio::time::timeout(WARM_AT_MOST, state.query.warm(WARM_AT_ONCE)).await {
        Ok(Ok(tables)) => tracing::info!(tables, elapsed = ?warming.elapsed(), "tables loaded ahead of queries"),
        Ok(Err(e)) => tracing::warn!(error = %e, "loading the tables ahead of queries failed; queries load them"),
        Err(_) => tracing::info!(?WARM_AT_MOST, "the tables not loaded yet are loaded by the queries that read them"),
    }
    tracing::info!(%addr, scheme, storage = %storage.location(), wal = %wal_dir.display(), writer = ingestor.writer_id(), "logyard listening");
    println!("logyard listening on {scheme}://{addr}");
    let (stopping, drain_delay) = (state.stopping.clone(), config.server.drain_delay);
    let stop = async move {
        crate::wait_for_signal().await;
        // Readiness off first; requests are still taken while load balancers notice.
        stopping.drain();
        if !drain_delay.is_zero() {
            tracing::info!(?drain_delay, "draining: readiness is off, the listeners close after the drain delay");
            tokio::time::sleep(drain_delay).await;
        }
    };
    let ran = services.run(stop, grace).await;
    let (deadline, failure) = match ran {
        Ok(deadline) => (deadline, None),
        Err((deadline, e)) => (deadline, Some(e)),
    };
    ingestor.shutdown(deadline).await.context("final commit")?;
    match failure {
        None => {
            tracing::info!("shutdown complete");
            Ok(())
        }
        Some(e) => Err(e),
    }
}

/// How long a start waits for the streams' tables to load before it listens.
const WARM_AT_MOST: Duration = Duration::from_secs(10);
/// Tables loaded at once at a start.
const WARM_AT_ONCE: usize = 8;

fn ingest_options(config: &Config, wal_dir: &Path, masking: Arc<logyard_core::mask::Masking>) -> IngestOptions {
    let mut options = IngestOptions::new(wal_dir);
    options.masking = masking;
    options.flush_bytes = config.ingest.flush_bytes;
    options.flush_age = config.ingest.flush_interval;
    options.wal_segment_bytes = config.ingest.wal_segment_bytes;
    options.max_columns = config.ingest.max_columns;
    options.flush_concurrency = config.ingest.flush_concurrency;
    options.memory_budget_bytes = config.ingest.memory_budget_bytes;
    options.wal_budget_bytes = config.ingest.wal_budget_bytes;
    options.raw = BundleOptions { max_age: config.archive.raw_max_age, ..crate::bundle_options(config) };
    options
}

fn upload_options(config: &Config, public_url: String, masking: Arc<logyard_core::mask::Masking>) -> UploadOptions {
    UploadOptions {
        masking,
        max_bytes: config.uploads.max_bytes,
        url_expiry: config.uploads.url_expiry,
        chunk_bytes: config.uploads.chunk_bytes,
        max_json_bytes: config.server.max_decoded_bytes,
        max_columns: config.ingest.max_columns,
        public_url,
        multipart_threshold: config.uploads.multipart_threshold,
        part_bytes: config.uploads.part_bytes,
        multipart_expiry: config.uploads.multipart_expiry,
    }
}

/// How often a replica looks whether a job of period `every` is due: a quarter of it, within
/// 1 s and 1 min, so that the replicas together run it about every `every`.
fn look_every(every: Duration) -> Duration {
    (every / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Runs `job` (named `name`) under `lease` if it is due; a failure is logged (the next look
/// retries).
async fn take_turn<T, F>(lease: &JobLease, name: &str, every: Duration, job: F) -> Option<T>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    match lease.run_if_due(name, every, job).await {
        Ok(Turn::Ran(value)) => Some(value),
        Ok(Turn::NotDue) => None,
        Ok(Turn::Held { owner, job }) => {
            tracing::debug!(%owner, running = %job, "{name}: another replica holds the lease");
            None
        }
        Err(e) => {
            tracing::warn!(error = %logyard_core::error_chain(&*e), "{name} failed; retrying later");
            None
        }
    }
}

/// Compacts every stream and applies retention on their intervals (0: never), one replica at
/// a time (under the tables lease, as the forget jobs), until stopped.
async fn run_maintenance(
    tables: Arc<Tables>,
    config: Config,
    lease: JobLease,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let intervals = [config.compaction.interval, config.retention.interval];
    let Some(look) = intervals.iter().filter(|every| !every.is_zero()).map(|every| look_every(*every)).min() else {
        shutdown.wait().await;
        return Ok(());
    };
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(look) => {}
        }
        let every = config.compaction.interval;
        if !every.is_zero() {
            let by = lease.owner();
            let job = async { Ok(compact_streams(&tables, None, config.compaction.target_file_bytes, by).await?) };
            take_turn(&lease, "compaction", every, job).await;
        }
        let every = config.retention.interval;
        if !every.is_zero() {
            let policy = crate::retention_policy(&config);
            let actor = format!("logyard serve ({})", lease.owner());
            let job = async { Ok(apply_retention(&tables, &policy, &actor).await?) };
            take_turn(&lease, "retention", every, job).await;
        }
    }
}

/// Runs the forget jobs not done yet, one at a time: when one is asked for, and every
/// `every` (to resume one a restart interrupted, and to purge one whose vacuum window has
/// passed); a job that fails is tried again at the next round.
async fn run_forget_jobs(state: AppState, every: Duration, lease: JobLease, shutdown: Shutdown) -> anyhow::Result<()> {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        // A look at the jobs first: the lease is written only when there is work.
        match state.forget.unfinished().await {
            Ok(jobs) if jobs.is_empty() => {}
            Ok(jobs) => {
                take_turn(&lease, "forget", Duration::ZERO, advance_forget_jobs(&state, jobs)).await;
            }
            Err(e) => {
                tracing::warn!(error = %logyard_core::error_chain(&e), "listing forget jobs failed; retrying later")
            }
        }
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = state.forget_wake.notified() => {}
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// One round of the forget jobs not done yet (one replica's turn).
async fn advance_forget_jobs(state: &AppState, jobs: Vec<logyard_ingest::forget::ForgetJob>) -> anyhow::Result<()> {
    for job in jobs {
        let (id, ingestor) = (job.id.clone(), state.ingestor.clone());
        let flush = || async move { ingestor.flush_all().await.map(|_| ()) };
        match state.forget.advance(job, flush).await {
            Ok(job) if job.phase == logyard_ingest::forget::Phase::Done => {
                let removed: u64 = job.tables.values().filter_map(|t| t.deleted.as_ref()).map(|d| d.rows_removed).sum();
                let detail = serde_json::json!({"job": id, "subject": job.subject, "rows_removed": removed, "gone_at": job.gone_at, "dry_run": job.dry_run});
                state.ingestor.audit("logyard", None, "forget_completed", detail).await?;
                tracing::info!(job = %id, rows_removed = removed, "forget job done");
            }
            Ok(job) => {
                tracing::info!(job = %id, phase = ?job.phase, purge_after = ?job.purge_after, "forget job waiting")
            }
            Err(e) => {
                tracing::warn!(job = %id, error = %logyard_core::error_chain(&e), "forget job failed; retrying later")
            }
        }
    }
    Ok(())
}

/// Ingests uploads that were never completed, and archives the originals of finished ones,
/// every `uploads.sweep_interval`, until stopped.
async fn run_upload_tasks(uploads: Uploads, config: Config, lease: JobLease, shutdown: Shutdown) -> anyhow::Result<()> {
    let options = crate::bundle_options(&config);
    let every = config.uploads.sweep_interval;
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(look_every(every).min(every)) => {}
        }
        let job = async {
            if let Err(e) = uploads.sweep().await {
                tracing::warn!(error = %logyard_core::error_chain(&e), "sweeping uploads failed; retrying later");
            }
            if let Err(e) = uploads.archive_finished(&options, false).await {
                tracing::warn!(error = %logyard_core::error_chain(&e), "archiving uploads failed; retrying later");
            }
            Ok(())
        };
        take_turn(&lease, "uploads", every, job).await;
    }
}

/// The tokens of the configuration and of the tokens file.
fn load_tokens(config: &Config) -> anyhow::Result<logyard_auth::Tokens> {
    let mut entries = config.auth.tokens.clone();
    if let Some(file) = &config.auth.tokens_file {
        entries.extend(crate::config::read_tokens_file(file)?);
    }
    let tokens = logyard_auth::Tokens::new(&entries).map_err(|e| anyhow::anyhow!("tokens: {e}"))?;
    if tokens.masks_fields() && config.masking.key_file.is_none() {
        bail!("tokens: a token has mask_fields, which are hashed with the masking key: set masking.key_file");
    }
    Ok(tokens)
}

/// Resolves once `path`'s modification time differs from the last seen (checked every
/// `every`), or never after `shutdown`: returns whether it changed.
async fn changed(
    paths: &[&Path],
    last: &mut Vec<Option<std::time::SystemTime>>,
    every: Duration,
    shutdown: &Shutdown,
) -> bool {
    let stamp = || paths.iter().map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).collect::<Vec<_>>();
    if last.is_empty() {
        *last = stamp();
    }
    loop {
        tokio::select! {
            _ = shutdown.clone().wait() => return false,
            _ = tokio::time::sleep(every) => {}
        }
        let now = stamp();
        if now != *last {
            *last = now;
            return true;
        }
    }
}

/// Reloads the tokens file when it changes, keeping the old tokens when the new file is bad.
async fn watch_tokens(
    file: std::path::PathBuf,
    config: Config,
    store: logyard_auth::TokenStore,
    ingestor: Ingestor,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut last = Vec::new();
    while changed(&[&file], &mut last, Duration::from_secs(5), &shutdown).await {
        match load_tokens(&config) {
            Ok(tokens) => {
                let count = tokens.len();
                store.replace(tokens);
                tracing::info!(file = %file.display(), tokens = count, "tokens file reloaded");
                let detail = serde_json::json!({"file": file.display().to_string(), "tokens": count});
                if let Err(e) = ingestor.audit("logyard", None, "tokens_reloaded", detail).await {
                    tracing::warn!(error = %e, "cannot write the audit event");
                }
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "the tokens file changed but cannot be used; keeping the previous tokens")
            }
        }
    }
    Ok(())
}

/// Reloads `tls` from `cert` and `key` when they change (a background service `name`).
fn watch_tls_files(
    services: &mut Services,
    name: &'static str,
    cert: &Path,
    key: &Path,
    every: Duration,
    tls: &axum_server::tls_rustls::RustlsConfig,
) {
    let (cert, key, tls) = (cert.to_path_buf(), key.to_path_buf(), tls.clone());
    services.add(name, Stage::Background, OnFailure::Restart, move |shutdown: Shutdown| {
        watch_tls(cert.clone(), key.clone(), every, tls.clone(), shutdown)
    });
}

pub(crate) async fn load_tls(cert: &Path, key: &Path) -> anyhow::Result<axum_server::tls_rustls::RustlsConfig> {
    // Several crypto providers are linked in (the AWS SDK brings one, object_store another):
    // name the one servers use.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .with_context(|| format!("loading the TLS certificate {} and key {}", cert.display(), key.display()))
}

/// Reloads the certificate and key when either file changes; keeps the old pair when the new
/// one cannot be used.
async fn watch_tls(
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    every: Duration,
    tls: axum_server::tls_rustls::RustlsConfig,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut last = Vec::new();
    while changed(&[&cert, &key], &mut last, every, &shutdown).await {
        match tls.reload_from_pem_file(&cert, &key).await {
            Ok(()) => tracing::info!(cert = %cert.display(), "TLS certificate reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "the TLS certificate changed but cannot be loaded; keeping the previous one")
            }
        }
    }
    Ok(())
}

/// The alert evaluator: the configured rules and those added through the API.
async fn add_alerts(
    services: &mut Services,
    config: &Config,
    state: &AppState,
    tables: &Arc<Tables>,
    store: logyard_alerts::AlertStore,
) -> anyhow::Result<()> {
    let alerts = &config.alerts;
    let console_url = alerts.console_url.clone().or_else(|| config.uploads.public_url.clone());
    let needs_aws = alerts
        .receivers
        .iter()
        .any(|r| r.kind == logyard_alerts::receivers::ReceiverKind::Sns || r.url_secret.is_some());
    let aws = match needs_aws {
        true => Some(logyard_storage::aws::load_sdk_config(None).await),
        false => None,
    };
    let receivers = logyard_alerts::receivers::HttpReceivers::new(&alerts.receivers, console_url, aws.as_ref())
        .map_err(anyhow::Error::msg)?;
    let settle =
        if alerts.settle.is_zero() { config.ingest.flush_interval + Duration::from_secs(5) } else { alerts.settle };
    let options = logyard_alerts::EvaluatorOptions {
        owner: crate::worker_id(&alerts.worker_id),
        lease: alerts.lease,
        settle,
        tick: alerts.tick,
        max_columns: config.ingest.max_columns,
    };
    let evaluator = Arc::new(logyard_alerts::Evaluator::new(
        store,
        state.query.clone(),
        tables.clone(),
        Arc::new(receivers),
        options,
    ));
    services.add("alerts", Stage::Consumers, OnFailure::Restart, move |shutdown: Shutdown| {
        let evaluator = evaluator.clone();
        async move {
            evaluator.run(shutdown.receiver()).await;
            Ok(())
        }
    });
    Ok(())
}
