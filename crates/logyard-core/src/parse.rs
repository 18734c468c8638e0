//! Splitting a decoded body into checked events, and reporting the bad ones by line.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::encoded::EventsEncoder;
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
    let mut out =
        ParsedBody { events: EventsEncoder::with_capacity(body.len() + body.len() / 4), ..Default::default() };
    for (i, line) in lines(body).enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.accept(line, received, i + 1);
    }
    out
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
    use super::*;

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
