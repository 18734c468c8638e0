//! logyard-protocols: what shippers send, decoded into checked events by stream.
//!
//! One [`Decoder`] per ingest protocol (NDJSON, Elasticsearch bulk, OTLP logs, Loki push,
//! Firehose delivery) turns a request body into [`Decoded`]: the events of each stream, the
//! items that could not be taken, and what the protocol's answer needs. [`body`] reads
//! content types and encodings and decompresses within a bound; [`records`] decodes Kinesis
//! and Firehose records, which the Kinesis consumer uses too.
//!
//! Pure: no IO, no clock (the receive time is passed in), no HTTP types, so every decoder is
//! fuzzed (`fuzz/`). Authorization, durability and counting are the intake's, in the server
//! and `logyard-ingest`, the same for every protocol.

pub mod body;
pub mod elastic;
pub mod firehose;
pub mod loki;
pub mod ndjson;
pub mod otlp;
pub mod records;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use logyard_core::batch::{BatchBuilder, Given};
use logyard_core::encoded::{EventsEncoder, Leaf};
use logyard_core::event::LineError;
use logyard_core::parse::{push_line_building_row, push_line_with_rows};
use logyard_core::time::Micros;
use logyard_core::{ErrorKind, ServiceError, StreamName};

/// The ingest protocols: the `protocol` label of the ingest metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Ndjson,
    Elasticsearch,
    Otlp,
    Loki,
    Firehose,
    Kinesis,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Ndjson => "ndjson",
            Protocol::Elasticsearch => "elasticsearch",
            Protocol::Otlp => "otlp",
            Protocol::Loki => "loki",
            Protocol::Firehose => "firehose",
            Protocol::Kinesis => "kinesis",
        }
    }
}

/// A protocol's reading of one request: a value holding what the request said besides its
/// body (the stream of its path or header, its content type), consumed by [`Decoder::decode`]
/// on a blocking thread.
pub trait Decoder: Send + 'static {
    /// What the protocol's answer needs of the request besides its events (per-item
    /// results, line reports).
    type Items: Send + 'static;
    /// The protocol, for metric labels.
    const PROTOCOL: Protocol;

    /// Decodes a decompressed body received at `received`. An error means the body as a
    /// whole cannot be read; items that cannot be taken alone are in [`Decoded::rejected`].
    fn decode(self, body: &[u8], received: Micros) -> Result<Decoded<Self::Items>, ProtocolError>;
}

/// Checked events by stream, and the items that could not be taken.
#[derive(Debug, Default)]
pub struct Decoded<I> {
    pub streams: BTreeMap<StreamName, EventsEncoder>,
    pub rejected: Rejected,
    pub items: I,
    /// Streams whose events' rows were built while they were read, against the table schema
    /// the decoder was given (`logyard_core::parse::parse_body_into_rows`).
    pub rows: BTreeMap<StreamName, RecordBatch>,
    /// Bytes reserved up front for the events of the first stream that gets any.
    room: usize,
}

impl<I> Decoded<I> {
    pub fn new(items: I) -> Self {
        Self::with_room(items, 0)
    }

    /// With room for `bytes` of encoded events in the first stream that gets events: most
    /// requests name one stream, and a buffer grown by doubling copies its events again and
    /// touches fresh pages each time (a fifth of a bulk request's time).
    pub fn with_room(items: I, bytes: usize) -> Self {
        Self { streams: BTreeMap::new(), rejected: Rejected::default(), items, rows: BTreeMap::new(), room: bytes }
    }

    /// Checks one event (a JSON object) for `stream`: adds it, or counts it rejected.
    pub fn push(&mut self, stream: &StreamName, text: &[u8], received: Micros) {
        if let Err(e) = self.try_push(stream, text, received) {
            self.rejected.add(Some(stream), 1, || e.to_string());
        }
    }

    /// Checks one event for `stream` and adds it; a stream gets no entry from a bad event.
    pub fn try_push(&mut self, stream: &StreamName, text: &[u8], received: Micros) -> Result<(), LineError> {
        self.push_to(stream, |events| events.push_line(text, received))
    }

