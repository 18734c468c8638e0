//! The same NDJSON events as each ingest protocol sends them, and how many each answer
//! accepted: for `logyard-bench load --protocol`.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::bail;
use base64::Engine;
use clap::ValueEnum;
use prost::Message;
use serde_json::{Value, json};

use logyard_protocols::loki::{EntryAdapter, PushRequest, StreamAdapter, Timestamp};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// `POST /api/v1/streams/{stream}/events`, NDJSON.
    Ndjson,
    /// `POST /_bulk`, create actions.
    Elasticsearch,
    /// `POST /v1/logs`, OTLP/protobuf, each line a record's body.
    Otlp,
    /// `POST /loki/api/v1/push`, snappy protobuf, each line an entry.
    Loki,
    /// `POST /api/v1/firehose/{stream}`, each line a record.
    Firehose,
}

/// One request: path, headers, body.
pub struct Request {
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: bytes::Bytes,
}

/// A `_bulk` answer's summary: whether any item failed, and one entry per item.
#[derive(serde::Deserialize)]
struct BulkAnswer {
    errors: bool,
    items: Vec<serde::de::IgnoredAny>,
}

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

fn lines(batch: &[u8]) -> impl Iterator<Item = &[u8]> {
    batch.split(|b| *b == b'\n').filter(|l| !l.is_empty())
}

impl Protocol {
    /// The request carrying `batch` (NDJSON lines) to `stream`.
    pub fn request(self, stream: &str, batch: &[u8]) -> Request {
        let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        match self {
            Protocol::Ndjson => Request {
                path: format!("/api/v1/streams/{stream}/events"),
                headers: vec![("content-type", "application/x-ndjson".into())],
                body: bytes::Bytes::copy_from_slice(batch),
            },
            Protocol::Elasticsearch => {
                let action = format!("{{\"create\":{{\"_index\":\"{stream}\"}}}}\n");
                let mut body = Vec::with_capacity(batch.len() * 2);
                for line in lines(batch) {
                    body.extend_from_slice(action.as_bytes());
                    body.extend_from_slice(line);
                    body.push(b'\n');
                }
                Request {
                    path: "/_bulk".into(),
                    headers: vec![("content-type", "application/x-ndjson".into())],
                    body: body.into(),
                }
            }
            Protocol::Otlp => {
                let log_records = lines(batch)
                    .map(|l| LogRecord {
                        time_unix_nano: now_ns as u64,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(String::from_utf8_lossy(l).into_owned())),
                        }),
                        ..Default::default()
                    })
                    .collect();
                let request = ExportLogsServiceRequest {
                    resource_logs: vec![ResourceLogs {
                        scope_logs: vec![ScopeLogs { log_records, ..Default::default() }],
                        ..Default::default()
                    }],
                };
                Request {
                    path: "/v1/logs".into(),
                    headers: vec![
                        ("content-type", "application/x-protobuf".into()),
                        ("x-logyard-stream", stream.into()),
                    ],
                    body: request.encode_to_vec().into(),
                }
            }
            Protocol::Loki => {
                let entries = lines(batch)
                    .map(|l| EntryAdapter {
                        timestamp: Some(Timestamp {
                            seconds: now_ns / 1_000_000_000,
                            nanos: (now_ns % 1_000_000_000) as i32,
                        }),
                        line: String::from_utf8_lossy(l).into_owned(),
                        structured_metadata: Vec::new(),
                    })
                    .collect();
                let push = PushRequest {
                    streams: vec![StreamAdapter { labels: format!("{{app=\"{stream}\"}}"), entries, hash: 0 }],
                };
                let body = snap::raw::Encoder::new().compress_vec(&push.encode_to_vec()).expect("snappy");
                Request {
                    path: "/loki/api/v1/push".into(),
                    headers: vec![("content-type", "application/x-protobuf".into())],
                    body: body.into(),
                }
            }
            Protocol::Firehose => {
                let b64 = base64::engine::general_purpose::STANDARD;
                let records: Vec<Value> = lines(batch).map(|l| json!({"data": b64.encode(l)})).collect();
                let id = format!("bench-{}", REQUEST_IDS.fetch_add(1, Ordering::Relaxed));
                let body = json!({"requestId": id, "timestamp": now_ns / 1_000_000, "records": records});
                Request {
                    path: format!("/api/v1/firehose/{stream}"),
                    headers: vec![("content-type", "application/json".into()), ("x-amz-firehose-request-id", id)],
                    body: serde_json::to_vec(&body).expect("serializes").into(),
                }
            }
        }
    }

    /// Events the answer says were taken (of `sent`).
    pub fn accepted(self, status: u16, body: &[u8], sent: usize) -> anyhow::Result<usize> {
        if !(200..300).contains(&status) {
            bail!("{status}: {}", String::from_utf8_lossy(body));
        }
        Ok(match self {
            Protocol::Ndjson => serde_json::from_slice::<Value>(body)?["accepted"].as_u64().unwrap_or(0) as usize,
            Protocol::Elasticsearch => {
                // As shippers do, the items are read only when the answer says some failed:
                // building a `Value` of every item's answer (about 190 bytes each) took more
                // of the client's core than the server spent on the request.
                let answer: BulkAnswer = serde_json::from_slice(body)?;
                if answer.errors {
                    let v: Value = serde_json::from_slice(body)?;
                    let items = v["items"].as_array().map_or(&[][..], Vec::as_slice);
                    items.iter().filter(|i| i["create"]["status"] == 201).count()
                } else if answer.items.len() != sent {
                    bail!("{} items answered for {sent} documents", answer.items.len());
                } else {
                    sent
                }
            }
            Protocol::Otlp => {
                let answer = ExportLogsServiceResponse::decode(body)?;
                sent - answer.partial_success.map_or(0, |p| p.rejected_log_records as usize)
            }
            Protocol::Loki | Protocol::Firehose => sent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bulk_answer_counts_its_created_items() {
        let es = Protocol::Elasticsearch;
        let created = r#"{"create":{"_index":"b","_id":"1","status":201}}"#;
        let all = format!(r#"{{"took":1,"errors":false,"items":[{created},{created}]}}"#);
        assert_eq!(es.accepted(200, all.as_bytes(), 2).unwrap(), 2);
        // An answer without an item per document is not taken at its word.
        let short = es.accepted(200, all.as_bytes(), 3).unwrap_err().to_string();
        assert!(short.contains("2 items answered for 3 documents"), "{short}");
        let refused = r#"{"create":{"_index":"b","status":400,"error":{"type":"document_parsing_exception"}}}"#;
        let some = format!(r#"{{"took":1,"errors":true,"items":[{created},{refused},{created}]}}"#);
        assert_eq!(es.accepted(200, some.as_bytes(), 3).unwrap(), 2);
        assert!(es.accepted(503, b"busy", 3).is_err());
    }
}
