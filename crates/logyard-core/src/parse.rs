//! Splitting a decoded body into checked events, and reporting the bad ones by line.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::batch::BatchBuilder;
use crate::encoded::{EventsEncoder, Leaf};
use crate::event::LineError;
use crate::time::Micros;

/// How the events are laid out in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON object per line.
    Ndjson,
    /// A JSON array of objects, or one object.
    Json,
}

/// At most this many line errors are reported per request.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// One rejected line (or array item), 1-based.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineReport {
    pub line: usize,
    pub message: String,
}

/// The checked events of one body, encoded for the write-ahead log, and what was rejected.
#[derive(Debug, Default)]
pub struct ParsedBody {
    pub events: EventsEncoder,
    pub accepted: usize,
    pub rejected: usize,
    /// The first [`MAX_REPORTED_ERRORS`] rejections.
    pub errors: Vec<LineReport>,
}

impl ParsedBody {
    fn reject(&mut self, line: usize, error: impl ToString) {
        self.rejected += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(LineReport { line, message: error.to_string() });
        }
    }

    fn accept(&mut self, text: &[u8], received: Micros, line: usize) {
        match self.events.push_line(text, received) {
            Ok(()) => self.accepted += 1,
            Err(e) => self.reject(line, e),
        }
    }
}

/// Checks every event of a body. Never fails as a whole: each bad line is reported alone.
pub fn parse_body(body: &[u8], format: BodyFormat, received: Micros) -> ParsedBody {
    match format {
        BodyFormat::Ndjson => parse_ndjson(body, received),
        BodyFormat::Json => parse_json(body, received),
    }
}

/// [`parse_body`], and the accepted events' rows against a table's `schema`, each event's
/// values put in their columns as its line is read. No rows when the body is not NDJSON, or
/// when [`BatchBuilder::finish_prepared`] gives none (the flush builds them then).
pub fn parse_body_into_rows(
    body: &[u8],
    format: BodyFormat,
    received: Micros,
    schema: &SchemaRef,
    max_columns: usize,
) -> (ParsedBody, Option<RecordBatch>) {
    if format != BodyFormat::Ndjson {
        return (parse_body(body, format, received), None);
    }
    let rows = BatchBuilder::with_capacity(schema.clone(), max_columns, body.len() / 320);
    let (parsed, rows) = parse_ndjson_with(body, received, Some(rows));
    (parsed, rows.and_then(|rows| rows.finish_prepared().ok().flatten()))
}

/// The lines of `body`, without their `\n` (found with memchr), the last one too when the
/// body does not end with one.
pub fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', body).chain([body.len()]).map(move |end| {
        let line = &body[start..end];
        start = end + 1;
        line
    })
}

fn parse_ndjson(body: &[u8], received: Micros) -> ParsedBody {
    parse_ndjson_with(body, received, None).0
}

/// NDJSON, with `rows` taking each accepted event (given up on when one cannot).
fn parse_ndjson_with<'b>(
    body: &'b [u8],
    received: Micros,
    mut rows: Option<BatchBuilder<'b>>,
) -> (ParsedBody, Option<BatchBuilder<'b>>) {
    let mut out =
        ParsedBody { events: EventsEncoder::with_capacity(body.len() + body.len() / 4), ..Default::default() };
    for (i, line) in lines(body).enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match push_line_with_rows(&mut out.events, line, received, &mut rows) {
            Ok(()) => out.accepted += 1,
            Err(e) => out.reject(i + 1, e),
        }
    }
    (out, rows)
}

/// Adds one line to `events` ([`EventsEncoder::push_line_with`]) and hands the event to
/// `rows`, which is given up on (`None`) when it cannot take it as the flush would.
pub fn push_line_with_rows<'b>(
    events: &mut EventsEncoder,
    line: &'b [u8],
    received: Micros,
    rows: &mut Option<BatchBuilder<'b>>,
) -> Result<(), LineError> {
    push_line_building_row(events, line, received, rows, |builder, time, text, leaves, paths| {
        builder.push_leaves(time, text, leaves, paths).is_ok()
    })
}

/// [`push_line_with_rows`] of a line that does not outlive the call: the rows copy its values
/// ([`BatchBuilder::push_leaves_copied`]).
pub fn push_line_copying_rows(
    events: &mut EventsEncoder,
    line: &[u8],
    received: Micros,
    rows: &mut Option<BatchBuilder<'_>>,
) -> Result<(), LineError> {
    push_line_building_row(events, line, received, rows, |builder, time, text, leaves, paths| {
        builder.push_leaves_copied(time, text, leaves, paths)
    })
}

