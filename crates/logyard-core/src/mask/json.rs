//! Rewriting one event's JSON text with its masked values, keeping everything else (key
//! order, spacing, numbers) byte for byte.
//!
//! The text was checked at ingest, so this walker only follows the structure: it knows for
//! every string and number the column it ends up in (the dotted name of
//! [`crate::event::flatten`]), hands the value to the masker, and notes the edits. A member
//! whose value asks to be dropped is cut with its comma.
//!
//! Most maskers need less: when no rule names fields or drops them, a match's column does not
//! matter, only whether it lies in a value. [`quick`] finds the string or number around each
//! match from a bit mask of the text's quotes and edits those, without following the rest of
//! the JSON; a test holds it to the walk on generated events.

use crate::event::{MAX_FLATTEN_DEPTH, RESERVED_RENAMES, push_sanitized};

use super::classes::Classes;
use super::{Found, MaskedValue, Masker, Span};

/// A member's key: where it is in the text, quotes included. (Whether it holds escapes is
/// looked up when its text is needed: a flag here made each push of a key wait on a store.)
#[derive(Debug, Clone, Copy)]
struct Key {
    start: usize,
    end: usize,
}

impl Key {
    fn escaped(self, bytes: &[u8]) -> bool {
        memchr::memchr(b'\\', &bytes[self.start..self.end]).is_some()
    }
}

/// What a leaf value is.
#[derive(Debug, Clone, Copy)]
enum Leaf {
    String { escaped: bool },
    Number,
}

/// One change to the text: `text[start..end]` becomes `with`.
struct Edit {
    start: usize,
    end: usize,
    with: String,
}

/// Where a text has a '"' or a '\\', as bits ([`Classes::quotes_and_backslashes`]).
struct Quotes(Vec<u64>);

impl Quotes {
    fn of(text: &str) -> Self {
        Quotes(Classes::quotes_and_backslashes(text.as_bytes()))
    }

    /// The first at or after `from`.
    fn next(&self, from: usize) -> Option<usize> {
        let mut word = from / 64;
        let mut bits = self.0.get(word)? & (!0u64 << (from % 64));
        while bits == 0 {
            word += 1;
            bits = *self.0.get(word)?;
        }
        Some(64 * word + bits.trailing_zeros() as usize)
    }

    /// The last before `end`.
    fn last_before(&self, end: usize) -> Option<usize> {
        let mut word = end / 64;
        let mut bits = if end.is_multiple_of(64) { 0 } else { self.0[word] & ((1u64 << (end % 64)) - 1) };
        while bits == 0 {
            word = word.checked_sub(1)?;
            bits = self.0[word];
        }
        Some(64 * word + 63 - bits.leading_zeros() as usize)
    }

    /// How many lie before `end`.
    fn count_before(&self, end: usize) -> usize {
        let whole: u32 = self.0[..end / 64].iter().map(|w| w.count_ones()).sum();
        let part = if end.is_multiple_of(64) { 0 } else { (self.0[end / 64] << (64 - end % 64)).count_ones() };
        (whole + part) as usize
    }
}

pub(super) struct Walk<'a> {
    masker: &'a Masker,
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Matches in the whole text (when the masker has no custom patterns), in order.
    found: &'a [Found],
    next_found: usize,
    /// The top-level key that carried the event's time: left alone.
    time_field: Option<&'a str>,
    /// The keys from the top level to the current member (spans of the text, quotes
    /// included): the column's name is made of them only when a value needs it.
    keys: Vec<Key>,
    quotes: Quotes,
    /// Inside the time field's value: nothing is masked.
    frozen: bool,
    edits: Vec<Edit>,
    pub(super) counts: [u32; super::COUNTED],
}

impl<'a> Walk<'a> {
    pub(super) fn new(masker: &'a Masker, text: &'a str, found: &'a [Found], time_field: Option<&'a str>) -> Self {
        Walk {
            masker,
            text,
            bytes: text.as_bytes(),
            pos: 0,
            found,
            next_found: 0,
            time_field,
            keys: Vec::new(),
            quotes: Quotes::of(text),
            frozen: false,
            edits: Vec::new(),
            counts: [0; super::COUNTED],
        }
    }

