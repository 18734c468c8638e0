//! AWS Application Load Balancer access logs: decompressed log text into typed Arrow batches.
//!
//! The format is the one of the Elastic Load Balancing documentation ("Access logs for your
//! Application Load Balancer", "Access log entries"): one request per line, fields separated by
//! spaces, some of them in double quotes (which may hold spaces and `\"`). Fields, in order:
//!
//! ```text
//!  1 type                     12 sent_bytes                23 "actions_executed"
//!  2 time                     13 "request"                 24 "redirect_url"
//!  3 elb                      14 "user_agent"              25 "error_reason"
//!  4 client:port              15 ssl_cipher                26 "target:port_list"
//!  5 target:port              16 ssl_protocol              27 "target_status_code_list"
//!  6 request_processing_time  17 target_group_arn          28 "classification"
//!  7 target_processing_time   18 "trace_id"                29 "classification_reason"
//!  8 response_processing_time 19 "domain_name"             30 conn_trace_id
//!  9 elb_status_code          20 "chosen_cert_arn"         31 "transformed_host"
//! 10 target_status_code       21 matched_rule_priority     32 "transformed_uri"
//! 11 received_bytes           22 request_creation_time     33 "request_transform_status"
//! ```
//!
//! The rules this parser follows:
//! - A line needs at least [`MIN_FIELDS`] fields (through `sent_bytes`). Older files end
//!   earlier than field 33: the missing trailing fields are null. AWS adds fields at the end
//!   over time and asks readers to ignore the ones they do not expect: everything after field
//!   33 is kept verbatim (quotes included) in the [`EXTRA_COLUMN`] text column, null when a
//!   line has no such fields.
//! - `-` is null in every column. Timings of `-1` (the load balancer could not dispatch or
//!   send) are null. `matched_rule_priority` keeps `-1`, which means "an error occurred
//!   during rules evaluation", not "absent".
//! - `client:port` and `target:port` are split at the last colon, so IPv6 addresses work with
//!   or without brackets (`[2001:db8::1]:443` and `2001:db8::1:443` both give `2001:db8::1`).
//! - The request line `"METHOD URL PROTOCOL"` is split at its first and last spaces; a
//!   request the load balancer could not read (`"- - -"`) gives three nulls.
//! - Inside quotes, `\"` is a quote and `\\` a backslash; other backslashes are kept as they
//!   are. A quote ends a field only when a space or the end of the line follows it.
//! - A line is rejected alone, with its 1-based number, when it is not UTF-8, has fewer than
//!   [`MIN_FIELDS`] fields, has a quote that never closes, or has a value that does not fit
//!   its column (a time that is not RFC 3339, a status code or byte count that is not an
//!   integer, ...): a value that does not parse means the fields are not where this parser
//!   expects them, and nulling it would hide that. Blank lines are skipped.
//!
//! `time` (field 2, when the load balancer answered) becomes the `timestamp` column and, as in
//! every logyard table, the UTC day of it the `date` partition column.
//!
//! Pure: no IO, no clock. Values are borrowed from the text and written straight into Arrow
//! builders; only a quoted value with a backslash in it is copied.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, Date32Array, Float64Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::batch::{base_schema, timestamp_type};
use crate::parse::{LineReport, MAX_REPORTED_ERRORS};
use crate::time::{self, Micros};

/// The fewest fields a line may have: `type` through `sent_bytes`.
pub const MIN_FIELDS: usize = 12;

/// The fields this parser knows (through `request_transform_status`).
pub const KNOWN_FIELDS: usize = 33;

/// The text column that keeps, verbatim, whatever a line has after its 33rd field.
pub const EXTRA_COLUMN: &str = "_extra";

/// The columns after `timestamp` and `date`, in order: name, type, and for text a rough
/// number of bytes per value (to size the builders).
const COLUMNS: [(&str, Kind); 37] = [
    ("type", Kind::Text(5)),
    ("elb", Kind::Text(36)),
    ("client_ip", Kind::Text(14)),
    ("client_port", Kind::Int32),
    ("target_ip", Kind::Text(12)),
    ("target_port", Kind::Int32),
    ("request_processing_time", Kind::Float64),
    ("target_processing_time", Kind::Float64),
    ("response_processing_time", Kind::Float64),
    ("elb_status_code", Kind::Int32),
    ("target_status_code", Kind::Int32),
    ("received_bytes", Kind::Int64),
    ("sent_bytes", Kind::Int64),
    ("request_method", Kind::Text(4)),
    ("request_url", Kind::Text(64)),
    ("request_protocol", Kind::Text(8)),
    ("user_agent", Kind::Text(96)),
    ("ssl_cipher", Kind::Text(28)),
    ("ssl_protocol", Kind::Text(8)),
    ("target_group_arn", Kind::Text(96)),
    ("trace_id", Kind::Text(40)),
    ("domain_name", Kind::Text(16)),
    ("chosen_cert_arn", Kind::Text(40)),
    ("matched_rule_priority", Kind::Int32),
    ("request_creation_time", Kind::Timestamp),
    ("actions_executed", Kind::Text(8)),
    ("redirect_url", Kind::Text(0)),
    ("error_reason", Kind::Text(0)),
    ("target_port_list", Kind::Text(14)),
    ("target_status_code_list", Kind::Text(3)),
    ("classification", Kind::Text(0)),
    ("classification_reason", Kind::Text(0)),
    ("conn_trace_id", Kind::Text(36)),
    ("transformed_host", Kind::Text(0)),
    ("transformed_uri", Kind::Text(0)),
    ("request_transform_status", Kind::Text(0)),
    (EXTRA_COLUMN, Kind::Text(0)),
];

// Positions in COLUMNS.
const C_TYPE: usize = 0;
const C_ELB: usize = 1;
const C_CLIENT_IP: usize = 2;
const C_CLIENT_PORT: usize = 3;
const C_TARGET_IP: usize = 4;
const C_TARGET_PORT: usize = 5;
const C_REQUEST_PROCESSING_TIME: usize = 6;
const C_ELB_STATUS_CODE: usize = 9;
const C_TARGET_STATUS_CODE: usize = 10;
const C_RECEIVED_BYTES: usize = 11;
const C_SENT_BYTES: usize = 12;
const C_REQUEST_METHOD: usize = 13;
const C_USER_AGENT: usize = 16;
/// `ssl_cipher` through `chosen_cert_arn`: six text columns straight from fields 15 to 20.
const C_SSL_CIPHER: usize = 17;
const C_MATCHED_RULE_PRIORITY: usize = 23;
const C_REQUEST_CREATION_TIME: usize = 24;
/// `actions_executed` through `request_transform_status`: eleven text columns straight from
/// fields 23 to 33.
const C_ACTIONS_EXECUTED: usize = 25;
const C_EXTRA: usize = 36;

