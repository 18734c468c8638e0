//! One Kinesis or Firehose record's bytes through `logyard_protocols::records::decode_record`:
//! NDJSON, text lines, one pretty-printed document, or a CloudWatch Logs envelope, possibly
//! gzip-compressed. The first byte picks whether the target gzips the rest itself (bit 0),
//! so that mutations reach what is inside the compression (CloudWatch Logs always gzips), and
//! whether rows are built as the record is read (bit 1).
//!
//! Invariants: nothing panics; only gzip can fail (as `bad_record`, or `TooLarge`); gzip is
//! transparent (a gzipped record gives the same events as the record itself); the outcome
//! counts the events written; a `DATA_MESSAGE` envelope gives one event or one rejection per
//! log event, each with its `log_group` and `log_stream`, and any other envelope none;
//! otherwise, outside a pretty-printed document, every non-blank line gives one event or one
//! rejection: the line itself when it is an event, else `{"message": line}`, and a
//! rejection only when it is not UTF-8; every event passes the common checks; rows built as
//! the record is read are those the flush builds from its events.

#![no_main]

mod common;

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use logyard_core::batch::{BatchBuilder, DEFAULT_MAX_COLUMNS};
use logyard_core::encoded::EventsEncoder;
use logyard_core::event::check_line;
use logyard_protocols::ProtocolError;
use logyard_protocols::records::{RecordOutcome, decode_record};
use serde::Deserialize;

/// A CloudWatch Logs subscription envelope, with the fields the decoder reads.
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
#[allow(dead_code, reason = "read as the decoder reads it")]
struct LogEvent {
    timestamp: Option<i64>,
    message: String,
}

fn decode(data: &[u8], rows: bool) -> Result<(RecordOutcome, EventsEncoder), ProtocolError> {
    let mut out = EventsEncoder::default();
    let table = rows.then(|| (common::rows_schema().0)(&common::stream("kinesis")).expect("a schema").0);
    let mut builder = table.clone().map(|t| BatchBuilder::new(t, DEFAULT_MAX_COLUMNS));
    let outcome = decode_record(data, common::RECEIVED, &mut out, &mut builder)?;
    if let (Some(table), Some(builder)) = (table, builder)
        && let Some(batch) = builder.finish_prepared().expect("rows finish")
    {
        common::check_batch(&table, &out, &batch);
    }
    Ok((outcome, out))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip writes to memory");
    e.finish().expect("gzip finishes")
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else { return };
    let gzipped = rest.starts_with(&[0x1f, 0x8b]);
    let rows = selector & 2 != 0;
    if selector & 1 != 0 && !gzipped {
        let plain = decode(rest, rows).expect("a record that is not gzip always decodes");
        let (outcome, events) = decode(&gzip(rest), rows).expect("a record gzipped here decodes");
        assert_eq!(outcome, plain.0, "gzip is transparent");
        assert_eq!(events.as_bytes(), plain.1.as_bytes(), "gzip is transparent");
        check(rest, outcome, &events);
        return;
    }
    match decode(rest, rows) {
        Ok((outcome, events)) if !gzipped => check(rest, outcome, &events),
        Ok((outcome, events)) => {
            assert_eq!(outcome.events, events.len());
            common::check_events(&events);
        }
        Err(ProtocolError::Malformed { code: "bad_record", .. } | ProtocolError::TooLarge(_)) if gzipped => {}
        Err(e) => panic!("a record fails only in gzip (gzip: {gzipped}): {e:?}"),
    }
});

/// Checks what the decoder made of `data`, which is not gzip.
fn check(data: &[u8], outcome: RecordOutcome, events: &EventsEncoder) {
    assert_eq!(outcome.events, events.len(), "the outcome counts the events written");
    let events = common::check_events(events);

    let envelope =
        (data.first() == Some(&b'{') && contains(data, b"\"messageType\"") && contains(data, b"\"logEvents\""))
            .then(|| serde_json::from_slice::<Envelope>(data).ok())
            .flatten();
    if let Some(envelope) = envelope {
        let expected = if envelope.message_type == "DATA_MESSAGE" { envelope.log_events.len() } else { 0 };
        assert_eq!(outcome.events + outcome.rejected, expected, "one event or rejection per log event");
        for e in &events {
            if envelope.log_group.is_some() {
                assert!(e.keys.contains("log_group"), "{}", e.text);
            }
            if envelope.log_stream.is_some() {
                assert!(e.keys.contains("log_stream"), "{}", e.text);
            }
        }
        return;
    }
    let whole = data.trim_ascii();
    if whole.first() == Some(&b'{')
        && whole.contains(&b'\n')
        && serde_json::from_slice::<serde_json::Value>(whole).is_ok_and(|v| v.is_object())
    {
        assert_eq!((outcome.events, outcome.rejected), (1, 0), "a pretty-printed document is one event");
        return;
    }
    let mut events = events.iter();
    let mut rejected = 0;
    for line in data.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            rejected += 1;
            continue;
        };
        let event = events.next().expect("a line of text is an event");
        if check_line(line, common::RECEIVED).is_ok() {
            assert_eq!(event.text.as_bytes(), line, "an event line is kept as it is");
        } else {
            assert_eq!(event.str_field("message"), Some(text), "a line of text becomes its message: {}", event.text);
        }
    }
    assert!(events.next().is_none(), "more events than lines");
    assert_eq!(outcome.rejected, rejected, "lines that are not text are rejected");
}
