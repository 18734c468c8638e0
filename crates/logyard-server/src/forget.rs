//! Forgetting a customer (`admin`; docs/privacy.md, "Forgetting a customer"):
//!
//! - `POST /api/v1/forget` `{"customer": "c-000123", "streams": [...], "dry_run": false}`:
//!   records a job and answers 202 with its receipt so far and `url`; the server's forget
//!   service runs it (and resumes it after a restart);
//! - `GET /api/v1/forget/{id}`: the job's receipt: its phase, what was found and removed
//!   where, and, once done, when the bytes were gone from the storage.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use logyard_auth::{Principal, Scope};
use logyard_ingest::forget::{ForgetRequest, receipt};

use crate::body::read_json;
use crate::client::ClientIp;
use crate::error::ApiError;
use crate::intake::authorize;
use crate::state::AppState;

pub(crate) async fn create(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    client: Option<axum::Extension<ClientIp>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&principal, Scope::Admin, None)?;
    let shape = r#"{"customer": "c-000123", "streams": ["storefront"], "dry_run": false}"#;
    let request: ForgetRequest = read_json(&headers, body, 16 << 10, "invalid_request", shape).await?;
    let job = state.forget.create(&request, &principal.name).await?;
    let client = client.map(|c| c.0.0.to_string());
    let detail = json!({"job": job.id, "subject": job.subject, "streams": job.streams, "dry_run": job.dry_run});
    state.ingestor.audit(&principal.name, client, "forget_requested", detail).await?;
    state.forget_wake.notify_one();
    let url = format!("/api/v1/forget/{}", job.id);
    Ok((StatusCode::ACCEPTED, Json(json!({"url": url, "job": receipt(&job)}))))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&principal, Scope::Admin, None)?;
    match state.forget.get(&id).await? {
        Some(job) => Ok(Json(receipt(&job))),
        None => Err(ApiError::not_found(format!("no forget job {id:?}"))),
    }
}
