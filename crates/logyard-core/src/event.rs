//! One event = one JSON object. This module checks a line at ingest (cheaply: UTF-8, JSON
//! syntax, object, event time) and, at flush, walks it into flattened column values.
//!
//! Both walks borrow from the line: keys and values without escapes are never copied.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::time::{self, Micros, TIME_FIELDS};

/// Longest accepted line (one event), in bytes.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
/// Deepest object nesting that is flattened into columns; deeper objects are kept as JSON text.
pub const MAX_FLATTEN_DEPTH: usize = 16;

/// Why one line was rejected. The message is shown to the client beside the line number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    #[error("line is {len} bytes, longer than the limit of {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error("invalid UTF-8 at byte {offset}")]
    InvalidUtf8 { offset: usize },
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("an event must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("field `{field}`: cannot read {value} as a time (RFC 3339, or epoch seconds or milliseconds)")]
    BadTime { field: &'static str, value: String },
}

/// Where an event's time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// No time field: the time the server received the event.
    Received,
    /// The field `TIME_FIELDS[i]`, which is consumed into the `timestamp` column.
    Field(u8),
}

impl TimeSource {
    pub fn to_byte(self) -> u8 {
        match self {
            TimeSource::Received => 0,
            TimeSource::Field(i) => i + 1,
        }
    }

    pub fn from_byte(b: u8) -> Self {
        match b {
            0 => TimeSource::Received,
            i => TimeSource::Field(i - 1),
        }
    }

    /// The top-level key that carried the time, if any.
    pub fn field(self) -> Option<&'static str> {
        match self {
            TimeSource::Received => None,
            TimeSource::Field(i) => TIME_FIELDS.get(i as usize).copied(),
        }
    }
}

/// The result of checking one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedLine {
    pub time: Micros,
    pub source: TimeSource,
}

/// Checks one line (without its newline): size, UTF-8, JSON, object, event time.
pub fn check_line(line: &[u8], received: Micros) -> Result<CheckedLine, LineError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(LineError::TooLong { len: line.len(), max: MAX_LINE_BYTES });
    }
    let text = std::str::from_utf8(line).map_err(|e| LineError::InvalidUtf8 { offset: e.valid_up_to() })?;
    check_object(text, received)
}

/// Like [`check_line`] for text already known to be UTF-8.
pub fn check_object(text: &str, received: Micros) -> Result<CheckedLine, LineError> {
    expect_object(text)?;
    let mut best: Option<(u8, &RawValue)> = None;
    for_each_field(text, |key, value| {
        if let Some(i) = TIME_FIELDS.iter().position(|f| *f == key.as_ref())
            && value.get() != "null"
            && best.is_none_or(|(b, _)| (i as u8) < b)
        {
            best = Some((i as u8, value));
        }
    })
    .map_err(|e| LineError::InvalidJson(e.to_string()))?;
    match best {
        None => Ok(CheckedLine { time: received, source: TimeSource::Received }),
        Some((i, raw)) => {
            let field = TIME_FIELDS[i as usize];
            let value: serde_json::Value =
                serde_json::from_str(raw.get()).map_err(|e| LineError::InvalidJson(e.to_string()))?;
            match time::parse_time_value(&value) {
                Some(t) => Ok(CheckedLine { time: t, source: TimeSource::Field(i) }),
                None => Err(LineError::BadTime { field, value: truncate(raw.get(), 80) }),
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        s.to_owned()
    } else {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    }
}

fn expect_object(text: &str) -> Result<(), LineError> {
    let first = text.trim_start().as_bytes().first().copied();
    let kind = match first {
        Some(b'{') => return Ok(()),
        None => return Err(LineError::InvalidJson("empty line".into())),
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'-' | b'0'..=b'9') => "a number",
        Some(_) => {
            // Let the parser describe what is wrong.
            let err = serde_json::from_str::<&RawValue>(text).err();
            return Err(LineError::InvalidJson(err.map(|e| e.to_string()).unwrap_or_else(|| "not an object".into())));
        }
    };
    // A syntax error is more useful than "not an object" for text like `[1,`.
    if let Err(e) = serde_json::from_str::<&RawValue>(text) {
        return Err(LineError::InvalidJson(e.to_string()));
    }
    Err(LineError::NotAnObject(kind))
}

/// Calls `f` for every top-level (key, raw value) pair of a JSON object, in order.
/// Fails on a syntax error or trailing characters.
pub fn for_each_field<'a, F>(text: &'a str, mut f: F) -> Result<(), serde_json::Error>
where
    F: FnMut(Cow<'a, str>, &'a RawValue),
{
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(FieldVisitor { f: &mut f })?;
    de.end()
}