    /// Walks the event; the new text, if anything changed.
    pub(super) fn run(mut self) -> (Option<String>, [u32; super::COUNTED]) {
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b'{') {
            self.object(0);
        }
        if self.edits.is_empty() {
            return (None, self.counts);
        }
        let mut out = String::with_capacity(self.text.len());
        let mut copied = 0;
        for e in &self.edits {
            out.push_str(&self.text[copied..e.start]);
            out.push_str(&e.with);
            copied = e.end;
        }
        out.push_str(&self.text[copied..]);
        (Some(out), self.counts)
    }

    fn skip_ws(&mut self) {
        while self.bytes.get(self.pos).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// A value starting at `pos`; true when the member holding it is to be dropped.
    /// `column`: whether the value still decides its own column (not inside an array or
    /// an object deeper than the flattening goes).
    fn value(&mut self, depth: usize, column: bool) -> bool {
        self.skip_ws();
        match self.bytes.get(self.pos) {
            Some(b'{') if column && depth < MAX_FLATTEN_DEPTH => self.object(depth),
            Some(b'{') => self.nested(b'}', depth),
            Some(b'[') => self.nested(b']', depth),
            Some(b'"') => {
                let start = self.pos;
                let escaped = self.string_end();
                self.leaf(start, self.pos, Leaf::String { escaped })
            }
            Some(b't' | b'f' | b'n') => {
                while self.bytes.get(self.pos).is_some_and(u8::is_ascii_alphabetic) {
                    self.pos += 1;
                }
                false
            }
            Some(_) => {
                let start = self.pos;
                while self
                    .bytes
                    .get(self.pos)
                    .is_some_and(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                {
                    self.pos += 1;
                }
                self.leaf(start, self.pos, Leaf::Number)
            }
            None => false,
        }
    }

    /// An object whose members are columns of their own.
    fn object(&mut self, depth: usize) -> bool {
        self.pos += 1; // {
        let base = self.keys.len();
        let mut kept_any = false;
        loop {
            self.skip_ws();
            let comma = match self.bytes.get(self.pos) {
                Some(b'}') | None => {
                    self.pos += 1;
                    break;
                }
                Some(b',') => {
                    let comma = self.pos;
                    self.pos += 1;
                    self.skip_ws();
                    Some(comma)
                }
                Some(_) => None,
            };
            let key_start = self.pos;
            self.string_end();
            let key_span = Key { start: key_start, end: self.pos };
            self.skip_ws();
            self.pos += 1; // :
            self.keys.truncate(base);
            self.keys.push(key_span);
            let drop = if depth == 0 && self.time_field.is_some_and(|t| self.is_key(key_span, t)) {
                self.frozen = true;
                self.value(depth + 1, false);
                self.frozen = false;
                false
            } else {
                self.value(depth + 1, true)
            };
            // Members dropped before any kept one leave the next comma leading: cut it.
            if let Some(c) = comma
                && !kept_any
            {
                self.cut(c, c + 1);
            }
            match (drop, comma) {
                (true, Some(c)) if kept_any => self.cut(c, self.pos),
                (true, _) => self.cut(key_start, self.pos),
                (false, _) => kept_any = true,
            }
        }
        self.keys.truncate(base);
        false
    }

    /// Whether the key at `key` is `name`.
    fn is_key(&self, key: Key, name: &str) -> bool {
        // Escapes make a key's text longer than what it says.
        let text = &self.bytes[key.start + 1..key.end - 1];
        match text.len().cmp(&name.len()) {
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => text == name.as_bytes() && !name.contains('\\'),
            std::cmp::Ordering::Greater => key.escaped(self.bytes) && self.key(key) == name,
        }
    }

    /// A key's text, unescaped.
    fn key(&self, key: Key) -> std::borrow::Cow<'a, str> {
        let text: &'a str = self.text;
        if key.escaped(self.bytes) {
            serde_json::from_str::<String>(&text[key.start..key.end]).unwrap_or_default().into()
        } else {
            text[key.start + 1..key.end - 1].into()
        }
    }

    /// The column name of the current member (the dotted name the table will have).
    fn path(&self) -> String {
        let mut path = String::new();
        for (depth, &span) in self.keys.iter().enumerate() {
            let key = self.key(span);
            if depth == 0 {
                match RESERVED_RENAMES.iter().find(|(k, _)| *k == key) {
                    Some((_, renamed)) => path.push_str(renamed),
                    None => push_sanitized(&mut path, &key),
                }
            } else {
                path.push('.');
                push_sanitized(&mut path, &key);
            }
        }
        path
    }

    /// Cuts `start..end`, replacing the edits inside it.
    fn cut(&mut self, start: usize, end: usize) {
        while self.edits.last().is_some_and(|e| e.start >= start) {
            self.edits.pop();
        }
        self.edits.push(Edit { start, end, with: String::new() });
    }

    /// An array, or an object kept whole as one column's JSON text: every value inside
    /// belongs to the current column.
    fn nested(&mut self, close: u8, depth: usize) -> bool {
        self.pos += 1;
        let mut drop = false;
        loop {
            self.skip_ws();
            match self.bytes.get(self.pos) {
                None => break,
                Some(b) if *b == close => {
                    self.pos += 1;
                    break;
                }
                Some(b',' | b':') => self.pos += 1,
                Some(b'"') if close == b'}' => {
                    // A key of a whole-kept object: not a value.
                    let start = self.pos;
                    let escaped = self.string_end();
                    let end = self.pos;
                    self.skip_ws();
                    if self.bytes.get(self.pos) != Some(&b':') {
                        drop |= self.leaf(start, end, Leaf::String { escaped });
                    } else {
                        self.skip_found_until(self.pos);
                    }
                }
                Some(_) => drop |= self.value(depth + 1, false),
            }
        }
        drop
    }

    /// Moves `pos` past the string starting at `pos`; whether it holds escapes.
    fn string_end(&mut self) -> bool {
        let mut i = self.pos + 1;
        let mut escaped = false;
        while let Some(at) = self.quotes.next(i) {
            if self.bytes[at] == b'"' {
                self.pos = at + 1;
                return escaped;
            }
            escaped = true;
            i = at + 2;
        }
        self.pos = self.bytes.len();
        escaped
    }

    fn skip_found_until(&mut self, end: usize) {
        while self.found.get(self.next_found).is_some_and(|f| f.span.start < end) {
            self.next_found += 1;
        }
    }

    /// A string (with its quotes) or a number at `start..end`; true to drop its member.
    fn leaf(&mut self, start: usize, end: usize, leaf: Leaf) -> bool {
        let quoted = matches!(leaf, Leaf::String { .. });
        if self.frozen {
            self.skip_found_until(end);
            return false;
        }
        let (inner_start, inner_end) = if quoted { (start + 1, end - 1) } else { (start, end) };
        let inner = &self.text[inner_start..inner_end];
        let escaped = matches!(leaf, Leaf::String { escaped: true });
        let mut found = Vec::new();
        let unescaped;
        let content: &str = if escaped {
            unescaped = serde_json::from_str::<String>(&self.text[start..end]).unwrap_or_default();
            self.skip_found_until(end);
            self.masker.scan(&unescaped, &mut found);
            &unescaped
        } else if self.masker.scans_values() {
            self.masker.scan(inner, &mut found);
            inner
        } else {
            while let Some(f) = self.found.get(self.next_found) {
                if f.span.start >= end {
                    break;
                }
                self.next_found += 1;
                if f.span.start >= inner_start && f.span.end <= inner_end {
                    found.push(Found {
                        span: Span { start: f.span.start - inner_start, end: f.span.end - inner_start },
                        pattern: f.pattern,
                    });
                }
            }
            inner
        };
        if found.is_empty() {
            return false;
        }
        let path = if self.masker.names_fields { self.path() } else { String::new() };
        let masked = self.masker.apply(content, &found, &path, !quoted, &mut self.counts);
        match masked {
            MaskedValue::Unchanged => false,
            MaskedValue::Drop => true,
            MaskedValue::Text(new) => {
                let with = if escaped || !quoted {
                    serde_json::to_string(&new).expect("a string serializes")
                } else {
                    let mut with = String::with_capacity(new.len() + 2);
                    with.push('"');
                    with.push_str(&new);
                    with.push('"');
                    with
                };
                self.edits.push(Edit { start, end, with });
                false
            }
        }
    }
}

