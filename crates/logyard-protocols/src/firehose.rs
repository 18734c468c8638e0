//! Kinesis Data Firehose HTTP endpoint delivery: `{"requestId", "timestamp", "records":
//! [{"data": base64}]}`, each record's bytes decoded as [`crate::records`] decodes Kinesis
//! records. A record that cannot be read fails the whole request, so that Firehose sends it
//! again rather than losing it; a line that cannot be made an event is rejected alone.

use serde::Deserialize;

use logyard_core::StreamName;
use logyard_core::time::Micros;

use crate::records::decode_record;
use crate::{Decoded, Decoder, Protocol, ProtocolError, RowBuilders, RowsSchema};

/// The body of a delivery request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryRequest {
    #[allow(dead_code, reason = "required by the specification; the header's copy is the one answered")]
    request_id: String,
    #[allow(dead_code, reason = "required by the specification")]
    timestamp: i64,
    records: Vec<DeliveryRecord>,
}

#[derive(Debug, Deserialize)]
struct DeliveryRecord {
    /// Base64 of the record's bytes.
    data: String,
}

/// A delivery to `POST /api/v1/firehose/{stream}`.
#[derive(Debug, Clone)]
pub struct Firehose {
    pub stream: StreamName,
    /// The table schemas the records' rows are built against as they are read.
    pub rows: Option<RowsSchema>,
}

fn malformed(message: String) -> ProtocolError {
    ProtocolError::Malformed { code: "bad_firehose_request", message }
}

impl Decoder for Firehose {
    type Items = ();
    const PROTOCOL: Protocol = Protocol::Firehose;

    fn decode(self, body: &[u8], received: Micros) -> Result<Decoded<()>, ProtocolError> {
        let request: DeliveryRequest = serde_json::from_slice(body)
            .map_err(|e| malformed(format!("the body is not a Firehose delivery request: {e}")))?;
        // Base64 is 4/3 of the records' bytes.
        let mut out = Decoded::with_room((), body.len());
        let mut rows = RowBuilders::new(self.rows, request.records.len());
        let mut no_rows = None;
        let builder = rows.builder(&self.stream).unwrap_or(&mut no_rows);
        let events = out.events(&self.stream);
        let mut rejected = 0;
        let mut data = Vec::new();
        for (i, record) in request.records.iter().enumerate() {
            data.clear();
            base64_simd::STANDARD
                .decode_append(&record.data, &mut data)
                .map_err(|e| malformed(format!("record {i}: data is not base64: {e}")))?;
            let outcome =
                decode_record(&data, received, events, builder).map_err(|e| malformed(format!("record {i}: {e}")))?;
            rejected += outcome.rejected;
        }
        if events.is_empty() {
            out.streams.clear();
        }
        out.rejected.add(Some(&self.stream), rejected, || "a line is not text".into());
        out.finish_rows(rows);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logyard_core::encoded::decode_events;

    fn decode(body: &[u8]) -> Result<Decoded<()>, ProtocolError> {
        Firehose { stream: StreamName::new("fh").unwrap(), rows: None }.decode(body, 7)
    }

    #[test]
    fn requests_are_decoded_record_by_record() {
        // The request of the Firehose HTTP endpoint delivery specification.
        let body = br#"{"requestId":"ed4acda5-034f-9f42-bba1-f29aea6d7d8f","timestamp":1578090901599,"records":[{"data":"aGVsbG8="},{"data":"aGVsbG8gd29ybGQ="}]}"#;
        let d = decode(body).unwrap();
        let events = d.streams[&StreamName::new("fh").unwrap()].as_bytes().to_vec();
        let texts: Vec<String> = decode_events(&events).map(|e| e.unwrap().text.to_owned()).collect();
        assert_eq!(texts, ["{\"message\":\"hello\"}", "{\"message\":\"hello world\"}"]);
        assert_eq!(d.rejected.total(), 0);
        assert!(decode(b"{\"records\":[]}").unwrap_err().to_string().contains("requestId"));
        let bad = br#"{"requestId":"x","timestamp":1,"records":[{"data":"!!"}]}"#;
        assert!(decode(bad).unwrap_err().to_string().contains("record 0"));
        // Bytes that are not text are rejected alone.
        let d = decode(br#"{"requestId":"x","timestamp":1,"records":[{"data":"//4K"},{"data":"aGk="}]}"#).unwrap();
        assert_eq!((d.event_count(), d.rejected.total()), (1, 1));
        // No records: no events, nothing rejected.
        let d = decode(br#"{"requestId":"x","timestamp":1,"records":[]}"#).unwrap();
        assert!(d.streams.is_empty());
    }

    /// Records of every kind (NDJSON, a text line, a pretty-printed document, a CloudWatch
    /// Logs envelope) build their rows as they are read, the rows the flush would build.
    #[test]
    fn records_build_their_rows_as_the_flush_would() {
        use base64_simd::STANDARD;
        let envelope = br#"{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"/shop","logStream":"web-1","subscriptionFilters":[],"logEvents":[{"id":"1","timestamp":1764064800000,"message":"{\"status\":500}"},{"id":"2","timestamp":1764064801000,"message":"GET / 200"}]}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, envelope).unwrap();
        let records: Vec<Vec<u8>> = vec![
            b"{\"status\":200,\"path\":\"/a\"}\n{\"status\":404,\"path\":\"/\\u00e9\"}\n".to_vec(),
            b"plain text".to_vec(),
            b"{\n  \"status\": 201,\n  \"path\": \"/b\"\n}\n".to_vec(),
            gz.finish().unwrap(),
        ];
        let data: Vec<String> =
            records.iter().map(|r| format!("{{\"data\":\"{}\"}}", STANDARD.encode_to_string(r))).collect();
        let body = format!("{{\"requestId\":\"x\",\"timestamp\":1,\"records\":[{}]}}", data.join(","));
        let decode =
            |rows| Firehose { stream: StreamName::new("fh").unwrap(), rows }.decode(body.as_bytes(), 7).unwrap();
        assert_eq!(decode(None).event_count(), 6);
        let built = crate::rows_as_the_flush_builds(decode);
        assert_eq!(built.iter().map(StreamName::as_str).collect::<Vec<_>>(), ["fh"]);
    }
}