struct FieldVisitor<'f, F> {
    f: &'f mut F,
}

impl<'de, F> Visitor<'de> for FieldVisitor<'_, F>
where
    F: FnMut(Cow<'de, str>, &'de RawValue),
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value: &'de RawValue = map.next_value()?;
            (self.f)(key, value);
        }
        Ok(())
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// One leaf value of a flattened event.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A JSON string, or an integer too large for 64 bits (kept as its digits).
    Text(Cow<'a, str>),
    /// An array (or an object nested deeper than [`MAX_FLATTEN_DEPTH`]), kept as JSON text.
    Json(&'a str),
}

impl Scalar<'_> {
    /// The kind used for type inference.
    pub fn kind(&self) -> ScalarKind {
        match self {
            Scalar::Bool(_) => ScalarKind::Bool,
            Scalar::Int(_) => ScalarKind::Int,
            Scalar::Float(_) => ScalarKind::Float,
            Scalar::Text(_) | Scalar::Json(_) => ScalarKind::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    Bool,
    Int,
    Float,
    Text,
}

/// What a leaf's value is; how it becomes a [`Scalar`] needs no JSON parser but for strings
/// with escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LeafKind {
    True = 0,
    False = 1,
    /// JSON number text (an integer too large for 64 bits stays text).
    Number = 2,
    /// A string without escapes; the value is between its quotes.
    String = 3,
    /// A string with escapes.
    Escaped = 4,
    /// An array, or an object nested deeper than flattening goes, kept as JSON text.
    Json = 5,
}

impl LeafKind {
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => LeafKind::True,
            1 => LeafKind::False,
            2 => LeafKind::Number,
            3 => LeafKind::String,
            4 => LeafKind::Escaped,
            5 => LeafKind::Json,
            _ => return None,
        })
    }

    /// The kind of a flattened value whose JSON text is `raw`.
    pub fn of(scalar: &Scalar<'_>, raw: &str) -> Self {
        match scalar {
            Scalar::Bool(true) => LeafKind::True,
            Scalar::Bool(false) => LeafKind::False,
            Scalar::Int(_) | Scalar::Float(_) => LeafKind::Number,
            Scalar::Text(_) if !raw.starts_with('"') => LeafKind::Number,
            Scalar::Text(_) if raw.contains('\\') => LeafKind::Escaped,
            Scalar::Text(_) => LeafKind::String,
            Scalar::Json(_) => LeafKind::Json,
        }
    }
}

/// Characters Delta Lake does not allow in column names (without column mapping).
const fn is_forbidden_in_column(c: char) -> bool {
    matches!(c, ' ' | ',' | ';' | '{' | '}' | '(' | ')' | '\n' | '\t' | '=')
}

/// Names that logyard's own columns use at the top level, and what a user field of that
/// name is stored as instead.
pub const RESERVED_RENAMES: [(&str, &str); 3] =
    [("date", "date_"), ("timestamp", "timestamp_"), ("_conflicts", "_conflicts_")];

/// Walks an event (already checked) into flattened leaves: nested objects become dotted
/// column names (`http.status`), arrays stay JSON text, nulls are skipped. The top-level key
/// that carried the event time is skipped (it becomes the `timestamp` column); other
/// reserved top-level names are renamed (see [`RESERVED_RENAMES`]).
pub fn flatten<'a, F>(text: &'a str, source: TimeSource, mut sink: F) -> Result<(), serde_json::Error>
where
    F: FnMut(&str, Scalar<'a>, &'a RawValue),
{
    let skip = source.field();
    let mut path = String::new();
    for_each_field_fallible(text, |key, raw| {
        if skip == Some(key.as_ref()) {
            return Ok(());
        }
        path.clear();
        match RESERVED_RENAMES.iter().find(|(k, _)| *k == key.as_ref()) {
            Some((_, renamed)) => path.push_str(renamed),
            None => push_sanitized(&mut path, &key),
        }
        walk_value(&mut path, raw, 1, &mut sink)
    })
}

/// The bytes of [`is_forbidden_in_column`], as a table (keys are sanitized once per field).
const FORBIDDEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 128 {
        t[i] = is_forbidden_in_column(i as u8 as char);
        i += 1;
    }
    t
};