/// The edits of an event's matches without walking its JSON, where that gives what the walk
/// gives: the text has no escapes (so its quotes pair up, and a match lies inside one string
/// or number) and no rule names fields or drops them (so a match's column does not matter,
/// only that it lies in a value and not in a key). The time field's value is left alone, as
/// the walk does; `None` where the walk must decide: a string equal to the time field's name
/// appears more than once (the walk knows which member is the top-level one, and what is
/// inside it).
pub(super) fn quick(
    masker: &Masker,
    text: &str,
    found: &[Found],
    time_field: Option<&str>,
) -> Option<(Option<String>, [u32; super::COUNTED])> {
    let bytes = text.as_bytes();
    if let Some(name) = time_field {
        let quoted = |k: usize| k > 0 && bytes[k - 1] == b'"' && bytes.get(k + name.len()) == Some(&b'"');
        if memchr::memmem::find_iter(bytes, name).filter(|&k| quoted(k)).nth(1).is_some() {
            return None;
        }
    }
    let quotes = Quotes::of(text);
    let last_before = |p: usize| (0..p).rev().find(|&k| !matches!(bytes[k], b' ' | b'\t' | b'\n' | b'\r'));
    let first_after = |p: usize| (p..bytes.len()).find(|&k| !matches!(bytes[k], b' ' | b'\t' | b'\n' | b'\r'));
    // The value at `start..end` (quotes included) is not a key, nor the time field's value.
    let maskable = |start: usize, end: usize, quoted: bool| -> bool {
        if quoted && first_after(end).is_some_and(|k| bytes[k] == b':') {
            return false;
        }
        match last_before(start) {
            Some(colon) if bytes[colon] == b':' => {
                let Some(name) = time_field else { return true };
                let key_end = last_before(colon).expect("a key before a colon");
                let key_start = quotes.last_before(key_end).expect("a key's opening quote");
                &text[key_start + 1..key_end] != name
            }
            Some(k) => matches!(bytes[k], b',' | b'['),
            None => false,
        }
    };
    let mut counts = [0; super::COUNTED];
    let mut out = String::with_capacity(text.len() + 32);
    let mut copied = 0;
    let mut next = 0;
    let mut inside = Vec::new();
    while next < found.len() {
        let p = found[next].span.start;
        let (start, end, quoted) = if quotes.count_before(p) % 2 == 1 {
            let open = quotes.last_before(p).expect("an opening quote");
            let close = quotes.next(p).expect("a closing quote");
            (open, close + 1, true)
        } else {
            let number = |b: u8| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E');
            let start = (0..p).rev().find(|&k| !number(bytes[k])).map_or(0, |k| k + 1);
            let end = (p..bytes.len()).find(|&k| !number(bytes[k])).unwrap_or(bytes.len());
            (start, end, false)
        };
        let (inner_start, inner_end) = if quoted { (start + 1, end - 1) } else { (start, end) };
        inside.clear();
        while let Some(f) = found.get(next).filter(|f| f.span.start < end) {
            if f.span.end <= inner_end {
                inside.push(Found {
                    span: Span { start: f.span.start - inner_start, end: f.span.end - inner_start },
                    pattern: f.pattern,
                });
            }
            next += 1;
        }
        if inside.is_empty() || !maskable(start, end, quoted) {
            continue;
        }
        match masker.apply(&text[inner_start..inner_end], &inside, "", !quoted, &mut counts) {
            MaskedValue::Unchanged => {}
            MaskedValue::Drop => return None,
            MaskedValue::Text(new) => {
                out.push_str(&text[copied..start]);
                if quoted {
                    out.push('"');
                    out.push_str(&new);
                    out.push('"');
                } else {
                    out.push_str(&serde_json::to_string(&new).expect("a string serializes"));
                }
                copied = end;
            }
        }
    }
    if copied == 0 {
        return Some((None, counts));
    }
    out.push_str(&text[copied..]);
    Some((Some(out), counts))
}
