//! logyard-server: the HTTP API, the only crate that knows HTTP.
//!
//! [`app`] routes requests through [`middleware`] (observe → authenticate → admit) to the
//! handlers. Every ingest protocol (`ndjson`, `elastic`, `otlp`, `loki`, `firehose`) builds
//! its decoder and hands the request to the one [`intake`], which reads, decodes, authorizes,
//! appends and counts; the protocol module only writes its answer. [`tail`] streams what
//! the intake made durable to live tails, merged across replicas. [`error`] is the one map
//! from errors to statuses and to each protocol's error form.
//!
//! Module dependencies point one way: `app` → handlers → `intake`, `body`, `error`, `state`.

mod alerts;
mod api;
pub mod app;
mod body;
pub mod client;
mod console;
pub mod downloads;
mod elastic;
pub mod error;
mod firehose;
mod forget;
mod intake;
pub mod limits;
mod loki;
pub mod metrics;
mod middleware;
mod ndjson;
pub mod otlp;
pub mod pgwire;
mod recent;
mod reports;
mod saved;
mod search;
pub mod state;
mod tail;
pub mod trace;
mod uploads;

pub use app::{router, run, run_tls};
pub use body::STREAM_HEADER;
pub use metrics::HttpMetrics;
pub use recent::RecentIds;
pub use state::{AppState, AuthSettings, BodyLimits, ProtocolSettings, Stopping, TailSettings};
