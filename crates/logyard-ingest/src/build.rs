//! Rows from checked events: the one place where encoded events become Arrow batches that
//! fit a stream's table, for the flusher and for uploads alike.

use arrow::array::{ArrayRef, new_null_array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use std::collections::HashMap;

use logyard_core::batch::BatchBuilder;
use logyard_core::encoded::{EventsDecoder, Leaf};
use logyard_storage::tables::BuildResult;

/// Rows per batch.
pub const BATCH_ROWS: usize = 64 * 1024;

/// One event waiting for its batch: its leaves are `leaves[first..end]` of the flush.
struct Pending<'a> {
    time: i64,
    text: &'a str,
    first: u32,
    end: u32,
}

/// Builds the rows of encoded event payloads (each `(position, bytes)`, the position only
/// naming a damaged payload) against a table's schema, sorted by time, in batches of
/// [`BATCH_ROWS`] that all carry the final schema. `None` when there is no event.
///
/// No JSON is parsed: each event's leaves say where its column values are. Each payload's
/// paths are numbered anew, so they are mapped once per payload to one numbering.
pub fn build_batches<'a>(
    schema: SchemaRef,
    payloads: impl IntoIterator<Item = (u64, &'a [u8])>,
    max_columns: usize,
) -> BuildResult {
    let mut paths: Vec<&'a str> = Vec::new();
    let mut numbers: HashMap<&'a str, u32, foldhash::fast::RandomState> = HashMap::default();
    let mut events = Vec::new();
    let mut leaves: Vec<Leaf> = Vec::new();
    let mut local: Vec<u32> = Vec::new();
    for (position, payload) in payloads {
        let mut decoder = EventsDecoder::new(payload);
        local.clear();
        loop {
            let first = leaves.len();
            let Some(event) = decoder.next_with_leaves(&mut leaves) else { break };
            let event = event.map_err(|m| format!("damaged record at position {position}: {m}"))?;
            for path in &decoder.paths()[local.len()..] {
                let next = paths.len() as u32;
                let n = *numbers.entry(path).or_insert(next);
                if n == next {
                    paths.push(path);
                }
                local.push(n);
            }
            for leaf in &mut leaves[first..] {
                leaf.path = local[leaf.path as usize];
            }
            events.push(Pending { time: event.time, text: event.text, first: first as u32, end: leaves.len() as u32 });
        }
    }
    if events.is_empty() {
        return Ok(None);
    }
    events.sort_by_key(|e| e.time);
    let mut batches = Vec::with_capacity(events.len().div_ceil(BATCH_ROWS));
    let mut schema = schema;
    for chunk in events.chunks(BATCH_ROWS) {
        let mut builder = BatchBuilder::new(schema.clone(), max_columns);
        for e in chunk {
            builder.push_leaves(e.time, e.text, &leaves[e.first as usize..e.end as usize], &paths)?;
        }
        let batch = builder.finish()?;
        schema = batch.schema();
        batches.push(batch);
    }
    // Later chunks may have added columns: give every batch the final schema.
    let batches = batches.into_iter().map(|b| pad_to(b, &schema)).collect::<Result<Vec<_>, _>>()?;
    Ok(Some(batches))
}

pub fn pad_to(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema() == *schema {
        return Ok(batch);
    }
    let rows = batch.num_rows();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| batch.column_by_name(f.name()).cloned().unwrap_or_else(|| new_null_array(f.data_type(), rows)))
        .collect();
    RecordBatch::try_new(schema.clone(), columns)
}

#[cfg(test)]
mod tests {
    //! The one-pass path (events flattened once at ingest, columns built from their leaves)
    //! against the two-pass path it replaced (events checked at ingest, parsed again at flush),
    //! which stays here as the oracle.

    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use logyard_core::batch::{BatchBuilder, PendingEvent, base_schema};
    use logyard_core::event::check_line;
    use logyard_core::parse::{BodyFormat, MAX_REPORTED_ERRORS, parse_body};

    use super::*;

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
            let mut b = BatchBuilder::new(schema.clone(), max_columns);
            for e in chunk {
                b.push(*e).unwrap();
            }
            let batch = b.finish().unwrap();
            schema = batch.schema();
            batches.push(batch);
        }
        let batches = batches.into_iter().map(|b| pad_to(b, &schema).unwrap()).collect();
        errors.truncate(MAX_REPORTED_ERRORS);
        (batches, errors)
    }

    fn one_pass(schema: SchemaRef, body: &str, max_columns: usize) -> (Vec<RecordBatch>, Vec<(usize, String)>) {
        let parsed = parse_body(body.as_bytes(), BodyFormat::Ndjson, 42);
        let errors = parsed.errors.iter().map(|e| (e.line, e.message.clone())).collect();
        let payload = parsed.events.finish();
        // Split into two payloads at an event boundary, as a flush of two requests would be.
        let batches = build_batches(schema, [(1, &payload[..])], max_columns).unwrap().unwrap_or_default();
        (batches, errors)
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
            scanned += lines.iter().filter(|l| logyard_core::scan::scan(l, |_, _, _, _, _| {}).is_some()).count();
        }
        println!("{scanned} lines settled by one scan");
        assert!(scanned > rows / 2, "only {scanned} of {rows} rows came through the scan");
        println!("compared {rows} rows and {rejected} rejected lines");
        assert!(rows > 5000 && rejected > 500, "too little was compared: {rows} rows, {rejected} rejected lines");
    }
}