    /// [`Decoded::try_push`] of an event whose text is borrowed from the body, also handing it
    /// to the rows `rows` builds for `stream` (which give up on the stream when an event
    /// cannot be taken that way).
    pub fn try_push_rows<'b>(
        &mut self,
        stream: &StreamName,
        text: &'b [u8],
        received: Micros,
        rows: &mut RowBuilders<'b>,
    ) -> Result<(), LineError> {
        let Some(builder) = rows.builder(stream) else { return self.try_push(stream, text, received) };
        self.push_to(stream, |events| push_line_with_rows(events, text, received, builder))
    }

    /// [`Decoded::push`] of an event written for the call (into a buffer the decoder reuses),
    /// whose row `take` adds to the rows `rows` builds for `stream`
    /// ([`push_line_building_row`]): from the values the decoder has at hand
    /// (`BatchBuilder::push_values_copied`), or copied from the event's leaves
    /// (`BatchBuilder::push_leaves_copied`).
    pub fn push_building_row<'b>(
        &mut self,
        stream: &StreamName,
        text: &[u8],
        received: Micros,
        rows: &mut RowBuilders<'b>,
        take: impl FnOnce(&mut BatchBuilder<'b>, Micros, &str, &[Leaf], &[Box<str>]) -> bool,
    ) {
        let added = match rows.builder(stream) {
            Some(builder) => {
                self.push_to(stream, |events| push_line_building_row(events, text, received, builder, take))
            }
            None => self.try_push(stream, text, received),
        };
        if let Err(e) = added {
            self.rejected.add(Some(stream), 1, || e.to_string());
        }
    }

    /// Adds an event to `stream`'s events with `add`; as [`Decoded::try_push`], a stream gets no
    /// entry from a bad event.
    fn push_to(
        &mut self,
        stream: &StreamName,
        add: impl FnOnce(&mut EventsEncoder) -> Result<(), LineError>,
    ) -> Result<(), LineError> {
        if let Some(events) = self.streams.get_mut(stream) {
            return add(events);
        }
        let mut events = EventsEncoder::with_capacity(self.room);
        add(&mut events)?;
        self.room = 0;
        self.streams.insert(stream.clone(), events);
        Ok(())
    }

    /// Ends `rows`: each stream's rows that took all of its events go to [`Decoded::rows`].
    pub fn finish_rows(&mut self, rows: RowBuilders<'_>) {
        for (stream, builder) in rows.builders {
            let Some(builder) = builder else { continue };
            let events = self.streams.get(&stream).map_or(0, EventsEncoder::len);
            if let Ok(Some(batch)) = builder.finish_prepared()
                && batch.num_rows() == events
                && events > 0
            {
                self.rows.insert(stream, batch);
            }
        }
    }

    /// The events of `stream`, created empty.
    pub fn events(&mut self, stream: &StreamName) -> &mut EventsEncoder {
        if !self.streams.contains_key(stream) {
            let events = EventsEncoder::with_capacity(std::mem::take(&mut self.room));
            self.streams.insert(stream.clone(), events);
        }
        self.streams.get_mut(stream).expect("just inserted")
    }

    /// Events decoded, over all streams.
    pub fn event_count(&self) -> usize {
        self.streams.values().map(EventsEncoder::len).sum()
    }
}

/// The table schema and column limit of a stream whose events' rows a decoder builds as it
/// reads them (`Ingestor::rows_schema`); `None` for a stream without one yet.
#[derive(Clone)]
pub struct RowsSchema(pub Arc<SchemaOf>);

/// A stream's table schema and column limit, when it has one.
pub type SchemaOf = dyn Fn(&StreamName) -> Option<(SchemaRef, usize)> + Send + Sync;

impl std::fmt::Debug for RowsSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RowsSchema")
    }
}

/// The rows of each stream of a request, built while its body is read: Arrow builders fed
/// the events' values as the scanner finds them (`EventsEncoder::push_line_with`), as the
/// NDJSON endpoint does (`logyard_core::parse::parse_body_into_rows`). A stream without a
/// schema, or with an event the builder cannot take as the flush would, gets none.
pub struct RowBuilders<'b> {
    schema: Option<RowsSchema>,
    /// Rows each builder is first given room for.
    rows: usize,
    builders: BTreeMap<StreamName, Option<BatchBuilder<'b>>>,
}

impl<'b> RowBuilders<'b> {
    /// Builders for the streams `schema` knows, each with room for `rows` rows at first.
    pub fn new(schema: Option<RowsSchema>, rows: usize) -> Self {
        Self { schema, rows, builders: BTreeMap::new() }
    }

    /// The builder of `stream`'s rows; `None` once given up on (or when it has no schema).
    fn builder(&mut self, stream: &StreamName) -> Option<&mut Option<BatchBuilder<'b>>> {
        if !self.builders.contains_key(stream) {
            let builder = (self.schema.as_ref())
                .and_then(|schema| (schema.0)(stream))
                .map(|(schema, max_columns)| BatchBuilder::with_capacity(schema, max_columns, self.rows));
            self.builders.insert(stream.clone(), builder);
        }
        self.builders.get_mut(stream).filter(|b| b.is_some())
    }
}

/// The columns of an object's values as `flatten` names them (`labels.app`), for
/// [`BatchBuilder::push_values_copied`]; `None` when a value is an object, an array or a
/// fraction (whose columns and text the event's text decides). Nulls have no column.
pub(crate) fn given_columns<'m>(
    prefix: &str,
    object: &'m serde_json::Map<String, serde_json::Value>,
) -> Option<Vec<(String, Given<'m>)>> {
    use serde_json::Value;
    let mut columns = Vec::with_capacity(object.len());
    for (key, value) in object {
        let given = match value {
            Value::Null => continue,
            Value::String(text) => Given::Text(text),
            Value::Bool(b) => Given::Bool(*b),
            Value::Number(n) => Given::Int(n.as_i64()?),
            Value::Array(_) | Value::Object(_) => return None,
        };
        let mut name = String::with_capacity(prefix.len() + 1 + key.len());
        name.push_str(prefix);
        name.push('.');
        logyard_core::event::push_sanitized(&mut name, key);
        columns.push((name, given));
    }
    Some(columns)
}

