//! Kinesis Data Firehose HTTP endpoint delivery: `{"requestId", "timestamp", "records":
//! [{"data": base64}]}`, each record's bytes decoded as [`crate::records`] decodes Kinesis
//! records. A record that cannot be read fails the whole request, so that Firehose sends it
//! again rather than losing it; a line that cannot be made an event is rejected alone.

use serde::Deserialize;

use logyard_core::StreamName;
use logyard_core::time::Micros;

use crate::records::decode_record;
use crate::{Decoded, Decoder, Protocol, ProtocolError};

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
        let events = out.events(&self.stream);
        let mut rejected = 0;
        let mut data = Vec::new();
        for (i, record) in request.records.iter().enumerate() {
            data.clear();
            base64_simd::STANDARD
                .decode_append(&record.data, &mut data)
                .map_err(|e| malformed(format!("record {i}: data is not base64: {e}")))?;
            let outcome = decode_record(&data, received, events).map_err(|e| malformed(format!("record {i}: {e}")))?;
            rejected += outcome.rejected;
        }
        if events.is_empty() {
            out.streams.clear();
        }
        out.rejected.add(Some(&self.stream), rejected, || "a line is not text".into());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logyard_core::encoded::decode_events;

    fn decode(body: &[u8]) -> Result<Decoded<()>, ProtocolError> {
        Firehose { stream: StreamName::new("fh").unwrap() }.decode(body, 7)
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
}
