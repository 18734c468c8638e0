//! Records as Kinesis Data Streams and Firehose carry them: bytes that hold NDJSON, one JSON
//! document, plain text lines, or (gzip-compressed) a CloudWatch Logs subscription envelope.
//! Each becomes checked events.
//!
//! - JSON objects are events as they are.
//! - A line that is not a JSON object becomes `{"message": line}`: a record is kept whole.
//! - A CloudWatch Logs `DATA_MESSAGE` gives one event per log event: the message itself when
//!   it is a JSON object, else `{"message": ...}`, with `log_group`, `log_stream` and the log
//!   event's `timestamp` added when the event has none of its own. `CONTROL_MESSAGE`s (sent to
//!   check the subscription) hold no events.

use std::io::Read;
use std::sync::LazyLock;

use memchr::memmem::Finder;
use serde::Deserialize;
use serde_json::{Map, Value};

use logyard_core::batch::BatchBuilder;
use logyard_core::encoded::EventsEncoder;
use logyard_core::parse::push_line_copying_rows;
use logyard_core::time::{Micros, TIME_FIELDS};

use crate::ProtocolError;

fn malformed(message: String) -> ProtocolError {
    ProtocolError::Malformed { code: "bad_record", message }
}

/// Largest decompressed record (Kinesis records are at most 1 MiB, Firehose's 1,000 KiB).
const MAX_RECORD_BYTES: u64 = 64 << 20;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    message_type: String,
    log_group: Option<String>,
    log_stream: Option<String>,
    #[serde(default)]
    log_events: Vec<LogEvent>,
}

#[derive(Deserialize)]
struct LogEvent {
    timestamp: Option<i64>,
    message: String,
}

/// What one record gave: events added, and lines that could not be made events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecordOutcome {
    pub events: usize,
    pub rejected: usize,
}

/// Decodes one record's bytes into `out`, and into `rows` as well while it takes each event
/// as the flush would (it is given up on, `None`, when one is not:
/// [`logyard_core::parse::push_line_copying_rows`]).
pub fn decode_record(
    data: &[u8],
    received: Micros,
    out: &mut EventsEncoder,
    rows: &mut Option<BatchBuilder<'_>>,
) -> Result<RecordOutcome, ProtocolError> {
    let mut inflated;
    let data = if data.starts_with(&[0x1f, 0x8b]) {
        inflated = Vec::new();
        flate2::read::MultiGzDecoder::new(data)
            .take(MAX_RECORD_BYTES + 1)
            .read_to_end(&mut inflated)
            .map_err(|e| malformed(format!("gzip: {e}")))?;
        if inflated.len() as u64 > MAX_RECORD_BYTES {
            return Err(ProtocolError::TooLarge(format!(
                "a record decompresses to more than {MAX_RECORD_BYTES} bytes"
            )));
        }
        &inflated[..]
    } else {
        data
    };
    static MESSAGE_TYPE: LazyLock<Finder> = LazyLock::new(|| Finder::new(b"\"messageType\""));
    static LOG_EVENTS: LazyLock<Finder> = LazyLock::new(|| Finder::new(b"\"logEvents\""));
    if data.first() == Some(&b'{')
        && MESSAGE_TYPE.find(data).is_some()
        && LOG_EVENTS.find(data).is_some()
        && let Ok(envelope) = serde_json::from_slice::<Envelope>(data)
    {
        return Ok(cloudwatch(envelope, received, out, rows));
    }
    let mut outcome = RecordOutcome::default();
    let whole = data.trim_ascii();
    if whole.first() == Some(&b'{')
        && memchr::memchr(b'\n', whole).is_some()
        && let Ok(document @ Value::Object(_)) = serde_json::from_slice::<Value>(whole)
    {
        // One JSON document over several lines (pretty-printed): one event.
        let text = serde_json::to_vec(&document).expect("serializes");
        push(&text, received, out, rows, &mut outcome);
        return Ok(outcome);
    }
    for line in logyard_core::parse::lines(data) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match push_line_copying_rows(out, line, received, rows) {
            Ok(()) => outcome.events += 1,
            Err(_) => match std::str::from_utf8(line) {
                Ok(text) => {
                    let wrapped = serde_json::to_vec(&serde_json::json!({ "message": text })).expect("serializes");
                    push(&wrapped, received, out, rows, &mut outcome);
                }
                Err(_) => outcome.rejected += 1,
            },
        }
    }
    Ok(outcome)
}

fn push(
    text: &[u8],
    received: Micros,
    out: &mut EventsEncoder,
    rows: &mut Option<BatchBuilder<'_>>,
    outcome: &mut RecordOutcome,
) {
    match push_line_copying_rows(out, text, received, rows) {
        Ok(()) => outcome.events += 1,
        Err(_) => outcome.rejected += 1,
    }
}