/// Items that could not be made events, counted by the stream they were meant for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// `None`: items that named no valid stream.
    pub by_stream: BTreeMap<Option<StreamName>, usize>,
    /// Why the first one was rejected.
    pub first: Option<String>,
}

impl Rejected {
    /// Counts `count` items of `stream` rejected; `why` is asked for the first one only.
    pub fn add(&mut self, stream: Option<&StreamName>, count: usize, why: impl FnOnce() -> String) {
        if count == 0 {
            return;
        }
        *self.by_stream.entry(stream.cloned()).or_default() += count;
        if self.first.is_none() {
            self.first = Some(why());
        }
    }

    pub fn total(&self) -> usize {
        self.by_stream.values().sum()
    }
}

/// Why a body cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("cannot decode the body: {0}")]
    BadEncoding(String),
    /// The body is not a request of the protocol; `code` names the protocol's error.
    #[error("{message}")]
    Malformed { code: &'static str, message: String },
}

impl ServiceError for ProtocolError {
    fn kind(&self) -> ErrorKind {
        match self {
            ProtocolError::UnsupportedMediaType(_) => ErrorKind::UnsupportedMediaType,
            ProtocolError::TooLarge(_) => ErrorKind::TooLarge,
            ProtocolError::BadEncoding(_) | ProtocolError::Malformed { .. } => ErrorKind::BadRequest,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ProtocolError::UnsupportedMediaType(_) => "unsupported_media_type",
            ProtocolError::TooLarge(_) => "payload_too_large",
            ProtocolError::BadEncoding(_) => "bad_encoding",
            ProtocolError::Malformed { code, .. } => code,
        }
    }
}

/// Checks that rows a decoder builds as it reads are the rows the flush builds from its
/// events, and that the events are the same with rows as without: `decode` decodes one request
/// against the schemas it is given. Returns the streams that got rows.
#[cfg(test)]
pub(crate) fn rows_as_the_flush_builds<I>(decode: impl Fn(Option<RowsSchema>) -> Decoded<I>) -> Vec<StreamName> {
    use logyard_core::batch::{DEFAULT_MAX_COLUMNS, Held, base_schema, batches_from_held};
    use logyard_core::encoded::{leaves_left_out, times_and_texts};
    let build = |held: Held<'_>, schema| batches_from_held(schema, [(1, held)], DEFAULT_MAX_COLUMNS, 1 << 20).unwrap();
    let plain = decode(None);
    // The schema each stream's table has after a commit of these events.
    let schemas: BTreeMap<StreamName, SchemaRef> = (plain.streams.iter())
        .map(|(s, e)| (s.clone(), build(Held::Encoded(e.as_bytes()), Arc::new(base_schema())).last().unwrap().schema()))
        .collect();
    let known = schemas.clone();
    let read = decode(Some(RowsSchema(Arc::new(move |s| Some((known.get(s)?.clone(), DEFAULT_MAX_COLUMNS))))));
    assert_eq!(read.rejected, plain.rejected);
    for (stream, events) in &plain.streams {
        let (schema, record) = (&schemas[stream], &read.streams[stream]);
        assert_eq!(times_and_texts(record.as_bytes()), times_and_texts(events.as_bytes()), "the events of {stream}");
        // What a replay reads (leaves left out where rows were built) gives the same rows.
        assert_eq!(
            build(Held::Encoded(record.as_bytes()), schema.clone()),
            build(Held::Encoded(events.as_bytes()), schema.clone()),
            "the replayed rows of {stream}"
        );
    }
    for (stream, rows) in &read.rows {
        let (schema, events) = (&schemas[stream], &read.streams[stream]);
        assert_eq!(rows.num_rows(), events.len());
        assert_eq!(
            build(Held::Prepared(rows), schema.clone()),
            build(Held::Encoded(plain.streams[stream].as_bytes()), schema.clone()),
            "the rows of {stream}"
        );
        let left_out = leaves_left_out(events.as_bytes()).unwrap();
        assert_eq!(left_out, events.len(), "the record of {stream} leaves the values to its rows");
    }
    read.rows.into_keys().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_counted_by_stream_and_the_first_reason_kept() {
        let web = StreamName::new("web").unwrap();
        let mut d = Decoded::new(());
        d.push(&web, b"{\"a\":1}", 0);
        d.push(&web, b"[1]", 0);
        d.rejected.add(None, 2, || "no stream".into());
        d.rejected.add(Some(&web), 0, || unreachable!("nothing to reject"));
        assert_eq!(d.event_count(), 1);
        assert_eq!(d.rejected.total(), 3);
        assert_eq!(d.rejected.by_stream[&Some(web)], 1);
        assert_eq!(d.rejected.by_stream[&None], 2);
        assert!(d.rejected.first.unwrap().contains("array"));
    }
}