#[derive(Clone, Copy)]
enum Kind {
    Text(usize),
    Int32,
    Int64,
    Float64,
    Timestamp,
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields: Vec<Field> = base_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    for (name, kind) in COLUMNS {
        let data_type = match kind {
            Kind::Text(_) => DataType::Utf8,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::Float64 => DataType::Float64,
            Kind::Timestamp => timestamp_type(),
        };
        fields.push(Field::new(name, data_type, true));
    }
    Arc::new(Schema::new(fields))
});

/// The schema of every batch [`parse`] returns: `timestamp` and `date` as in
/// [`base_schema`], then the ALB columns (all nullable), then [`EXTRA_COLUMN`]. The same
/// `Arc` every call.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// One parsed file.
#[derive(Debug)]
pub struct Parsed {
    /// One row per accepted line, in file order, with [`schema`].
    pub batch: RecordBatch,
    /// Accepted lines (the batch's row count).
    pub rows: usize,
    /// Rejected lines, all of them.
    pub rejected: usize,
    /// The first [`MAX_REPORTED_ERRORS`] rejections, with 1-based line numbers.
    pub errors: Vec<LineReport>,
}

/// Parses a whole decompressed log file. Never fails as a whole: each bad line is skipped and
/// reported with its number. Lines end with `\n` or `\r\n`; the last may have no end.
pub fn parse(text: &[u8]) -> Parsed {
    // Where each line ends, found once: their number sizes the columns.
    let ends: Vec<usize> = memchr::memchr_iter(b'\n', text).chain(std::iter::once(text.len())).collect();
    let mut columns = Columns::with_capacity(ends.len());
    let mut rejected = 0;
    let mut errors = Vec::new();
    for (i, line) in lines(text, &ends).enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let result = match std::str::from_utf8(line) {
            Ok(line) => parse_line(line).map(|row| columns.push(&row)),
            Err(e) => Err(format!("invalid UTF-8 at byte {}", e.valid_up_to())),
        };
        if let Err(message) = result {
            rejected += 1;
            if errors.len() < MAX_REPORTED_ERRORS {
                errors.push(LineReport { line: i + 1, message });
            }
        }
    }
    let rows = columns.times.len();
    Parsed { batch: columns.finish(), rows, rejected, errors }
}

/// The lines of `text` that end at `ends` (each `\n`, found with `memchr`, then the text's
/// end): the text after the last `\n` is a line too, empty when the text ends with one.
fn lines<'a>(text: &'a [u8], ends: &'a [usize]) -> impl Iterator<Item = &'a [u8]> {
    let starts = std::iter::once(0).chain(ends.iter().map(|end| end + 1));
    starts.zip(ends).map(move |(start, &end)| &text[start..end])
}

/// One field of a line, without its quotes.
#[derive(Clone, Copy, Default)]
struct Raw<'a> {
    text: &'a str,
    /// Quoted and holding a backslash: unescape before use.
    escaped: bool,
}

impl<'a> Raw<'a> {
    /// The value, `None` for `-`.
    fn value(self) -> Option<Cow<'a, str>> {
        if self.text == "-" {
            None
        } else if self.escaped {
            Some(Cow::Owned(unescape(self.text)))
        } else {
            Some(Cow::Borrowed(self.text))
        }
    }

    /// The unquoted text for a number, `None` for `-`.
    fn scalar(self) -> Option<&'a str> {
        (self.text != "-").then_some(self.text)
    }
}

/// The fields of a line, split but not yet converted.
struct Fields<'a> {
    raw: [Raw<'a>; KNOWN_FIELDS],
    len: usize,
    extra: Option<&'a str>,
}

impl<'a> Fields<'a> {
    /// Field `i` (0-based), or `None` when the line ends before it.
    fn get(&self, i: usize) -> Option<Raw<'a>> {
        (i < self.len).then(|| self.raw[i])
    }

    fn text(&self, i: usize) -> Option<Cow<'a, str>> {
        self.get(i).and_then(Raw::value)
    }
}

/// Splits a line into fields: runs of spaces separate them, a field that starts with `"`
/// runs to the next unescaped `"` followed by a space or the end of the line.
fn split_fields(line: &str) -> Result<Fields<'_>, String> {
    let b = line.as_bytes();
    let mut fields = Fields { raw: [Raw::default(); KNOWN_FIELDS], len: 0, extra: None };
    let mut i = 0;
    loop {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if fields.len == KNOWN_FIELDS {
            fields.extra = Some(line[i..].trim_end_matches(' '));
            break;
        }
        let raw = if b[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            let mut escaped = false;
            loop {
                match b.get(j..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)).map(|k| j + k) {
                    None => {
                        return Err(format!(
                            "field {} ({}): the quote never closes",
                            fields.len + 1,
                            field_name(fields.len)
                        ));
                    }
                    Some(k) if b[k] == b'\\' => {
                        escaped = true;
                        j = k + 2;
                    }
                    Some(k) if k + 1 == b.len() || b[k + 1] == b' ' => {
                        j = k;
                        break;
                    }
                    Some(k) => j = k + 1,
                }
            }
            // `j` is at an ASCII quote, so both ends are character boundaries.
            i = j + 1;
            Raw { text: &line[start..j], escaped }
        } else {
            let start = i;
            i = memchr::memchr(b' ', &b[start..]).map_or(b.len(), |k| start + k);
            Raw { text: &line[start..i], escaped: false }
        };
        fields.raw[fields.len] = raw;
        fields.len += 1;
    }
    Ok(fields)
}

/// `\"` → `"`, `\\` → `\`; any other backslash stays.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('"' | '\\')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The documented name of field `i` (0-based), for error messages.
fn field_name(i: usize) -> &'static str {
    const NAMES: [&str; KNOWN_FIELDS] = [
        "type",
        "time",
        "elb",
        "client:port",
        "target:port",
        "request_processing_time",
        "target_processing_time",
        "response_processing_time",
        "elb_status_code",
        "target_status_code",
        "received_bytes",
        "sent_bytes",
        "request",
        "user_agent",
        "ssl_cipher",
        "ssl_protocol",
        "target_group_arn",
        "trace_id",
        "domain_name",
        "chosen_cert_arn",
        "matched_rule_priority",
        "request_creation_time",
        "actions_executed",
        "redirect_url",
        "error_reason",
        "target:port_list",
        "target_status_code_list",
        "classification",
        "classification_reason",
        "conn_trace_id",
        "transformed_host",
        "transformed_uri",
        "request_transform_status",
    ];
    NAMES.get(i).copied().unwrap_or("extra")
}

fn bad(i: usize, what: &str, value: &str) -> String {
    let mut shown: String = value.chars().take(60).collect();
    if shown.len() < value.len() {
        shown.push('…');
    }
    format!("field {} ({}): {what}: {shown:?}", i + 1, field_name(i))
}

