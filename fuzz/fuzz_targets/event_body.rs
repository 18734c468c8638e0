//! A request body, as NDJSON or JSON: split into events, each checked, encoded as in a WAL
//! record, decoded, and built into an Arrow batch as the flusher does (from the events'
//! leaves), and again by flattening each event's JSON.
//!
//! Invariants: nothing panics; every accepted event survives the encoding; line numbers
//! are within the body; at most 100 errors are reported; accepted events build a batch with
//! one row each, the same batch both ways.
//!
//! With bit 1 of the first byte (NDJSON), the body is read again with its rows built as its
//! lines are read, against the schema of that batch (`parse_body_into_rows`): the same events
//! and errors; rows, when built, that are those the flush builds; and a record (whose leaves
//! are then left out) that builds those rows again as a replay reads it.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use logyard_core::batch::{BatchBuilder, Held, PendingEvent, base_schema, batches_from_held, batches_from_payloads};
use logyard_core::encoded::{EventsDecoder, times_and_texts};
use logyard_core::parse::{BodyFormat, MAX_REPORTED_ERRORS, parse_body, parse_body_into_rows};

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
        flattened
            .push(PendingEvent { time: e.time, source: e.source, text: e.text })
            .expect("an accepted event flattens");
    }
    let batch = from_leaves.finish().expect("accepted events build a batch");
    assert_eq!(batch.num_rows(), events.len());
    assert_eq!(batch, flattened.finish().expect("and flattened"), "leaves and flattening agree");

    if selector & 2 == 0 || format != BodyFormat::Ndjson {
        return;
    }
    let schema = batch.schema();
    let (read, rows) = parse_body_into_rows(body, format, 1_764_000_000_000_000, &schema, 1000);
    assert_eq!((read.accepted, read.rejected, &read.errors), (parsed.accepted, parsed.rejected, &parsed.errors));
    assert_eq!(times_and_texts(read.events.as_bytes()), times_and_texts(&encoded), "the record holds the same events");
    let build = |held| batches_from_held(schema.clone(), [(1, held)], 1000, 1 << 20).expect("held events build");
    let want = build(Held::Encoded(&encoded));
    assert_eq!(build(Held::Encoded(read.events.as_bytes())), want, "the record, replayed, builds the same rows");
    let replayed = batches_from_payloads(schema.clone(), [(1, read.events.as_bytes())], 1000, 1 << 20);
    assert_eq!(replayed.expect("a record builds"), want);
    if let Some(rows) = rows {
        assert_eq!(rows.num_rows(), parsed.accepted);
        assert_eq!(build(Held::Prepared(&rows)), want, "rows built as read are the flush's");
    }
});
