//! Rows from checked events: the one place where encoded events become Arrow batches that
//! fit a stream's table, for the flusher and for uploads alike.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;

use logyard_core::batch::{Held, batches_from_held, fit_to};
use logyard_storage::tables::BuildResult;

/// Events held until their commit: encoded, or as the rows built when they were read (the
/// encoded events are then needed no more, or kept elsewhere: the write-ahead log).
#[derive(Debug, Clone)]
pub(crate) enum HeldEvents {
    Encoded(Bytes),
    Prepared(RecordBatch),
}

impl HeldEvents {
    pub(crate) fn of(events: Bytes, rows: Option<RecordBatch>) -> Self {
        match rows {
            Some(rows) => HeldEvents::Prepared(rows),
            None => HeldEvents::Encoded(events),
        }
    }

    /// Rows built as the events were read.
    pub(crate) fn prepared_rows(&self) -> u64 {
        match self {
            HeldEvents::Encoded(_) => 0,
            HeldEvents::Prepared(batch) => batch.num_rows() as u64,
        }
    }

    pub(crate) fn as_held(&self) -> Held<'_> {
        match self {
            HeldEvents::Encoded(events) => Held::Encoded(events),
            HeldEvents::Prepared(batch) => Held::Prepared(batch),
        }
    }
}

/// Rows per batch.
pub const BATCH_ROWS: usize = 64 * 1024;

/// Builds the rows of encoded event payloads (each `(position, bytes)`, the position only
/// naming a damaged payload) against a table's schema, sorted by time, in batches of
/// [`BATCH_ROWS`] that all carry the final schema. `None` when there is no event.
pub fn build_batches<'a>(
    schema: SchemaRef,
    payloads: impl IntoIterator<Item = (u64, &'a [u8])>,
    max_columns: usize,
) -> BuildResult {
    build_held(schema, payloads.into_iter().map(|(position, payload)| (position, Held::Encoded(payload))), max_columns)
}

/// The same for what a flush holds: encoded events and rows built when their requests came
/// (`logyard_core::parse::parse_body_into_rows`), merged in time order.
pub fn build_held<'a>(
    schema: SchemaRef,
    held: impl IntoIterator<Item = (u64, Held<'a>)>,
    max_columns: usize,
) -> BuildResult {
    let batches = batches_from_held(schema, held, max_columns, BATCH_ROWS)?;
    let Some(last) = batches.last() else { return Ok(None) };
    // Later chunks may have added columns: give every batch the final schema.
    let schema = last.schema();
    let batches = batches.iter().map(|b| fit_to(b, &schema)).collect::<Result<Vec<_>, _>>()?;
    Ok(Some(batches))
}