fn cloudwatch(
    envelope: Envelope,
    received: Micros,
    out: &mut EventsEncoder,
    rows: &mut Option<BatchBuilder<'_>>,
) -> RecordOutcome {
    let mut outcome = RecordOutcome::default();
    if envelope.message_type != "DATA_MESSAGE" {
        return outcome;
    }
    for e in envelope.log_events {
        let mut object = match serde_json::from_str::<Value>(&e.message) {
            Ok(Value::Object(o)) => o,
            _ => Map::from_iter([("message".to_owned(), Value::String(e.message))]),
        };
        if let Some(group) = &envelope.log_group {
            object.entry("log_group").or_insert_with(|| Value::String(group.clone()));
        }
        if let Some(stream) = &envelope.log_stream {
            object.entry("log_stream").or_insert_with(|| Value::String(stream.clone()));
        }
        // A time in milliseconds beyond what microseconds hold is no time: the event keeps
        // the time it was received.
        if let Some(micros) = e.timestamp.and_then(|ms| ms.checked_mul(1000))
            && !TIME_FIELDS.iter().any(|f| object.contains_key(*f))
        {
            object.insert("timestamp".into(), Value::from(micros));
        }
        let text = serde_json::to_vec(&Value::Object(object)).expect("serializes");
        push(&text, received, out, rows, &mut outcome);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use logyard_core::encoded::decode_events;

    fn decode(data: &[u8]) -> (RecordOutcome, Vec<String>) {
        let mut out = EventsEncoder::default();
        let outcome = decode_record(data, 7, &mut out, &mut None).unwrap();
        let bytes = out.finish();
        (outcome, decode_events(&bytes).map(|e| e.unwrap().text.to_owned()).collect())
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn ndjson_and_text_lines_are_kept() {
        let (o, events) = decode(b"{\"a\":1}\nplain text here\n\n{\"b\":2}\r\n");
        assert_eq!(o, RecordOutcome { events: 3, rejected: 0 });
        assert_eq!(events, ["{\"a\":1}", "{\"message\":\"plain text here\"}", "{\"b\":2}"]);
        assert_eq!(decode(&gzip(b"{\"a\":1}\n")).1, ["{\"a\":1}"], "gzip is undone");
        assert_eq!(decode(b"\xff\xfe\n").0.rejected, 1, "bytes that are not text");
    }

    #[test]
    fn a_pretty_printed_document_is_one_event() {
        let (o, events) = decode(b"{\n  \"id\": \"k-1\",\n  \"n\": 1\n}\n");
        assert_eq!(o, RecordOutcome { events: 1, rejected: 0 });
        assert_eq!(events, ["{\"id\":\"k-1\",\"n\":1}"]);
        // Several documents, one per line, stay several events.
        assert_eq!(decode(b"{\"a\":1}\n{\"b\":2}").0.events, 2);
    }

    #[test]
    fn cloudwatch_logs_envelopes_become_their_log_events() {
        let envelope = br#"{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/aws/eks/shop/containers","logStream":"web-1","subscriptionFilters":["all"],"logEvents":[{"id":"1","timestamp":1764064800000,"message":"{\"level\":\"error\",\"msg\":\"boom\"}"},{"id":"2","timestamp":1764064801000,"message":"GET / 200"}]}"#;
        let (o, events) = decode(&gzip(envelope));
        assert_eq!(o.events, 2);
        let first: Value = serde_json::from_str(&events[0]).unwrap();
        assert_eq!(first["msg"], "boom");
        assert_eq!(first["log_group"], "/aws/eks/shop/containers");
        assert_eq!(first["log_stream"], "web-1");
        assert_eq!(first["timestamp"], 1_764_064_800_000_000i64);
        let second: Value = serde_json::from_str(&events[1]).unwrap();
        assert_eq!(second["message"], "GET / 200");
        let control = br#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination Firehose."}]}"#;
        assert_eq!(decode(&gzip(control)), (RecordOutcome::default(), vec![]));
        // Found by the kinesis_record fuzz target: a time in milliseconds too large for
        // microseconds overflowed.
        let far = br#"{"messageType":"DATA_MESSAGE","logGroup":"g","logStream":"s","logEvents":[{"id":"1","timestamp":176406480164802000,"message":"late"}]}"#;
        let (o, events) = decode(far);
        assert_eq!(o.events, 1);
        let event: Value = serde_json::from_str(&events[0]).unwrap();
        assert_eq!((event["message"].as_str(), event.get("timestamp")), (Some("late"), None));
    }
}