/// A line's typed values, checked before anything is written to the columns.
struct Row<'a> {
    fields: Fields<'a>,
    time: Micros,
    client: (Option<&'a str>, Option<i32>),
    target: (Option<&'a str>, Option<i32>),
    timings: [Option<f64>; 3],
    elb_status: Option<i32>,
    target_status: Option<i32>,
    received: Option<i64>,
    sent: Option<i64>,
    rule_priority: Option<i32>,
    creation_time: Option<Micros>,
}

// Field positions (0-based).
const TYPE: usize = 0;
const TIME: usize = 1;
const ELB: usize = 2;
const CLIENT: usize = 3;
const TARGET: usize = 4;
const REQUEST_PROCESSING: usize = 5;
const ELB_STATUS: usize = 8;
const TARGET_STATUS: usize = 9;
const RECEIVED: usize = 10;
const SENT: usize = 11;
const REQUEST: usize = 12;
const USER_AGENT: usize = 13;
/// `ssl_cipher` through `chosen_cert_arn`, all text.
const SSL_CIPHER: usize = 14;
const RULE_PRIORITY: usize = 20;
const CREATION_TIME: usize = 21;
/// `actions_executed` through `request_transform_status`, all text.
const ACTIONS: usize = 22;

fn parse_line(line: &str) -> Result<Row<'_>, String> {
    let fields = split_fields(line)?;
    if fields.len < MIN_FIELDS {
        return Err(format!("expected at least {MIN_FIELDS} space-separated fields, found {}", fields.len));
    }
    let f = |i: usize| fields.get(i).and_then(Raw::scalar);
    let time =
        parse_time(fields.raw[TIME].text).ok_or_else(|| bad(TIME, "not an RFC 3339 time", fields.raw[TIME].text))?;
    let client = address(f(CLIENT)).ok_or_else(|| bad(CLIENT, "not an address:port", fields.raw[CLIENT].text))?;
    let target = address(f(TARGET)).ok_or_else(|| bad(TARGET, "not an address:port", fields.raw[TARGET].text))?;
    let mut timings = [None; 3];
    for (k, t) in timings.iter_mut().enumerate() {
        let i = REQUEST_PROCESSING + k;
        *t = timing(f(i)).ok_or_else(|| bad(i, "not a number of seconds", fields.raw[i].text))?;
    }
    let int32 = |i: usize| number::<i32>(f(i)).ok_or_else(|| bad(i, "not an integer", fields.raw[i].text));
    let int64 = |i: usize| number::<i64>(f(i)).ok_or_else(|| bad(i, "not an integer", fields.raw[i].text));
    let elb_status = int32(ELB_STATUS)?;
    let target_status = int32(TARGET_STATUS)?;
    let received = int64(RECEIVED)?;
    let sent = int64(SENT)?;
    let rule_priority = int32(RULE_PRIORITY)?;
    let creation_time = match f(CREATION_TIME) {
        None => None,
        Some(s) => Some(parse_time(s).ok_or_else(|| bad(CREATION_TIME, "not an RFC 3339 time", s))?),
    };
    Ok(Row {
        fields,
        time,
        client,
        target,
        timings,
        elb_status,
        target_status,
        received,
        sent,
        rule_priority,
        creation_time,
    })
}

/// `None` for a value that does not parse; `Some(None)` for `-` or a missing field.
fn number<T: std::str::FromStr>(s: Option<&str>) -> Option<Option<T>> {
    match s {
        None => Some(None),
        Some(s) => s.parse().ok().map(Some),
    }
}

/// Seconds; `-1` (not available) is null.
fn timing(s: Option<&str>) -> Option<Option<f64>> {
    match s {
        None => Some(None),
        Some(s) => {
            let v: f64 = s.parse().ok()?;
            if !v.is_finite() {
                None
            } else if v == -1.0 {
                Some(None)
            } else {
                Some(Some(v))
            }
        }
    }
}

/// `ip:port`, split at the last colon; brackets around an IPv6 address are dropped.
fn address(s: Option<&str>) -> Option<(Option<&str>, Option<i32>)> {
    let Some(s) = s else { return Some((None, None)) };
    let colon = s.rfind(':')?;
    let (host, port) = (&s[..colon], &s[colon + 1..]);
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port: u16 = port.parse().ok()?;
    (!host.is_empty()).then_some((Some(host), Some(i32::from(port))))
}

/// `METHOD URL PROTOCOL`, split at the first and the last space; `-` parts are null.
fn split_request(s: &str) -> [Option<&str>; 3] {
    fn part(p: &str) -> Option<&str> {
        let p = p.trim_matches(' ');
        (!p.is_empty() && p != "-").then_some(p)
    }
    let s = s.trim_matches(' ');
    match (s.find(' '), s.rfind(' ')) {
        (Some(first), Some(last)) if first < last => {
            [part(&s[..first]), part(&s[first + 1..last]), part(&s[last + 1..])]
        }
        (Some(first), _) => [part(&s[..first]), part(&s[first + 1..]), None],
        _ => [None, part(s), None],
    }
}

/// RFC 3339. The form ALB writes (`2018-07-02T22:23:00.186641Z`) is read by hand
/// ([`time::parse_rfc3339_fast`]); anything else goes through [`time::parse_time_str`].
fn parse_time(s: &str) -> Option<Micros> {
    if let Some(t) = time::parse_rfc3339_fast(s) {
        return Some(t);
    }
    // Only text shaped like a date: parse_time_str also reads epoch numbers.
    let b = s.as_bytes();
    if b.len() >= 10 && b[4] == b'-' { time::parse_time_str(s) } else { None }
}

/// One column being built.
enum Builder {
    Text(StringBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Timestamp(Vec<Option<Micros>>),
}

/// The Arrow builders of one batch, in schema order.
struct Columns {
    times: Vec<Micros>,
    builders: Vec<Builder>,
}

impl Columns {
    fn with_capacity(rows: usize) -> Self {
        let builders = COLUMNS
            .iter()
            .map(|(_, kind)| match *kind {
                Kind::Text(width) => Builder::Text(StringBuilder::with_capacity(rows, rows * width)),
                Kind::Int32 => Builder::Int32(Int32Builder::with_capacity(rows)),
                Kind::Int64 => Builder::Int64(Int64Builder::with_capacity(rows)),
                Kind::Float64 => Builder::Float64(Float64Builder::with_capacity(rows)),
                Kind::Timestamp => Builder::Timestamp(Vec::with_capacity(rows)),
            })
            .collect();
        Self { times: Vec::with_capacity(rows), builders }
    }

    fn text(&mut self, c: usize, value: Option<impl AsRef<str>>) {
        match &mut self.builders[c] {
            Builder::Text(b) => b.append_option(value),
            _ => unreachable!("column {c} is text"),
        }
    }

    fn int32(&mut self, c: usize, value: Option<i32>) {
        match &mut self.builders[c] {
            Builder::Int32(b) => b.append_option(value),
            _ => unreachable!("column {c} is Int32"),
        }
    }

    fn int64(&mut self, c: usize, value: Option<i64>) {
        match &mut self.builders[c] {
            Builder::Int64(b) => b.append_option(value),
            _ => unreachable!("column {c} is Int64"),
        }
    }

