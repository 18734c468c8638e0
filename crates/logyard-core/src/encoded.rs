//! The compact encoding of checked events that a write-ahead log record carries: for each
//! event its time, where the time came from, and the original JSON text.

use bytes::{BufMut, Bytes, BytesMut};

use crate::event::TimeSource;

/// Bytes before each event's text: time (8), time source (1), text length (4).
pub const EVENT_HEADER_BYTES: usize = 13;

/// Encodes events into a record's payload.
#[derive(Debug, Default)]
pub struct EventsEncoder {
    buf: BytesMut,
    count: usize,
}

impl EventsEncoder {
    /// Room for `bytes` of encoded events (texts plus [`EVENT_HEADER_BYTES`] each).
    pub fn with_capacity(bytes: usize) -> Self {
        Self { buf: BytesMut::with_capacity(bytes), count: 0 }
    }

    pub fn push(&mut self, time: i64, source: TimeSource, text: &[u8]) {
        self.buf.put_i64_le(time);
        self.buf.put_u8(source.to_byte());
        self.buf.put_u32_le(text.len() as u32);
        self.buf.put_slice(text);
        self.count += 1;
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
        self.buf.len() - self.count * EVENT_HEADER_BYTES
    }

    /// The encoded events so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Appends another encoder's events after these.
    pub fn append(&mut self, other: EventsEncoder) {
        self.buf.extend_from_slice(&other.buf);
        self.count += other.count;
    }

    pub fn finish(self) -> Bytes {
        self.buf.freeze()
    }
}

/// One decoded event of a record.
#[derive(Debug, Clone, Copy)]
pub struct StoredEvent<'a> {
    pub time: i64,
    pub source: TimeSource,
    pub text: &'a str,
}

/// Decodes a record's events. Stops at the first malformed entry (a record passed its
/// checksum, so that means a bug, reported through the error).
pub fn decode_events(mut buf: &[u8]) -> impl Iterator<Item = Result<StoredEvent<'_>, String>> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        if buf.len() < EVENT_HEADER_BYTES {
            buf = &[];
            return Some(Err("truncated event header".into()));
        }
        let time = i64::from_le_bytes(buf[0..8].try_into().expect("8 bytes"));
        let source = TimeSource::from_byte(buf[8]);
        let len = u32::from_le_bytes(buf[9..13].try_into().expect("4 bytes")) as usize;
        let end = EVENT_HEADER_BYTES + len;
        if buf.len() < end {
            buf = &[];
            return Some(Err("truncated event".into()));
        }
        let text = std::str::from_utf8(&buf[EVENT_HEADER_BYTES..end]).map_err(|e| e.to_string());
        buf = &buf[end..];
        Some(text.map(|text| StoredEvent { time, source, text }))
    })
}