/// Adds one line to `events` and, when one scan settled it, hands `take` the builder of
/// `rows` with the event's time, text and leaves (as [`EventsEncoder::push_line_with`] gives
/// them) to add its row; `rows` is given up on when `take` answers `false` or the scan did not
/// settle the event. While there are rows, the event's leaves are left out of `events`
/// ([`EventsEncoder::leave_out_leaves`]): the rows carry its values.
pub fn push_line_building_row<'l, 'b>(
    events: &mut EventsEncoder,
    line: &'l [u8],
    received: Micros,
    rows: &mut Option<BatchBuilder<'b>>,
    take: impl FnOnce(&mut BatchBuilder<'b>, Micros, &'l str, &[Leaf], &[Box<str>]) -> bool,
) -> Result<(), LineError> {
    let mut taken = rows.is_none();
    if rows.is_some() {
        events.leave_out_leaves();
    } else {
        events.keep_leaves();
    }
    let added = events.push_line_with(line, received, |time, text, leaves, paths| {
        if let Some(builder) = rows.as_mut() {
            taken = take(builder, time, text, leaves, paths);
        }
    })?;
    if !taken || !added {
        *rows = None;
        events.keep_leaves();
    }
    Ok(())
}

fn parse_json(body: &[u8], received: Micros) -> ParsedBody {
    let mut out =
        ParsedBody { events: EventsEncoder::with_capacity(body.len() + body.len() / 4), ..Default::default() };
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => {
            out.reject(1, LineError::InvalidUtf8 { offset: e.valid_up_to() });
            return out;
        }
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(items) => {
                for (i, item) in items.iter().enumerate() {
                    out.accept(item.get().as_bytes(), received, i + 1);
                }
            }
            Err(e) => out.reject(e.line(), LineError::InvalidJson(e.to_string())),
        }
    } else if trimmed.is_empty() {
        out.reject(1, LineError::InvalidJson("empty body".into()));
    } else if has_trailing_values(text) {
        // Several objects one per line, sent as application/json (Fluent Bit 1.9 does so
        // with `format json_lines`): read it as NDJSON.
        return parse_ndjson(body, received);
    } else {
        // One object (or something that is not, which check_line reports).
        out.accept(text.trim().as_bytes(), received, 1);
    }
    out
}

