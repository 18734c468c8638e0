//! Turning checked events into Arrow record batches that fit a table's schema.
//!
//! The schema rule (documented in ARCHITECTURE.md, "Schema inference"):
//! - Every table has `timestamp` (UTC microseconds) and `date` (the UTC day, the partition).
//! - A field never seen before becomes a nullable column whose type is inferred from the
//!   values of the batch that introduces it: booleans -> Boolean, integers -> Int64, integers
//!   mixed with fractions -> Float64, anything else (text, arrays, mixtures) -> Utf8.
//! - Once a column exists its type is fixed. A later value is converted when that loses
//!   nothing (an integer into a Float64 column; anything into a Utf8 column as its JSON text).
//!   A value that does not fit (text in an Int64 column, a fraction in an Int64 column, ...)
//!   leaves the column null for that row and is kept, verbatim, in the row's `_conflicts`
//!   column: a JSON object mapping the field name to the original value. Nothing is dropped
//!   and no event is rejected for its types.
//! - Fields beyond the column limit of a table go to `_conflicts` the same way.

use std::collections::HashMap;
use std::sync::Arc;

use crate::CoreError;
use crate::encoded::{EventsDecoder, Leaf};
use crate::event::{self, Scalar, ScalarKind, TimeSource};
use crate::time::{self, Micros};
use arrow::array::{
    Array, ArrayRef, BooleanBuilder, Date32Array, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondArray, new_null_array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

pub const TIMESTAMP_COLUMN: &str = "timestamp";
pub const DATE_COLUMN: &str = "date";
pub const CONFLICTS_COLUMN: &str = "_conflicts";

/// Default cap on the number of columns of one table.
pub const DEFAULT_MAX_COLUMNS: usize = 1000;

/// The type of the `timestamp` column.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The schema every new table starts with.
pub fn base_schema() -> Schema {
    Schema::new(vec![
        Field::new(TIMESTAMP_COLUMN, timestamp_type(), false),
        Field::new(DATE_COLUMN, DataType::Date32, false),
    ])
}

/// One event waiting to become a row.
#[derive(Debug, Clone, Copy)]
pub struct PendingEvent<'a> {
    pub time: Micros,
    pub source: TimeSource,
    /// The event's JSON text (checked at ingest).
    pub text: &'a str,
}

/// A value of an event as its decoder has it ([`BatchBuilder::push_values_copied`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Given<'v> {
    Text(&'v str),
    Int(i64),
    Bool(bool),
}

/// Builds one record batch from events, against the current table schema.
///
/// A column the schema has is built as the events arrive, into an Arrow builder of its type
/// (each event's text is read once, while it is in cache); a new column keeps its values
/// until [`BatchBuilder::finish`] infers its type from all of them.
pub struct BatchBuilder<'a> {
    schema: SchemaRef,
    max_columns: usize,
    times: Vec<Micros>,
    columns: Vec<Column<'a>>,
    index: HashMap<String, usize, foldhash::fast::RandomState>,
    /// Column of each path number of [`BatchBuilder::push_leaves`], plus one (0: none yet).
    by_path: Vec<u32>,
    /// Room each column gets for its values.
    expected_rows: usize,
    /// The values of the event being added: column, value, its JSON text.
    event: Vec<(u32, Scalar<'a>, &'a str)>,
}

struct Column<'a> {
    name: String,
    /// While an event is added: the index of its last value for this column (the one that
    /// counts when a key repeats).
    winner: u32,
    data: ColumnData<'a>,
}

enum ColumnData<'a> {
    /// A column of the schema.
    Typed {
        builder: Typed,
        /// Rows the builder holds.
        filled: u32,
        /// Values that do not fit the type: row and JSON text.
        conflicts: Vec<(u32, &'a str)>,
    },
    /// A column the schema does not have yet: row, value, JSON text.
    New(Vec<(u32, Scalar<'a>, &'a str)>),
}

enum Typed {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    /// Text, cast at the end to the column's type when that is another text type.
    Text(StringBuilder, DataType),
    /// A type logyard does not write (made by another engine): every value is a conflict.
    Other(DataType),
}

