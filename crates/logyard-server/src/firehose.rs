//! Kinesis Data Firehose HTTP endpoint delivery: `POST /api/v1/firehose/{stream}`.
//!
//! Firehose sends `{"requestId", "timestamp", "records": [{"data": base64}]}` with the
//! endpoint's access key in `X-Amz-Firehose-Access-Key` (a logyard token). Decoding is
//! `logyard_protocols::firehose`; the intake takes the events. The answer is
//! `{"requestId", "timestamp"}` with 200 once the records are durable, else an error status
//! with `errorMessage`; Firehose retries those. A request id already delivered is answered
//! 200 without taking it again (ids are remembered for an hour, in memory).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use logyard_auth::Principal;
use logyard_core::{ErrorKind, StreamName};
use logyard_protocols::firehose::Firehose;

use crate::error::{ApiError, Form, firehose_answer};
use crate::intake::{self, Payload};
use crate::middleware::firehose_request_id;
use crate::recent::Seen;
use crate::state::AppState;

/// `POST /api/v1/firehose/{stream}`.
pub(crate) async fn deliver(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let id = firehose_request_id(&headers);
    let fail = |e: ApiError| e.into_response_as(Form::Firehose { request_id: id.clone() });
    let stream = match StreamName::new(&stream) {
        Ok(s) => s,
        Err(e) => return fail(e.into()),
    };
    if id.is_empty() {
        return fail(ApiError::bad_request("missing_request_id", "the X-Amz-Firehose-Request-Id header is missing"));
    }
    match state.firehose_requests.begin(&id) {
        Seen::Delivered => return firehose_answer(StatusCode::OK, &id, None),
        Seen::InFlight => {
            return fail(ApiError::new(
                ErrorKind::Unavailable,
                "in_flight",
                "this request is being delivered; retry later",
            ));
        }
        Seen::New => {}
    }
    let result = intake::take(
        &state,
        &principal,
        Payload::Http { headers, body },
        Firehose { stream, rows: Some(intake::rows_schema(&state)) },
        state.protocols.ack,
    )
    .await
    .and_then(|taken| taken.refusal_error().map_or(Ok(()), Err));
    state.firehose_requests.finish(&id, result.is_ok());
    match result {
        Ok(()) => firehose_answer(StatusCode::OK, &id, None),
        Err(e) => fail(e),
    }
}
