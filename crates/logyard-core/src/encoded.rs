//! The compact encoding of checked events that a write-ahead log record carries: for each
//! event its time, where the time came from, its JSON text, and its leaves (the flattened
//! column values of [`crate::event::flatten`], as column path, kind and place in the text),
//! so that building columns at flush reads no JSON.
//!
//! ```text
//! event: i64 time | u8 time source | u32 text length | u32 leaves length | text | leaves
//! leaf:  varint path | u8 kind | varint gap | varint length
//! ```
//!
//! Paths are numbered within one payload in order of first use; a path number equal to the
//! count known so far introduces a new path, whose text follows the number (varint length,
//! UTF-8). A value's place is its distance (`gap`) from the end of the previous leaf's value
//! (or from the text's start) and its length in bytes; leaves come in text order.
//!
//! An event whose rows were built as its request was read may have its leaves left out
//! ([`EventsEncoder::leave_out_leaves`]): its leaves length is then `u32::MAX` and no leaves
//! follow its text. The rows hold its values; the record keeps the event for the live tail
//! and for a replay, where the flush reads its text again ([`StoredEvent::leaves_left_out`]).
//!
//! Payloads written before leaves existed (no leaves length, no leaves) are read by
//! [`upgrade_v1`], which is how the write-ahead log replays them.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

pub use crate::event::LeafKind;
use crate::event::{self, LineError, Scalar, TimeSource};
use crate::time::Micros;

/// Bytes before each event's text: time (8), time source (1), text length (4), leaves length (4).
pub const EVENT_HEADER_BYTES: usize = 17;
/// The same for the format before leaves.
const V1_HEADER_BYTES: usize = 13;
/// The leaves length of an event whose leaves were left out.
const LEAVES_LEFT_OUT: u32 = u32::MAX;

/// One flattened value of an event: its column path (a number into the payload's paths, or
/// whatever numbering the reader maps it to) and where its JSON text sits in the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    pub path: u32,
    pub kind: LeafKind,
    pub start: u32,
    pub len: u32,
}

impl Leaf {
    /// The bytes between the end of the event's leaf before this one (`end`, moved on to this
    /// one's end) and this one's start: the leaves of an event are written in text order.
    fn after(&self, end: &mut u32) -> Result<u32, &'static str> {
        let gap = self.start.checked_sub(*end).ok_or("leaves out of order")?;
        *end = self.start + self.len;
        Ok(gap)
    }

    /// The value and its JSON text, read from the event's text.
    pub fn value<'a>(&self, text: &'a str) -> Result<(Scalar<'a>, &'a str), String> {
        let raw = text
            .get(self.start as usize..(self.start + self.len) as usize)
            .ok_or_else(|| format!("leaf at {}+{} outside its event", self.start, self.len))?;
        let scalar = match self.kind {
            LeafKind::True => Scalar::Bool(true),
            LeafKind::False => Scalar::Bool(false),
            LeafKind::Number => event::parse_number(raw),
            LeafKind::String => Scalar::Text(raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default().into()),
            LeafKind::Escaped => Scalar::Text(event::parse_json_string(raw).map_err(|e| e.to_string())?),
            LeafKind::Json => Scalar::Json(raw),
        };
        Ok((scalar, raw))
    }
}

/// A payload's column paths: interned by text, numbered on the wire in order of first use.
#[derive(Default)]
struct Paths {
    index: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    names: Vec<Box<str>>,
    /// Wire number of each interned path, `u32::MAX` until written.
    wire: Vec<u32>,
    written: u32,
    /// Which path came after each one (at `id + 1`; at 0, an event's first) in the last event
    /// that had it, `u32::MAX` for none yet: events of one source mostly share their shape, so
    /// a leaf's path is first compared with the one that followed the leaf before it last
    /// time. (Compared by position instead, a value left out, such as a null, would move every
    /// leaf after it.)
    after: Vec<u32>,
    /// The path of each top-level key the scanner remembers, by its number
    /// ([`crate::scan::scan_with`]), `u32::MAX` until known.
    by_key: Vec<u32>,
}