/// Appends an object key to a column name as [`flatten`] does: characters a column name may
/// not hold become `_`, and an empty key is `_`.
pub fn push_sanitized(path: &mut String, key: &str) {
    if key.is_empty() {
        path.push('_');
        return;
    }
    if !key.bytes().any(|b| FORBIDDEN[usize::from(b)]) {
        path.push_str(key);
        return;
    }
    for c in key.chars() {
        path.push(if is_forbidden_in_column(c) { '_' } else { c });
    }
}

fn walk_value<'a, F>(path: &mut String, raw: &'a RawValue, depth: usize, sink: &mut F) -> Result<(), serde_json::Error>
where
    F: FnMut(&str, Scalar<'a>, &'a RawValue),
{
    let text = raw.get();
    let scalar = match text.as_bytes().first() {
        Some(b'n') => return Ok(()),
        Some(b't') => Scalar::Bool(true),
        Some(b'f') => Scalar::Bool(false),
        Some(b'"') => Scalar::Text(parse_json_string(text)?),
        Some(b'[') => Scalar::Json(text),
        Some(b'{') if depth < MAX_FLATTEN_DEPTH => {
            let base = path.len();
            return for_each_field_fallible(text, |key, value| {
                path.truncate(base);
                path.push('.');
                push_sanitized(path, &key);
                walk_value(path, value, depth + 1, sink)
            });
        }
        Some(b'{') => Scalar::Json(text),
        _ => parse_number(text),
    };
    sink(path, scalar, raw);
    Ok(())
}

fn for_each_field_fallible<'a, F>(text: &'a str, mut f: F) -> Result<(), serde_json::Error>
where
    F: FnMut(Cow<'a, str>, &'a RawValue) -> Result<(), serde_json::Error>,
{
    let mut first_err = None;
    for_each_field(text, |k, v| {
        if first_err.is_none()
            && let Err(e) = f(k, v)
        {
            first_err = Some(e);
        }
    })?;
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub(crate) fn parse_json_string(text: &str) -> Result<Cow<'_, str>, serde_json::Error> {
    let inner = &text[1..text.len() - 1];
    if !inner.contains('\\') {
        return Ok(Cow::Borrowed(inner));
    }
    match unescape(inner) {
        Some(s) => Ok(Cow::Owned(s)),
        // serde_json words what is wrong.
        None => serde_json::from_str::<String>(text).map(Cow::Owned),
    }
}

/// The text of a JSON string's inside, escapes replaced: runs between backslashes are copied
/// whole (found with `memchr`), which serde_json's reader does a byte at a time around each
/// escape. `None` for an escape that is not JSON's (or a control character), which
/// serde_json reports.
fn unescape(inner: &str) -> Option<String> {
    let b = inner.as_bytes();
    // A fold, not `any`: without an early exit the check is vectorized.
    if b.iter().fold(false, |control, &c| control | (c < 0x20)) {
        return None;
    }
    let mut out = String::with_capacity(inner.len());
    let mut i = 0;
    while let Some(k) = memchr::memchr(b'\\', &b[i..]) {
        // A backslash is ASCII: the run before it ends on a character boundary.
        out.push_str(&inner[i..i + k]);
        i += k;
        let c = match *b.get(i + 1)? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = hex4(b.get(i + 2..)?)?;
                if (0xD800..0xDC00).contains(&high) {
                    if b.get(i + 6..i + 8)? != b"\\u" {
                        return None;
                    }
                    let low = hex4(b.get(i + 8..)?)?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return None;
                    }
                    out.push(char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?);
                    i += 12;
                } else {
                    out.push(char::from_u32(high)?);
                    i += 6;
                }
                continue;
            }
            _ => return None,
        };
        out.push(c);
        i += 2;
    }
    out.push_str(&inner[i..]);
    Some(out)
}

/// The value of four hex digits.
pub(crate) fn hex4(b: &[u8]) -> Option<u32> {
    let mut v = 0;
    for &c in b.get(..4)? {
        v = v * 16 + char::from(c).to_digit(16)?;
    }
    Some(v)
}

