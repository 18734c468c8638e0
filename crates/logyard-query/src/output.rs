//! Result encodings: `json` (one document, row-limited), `ndjson`, `csv`, Arrow IPC stream.
//!
//! Each encoder turns a running query into a stream of byte chunks, one per record batch,
//! so results are never held whole in memory.

use std::str::FromStr;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Serialize;

use crate::QueryError;
use crate::engine::RunningQuery;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Ndjson,
    Csv,
    Arrow,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
        }
    }
}

/// A format name that is not one of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {0:?}: use json, ndjson, csv or arrow")]
pub struct UnknownFormat(String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        match s {
            "json" => Ok(Format::Json),
            "ndjson" => Ok(Format::Ndjson),
            "csv" => Ok(Format::Csv),
            "arrow" => Ok(Format::Arrow),
            _ => Err(UnknownFormat(s.to_owned())),
        }
    }
}

#[derive(Serialize)]
struct Column {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
}

/// `[{"name": .., "type": ..}, ..]` of a schema.
pub fn columns_json(schema: &SchemaRef) -> String {
    let cols: Vec<Column> = schema
        .fields()
        .iter()
        .map(|f| Column { name: f.name().clone(), data_type: f.data_type().to_string() })
        .collect();
    serde_json::to_string(&cols).expect("serializable")
}

/// Rows of a batch as NDJSON (explicit nulls; timestamps as RFC 3339).
pub fn batch_to_ndjson(batch: &RecordBatch) -> Result<Vec<u8>, QueryError> {
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::LineDelimited>(Vec::with_capacity(batch.get_array_memory_size() / 2));
    writer.write(batch).map_err(|e| QueryError::Encode(e.to_string()))?;
    writer.finish().map_err(|e| QueryError::Encode(e.to_string()))?;
    Ok(writer.into_inner())
}

/// Encodes a running query. The first batch is read before this returns, so that errors
/// found at once (most of them) reach the caller as an error rather than a broken body.
pub async fn encode(
    mut query: RunningQuery,
    format: Format,
    max_json_rows: usize,
) -> Result<impl Stream<Item = Result<Bytes, QueryError>> + Send + 'static, QueryError> {
    let first = query.stream.next().await.transpose().map_err(QueryError::from_datafusion)?;
    let schema = query.schema.clone();
    let started = query.started;
    let batches =
        futures::stream::iter(first.map(Ok)).chain(query.stream.map(|r| r.map_err(QueryError::from_datafusion)));

    let out: futures::stream::BoxStream<'static, Result<Bytes, QueryError>> = match format {
        Format::Ndjson => batches.map(|b| b.and_then(|b| batch_to_ndjson(&b)).map(Bytes::from)).boxed(),
        Format::Csv => {
            let header = csv_header(&schema);
            futures::stream::once(async move { Ok(Bytes::from(header)) })
                .chain(batches.map(|b| b.and_then(|b| csv_rows(&b)).map(Bytes::from)))
                .boxed()
        }
        Format::Arrow => {
            // View types reference whole scan buffers: a two-row result would carry megabytes,
            // and older readers do not know them. Plain Utf8/Binary travel better.
            let plain = plain_schema(&schema);
            let target = plain.clone();
            let batches = batches.map(move |b| b.and_then(|b| to_plain(&b, &target)));
            arrow_ipc(plain, batches.boxed()).boxed()
        }
        Format::Json => json_document(schema, batches.boxed(), max_json_rows, started).boxed(),
    };
    Ok(out)
}

fn plain_type(t: &arrow::datatypes::DataType) -> arrow::datatypes::DataType {
    use arrow::datatypes::DataType;
    match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        other => other.clone(),
    }
}

fn plain_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<_> =
        schema.fields().iter().map(|f| f.as_ref().clone().with_data_type(plain_type(f.data_type()))).collect();
    std::sync::Arc::new(arrow::datatypes::Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn to_plain(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, QueryError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(
            |(c, f)| {
                if c.data_type() == f.data_type() { Ok(c.clone()) } else { arrow::compute::cast(c, f.data_type()) }
            },
        )
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| QueryError::Encode(e.to_string()))?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| QueryError::Encode(e.to_string()))
}

fn csv_header(schema: &SchemaRef) -> Vec<u8> {
    let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(Vec::new());
    let empty = RecordBatch::new_empty(schema.clone());
    let _ = w.write(&empty);
    w.into_inner()
}

fn csv_rows(batch: &RecordBatch) -> Result<Vec<u8>, QueryError> {
    let mut w = arrow::csv::WriterBuilder::new().with_header(false).build(Vec::new());
    w.write(batch).map_err(|e| QueryError::Encode(e.to_string()))?;
    Ok(w.into_inner())
}