    fn float64(&mut self, c: usize, value: Option<f64>) {
        match &mut self.builders[c] {
            Builder::Float64(b) => b.append_option(value),
            _ => unreachable!("column {c} is Float64"),
        }
    }

    fn timestamp(&mut self, c: usize, value: Option<Micros>) {
        match &mut self.builders[c] {
            Builder::Timestamp(b) => b.push(value),
            _ => unreachable!("column {c} is a timestamp"),
        }
    }

    fn push(&mut self, row: &Row<'_>) {
        let f = &row.fields;
        self.times.push(row.time);
        self.text(C_TYPE, f.text(TYPE));
        self.text(C_ELB, f.text(ELB));
        self.text(C_CLIENT_IP, row.client.0);
        self.int32(C_CLIENT_PORT, row.client.1);
        self.text(C_TARGET_IP, row.target.0);
        self.int32(C_TARGET_PORT, row.target.1);
        for (k, t) in row.timings.into_iter().enumerate() {
            self.float64(C_REQUEST_PROCESSING_TIME + k, t);
        }
        self.int32(C_ELB_STATUS_CODE, row.elb_status);
        self.int32(C_TARGET_STATUS_CODE, row.target_status);
        self.int64(C_RECEIVED_BYTES, row.received);
        self.int64(C_SENT_BYTES, row.sent);
        let request =
            f.get(REQUEST).map(|r| if r.escaped { Cow::Owned(unescape(r.text)) } else { Cow::Borrowed(r.text) });
        let parts = request.as_deref().map_or([None; 3], split_request);
        for (k, part) in parts.into_iter().enumerate() {
            self.text(C_REQUEST_METHOD + k, part);
        }
        self.text(C_USER_AGENT, f.text(USER_AGENT));
        for k in 0..6 {
            self.text(C_SSL_CIPHER + k, f.text(SSL_CIPHER + k));
        }
        self.int32(C_MATCHED_RULE_PRIORITY, row.rule_priority);
        self.timestamp(C_REQUEST_CREATION_TIME, row.creation_time);
        for k in 0..11 {
            self.text(C_ACTIONS_EXECUTED + k, f.text(ACTIONS + k));
        }
        self.text(C_EXTRA, f.extra);
    }

    fn finish(self) -> RecordBatch {
        // `timestamp` and `date` exactly as BatchBuilder::finish builds them.
        let date = Date32Array::from(self.times.iter().map(|t| time::days_since_epoch(*t)).collect::<Vec<_>>());
        let timestamp = TimestampMicrosecondArray::from(self.times).with_timezone("UTC");
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(2 + COLUMNS.len());
        arrays.push(Arc::new(timestamp));
        arrays.push(Arc::new(date));
        for builder in self.builders {
            arrays.push(match builder {
                Builder::Text(mut b) => Arc::new(b.finish()),
                Builder::Int32(mut b) => Arc::new(b.finish()),
                Builder::Int64(mut b) => Arc::new(b.finish()),
                Builder::Float64(mut b) => Arc::new(b.finish()),
                Builder::Timestamp(v) => Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC")),
            });
        }
        RecordBatch::try_new(schema(), arrays).expect("one array of the schema's type per column")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Date32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};

    use crate::batch::{BatchBuilder, DATE_COLUMN, DEFAULT_MAX_COLUMNS, PendingEvent, TIMESTAMP_COLUMN};
    use crate::event::TimeSource;

    // The example entries of the AWS documentation ("Access logs for your Application Load
    // Balancer", "Example log entries"), each on one line, in their current form: through
    // conn_trace_id and the three request-transform fields.
    const DOC_HTTP: &str = r#"http 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 "GET http://www.example.com:80/ HTTP/1.1" "curl/7.46.0" - - arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "Root=1-58337262-36d228ad5d99923122bbe354" "-" "-" 0 2018-07-02T22:22:48.364000Z "forward" "-" "-" "10.0.0.1:80" "200" "-" "-" TID_1234abcd5678ef90 "-" "-" "-""#;
    const DOC_HTTPS: &str = r#"https 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 10.0.0.1:80 0.086 0.048 0.037 200 200 0 57 "GET https://www.example.com:443/ HTTP/1.1" "curl/7.46.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "Root=1-58337281-1d84f3d73c47ec4e58577259" "www.example.com" "arn:aws:acm:us-east-2:123456789012:certificate/12345678-1234-1234-1234-123456789012" 1 2018-07-02T22:22:48.364000Z "authenticate,forward" "-" "-" "10.0.0.1:80" "200" "-" "-" TID_1234abcd5678ef90 "m.example.com" "-" "TransformSuccess""#;
    const DOC_H2: &str = r#"h2 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 10.0.1.252:48160 10.0.0.66:9000 0.000 0.002 0.000 200 200 5 257 "GET https://10.0.2.105:773/ HTTP/2.0" "curl/7.46.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "Root=1-58337327-72bd00b0343d75b906739c42" "-" "-" 1 2018-07-02T22:22:48.364000Z "redirect" "https://example.com:80/" "-" "10.0.0.66:9000" "200" "-" "-" TID_1234abcd5678ef90 "-" "-" "-""#;
    const DOC_WS: &str = r#"ws 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 10.0.0.140:40914 10.0.1.192:8010 0.001 0.003 0.000 101 101 218 587 "GET http://10.0.0.30:80/ HTTP/1.1" "-" - - arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "Root=1-58337364-23a8c76965a2ef7629b185e3" "-" "-" 1 2018-07-02T22:22:48.364000Z "forward" "-" "-" "10.0.1.192:8010" "101" "-" "-" TID_1234abcd5678ef90 "-" "-" "-""#;
    const DOC_WSS: &str = r#"wss 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 10.0.0.140:44244 10.0.0.171:8010 0.000 0.001 0.000 101 101 218 786 "GET https://10.0.0.30:443/ HTTP/1.1" "-" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "Root=1-58337364-23a8c76965a2ef7629b185e3" "-" "-" 1 2018-07-02T22:22:48.364000Z "forward" "-" "-" "10.0.0.171:8010" "101" "-" "-" TID_1234abcd5678ef90 "-" "-" "-""#;
    const DOC_LAMBDA: &str = r#"http 2018-11-30T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 - 0.000 0.001 0.000 200 200 34 366 "GET http://www.example.com:80/ HTTP/1.1" "curl/7.46.0" - - arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "Root=1-58337364-23a8c76965a2ef7629b185e3" "-" "-" 0 2018-11-30T22:22:48.364000Z "forward" "-" "-" "-" "-" "-" "-" TID_1234abcd5678ef90 "-" "-" "-""#;
    const DOC_LAMBDA_FAILED: &str = r#"http 2018-11-30T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 - 0.000 0.001 0.000 502 - 34 366 "GET http://www.example.com:80/ HTTP/1.1" "curl/7.46.0" - - arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "Root=1-58337364-23a8c76965a2ef7629b185e3" "-" "-" 0 2018-11-30T22:22:48.364000Z "forward" "-" "LambdaInvalidResponse" "-" "-" "-" "-" TID_1234abcd5678ef90 "-" "-" "-""#;
    /// The HTTP example as the documentation gave it before 2020: 25 fields.
    const DOC_HTTP_2018: &str = r#"http 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 "GET http://www.example.com:80/ HTTP/1.1" "curl/7.46.0" - - arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "Root=1-58337262-36d228ad5d99923122bbe354" "-" "-" 0 2018-07-02T22:22:48.364000Z "forward" "-" "-""#;