impl Paths {
    /// [`Paths::intern`] for the value of remembered top-level key `key`: its path is looked up
    /// by the key's number once, then known.
    fn of_key(&mut self, key: Option<u32>, prev: Option<u32>, name: &str) -> u32 {
        let Some(key) = key.map(|k| k as usize) else { return self.intern(prev, name) };
        if let Some(&id) = self.by_key.get(key)
            && id != u32::MAX
        {
            return id;
        }
        let id = self.intern(prev, name);
        if self.by_key.len() <= key {
            self.by_key.resize(key + 1, u32::MAX);
        }
        self.by_key[key] = id;
        id
    }

    /// The id of path `name`, the leaf after one of path `prev` (`None`: an event's first).
    fn intern(&mut self, prev: Option<u32>, name: &str) -> u32 {
        let slot = prev.map_or(0, |p| p as usize + 1);
        if let Some(&id) = self.after.get(slot)
            && id != u32::MAX
            && memchr::arch::all::is_equal(self.names[id as usize].as_bytes(), name.as_bytes())
        {
            return id;
        }
        let id = match self.index.get(name) {
            Some(&id) => id,
            None => {
                let id = self.names.len() as u32;
                self.names.push(name.into());
                self.index.insert(name.into(), id);
                self.wire.push(u32::MAX);
                id
            }
        };
        if self.after.len() <= slot {
            self.after.resize(slot + 1, u32::MAX);
        }
        self.after[slot] = id;
        id
    }

    /// Writes one leaf (`leaf.path` is an interned path) after the leaf that ended at `end`.
    fn put_leaf(&mut self, buf: &mut BytesMut, leaf: Leaf, end: &mut u32) -> Result<(), &'static str> {
        let gap = leaf.after(end)?;
        self.put(buf, leaf.path);
        buf.put_u8(leaf.kind as u8);
        put_varint(buf, gap);
        put_varint(buf, leaf.len);
        Ok(())
    }

    /// Writes the wire number of path `id`, and its text when it is new to the payload.
    fn put(&mut self, buf: &mut BytesMut, id: u32) {
        let wire = &mut self.wire[id as usize];
        if *wire != u32::MAX {
            put_varint(buf, *wire);
            return;
        }
        *wire = self.written;
        self.written += 1;
        put_varint(buf, *wire);
        let name = self.names[id as usize].as_bytes();
        put_varint(buf, name.len() as u32);
        buf.put_slice(name);
    }
}

/// A leaf found by a scan, before the event's time field is known.
struct Staged {
    /// The leaf, its path interned.
    leaf: Leaf,
    /// [`TimeSource::to_byte`] of the time field the leaf's top-level key is, or 0.
    top: u8,
}

/// The time a time field's JSON value holds, as [`event::check_line`] reads it.
fn time_of(raw: &str) -> Option<Micros> {
    match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => crate::time::parse_time_str(inner),
        _ => crate::time::parse_time_value(&serde_json::from_str(raw).ok()?),
    }
}

/// Encodes events into a record's payload.
#[derive(Default)]
pub struct EventsEncoder {
    buf: BytesMut,
    count: usize,
    text_bytes: usize,
    paths: Paths,
    /// The last scanned event's top-level keys ([`crate::scan::scan_with`]).
    keys: crate::scan::Keys,
    staged: Vec<Staged>,
    /// The last event's leaves as written, for [`EventsEncoder::push_line_with`].
    written: Vec<Leaf>,
    /// Events one scan settles are written without their leaves.
    leave_out: bool,
}

impl std::fmt::Debug for EventsEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsEncoder").field("events", &self.count).field("bytes", &self.buf.len()).finish()
    }
}

impl EventsEncoder {
    /// Room for `bytes` of encoded events.
    pub fn with_capacity(bytes: usize) -> Self {
        Self { buf: BytesMut::with_capacity(bytes), ..Default::default() }
    }

