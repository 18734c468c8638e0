//! `POST /loki/api/v1/push`: Loki's push API (JSON, or snappy-compressed protobuf), so that
//! Promtail, Grafana Alloy and Fluent Bit's `loki` output send to logyard. 204 once durable;
//! errors are plain text, as Loki writes them.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use logyard_auth::{Principal, Scope};
use logyard_core::{StreamName, time};
use logyard_ingest::Ack;
use logyard_ingest::body::{self, Encoding};
use logyard_ingest::loki::decode;

use crate::app::{AppState, authorize, blocking, check_backpressure, read_ingest_body};
use crate::error::ApiError;
use crate::otlp::STREAM_HEADER;

pub async fn push(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match take(&state, &principal, &headers, body).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            let mut r = (e.status, format!("{}\n", e.message)).into_response();
            if let Some(seconds) = e.retry_after {
                r.headers_mut().insert(header::RETRY_AFTER, seconds.into());
            }
            r
        }
    }
}

async fn take(state: &AppState, principal: &Principal, headers: &HeaderMap, body: Body) -> Result<(), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim().starts_with("application/json"));
    let encoding = Encoding::from_header(headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()))?;
    let stream = headers
        .get(STREAM_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|s| StreamName::new(s).map_err(|e| ApiError::bad_request("invalid_stream", e.to_string())))
        .transpose()?;
    check_backpressure(state)?;
    let raw = read_ingest_body(state, principal, headers, body).await?;
    let (max_decoded, choice) = (state.body_limits.max_decoded_bytes, state.loki.clone());
    let received = time::now_micros();
    let decoded = blocking(move || {
        let decoded = body::decode(raw, encoding, max_decoded)?;
        Ok::<_, logyard_ingest::IngestError>(decode(&decoded, json, stream.as_ref(), &choice, received))
    })
    .await??
    .map_err(|e| ApiError::bad_request("bad_loki_push", e))?;
    for stream in decoded.streams.keys() {
        authorize(principal, Scope::Ingest, Some(stream))?;
    }
    let metrics = state.ingestor.metrics();
    metrics.rejected("loki", decoded.rejected);
    for (stream, events) in decoded.streams {
        state.ingestor.append_events(&stream, events, Ack::Wal).await?;
    }
    Ok(())
}
