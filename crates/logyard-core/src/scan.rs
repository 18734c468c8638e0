//! One pass over an event's JSON text at ingest: it checks the text, finds the candidates for
//! the event time, and yields the flattened leaves of [`crate::event::flatten`] with their
//! places in the text — what [`crate::encoded`] writes to the write-ahead log.
//!
//! It accepts a strict subset of JSON and answers `None` for anything else (a syntax error,
//! a control character in a string, an escaped surrogate that is not a pair, nesting deeper
//! than [`MAX_DEPTH`]): the caller then takes the full path (serde_json's check and walk),
//! which gives the exact error, or the exact reading. The property test of
//! `logyard-ingest`'s `build` module holds both paths to the same rows and errors.

use crate::event::{LeafKind, MAX_FLATTEN_DEPTH, RESERVED_RENAMES, hex4, parse_json_string, push_sanitized};
use crate::time::TIME_FIELDS;
// Keys and column names are short and compared for every value: compared inline, not through
// a call to `memcmp`, which took a sixth of a request's reading (BENCHMARKS.md, "Ingest").
use memchr::arch::all::is_equal;

/// Nesting beyond this is left to the full path (serde_json stops at 128).
pub const MAX_DEPTH: usize = 100;

/// What a scan found besides the leaves: the preferred non-null time field, as its index in
/// [`TIME_FIELDS`] and the byte range of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub time: Option<(u8, usize, usize)>,
}

/// Scans `text`, calling `leaf(path, kind, start, len, top)` for every leaf in text order,
/// where `top` is one plus the [`TIME_FIELDS`] index of the top-level key the leaf is under
/// (0 when that key is no time field). `None`: leave this text to the full path.
pub fn scan<F>(text: &str, mut leaf: F) -> Option<Found>
where
    F: FnMut(&str, LeafKind, u32, u32, u8),
{
    scan_with(text, &mut Keys::default(), |path, kind, start, len, top, _| leaf(path, kind, start, len, top))
}

/// [`scan`], with the top-level keys of the events scanned before: events of one source
/// mostly share their keys in the same order, so a key is first compared, as bytes, with the
/// key that came after the key before it last time, and when it is the same its column name
/// and time-field tag are taken as they were, without scanning, sanitizing or looking up the
/// key again. The leaf gets one more argument: for the value of a remembered top-level key,
/// the key's number, which stays the same for as long as `keys` lives (a path can be looked
/// up by it once).
pub fn scan_with<F>(text: &str, keys: &mut Keys, leaf: F) -> Option<Found>
where
    F: FnMut(&str, LeafKind, u32, u32, u8, Option<u32>),
{
    let mut s = Scanner { text, b: text.as_bytes(), i: 0, path: String::with_capacity(64), leaf, keys, key: NONE };
    s.top()
}

/// The top-level keys [`scan_with`] has read (those without escapes, the first
/// [`Keys::MAX`]), each with the key that came after it the last time.
#[derive(Debug)]
pub struct Keys {
    known: Vec<Key>,
    /// The key events started with the last time.
    first: u32,
}

impl Default for Keys {
    fn default() -> Self {
        Self { known: Vec::new(), first: NONE }
    }
}

impl Keys {
    /// Keys remembered: enough for the events of a service, bounded for the rest.
    const MAX: usize = 64;
}

/// No key.
const NONE: u32 = u32::MAX;

/// Where a scan is in an event's top-level keys.
struct Cursor {
    /// The key before: its index in [`Keys::known`]; [`NONE`] for a key not remembered; `None`
    /// before the first.
    prev: Option<u32>,
    /// The key that came after it the last time.
    expected: u32,
}

#[derive(Debug)]
struct Key {
    /// The key as it is in the text, quotes included.
    quoted: Box<[u8]>,
    /// Its column name.
    path: Box<str>,
    /// One plus its [`TIME_FIELDS`] index, or 0.
    top: u8,
    /// The key that came after it the last time.
    next: u32,
}

struct Scanner<'t, 'k, F> {
    text: &'t str,
    b: &'t [u8],
    i: usize,
    path: String,
    leaf: F,
    keys: &'k mut Keys,
    /// The remembered top-level key whose value is being read, [`NONE`] for any other.
    key: u32,
}