fn arrow_ipc(
    schema: SchemaRef,
    batches: futures::stream::BoxStream<'static, Result<RecordBatch, QueryError>>,
) -> impl Stream<Item = Result<Bytes, QueryError>> {
    // The writer writes into a shared buffer that is drained after each batch.
    let writer =
        arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &schema).map_err(|e| QueryError::Encode(e.to_string()));
    futures::stream::unfold((Some(writer), batches), |(writer, mut batches)| async move {
        let mut writer = match writer? {
            Ok(w) => w,
            Err(e) => return Some((Err(e), (None, batches))),
        };
        match batches.next().await {
            Some(Ok(batch)) => {
                if let Err(e) = writer.write(&batch) {
                    return Some((Err(QueryError::Encode(e.to_string())), (None, batches)));
                }
                let chunk = std::mem::take(writer.get_mut());
                Some((Ok(Bytes::from(chunk)), (Some(Ok(writer)), batches)))
            }
            Some(Err(e)) => Some((Err(e), (None, batches))),
            None => {
                if let Err(e) = writer.finish() {
                    return Some((Err(QueryError::Encode(e.to_string())), (None, batches)));
                }
                let chunk = std::mem::take(writer.get_mut());
                Some((Ok(Bytes::from(chunk)), (None, batches)))
            }
        }
    })
}

/// `{"columns": [...], "rows": [...], "truncated": bool, "row_limit": n, "elapsed_ms": n}`;
/// an error after the first rows is reported in an `"error"` member instead of `truncated`.
fn json_document(
    schema: SchemaRef,
    batches: futures::stream::BoxStream<'static, Result<RecordBatch, QueryError>>,
    max_rows: usize,
    started: std::time::Instant,
) -> impl Stream<Item = Result<Bytes, QueryError>> {
    struct State {
        batches: futures::stream::BoxStream<'static, Result<RecordBatch, QueryError>>,
        rows: usize,
        done: bool,
    }
    let head = format!("{{\"columns\":{},\"rows\":[", columns_json(&schema));
    let state = State { batches, rows: 0, done: false };
    futures::stream::once(async move { Ok(Bytes::from(head)) }).chain(futures::stream::unfold(
        state,
        move |mut st| async move {
            if st.done {
                return None;
            }
            let tail = |st: &State, truncated: bool, error: Option<String>| {
                let mut t = format!("],\"truncated\":{truncated},\"row_limit\":{max_rows},\"row_count\":{}", st.rows);
                if let Some(e) = error {
                    t.push_str(&format!(
                        ",\"error\":{{\"code\":\"query_failed\",\"message\":{}}}",
                        serde_json::Value::String(e)
                    ));
                }
                t.push_str(&format!(",\"elapsed_ms\":{}}}", started.elapsed().as_millis()));
                Bytes::from(t)
            };
            match st.batches.next().await {
                Some(Ok(batch)) => {
                    let room = max_rows - st.rows;
                    let truncated = batch.num_rows() > room;
                    let batch = if truncated { batch.slice(0, room) } else { batch };
                    let mut chunk = match batch_to_ndjson(&batch) {
                        Ok(c) => c,
                        Err(e) => return Some((Err(e), st)),
                    };
                    // NDJSON rows never contain a raw newline: turn the separators into commas.
                    if chunk.last() == Some(&b'\n') {
                        chunk.pop();
                    }
                    for b in chunk.iter_mut() {
                        if *b == b'\n' {
                            *b = b',';
                        }
                    }
                    let mut out = Vec::with_capacity(chunk.len() + 1);
                    if st.rows > 0 && !chunk.is_empty() {
                        out.push(b',');
                    }
                    out.extend_from_slice(&chunk);
                    st.rows += batch.num_rows();
                    if truncated || st.rows >= max_rows {
                        // Peek whether more rows exist only when the limit was hit exactly.
                        let more = truncated || matches!(st.batches.next().await, Some(Ok(b)) if b.num_rows() > 0);
                        out.extend_from_slice(&tail(&st, more, None));
                        st.done = true;
                    }
                    Some((Ok(Bytes::from(out)), st))
                }
                Some(Err(e)) => {
                    st.done = true;
                    let t = tail(&st, false, Some(e.to_string()));
                    Some((Ok(t), st))
                }
                None => {
                    st.done = true;
                    let t = tail(&st, false, None);
                    Some((Ok(t), st))
                }
            }
        },
    ))
}
