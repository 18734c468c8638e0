//! A request body, as NDJSON or JSON: split into events, each checked, encoded as in a WAL
//! record, decoded, and built into an Arrow batch as the flusher does (from the events'
//! leaves), and again by flattening each event's JSON.
//!
//! Invariants: nothing panics; every accepted event survives the encoding; line numbers
//! are within the body; at most 100 errors are reported; accepted events build a batch with
//! one row each, the same batch both ways.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use logyard_core::batch::{BatchBuilder, PendingEvent, base_schema};
use logyard_core::encoded::EventsDecoder;
use logyard_core::parse::{BodyFormat, MAX_REPORTED_ERRORS, parse_body};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let format = if selector & 1 == 0 { BodyFormat::Ndjson } else { BodyFormat::Json };
    let parsed = parse_body(body, format, 1_764_000_000_000_000);
    assert_eq!(parsed.accepted, parsed.events.len());
    assert!(parsed.errors.len() <= MAX_REPORTED_ERRORS.min(parsed.rejected));
    let lines = body.split(|b| *b == b'\n').count().max(1);
    for e in &parsed.errors {
        assert!(e.line >= 1, "line numbers are 1-based");
        if format == BodyFormat::Ndjson {
            assert!(e.line <= lines, "line {} of {lines}", e.line);
        }
    }
    if format == BodyFormat::Ndjson {
        assert!(parsed.accepted + parsed.rejected <= lines);
    }

    let encoded = parsed.events.finish();
    let mut decoder = EventsDecoder::new(&encoded);
    let (mut events, mut leaves) = (Vec::new(), Vec::new());
    while let Some(e) = decoder.next_with_leaves(&mut leaves) {
        events.push((e.expect("an accepted event decodes"), std::mem::take(&mut leaves)));
    }
    assert_eq!(events.len(), parsed.accepted);
    let mut from_leaves = BatchBuilder::new(Arc::new(base_schema()), 1000);
    let mut flattened = BatchBuilder::new(Arc::new(base_schema()), 1000);
    for (e, leaves) in &events {
        from_leaves.push_leaves(e.time, e.text, leaves, decoder.paths()).expect("an event's leaves build");
        flattened.push(PendingEvent { time: e.time, source: e.source, text: e.text }).expect("an accepted event flattens");
    }
    let batch = from_leaves.finish().expect("accepted events build a batch");
    assert_eq!(batch.num_rows(), events.len());
    assert_eq!(batch, flattened.finish().expect("and flattened"), "leaves and flattening agree");
});