    fn one(line: &str) -> RecordBatch {
        let p = parse(line.as_bytes());
        assert_eq!((p.rows, p.rejected), (1, 0), "{:?}", p.errors);
        p.batch
    }

    fn text<'a>(b: &'a RecordBatch, column: &str, row: usize) -> Option<&'a str> {
        let a = b.column_by_name(column).unwrap().as_string::<i32>();
        a.is_valid(row).then(|| a.value(row))
    }

    fn int32(b: &RecordBatch, column: &str, row: usize) -> Option<i32> {
        let a = b.column_by_name(column).unwrap().as_primitive::<Int32Type>();
        a.is_valid(row).then(|| a.value(row))
    }

    fn int64(b: &RecordBatch, column: &str, row: usize) -> Option<i64> {
        let a = b.column_by_name(column).unwrap().as_primitive::<Int64Type>();
        a.is_valid(row).then(|| a.value(row))
    }

    fn float64(b: &RecordBatch, column: &str, row: usize) -> Option<f64> {
        let a = b.column_by_name(column).unwrap().as_primitive::<Float64Type>();
        a.is_valid(row).then(|| a.value(row))
    }

    fn micros(b: &RecordBatch, column: &str, row: usize) -> Option<i64> {
        let a = b.column_by_name(column).unwrap().as_primitive::<TimestampMicrosecondType>();
        a.is_valid(row).then(|| a.value(row))
    }

    fn rfc3339(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
    }

    #[test]
    fn documented_http_entry() {
        let b = one(DOC_HTTP);
        assert_eq!(micros(&b, TIMESTAMP_COLUMN, 0), Some(rfc3339("2018-07-02T22:23:00.186641Z")));
        let date = b.column_by_name(DATE_COLUMN).unwrap().as_primitive::<Date32Type>().value(0);
        assert_eq!(date, 17_714, "2018-07-02 is day 17714");
        assert_eq!(text(&b, "type", 0), Some("http"));
        assert_eq!(text(&b, "elb", 0), Some("app/my-loadbalancer/50dc6c495c0c9188"));
        assert_eq!((text(&b, "client_ip", 0), int32(&b, "client_port", 0)), (Some("192.168.131.39"), Some(2817)));
        assert_eq!((text(&b, "target_ip", 0), int32(&b, "target_port", 0)), (Some("10.0.0.1"), Some(80)));
        assert_eq!(float64(&b, "request_processing_time", 0), Some(0.0));
        assert_eq!(float64(&b, "target_processing_time", 0), Some(0.001));
        assert_eq!(float64(&b, "response_processing_time", 0), Some(0.0));
        assert_eq!((int32(&b, "elb_status_code", 0), int32(&b, "target_status_code", 0)), (Some(200), Some(200)));
        assert_eq!((int64(&b, "received_bytes", 0), int64(&b, "sent_bytes", 0)), (Some(34), Some(366)));
        assert_eq!(text(&b, "request_method", 0), Some("GET"));
        assert_eq!(text(&b, "request_url", 0), Some("http://www.example.com:80/"));
        assert_eq!(text(&b, "request_protocol", 0), Some("HTTP/1.1"));
        assert_eq!(text(&b, "user_agent", 0), Some("curl/7.46.0"));
        assert_eq!((text(&b, "ssl_cipher", 0), text(&b, "ssl_protocol", 0)), (None, None));
        assert_eq!(
            text(&b, "target_group_arn", 0),
            Some("arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067")
        );
        assert_eq!(text(&b, "trace_id", 0), Some("Root=1-58337262-36d228ad5d99923122bbe354"));
        assert_eq!((text(&b, "domain_name", 0), text(&b, "chosen_cert_arn", 0)), (None, None));
        assert_eq!(int32(&b, "matched_rule_priority", 0), Some(0));
        assert_eq!(micros(&b, "request_creation_time", 0), Some(rfc3339("2018-07-02T22:22:48.364Z")));
        assert_eq!(text(&b, "actions_executed", 0), Some("forward"));
        assert_eq!((text(&b, "redirect_url", 0), text(&b, "error_reason", 0)), (None, None));
        assert_eq!(text(&b, "target_port_list", 0), Some("10.0.0.1:80"));
        assert_eq!(text(&b, "target_status_code_list", 0), Some("200"));
        assert_eq!((text(&b, "classification", 0), text(&b, "classification_reason", 0)), (None, None));
        assert_eq!(text(&b, "conn_trace_id", 0), Some("TID_1234abcd5678ef90"));
        for c in ["transformed_host", "transformed_uri", "request_transform_status", EXTRA_COLUMN] {
            assert_eq!(text(&b, c, 0), None, "{c}");
        }
    }

    #[test]
    fn documented_https_entry() {
        let b = one(DOC_HTTPS);
        assert_eq!(text(&b, "type", 0), Some("https"));
        assert_eq!(float64(&b, "request_processing_time", 0), Some(0.086));
        assert_eq!(float64(&b, "target_processing_time", 0), Some(0.048));
        assert_eq!(float64(&b, "response_processing_time", 0), Some(0.037));
        assert_eq!((int64(&b, "received_bytes", 0), int64(&b, "sent_bytes", 0)), (Some(0), Some(57)));
        assert_eq!(text(&b, "request_url", 0), Some("https://www.example.com:443/"));
        assert_eq!(text(&b, "ssl_cipher", 0), Some("ECDHE-RSA-AES128-GCM-SHA256"));
        assert_eq!(text(&b, "ssl_protocol", 0), Some("TLSv1.2"));
        assert_eq!(text(&b, "domain_name", 0), Some("www.example.com"));
        assert_eq!(
            text(&b, "chosen_cert_arn", 0),
            Some("arn:aws:acm:us-east-2:123456789012:certificate/12345678-1234-1234-1234-123456789012")
        );
        assert_eq!(int32(&b, "matched_rule_priority", 0), Some(1));
        assert_eq!(text(&b, "actions_executed", 0), Some("authenticate,forward"));
        assert_eq!(text(&b, "transformed_host", 0), Some("m.example.com"));
        assert_eq!(text(&b, "transformed_uri", 0), None);
        assert_eq!(text(&b, "request_transform_status", 0), Some("TransformSuccess"));
    }

    #[test]
    fn documented_http2_websockets_and_secured_websockets_entries() {
        let p = parse([DOC_H2, DOC_WS, DOC_WSS].join("\n").as_bytes());
        assert_eq!((p.rows, p.rejected), (3, 0), "{:?}", p.errors);
        let b = &p.batch;
        assert_eq!(text(b, "type", 0), Some("h2"));
        assert_eq!((text(b, "client_ip", 0), int32(b, "client_port", 0)), (Some("10.0.1.252"), Some(48160)));
        assert_eq!((text(b, "target_ip", 0), int32(b, "target_port", 0)), (Some("10.0.0.66"), Some(9000)));
        assert_eq!(text(b, "request_url", 0), Some("https://10.0.2.105:773/"));
        assert_eq!(text(b, "request_protocol", 0), Some("HTTP/2.0"));
        assert_eq!(text(b, "actions_executed", 0), Some("redirect"));
        assert_eq!(text(b, "redirect_url", 0), Some("https://example.com:80/"));
        assert_eq!(text(b, "target_port_list", 0), Some("10.0.0.66:9000"));

        assert_eq!(text(b, "type", 1), Some("ws"));
        assert_eq!((int32(b, "elb_status_code", 1), int32(b, "target_status_code", 1)), (Some(101), Some(101)));
        assert_eq!((int64(b, "received_bytes", 1), int64(b, "sent_bytes", 1)), (Some(218), Some(587)));
        assert_eq!(text(b, "user_agent", 1), None, "\"-\" is no user agent");
        assert_eq!(text(b, "ssl_cipher", 1), None);
        assert_eq!(text(b, "target_status_code_list", 1), Some("101"));

        assert_eq!(text(b, "type", 2), Some("wss"));
        assert_eq!((text(b, "target_ip", 2), int32(b, "target_port", 2)), (Some("10.0.0.171"), Some(8010)));
        assert_eq!(text(b, "request_url", 2), Some("https://10.0.0.30:443/"));
        assert_eq!(text(b, "ssl_protocol", 2), Some("TLSv1.2"));
        assert!(text(b, "target_group_arn", 2).unwrap().starts_with("arn:aws:elasticloadbalancing:us-west-2:"));
    }

    #[test]
    fn documented_lambda_entries() {
        let p = parse(format!("{DOC_LAMBDA}\n{DOC_LAMBDA_FAILED}\n").as_bytes());
        assert_eq!((p.rows, p.rejected), (2, 0), "{:?}", p.errors);
        let b = &p.batch;
        for row in 0..2 {
            assert_eq!((text(b, "target_ip", row), int32(b, "target_port", row)), (None, None), "a Lambda target is -");
            assert_eq!(text(b, "target_port_list", row), None);
            assert_eq!(micros(b, TIMESTAMP_COLUMN, row), Some(rfc3339("2018-11-30T22:23:00.186641Z")));
        }
        assert_eq!((int32(b, "elb_status_code", 0), int32(b, "target_status_code", 0)), (Some(200), Some(200)));
        assert_eq!(text(b, "error_reason", 0), None);
        assert_eq!((int32(b, "elb_status_code", 1), int32(b, "target_status_code", 1)), (Some(502), None));
        assert_eq!(text(b, "error_reason", 1), Some("LambdaInvalidResponse"));
    }

    #[test]
    fn classification_and_conn_trace_id() {
        let line = DOC_HTTP
            .replace(r#""200" "-" "-" TID"#, r#""200" "Ambiguous" "UndefinedContentLengthSemantics" TID"#)
            .replace("TID_1234abcd5678ef90", "TID_0f1e2d3c4b5a69788796a5b4c3d2e1f0");
        let b = one(&line);
        assert_eq!(text(&b, "classification", 0), Some("Ambiguous"));
        assert_eq!(text(&b, "classification_reason", 0), Some("UndefinedContentLengthSemantics"));
        assert_eq!(text(&b, "conn_trace_id", 0), Some("TID_0f1e2d3c4b5a69788796a5b4c3d2e1f0"));
        assert_eq!(text(&b, "target_status_code_list", 0), Some("200"));
    }

    #[test]
    fn minus_one_timings_are_null() {
        let b = one(&DOC_HTTP.replace("0.000 0.001 0.000", "-1 -1 -1"));
        for c in ["request_processing_time", "target_processing_time", "response_processing_time"] {
            assert_eq!(float64(&b, c, 0), None, "{c}");
        }
        let b = one(&DOC_HTTP.replace("0.000 0.001 0.000", "0.001 -1 -1"));
        assert_eq!(float64(&b, "request_processing_time", 0), Some(0.001));
        assert_eq!(float64(&b, "target_processing_time", 0), None);
    }

    #[test]
    fn a_request_that_reached_no_target() {
        // From a real file: the load balancer answered 400 itself.
        let line = r#"http 2025-03-01T10:03:17.218099Z app/MyALB1/240dbdc5244653c9 205.210.31.158:61084 - -1 -1 -1 400 - 0 272 "- http://myalb1-878688131.us-east-1.elb.amazonaws.com:80- -" "-" - - - "-" "-" "-" - 2025-03-01T10:03:16.682000Z "-" "-" "-" "-" "-" "-" "-" TID_6cfb27fd2ef25c42932bd6e0ff56d631"#;
        let b = one(line);
        assert_eq!((text(&b, "target_ip", 0), int32(&b, "target_port", 0)), (None, None));
        assert_eq!(float64(&b, "target_processing_time", 0), None);
        assert_eq!((int32(&b, "elb_status_code", 0), int32(&b, "target_status_code", 0)), (Some(400), None));
        assert_eq!(text(&b, "request_method", 0), None);
        assert_eq!(text(&b, "request_url", 0), Some("http://myalb1-878688131.us-east-1.elb.amazonaws.com:80-"));
        assert_eq!(text(&b, "request_protocol", 0), None);
        for c in ["user_agent", "target_group_arn", "trace_id", "actions_executed", "target_port_list"] {
            assert_eq!(text(&b, c, 0), None, "{c}");
        }
        assert_eq!(int32(&b, "matched_rule_priority", 0), None);
        assert_eq!(text(&b, "conn_trace_id", 0), Some("TID_6cfb27fd2ef25c42932bd6e0ff56d631"));
        assert_eq!(text(&b, "transformed_host", 0), None, "a 30-field line");
    }

    #[test]
    fn an_unreadable_request_gives_null_method_url_and_protocol() {
        for request in [r#""- - -""#, r#""- - - ""#, r#""-""#] {
            let b = one(&DOC_HTTP.replace(r#""GET http://www.example.com:80/ HTTP/1.1""#, request));
            for c in ["request_method", "request_url", "request_protocol"] {
                assert_eq!(text(&b, c, 0), None, "{request} {c}");
            }
        }
        // A URL with spaces in it (the load balancer does not encode a malformed request).
        let b = one(&DOC_HTTP.replace("http://www.example.com:80/ HTTP", "http://www.example.com:80/a b HTTP"));
        assert_eq!(text(&b, "request_url", 0), Some("http://www.example.com:80/a b"));
        assert_eq!(text(&b, "request_protocol", 0), Some("HTTP/1.1"));
    }

    #[test]
    fn user_agent_with_spaces_and_escaped_quotes_is_unescaped() {
        let ua = r#""Mozilla/5.0 (compatible; \"Example Crawler\" 2.1; +https://crawler.example/bot)""#;
        let b = one(&DOC_HTTP.replace(r#""curl/7.46.0""#, ua));
        assert_eq!(
            text(&b, "user_agent", 0),
            Some(r#"Mozilla/5.0 (compatible; "Example Crawler" 2.1; +https://crawler.example/bot)"#)
        );
        assert_eq!(text(&b, "trace_id", 0), Some("Root=1-58337262-36d228ad5d99923122bbe354"), "the fields after it");
        // An escaped backslash, a quote not followed by a space (part of the value), and an
        // escaped backslash just before the closing quote.
        let b = one(&DOC_HTTP.replace(r#""curl/7.46.0""#, r#""say \"hi\" \\ back"slash \\""#));
        assert_eq!(text(&b, "user_agent", 0), Some(r#"say "hi" \ back"slash \"#));
        assert_eq!(text(&b, "ssl_cipher", 0), None, "the fields after it");
        // An escaped request line.
        let b = one(&DOC_HTTP.replace("http://www.example.com:80/ ", r#"http://www.example.com:80/\"x\" "#));
        assert_eq!(text(&b, "request_url", 0), Some(r#"http://www.example.com:80/"x""#));
    }

    #[test]
    fn ipv6_clients_and_targets_with_or_without_brackets() {
        let p = parse(
            [
                DOC_HTTP.replace("192.168.131.39:2817", "2001:db8::1:2817"),
                DOC_HTTP.replace("192.168.131.39:2817", "[2001:db8:85a3::8a2e:370:7334]:443"),
                DOC_HTTP.replace("10.0.0.1:80 0.000", "[2001:db8::10]:8080 0.000"),
            ]
            .join("\n")
            .as_bytes(),
        );
        assert_eq!((p.rows, p.rejected), (3, 0), "{:?}", p.errors);
        let b = &p.batch;
        assert_eq!((text(b, "client_ip", 0), int32(b, "client_port", 0)), (Some("2001:db8::1"), Some(2817)));
        assert_eq!(
            (text(b, "client_ip", 1), int32(b, "client_port", 1)),
            (Some("2001:db8:85a3::8a2e:370:7334"), Some(443))
        );
        assert_eq!((text(b, "target_ip", 2), int32(b, "target_port", 2)), (Some("2001:db8::10"), Some(8080)));
    }

    #[test]
    fn old_short_lines_have_null_trailing_fields() {
        let line_27 = DOC_HTTP_2018.to_owned() + r#" "10.0.0.1:80" "200""#;
        let p = parse(format!("{DOC_HTTP_2018}\n{line_27}\n").as_bytes());
        assert_eq!((p.rows, p.rejected), (2, 0), "{:?}", p.errors);
        let b = &p.batch;
        assert_eq!(text(b, "actions_executed", 0), Some("forward"));
        assert_eq!(text(b, "target_port_list", 0), None);
        assert_eq!(text(b, "target_port_list", 1), Some("10.0.0.1:80"));
        assert_eq!(text(b, "target_status_code_list", 1), Some("200"));
        for row in 0..2 {
            for c in ["classification", "classification_reason", "conn_trace_id", "transformed_host", EXTRA_COLUMN] {
                assert_eq!(text(b, c, row), None, "{c}");
            }
            assert_eq!(int32(b, "elb_status_code", row), Some(200));
        }
        // The fewest fields accepted: through sent_bytes.
        let minimal = "http 2018-07-02T22:23:00.186641Z app/x/1 192.0.2.1:1 - -1 -1 -1 400 - 0 0";
        let b = one(minimal);
        assert_eq!(int64(&b, "sent_bytes", 0), Some(0));
        assert_eq!((text(&b, "request_method", 0), text(&b, "user_agent", 0)), (None, None));
        assert_eq!(micros(&b, "request_creation_time", 0), None);
    }

    #[test]
    fn extra_trailing_fields_are_kept_in_extra_and_change_nothing_else() {
        // A real line from 2026 with three fields newer than request_transform_status.
        let b = one(&format!(r#"{DOC_HTTPS} 3.34.116.99 "-" "a b""#));
        assert_eq!(text(&b, EXTRA_COLUMN, 0), Some(r#"3.34.116.99 "-" "a b""#));
        assert_eq!(text(&b, "request_transform_status", 0), Some("TransformSuccess"));
        assert_eq!(text(&b, "conn_trace_id", 0), Some("TID_1234abcd5678ef90"));
        assert_eq!(int32(&b, "elb_status_code", 0), Some(200));
    }

    #[test]
    fn a_garbage_line_is_rejected_alone_with_its_line_number() {
        let text_ = format!("{DOC_HTTP}\nthis is not an ALB log line\n{DOC_WS}\n");
        let p = parse(text_.as_bytes());
        assert_eq!((p.rows, p.rejected), (2, 1));
        assert_eq!(p.errors.len(), 1);
        assert_eq!(p.errors[0].line, 2);
        assert!(p.errors[0].message.contains("at least 12"), "{}", p.errors[0].message);
        assert_eq!(text(&p.batch, "type", 0), Some("http"));
        assert_eq!(text(&p.batch, "type", 1), Some("ws"));
        assert_eq!(int64(&p.batch, "sent_bytes", 1), Some(587));
    }

    #[test]
    fn bad_lines_are_rejected_with_the_reason() {
        let cases: [(Vec<u8>, &str); 8] = [
            (DOC_HTTP.replace("2018-07-02T22:23:00.186641Z", "yesterday").into(), "field 2 (time)"),
            (DOC_HTTP.replace("2018-07-02T22:23:00.186641Z", "2018-02-30T22:23:00Z").into(), "field 2 (time)"),
            (format!(r#"{DOC_HTTP_2018} "10.0.0.1:80"#).into(), "field 26 (target:port_list): the quote never closes"),
            (DOC_HTTP.replace("200 200 34", "OK 200 34").into(), "field 9 (elb_status_code)"),
            (DOC_HTTP.replace("192.168.131.39:2817", "192.168.131.39").into(), "field 4 (client:port)"),
            (DOC_HTTP.replace("0.000 0.001", "fast 0.001").into(), "field 6 (request_processing_time)"),
            (DOC_HTTP.replace("0 2018-07-02T22:22:48.364000Z", "0 soon").into(), "field 22 (request_creation_time)"),
            (b"http 2018-07-02T22:23:00Z app/x/1 192.0.2.1:1 - -1 -1 -1 400 - 0 \"\xff\"".to_vec(), "UTF-8"),
        ];
        for (line, reason) in cases {
            let p = parse(&line);
            assert_eq!((p.rows, p.rejected), (0, 1), "{}", String::from_utf8_lossy(&line));
            assert!(p.errors[0].message.contains(reason), "{reason}: {}", p.errors[0].message);
            assert_eq!(p.errors[0].line, 1);
        }
    }

    #[test]
    fn errors_are_capped_but_every_rejection_is_counted() {
        let text_ = "garbage\n".repeat(150) + DOC_HTTP;
        let p = parse(text_.as_bytes());
        assert_eq!((p.rows, p.rejected, p.errors.len()), (1, 150, MAX_REPORTED_ERRORS));
        assert_eq!(p.errors.last().unwrap().line, MAX_REPORTED_ERRORS);
    }

    #[test]
    fn crlf_blank_lines_and_a_missing_final_newline() {
        let text_ = format!("\r\n{DOC_HTTP}\r\n\n   \nnope\r\n{DOC_H2}");
        let p = parse(text_.as_bytes());
        assert_eq!((p.rows, p.rejected), (2, 1));
        assert_eq!(p.errors[0].line, 5, "blank lines count in the numbering");
        assert_eq!(text(&p.batch, "request_transform_status", 0), None, "no \\r left in the last field");
        assert_eq!(text(&p.batch, "conn_trace_id", 1), Some("TID_1234abcd5678ef90"));
        let b = one(&format!("{DOC_HTTP_2018}\r\n"));
        assert_eq!(text(&b, "error_reason", 0), None);
    }

    #[test]
    fn empty_input_gives_an_empty_batch_with_the_schema() {
        for input in [&b""[..], b"\n", b"\r\n\n  \n"] {
            let p = parse(input);
            assert_eq!((p.rows, p.rejected, p.batch.num_rows()), (0, 0, 0));
            assert_eq!(p.batch.schema(), schema());
        }
    }

    #[test]
    fn the_schema_is_stable_and_starts_with_the_base_schema() {
        let s = schema();
        assert!(Arc::ptr_eq(&s, &schema()));
        let base = base_schema();
        assert_eq!(s.field(0), base.field(0));
        assert_eq!(s.field(1), base.field(1));
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names.len(), 39);
        assert_eq!(&names[..6], ["timestamp", "date", "type", "elb", "client_ip", "client_port"]);
        assert_eq!(names.last(), Some(&EXTRA_COLUMN));
        assert!(s.fields().iter().skip(2).all(|f| f.is_nullable()));
        assert_eq!(s.field_with_name("received_bytes").unwrap().data_type(), &DataType::Int64);
        assert_eq!(s.field_with_name("request_creation_time").unwrap().data_type(), &timestamp_type());
        assert_eq!(one(DOC_HTTP).schema(), s);
    }

    #[test]
    fn timestamp_and_date_are_built_as_batch_builder_builds_them() {
        let p = parse(lines_text(500, 3).as_bytes());
        let times = p.batch.column(0).as_primitive::<TimestampMicrosecondType>();
        let mut builder = BatchBuilder::new(Arc::new(base_schema()), DEFAULT_MAX_COLUMNS);
        for t in times.values() {
            builder.push(PendingEvent { time: *t, source: TimeSource::Received, text: "{}" }).unwrap();
        }
        let expected = builder.finish().unwrap();
        assert_eq!(p.batch.column(0).to_data(), expected.column(0).to_data());
        assert_eq!(p.batch.column(1).to_data(), expected.column(1).to_data());
    }

    #[test]
    fn the_fast_time_parser_agrees_with_chrono() {
        for s in [
            "2018-07-02T22:23:00.186641Z",
            "2018-07-02T22:22:48.364000Z",
            "2024-02-29T23:59:59.999999Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.5Z",
            "2000-03-01T00:00:00.000001Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
        ] {
            assert_eq!(parse_time(s), Some(rfc3339(s)), "{s}");
        }
        // Nanoseconds are cut to microseconds, as time::parse_time_str does.
        assert_eq!(parse_time("2018-07-02T22:23:00.186641999Z"), Some(rfc3339("2018-07-02T22:23:00.186641Z")));
        // Offsets go through the general parser.
        assert_eq!(parse_time("2018-07-02T23:23:00.186641+01:00"), Some(rfc3339("2018-07-02T22:23:00.186641Z")));
        for bad in [
            "2023-02-29T00:00:00Z",
            "2018-13-02T22:23:00Z",
            "2018-07-02T24:00:00Z",
            "2018-07-02T22:23:00.Z",
            "1530570180",
            "-",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        let p = parse(lines_text(2_000, 9).as_bytes());
        let created =
            p.batch.column_by_name("request_creation_time").unwrap().as_primitive::<TimestampMicrosecondType>();
        for (t, c) in p.batch.column(0).as_primitive::<TimestampMicrosecondType>().values().iter().zip(created.iter()) {
            let shown = chrono::DateTime::from_timestamp_micros(*t)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            assert_eq!(parse_time(&shown), Some(*t));
            if let Some(c) = c {
                assert!(c <= *t);
            }
        }
    }

    /// The byte-at-a-time splitter `split_fields` replaced, as the judge of its answers.
    fn split_fields_bytewise(line: &str) -> Result<Vec<(&str, bool)>, usize> {
        let b = line.as_bytes();
        let mut fields = Vec::new();
        let mut i = 0;
        loop {
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i >= b.len() || fields.len() == KNOWN_FIELDS {
                return Ok(fields);
            }
            if b[i] == b'"' {
                let (start, mut j, mut escaped) = (i + 1, i + 1, false);
                loop {
                    match b.get(j) {
                        None => return Err(fields.len()),
                        Some(b'\\') => {
                            escaped = true;
                            j += 2;
                        }
                        Some(b'"') if j + 1 == b.len() || b[j + 1] == b' ' => break,
                        Some(_) => j += 1,
                    }
                }
                fields.push((&line[start..j], escaped));
                i = j + 1;
            } else {
                let start = i;
                while i < b.len() && b[i] != b' ' {
                    i += 1;
                }
                fields.push((&line[start..i], false));
            }
        }
    }

    #[test]
    fn fields_split_as_a_byte_at_a_time_would_split_them() {
        // Lines of spaces, quotes, backslashes and letters in every arrangement a small
        // random walk finds (xorshift, fixed seed), split both ways.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..50_000 {
            let len = (next() % 48) as usize;
            let line: String = (0..len).map(|_| [' ', '"', '\\', 'a', '-', 'é'][(next() % 6) as usize]).collect();
            let expected = split_fields_bytewise(&line);
            match (split_fields(&line), expected) {
                (Ok(got), Ok(want)) => {
                    let got_fields: Vec<(&str, bool)> =
                        got.raw[..got.len].iter().map(|r| (r.text, r.escaped)).collect();
                    assert_eq!(got_fields, want, "{line:?}");
                }
                (Err(message), Err(at)) => {
                    assert!(message.starts_with(&format!("field {} (", at + 1)), "{line:?}: {message}");
                }
                (got, want) => panic!("{line:?}: {:?} against {want:?}", got.map(|f| f.len)),
            }
        }
    }

    fn lines_text(n: usize, seed: u64) -> String {
        logyard_bench::alb::lines(n, seed)
    }
}