    /// Checks one line (see [`event::check_line`]) and adds it when it is an event: one pass
    /// of [`crate::scan`] checks it and finds its leaves; what that pass leaves alone (errors
    /// among it) takes the full path, which reads it as before.
    pub fn push_line(&mut self, line: &[u8], received: Micros) -> Result<(), LineError> {
        self.push_line_with(line, received, |_, _, _, _| {}).map(|_| ())
    }

    /// [`EventsEncoder::push_line`], handing an event that one scan settles to `rows` as soon
    /// as it is written, while its text is in the processor's caches: its time, its text, and
    /// its leaves as the record has them (the time field's left out), whose path numbers index
    /// the last argument. `Ok(false)`: the event was added but `rows` did not see it (the full
    /// path read it).
    pub fn push_line_with<'l>(
        &mut self,
        line: &'l [u8],
        received: Micros,
        rows: impl FnOnce(Micros, &'l str, &[Leaf], &[Box<str>]),
    ) -> Result<bool, LineError> {
        if line.len() <= event::MAX_LINE_BYTES
            && let Ok(text) = simdutf8::basic::from_utf8(line)
            && let Some(time) = self.push_scanned(text, received)
        {
            rows(time, text, &self.written, &self.paths.names);
            return Ok(true);
        }
        let checked = event::check_line(line, received)?;
        // check_line accepted it: UTF-8 and JSON.
        let text = std::str::from_utf8(line).map_err(|e| LineError::InvalidUtf8 { offset: e.valid_up_to() })?;
        self.push(checked.time, checked.source, text).map(|()| false)
    }

    /// Adds the event if one scan settles it, and returns its time; `None` (nothing added)
    /// otherwise.
    fn push_scanned(&mut self, text: &str, received: Micros) -> Option<Micros> {
        let Self { paths, keys, staged, .. } = self;
        staged.clear();
        let mut prev = None;
        let found = crate::scan::scan_with(text, keys, |path, kind, start, len, top, key| {
            let path = paths.of_key(key, prev, path);
            prev = Some(path);
            staged.push(Staged { leaf: Leaf { path, kind, start, len }, top });
        });
        let found = found?;
        let (time, source) = match found.time {
            None => (received, TimeSource::Received),
            // Not a time: the full path words the error.
            Some((i, start, end)) => (time_of(&text[start..end])?, TimeSource::Field(i)),
        };
        let skip = source.to_byte();
        let (mark, written) = (self.buf.len(), self.paths.written);
        let at = self.put_header(time, source, text);
        let mut end = 0u32;
        self.written.clear();
        for staged in self.staged.iter().filter(|l| l.top != skip || skip == 0) {
            let put = if self.leave_out {
                // In order, as put_leaf wants, so that the same events take the full path.
                staged.leaf.after(&mut end).is_ok()
            } else {
                self.paths.put_leaf(&mut self.buf, staged.leaf, &mut end).is_ok()
            };
            if !put {
                self.undo(mark, written);
                return None;
            }
            self.written.push(staged.leaf);
        }
        if self.leave_out {
            self.end_event_without_leaves(at, text.len());
        } else {
            self.end_event(at, text.len());
        }
        Some(time)
    }

    /// From now on, events that one scan settles are written without their leaves (see the
    /// module documentation): for a request whose rows are built as it is read, whose record
    /// then only has to keep the events for the live tail and a replay. Undone by
    /// [`EventsEncoder::keep_leaves`] when the rows are given up, so that the flush reads again
    /// only the events before that.
    pub fn leave_out_leaves(&mut self) {
        self.leave_out = true;
    }

    /// Writes every event's leaves again from now on.
    pub fn keep_leaves(&mut self) {
        self.leave_out = false;
    }

