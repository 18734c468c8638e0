//! GetRecords' answer, read by logyard rather than by the SDK.
//!
//! The SDK still signs and sends the call and reads its errors; [`RawBody`] takes the body of
//! a successful answer before the SDK's deserializer sees it, and [`Page::parse`] reads it in
//! place: each record's data stays a borrowed base64 string until it is decoded into one
//! reused buffer. The SDK's own reader builds three owned buffers per record with a
//! byte-at-a-time JSON scanner, which cost more CPU than decoding and committing the events
//! (BENCHMARKS.md, "The Kinesis consumer beside the NDJSON endpoint").

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_kinesis::config::interceptors::BeforeDeserializationInterceptorContextMut;
use aws_sdk_kinesis::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_kinesis::error::BoxError;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use bytes::Bytes;
use serde::Deserialize;

/// Takes the body of a successful GetRecords answer and leaves the SDK an empty one.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawBody(Arc<Mutex<Option<SdkBody>>>);

impl RawBody {
    /// Reads the body taken from the last answer (`None` when there was none: an error).
    pub(crate) async fn bytes(&self) -> Option<Result<Bytes, aws_smithy_types::byte_stream::error::Error>> {
        let body = self.0.lock().unwrap_or_else(PoisonError::into_inner).take()?;
        Some(ByteStream::new(body).collect().await.map(|b| b.into_bytes()))
    }
}

impl Intercept for RawBody {
    fn name(&self) -> &'static str {
        "logyard GetRecords body"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response_mut();
        if response.status().is_success() {
            // `{}` is a GetRecords answer with no records, which the SDK's reader accepts.
            let body = std::mem::replace(response.body_mut(), SdkBody::from("{}"));
            *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(body);
        }
        Ok(())
    }
}

/// One GetRecords answer (the fields logyard uses).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Page<'a> {
    #[serde(borrow, default)]
    pub records: Vec<Record<'a>>,
    /// `None` once a closed shard is read to its end.
    pub next_shard_iterator: Option<String>,
    pub millis_behind_latest: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Record<'a> {
    /// Base64 of the record's bytes.
    #[serde(borrow)]
    pub data: Cow<'a, str>,
    #[serde(borrow)]
    pub sequence_number: Cow<'a, str>,
    /// Seconds since the epoch (milliseconds in the fraction).
    pub approximate_arrival_timestamp: Option<f64>,
}

impl<'a> Page<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

impl Record<'_> {
    /// Arrival time in microseconds (Kinesis keeps milliseconds).
    pub(crate) fn arrived_micros(&self) -> Option<i64> {
        self.approximate_arrival_timestamp.map(|s| (s * 1000.0).round() as i64 * 1000)
    }

    /// Decodes the record's bytes into `buf` (cleared first).
    pub(crate) fn data_into(&self, buf: &mut Vec<u8>) -> Result<(), base64_simd::Error> {
        buf.clear();
        base64_simd::STANDARD.decode_append(self.data.as_bytes(), buf).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_read_as_kinesis_writes_it() {
        // The shape of GetRecords' answer in the Kinesis API reference.
        let body = br#"{"MillisBehindLatest":2100,"NextShardIterator":"AAAAAAAAAAHsW8zCWf9164uy8Epue6WS3w6wmj4a4USt+CNvMd6uXQ+HL5vAJMznqqC0DLKsIjuoiTi1BpT6nW0LN2M2D56zM5H8anHm30Gbri9ua+qaGgj+3XTyvbhpERfrezgLHbPB/rIcVpykJbaSj5tmcXYRmFnqZBEyHwtZYFmh6hvWVFkIwLuMZLMrpWhG5r5hzkE=","Records":[{"Data":"eyJhIjoxfQ==","PartitionKey":"partitionKey","ApproximateArrivalTimestamp":1.441215410867E9,"SequenceNumber":"21269319989652663814458848515492872193"}]}"#;
        let page = Page::parse(body).unwrap();
        assert_eq!(page.millis_behind_latest, Some(2100));
        assert!(page.next_shard_iterator.as_deref().unwrap().starts_with("AAAAAAAAAAHsW8"));
        let record = &page.records[0];
        assert_eq!(record.sequence_number, "21269319989652663814458848515492872193");
        assert_eq!(record.arrived_micros(), Some(1_441_215_410_867_000));
        let mut buf = b"left over".to_vec();
        record.data_into(&mut buf).unwrap();
        assert_eq!(buf, br#"{"a":1}"#);

        // A closed shard read to its end: no iterator; escapes in strings are undone.
        let page =
            Page::parse(br#"{"Records":[{"Data":"YQ\u003d\u003d","SequenceNumber":"1"}],"ChildShards":[]}"#).unwrap();
        assert_eq!(page.next_shard_iterator, None);
        page.records[0].data_into(&mut buf).unwrap();
        assert_eq!(buf, b"a");
        assert_eq!(page.records[0].arrived_micros(), None);

        let e =
            Page::parse(br#"{"Records":[{"Data":"!!","SequenceNumber":"1"}]}"#).unwrap().records[0].data_into(&mut buf);
        assert!(e.is_err(), "not base64");
        assert!(Page::parse(b"<html>").is_err());
    }
}
