//! `/api/v1/uploads`: presigned direct uploads, their completion and status.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use logyard_auth::{Principal, Scope};
use logyard_core::StreamName;
use logyard_ingest::uploads::{UploadRecord, UploadRequest, UploadState};

use crate::body::{read_body, read_json};
use crate::error::ApiError;
use crate::intake::authorize;
use crate::state::AppState;

/// A record as clients see it (without the local capability's hash).
fn view(record: &UploadRecord) -> serde_json::Value {
    let mut v = serde_json::to_value(record).expect("a record serializes");
    if let Some(map) = v.as_object_mut() {
        map.remove("data_token_sha256");
    }
    v
}

/// The caller may act on an upload when it may ingest into its stream.
fn authorize_upload(principal: &Principal, record: &UploadRecord) -> Result<(), ApiError> {
    let stream = StreamName::new(&record.stream)?;
    authorize(principal, Scope::Ingest, Some(&stream))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let shape = r#"{"stream", "filename", "size", "content_type", "format": ndjson|json|text|tar}"#;
    let request: UploadRequest = read_json(&headers, body, 64 << 10, "invalid_upload", shape).await?;
    let stream = StreamName::new(&request.stream)?;
    authorize(&principal, Scope::Ingest, Some(&stream))?;
    let (record, target) = state.uploads.create(request, &principal.name).await?;
    let mut body = serde_json::json!({
        "upload_id": record.upload_id,
        "method": target.method,
        "headers": target.headers,
        "expires_at": target.expires_at,
    });
    if let Some(url) = target.url {
        body["url"] = url.into();
    }
    if let Some(parts) = target.parts {
        body["parts"] = serde_json::to_value(parts).expect("parts serialize");
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct DataParams {
    #[serde(default)]
    token: String,
}

/// The local-storage stand-in for a presigned PUT: the capability in the URL is the
/// authorization, as a presigned URL's signature is on S3.
pub(crate) async fn put_data(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<DataParams>,
    request: Request,
) -> Result<Response, ApiError> {
    if state.storage.presigner().is_some() {
        return Err(ApiError::not_found("uploads go straight to S3: use the URL the upload was created with"));
    }
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = request.into_body().into_data_stream();
    state.uploads.put_data(&id, &params.token, content_type.as_deref(), body).await?;
    Ok(StatusCode::OK.into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteRequest {
    #[serde(default)]
    parts: Vec<CompletedPart>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompletedPart {
    part_number: u32,
    etag: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PartsRequest {
    part_numbers: Vec<u32>,
    #[serde(default)]
    token: Option<String>,
}

/// Fresh URLs for parts of a multipart upload, for a client that resumes.
pub(crate) async fn parts(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let record = state.uploads.status(&id).await?;
    authorize_upload(&principal, &record)?;
    let request: PartsRequest =
        read_json(&headers, body, 1 << 20, "invalid_upload", r#"{"part_numbers": [...]}"#).await?;
    let parts = state.uploads.resume_parts(&id, &request.part_numbers, request.token.as_deref()).await?;
    Ok(Json(serde_json::json!({ "parts": parts })))
}

/// Local storage: one part of a multipart upload (the capability in the URL authorizes it).
pub(crate) async fn put_part(
    State(state): State<AppState>,
    Path((id, n)): Path<(String, u32)>,
    Query(params): Query<DataParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if state.storage.presigner().is_some() {
        return Err(ApiError::not_found("parts go straight to S3: use the URLs the upload was created with"));
    }
    let record = state.uploads.status(&id).await?;
    let max = record.multipart.as_ref().map_or(0, |m| m.part_size) as usize;
    let body = read_body(&headers, body, max.max(1)).await?;
    let etag = state.uploads.put_part(&id, n, &params.token, body).await?;
    Ok((StatusCode::OK, [(header::ETAG, etag)]).into_response())
}

pub(crate) async fn complete(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let record = state.uploads.status(&id).await?;
    authorize_upload(&principal, &record)?;
    let raw = read_body(&headers, body, 4 << 20).await?;
    let request: CompleteRequest = if raw.iter().all(u8::is_ascii_whitespace) {
        CompleteRequest::default()
    } else {
        serde_json::from_slice(&raw).map_err(|e| {
            ApiError::bad_request(
                "invalid_upload",
                format!("the body must be empty or {{\"parts\": [{{\"part_number\", \"etag\"}}]}}: {e}"),
            )
        })?
    };
    let parts: Vec<(u32, String)> = request.parts.into_iter().map(|p| (p.part_number, p.etag)).collect();
    let record = state.uploads.complete(&id, &parts).await?;
    if record.state == UploadState::Uploaded {
        let uploads = state.uploads.clone();
        tokio::spawn(async move {
            if let Err(e) = uploads.ingest(&id).await {
                tracing::warn!(upload = id, error = %logyard_core::error_chain(&e), "ingesting an upload failed; the sweeper retries it");
            }
        });
    }
    Ok((StatusCode::ACCEPTED, Json(view(&record))).into_response())
}

pub(crate) async fn status(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let record = state.uploads.status(&id).await?;
    authorize_upload(&principal, &record)?;
    Ok(Json(view(&record)))
}