impl Typed {
    fn new(data_type: &DataType, rows: usize) -> Self {
        match data_type {
            DataType::Boolean => Typed::Bool(BooleanBuilder::with_capacity(rows)),
            DataType::Int64 => Typed::Int(Int64Builder::with_capacity(rows)),
            DataType::Float64 => Typed::Float(Float64Builder::with_capacity(rows)),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                Typed::Text(StringBuilder::with_capacity(rows, rows * 16), data_type.clone())
            }
            other => Typed::Other(other.clone()),
        }
    }

    fn append_null(&mut self) {
        match self {
            Typed::Bool(b) => b.append_null(),
            Typed::Int(b) => b.append_null(),
            Typed::Float(b) => b.append_null(),
            Typed::Text(b, _) => b.append_null(),
            Typed::Other(_) => {}
        }
    }

    /// Appends the value, or a null when it does not fit (`false`).
    fn append(&mut self, scalar: &Scalar<'_>, raw: &str) -> bool {
        match (&mut *self, scalar) {
            (Typed::Bool(b), Scalar::Bool(v)) => b.append_value(*v),
            (Typed::Int(b), Scalar::Int(v)) => b.append_value(*v),
            (Typed::Float(b), Scalar::Int(v)) => b.append_value(*v as f64),
            (Typed::Float(b), Scalar::Float(v)) => b.append_value(*v),
            (Typed::Text(b, _), Scalar::Text(t)) => b.append_value(t),
            (Typed::Text(b, _), Scalar::Json(j)) => b.append_value(j),
            (Typed::Text(b, _), Scalar::Bool(_) | Scalar::Int(_) | Scalar::Float(_)) => b.append_value(raw),
            _ => {
                self.append_null();
                return false;
            }
        }
        true
    }

    fn finish(self, rows: usize) -> ArrayRef {
        match self {
            Typed::Bool(mut b) => Arc::new(b.finish()),
            Typed::Int(mut b) => Arc::new(b.finish()),
            Typed::Float(mut b) => Arc::new(b.finish()),
            Typed::Text(mut b, data_type) => {
                let a: ArrayRef = Arc::new(b.finish());
                if data_type == DataType::Utf8 { a } else { arrow::compute::cast(&a, &data_type).unwrap_or(a) }
            }
            Typed::Other(data_type) => new_null_array(&data_type, rows),
        }
    }
}

impl<'a> Column<'a> {
    fn new(name: &str, schema: &Schema, rows: usize) -> Self {
        let data = match schema.field_with_name(name) {
            Ok(field) => {
                ColumnData::Typed { builder: Typed::new(field.data_type(), rows), filled: 0, conflicts: Vec::new() }
            }
            Err(_) => ColumnData::New(Vec::new()),
        };
        Self { name: name.to_owned(), winner: u32::MAX, data }
    }

    fn add(&mut self, row: u32, scalar: Scalar<'a>, raw: &'a str) {
        match &mut self.data {
            ColumnData::Typed { builder, filled, conflicts } => {
                fill_nulls(builder, filled, row);
                if !builder.append(&scalar, raw) {
                    conflicts.push((row, raw));
                }
                *filled = row + 1;
            }
            ColumnData::New(values) => values.push((row, scalar, raw)),
        }
    }
}

/// Nulls in a column's builder for the rows before `row` that gave it no value.
fn fill_nulls(builder: &mut Typed, filled: &mut u32, row: u32) {
    while *filled < row {
        builder.append_null();
        *filled += 1;
    }
}

fn column_index<'a>(
    columns: &mut Vec<Column<'a>>,
    index: &mut HashMap<String, usize, foldhash::fast::RandomState>,
    schema: &Schema,
    name: &str,
    rows: usize,
) -> usize {
    match index.get(name) {
        Some(&i) => i,
        None => {
            let i = columns.len();
            columns.push(Column::new(name, schema, rows));
            index.insert(name.to_owned(), i);
            i
        }
    }
}

impl<'a> BatchBuilder<'a> {
    /// `schema` is the table's current schema (use [`base_schema`] for a new table).
    pub fn new(schema: SchemaRef, max_columns: usize) -> Self {
        Self::with_capacity(schema, max_columns, 0)
    }

