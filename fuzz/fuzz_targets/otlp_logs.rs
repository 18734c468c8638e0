//! An OTLP/HTTP logs body through `logyard_protocols::otlp::OtlpHttp`. The first byte picks
//! the encoding (bit 0: JSON, else protobuf), whether the caller names a stream (bit 1),
//! whether records are routed by their `service.name` attribute (bit 2) and whether rows are
//! built as records are read (bit 3).
//!
//! Invariants: nothing panics; a body is refused only as `bad_otlp_request`; otherwise every
//! log record of the request becomes one event or one rejection, counted against the stream
//! it was meant for: the caller's stream, else the one its attribute (of the record, else of
//! its resource) names, else the default; when none is rejected, each stream's events are its
//! records in order, with their body text, severity, trace and span ids and time; every event
//! passes the common checks (decodes, `check_line`, batch); rows built as the records are
//! read are those the flush builds from the events.

#![no_main]

mod common;

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use logyard_core::StreamName;
use logyard_protocols::otlp::{OtlpHttp, StreamChoice, parse_request};
use logyard_protocols::{Decoder, ProtocolError};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

const ATTRIBUTE: &str = "service.name";

fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let json = selector & 1 != 0;
    let named = (selector & 2 != 0).then(|| common::stream("named"));
    let choice =
        StreamChoice { attribute: (selector & 4 != 0).then(|| ATTRIBUTE.to_owned()), default: common::stream("otel") };
    let rows = (selector & 8 != 0).then(common::rows_schema);
    let decoder = OtlpHttp { json, stream: named.clone(), choice: choice.clone(), rows: rows.clone() };
    let d = match decoder.decode(body, common::RECEIVED) {
        Ok(d) => d,
        Err(ProtocolError::Malformed { code: "bad_otlp_request", .. }) => {
            assert!(parse_request(body, json).is_err(), "refused, yet the request reads");
            return;
        }
        Err(e) => panic!("an OTLP body is refused only as malformed: {e:?}"),
    };
    let streams = common::check_decoded(&d);
    if let Some(rows) = &rows {
        common::check_rows(&d, rows);
    }

    // Each record and the stream it is meant for, in order.
    let request = parse_request(body, json).expect("decoded, so the request reads");
    let mut expected: BTreeMap<StreamName, Vec<&LogRecord>> = BTreeMap::new();
    for resource_logs in &request.resource_logs {
        let resource = resource_logs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        for record in resource_logs.scope_logs.iter().flat_map(|s| &s.log_records) {
            let target = named.clone().or_else(|| {
                let key = choice.attribute.as_deref()?;
                string_attribute(&record.attributes, key)
                    .or_else(|| string_attribute(resource, key))
                    .and_then(StreamName::from_foreign)
            });
            expected.entry(target.unwrap_or_else(|| choice.default.clone())).or_default().push(record);
        }
    }
    let records: usize = expected.values().map(Vec::len).sum();
    assert_eq!(d.event_count() + d.rejected.total(), records, "records = events + rejected");
    for (stream, n) in &d.rejected.by_stream {
        let stream = stream.as_ref().expect("a record always has a stream");
        assert!(expected[stream].len() >= *n, "{n} rejected of {stream}");
    }
    for (stream, events) in &streams {
        assert!(events.len() <= expected.get(stream).map_or(0, Vec::len), "{} events in {stream}", events.len());
    }
    if d.rejected.total() > 0 {
        return;
    }
    assert_eq!(expected.keys().collect::<Vec<_>>(), streams.keys().collect::<Vec<_>>());
    for (stream, records) in &expected {
        for (record, event) in records.iter().zip(&streams[stream]) {
            let body = match record.body.as_ref().and_then(|b| b.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
                _ => None,
            };
            if let Some(body) = body {
                assert_eq!(event.str_field("body"), Some(body), "{}", event.text);
            }
            let severity = Some(record.severity_text.as_str()).filter(|s| !s.is_empty());
            assert_eq!(event.str_field("severity_text"), severity, "{}", event.text);
            let trace = Some(hex(&record.trace_id)).filter(|s| !s.is_empty());
            assert_eq!(event.str_field("trace_id"), trace.as_deref(), "{}", event.text);
            let span = Some(hex(&record.span_id)).filter(|s| !s.is_empty());
            assert_eq!(event.str_field("span_id"), span.as_deref(), "{}", event.text);
            let time = if record.time_unix_nano > 0 { record.time_unix_nano } else { record.observed_time_unix_nano };
            let written = event.fields.get("timestamp").and_then(serde_json::Value::as_u64);
            assert_eq!(written, Some(time).filter(|t| *t > 0), "{}", event.text);
        }
    }
});
