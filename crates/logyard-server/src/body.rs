//! Reading request bodies within their limits, and header values as text.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};

use logyard_core::{ErrorKind, StreamName};

use crate::error::ApiError;

/// Bytes of an oversized body that are still read (and dropped) before answering 413, so
/// that a client still sending sees the answer instead of a reset connection.
const DRAIN_LIMIT: u64 = 64 << 20;

/// A JSON request body of at most `max` bytes read as `T`; a body that is not one is a 400
/// with `code`, saying what the body must look like (`shape`) and what was wrong.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    code: &'static str,
    shape: &str,
) -> Result<T, ApiError> {
    let raw = read_body(headers, body, max).await?;
    serde_json::from_slice(&raw).map_err(|e| ApiError::bad_request(code, format!("the body must be {shape}: {e}")))
}

/// Reads a body, failing with 413 once it passes `max` bytes.
pub(crate) async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorKind::TooLarge,
            "payload_too_large",
            format!("the request body is larger than the limit of {max} bytes"),
        )
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64 + DRAIN_LIMIT) {
        return Err(too_large());
    }
    let mut body = body.into_data_stream();
    let mut buf = bytes::BytesMut::with_capacity(declared.map_or(64 << 10, |l| l.min(max as u64) as usize));
    let mut over = false;
    let mut drained = 0u64;
    while let Some(chunk) = futures::StreamExt::next(&mut body).await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("bad_body", format!("reading the request body: {e}")))?;
        if over {
            drained += chunk.len() as u64;
            if drained > DRAIN_LIMIT {
                break;
            }
        } else if buf.len() + chunk.len() > max {
            over = true;
            buf = bytes::BytesMut::new();
        } else {
            buf.extend_from_slice(&chunk);
        }
    }
    if over {
        return Err(too_large());
    }
    Ok(buf.freeze())
}

/// A header's value as text, if present.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map_err(|_| ApiError::bad_request("bad_header", format!("header {name} is not valid text")))
        })
        .transpose()
}

/// Whether the request's content type is JSON (the protocols that also take protobuf).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim().starts_with("application/json"))
}

/// The header (and gRPC metadata) naming the stream of an OTLP or Loki request.
pub const STREAM_HEADER: &str = "x-logyard-stream";

/// The stream a request names in [`STREAM_HEADER`], if any.
pub(crate) fn named_stream(value: Option<&str>) -> Result<Option<StreamName>, ApiError> {
    Ok(value.map(StreamName::new).transpose()?)
}