    /// Adds an event whose time is known. Fails only if `text` is not a JSON object.
    pub fn push(&mut self, time: Micros, source: TimeSource, text: &str) -> Result<(), LineError> {
        let (mark, written) = (self.buf.len(), self.paths.written);
        let at = self.put_header(time, source, text);
        let Self { buf, paths, .. } = self;
        let (mut prev, mut end, mut ordered) = (None, 0u32, true);
        let walked = event::flatten(text, source, |name, scalar, raw| {
            let start = (raw.get().as_ptr() as usize - text.as_ptr() as usize) as u32;
            let kind = LeafKind::of(&scalar, raw.get());
            let path = paths.intern(prev, name);
            prev = Some(path);
            let leaf = Leaf { path, kind, start, len: raw.get().len() as u32 };
            ordered &= paths.put_leaf(buf, leaf, &mut end).is_ok();
        });
        let walked =
            walked.map_err(|e| e.to_string()).and_then(|()| ordered.then_some(()).ok_or("values out of order".into()));
        if let Err(e) = walked {
            self.undo(mark, written);
            return Err(LineError::InvalidJson(e));
        }
        self.end_event(at, text.len());
        Ok(())
    }

    /// Adds a decoded event with its leaves (their paths numbered into `paths`), as it was
    /// (one whose leaves were left out stays so).
    pub fn push_decoded(&mut self, event: &StoredEvent<'_>, leaves: &[Leaf], paths: &[&str]) -> Result<(), String> {
        let (mark, written) = (self.buf.len(), self.paths.written);
        let at = self.put_header(event.time, event.source, event.text);
        if event.leaves_left_out {
            self.end_event_without_leaves(at, event.text.len());
            return Ok(());
        }
        let (mut end, mut prev) = (0u32, None);
        for leaf in leaves {
            let put = match paths.get(leaf.path as usize) {
                Some(name) => {
                    let path = self.paths.intern(prev, name);
                    prev = Some(path);
                    self.paths.put_leaf(&mut self.buf, Leaf { path, ..*leaf }, &mut end)
                }
                None => Err("leaf of an unknown path"),
            };
            if let Err(e) = put {
                self.undo(mark, written);
                return Err(e.into());
            }
        }
        self.end_event(at, event.text.len());
        Ok(())
    }

    /// Writes an event's header and text; returns where its leaves start.
    fn put_header(&mut self, time: Micros, source: TimeSource, text: &str) -> usize {
        self.buf.reserve(EVENT_HEADER_BYTES + text.len() + text.len() / 4);
        self.buf.put_i64_le(time);
        self.buf.put_u8(source.to_byte());
        self.buf.put_u32_le(text.len() as u32);
        self.buf.put_u32_le(0);
        self.buf.put_slice(text.as_bytes());
        self.buf.len()
    }

    /// Takes back a refused event: its bytes from `mark`, and the path texts it wrote (paths
    /// numbered from `written` on), which later events will write again.
    fn undo(&mut self, mark: usize, written: u32) {
        self.buf.truncate(mark);
        for wire in self.paths.wire.iter_mut().filter(|w| **w != u32::MAX && **w >= written) {
            *wire = u32::MAX;
        }
        self.paths.written = written;
    }

    fn end_event(&mut self, leaves_at: usize, text_len: usize) {
        let leaves = (self.buf.len() - leaves_at) as u32;
        self.set_leaves_length(leaves_at, text_len, leaves);
    }

    fn end_event_without_leaves(&mut self, leaves_at: usize, text_len: usize) {
        self.set_leaves_length(leaves_at, text_len, LEAVES_LEFT_OUT);
    }

    fn set_leaves_length(&mut self, leaves_at: usize, text_len: usize, leaves: u32) {
        let length_at = leaves_at - text_len - 4;
        self.buf[length_at..length_at + 4].copy_from_slice(&leaves.to_le_bytes());
        self.count += 1;
        self.text_bytes += text_len;
    }

    /// Events encoded so far.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the events' JSON texts (what `logyard_ingested_bytes_total` counts).
    pub fn text_bytes(&self) -> usize {
        self.text_bytes
    }

    /// The encoded events so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Appends another encoder's events after these.
    pub fn append(&mut self, other: EventsEncoder) -> Result<(), String> {
        if self.is_empty() {
            *self = other;
            return Ok(());
        }
        let mut decoder = EventsDecoder::new(other.as_bytes());
        let mut leaves = Vec::new();
        while let Some(event) = decoder.next_with_leaves(&mut leaves) {
            self.push_decoded(&event?, &leaves, decoder.paths())?;
            leaves.clear();
        }
        Ok(())
    }

