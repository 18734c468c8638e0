//! An Elasticsearch `_bulk` body through `logyard_protocols::elastic::Bulk`. The first byte
//! picks the request's options: an index in the path or none, a `logs-` prefix to strip, date
//! suffixes stripped or kept, rows built as documents are read or not.
//!
//! Invariants: nothing panics; a body is refused as a whole only as Elasticsearch's
//! `illegal_argument_exception`; otherwise every item has one outcome, items = events +
//! rejected items, an accepted item's event is its document line, verbatim, in the stream its
//! index maps to, in order; refused items are counted against the stream their index maps
//! to (or none); `update` and `delete` are always refused; every event passes the common
//! checks (decodes, `check_line`, batch); rows built as the documents are read are those the
//! flush builds from the events.

#![no_main]

mod common;

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use logyard_core::StreamName;
use logyard_protocols::elastic::{Bulk, IndexMapping, Outcome};
use logyard_protocols::{Decoder, ProtocolError};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let mapping = IndexMapping {
        strip_prefix: if selector & 2 != 0 { "logs-".into() } else { String::new() },
        strip_date_suffix: selector & 4 != 0,
    };
    let path_index = (selector & 1 != 0).then(|| "web".to_owned());
    // Rows built as the documents are read.
    let rows = (selector & 8 != 0).then(common::rows_schema);
    let bulk = Bulk { path_index, mapping: mapping.clone(), rows: rows.clone() };
    let d = match bulk.decode(body, common::RECEIVED) {
        Ok(d) => d,
        Err(ProtocolError::Malformed { code: "illegal_argument_exception", .. }) => return,
        Err(e) => panic!("a bulk body is refused only as malformed: {e:?}"),
    };
    let streams = common::check_decoded(&d);
    if let Some(rows) = &rows {
        common::check_rows(&d, rows);
    }
    assert_eq!(d.items.len(), d.event_count() + d.rejected.total(), "items = events + rejected");

    // The non-blank lines, as the decoder reads them: each item takes its action line and,
    // unless it is a delete, the line after it.
    let mut lines = body
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    let mut accepted: BTreeMap<StreamName, Vec<&[u8]>> = BTreeMap::new();
    let mut refused: BTreeMap<Option<StreamName>, usize> = BTreeMap::new();
    for item in &d.items {
        lines.next().expect("an item has its action line");
        let doc = if item.action == "delete" { None } else { lines.next() };
        let mapped = mapping.stream(&item.index).ok();
        match &item.outcome {
            Outcome::Accepted(stream) => {
                assert!(matches!(item.action, "index" | "create"), "{} accepted", item.action);
                assert_eq!(Some(stream), mapped.as_ref(), "index {:?}", item.index);
                accepted.entry(stream.clone()).or_default().push(doc.expect("an accepted item has a document"));
            }
            Outcome::Refused { status, kind, reason } => {
                assert_eq!(*status, 400);
                assert!(!reason.is_empty());
                match item.action {
                    "update" | "delete" => assert_eq!(*kind, "action_request_validation_exception"),
                    "index" | "create" => {
                        let expected = if mapped.is_some() {
                            "document_parsing_exception"
                        } else {
                            "invalid_index_name_exception"
                        };
                        assert_eq!(*kind, expected, "{reason}");
                    }
                    other => panic!("an item with action {other:?}"),
                }
                *refused.entry(mapped).or_default() += 1;
            }
        }
    }
    assert_eq!(refused, d.rejected.by_stream, "refused items by stream");
    assert_eq!(accepted.keys().collect::<Vec<_>>(), streams.keys().collect::<Vec<_>>());
    for (stream, docs) in &accepted {
        let texts: Vec<&[u8]> = streams[stream].iter().map(|e| e.text.as_bytes()).collect();
        assert_eq!(&texts, docs, "the events of {stream} are their documents, in order");
    }
});
