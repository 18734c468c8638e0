//! A Firehose HTTP endpoint delivery request through `logyard_protocols::firehose::Firehose`.
//! The first byte picks whether the rest is the request body (bit 0 clear) or the records'
//! bytes, separated by 0x1e, which the target base64-encodes into a request itself (so that
//! mutations reach the records); bit 1 whether rows are built as the records are read.
//!
//! Invariants: nothing panics; a request is refused only as `bad_firehose_request`; a
//! request whose records are canonical base64 (as the `base64` crate reads it) decodes to
//! the concatenation of its records decoded one by one with `records::decode_record`, and is
//! refused exactly when one of them is; every event is in the request's stream, counted
//! rejected there; every event passes the common checks; rows built as the records are read
//! are those the flush builds from the events (whose leaves are then left out of them).

#![no_main]

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use logyard_core::encoded::{EventsEncoder, times_and_texts};
use logyard_protocols::firehose::Firehose;
use logyard_protocols::records::decode_record;
use logyard_protocols::{Decoder, ProtocolError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    request_id: String,
    timestamp: i64,
    records: Vec<Record>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    data: String,
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else { return };
    let built;
    let body = if selector & 1 != 0 {
        let records = rest.split(|b| *b == 0x1e).map(|r| Record { data: STANDARD.encode(r) }).collect();
        let request = Request {
            request_id: "ed4acda5-034f-9f42-bba1-f29aea6d7d8f".into(),
            timestamp: 1_578_090_901_599,
            records,
        };
        built = serde_json::to_vec(&request).expect("a request serializes");
        &built[..]
    } else {
        rest
    };
    let stream = common::stream("fh");
    let rows = (selector & 2 != 0).then(common::rows_schema);
    let result = Firehose { stream: stream.clone(), rows: rows.clone() }.decode(body, common::RECEIVED);
    if let Ok(d) = &result {
        let streams = common::check_decoded(d);
        if let Some(rows) = &rows {
            common::check_rows(d, rows);
        }
        assert!(streams.keys().all(|s| *s == stream), "events only in the request's stream");
        assert!(d.rejected.by_stream.keys().all(|s| s.as_ref() == Some(&stream)), "{:?}", d.rejected);
    }
    if let Err(e) = &result {
        assert!(matches!(e, ProtocolError::Malformed { code: "bad_firehose_request", .. }), "{e:?}");
    }

    // The records, decoded one by one.
    let Ok(request) = serde_json::from_slice::<Request>(body) else {
        assert!(result.is_err(), "the request does not read, yet it was decoded");
        return;
    };
    let Ok(records) = request.records.iter().map(|r| STANDARD.decode(&r.data)).collect::<Result<Vec<_>, _>>() else {
        return;
    };
    let mut events = EventsEncoder::default();
    let mut rejected = 0;
    for data in &records {
        match decode_record(data, common::RECEIVED, &mut events, &mut None) {
            Ok(outcome) => rejected += outcome.rejected,
            Err(_) => {
                assert!(result.is_err(), "a record does not decode, yet the request was decoded");
                return;
            }
        }
    }
    let d = result.unwrap_or_else(|e| panic!("every record decodes, yet the request was refused: {e}"));
    let decoded = d.streams.get(&stream).map_or(&[][..], |e| e.as_bytes());
    if rows.is_none() {
        assert_eq!(decoded, events.as_bytes(), "the request's events are its records' events");
    } else {
        // Rows built: the events' leaves are left out, their texts and times the same.
        assert_eq!(
            times_and_texts(decoded),
            times_and_texts(events.as_bytes()),
            "the request's events are its records' events"
        );
    }
    assert_eq!(d.rejected.total(), rejected, "the request's rejections are its records'");
});
