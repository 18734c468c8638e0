//! What every decoder's output must satisfy, checked by each protocol target: the events of
//! a stream survive the WAL encoding, are JSON objects `check_line` accepts with the time they
//! were stored with, and build a batch with one row each; no stream is listed without events;
//! the rejections add up.

#![allow(dead_code, reason = "each target uses part of these checks")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use logyard_core::StreamName;
use logyard_core::batch::{BatchBuilder, PendingEvent, base_schema};
use logyard_core::encoded::{EventsEncoder, decode_events};
use logyard_core::event::check_line;
use logyard_core::time::Micros;
use logyard_protocols::{Decoded, Rejected};
use serde_json::value::RawValue;

/// The receive time every target passes.
pub const RECEIVED: Micros = 1_764_000_000_000_000;

/// One decoded event: its text, its top-level keys, and those of its top-level values that
/// are scalars (objects and arrays are not read: they may nest deeper than serde_json's
/// recursion limit, which `check_line` does not impose; nor are numbers beyond f64, valid
/// JSON that serde_json does not read as a `Value`).
pub struct Event {
    pub text: String,
    pub keys: BTreeSet<String>,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl Event {
    /// A top-level field that is a JSON string.
    pub fn str_field(&self, key: &str) -> Option<&str> {
        self.fields.get(key)?.as_str()
    }
}

/// Checks the events of one encoder and returns them in order.
pub fn check_events(events: &EventsEncoder) -> Vec<Event> {
    let decoded: Vec<_> = decode_events(events.as_bytes()).map(|e| e.expect("an event decodes")).collect();
    assert_eq!(decoded.len(), events.len(), "the encoder's count is its events");
    let mut builder = BatchBuilder::new(Arc::new(base_schema()), 1000);
    let mut out = Vec::with_capacity(decoded.len());
    for e in &decoded {
        let checked = check_line(e.text.as_bytes(), RECEIVED)
            .unwrap_or_else(|err| panic!("a decoded event passes check_line ({err}): {}", e.text));
        assert_eq!((checked.time, checked.source), (e.time, e.source), "{}", e.text);
        let raw = serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(e.text)
            .unwrap_or_else(|err| panic!("an event is a JSON object ({err}): {}", e.text));
        let keys = raw.keys().cloned().collect();
        let fields = raw
            .into_iter()
            .filter(|(_, v)| !v.get().starts_with(['{', '[']))
            .filter_map(|(k, v)| Some((k, serde_json::from_str(v.get()).ok()?)))
            .collect();
        builder
            .push(PendingEvent { time: e.time, source: e.source, text: e.text })
            .unwrap_or_else(|err| panic!("an event flattens ({err}): {}", e.text));
        out.push(Event { text: e.text.to_owned(), keys, fields });
    }
    let batch = builder.finish().expect("checked events build a batch");
    assert_eq!(batch.num_rows(), decoded.len());
    out
}

/// Checks a decoder's output and returns each stream's events.
pub fn check_decoded<I>(d: &Decoded<I>) -> BTreeMap<StreamName, Vec<Event>> {
    check_rejected(&d.rejected);
    let mut out = BTreeMap::new();
    for (stream, events) in &d.streams {
        assert!(!events.is_empty(), "stream {stream} is listed without events");
        out.insert(stream.clone(), check_events(events));
    }
    assert_eq!(out.values().map(Vec::len).sum::<usize>(), d.event_count());
    out
}

pub fn check_rejected(r: &Rejected) {
    assert_eq!(r.total(), r.by_stream.values().sum::<usize>());
    assert!(r.by_stream.values().all(|n| *n > 0), "a stream counted with no rejections: {r:?}");
    assert_eq!(r.first.is_some(), r.total() > 0, "a reason is kept exactly when something was rejected: {r:?}");
}

pub fn stream(name: &str) -> StreamName {
    StreamName::new(name).expect("a valid stream name")
}

/// A table schema the decoders build rows against as they read (`RowsSchema`): the base
/// columns and fields the protocols' events have, two of them of a type their values do not
/// always fit.
pub fn rows_schema() -> logyard_protocols::RowsSchema {
    use arrow_schema::{DataType, Field, Schema};
    let mut fields: Vec<Field> = base_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    for (name, data_type) in [
        ("message", DataType::Utf8),
        ("body", DataType::Utf8),
        ("severity_number", DataType::Int64),
        ("severity_text", DataType::Int64),
        ("labels.app", DataType::Utf8),
        ("status", DataType::Int64),
        ("msg", DataType::Utf8),
        ("level", DataType::Utf8),
    ] {
        fields.push(Field::new(name, data_type, true));
    }
    let schema = Arc::new(Schema::new(fields));
    logyard_protocols::RowsSchema(Arc::new(move |_: &StreamName| {
        Some((schema.clone(), logyard_core::batch::DEFAULT_MAX_COLUMNS))
    }))
}

/// Rows a decoder built as it read are those the flush builds from the stream's events.
pub fn check_rows<I>(d: &Decoded<I>, schema: &logyard_protocols::RowsSchema) {
    for (stream, batch) in &d.rows {
        let (table, _) = (schema.0)(stream).expect("rows only for a stream with a schema");
        check_batch(&table, &d.streams[stream], batch);
    }
}

/// Rows built as events were read, against `table`, are those the flush builds from them.
pub fn check_batch(table: &arrow_schema::SchemaRef, events: &EventsEncoder, batch: &arrow_array::RecordBatch) {
    use logyard_core::batch::{DEFAULT_MAX_COLUMNS, Held, batches_from_held};
    assert_eq!(batch.num_rows(), events.len(), "the rows are the events");
    let build = |held| batches_from_held(table.clone(), [(1, held)], DEFAULT_MAX_COLUMNS, 1 << 20).unwrap();
    assert_eq!(build(Held::Prepared(batch)), build(Held::Encoded(events.as_bytes())), "the rows of the events");
}