/// Which of 16 bytes are a quote, a backslash or a control character, as bits.
#[inline]
fn specials(block: &[u8]) -> u32 {
    use wide::u8x16;
    let v = u8x16::new(block.try_into().expect("16 bytes"));
    let m = v.simd_eq(u8x16::splat(b'"')) | v.simd_eq(u8x16::splat(b'\\')) | v.min(u8x16::splat(0x1f)).simd_eq(v);
    m.to_bitmask()
}

/// Writes `s` as a JSON string, escaped byte for byte as serde_json escapes it; runs without
/// a quote, backslash or control character are found 16 bytes at a time and copied whole.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    let (mut run, mut i) = (0, 0);
    while i < b.len() {
        match b.get(i..i + 16) {
            Some(block) => match specials(block) {
                0 => {
                    i += 16;
                    continue;
                }
                m => i += m.trailing_zeros() as usize,
            },
            None if !matches!(b[i], b'"' | b'\\' | 0..=0x1f) => {
                i += 1;
                continue;
            }
            None => {}
        }
        out.extend_from_slice(&b[run..i]);
        match b[i] {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            c => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]),
        }
        i += 1;
        run = i;
    }
    out.extend_from_slice(&b[run..]);
    out.push(b'"');
}

impl<'t, F> Scanner<'t, '_, F>
where
    F: FnMut(&str, LeafKind, u32, u32, u8, Option<u32>),
{
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        if self.peek()? != c {
            return None;
        }
        self.i += 1;
        self.ws();
        Some(())
    }

    /// After a member or an item: `true` past a comma (another follows), `false` past `close`.
    fn more(&mut self, close: u8) -> Option<bool> {
        self.ws();
        let c = self.peek()?;
        self.i += 1;
        if c == b',' {
            self.ws();
            Some(true)
        } else {
            (c == close).then_some(false)
        }
    }

    fn emit(&mut self, kind: LeafKind, start: usize, top: u8) {
        let key = (self.key != NONE).then_some(self.key);
        (self.leaf)(&self.path, kind, start as u32, (self.i - start) as u32, top, key);
    }

    fn top(&mut self) -> Option<Found> {
        self.ws();
        self.expect(b'{')?;
        let mut best: Option<(u8, usize, usize)> = None;
        let mut key_buf = String::new();
        if self.peek()? == b'}' {
            self.i += 1;
        } else {
            let mut cursor = Cursor { prev: None, expected: self.keys.first };
            loop {
                let top = self.top_key(&mut cursor, &mut key_buf)?;
                self.key = cursor.prev.unwrap_or(NONE);
                let start = self.i;
                self.value(1, top)?;
                if let Some(t) = top.checked_sub(1)
                    && &self.b[start..self.i] != b"null"
                    && best.is_none_or(|(b, _, _)| t < b)
                {
                    best = Some((t, start, self.i));
                }
                if !self.more(b'}')? {
                    break;
                }
            }
        }
        self.ws();
        (self.i == self.b.len()).then_some(Found { time: best })
    }

    /// Reads the top-level key at `cursor` and the colon after it into `path` as its column
    /// name, and moves the cursor past it; returns its time-field tag (one plus its
    /// [`TIME_FIELDS`] index, or 0).
    #[inline]
    fn top_key(&mut self, cursor: &mut Cursor, buf: &mut String) -> Option<u8> {
        let k = cursor.expected;
        if k != NONE
            && let known = &self.keys.known[k as usize]
            && self.b.get(self.i..self.i + known.quoted.len()).is_some_and(|t| is_equal(t, &known.quoted))
        {
            // The bytes between the quotes were a whole key without escapes or control
            // characters, and the quote after them ends it.
            self.i += known.quoted.len();
            self.path.clear();
            self.path.push_str(&known.path);
            let top = known.top;
            *cursor = Cursor { prev: Some(k), expected: known.next };
            self.ws();
            self.expect(b':')?;
            return Some(top);
        }
        self.new_top_key(cursor, buf)
    }

    /// [`Scanner::top_key`] for a key other than the one expected: read, named and remembered.
    #[inline(never)]
    fn new_top_key(&mut self, cursor: &mut Cursor, buf: &mut String) -> Option<u8> {
        let at = self.i;
        let (key, escaped) = self.key(buf)?;
        let top = TIME_FIELDS.iter().position(|f| *f == key).map_or(0, |i| i as u8 + 1);
        self.path.clear();
        match RESERVED_RENAMES.iter().find(|(k, _)| *k == key) {
            Some((_, renamed)) => self.path.push_str(renamed),
            None => push_sanitized(&mut self.path, key),
        }
        // Only keys written without escapes: their bytes between the quotes are the key.
        let known = if escaped {
            NONE
        } else {
            let quoted = &self.b[at..at + key.len() + 2];
            match self.keys.known.iter().position(|k| is_equal(&k.quoted, quoted)) {
                Some(k) => k as u32,
                None if self.keys.known.len() < Keys::MAX => {
                    let path = self.path.as_str().into();
                    self.keys.known.push(Key { quoted: quoted.into(), path, top, next: NONE });
                    (self.keys.known.len() - 1) as u32
                }
                None => NONE,
            }
        };
        match cursor.prev {
            None => self.keys.first = known,
            Some(NONE) => {}
            Some(p) => self.keys.known[p as usize].next = known,
        }
        let expected = self.keys.known.get(known as usize).map_or(NONE, |k| k.next);
        *cursor = Cursor { prev: Some(known), expected };
        Some(top)
    }

    /// Reads a key and the colon after it; the key is borrowed from the text, or decoded into
    /// `buf` when it has escapes (then `true`).
    fn key<'k>(&mut self, buf: &'k mut String) -> Option<(&'k str, bool)>
    where
        't: 'k,
    {
        if self.peek()? != b'"' {
            return None;
        }
        let (start, end, escaped) = self.string()?;
        self.ws();
        self.expect(b':')?;
        if !escaped {
            return Some((&self.text[start..end], false));
        }
        // Rare: serde_json decodes it, with its quotes.
        *buf = parse_json_string(&self.text[start - 1..end + 1]).ok()?.into_owned();
        Some((buf.as_str(), true))
    }

    /// A string at the cursor: the range of its inside, and whether it has escapes.
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        let b = self.b;
        let start = self.i + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            while let Some(block) = b.get(i..i + 16) {
                let m = specials(block);
                if m != 0 {
                    i += m.trailing_zeros() as usize;
                    break;
                }
                i += 16;
            }
            match *b.get(i)? {
                b'"' => {
                    self.i = i + 1;
                    return Some((start, i, escaped));
                }
                b'\\' => {
                    escaped = true;
                    i = self.escape(i)?;
                }
                0..=0x1f => return None,
                _ => i += 1,
            }
        }
    }

    /// Checks the escape at `i`; returns where the string goes on.
    fn escape(&self, i: usize) -> Option<usize> {
        match *self.b.get(i + 1)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(i + 2),
            b'u' => {
                let h = hex4(self.b.get(i + 2..)?)?;
                if (0xDC00..0xE000).contains(&h) {
                    return None;
                }
                if (0xD800..0xDC00).contains(&h) {
                    if self.b.get(i + 6..i + 8)? != b"\\u" {
                        return None;
                    }
                    let l = hex4(self.b.get(i + 8..)?)?;
                    return (0xDC00..0xE000).contains(&l).then_some(i + 12);
                }
                Some(i + 6)
            }
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? != word {
            return None;
        }
        self.i += word.len();
        Some(())
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Option<()> {
        if self.peek()? == b'-' {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    /// A value at `depth` (1 for a top-level member's value), under top-level key tag `top`.
    fn value(&mut self, depth: usize, top: u8) -> Option<()> {
        let start = self.i;
        match self.peek()? {
            b'"' => {
                let (_, _, escaped) = self.string()?;
                self.emit(if escaped { LeafKind::Escaped } else { LeafKind::String }, start, top);
            }
            b't' => {
                self.literal(b"true")?;
                self.emit(LeafKind::True, start, top);
            }
            b'f' => {
                self.literal(b"false")?;
                self.emit(LeafKind::False, start, top);
            }
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => {
                self.number()?;
                self.emit(LeafKind::Number, start, top);
            }
            b'{' if depth < MAX_FLATTEN_DEPTH => self.object(depth, top)?,
            b'{' | b'[' => {
                self.skip(depth)?;
                self.emit(LeafKind::Json, start, top);
            }
            _ => return None,
        }
        Some(())
    }

    /// A nested object, flattened: each member's leaves under `path.key`.
    fn object(&mut self, depth: usize, top: u8) -> Option<()> {
        // Its leaves are under longer paths than the key's.
        self.key = NONE;
        self.i += 1;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        let base = self.path.len();
        let mut key_buf = String::new();
        loop {
            let (key, _) = self.key(&mut key_buf)?;
            self.path.truncate(base);
            self.path.push('.');
            push_sanitized(&mut self.path, key);
            self.value(depth + 1, top)?;
            if !self.more(b'}')? {
                self.path.truncate(base);
                return Some(());
            }
        }
    }

    /// Checks a value without yielding leaves (arrays, and objects kept as JSON text).
    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => self.number()?,
            open @ (b'[' | b'{') => {
                let close = if open == b'[' { b']' } else { b'}' };
                self.i += 1;
                self.ws();
                if self.peek()? == close {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    if open == b'{' {
                        if self.peek()? != b'"' {
                            return None;
                        }
                        self.string()?;
                        self.ws();
                        self.expect(b':')?;
                    }
                    self.skip(depth + 1)?;
                    if !self.more(close)? {
                        return Some(());
                    }
                }
            }
            _ => return None,
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut cases: Vec<String> = ["", "plain", "q\"b\\s/", "\u{0}\u{1f}\u{7f}\u{8}\u{c}\n\r\t", "é€😀 \"x\""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // Specials at every offset of and across 16-byte blocks, among multi-byte characters.
        for n in 0..40 {
            for special in ["\"", "\\", "\n", "\u{1}", "é"] {
                cases.push(format!("{}{special}{}", "a".repeat(n), "b".repeat(40 - n)));
            }
        }
        for s in &cases {
            let mut out = b"x".to_vec();
            write_json_string(&mut out, s);
            assert_eq!(out[1..], serde_json::to_vec(s).unwrap()[..], "{s:?}");
        }
    }

    /// The leaves (path, kind, JSON text, top-level tag) and what else the scan found.
    type Scanned = (Vec<(String, LeafKind, String, u8)>, Found);

    fn leaves(text: &str) -> Option<Scanned> {
        let mut out = Vec::new();
        let found = scan(text, |path, kind, start, len, top| {
            out.push((path.to_owned(), kind, text[start as usize..(start + len) as usize].to_owned(), top));
        })?;
        Some((out, found))
    }

    #[test]
    fn yields_the_leaves_of_flatten_with_their_places() {
        let text = r#" {"ts": 1764079387, "http": {"status": 500, "req": {"path": "/c\"art"}}, "tags": [1, "a"], "ok": true, "n": null, "lat": -1.5e3, "a b": {}, "date": "d", "k\u00e9y": false} "#;
        let (got, found) = leaves(text).unwrap();
        let want = [
            ("ts", LeafKind::Number, "1764079387", 4),
            ("http.status", LeafKind::Number, "500", 0),
            ("http.req.path", LeafKind::Escaped, r#""/c\"art""#, 0),
            ("tags", LeafKind::Json, r#"[1, "a"]"#, 0),
            ("ok", LeafKind::True, "true", 0),
            ("lat", LeafKind::Number, "-1.5e3", 0),
            ("date_", LeafKind::String, r#""d""#, 0),
            ("kéy", LeafKind::False, "false", 0),
        ];
        let want: Vec<_> = want.iter().map(|(p, k, v, t)| (p.to_string(), *k, v.to_string(), *t)).collect();
        assert_eq!(got, want);
        let (t, start, end) = found.time.unwrap();
        assert_eq!((TIME_FIELDS[t as usize], &text[start..end]), ("ts", "1764079387"));
    }

    #[test]
    fn the_preferred_non_null_time_field_wins() {
        let (_, found) = leaves(r#"{"ts": 1, "timestamp": null, "time": "x", "@timestamp": 2}"#).unwrap();
        assert_eq!(found.time.map(|t| t.0), Some(1));
        assert_eq!(leaves(r#"{"a": 1}"#).unwrap().1.time, None);
    }

    #[test]
    fn keys_remembered_from_the_events_before_change_nothing() {
        // Shapes that repeat, change order, grow and shrink; keys that are prefixes of each
        // other, escaped, renamed, sanitized, time fields, spaces before the colon.
        let events = [
            r#"{"timestamp": "2026-11-20T00:00:00Z", "method": "GET", "a": {"b": 1}, "date": "d"}"#,
            r#"{"timestamp": "2026-11-20T00:00:01Z", "method": "PUT", "a": {"b": 2}, "date": "e"}"#,
            r#"{"timestamp" : "2026-11-20T00:00:02Z", "methods": "GET", "a": 3, "date": null}"#,
            r#"{"ts": 5, "method": "GET", "a b": true, "date": "d"}"#,
            r#"{"ts": 6, "meth": 1, "a\u0020b": false}"#,
            r#"{"t\"s": 7, "method": "GET"}"#,
            r#"{"t\"s": 8, "method": "GET", "x.y": [1], "_conflicts": 1}"#,
            r#"{"time": "x", "timestamp": null}"#,
            r#"{"time": "x", "timestamp": "2026-11-20T00:00:03Z"}"#,
            r#"{}"#,
            r#"{"method": "GET", "method": "PUT"}"#,
            r#"{"timestamp": "2026-11-20T00:00:04Z", "method": "GET", "a": {"b": 1}, "date": "d"}"#,
            r#"{"timestamp": "2026-11-20T00:00:04Z", "method": "GET", "a": {"b": 1}, "date": "d""#,
            r#"{"timestamp": "2026-11-20T00:00:04Z", "method"#,
            r#"{"timestamp": "2026-11-20T00:00:04Z", "method": "GET", "a": {"b": 1}, "date": "d"}"#,
        ];
        // More keys than are remembered, twice; an optional key in the middle, there and not.
        let many: String = (0..Keys::MAX + 6).map(|i| format!(r#""k{i}": {i}"#)).collect::<Vec<_>>().join(", ");
        let many = format!("{{{many}}}");
        let events = events.iter().map(|e| e.to_string()).chain([
            many.clone(),
            many.replace(r#""k3": 3, "#, ""),
            many,
            r#"{"a": 1, "b": 2, "c": 3}"#.into(),
            r#"{"a": 1, "c": 3}"#.into(),
            r#"{"a": 1, "b": 2, "c": 3}"#.into(),
            r#"{"\u0061": 1, "b": 2, "c": 3}"#.into(),
            r#"{"a": 1, "b": 2, "c": 3}"#.into(),
        ]);
        let mut keys = Keys::default();
        // A remembered key's number names the same path for as long as `keys` lives.
        let mut paths_of_keys = std::collections::HashMap::new();
        for text in events {
            let text = text.as_str();
            let mut remembered = Vec::new();
            let found = scan_with(text, &mut keys, |path, kind, start, len, top, key| {
                if let Some(key) = key {
                    assert_eq!(paths_of_keys.entry(key).or_insert_with(|| path.to_owned()), path, "{text}");
                }
                remembered.push((path.to_owned(), kind, text[start as usize..(start + len) as usize].to_owned(), top));
            });
            let alone = leaves(text);
            assert_eq!(found.map(|f| (remembered, f)), alone, "{text}");
        }
    }

    #[test]
    fn anything_outside_the_strict_subset_is_left_to_the_full_path() {
        for bad in [
            "",
            "[1]",
            "{",
            r#"{"a": 1} x"#,
            r#"{"a": 01}"#,
            r#"{"a": 1.}"#,
            r#"{"a": -}"#,
            r#"{"a": tru}"#,
            "{\"a\": \"\u{1}\"}",
            r#"{"a": "\x"}"#,
            r#"{"a": "\ud800"}"#,
            r#"{"a": "\udc00\ud800"}"#,
            r#"{"a" 1}"#,
            r#"{"a": 1,}"#,
            r#"{"a": [1,]}"#,
            r#"{"a": {"b": 1,}}"#,
            r#"{'a': 1}"#,
        ] {
            assert!(leaves(bad).is_none(), "{bad}");
        }
        let deep = format!("{{\"a\": {}1{}}}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(leaves(&deep).is_none());
        let pair = leaves(r#"{"\ud83d\ude00": "\ud83d\ude00"}"#).unwrap().0;
        assert_eq!((pair[0].0.as_str(), pair[0].1), ("😀", LeafKind::Escaped));
    }

    #[test]
    fn vector_steps_see_every_special_byte() {
        for at in 0..40 {
            for special in ["\"", "\\n", "\u{1f}", "\u{0}"] {
                let inner = format!("é{}{special}{}", "x".repeat(at), "y".repeat(40 - at));
                let text = format!("{{\"a\": \"{inner}\"}}");
                let got = leaves(&text);
                match special {
                    "\"" => assert!(got.is_none(), "a quote ends the string early: {text}"),
                    "\\n" => assert_eq!(got.unwrap().0[0].1, LeafKind::Escaped, "{text}"),
                    _ => assert!(got.is_none(), "control character at {at}"),
                }
            }
        }
    }
}
