//! logyard-ingest: from request bodies to committed rows.
//!
//! [`body`] decodes bodies (bounded), `logyard_core::parse` checks events line by line, and
//! [`pipeline`] carries accepted events through the write-ahead log into the stream tables.
//! Every protocol decodes into the same [`pipeline::Ingestor::append`]: one path for
//! durability and acknowledgement. Knows nothing of HTTP.

pub mod alb_import;
pub mod body;
pub mod build;
pub mod by_stream;
pub mod elastic;
pub mod kinesis;
pub mod loki;
pub mod maintenance;
pub mod metrics;
pub mod otlp;
pub mod pipeline;
pub mod raw;
pub mod records;
pub mod uploads;

pub use metrics::IngestMetrics;
pub use pipeline::{Ack, FlushSummary, IngestOptions, Ingestor};

use std::time::Duration;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("cannot decode the body: {0}")]
    BadEncoding(String),
    #[error(transparent)]
    Wal(#[from] logyard_storage::WalError),
    #[error(transparent)]
    Storage(#[from] logyard_storage::StorageError),
    #[error("the events are durable but their commit did not finish within {0:?}; they will be committed")]
    CommitTimeout(Duration),
    #[error("the server is busy: no room for these events was freed within {0:?} (commits are behind); retry later")]
    Busy(Duration),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Core(#[from] logyard_core::CoreError),
}