pub(crate) fn parse_number(text: &str) -> Scalar<'_> {
    if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Scalar::Float(f),
            _ => Scalar::Text(Cow::Borrowed(text)),
        }
    } else {
        match text.parse::<i64>() {
            Ok(i) => Scalar::Int(i),
            Err(_) => Scalar::Text(Cow::Borrowed(text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_unescape_as_serde_json_reads_them() {
        let cases = [
            r#""a\"b\\c\/d\be\ff\ng\rh\ti""#,
            r#""\u00e9\u0000x\uD83D\uDE00 \u20AC""#,
            r#""{\"k\":\"v\"} ok\"""#,
            r#""\uD83Dx""#,
            r#""\uDE00""#,
            r#""\x""#,
            r#""tail\""#,
            "\"raw\ncontrol\\n\"",
            r#""élan \"q\"""#,
        ];
        for text in cases {
            let want = serde_json::from_str::<String>(text).map_err(|e| e.to_string());
            let got = parse_json_string(text).map(|c| c.into_owned()).map_err(|e| e.to_string());
            assert_eq!(got, want, "{text}");
        }
    }

    fn leaves(text: &str, source: TimeSource) -> Vec<(String, Scalar<'_>)> {
        let mut out = Vec::new();
        flatten(text, source, |k, v, _| out.push((k.to_owned(), v))).unwrap();
        out
    }

    #[test]
    fn checks_time_fields_in_order_of_preference() {
        let line = br#"{"ts": 1764079387, "time": "2025-11-25T14:03:08Z", "msg": "x"}"#;
        let c = check_line(line, 7).unwrap();
        assert_eq!(c.source, TimeSource::Field(2));
        assert_eq!(c.time, 1_764_079_388_000_000);
        let c = check_line(br#"{"msg": "no time"}"#, 7).unwrap();
        assert_eq!(c, CheckedLine { time: 7, source: TimeSource::Received });
        let c = check_line(br#"{"timestamp": null, "ts": 1764079387000}"#, 7).unwrap();
        assert_eq!(c.source, TimeSource::Field(3));
    }

    #[test]
    fn rejects_each_kind_of_bad_line_with_a_clear_message() {
        let err = |l: &[u8]| check_line(l, 0).unwrap_err().to_string();
        assert!(err(b"{\"a\": 1").contains("invalid JSON"));
        assert!(err(b"[1, 2]").contains("must be a JSON object, got an array"));
        assert!(err(b"42").contains("got a number"));
        assert!(err(b"\"s\"").contains("got a string"));
        assert!(err(b"{\"a\": \"\xff\"}").contains("invalid UTF-8 at byte 7"));
        assert!(err(b"{\"a\": 1} x").contains("invalid JSON"));
        assert!(err(br#"{"timestamp": "yesterday"}"#).contains("field `timestamp`: cannot read \"yesterday\""));
        let long = format!("{{\"a\": \"{}\"}}", "x".repeat(MAX_LINE_BYTES));
        assert!(err(long.as_bytes()).contains("longer than the limit"));
    }

    #[test]
    fn flattens_nested_objects_and_keeps_arrays_as_json() {
        let text = r#"{"timestamp": 1, "http": {"status": 500, "req": {"path": "/cart"}}, "tags": [1, "a"], "ok": true, "n": null, "lat": 1.5, "big": 123456789012345678901}"#;
        let got = leaves(text, TimeSource::Field(0));
        assert_eq!(
            got,
            vec![
                ("http.status".to_owned(), Scalar::Int(500)),
                ("http.req.path".to_owned(), Scalar::Text("/cart".into())),
                ("tags".to_owned(), Scalar::Json(r#"[1, "a"]"#)),
                ("ok".to_owned(), Scalar::Bool(true)),
                ("lat".to_owned(), Scalar::Float(1.5)),
                ("big".to_owned(), Scalar::Text("123456789012345678901".into())),
            ]
        );
    }

    #[test]
    fn renames_reserved_and_forbidden_names() {
        let got = leaves(r#"{"date": "d", "a b=c": 1, "": 2, "\u0041": "esc\"aped"}"#, TimeSource::Received);
        let names: Vec<_> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["date_", "a_b_c", "_", "A"]);
        assert_eq!(got[3].1, Scalar::Text("esc\"aped".into()));
    }

    #[test]
    fn deep_nesting_stops_at_the_limit() {
        let mut text = String::from("1");
        for _ in 0..20 {
            text = format!("{{\"a\": {text}}}");
        }
        let got = leaves(&text, TimeSource::Received);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.matches('a').count(), MAX_FLATTEN_DEPTH);
        assert!(matches!(got[0].1, Scalar::Json(_)));
    }
}
