//! logyard-server: the HTTP API. The only crate that knows HTTP: routes, body limits,
//! and the single mapping from errors to statuses ([`error::ApiError`]).

pub mod app;
pub mod client;
pub mod elastic;
pub mod error;
pub mod firehose;
pub mod limits;
pub mod loki;
pub mod metrics;
pub mod otlp;
mod reports;
pub mod trace;
mod uploads;

pub use app::{AppState, AuthSettings, BodyLimits, router, run, run_tls};
pub use metrics::HttpMetrics;
