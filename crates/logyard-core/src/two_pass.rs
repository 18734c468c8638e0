//! The two-pass path that the one-pass path replaced, kept as the oracle of a property test:
//! events checked at ingest ([`check_line`]) and flattened again at flush by serde_json
//! ([`crate::event::flatten`]), their values gathered per column and typed when the batch is
//! built, as `BatchBuilder` did before it built columns as events arrive. The test holds the
//! one-pass path ([`parse_body`] and [`batches_from_payloads`]) to the same rows and the same
//! per-line errors for random event sets.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::batch::{
    PendingEvent, add_conflict, assemble, base_schema, batches_from_payloads, build_column, infer_type,
};
use crate::event::{Scalar, check_line, flatten};
use crate::parse::{BodyFormat, MAX_REPORTED_ERRORS, parse_body};

const BATCH_ROWS: usize = 64 * 1024;

/// One column's values: row, value, JSON text.
type Values<'a> = Vec<(u32, Scalar<'a>, &'a str)>;

/// The builder as it was: values kept per column, typed at the end.
struct TwoPassBuilder<'a> {
    schema: SchemaRef,
    max_columns: usize,
    times: Vec<i64>,
    columns: Vec<(String, Values<'a>)>,
    index: HashMap<String, usize>,
}

impl<'a> TwoPassBuilder<'a> {
    fn push(&mut self, event: PendingEvent<'a>) {
        let row = self.times.len() as u32;
        let (columns, index) = (&mut self.columns, &mut self.index);
        flatten(event.text, event.source, |name, scalar, raw| {
            let i = *index.entry(name.to_owned()).or_insert_with(|| {
                columns.push((name.to_owned(), Vec::new()));
                columns.len() - 1
            });
            let values = &mut columns[i].1;
            if let Some(last) = values.last_mut()
                && last.0 == row
            {
                *last = (row, scalar, raw.get());
            } else {
                values.push((row, scalar, raw.get()));
            }
        })
        .unwrap();
        self.times.push(event.time);
    }

    fn finish(self) -> RecordBatch {
        let rows = self.times.len();
        let mut fields: Vec<Field> = self.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut arrays: Vec<Option<ArrayRef>> = vec![None; fields.len()];
        let mut conflicts: Vec<String> = vec![String::new(); rows];
        let mut any_conflict = false;
        for (name, values) in &self.columns {
            let existing = fields.iter().position(|f| f.name() == name);
            let data_type = match existing {
                Some(i) => fields[i].data_type().clone(),
                None if fields.len() + 1 >= self.max_columns => {
                    for (row, _, raw) in values {
                        add_conflict(&mut conflicts[*row as usize], name, raw);
                    }
                    any_conflict |= !values.is_empty();
                    continue;
                }
                None => infer_type(values.iter().map(|(_, s, _)| s.kind())),
            };
            let (array, had_conflict) = build_column(name, &data_type, rows, values, &mut conflicts);
            any_conflict |= had_conflict;
            match existing {
                Some(i) => arrays[i] = Some(array),
                None => {
                    fields.push(Field::new(name, data_type, true));
                    arrays.push(Some(array));
                }
            }
        }
        assemble(fields, arrays, &conflicts, any_conflict, &self.times).unwrap()
    }
}

/// The two-pass path: check each line, keep the text, flatten it again to build columns.
fn two_pass(schema: SchemaRef, body: &str, max_columns: usize) -> (Vec<RecordBatch>, Vec<(usize, String)>) {
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in body.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.bytes().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        match check_line(line.as_bytes(), 42) {
            Ok(c) => events.push(PendingEvent { time: c.time, source: c.source, text: line }),
            Err(e) => errors.push((i + 1, e.to_string())),
        }
    }
    events.sort_by_key(|e| e.time);
    let mut batches = Vec::new();
    let mut schema = schema;
    for chunk in events.chunks(BATCH_ROWS) {
        let mut b = TwoPassBuilder {
            schema: schema.clone(),
            max_columns,
            times: Vec::new(),
            columns: Vec::new(),
            index: HashMap::new(),
        };
        for e in chunk {
            b.push(*e);
        }
        let batch = b.finish();
        schema = batch.schema();
        batches.push(batch);
    }
    errors.truncate(MAX_REPORTED_ERRORS);
    (batches, errors)
}