    pub fn finish(self) -> Bytes {
        self.buf.freeze()
    }

    /// Drops the events so far and starts a new payload in the same memory: for a caller that
    /// needed the events only to build their rows, so that the next payload does not touch
    /// fresh pages.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
        self.text_bytes = 0;
        self.paths.wire.fill(u32::MAX);
        self.paths.written = 0;
    }
}

fn put_varint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8(v as u8 | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn get_varint(buf: &mut &[u8]) -> Result<u32, String> {
    let mut v = 0u32;
    for shift in (0..35).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or("truncated leaves")?;
        *buf = rest;
        v |= u32::from(b & 0x7f).checked_shl(shift).ok_or("bad varint")?;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("bad varint".into())
}

/// One decoded event of a record.
#[derive(Debug, Clone, Copy)]
pub struct StoredEvent<'a> {
    pub time: i64,
    pub source: TimeSource,
    pub text: &'a str,
    /// The event was written without its leaves ([`EventsEncoder::leave_out_leaves`]): a
    /// reader that needs its values flattens `text` ([`crate::event::flatten`]).
    pub leaves_left_out: bool,
}

/// Reads a payload's events in order, with their leaves when asked.
pub struct EventsDecoder<'a> {
    buf: &'a [u8],
    paths: Vec<&'a str>,
}

impl<'a> EventsDecoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, paths: Vec::new() }
    }

    /// The column paths met so far; leaves' path numbers index it.
    pub fn paths(&self) -> &[&'a str] {
        &self.paths
    }

    /// The next event and its leaves, appended to `leaves` (none for an event whose leaves
    /// were left out: [`StoredEvent::leaves_left_out`]). Stops at the first malformed entry (a
    /// record passed its checksum, so that means a bug, reported through the error).
    pub fn next_with_leaves(&mut self, leaves: &mut Vec<Leaf>) -> Option<Result<StoredEvent<'a>, String>> {
        let (event, mut rest) = match self.next_raw()? {
            Ok(x) => x,
            Err(e) => return Some(Err(e)),
        };
        let mut end = 0u32;
        while !rest.is_empty() {
            match self.leaf(&mut rest, end) {
                Ok(leaf) => {
                    end = leaf.start + leaf.len;
                    if end as usize > event.text.len() {
                        return Some(self.fail("leaf beyond its event"));
                    }
                    leaves.push(leaf);
                }
                Err(e) => return Some(self.fail(e)),
            }
        }
        Some(Ok(event))
    }

    fn fail<T>(&mut self, message: impl Into<String>) -> Result<T, String> {
        self.buf = &[];
        Err(message.into())
    }

    fn leaf(&mut self, rest: &mut &'a [u8], end: u32) -> Result<Leaf, String> {
        let path = get_varint(rest)?;
        if path as usize == self.paths.len() {
            let len = get_varint(rest)? as usize;
            let name = rest.get(..len).ok_or("truncated path")?;
            self.paths.push(std::str::from_utf8(name).map_err(|e| e.to_string())?);
            *rest = &rest[len..];
        } else if path as usize > self.paths.len() {
            return Err(format!("path {path} before it was named"));
        }
        let (&kind, after) = rest.split_first().ok_or("truncated leaf")?;
        *rest = after;
        let kind = LeafKind::from_byte(kind).ok_or_else(|| format!("unknown leaf kind {kind}"))?;
        let start = end.checked_add(get_varint(rest)?).ok_or("bad leaf offset")?;
        let len = get_varint(rest)?;
        start.checked_add(len).ok_or("bad leaf length")?;
        Ok(Leaf { path, kind, start, len })
    }

    /// The next event's header and text, and its leaves' bytes.
    fn next_raw(&mut self) -> Option<Result<(StoredEvent<'a>, &'a [u8]), String>> {
        let buf = self.buf;
        if buf.is_empty() {
            return None;
        }
        if buf.len() < EVENT_HEADER_BYTES {
            return Some(self.fail("truncated event header"));
        }
        let time = i64::from_le_bytes(buf[0..8].try_into().expect("8 bytes"));
        let source = TimeSource::from_byte(buf[8]);
        let len = u32::from_le_bytes(buf[9..13].try_into().expect("4 bytes")) as usize;
        let leaves = u32::from_le_bytes(buf[13..17].try_into().expect("4 bytes"));
        let leaves_left_out = leaves == LEAVES_LEFT_OUT;
        let text_end = EVENT_HEADER_BYTES + len;
        let end = text_end + if leaves_left_out { 0 } else { leaves as usize };
        if buf.len() < end {
            return Some(self.fail("truncated event"));
        }
        let Ok(text) = simdutf8::basic::from_utf8(&buf[EVENT_HEADER_BYTES..text_end]) else {
            return Some(self.fail("event text is not UTF-8"));
        };
        self.buf = &buf[end..];
        Some(Ok((StoredEvent { time, source, text, leaves_left_out }, &buf[text_end..end])))
    }
}

