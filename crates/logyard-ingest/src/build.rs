//! Rows from checked events: the one place where encoded events become Arrow batches that
//! fit a stream's table, for the flusher and for uploads alike.

use arrow::array::{ArrayRef, new_null_array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use logyard_core::batch::batches_from_payloads;
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
    let batches = batches_from_payloads(schema, payloads, max_columns, BATCH_ROWS)?;
    let Some(last) = batches.last() else { return Ok(None) };
    // Later chunks may have added columns: give every batch the final schema.
    let schema = last.schema();
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
