//! `POST /api/v1/streams/{stream}/events`: logyard's own ingest endpoint (NDJSON, or JSON).
//! The answer counts the accepted and rejected events and reports bad lines by number; a
//! body with no good event is a 400.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use logyard_auth::Principal;
use logyard_core::StreamName;
use logyard_core::parse::LineReport;
use logyard_ingest::Ack;
use logyard_protocols::body;
use logyard_protocols::ndjson::Ndjson;

use crate::body::header_str;
use crate::error::ApiError;
use crate::intake::{self, Payload};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub(crate) struct IngestParams {
    #[serde(default)]
    ack: Option<String>,
}

#[derive(Debug, Serialize)]
struct IngestResponse {
    accepted: usize,
    rejected: usize,
    errors: Vec<LineReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<serde_json::Value>,
}

pub(crate) async fn ingest(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(stream): Path<String>,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let stream = StreamName::new(&stream)?;
    let ack = match params.ack.as_deref() {
        None => state.protocols.ack,
        Some("wal") => Ack::Wal,
        Some("commit") => Ack::Commit,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("ack={other:?}: use ack=wal or ack=commit"),
            ));
        }
    };
    let format = body::format_from_content_type(header_str(&headers, header::CONTENT_TYPE.as_str())?)?;
    let rows = state.ingestor.rows_schema(&stream);
    let decoder = Ndjson { stream, format, rows };
    let taken = intake::take(&state, &principal, Payload::Http { headers, body }, decoder, ack).await?;
    if let Some(refused) = taken.refusal_error() {
        return Err(refused);
    }
    let rejected = taken.rejected.total();
    if taken.accepted == 0 {
        let (code, message) = if rejected == 0 {
            ("empty_body", "the body holds no events".to_owned())
        } else {
            ("no_valid_events", format!("all {rejected} events were rejected; see errors"))
        };
        let body = IngestResponse {
            accepted: 0,
            rejected,
            errors: taken.items,
            error: Some(serde_json::json!({"code": code, "message": message})),
        };
        return Ok((StatusCode::BAD_REQUEST, Json(body)).into_response());
    }
    Ok(Json(IngestResponse { accepted: taken.accepted, rejected, errors: taken.items, error: None }).into_response())
}
