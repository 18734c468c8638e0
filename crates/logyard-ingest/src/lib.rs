//! logyard-ingest: from decoded events to committed rows.
//!
//! [`pipeline`] carries a request's events (decoded by `logyard-protocols`) through the
//! write-ahead log into the stream tables: [`Ingestor::append_all`] is the one path to
//! durability and acknowledgement of every ingest protocol, and hands what became durable to
//! live tails ([`tail`]). [`uploads`] ingests and archives
//! files put straight into the storage, [`alb_import`] ALB access logs, [`kinesis`] Kinesis
//! Data Streams; they commit with the same batch building ([`build`]) and fenced Delta
//! transactions. [`maintenance`] compacts and applies retention. Knows nothing of HTTP.

pub mod alb_import;
pub mod build;
pub mod forget;
mod gunzip;
pub mod kinesis;
pub mod maintenance;
pub mod metrics;
pub mod pipeline;
pub mod raw;
pub mod tail;
pub mod uploads;

pub use metrics::IngestMetrics;
pub use pipeline::{Ack, Announced, Append, FlushSummary, IngestOptions, Ingestor};

use std::time::Duration;

use logyard_core::{ErrorKind, ServiceError, error_chain};

/// Errors of the write path, imports and maintenance.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// What the caller gave cannot be read (an import's file, a stored record).
    #[error("{0}")]
    Invalid(String),
    /// Something logyard wrote earlier cannot be read back.
    #[error("damaged: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Wal(#[from] logyard_storage::WalError),
    #[error(transparent)]
    Storage(#[from] logyard_storage::StorageError),
    #[error(transparent)]
    Archive(#[from] logyard_storage::archive::ArchiveError),
    #[error("the events are durable but their commit did not finish within {0:?}; they will be committed")]
    CommitTimeout(Duration),
    #[error("the server is busy: no room for these events was freed within {0:?} (commits are behind); retry later")]
    Busy(Duration),
    #[error("the server is shutting down")]
    ShuttingDown,
    /// A blocking task ended without an answer (it panicked).
    #[error("{what} stopped: {message}")]
    Stopped { what: &'static str, message: String },
    #[error(transparent)]
    Core(#[from] logyard_core::CoreError),
}

impl IngestError {
    /// The error of a blocking task that did not finish.
    pub fn stopped(what: &'static str, e: tokio::task::JoinError) -> Self {
        IngestError::Stopped { what, message: error_chain(&e) }
    }
}

impl ServiceError for IngestError {
    fn kind(&self) -> ErrorKind {
        match self {
            IngestError::Invalid(_) => ErrorKind::BadRequest,
            IngestError::CommitTimeout(_) | IngestError::Busy(_) | IngestError::ShuttingDown => ErrorKind::Unavailable,
            IngestError::Storage(e) => e.kind(),
            IngestError::Archive(e) => e.kind(),
            IngestError::Core(e) => e.kind(),
            IngestError::Corrupt(_) | IngestError::Wal(_) | IngestError::Stopped { .. } => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            IngestError::Invalid(_) => "invalid_input",
            IngestError::Corrupt(_) => "corrupt_data",
            IngestError::Wal(_) => "wal_error",
            IngestError::Storage(e) => e.code(),
            IngestError::Archive(e) => e.code(),
            IngestError::CommitTimeout(_) => "commit_timeout",
            IngestError::Busy(_) => "busy",
            IngestError::ShuttingDown => "shutting_down",
            IngestError::Stopped { .. } => "internal",
            IngestError::Core(e) => e.code(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            IngestError::Busy(_) => Some(5),
            IngestError::ShuttingDown => Some(1),
            _ => None,
        }
    }
}

/// Masks one stream's events with its rules ([`logyard_core::mask`]) and counts what was
/// masked; the events unchanged when nothing was found.
pub fn mask_events(
    masker: &logyard_core::mask::Masker,
    stream: &str,
    events: logyard_core::encoded::EventsEncoder,
    metrics: &IngestMetrics,
) -> Result<logyard_core::encoded::EventsEncoder, IngestError> {
    let masked = masker
        .mask_events(events.as_bytes())
        .map_err(|e| IngestError::Corrupt(format!("masking the events of {stream}: {e}")))?;
    metrics.masked(stream, &masked.counts);
    Ok(masked.events.unwrap_or(events))
}

/// Masks the text columns of a typed batch (an ALB log's) with a stream's rules; a value a
/// `drop` rule finds becomes null. Returns the batch and what was masked.
pub fn mask_batch(
    masker: &logyard_core::mask::Masker,
    batch: arrow::record_batch::RecordBatch,
) -> Result<(arrow::record_batch::RecordBatch, logyard_core::mask::MaskCounts), IngestError> {
    use arrow::array::{Array, ArrayRef, StringArray};
    use logyard_core::mask::MaskedValue;

    let mut counts = [0; logyard_core::mask::COUNTED];
    let schema = batch.schema();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for (field, column) in schema.fields().iter().zip(columns.iter_mut()) {
        let Some(text) = column.as_any().downcast_ref::<StringArray>() else { continue };
        let mut masked: Option<Vec<Option<String>>> = None;
        for i in 0..text.len() {
            if text.is_null(i) {
                continue;
            }
            let new = match masker.mask_value(field.name(), text.value(i), &mut counts) {
                MaskedValue::Unchanged => continue,
                MaskedValue::Text(t) => Some(t),
                MaskedValue::Drop => None,
            };
            let values = masked.get_or_insert_with(|| text.iter().map(|v| v.map(str::to_owned)).collect());
            values[i] = new;
        }
        if let Some(values) = masked {
            *column = std::sync::Arc::new(StringArray::from(values));
        }
    }
    let batch = arrow::record_batch::RecordBatch::try_new(schema, columns)
        .map_err(|e| IngestError::Invalid(format!("masking a batch: {e}")))?;
    Ok((batch, counts))
}
