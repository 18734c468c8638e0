//! Kinesis Data Firehose HTTP endpoint delivery: `POST /api/v1/firehose/{stream}`.
//!
//! Firehose sends `{"requestId", "timestamp", "records": [{"data": base64}]}` with the
//! endpoint's access key in `X-Amz-Firehose-Access-Key` (a logyard token). The answer is
//! `{"requestId", "timestamp"}` with 200 once the records are durable, else an error status
//! with `errorMessage`; Firehose retries those. A request id already delivered is answered
//! 200 without ingesting it again (ids are remembered for an hour, in memory).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use logyard_auth::{Principal, Scope};
use logyard_core::{StreamName, time};
use logyard_ingest::Ack;
use logyard_ingest::body::{self, Encoding};
use logyard_ingest::records::decode_firehose;

use crate::app::{AppState, authorize, blocking, check_backpressure, read_ingest_body};
use crate::error::ApiError;

pub const REQUEST_ID: &str = "x-amz-firehose-request-id";
pub const ACCESS_KEY: &str = "x-amz-firehose-access-key";

/// Request ids seen lately: delivered (true) or being delivered (false), and when each came.
#[derive(Debug, Default)]
struct Known {
    ids: HashMap<String, bool>,
    order: VecDeque<(Instant, String)>,
}

/// Request ids seen lately, forgotten after an hour (or past a count).
#[derive(Debug)]
pub struct RecentRequests {
    state: Mutex<Known>,
    ttl: Duration,
    capacity: usize,
}

impl Default for RecentRequests {
    fn default() -> Self {
        Self { state: Mutex::new(Default::default()), ttl: Duration::from_secs(3600), capacity: 200_000 }
    }
}

enum Seen {
    New,
    Delivered,
    InFlight,
}

impl RecentRequests {
    fn begin(&self, id: &str) -> Seen {
        let mut guard = self.state.lock().expect("recent requests lock");
        let Known { ids, order } = &mut *guard;
        while let Some((at, _)) = order.front() {
            if at.elapsed() < self.ttl && order.len() <= self.capacity {
                break;
            }
            let (_, old) = order.pop_front().expect("non-empty");
            ids.remove(&old);
        }
        match ids.get(id) {
            Some(true) => Seen::Delivered,
            Some(false) => Seen::InFlight,
            None => {
                ids.insert(id.to_owned(), false);
                order.push_back((Instant::now(), id.to_owned()));
                Seen::New
            }
        }
    }

    fn finish(&self, id: &str, delivered: bool) {
        let mut guard = self.state.lock().expect("recent requests lock");
        if delivered {
            guard.ids.insert(id.to_owned(), true);
        } else {
            guard.ids.remove(id);
        }
    }
}

/// An answer in Firehose's form.
pub fn answer(status: StatusCode, request_id: &str, error: Option<&str>) -> Response {
    let timestamp = time::now_micros() / 1000;
    let body = match error {
        None => json!({"requestId": request_id, "timestamp": timestamp}),
        Some(message) => json!({"requestId": request_id, "timestamp": timestamp, "errorMessage": message}),
    };
    (status, axum::Json(body)).into_response()
}

pub fn request_id(headers: &HeaderMap) -> String {
    headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// `POST /api/v1/firehose/{stream}`.
pub async fn deliver(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let id = request_id(&headers);
    let fail = |e: ApiError| answer(e.status, &id, Some(&e.message));
    let stream = match StreamName::new(&stream) {
        Ok(s) => s,
        Err(e) => return answer(StatusCode::BAD_REQUEST, &id, Some(&e.to_string())),
    };
    if let Err(e) = authorize(&principal, Scope::Ingest, Some(&stream)) {
        return fail(e);
    }
    if id.is_empty() {
        return answer(StatusCode::BAD_REQUEST, &id, Some("the X-Amz-Firehose-Request-Id header is missing"));
    }
    match state.firehose.begin(&id) {
        Seen::Delivered => return answer(StatusCode::OK, &id, None),
        Seen::InFlight => {
            return answer(StatusCode::SERVICE_UNAVAILABLE, &id, Some("this request is being delivered; retry later"));
        }
        Seen::New => {}
    }
    let result = take(&state, &principal, &stream, headers, body).await;
    state.firehose.finish(&id, result.is_ok());
    match result {
        Ok(()) => answer(StatusCode::OK, &id, None),
        Err(e) => fail(e),
    }
}

async fn take(
    state: &AppState,
    principal: &Principal,
    stream: &StreamName,
    headers: HeaderMap,
    body: Body,
) -> Result<(), ApiError> {
    let encoding = Encoding::from_header(headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()))?;
    check_backpressure(state)?;
    let raw = read_ingest_body(state, principal, &headers, body).await?;
    let max_decoded = state.body_limits.max_decoded_bytes;
    let received = time::now_micros();
    let decoded = blocking(move || {
        let decoded = body::decode(raw, encoding, max_decoded)?;
        Ok::<_, logyard_ingest::IngestError>(decode_firehose(&decoded, received))
    })
    .await??;
    let (_, events, outcome) = decoded.map_err(|e| ApiError::bad_request("bad_firehose_request", e))?;
    let metrics = state.ingestor.metrics();
    metrics.rejected(stream.as_str(), outcome.rejected);
    if outcome.events > 0 {
        state.ingestor.append_events(stream, events, Ack::Wal).await?;
    }
    Ok(())
}
