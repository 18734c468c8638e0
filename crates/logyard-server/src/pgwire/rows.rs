//! Arrow batches as PostgreSQL `DataRow`s.
//!
//! Each column is looked at once per batch (its array downcast, its time zone read), and the
//! rows of a batch are written one after another into one buffer that every `DataRow` of the
//! batch shares. The types logs are made of — integers, floats, booleans, strings, timestamps
//! and dates — are written here in PostgreSQL's text and binary forms, exactly as `arrow-pg`
//! writes them; every other type (nested values as JSON, lists, decimals, ...) is handed to
//! `arrow-pg` value by value.

use arrow_pg::datatypes::{PG_OID_ALIAS_KEY, is_pg_char_field};
use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Datelike, NaiveDateTime, Timelike};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int16Array, Int32Array,
    Int64Array, LargeStringArray, PrimitiveArray, RecordBatch, StringArray, StringViewArray,
};
use datafusion::arrow::datatypes::{
    DataType, Field, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::ToSqlText;
use postgres_types::ToSql;

/// Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from the Unix epoch to PostgreSQL's.
const PG_EPOCH_DAYS: i32 = 10_957;

/// The rows of `batch`, encoded for `fields` (one per column, with its wire format).
pub fn encode_batch(batch: &RecordBatch, fields: &[FieldInfo]) -> PgWireResult<Vec<DataRow>> {
    let schema = batch.schema();
    let columns: Vec<Column> = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .zip(fields)
        .map(|((array, field), pg)| Column::new(array, field, pg))
        .collect();
    let rows = batch.num_rows();
    let mut out = Vec::with_capacity(rows);
    let mut writer = RowWriter { buf: BytesMut::with_capacity(estimate(batch)), fields: 0 };
    for row in 0..rows {
        for column in &columns {
            column.write(row, &mut writer)?;
        }
        out.push(writer.take_row());
    }
    Ok(out)
}

/// About how many bytes the batch's rows take on the wire (its Arrow size is close).
fn estimate(batch: &RecordBatch) -> usize {
    let values: usize = batch.columns().iter().map(|c| c.get_buffer_memory_size()).sum();
    (values + batch.num_rows() * batch.num_columns() * 4).min(64 << 20)
}

/// One batch's rows, written into one buffer.
struct RowWriter {
    buf: BytesMut,
    fields: i16,
}

impl RowWriter {
    fn null(&mut self) {
        self.buf.put_i32(-1);
        self.fields += 1;
    }

    /// A value written by `write`, behind its length.
    fn value(&mut self, write: impl FnOnce(&mut BytesMut)) {
        let at = self.buf.len();
        self.buf.put_i32(0);
        write(&mut self.buf);
        let len = (self.buf.len() - at - 4) as i32;
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        self.fields += 1;
    }

    fn take_row(&mut self) -> DataRow {
        let fields = std::mem::take(&mut self.fields);
        DataRow::new(self.buf.split(), fields)
    }
}

/// What `arrow-pg` writes values through; the same length-prefixed form.
impl arrow_pg::encoder::Encoder for RowWriter {
    type Item = DataRow;

    fn encode_field<T>(&mut self, value: &T, pg: &FieldInfo) -> PgWireResult<()>
    where
        T: ToSql + ToSqlText + Sized,
    {
        let at = self.buf.len();
        self.buf.put_i32(-1);
        let is_null = match pg.format() {
            FieldFormat::Text => value.to_sql_text(pg.datatype(), &mut self.buf, pg.format_options()),
            FieldFormat::Binary => value.to_sql(pg.datatype(), &mut self.buf),
        }
        .map_err(PgWireError::ApiError)?;
        if let postgres_types::IsNull::No = is_null {
            let len = (self.buf.len() - at - 4) as i32;
            self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        self.fields += 1;
        Ok(())
    }

    fn take_row(&mut self) -> DataRow {
        RowWriter::take_row(self)
    }
}

/// A column of one batch, ready to write values from.
struct Column<'a> {
    values: Values<'a>,
    binary: bool,
    array: &'a ArrayRef,
    field: &'a Field,
    pg: &'a FieldInfo,
}

enum Values<'a> {
    Bool(&'a BooleanArray),
    Int16(&'a Int16Array),
    Int32(&'a Int32Array),
    Int64(&'a Int64Array),
    Float32(&'a Float32Array),
    Float64(&'a Float64Array),
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
    /// Microseconds since the Unix epoch; `zone` is whether it is a `timestamptz` (in UTC).
    Timestamp {
        micros: Instants<'a>,
        zone: bool,
    },
    Date32(&'a Date32Array),
    /// Everything else, written by `arrow-pg`.
    Other,
}

/// A timestamp column in any unit, read as microseconds.
enum Instants<'a> {
    Seconds(&'a PrimitiveArray<TimestampSecondType>),
    Millis(&'a PrimitiveArray<TimestampMillisecondType>),
    Micros(&'a PrimitiveArray<TimestampMicrosecondType>),
    Nanos(&'a PrimitiveArray<TimestampNanosecondType>),
}

impl Instants<'_> {
    fn at(&self, row: usize) -> Option<i64> {
        match self {
            Instants::Seconds(a) => a.value(row).checked_mul(1_000_000),
            Instants::Millis(a) => a.value(row).checked_mul(1_000),
            Instants::Micros(a) => Some(a.value(row)),
            Instants::Nanos(a) => Some(a.value(row).div_euclid(1_000)),
        }
    }

    /// Microseconds since 2000-01-01, PostgreSQL's binary form: nanoseconds are cut toward
    /// that epoch, as `postgres-types` (and so arrow-pg) cut them.
    fn pg_micros(&self, row: usize, micros: i64) -> Option<i64> {
        match self {
            Instants::Nanos(a) => Some(a.value(row).checked_sub(PG_EPOCH_MICROS * 1_000)? / 1_000),
            _ => micros.checked_sub(PG_EPOCH_MICROS),
        }
    }
}

/// Whether a time zone name is UTC, so that times print with `+00`.
fn is_utc(zone: &str) -> bool {
    matches!(zone, "UTC" | "utc" | "Z" | "+00:00" | "+00" | "Etc/UTC" | "GMT")
}

impl<'a> Column<'a> {
    fn new(array: &'a ArrayRef, field: &'a Field, pg: &'a FieldInfo) -> Self {
        let values = match array.data_type() {
            // Metadata that gives a column another PostgreSQL type (oid, "char"): arrow-pg's.
            _ if is_pg_char_field(field) || field.metadata().contains_key(PG_OID_ALIAS_KEY) => Values::Other,
            DataType::Boolean => Values::Bool(array.as_boolean()),
            DataType::Int16 => Values::Int16(array.as_primitive()),
            DataType::Int32 => Values::Int32(array.as_primitive()),
            DataType::Int64 => Values::Int64(array.as_primitive()),
            DataType::Float32 => Values::Float32(array.as_primitive()),
            DataType::Float64 => Values::Float64(array.as_primitive()),
            DataType::Utf8 => Values::Utf8(array.as_string()),
            DataType::LargeUtf8 => Values::LargeUtf8(array.as_string()),
            DataType::Utf8View => Values::Utf8View(array.as_string_view()),
            DataType::Date32 => Values::Date32(array.as_primitive()),
            DataType::Timestamp(unit, zone) if zone.as_deref().is_none_or(is_utc) => {
                let micros = match unit {
                    TimeUnit::Second => Instants::Seconds(array.as_primitive()),
                    TimeUnit::Millisecond => Instants::Millis(array.as_primitive()),
                    TimeUnit::Microsecond => Instants::Micros(array.as_primitive()),
                    TimeUnit::Nanosecond => Instants::Nanos(array.as_primitive()),
                };
                Values::Timestamp { micros, zone: zone.is_some() }
            }
            _ => Values::Other,
        };
        Column { values, binary: pg.format() == FieldFormat::Binary, array, field, pg }
    }

    /// The value written by arrow-pg.
    fn arrow_pg(&self, row: usize, w: &mut RowWriter) -> PgWireResult<()> {
        arrow_pg::encoder::encode_value(w, self.array, row, self.field, self.pg)
    }

    fn write(&self, row: usize, w: &mut RowWriter) -> PgWireResult<()> {
        let binary = self.binary;
        if self.array.is_null(row) {
            w.null();
            return Ok(());
        }
        match &self.values {
            Values::Other => return self.arrow_pg(row, w),
            Values::Timestamp { micros, zone } => {
                let at = micros
                    .at(row)
                    .and_then(|us| Some((DateTime::from_timestamp_micros(us)?, micros.pg_micros(row, us)?)));
                if let Some((dt, pg_micros)) = at
                    && (0..=9999).contains(&dt.year())
                {
                    w.value(|b| if binary { b.put_i64(pg_micros) } else { put_timestamp(b, &dt.naive_utc(), *zone) });
                } else {
                    // Outside years 0-9999 (or of i64 microseconds): arrow-pg's forms.
                    return self.arrow_pg(row, w);
                }
            }
            Values::Bool(a) => {
                let v = a.value(row);
                w.value(|b| {
                    b.put_u8(if binary {
                        v as u8
                    } else if v {
                        b't'
                    } else {
                        b'f'
                    })
                })
            }
            Values::Int16(a) => put_int(w, binary, a.value(row) as i64, |b, v| b.put_i16(v as i16)),
            Values::Int32(a) => put_int(w, binary, a.value(row) as i64, |b, v| b.put_i32(v as i32)),
            Values::Int64(a) => put_int(w, binary, a.value(row), |b, v| b.put_i64(v)),
            Values::Float32(a) => {
                let v = a.value(row);
                let options = self.pg.format_options();
                w.value(|b| {
                    if binary {
                        b.put_f32(v)
                    } else {
                        b.put_slice(arrow_pg_float(options.extra_float_digits).format_f32(v).as_bytes())
                    }
                })
            }
            Values::Float64(a) => {
                let v = a.value(row);
                let options = self.pg.format_options();
                w.value(|b| {
                    if binary {
                        b.put_f64(v)
                    } else {
                        b.put_slice(arrow_pg_float(options.extra_float_digits).format_f64(v).as_bytes())
                    }
                })
            }
            Values::Utf8(a) => w.value(|b| b.put_slice(a.value(row).as_bytes())),
            Values::LargeUtf8(a) => w.value(|b| b.put_slice(a.value(row).as_bytes())),
            Values::Utf8View(a) => w.value(|b| b.put_slice(a.value(row).as_bytes())),
            Values::Date32(a) => {
                let days = a.value(row);
                match DateTime::from_timestamp(days as i64 * 86_400, 0).filter(|d| (0..=9999).contains(&d.year())) {
                    Some(d) => {
                        w.value(|b| if binary { b.put_i32(days - PG_EPOCH_DAYS) } else { put_date(b, &d.naive_utc()) })
                    }
                    None => return self.arrow_pg(row, w),
                }
            }
        }
        Ok(())
    }
}

fn arrow_pg_float(extra_float_digits: i8) -> pgwire::types::format::float_digits::ExtraFloatDigits {
    pgwire::types::format::float_digits::ExtraFloatDigits(extra_float_digits)
}

fn put_int(w: &mut RowWriter, binary: bool, v: i64, put_binary: impl FnOnce(&mut BytesMut, i64)) {
    w.value(|b| if binary { put_binary(b, v) } else { b.put_slice(itoa::Buffer::new().format(v).as_bytes()) })
}

/// `YYYY-MM-DD`, for a year in 0-9999.
fn put_date(b: &mut BytesMut, d: &NaiveDateTime) {
    put_digits(b, d.year() as u32, 4);
    b.put_u8(b'-');
    put_digits(b, d.month(), 2);
    b.put_u8(b'-');
    put_digits(b, d.day(), 2);
}

/// `YYYY-MM-DD HH:MM:SS.ffffff`, then `+00` for a `timestamptz` (ISO date style, as
/// PostgreSQL's default `DateStyle` and arrow-pg print it).
fn put_timestamp(b: &mut BytesMut, t: &NaiveDateTime, zone: bool) {
    put_date(b, t);
    b.put_u8(b' ');
    put_digits(b, t.hour(), 2);
    b.put_u8(b':');
    put_digits(b, t.minute(), 2);
    b.put_u8(b':');
    put_digits(b, t.second(), 2);
    b.put_u8(b'.');
    put_digits(b, t.nanosecond() / 1_000, 6);
    if zone {
        b.put_slice(b"+00");
    }
}

/// `v` in exactly `width` decimal digits (it is below 10^width).
fn put_digits(b: &mut BytesMut, mut v: u32, width: usize) {
    let mut digits = [b'0'; 10];
    for i in (0..width).rev() {
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    b.put_slice(&digits[..width]);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        ArrayRef, BooleanArray, Date32Array, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array,
        LargeStringArray, ListArray, RecordBatch, StringArray, StringViewArray, TimestampMicrosecondArray,
        TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Int64Type, Schema};
    use pgwire::api::portal::Format;

    use super::encode_batch;

    fn batch() -> RecordBatch {
        // Nulls, both sides of 1970 and 2000, a year beyond 9999, sub-microsecond times,
        // float specials and a time zone other than UTC (written by arrow-pg).
        let micros = [
            Some(1_764_800_000_123_456),
            None,
            Some(-1),
            Some(0),
            Some(946_684_799_999_999),
            Some(300_000_000_000_000_000),
        ];
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("b", Arc::new(BooleanArray::from(vec![Some(true), None, Some(false), Some(true), Some(false), None]))),
            ("i2", Arc::new(Int16Array::from(vec![Some(i16::MIN), None, Some(-1), Some(0), Some(7), Some(i16::MAX)]))),
            ("i4", Arc::new(Int32Array::from(vec![Some(i32::MIN), None, Some(-1), Some(0), Some(7), Some(i32::MAX)]))),
            (
                "i8",
                Arc::new(Int64Array::from(vec![Some(i64::MIN), None, Some(-1), Some(0), Some(500), Some(i64::MAX)])),
            ),
            (
                "f4",
                Arc::new(Float32Array::from(vec![
                    Some(1.5),
                    None,
                    Some(f32::NAN),
                    Some(0.0),
                    Some(-1e-7),
                    Some(f32::INFINITY),
                ])),
            ),
            (
                "f8",
                Arc::new(Float64Array::from(vec![
                    Some(12.25),
                    None,
                    Some(f64::NEG_INFINITY),
                    Some(-0.0),
                    Some(1e21),
                    Some(0.1),
                ])),
            ),
            (
                "s",
                Arc::new(StringArray::from(vec![
                    Some("GET /checkout"),
                    None,
                    Some(""),
                    Some("é\"{x}"),
                    Some("a,b"),
                    Some("z"),
                ])),
            ),
            ("ls", Arc::new(LargeStringArray::from(vec![Some("x"), None, Some(""), Some("ü"), Some("q"), Some("r")]))),
            (
                "sv",
                Arc::new(StringViewArray::from(vec![
                    Some("a string longer than twelve bytes"),
                    None,
                    Some(""),
                    Some("short"),
                    Some("é"),
                    Some("t"),
                ])),
            ),
            ("ts", Arc::new(TimestampMicrosecondArray::from(micros.to_vec()).with_timezone("UTC"))),
            ("ts_plain", Arc::new(TimestampMicrosecondArray::from(micros.to_vec()))),
            (
                "ts_s",
                Arc::new(
                    TimestampSecondArray::from(vec![
                        Some(1_764_800_000),
                        None,
                        Some(-86_401),
                        Some(0),
                        Some(1),
                        Some(2),
                    ])
                    .with_timezone("+00:00"),
                ),
            ),
            (
                "ts_ms",
                Arc::new(
                    TimestampMillisecondArray::from(vec![
                        Some(1_764_800_000_123),
                        None,
                        Some(-1),
                        Some(0),
                        Some(1),
                        Some(2),
                    ])
                    .with_timezone("UTC"),
                ),
            ),
            (
                "ts_ns",
                Arc::new(
                    TimestampNanosecondArray::from(vec![
                        Some(1_764_800_000_123_456_789),
                        None,
                        Some(-1_500),
                        Some(0),
                        Some(999),
                        Some(1_000),
                    ])
                    .with_timezone("UTC"),
                ),
            ),
            ("ts_tokyo", Arc::new(TimestampMicrosecondArray::from(micros.to_vec()).with_timezone("Asia/Tokyo"))),
            (
                "d",
                Arc::new(Date32Array::from(vec![Some(20_425), None, Some(-1), Some(0), Some(10_957), Some(3_000_000)])),
            ),
            (
                "list",
                Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
                    Some(vec![Some(1), None]),
                    None,
                    Some(vec![]),
                    Some(vec![Some(3)]),
                    Some(vec![Some(4)]),
                    Some(vec![Some(5)]),
                ])),
            ),
        ];
        let schema =
            Schema::new(columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect::<Vec<_>>());
        RecordBatch::try_new(Arc::new(schema), columns.into_iter().map(|(_, a)| a).collect()).unwrap()
    }

    #[test]
    fn rows_are_written_byte_for_byte_as_arrow_pg_writes_them() {
        let batch = batch();
        for format in [Format::UnifiedText, Format::UnifiedBinary] {
            let fields =
                Arc::new(arrow_pg::datatypes::arrow_schema_to_pg_fields(batch.schema_ref(), &format, None).unwrap());
            let ours = encode_batch(&batch, &fields).unwrap();
            let theirs: Vec<_> = arrow_pg::datatypes::encode_recordbatch(fields.clone(), batch.clone())
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(ours.len(), 6);
            for (row, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                assert_eq!(a.field_count, b.field_count, "{format:?} row {row}");
                assert_eq!(a.data, b.data, "{format:?} row {row}");
            }
        }
    }
}
