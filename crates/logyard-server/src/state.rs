//! What every handler shares: [`AppState`] and its settings. Imports no handler module.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;

use logyard_auth::TokenStore;
use logyard_core::StreamName;
use logyard_ingest::Ingestor;
use logyard_ingest::uploads::Uploads;
use logyard_protocols::elastic::IndexMapping;
use logyard_protocols::loki::LokiChoice;
use logyard_protocols::otlp::StreamChoice;
use logyard_query::QueryEngine;
use logyard_storage::Storage;

use crate::limits::Limits;
use crate::metrics::HttpMetrics;
use crate::recent::RecentIds;

/// Who may call what.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    pub tokens: TokenStore,
    /// Without tokens, a server on loopback lets every request in; so does one started with
    /// `--insecure-no-auth`, which then warns on every readiness check.
    pub insecure: bool,
    /// Whether `/metrics` needs a token too.
    pub protect_metrics: bool,
}

impl AuthSettings {
    pub(crate) fn required(&self) -> bool {
        !self.tokens.current().is_empty()
    }
}

/// Limits on request bodies.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// Bytes as sent (before decompression).
    pub max_body_bytes: usize,
    /// Bytes after decompression.
    pub max_decoded_bytes: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self { max_body_bytes: 16 << 20, max_decoded_bytes: 128 << 20 }
    }
}

/// How the protocols that carry no stream name of logyard's find one.
#[derive(Debug, Clone)]
pub struct ProtocolSettings {
    /// Elasticsearch index names → streams.
    pub index_mapping: IndexMapping,
    /// OTLP log records → streams.
    pub otlp: StreamChoice,
    /// Loki entries → streams.
    pub loki: LokiChoice,
    /// When a request that does not say is acknowledged, on every ingest path.
    pub ack: logyard_ingest::Ack,
}

/// How the live tail behaves.
#[derive(Debug, Clone)]
pub struct TailSettings {
    /// Events per second one tail sends before it samples.
    pub max_events_per_second: u32,
    /// Time between heartbeat comments.
    pub heartbeat: Duration,
    /// Other replicas: `host:port` (every address the name resolves to) or `https://host:port`.
    pub peers: Vec<String>,
    /// How often the peers' names are resolved again (new replicas join a running tail).
    pub peer_refresh: Duration,
    pub client: reqwest::Client,
}

impl Default for TailSettings {
    fn default() -> Self {
        Self {
            max_events_per_second: 200,
            heartbeat: Duration::from_secs(15),
            peers: Vec::new(),
            peer_refresh: Duration::from_secs(10),
            client: reqwest::Client::new(),
        }
    }
}

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub ingestor: Ingestor,
    pub query: QueryEngine,
    pub storage: Storage,
    pub body_limits: BodyLimits,
    pub wal_dir: PathBuf,
    pub registry: Arc<Registry>,
    pub http_metrics: HttpMetrics,
    pub auth: AuthSettings,
    pub limits: Limits,
    /// Proxies whose `X-Forwarded-For` is believed (the load balancer's subnets).
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    pub uploads: Uploads,
    /// Streams (names or globs) whose request bodies are archived as received.
    pub raw_streams: Arc<Vec<String>>,
    /// Where reports are read from.
    pub reports: logyard_report::store::ReportStore,
    pub protocols: ProtocolSettings,
    /// Firehose request ids lately delivered (a retried delivery is not taken twice).
    pub firehose_requests: Arc<RecentIds>,
    pub tail: TailSettings,
    /// Download links handed out and not yet used.
    pub downloads: Tickets,
    /// Told when the server begins to stop (long-lived responses end then).
    pub stopping: Stopping,
    /// Alert rules, silences and acknowledgements, shared through the storage.
    pub alerts: logyard_alerts::AlertStore,
    /// Forget jobs: recorded here, run by the server's forget service, told by `forget_wake`.
    pub forget: logyard_ingest::forget::Forgetter,
    pub forget_wake: Arc<tokio::sync::Notify>,
}

/// The server's way down: first draining (readiness off while requests are still taken),
/// then stopping (the listeners close; responses that would otherwise never end, end).
#[derive(Debug, Clone, Default)]
pub struct Stopping(Arc<StoppingInner>);

#[derive(Debug, Default)]
struct StoppingInner {
    stopped: tokio::sync::watch::Sender<bool>,
    draining: std::sync::atomic::AtomicBool,
}

impl Stopping {
    /// Readiness goes off: `/readyz` answers 503 from now on.
    pub fn drain(&self) {
        self.0.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.0.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.drain();
        self.0.stopped.send_replace(true);
    }

    /// Resolves once [`Stopping::stop`] was called.
    pub async fn wait(&self) {
        let mut rx = self.0.stopped.subscribe();
        // The sender lives as long as `self`.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

impl AppState {
    /// Whether the request bodies of a stream are archived as received.
    pub(crate) fn keeps_bodies(&self, stream: &StreamName) -> bool {
        self.raw_streams.iter().any(|p| logyard_auth::glob_match(p, stream.as_str()))
    }

    /// One of the `max_concurrent_queries` slots (shared by HTTP queries, searches and the
    /// PostgreSQL listener), held while a query runs; when none is free, the refusal is
    /// counted and its message returned.
    pub(crate) fn query_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, String> {
        self.limits.query_slot().ok_or_else(|| {
            self.http_metrics.limited("concurrent_queries");
            format!("{} queries are already running; retry later", self.limits.settings.max_concurrent_queries)
        })
    }
}

/// Download links handed out and not yet used (`downloads`): what each is for, whose it is, and
/// until when it works. The payload is the handler's own type.
#[derive(Debug, Clone, Default)]
pub struct Tickets(Arc<Mutex<std::collections::HashMap<String, Ticket>>>);

#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    pub principal: logyard_auth::Principal,
    pub what: Arc<dyn std::any::Any + Send + Sync>,
    pub expires: Instant,
}

impl Tickets {
    /// Links not yet used, at most (the oldest are let go first).
    const MAX: usize = 10_000;

    pub(crate) fn issue(
        &self,
        principal: logyard_auth::Principal,
        what: Arc<dyn std::any::Any + Send + Sync>,
        lifetime: Duration,
    ) -> String {
        let ticket = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let now = Instant::now();
        let mut tickets = self.0.lock().expect("tickets lock");
        tickets.retain(|_, t| t.expires > now);
        if tickets.len() >= Self::MAX
            && let Some(oldest) = tickets.iter().min_by_key(|(_, t)| t.expires).map(|(k, _)| k.clone())
        {
            tickets.remove(&oldest);
        }
        tickets.insert(ticket.clone(), Ticket { principal, what, expires: now + lifetime });
        ticket
    }

    /// The ticket's download, once: a used or expired ticket is gone.
    pub(crate) fn redeem(&self, ticket: &str) -> Option<Ticket> {
        let ticket = self.0.lock().expect("tickets lock").remove(ticket)?;
        (ticket.expires > Instant::now()).then_some(ticket)
    }

    #[cfg(test)]
    pub(crate) fn expire(&self, ticket: &str) {
        if let Some(t) = self.0.lock().expect("tickets lock").get_mut(ticket) {
            t.expires = Instant::now() - Duration::from_secs(1);
        }
    }
}