/// Decodes a payload's events, without their leaves.
pub fn decode_events(buf: &[u8]) -> impl Iterator<Item = Result<StoredEvent<'_>, String>> {
    let mut decoder = EventsDecoder::new(buf);
    std::iter::from_fn(move || decoder.next_raw().map(|r| r.map(|(event, _)| event)))
}

/// Each event's time, where its time came from, and its text: what a payload says of its
/// events whether their leaves were left out or not (records compared by what they hold).
pub fn times_and_texts(buf: &[u8]) -> Result<Vec<(i64, TimeSource, String)>, String> {
    decode_events(buf).map(|e| e.map(|e| (e.time, e.source, e.text.to_owned()))).collect()
}

/// How many of a payload's events were written without their leaves.
pub fn leaves_left_out(buf: &[u8]) -> Result<usize, String> {
    decode_events(buf).try_fold(0, |n, e| e.map(|e| n + usize::from(e.leaves_left_out)))
}

/// Re-encodes a payload of the format before leaves (`i64 time | u8 source | u32 length |
/// text`, repeated) in today's.
pub fn upgrade_v1(mut buf: &[u8]) -> Result<Bytes, String> {
    let mut out = EventsEncoder::with_capacity(buf.len() + buf.len() / 4);
    while !buf.is_empty() {
        if buf.len() < V1_HEADER_BYTES {
            return Err("truncated event header".into());
        }
        let time = i64::from_le_bytes(buf[0..8].try_into().expect("8 bytes"));
        let source = TimeSource::from_byte(buf[8]);
        let len = u32::from_le_bytes(buf[9..13].try_into().expect("4 bytes")) as usize;
        let text = buf.get(V1_HEADER_BYTES..V1_HEADER_BYTES + len).ok_or("truncated event")?;
        let text = std::str::from_utf8(text).map_err(|e| e.to_string())?;
        out.push(time, source, text).map_err(|e| e.to_string())?;
        buf = &buf[V1_HEADER_BYTES + len..];
    }
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves_of(payload: &[u8]) -> Vec<(String, Vec<(String, String)>)> {
        let mut decoder = EventsDecoder::new(payload);
        let mut out = Vec::new();
        let mut leaves = Vec::new();
        while let Some(event) = decoder.next_with_leaves(&mut leaves) {
            let event = event.unwrap();
            let values = leaves
                .iter()
                .map(|l| (decoder.paths()[l.path as usize].to_owned(), format!("{:?}", l.value(event.text).unwrap().0)))
                .collect();
            out.push((event.text.to_owned(), values));
            leaves.clear();
        }
        out
    }

    #[test]
    fn leaves_carry_every_flattened_value_and_paths_are_named_once() {
        let mut e = EventsEncoder::default();
        let texts = [
            r#"{"ts": 1764079387, "a": {"b": "x\"y", "c": [1, 2]}, "n": 12345678901234567890123, "ok": false}"#,
            r#"{"a": {"b": "plain"}, "z": 1.5, "ok": true, "n": null}"#,
        ];
        e.push_line(texts[0].as_bytes(), 0).unwrap();
        e.push(7, TimeSource::Received, texts[1]).unwrap();
        assert!(e.push(7, TimeSource::Received, "[1]").is_err());
        assert_eq!((e.len(), e.text_bytes()), (2, texts[0].len() + texts[1].len()));
        let payload = e.finish();
        assert_eq!(payload.windows(3).filter(|w| w == b"a.b").count(), 1, "a path's text is written once");
        let got = leaves_of(&payload);
        assert_eq!(
            got[0].1,
            [
                ("a.b".to_owned(), r#"Text("x\"y")"#.to_owned()),
                ("a.c".to_owned(), r#"Json("[1, 2]")"#.to_owned()),
                ("n".to_owned(), r#"Text("12345678901234567890123")"#.to_owned()),
                ("ok".to_owned(), "Bool(false)".to_owned()),
            ]
        );
        assert_eq!(got[1].1.len(), 3);
        assert_eq!(got[1].1[1], ("z".to_owned(), "Float(1.5)".to_owned()));
        let times: Vec<_> = decode_events(&payload).map(|e| e.unwrap().time).collect();
        assert_eq!(times, [1_764_079_387_000_000, 7]);
    }

    #[test]
    fn a_refused_event_leaves_nothing_behind() {
        let mut e = EventsEncoder::default();
        e.push(1, TimeSource::Received, r#"{"a": 1}"#).unwrap();
        // The walk fails after writing the new path `b`: its text must not be lost to later events.
        assert!(e.push(2, TimeSource::Received, r#"{"b": 1, "c": "\ud800"}"#).is_err());
        e.push(3, TimeSource::Received, r#"{"b": 2, "a": 3}"#).unwrap();
        let got = leaves_of(e.as_bytes());
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1, [("b".to_owned(), "Int(2)".to_owned()), ("a".to_owned(), "Int(3)".to_owned())]);
    }

    /// A cleared encoder writes the payload a new one would, paths named again.
    #[test]
    fn a_cleared_encoder_starts_a_payload_of_its_own() {
        let lines = [r#"{"a": 1, "b": {"c": "x"}}"#, r#"{"b": {"c": "y"}, "d": true}"#];
        let mut used = EventsEncoder::default();
        used.push_line(br#"{"d": 0, "a": 2}"#, 5).unwrap();
        used.clear();
        assert!(used.is_empty() && used.text_bytes() == 0);
        let mut fresh = EventsEncoder::default();
        for (i, line) in lines.iter().enumerate() {
            used.push_line(line.as_bytes(), i as i64).unwrap();
            fresh.push_line(line.as_bytes(), i as i64).unwrap();
        }
        assert_eq!((used.len(), used.text_bytes()), (fresh.len(), fresh.text_bytes()));
        assert_eq!(used.finish(), fresh.finish());
    }

    /// Rows built as the lines were read take the leaves; the payload keeps the texts, and
    /// says which events' leaves it left out, through an append too.
    #[test]
    fn events_whose_leaves_were_left_out_keep_their_text_and_say_so() {
        let lines = [r#"{"a": 1, "b": {"c": "x"}}"#, r#"{"b": {"c": "y\"z"}, "d": true}"#, r#"{"e": 2}"#];
        let (mut full, mut lean) = (EventsEncoder::default(), EventsEncoder::default());
        lean.leave_out_leaves();
        let mut handed = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if i == 2 {
                lean.keep_leaves();
            }
            full.push_line(line.as_bytes(), i as i64).unwrap();
            lean.push_line_with(line.as_bytes(), i as i64, |_, text, leaves, paths| {
                let values = leaves.iter().map(|l| (paths[l.path as usize].to_string(), l.value(text).unwrap().1));
                handed.push(values.map(|(p, v)| format!("{p}={v}")).collect::<Vec<_>>().join(" "));
            })
            .unwrap();
        }
        assert_eq!(handed, [r#"a=1 b.c="x""#, r#"b.c="y\"z" d=true"#, "e=2"], "the rows get every leaf");
        assert_eq!((lean.len(), lean.text_bytes()), (full.len(), full.text_bytes()));
        let (full, lean) = (full.finish(), lean.finish());
        assert!(lean.len() < full.len(), "{} bytes against {}", lean.len(), full.len());
        let events = |payload: &[u8]| -> Vec<(i64, String, bool)> {
            decode_events(payload).map(|e| e.unwrap()).map(|e| (e.time, e.text.to_owned(), e.leaves_left_out)).collect()
        };
        let got = events(&lean);
        assert_eq!(got.iter().map(|e| e.2).collect::<Vec<_>>(), [true, true, false]);
        let texts = |events: Vec<(i64, String, bool)>| events.into_iter().map(|e| (e.0, e.1)).collect::<Vec<_>>();
        assert_eq!(texts(got), texts(events(&full)));
        let leaves = leaves_of(&lean);
        assert!(leaves[0].1.is_empty() && leaves[1].1.is_empty(), "none to read: {leaves:?}");
        assert_eq!(leaves[2].1, [("e".to_owned(), "Int(2)".to_owned())]);

        let mut merged = EventsEncoder::default();
        merged.push(7, TimeSource::Received, r#"{"z": 0}"#).unwrap();
        let mut again = EventsEncoder::default();
        let mut decoder = EventsDecoder::new(&lean);
        let mut scratch = Vec::new();
        while let Some(event) = decoder.next_with_leaves(&mut scratch) {
            again.push_decoded(&event.unwrap(), &scratch, decoder.paths()).unwrap();
            scratch.clear();
        }
        merged.append(again).unwrap();
        let flags: Vec<bool> = events(merged.as_bytes()).into_iter().map(|e| e.2).collect();
        assert_eq!(flags, [false, true, true, false]);
        assert_eq!(leaves_of(merged.as_bytes())[3].1, [("e".to_owned(), "Int(2)".to_owned())]);
    }

    #[test]
    fn appending_renumbers_the_other_payloads_paths() {
        let (mut a, mut b) = (EventsEncoder::default(), EventsEncoder::default());
        a.push(1, TimeSource::Received, r#"{"x": 1, "y": 2}"#).unwrap();
        b.push(2, TimeSource::Received, r#"{"y": 3, "w": "q"}"#).unwrap();
        a.append(b).unwrap();
        let got = leaves_of(a.as_bytes());
        assert_eq!(got[1].1, [("y".to_owned(), "Int(3)".to_owned()), ("w".to_owned(), r#"Text("q")"#.to_owned())]);
    }

    #[test]
    fn old_payloads_are_upgraded() {
        let text = r#"{"time": "2026-12-01T00:00:00Z", "m": 1}"#;
        let mut v1 = Vec::new();
        v1.extend_from_slice(&5i64.to_le_bytes());
        v1.push(TimeSource::Field(2).to_byte());
        v1.extend_from_slice(&(text.len() as u32).to_le_bytes());
        v1.extend_from_slice(text.as_bytes());
        let up = upgrade_v1(&v1).unwrap();
        let got = leaves_of(&up);
        assert_eq!(got, [(text.to_owned(), vec![("m".to_owned(), "Int(1)".to_owned())])]);
        assert!(upgrade_v1(&v1[..v1.len() - 1]).is_err());
    }

    #[test]
    fn damaged_payloads_are_errors_not_panics() {
        let mut e = EventsEncoder::default();
        e.push(1, TimeSource::Received, r#"{"x": "abc", "y": [1]}"#).unwrap();
        let good = e.finish().to_vec();
        for cut in 0..good.len() {
            let mut d = EventsDecoder::new(&good[..cut]);
            let mut leaves = Vec::new();
            let r = d.next_with_leaves(&mut leaves);
            assert!(r.is_none_or(|r| r.is_err()), "cut at {cut}");
        }
        for i in EVENT_HEADER_BYTES..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            let mut d = EventsDecoder::new(&bad);
            let mut leaves = Vec::new();
            if let Some(Ok(event)) = d.next_with_leaves(&mut leaves) {
                for l in &leaves {
                    let _ = l.value(event.text);
                }
            }
        }
    }
}
