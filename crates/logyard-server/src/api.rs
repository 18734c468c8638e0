//! The API's own routes besides ingest and search: SQL, streams, flush, health, readiness and
//! metrics.

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use arrow::datatypes::DataType;
use logyard_auth::{FieldAccess, Principal, Scope};
use logyard_core::{ErrorKind, StreamName};
use logyard_query::Format;
use logyard_storage::tables::StreamInfo;

use crate::body::read_json;
use crate::client::ClientIp;
use crate::error::ApiError;
use crate::intake::authorize;
use crate::state::AppState;

pub(crate) async fn flush(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    client: Option<axum::Extension<ClientIp>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&principal, Scope::Admin, None)?;
    let client = client.map(|c| c.0.0.to_string());
    state.ingestor.audit(&principal.name, client, "flush", serde_json::json!({})).await?;
    let summary = state.ingestor.flush_all().await?;
    Ok(Json(serde_json::json!({
        "committed_rows": summary.rows,
        "streams": summary.streams,
        "archived_bundles": summary.bundles,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
    #[serde(default)]
    format: Option<String>,
}

pub(crate) async fn query(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&principal, Scope::Query, None)?;
    let slot = query_slot(&state)?;
    let request: QueryRequest =
        read_json(&headers, body, 1 << 20, "invalid_request", r#"{"sql": "...", "format": "json"}"#).await?;
    let format: Format = match request.format.as_deref() {
        None => Format::Json,
        Some(f) => f.parse().map_err(|e: logyard_query::output::UnknownFormat| {
            ApiError::bad_request("invalid_request", e.to_string())
        })?,
    };
    let started = Instant::now();
    let result = async {
        let running = state.query.execute_as(&request.sql, &principal).await?;
        logyard_query::output::encode(running, format, state.query.options().max_json_rows).await
    }
    .await;
    state.http_metrics.observe_query(started.elapsed(), result.is_ok());
    let stream = result?;
    // The query holds its slot until its last byte is sent.
    let stream = futures::StreamExt::map(stream, move |chunk| {
        let _ = &slot;
        chunk
    });
    Ok(([(header::CONTENT_TYPE, format.content_type())], Body::from_stream(stream)).into_response())
}

/// One of the `max_concurrent_queries` slots, held while a query (or search) runs.
pub(crate) fn query_slot(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    state.query_slot().map_err(|message| ApiError::retry_later(ErrorKind::Unavailable, "too_many_queries", message, 1))
}

pub(crate) async fn list_streams(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&principal, Scope::Query, None)?;
    let names = state.storage.list_streams().await?;
    let mut streams = Vec::with_capacity(names.len());
    for name in names.into_iter().filter(|n| principal.may_see(n.as_str())) {
        if let Some(info) = state.query.tables().info(&name).await? {
            streams.push(as_seen_by(info, &principal));
        }
    }
    Ok(Json(serde_json::json!({ "streams": streams })))
}

pub(crate) async fn get_stream(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(stream): Path<String>,
) -> Result<Response, ApiError> {
    let stream = StreamName::new(&stream)?;
    authorize(&principal, Scope::Query, Some(&stream))?;
    match state.query.tables().info(&stream).await? {
        Some(info) => Ok(Json(as_seen_by(info, &principal)).into_response()),
        None => Err(ApiError::not_found(format!("stream {stream} has no table yet"))),
    }
}

/// A stream's description with the columns `principal` may not read left out, and those it
/// reads masked shown as the text they are.
fn as_seen_by(mut info: StreamInfo, principal: &Principal) -> StreamInfo {
    let rules = principal.fields();
    info.schema.retain_mut(|column| match rules.access(&column.name) {
        FieldAccess::Clear => true,
        FieldAccess::Denied => false,
        FieldAccess::Masked => {
            column.data_type = DataType::Utf8.to_string();
            column.nullable = true;
            true
        }
    });
    info
}

/// `GET /api/v1/session`: who the caller is, for the console to show only what the token may
/// do (`auth` is false when the server takes no tokens).
pub(crate) async fn session(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "name": principal.name,
        "auth": state.auth.required(),
        "scopes": principal.scopes().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "streams": principal.streams(),
        "deny_fields": principal.fields().denied(),
        "mask_fields": principal.fields().masked(),
    }))
}

pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    if state.stopping.is_draining() {
        let body = serde_json::json!({"status": "draining", "detail": "the server is shutting down: send requests to another replica"});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let storage = match tokio::time::timeout(Duration::from_secs(5), state.storage.probe()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".to_owned()),
    };
    let wal = probe_dir(&state.wal_dir).await;
    let backlog = match state.ingestor.backpressure() {
        None => Ok(()),
        Some(p) => Err(format!("{} bytes wait in the write-ahead log, above its budget of {}", p.wal_bytes, p.budget)),
    };
    let ready = storage.is_ok() && wal.is_ok() && backlog.is_ok();
    let check = |r: &Result<(), String>| match r {
        Ok(()) => serde_json::json!({"ok": true}),
        Err(e) => serde_json::json!({"ok": false, "error": e}),
    };
    let mut body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {"storage": check(&storage), "wal": check(&wal), "backlog": check(&backlog)},
    });
    if state.auth.insecure {
        let warning = "authentication is off (--insecure-no-auth): anyone who reaches this server can read and write every stream";
        tracing::warn!("{warning}");
        body["warning"] = serde_json::Value::String(warning.into());
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn probe_dir(dir: &std::path::Path) -> Result<(), String> {
    let path = dir.join(".ready-probe");
    tokio::fs::write(&path, b"ok").await.map_err(|e| format!("{}: {e}", dir.display()))?;
    tokio::fs::remove_file(&path).await.map_err(|e| format!("{}: {e}", dir.display()))
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let m = state.ingestor.metrics();
    m.wal_bytes.set(state.ingestor.wal_bytes() as i64);
    m.buffered_bytes.set(state.ingestor.buffered_bytes() as i64);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &state.registry)
        .map_err(|e| ApiError::new(ErrorKind::Internal, "internal", format!("encoding metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], out).into_response())
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see README.md for the API")
}
