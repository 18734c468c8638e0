//! The Elasticsearch bulk API, so that Fluent Bit's `es` output, Vector's `elasticsearch`
//! sink and the official clients' bulk helpers send to logyard unchanged: `POST /_bulk`,
//! `POST /{index}/_bulk`, and the calls they make first (`GET /`, `HEAD /`, `GET /_license`,
//! `GET /_cluster/health`). Answers carry `X-Elastic-Product: Elasticsearch`, which the
//! official clients check, and errors have Elasticsearch's shape.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use logyard_auth::{Principal, Scope};
use logyard_core::time;
use logyard_ingest::Ack;
use logyard_ingest::body::{self, Encoding};
use logyard_ingest::elastic::{Outcome, parse_bulk};

use crate::app::{AppState, authorize, blocking, check_backpressure, read_ingest_body};
use crate::error::ApiError;

/// The version logyard answers as: clients choose their API by it.
const VERSION: &str = "8.15.0";

/// Whether a path is one of the Elasticsearch API's (for the form of errors).
pub fn is_elastic_path(path: &str) -> bool {
    matches!(path, "/" | "/_bulk" | "/_license" | "/_cluster/health") || path.ends_with("/_bulk")
}

fn respond(status: StatusCode, body: Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut().insert("x-elastic-product", HeaderValue::from_static("Elasticsearch"));
    r
}

/// An error as Elasticsearch writes one.
pub fn error(status: StatusCode, kind: &str, reason: &str) -> Response {
    let cause = json!({"type": kind, "reason": reason});
    respond(
        status,
        json!({"error": {"root_cause": [cause], "type": kind, "reason": reason}, "status": status.as_u16()}),
    )
}

fn from_api(e: ApiError) -> Response {
    let kind = match e.status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => "es_rejected_execution_exception",
        StatusCode::PAYLOAD_TOO_LARGE => "content_too_long_exception",
        StatusCode::FORBIDDEN => "security_exception",
        StatusCode::BAD_REQUEST => "parse_exception",
        _ => "exception",
    };
    // 503 from backpressure becomes 429, which every client retries.
    let status = if e.status == StatusCode::SERVICE_UNAVAILABLE { StatusCode::TOO_MANY_REQUESTS } else { e.status };
    error(status, kind, &e.message)
}

/// `GET /` and `HEAD /`.
pub async fn info() -> Response {
    respond(
        StatusCode::OK,
        json!({
            "name": "logyard",
            "cluster_name": "logyard",
            "cluster_uuid": "logyard",
            "version": {
                "number": VERSION,
                "build_flavor": "default",
                "build_type": "logyard",
                "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "You Know, for Search"
        }),
    )
}

/// `GET /_license`.
pub async fn license() -> Response {
    respond(StatusCode::OK, json!({"license": {"status": "active", "type": "basic", "uid": "logyard"}}))
}

/// `GET /_cluster/health`.
pub async fn cluster_health() -> Response {
    respond(StatusCode::OK, json!({"cluster_name": "logyard", "status": "green", "timed_out": false}))
}

/// `POST /_bulk`.
pub async fn bulk(
    state: State<AppState>,
    principal: axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk_to(state, principal, None, headers, body).await.unwrap_or_else(from_api)
}

/// `POST /{index}/_bulk`.
pub async fn bulk_index(
    state: State<AppState>,
    principal: axum::Extension<Principal>,
    Path(index): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk_to(state, principal, Some(index), headers, body).await.unwrap_or_else(from_api)
}

async fn bulk_to(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    path_index: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let encoding = Encoding::from_header(headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()))?;
    check_backpressure(&state)?;
    let raw = read_ingest_body(&state, &principal, &headers, body).await?;
    let (max_decoded, mapping) = (state.body_limits.max_decoded_bytes, state.index_mapping.clone());
    let received = time::now_micros();
    let decoded = blocking(move || {
        let decoded = body::decode(raw, encoding, max_decoded)?;
        Ok::<_, logyard_ingest::IngestError>(parse_bulk(&decoded, path_index.as_deref(), &mapping, received))
    })
    .await??;
    let mut bulk = match decoded {
        Ok(b) => b,
        Err(e) => return Ok(error(StatusCode::BAD_REQUEST, "illegal_argument_exception", &e.0)),
    };

    // Each stream's events in one durable append; a stream the token may not write, or whose
    // append fails, fails its items only.
    let mut failed: Vec<(logyard_core::StreamName, u16, &'static str, String)> = Vec::new();
    let mut positions = std::collections::BTreeMap::new();
    for (stream, events) in std::mem::take(&mut bulk.streams) {
        if let Err(e) = authorize(&principal, Scope::Ingest, Some(&stream)) {
            failed.push((stream, 403, "security_exception", e.message));
            continue;
        }
        match state.ingestor.append_events(&stream, events, Ack::Wal).await {
            Ok(position) => {
                positions.insert(stream, position);
            }
            Err(e) => {
                let e = ApiError::from(e);
                let status = if e.status.is_server_error() { 429 } else { e.status.as_u16() };
                failed.push((stream, status, "es_rejected_execution_exception", e.message));
            }
        }
    }

    // The answer, written directly: a bulk request may hold thousands of items.
    let id_base = uuid::Uuid::now_v7().simple().to_string();
    let text = |s: &str| serde_json::to_string(s).expect("a string serializes");
    let mut items = String::with_capacity(bulk.items.len() * 160);
    let mut rejected = 0;
    for (n, item) in bulk.items.iter().enumerate() {
        let id = item.id.as_deref().map_or_else(|| text(&format!("{id_base}-{n}")), text);
        let refused = match &item.outcome {
            Outcome::Accepted(stream) => failed.iter().find(|f| &f.0 == stream).map(|f| (f.1, f.2, f.3.as_str())),
            Outcome::Refused { status, kind, reason } => Some((*status, *kind, reason.as_str())),
        };
        if n > 0 {
            items.push(',');
        }
        let (action, index) = (&item.action, text(&item.index));
        match refused {
            None => items.push_str(&format!(
                "{{\"{action}\":{{\"_index\":{index},\"_id\":{id},\"_version\":1,\"result\":\"created\",\
                 \"_shards\":{{\"total\":1,\"successful\":1,\"failed\":0}},\"_seq_no\":{n},\"_primary_term\":1,\"status\":201}}}}"
            )),
            Some((status, kind, reason)) => {
                rejected += 1;
                items.push_str(&format!(
                    "{{\"{action}\":{{\"_index\":{index},\"_id\":{id},\"status\":{status},\"error\":{{\"type\":\"{kind}\",\"reason\":{}}}}}}}",
                    text(reason)
                ));
            }
        }
    }
    state.ingestor.metrics().rejected("_bulk", rejected);
    let took = started.elapsed().as_millis() as u64;
    let body = format!("{{\"took\":{took},\"errors\":{},\"items\":[{items}]}}", rejected > 0);
    let mut response = (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    response.headers_mut().insert("x-elastic-product", HeaderValue::from_static("Elasticsearch"));
    Ok(response)
}