    /// The same, with room for `rows` rows.
    pub fn with_capacity(schema: SchemaRef, max_columns: usize, rows: usize) -> Self {
        Self {
            schema,
            max_columns,
            times: Vec::with_capacity(rows),
            columns: Vec::new(),
            index: HashMap::default(),
            by_path: Vec::new(),
            expected_rows: rows,
            event: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Adds one event. Fails only if the text is not JSON (events are checked at ingest, so
    /// this means the write-ahead log was damaged).
    pub fn push(&mut self, event: PendingEvent<'a>) -> Result<(), CoreError> {
        let (columns, index, scratch) = (&mut self.columns, &mut self.index, &mut self.event);
        let (schema, rows) = (&self.schema, self.expected_rows);
        event::flatten(event.text, event.source, |name, scalar, raw| {
            let i = column_index(columns, index, schema, name, rows);
            scratch.push((i as u32, scalar, raw.get()));
        })
        .map_err(|e| CoreError::CorruptEvent(e.to_string()))?;
        self.end_row(event.time);
        Ok(())
    }

    /// Adds one event from its leaves ([`crate::encoded`]), whose path numbers index `paths`:
    /// no JSON is read but strings with escapes.
    pub fn push_leaves(
        &mut self,
        time: Micros,
        text: &'a str,
        leaves: &[Leaf],
        paths: &[impl AsRef<str>],
    ) -> Result<(), CoreError> {
        for leaf in leaves {
            let column = self
                .column_of_path(leaf.path, paths)
                .ok_or_else(|| CoreError::CorruptEvent(format!("leaf of path {} of {}", leaf.path, paths.len())))?;
            let (scalar, raw) = leaf.value(text).map_err(CoreError::CorruptEvent)?;
            self.event.push((column as u32, scalar, raw));
        }
        self.end_row(time);
        Ok(())
    }

    /// [`BatchBuilder::push_leaves`] of an event whose text does not outlive the call (a
    /// decoder writes each event into one reused buffer): each value is copied into its
    /// column's builder at once. `false` when a value would have to be kept until
    /// [`BatchBuilder::finish`] (a column the schema lacks, a value that does not fit its
    /// column, a key given twice): the builder is then part-way through a row and must be
    /// dropped, and the flush builds these rows from the events.
    pub fn push_leaves_copied(&mut self, time: Micros, text: &str, leaves: &[Leaf], paths: &[impl AsRef<str>]) -> bool {
        for leaf in leaves {
            let Some(column) = self.column_of_path(leaf.path, paths) else { return false };
            let Ok((scalar, raw)) = leaf.value(text) else { return false };
            if !self.copy_value(column, &scalar, raw) {
                return false;
            }
        }
        self.times.push(time);
        true
    }

    /// [`BatchBuilder::push_leaves_copied`] of an event whose values a decoder has at hand
    /// (a Loki entry's line and labels, an OTLP record's fields), given by column name as
    /// [`event::flatten`] names them: the event's JSON text, where strings are escaped, is
    /// not read again.
    pub fn push_values_copied<'v>(
        &mut self,
        time: Micros,
        values: impl IntoIterator<Item = (&'v str, Given<'v>)>,
    ) -> bool {
        let mut digits = itoa::Buffer::new();
        for (name, value) in values {
            let column = column_index(&mut self.columns, &mut self.index, &self.schema, name, self.expected_rows);
            // The JSON text of a value, which a text column takes for a number or a boolean.
            let (scalar, raw) = match value {
                Given::Text(text) => (Scalar::Text(text.into()), text),
                Given::Int(n) => (Scalar::Int(n), digits.format(n)),
                Given::Bool(b) => (Scalar::Bool(b), if b { "true" } else { "false" }),
            };
            if !self.copy_value(column, &scalar, raw) {
                return false;
            }
        }
        self.times.push(time);
        true
    }

    /// The column of leaf path number `path` (an index into `paths`), mapped once per builder;
    /// `None` for a number outside `paths`.
    fn column_of_path(&mut self, path: u32, paths: &[impl AsRef<str>]) -> Option<usize> {
        if self.by_path.len() < paths.len() {
            self.by_path.resize(paths.len(), 0);
        }
        let name = paths.get(path as usize)?.as_ref();
        let slot = self.by_path.get_mut(path as usize)?;
        if *slot == 0 {
            *slot = column_index(&mut self.columns, &mut self.index, &self.schema, name, self.expected_rows) as u32 + 1;
        }
        Some(*slot as usize - 1)
    }

    /// Appends a value of the row being added to `column`'s builder; `false` when it cannot be
    /// taken there (see [`BatchBuilder::push_leaves_copied`]).
    fn copy_value(&mut self, column: usize, scalar: &Scalar<'_>, raw: &str) -> bool {
        let row = self.times.len() as u32;
        let ColumnData::Typed { builder, filled, .. } = &mut self.columns[column].data else { return false };
        if *filled > row {
            return false;
        }
        fill_nulls(builder, filled, row);
        if !builder.append(scalar, raw) {
            return false;
        }
        *filled = row + 1;
        true
    }

    /// Adds the values gathered for one event as a row; of a key given twice the last value
    /// counts, as in most JSON readers.
    fn end_row(&mut self, time: Micros) {
        let row = self.times.len() as u32;
        for (k, (column, _, _)) in self.event.iter().enumerate() {
            self.columns[*column as usize].winner = k as u32;
        }
        for (k, (column, scalar, raw)) in self.event.drain(..).enumerate() {
            let column = &mut self.columns[column as usize];
            if column.winner == k as u32 {
                column.add(row, scalar, raw);
            }
        }
        self.times.push(time);
    }

    /// Builds the batch. Its schema is the table schema plus any new columns (and
    /// `_conflicts` when a value did not fit); the returned schema is that same schema.
    pub fn finish(self) -> Result<RecordBatch, CoreError> {
        Ok(self.finish_counting()?.0)
    }

    /// [`BatchBuilder::finish`] for rows built as a request is read, to be merged at the flush
    /// ([`batches_from_held`]). `None` when they must be built at the flush instead, with the
    /// other rows of their batch: they bring a column the schema does not have (its type is
    /// inferred from the batch's values), or `_conflicts` to a schema without it, or a row has
    /// two values that do not fit (the order of their keys in `_conflicts` is the batch's
    /// order of columns).
    pub fn finish_prepared(self) -> Result<Option<RecordBatch>, CoreError> {
        let columns = self.schema.fields().len();
        let (batch, several_conflicts) = self.finish_counting()?;
        if batch.num_columns() != columns || several_conflicts {
            return Ok(None);
        }
        // Held until the flush: without the builders' spare room (about 45 % of it).
        let (schema, mut arrays, _) = batch.into_parts();
        arrays.iter_mut().for_each(Array::shrink_to_fit);
        RecordBatch::try_new(schema, arrays).map(Some).map_err(|e| CoreError::Arrow(e.to_string()))
    }

    /// [`BatchBuilder::finish`], and whether a row has values of two or more columns of the
    /// schema that did not fit (whose order in `_conflicts` is the batch's order of columns).
    fn finish_counting(self) -> Result<(RecordBatch, bool), CoreError> {
        let rows = self.times.len();
        let mut several_conflicts = false;
        let mut fields: Vec<Field> = self.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut arrays: Vec<Option<ArrayRef>> = vec![None; fields.len()];
        let mut conflicts: Vec<String> = vec![String::new(); rows];
        let mut any_conflict = false;

        for column in self.columns {
            let name = &column.name;
            let existing = fields.iter().position(|f| f.name() == name);
            match (column.data, existing) {
                (ColumnData::Typed { mut builder, mut filled, conflicts: bad }, Some(i)) => {
                    while (filled as usize) < rows {
                        builder.append_null();
                        filled += 1;
                    }
                    for (row, raw) in bad {
                        several_conflicts |= !conflicts[row as usize].is_empty();
                        add_conflict(&mut conflicts[row as usize], name, raw);
                        any_conflict = true;
                    }
                    arrays[i] = Some(builder.finish(rows));
                }
                (ColumnData::Typed { .. }, None) => {
                    return Err(CoreError::Arrow(format!("column {name} left the schema")));
                }
                (ColumnData::New(values), _) if fields.len() + 1 >= self.max_columns => {
                    for (row, _, raw) in &values {
                        several_conflicts |= !conflicts[*row as usize].is_empty();
                        add_conflict(&mut conflicts[*row as usize], name, raw);
                    }
                    any_conflict |= !values.is_empty();
                }
                (ColumnData::New(values), _) => {
                    let data_type = infer_type(values.iter().map(|(_, s, _)| s.kind()));
                    let (array, had_conflict) = build_column(name, &data_type, rows, &values, &mut conflicts);
                    any_conflict |= had_conflict;
                    fields.push(Field::new(name, data_type, true));
                    arrays.push(Some(array));
                }
            }
        }

        Ok((assemble(fields, arrays, &conflicts, any_conflict, &self.times)?, several_conflicts))
    }
}

/// The batch of `fields` from the columns built (`None`: all null): with `_conflicts` when a
/// value did not fit (or the table has the column), and `timestamp` and `date` from `times`.
pub(crate) fn assemble(
    mut fields: Vec<Field>,
    mut arrays: Vec<Option<ArrayRef>>,
    conflicts: &[String],
    any_conflict: bool,
    times: &[Micros],
) -> Result<RecordBatch, CoreError> {
    let rows = times.len();
    let conflicts_at = fields.iter().position(|f| f.name() == CONFLICTS_COLUMN);
    if any_conflict || conflicts_at.is_some() {
        let array: ArrayRef = Arc::new(
            conflicts
                .iter()
                .map(|c| if c.is_empty() { None } else { Some(format!("{{{c}}}")) })
                .collect::<arrow::array::StringArray>(),
        );
        match conflicts_at {
            Some(i) => arrays[i] = Some(array),
            None => {
                fields.push(Field::new(CONFLICTS_COLUMN, DataType::Utf8, true));
                arrays.push(Some(array));
            }
        }
    }
    for (i, field) in fields.iter().enumerate() {
        if field.name() == TIMESTAMP_COLUMN {
            arrays[i] = Some(Arc::new(TimestampMicrosecondArray::from(times.to_vec()).with_timezone("UTC")));
        } else if field.name() == DATE_COLUMN {
            arrays[i] =
                Some(Arc::new(Date32Array::from(times.iter().map(|t| time::days_since_epoch(*t)).collect::<Vec<_>>())));
        }
    }
    let schema = Arc::new(Schema::new(fields));
    let arrays: Vec<ArrayRef> = arrays
        .into_iter()
        .zip(schema.fields())
        .map(|(a, f)| a.unwrap_or_else(|| new_null_array(f.data_type(), rows)))
        .collect();
    RecordBatch::try_new(schema, arrays).map_err(|e| CoreError::Arrow(e.to_string()))
}

/// One event waiting for its batch: its leaves are `leaves[first..end]` of the flush; it
/// came as event `index` of the payload at `position`.
struct Pending<'a> {
    time: i64,
    text: &'a str,
    /// Its leaves in the flush's list, or `None` when they were left out: the text is read.
    leaves: Option<(u32, u32)>,
    source: TimeSource,
    position: u64,
    index: u32,
}

/// Builds the rows of encoded event payloads ([`crate::encoded`]; each `(position, bytes)`,
/// the position only naming a damaged payload) against a table's schema, sorted by time, in
/// batches of at most `batch_rows`, each with the schema of the columns seen so far (a later
/// batch may have more). Empty when there is no event.
///
/// No JSON is parsed: each event's leaves say where its column values are. Each payload's
/// paths are numbered anew, so they are mapped once per payload to one numbering.
pub fn batches_from_payloads<'a>(
    schema: SchemaRef,
    payloads: impl IntoIterator<Item = (u64, &'a [u8])>,
    max_columns: usize,
    batch_rows: usize,
) -> Result<Vec<RecordBatch>, CoreError> {
    sorted_batches(schema, payloads, max_columns, batch_rows, None)
}

/// [`batches_from_payloads`], and into `arrivals` each row's (position, index in its payload).
fn sorted_batches<'a>(
    schema: SchemaRef,
    payloads: impl IntoIterator<Item = (u64, &'a [u8])>,
    max_columns: usize,
    batch_rows: usize,
    arrivals: Option<&mut Vec<(u64, u32)>>,
) -> Result<Vec<RecordBatch>, CoreError> {
    let payloads: Vec<(u64, &'a [u8])> = payloads.into_iter().collect();
    // Room for what the payloads hold, about: an event of the usual 400 bytes has 15 values.
    let bytes: usize = payloads.iter().map(|(_, p)| p.len()).sum();
    let mut events = Vec::with_capacity(bytes / 256);
    let mut leaves: Vec<Leaf> = Vec::with_capacity(bytes / 24);
    let mut paths: Vec<&'a str> = Vec::new();
    let mut numbers: HashMap<&'a str, u32, foldhash::fast::RandomState> = HashMap::default();
    let mut local: Vec<u32> = Vec::new();
    for (position, payload) in payloads {
        let mut decoder = EventsDecoder::new(payload);
        local.clear();
        for index in 0u32.. {
            let first = leaves.len();
            let Some(event) = decoder.next_with_leaves(&mut leaves) else { break };
            let event =
                event.map_err(|m| CoreError::CorruptEvent(format!("damaged record at position {position}: {m}")))?;
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
            events.push(Pending {
                time: event.time,
                text: event.text,
                leaves: (!event.leaves_left_out).then_some((first as u32, leaves.len() as u32)),
                source: event.source,
                position,
                index,
            });
        }
    }
    events.sort_by_key(|e| e.time);
    if let Some(arrivals) = arrivals {
        arrivals.extend(events.iter().map(|e| (e.position, e.index)));
    }
    let mut batches = Vec::with_capacity(events.len().div_ceil(batch_rows.max(1)));
    let mut schema = schema;
    for chunk in events.chunks(batch_rows.max(1)) {
        let mut builder = BatchBuilder::with_capacity(schema.clone(), max_columns, chunk.len());
        for e in chunk {
            match e.leaves {
                Some((first, end)) => {
                    builder.push_leaves(e.time, e.text, &leaves[first as usize..end as usize], &paths)?
                }
                None => builder.push(PendingEvent { time: e.time, source: e.source, text: e.text })?,
            }
        }
        let batch = builder.finish()?;
        schema = batch.schema();
        batches.push(batch);
    }
    Ok(batches)
}

/// What a flush holds of one request: its encoded events, or their rows built as it was read
/// (`crate::parse::parse_body_into_rows`).
#[derive(Debug, Clone, Copy)]
pub enum Held<'a> {
    Encoded(&'a [u8]),
    Prepared(&'a RecordBatch),
}

/// A flush's rows, sorted by time, in batches of at most `batch_rows`, all of one schema: the
/// requests' rows built when they came and those of the encoded requests, built now as
/// [`batches_from_payloads`] builds them (which this is when nothing was prepared). Rows of
/// one time keep the order of their requests' positions and of the events in a request.
pub fn batches_from_held<'a>(
    schema: SchemaRef,
    held: impl IntoIterator<Item = (u64, Held<'a>)>,
    max_columns: usize,
    batch_rows: usize,
) -> Result<Vec<RecordBatch>, CoreError> {
    let mut encoded = Vec::new();
    let mut prepared = Vec::new();
    for (position, item) in held {
        match item {
            Held::Encoded(payload) => encoded.push((position, payload)),
            Held::Prepared(batch) => prepared.push((position, batch)),
        }
    }
    if prepared.is_empty() {
        return batches_from_payloads(schema, encoded, max_columns, batch_rows);
    }
    let schema = with_columns_of(schema, prepared.iter().map(|(_, batch)| *batch));
    let mut arrivals = Vec::new();
    let built = sorted_batches(schema.clone(), encoded, max_columns, batch_rows, Some(&mut arrivals))?;
    let schema = built.last().map_or(schema, RecordBatch::schema);
    // Every row as (time, position, index in its request, source batch, row in it).
    let rows = arrivals.len() + prepared.iter().map(|(_, b)| b.num_rows()).sum::<usize>();
    let mut order: Vec<(i64, u64, u32, u32, u32)> = Vec::with_capacity(rows);
    let mut sources = Vec::with_capacity(built.len() + prepared.len());
    let mut arrivals = arrivals.into_iter();
    for batch in built {
        let times = times_of(&batch)?;
        let source = sources.len() as u32;
        for (row, (time, (position, index))) in times.iter().zip(arrivals.by_ref()).enumerate() {
            order.push((*time, position, index, source, row as u32));
        }
        sources.push(fit_to(&batch, &schema)?);
    }
    for (position, batch) in prepared {
        let times = times_of(batch)?;
        let source = sources.len() as u32;
        order.extend(times.iter().enumerate().map(|(row, time)| (*time, position, row as u32, source, row as u32)));
        sources.push(fit_to(batch, &schema)?);
    }
    order.sort_unstable_by_key(|&(time, position, index, _, _)| (time, position, index));
    let sources: Vec<&RecordBatch> = sources.iter().collect();
    let mut indices = Vec::with_capacity(batch_rows.min(order.len()));
    let mut batches = Vec::with_capacity(order.len().div_ceil(batch_rows.max(1)));
    for chunk in order.chunks(batch_rows.max(1)) {
        indices.clear();
        indices.extend(chunk.iter().map(|&(_, _, _, source, row)| (source as usize, row as usize)));
        let batch =
            arrow::compute::interleave_record_batch(&sources, &indices).map_err(|e| CoreError::Arrow(e.to_string()))?;
        batches.push(batch);
    }
    Ok(batches)
}

/// `schema` and after its columns those of `batches` it lacks (by name, in their order): rows
/// built against a schema published before its commit keep every value when the flush starts
/// from a table that never got that schema (its commit failed, or another writer made it).
fn with_columns_of<'a>(schema: SchemaRef, batches: impl IntoIterator<Item = &'a RecordBatch>) -> SchemaRef {
    let mut fields: Option<Vec<Arc<Field>>> = None;
    for batch in batches {
        let theirs = batch.schema();
        if Arc::ptr_eq(&theirs, &schema) || *theirs == *schema {
            continue;
        }
        for field in theirs.fields() {
            let fields = fields.get_or_insert_with(|| schema.fields().iter().cloned().collect());
            if !fields.iter().any(|f| f.name() == field.name()) {
                fields.push(field.clone());
            }
        }
    }
    match fields {
        Some(fields) if fields.len() > schema.fields().len() => {
            Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
        }
        _ => schema,
    }
}

/// The `timestamp` column of a batch of a table's rows.
fn times_of(batch: &RecordBatch) -> Result<&[i64], CoreError> {
    let times = batch
        .column_by_name(TIMESTAMP_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
        .ok_or_else(|| CoreError::Arrow(format!("a batch without its {TIMESTAMP_COLUMN} column")))?;
    Ok(times.values())
}

/// `batch` with the columns of `schema`, in its order: null where the batch has none (columns
/// a later request brought), cast where a column's type differs (the table was made again
/// with other types since the rows were built).
pub fn fit_to(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, CoreError> {
    if batch.schema() == *schema {
        return Ok(batch.clone());
    }
    let rows = batch.num_rows();
    let columns = (schema.fields().iter())
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
            Some(column) => arrow::compute::cast(column, field.data_type()),
            None => Ok(new_null_array(field.data_type(), rows)),
        })
        .collect::<Result<Vec<ArrayRef>, _>>()
        .map_err(|e| CoreError::Arrow(e.to_string()))?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| CoreError::Arrow(e.to_string()))
}

pub(crate) fn infer_type(kinds: impl Iterator<Item = ScalarKind>) -> DataType {
    let (mut b, mut i, mut f, mut t) = (false, false, false, false);
    for k in kinds {
        match k {
            ScalarKind::Bool => b = true,
            ScalarKind::Int => i = true,
            ScalarKind::Float => f = true,
            ScalarKind::Text => t = true,
        }
    }
    match (b, i, f, t) {
        (true, false, false, false) => DataType::Boolean,
        (false, true, false, false) => DataType::Int64,
        (false, _, true, false) => DataType::Float64,
        _ => DataType::Utf8,
    }
}

pub(crate) fn add_conflict(buf: &mut String, name: &str, raw: &str) {
    if !buf.is_empty() {
        buf.push(',');
    }
    // Column names are valid UTF-8 without control characters other than the ones JSON escapes.
    buf.push_str(&serde_json::to_string(name).unwrap_or_else(|_| "\"?\"".into()));
    buf.push(':');
    buf.push_str(raw);
}

/// Builds one column; values that do not fit the type go to `conflicts`.
pub(crate) fn build_column(
    name: &str,
    data_type: &DataType,
    rows: usize,
    values: &[(u32, Scalar<'_>, &str)],
    conflicts: &mut [String],
) -> (ArrayRef, bool) {
    let mut had_conflict = false;
    let mut conflict = |row: u32, raw: &str| {
        had_conflict = true;
        add_conflict(&mut conflicts[row as usize], name, raw);
    };
    macro_rules! fill {
        ($builder:expr, |$s:ident, $raw:ident| $convert:expr) => {{
            let mut b = $builder;
            let mut next = 0u32;
            for (row, $s, $raw) in values {
                while next < *row {
                    b.append_null();
                    next += 1;
                }
                match $convert {
                    Some(v) => b.append_value(v),
                    None => {
                        conflict(*row, $raw);
                        b.append_null();
                    }
                }
                next += 1;
            }
            while (next as usize) < rows {
                b.append_null();
                next += 1;
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    let array = match data_type {
        DataType::Boolean => fill!(BooleanBuilder::with_capacity(rows), |s, _raw| match s {
            Scalar::Bool(v) => Some(*v),
            _ => None,
        }),
        DataType::Int64 => fill!(Int64Builder::with_capacity(rows), |s, _raw| match s {
            Scalar::Int(v) => Some(*v),
            _ => None,
        }),
        DataType::Float64 => fill!(Float64Builder::with_capacity(rows), |s, _raw| match s {
            Scalar::Int(v) => Some(*v as f64),
            Scalar::Float(v) => Some(*v),
            _ => None,
        }),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let b = StringBuilder::with_capacity(rows, values.iter().map(|(_, _, raw)| raw.len()).sum());
            let a = fill!(b, |s, raw| Some(match s {
                Scalar::Text(t) => t.as_ref(),
                Scalar::Json(j) => j,
                Scalar::Bool(_) | Scalar::Int(_) | Scalar::Float(_) => *raw,
            }));
            if *data_type == DataType::Utf8 { a } else { arrow::compute::cast(&a, data_type).unwrap_or(a) }
        }
        // A column of a type logyard does not write (made by another engine): keep the
        // values in `_conflicts` rather than guess.
        other => {
            for (row, _, raw) in values {
                conflict(*row, raw);
            }
            new_null_array(other, rows)
        }
    };
    (array, had_conflict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type};

    fn build(schema: Schema, lines: &[&str]) -> RecordBatch {
        let mut b = BatchBuilder::new(Arc::new(schema), DEFAULT_MAX_COLUMNS);
        for (i, line) in lines.iter().enumerate() {
            b.push(PendingEvent { time: i as i64 * 1_000_000, source: TimeSource::Received, text: line }).unwrap();
        }
        b.finish().unwrap()
    }

    #[test]
    fn of_a_key_given_twice_the_last_value_counts_from_leaves_too() {
        let mut fields: Vec<Field> = base_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("a", DataType::Int64, true));
        let schema = Arc::new(Schema::new(fields));
        let mut events = crate::encoded::EventsEncoder::default();
        let lines = [
            r#"{"a": 1, "n": "x"}"#,
            r#"{"a": 2, "n": "y", "a": 3, "n": "z"}"#,
            r#"{"n": "w", "a": 4}"#,
            r#"{"a": 5, "a": "five"}"#,
        ];
        for (i, line) in lines.iter().enumerate() {
            events.push_line(line.as_bytes(), i as i64 * 1_000_000).unwrap();
        }
        let payload = events.finish();
        let batches = batches_from_payloads(schema, [(0, &payload[..])], DEFAULT_MAX_COLUMNS, 100).unwrap();
        let batch = &batches[0];
        let a = batch.column_by_name("a").unwrap().as_primitive::<Int64Type>();
        assert_eq!((a.value(0), a.value(1), a.value(2), a.is_null(3)), (1, 3, 4, true));
        let n = batch.column_by_name("n").unwrap().as_string::<i32>();
        assert_eq!((n.value(0), n.value(1), n.value(2), n.is_null(3)), ("x", "z", "w", true));
        let conflicts = batch.column_by_name(CONFLICTS_COLUMN).unwrap().as_string::<i32>();
        assert_eq!((conflicts.is_null(1), conflicts.value(3)), (true, r#"{"a":"five"}"#));
    }

    /// Rows copied from events written one after another into one buffer are the rows built
    /// from their texts; an event whose values the builder would have to keep (a new column,
    /// a value that does not fit, a key given twice) makes it give up.
    #[test]
    fn copied_rows_are_the_rows_of_the_texts_or_none() {
        let mut fields: Vec<Field> = base_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("a", DataType::Int64, true));
        fields.push(Field::new("f", DataType::Float64, true));
        fields.push(Field::new("n.m", DataType::Utf8, true));
        fields.push(Field::new("ok", DataType::Boolean, true));
        let schema = Arc::new(Schema::new(fields));
        let good = [
            r#"{"a": 1, "n": {"m": "x\"y"}, "ok": true, "f": 2}"#,
            r#"{"f": 1.5, "timestamp": "2026-11-25T10:00:00Z"}"#,
            r#"{"n": {"m": ["é", 1]}, "a": -3}"#,
            r#"{}"#,
        ];
        let copy = |lines: &[&str]| {
            let mut events = crate::encoded::EventsEncoder::default();
            let mut rows = Some(BatchBuilder::new(schema.clone(), DEFAULT_MAX_COLUMNS));
            let mut text = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                text.clear();
                text.extend_from_slice(line.as_bytes());
                let mut taken = false;
                let scanned = events
                    .push_line_with(&text, i as i64, |time, text, leaves, paths| {
                        taken = rows.as_mut().is_some_and(|rows| rows.push_leaves_copied(time, text, leaves, paths));
                    })
                    .unwrap();
                if !(scanned && taken) {
                    rows = None;
                }
            }
            (events.finish(), rows.map(|r| r.finish_prepared().unwrap().unwrap()))
        };
        let (payload, rows) = copy(&good);
        let build = |held| batches_from_held(schema.clone(), [(1, held)], DEFAULT_MAX_COLUMNS, 100).unwrap();
        let rows = rows.expect("every event fits the schema");
        assert_eq!(rows.num_rows(), 4);
        assert_eq!(build(Held::Prepared(&rows)), build(Held::Encoded(&payload)));
        // A flush that starts from a table without the rows' columns (the schema they were
        // built against was published before a commit that failed) keeps every value.
        let narrow = |held| batches_from_held(Arc::new(base_schema()), [(1, held)], DEFAULT_MAX_COLUMNS, 100).unwrap();
        assert_eq!(narrow(Held::Prepared(&rows)), build(Held::Encoded(&payload)));
        for bad in [r#"{"a": 1, "new": 2}"#, r#"{"a": "one"}"#, r#"{"a": 1, "a": 2}"#, r#"{"ok": 1}"#] {
            let (payload, rows) = copy(&[good[0], bad, good[2]]);
            assert!(rows.is_none(), "{bad}");
            assert_eq!(crate::encoded::decode_events(&payload).count(), 3, "the events are all kept");
        }
    }

    #[test]
    fn infers_types_and_fills_missing_fields_with_nulls() {
        let batch = build(
            base_schema(),
            &[
                r#"{"status": 200, "lat": 1, "ok": true, "route": "/a"}"#,
                r#"{"status": 500, "lat": 2.5, "mixed": "x", "http": {"v": 2}}"#,
                r#"{"mixed": 3}"#,
            ],
        );
        let schema = batch.schema();
        let ty = |n: &str| schema.field_with_name(n).unwrap().data_type().clone();
        assert_eq!(ty("status"), DataType::Int64);
        assert_eq!(ty("lat"), DataType::Float64);
        assert_eq!(ty("ok"), DataType::Boolean);
        assert_eq!(ty("mixed"), DataType::Utf8);
        assert_eq!(ty("http.v"), DataType::Int64);
        assert!(schema.field_with_name(CONFLICTS_COLUMN).is_err(), "no conflicts, no column");
        let status = batch.column_by_name("status").unwrap().as_primitive::<Int64Type>();
        assert_eq!((status.value(0), status.value(1), status.is_null(2)), (200, 500, true));
        let mixed = batch.column_by_name("mixed").unwrap().as_string::<i32>();
        assert_eq!((mixed.is_null(0), mixed.value(1), mixed.value(2)), (true, "x", "3"));
        let date = batch.column_by_name(DATE_COLUMN).unwrap();
        assert_eq!(date.null_count(), 0);
    }

    #[test]
    fn a_value_that_does_not_fit_goes_to_conflicts_and_nothing_is_lost() {
        let mut schema = base_schema();
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("status", DataType::Int64, true));
        fields.push(Field::new("lat", DataType::Float64, true));
        fields.push(Field::new("route", DataType::Utf8, true));
        schema = Schema::new(fields);
        let batch = build(
            schema,
            &[
                r#"{"status": "oops", "lat": 3, "route": 42}"#,
                r#"{"status": 1.5, "lat": "slow", "route": {"a": [1]}}"#,
                r#"{"status": 7}"#,
            ],
        );
        let status = batch.column_by_name("status").unwrap().as_primitive::<Int64Type>();
        assert!(status.is_null(0) && status.is_null(1));
        assert_eq!(status.value(2), 7);
        let lat = batch.column_by_name("lat").unwrap().as_primitive::<Float64Type>();
        assert_eq!(lat.value(0), 3.0);
        let route = batch.column_by_name("route").unwrap().as_string::<i32>();
        assert_eq!(route.value(0), "42");
        assert!(route.is_null(1), "an object flattens to route.a, not route");
        let conflicts = batch.column_by_name(CONFLICTS_COLUMN).unwrap().as_string::<i32>();
        assert_eq!(conflicts.value(0), r#"{"status":"oops"}"#);
        assert_eq!(conflicts.value(1), r#"{"status":1.5,"lat":"slow"}"#);
        assert!(conflicts.is_null(2));
        assert_eq!(batch.column_by_name("route.a").unwrap().as_string::<i32>().value(1), "[1]");
    }

    #[test]
    fn the_column_limit_sends_extra_fields_to_conflicts() {
        let mut b = BatchBuilder::new(Arc::new(base_schema()), 4);
        b.push(PendingEvent { time: 0, source: TimeSource::Received, text: r#"{"a": 1, "b": 2, "c": 3}"# }).unwrap();
        let batch = b.finish().unwrap();
        let names: Vec<_> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["timestamp", "date", "a", "_conflicts"]);
        let conflicts = batch.column_by_name(CONFLICTS_COLUMN).unwrap().as_string::<i32>();
        assert_eq!(conflicts.value(0), r#"{"b":2,"c":3}"#);
    }
}