/// The one-pass path: scan and encode at ingest, columns from the leaves at flush.
fn one_pass(schema: SchemaRef, body: &str, max_columns: usize) -> (Vec<RecordBatch>, Vec<(usize, String)>) {
    let parsed = parse_body(body.as_bytes(), BodyFormat::Ndjson, 42);
    let errors = parsed.errors.iter().map(|e| (e.line, e.message.clone())).collect();
    let payload = parsed.events.finish();
    (batches_from_payloads(schema, [(1, &payload[..])], max_columns, BATCH_ROWS).unwrap(), errors)
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const NAMES: &[&str] = &[
    "a",
    "b",
    "status",
    "route",
    "http",
    "user",
    "id",
    "date",
    "timestamp",
    "_conflicts",
    "ts",
    "time",
    "@timestamp",
    "a b",
    "x=y",
    "",
    "\\u0041",
    "caf\\u00e9",
    "tab\\tkey",
    "a.b",
    "n",
];
const STRINGS: &[&str] = &[
    "\"\"",
    "\"/cart\"",
    "\"esc\\\"aped\"",
    "\"line\\nbreak\"",
    "\"\\u00e9t\\u00e9\"",
    "\"\\ud83d\\ude00\"",
    "\"ünïcödé\"",
    "\"2026-12-01T10:00:00Z\"",
    "\"1764583200\"",
    "\"yesterday\"",
    "\"\\\\\"",
    "\"a/b\\/c\"",
];
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "200",
    "503",
    "1.5",
    "-0.25",
    "1e3",
    "2E-2",
    "123456789012345678901",
    "-9223372036854775808",
    "9223372036854775807",
    "1764583200",
    "1764583200123",
    "1.7976931348623157e309",
];

fn value(rng: &mut Rng, depth: usize, out: &mut String) {
    // Objects mostly near the top; a rare deep chain passes the flattening limit.
    match rng.below(if depth > 3 { 4 } else { 6 }) {
        0 => out.push_str(rng.pick(STRINGS)),
        1 => out.push_str(rng.pick(NUMBERS)),
        2 => out.push_str(rng.pick(&["true", "false", "null"])),
        3 => {
            out.push('[');
            for i in 0..rng.below(3) {
                let depth = depth.max(3);
                if i > 0 {
                    out.push_str(", ");
                }
                value(rng, depth + 1, out);
            }
            out.push(']');
        }
        4 if rng.below(4) == 0 => {
            // Deep chains, past the flattening limit.
            let levels = 10 + rng.below(10);
            for _ in 0..levels {
                out.push_str("{\"d\": ");
            }
            value(rng, 99, out);
            out.push_str(&"}".repeat(levels));
        }
        _ => object(rng, depth + 1, out),
    }
}

fn object(rng: &mut Rng, depth: usize, out: &mut String) {
    out.push('{');
    for i in 0..rng.below(6) {
        if i > 0 {
            out.push_str(if rng.below(3) == 0 { " , " } else { "," });
        }
        out.push('"');
        out.push_str(rng.pick(NAMES));
        out.push_str("\":");
        if rng.below(4) == 0 {
            out.push(' ');
        }
        value(rng, depth, out);
    }
    out.push('}');
}

fn line(rng: &mut Rng) -> String {
    let mut out = String::new();
    match rng.below(20) {
        0 => out.push_str(rng.pick(&["[1, 2]", "42", "\"s\"", "null", "{\"a\": 1", "{\"a\": 1} x", "{bad", "  "])),
        1 => out.push_str("{\"a\": \"\u{1}\"}"),
        _ => {
            object(rng, 0, &mut out);
            if rng.below(8) == 0 {
                out.push('\r');
            }
        }
    }
    out
}

fn typed_schema() -> SchemaRef {
    let mut fields: Vec<Field> = base_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("status", DataType::Int64, true));
    fields.push(Field::new("route", DataType::Float64, true));
    fields.push(Field::new("a", DataType::Boolean, true));
    fields.push(Field::new("user", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

#[test]
fn one_pass_gives_the_rows_and_line_errors_of_two_passes() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut rows, mut rejected, mut scanned) = (0, 0, 0);
    for round in 0..1000 {
        let lines: Vec<String> = (0..1 + rng.below(40)).map(|_| line(&mut rng)).collect();
        let body = lines.join("\n");
        let shown = &body[..body.floor_char_boundary(2000)];
        let schema = if round % 3 == 0 { typed_schema() } else { Arc::new(base_schema()) };
        let max_columns = if round % 5 == 0 { 6 } else { 1000 };
        let (want, want_errors) = two_pass(schema.clone(), &body, max_columns);
        let (got, got_errors) = one_pass(schema, &body, max_columns);
        assert_eq!(got_errors, want_errors, "line errors of\n{shown}");
        assert_eq!(got.len(), want.len(), "batches of\n{shown}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.schema(), w.schema(), "schema of\n{shown}");
            assert_eq!(g, w, "rows of\n{shown}");
            rows += g.num_rows();
        }
        rejected += want_errors.len();
        // How many lines the one scan settled (the rest took the full path).
        scanned += lines.iter().filter(|l| crate::scan::scan(l, |_, _, _, _, _| {}).is_some()).count();
    }
    println!("{scanned} lines settled by one scan");
    assert!(scanned > rows / 2, "only {scanned} of {rows} rows came through the scan");
    println!("compared {rows} rows and {rejected} rejected lines");
    assert!(rows > 5000 && rejected > 500, "too little was compared: {rows} rows, {rejected} rejected lines");
}
