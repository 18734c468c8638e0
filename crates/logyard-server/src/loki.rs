//! `POST /loki/api/v1/push`: Loki's push API (JSON, or snappy-compressed protobuf), so that
//! Promtail, Grafana Alloy and Fluent Bit's `loki` output send to logyard. Decoding is
//! `logyard_protocols::loki`; the intake takes the events.
//!
//! 204 once durable. As Loki's own distributor does, entries that can be taken are taken and
//! the rest are reported in an error: the streams a token may not write answer 403 (naming
//! them), while the other streams of the push are kept. Errors are plain text, as Loki
//! writes them.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use logyard_auth::Principal;
use logyard_protocols::loki::LokiPush;

use crate::body::{STREAM_HEADER, named_stream};
use crate::error::Form;
use crate::intake::{self, Payload};
use crate::state::AppState;

pub(crate) async fn push(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let decoder = LokiPush {
            json: crate::body::is_json(&headers),
            stream: named_stream(headers.get(STREAM_HEADER).and_then(|v| v.to_str().ok()))?,
            choice: state.protocols.loki.clone(),
            max_bytes: state.body_limits.max_decoded_bytes,
            rows: Some(intake::rows_schema(&state)),
        };
        intake::take(&state, &principal, Payload::Http { headers, body }, decoder, state.protocols.ack).await
    }
    .await;
    match result.map(|taken| taken.refusal_error()) {
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Ok(Some(e)) | Err(e) => e.into_response_as(Form::Loki),
    }
}
