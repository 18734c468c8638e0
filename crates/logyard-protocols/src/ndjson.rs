//! logyard's own ingest body: NDJSON (or a JSON array) for the one stream a request names.
//! Each bad line is reported with its number and the rest is kept (`logyard_core::parse`).

use arrow::datatypes::SchemaRef;

use logyard_core::StreamName;
use logyard_core::parse::{BodyFormat, LineReport, parse_body, parse_body_into_rows};
use logyard_core::time::Micros;

use crate::{Decoded, Decoder, Protocol, ProtocolError};

/// A request to `POST /api/v1/streams/{stream}/events`.
#[derive(Debug, Clone)]
pub struct Ndjson {
    pub stream: StreamName,
    pub format: BodyFormat,
    /// The stream's table schema and column limit, when known: the events' rows are then
    /// built as the lines are read ([`Decoded::rows`]).
    pub rows: Option<(SchemaRef, usize)>,
}

impl Decoder for Ndjson {
    /// The first rejected lines, with their numbers.
    type Items = Vec<LineReport>;
    const PROTOCOL: Protocol = Protocol::Ndjson;

    fn decode(self, body: &[u8], received: Micros) -> Result<Decoded<Self::Items>, ProtocolError> {
        let (parsed, rows) = match &self.rows {
            Some((schema, max_columns)) => parse_body_into_rows(body, self.format, received, schema, *max_columns),
            None => (parse_body(body, self.format, received), None),
        };
        let mut out = Decoded::new(parsed.errors);
        if let Some(rows) = rows {
            out.rows.insert(self.stream.clone(), rows);
        }
        let first = out.items.first().map(|e| format!("line {}: {}", e.line, e.message));
        out.rejected.add(Some(&self.stream), parsed.rejected, || first.unwrap_or_default());
        if !parsed.events.is_empty() {
            out.streams.insert(self.stream, parsed.events);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_taken_or_reported_for_the_named_stream() {
        let web = StreamName::new("web").unwrap();
        let d = Ndjson { stream: web.clone(), format: BodyFormat::Ndjson, rows: None }
            .decode(b"{\"a\":1}\nnope\n", 0)
            .unwrap();
        assert_eq!(d.streams[&web].len(), 1);
        assert_eq!(d.rejected.by_stream[&Some(web)], 1);
        assert_eq!(d.items[0].line, 2);
        assert!(d.rejected.first.unwrap().starts_with("line 2: "));
    }
}