/// Whether the text is one JSON value followed by more.
fn has_trailing_values(text: &str) -> bool {
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
    matches!(values.next(), Some(Ok(_))) && matches!(values.next(), Some(Ok(_)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use bytes::Bytes;

    use super::*;
    use crate::batch::{
        CONFLICTS_COLUMN, DEFAULT_MAX_COLUMNS, Held, base_schema, batches_from_held, batches_from_payloads, fit_to,
    };
    use crate::encoded::{leaves_left_out, times_and_texts};
    /// Random requests of events: a few field names (some nested, some given twice), values of
    /// every JSON kind, times that repeat within and across requests, and sometimes no time.
    fn random_bodies(seed: u64, requests: usize, per_request: usize) -> Vec<String> {
        let mut state = seed | 1;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let names = ["a", "b", "c", "n.x", "n.y", "level", "msg"];
        let mut bodies = Vec::new();
        for _ in 0..requests {
            let mut body = String::new();
            for _ in 0..1 + next(per_request as u64) {
                let mut fields = Vec::new();
                if next(4) > 0 {
                    fields.push(format!(r#""ts":"2026-11-22T10:00:{:02}Z""#, next(3)));
                }
                for _ in 0..next(6) {
                    let name = names[next(names.len() as u64) as usize];
                    let value = match next(9) {
                        0 => "true".to_owned(),
                        1 => format!("{}", next(1000) as i64 - 500),
                        2 => format!("{}.5", next(100)),
                        3 => format!(r#""t{}""#, next(50)),
                        4 => r#""esc\"aped\u00e9""#.to_owned(),
                        5 => r#"[1,"two"]"#.to_owned(),
                        6 => "null".to_owned(),
                        7 => format!(r#"{{"deep":{}}}"#, next(9)),
                        _ => format!("{}", next(100)),
                    };
                    match name.split_once('.') {
                        Some((outer, inner)) => fields.push(format!(r#""{outer}":{{"{inner}":{value}}}"#)),
                        None => fields.push(format!(r#""{name}":{value}"#)),
                    }
                }
                body.push_str(&format!("{{{}}}\n", fields.join(",")));
                if next(20) == 0 {
                    body.push_str("not json\n");
                }
            }
            bodies.push(body);
        }
        bodies
    }

    /// `batches` with the schema of the last one, as a flush hands them on.
    fn fitted(batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
        let schema = batches.last().map(|b| b.schema()).unwrap();
        batches.iter().map(|b| fit_to(b, &schema).unwrap()).collect()
    }

    #[test]
    fn rows_built_as_requests_are_read_merge_into_the_rows_a_flush_would_build() {
        let received = 1_700_000_000_000_000;
        let (mut mixed, mut all, mut left_out_requests) = (0, 0, 0);
        for seed in 1..=40u64 {
            let bodies = random_bodies(seed, 12, 30);
            let payloads: Vec<_> =
                bodies.iter().map(|b| parse_body(b.as_bytes(), BodyFormat::Ndjson, received).events.finish()).collect();
            // The table as a first commit of some requests left it.
            let first = batches_from_payloads(
                Arc::new(base_schema()),
                payloads[..4].iter().enumerate().map(|(i, p)| (i as u64, &p[..])),
                DEFAULT_MAX_COLUMNS,
                1 << 20,
            )
            .unwrap();
            let schema = first.last().unwrap().schema();
            let read: Vec<(ParsedBody, Option<RecordBatch>)> = (bodies[4..].iter())
                .map(|b| parse_body_into_rows(b.as_bytes(), BodyFormat::Ndjson, received, &schema, DEFAULT_MAX_COLUMNS))
                .collect();
            for (body, (parsed, rows)) in bodies[4..].iter().zip(&read) {
                let alone = parse_body(body.as_bytes(), BodyFormat::Ndjson, received);
                assert_eq!((parsed.accepted, &parsed.errors), (alone.accepted, &alone.errors), "seed {seed}");
                let (got, want) = (times_and_texts(parsed.events.as_bytes()), times_and_texts(alone.events.as_bytes()));
                assert_eq!(got, want, "seed {seed}: the record holds the same events");
                // Rows built: the record leaves the values to them (an event without any is
                // written alike either way).
                let left_out = leaves_left_out(parsed.events.as_bytes()).unwrap();
                if rows.is_some() {
                    assert_eq!(left_out, parsed.accepted, "seed {seed}");
                    left_out_requests += 1;
                }
            }
            let rest = &payloads[4..];
            let records: Vec<Bytes> =
                read.iter().map(|(parsed, _)| Bytes::copy_from_slice(parsed.events.as_bytes())).collect();
            let prepared: Vec<&Option<RecordBatch>> = read.iter().map(|(_, rows)| rows).collect();
            let held = || {
                records
                    .iter()
                    .zip(&prepared)
                    .enumerate()
                    .map(|(i, (p, rows))| (10 + i as u64, rows.as_ref().map_or(Held::Encoded(p), Held::Prepared)))
            };
            let encoded = || rest.iter().enumerate().map(|(i, p)| (10 + i as u64, &p[..]));
            // One batch: new columns are typed from the same values either way.
            let want = batches_from_payloads(schema.clone(), encoded(), DEFAULT_MAX_COLUMNS, 1 << 20).unwrap();
            let got = batches_from_held(schema.clone(), held(), DEFAULT_MAX_COLUMNS, 1 << 20).unwrap();
            assert_eq!(fitted(got), fitted(want.clone()), "seed {seed}");
            // Replayed, the records alone (their leaves left out where rows were built) give
            // the same rows.
            let replayed = records.iter().enumerate().map(|(i, p)| (10 + i as u64, &p[..]));
            let got = batches_from_payloads(schema.clone(), replayed, DEFAULT_MAX_COLUMNS, 1 << 20).unwrap();
            assert_eq!(fitted(got), fitted(want), "seed {seed}: replayed");
            mixed += usize::from(prepared.iter().any(|p| p.is_some()) && prepared.iter().any(|p| p.is_none()));
            // Small batches, where no request brings a column: cut at the same rows.
            if prepared.iter().all(|p| p.is_some()) {
                all += 1;
                let want = batches_from_payloads(schema.clone(), encoded(), DEFAULT_MAX_COLUMNS, 7).unwrap();
                let got = batches_from_held(schema.clone(), held(), DEFAULT_MAX_COLUMNS, 7).unwrap();
                assert_eq!(fitted(got), fitted(want), "seed {seed}, batches of 7");
            }
        }
        assert!(mixed > 0 && all > 0, "{mixed} flushes of both kinds of requests, {all} of prepared ones alone");
        assert!(left_out_requests > 0);
    }

    #[test]
    fn requests_the_flush_must_build_get_no_rows() {
        let mut fields: Vec<Field> = base_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("a", DataType::Int64, true));
        fields.push(Field::new("b", DataType::Int64, true));
        let schema = Arc::new(Schema::new(fields.clone()));
        let prepared = |schema: &SchemaRef, lines: &[&str]| {
            let body = lines.join("\n");
            parse_body_into_rows(body.as_bytes(), BodyFormat::Ndjson, 0, schema, DEFAULT_MAX_COLUMNS)
                .1
                .map(|b| b.num_rows())
        };
        assert_eq!(prepared(&schema, &[r#"{"a": 1}"#, r#"{"b": 2, "a": 3}"#]), Some(2));
        assert_eq!(prepared(&schema, &[r#"{"a": 1}"#, r#"{"new": 2}"#]), None, "a new column");
        assert_eq!(prepared(&schema, &[r#"{"a": "x"}"#]), None, "_conflicts is new to the table");
        fields.push(Field::new(CONFLICTS_COLUMN, DataType::Utf8, true));
        let schema = Arc::new(Schema::new(fields));
        assert_eq!(prepared(&schema, &[r#"{"a": "x"}"#, r#"{"b": "y"}"#]), Some(2), "one conflict a row");
        assert_eq!(prepared(&schema, &[r#"{"a": "x", "b": "y"}"#]), None, "two conflicts in a row");
        assert_eq!(prepared(&schema, &[r#"{"a": 1}"#, "bad", r#"{"b": 2}"#]), Some(2), "a bad line is left out");
        // Arrays are kept as JSON text: `b` would hold this one's text as its one conflict, but
        // nesting past the scan's depth takes the full path, which gives no leaves.
        let deep = format!(r#"{{"a": 1, "b": {}1{}}}"#, "[".repeat(110), "]".repeat(110));
        assert_eq!(prepared(&schema, &[r#"{"b": [1]}"#]), Some(1), "an array, scanned");
        assert_eq!(prepared(&schema, &[r#"{"a": 1}"#, &deep]), None, "a line the scan leaves to the full path");
    }

    #[test]
    fn bad_lines_are_rejected_alone_with_their_numbers() {
        let body = b"{\"a\":1}\n\n{bad\n[1]\r\n{\"b\":\"\xff\"}\n{\"c\":3}\r\n";
        let p = parse_body(body, BodyFormat::Ndjson, 0);
        assert_eq!((p.accepted, p.rejected), (2, 3));
        let lines: Vec<_> = p.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 5]);
        assert!(p.errors[1].message.contains("got an array"));
        assert!(p.errors[2].message.contains("UTF-8"));
    }

    #[test]
    fn json_arrays_and_single_objects() {
        let p = parse_body(br#"[{"a":1}, 2, {"b":2}]"#, BodyFormat::Json, 0);
        assert_eq!((p.accepted, p.rejected), (2, 1));
        assert_eq!(p.errors[0].line, 2);
        let p = parse_body(br#" {"a":1} "#, BodyFormat::Json, 0);
        assert_eq!((p.accepted, p.rejected), (1, 0));
        let p = parse_body(br#"[{"a":1}, "#, BodyFormat::Json, 0);
        assert_eq!((p.accepted, p.rejected), (0, 1));
        // NDJSON labelled application/json is read line by line.
        let p = parse_body(b"{\"a\":1}\n{\"a\":2}\nnope\n", BodyFormat::Json, 0);
        assert_eq!((p.accepted, p.rejected), (2, 1));
        assert_eq!(p.errors[0].line, 3);
        // A pretty-printed object is one event.
        let p = parse_body(b"{\n  \"a\": 1\n}\n", BodyFormat::Json, 0);
        assert_eq!((p.accepted, p.rejected), (1, 0));
    }

    #[test]
    fn escaped_surrogates_must_pair() {
        let p =
            parse_body(b"{\"a\": \"\\ud800\"}\n{\"\\udfff\": 1}\n{\"ok\": \"\\ud83d\\ude00\"}", BodyFormat::Ndjson, 0);
        assert_eq!((p.accepted, p.rejected), (1, 2), "{:?}", p.errors);
        let lines: Vec<_> = p.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 2]);
        assert!(p.errors.iter().all(|e| e.message.starts_with("invalid JSON")), "{:?}", p.errors);
    }

    #[test]
    fn error_reports_are_capped() {
        let body = "x\n".repeat(500);
        let p = parse_body(body.as_bytes(), BodyFormat::Ndjson, 0);
        assert_eq!(p.rejected, 500);
        assert_eq!(p.errors.len(), MAX_REPORTED_ERRORS);
    }
}
