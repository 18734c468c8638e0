//! A Loki push through `logyard_protocols::loki::LokiPush`. The first byte picks the encoding
//! (bit 0: JSON, else snappy-compressed protobuf), whether the caller names a stream (bit 1),
//! whether entries are routed by their `app` label (bit 2), whether the target compresses the
//! rest of the input with snappy itself (bit 3, protobuf only: so that mutations reach the
//! protobuf and label parsers), the limit on the decompressed push (bit 4: 4 KiB, else
//! 1 MiB) and whether rows are built as entries are read (bit 5). Memory is bounded by libFuzzer's `-rss_limit_mb` (`scripts/fuzz.sh`).
//!
//! Invariants: nothing panics; a snappy push that declares a decompressed length above the
//! limit is refused with `TooLarge` (before it is decompressed); otherwise a push is refused
//! only as `bad_loki_push`; every entry becomes one event or one rejection, counted against
//! the stream it was meant for; when none is rejected, each stream's events are its entries
//! in order, with their line as `message` and their time in nanoseconds as `timestamp`;
//! every event passes the common checks (decodes, `check_line`, batch); rows built as the
//! entries are read are those the flush builds from the events.

#![no_main]

mod common;

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use logyard_core::StreamName;
use logyard_protocols::loki::{LokiChoice, LokiPush, PushRequest, parse_labels};
use logyard_protocols::{Decoder, ProtocolError};
use prost::Message;
use serde_json::{Map, Value};

/// One entry as the target reads it: (nanoseconds, line).
type Entry = (i128, String);

/// The decompressed length a snappy block declares: its leading varint, of at most 5 bytes.
fn declared_len(body: &[u8]) -> Option<u64> {
    let mut len = 0u64;
    for (i, b) in body.iter().take(5).enumerate() {
        len |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(len);
        }
    }
    None
}

/// The labels and entries of each stream of a JSON push.
fn json_streams(body: &[u8]) -> Vec<(Map<String, Value>, Vec<Entry>)> {
    let push: Value = serde_json::from_slice(body).expect("decoded, so the push reads");
    let streams = push["streams"].as_array().expect("a push has streams");
    streams
        .iter()
        .map(|s| {
            let labels = s.get("stream").and_then(Value::as_object).cloned().unwrap_or_default();
            let values = s["values"].as_array().expect("a stream has values");
            let entries = values
                .iter()
                .map(|v| (v[0].as_str().unwrap().parse().unwrap(), v[1].as_str().unwrap().to_owned()))
                .collect();
            (labels, entries)
        })
        .collect()
}

/// The labels and entries of each stream of a protobuf push.
fn protobuf_streams(raw: &[u8]) -> Vec<(Map<String, Value>, Vec<Entry>)> {
    let push = PushRequest::decode(raw).expect("decoded, so the push reads");
    push.streams
        .into_iter()
        .map(|s| {
            let entries = s
                .entries
                .into_iter()
                .map(|e| {
                    let t = e.timestamp.unwrap_or_default();
                    (i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos), e.line)
                })
                .collect();
            (parse_labels(&s.labels).expect("decoded, so the labels read"), entries)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let json = selector & 1 != 0;
    let named = (selector & 2 != 0).then(|| common::stream("named"));
    let choice = LokiChoice { label: (selector & 4 != 0).then(|| "app".to_owned()), default: common::stream("loki") };
    let max_bytes = if selector & 16 != 0 { 4 << 10 } else { 1 << 20 };
    let compressed;
    let body = if !json && selector & 8 != 0 {
        compressed = snap::raw::Encoder::new().compress_vec(rest).expect("snappy compresses");
        &compressed[..]
    } else {
        rest
    };
    let rows = (selector & 32 != 0).then(common::rows_schema);
    let push = LokiPush { json, stream: named.clone(), choice: choice.clone(), max_bytes, rows: rows.clone() };
    let result = push.decode(body, common::RECEIVED);
    let declared = if json { None } else { declared_len(body) };
    if let Some(len) = declared
        && len > max_bytes as u64
        && len <= u64::from(u32::MAX)
    {
        assert!(matches!(result, Err(ProtocolError::TooLarge(_))), "{len} bytes declared: {result:?}");
        return;
    }
    let d = match result {
        Ok(d) => d,
        Err(ProtocolError::Malformed { code: "bad_loki_push", .. }) => return,
        Err(e) => panic!("a push within the limit is refused only as malformed: {e:?}"),
    };
    let streams = common::check_decoded(&d);
    if let Some(rows) = &rows {
        common::check_rows(&d, rows);
    }

    let pushed = if json {
        json_streams(body)
    } else {
        let raw = snap::raw::Decoder::new().decompress_vec(body).expect("decoded, so it decompresses");
        assert!(raw.len() <= max_bytes, "{} bytes decompressed, over the limit", raw.len());
        protobuf_streams(&raw)
    };
    let mut expected: BTreeMap<StreamName, Vec<Entry>> = BTreeMap::new();
    for (labels, entries) in pushed {
        let target = named.clone().or_else(|| {
            let label = choice.label.as_deref()?;
            labels.get(label)?.as_str().and_then(StreamName::from_foreign)
        });
        expected.entry(target.unwrap_or_else(|| choice.default.clone())).or_default().extend(entries);
    }
    expected.retain(|_, entries| !entries.is_empty());
    let entries: usize = expected.values().map(Vec::len).sum();
    assert_eq!(d.event_count() + d.rejected.total(), entries, "entries = events + rejected");
    for (stream, n) in &d.rejected.by_stream {
        let stream = stream.as_ref().expect("an entry always has a stream");
        assert!(expected[stream].len() >= *n, "{n} rejected of {stream}");
    }
    if d.rejected.total() > 0 {
        return;
    }
    assert_eq!(expected.keys().collect::<Vec<_>>(), streams.keys().collect::<Vec<_>>());
    for (stream, entries) in &expected {
        for ((ns, line), event) in entries.iter().zip(&streams[stream]) {
            assert_eq!(event.str_field("message"), Some(line.as_str()), "{}", event.text);
            let ns = (*ns).clamp(0, i128::from(i64::MAX)) as i64;
            assert_eq!(event.fields.get("timestamp").and_then(Value::as_i64), Some(ns), "{}", event.text);
        }
    }
});
