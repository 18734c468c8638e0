//! The checked events of one request, by stream: what protocols that place each record in
//! a stream of its own (OTLP, Loki) decode into.

use std::collections::BTreeMap;

use logyard_core::StreamName;
use logyard_core::encoded::EventsEncoder;
use logyard_core::event;
use logyard_core::time::Micros;

#[derive(Debug, Default)]
pub struct ByStream {
    pub streams: BTreeMap<StreamName, EventsEncoder>,
    /// Records that could not be taken, and why the first one was not.
    pub rejected: usize,
    pub first_error: Option<String>,
}

impl ByStream {
    /// Checks one event (a JSON object) and adds it to `stream`, or counts it rejected.
    pub fn push(&mut self, stream: &StreamName, text: &[u8], received: Micros) {
        match event::check_line(text, received) {
            Ok(c) => self.streams.entry(stream.clone()).or_default().push(c.time, c.source, text),
            Err(e) => self.reject(1, e.to_string()),
        }
    }

    /// Counts `count` records as rejected for `why`.
    pub fn reject(&mut self, count: usize, why: String) {
        self.rejected += count;
        self.first_error.get_or_insert(why);
    }
}
