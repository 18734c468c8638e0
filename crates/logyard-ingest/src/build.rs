//! Rows from checked events: the one place where encoded events become Arrow batches that
//! fit a stream's table, for the flusher and for uploads alike.

use arrow::array::{ArrayRef, new_null_array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use logyard_core::batch::{BatchBuilder, PendingEvent};
use logyard_core::encoded::decode_events;
use logyard_storage::tables::BuildResult;

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
    let mut events = Vec::new();
    for (position, payload) in payloads {
        for e in decode_events(payload) {
            let e = e.map_err(|m| format!("damaged record at position {position}: {m}"))?;
            events.push(PendingEvent { time: e.time, source: e.source, text: e.text });
        }
    }
    if events.is_empty() {
        return Ok(None);
    }
    events.sort_by_key(|e| e.time);
    let mut batches = Vec::with_capacity(events.len().div_ceil(BATCH_ROWS));
    let mut schema = schema;
    for chunk in events.chunks(BATCH_ROWS) {
        let mut builder = BatchBuilder::new(schema.clone(), max_columns);
        for e in chunk {
            builder.push(*e)?;
        }
        let batch = builder.finish()?;
        schema = batch.schema();
        batches.push(batch);
    }
    // Later chunks may have added columns: give every batch the final schema.
    let batches = batches.into_iter().map(|b| pad_to(b, &schema)).collect::<Result<Vec<_>, _>>()?;
    Ok(Some(batches))
}

pub fn pad_to(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema() == *schema {
        return Ok(batch);
    }
    let rows = batch.num_rows();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| batch.column_by_name(f.name()).cloned().unwrap_or_else(|| new_null_array(f.data_type(), rows)))
        .collect();
    RecordBatch::try_new(schema.clone(), columns)
}
