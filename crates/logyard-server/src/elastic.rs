//! The Elasticsearch bulk API, so that Fluent Bit's `es` output, Vector's `elasticsearch`
//! sink and the official clients' bulk helpers send to logyard unchanged: `POST /_bulk`,
//! `POST /{index}/_bulk`, and the calls they make first (`GET /`, `HEAD /`, `GET /_license`,
//! `GET /_cluster/health`). Decoding is `logyard_protocols::elastic`; the intake takes the
//! events; this module answers with one result per item.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use logyard_auth::Principal;
use logyard_protocols::elastic::{Bulk, Item, Outcome};

use crate::error::{Form, elastic_answer, elastic_product};
use crate::intake::{self, Payload, Taken};
use crate::state::AppState;

/// The version logyard answers as: clients choose their API by it.
const VERSION: &str = "8.15.0";

/// `GET /` and `HEAD /`.
pub(crate) async fn info() -> Response {
    elastic_answer(
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
pub(crate) async fn license() -> Response {
    elastic_answer(StatusCode::OK, json!({"license": {"status": "active", "type": "basic", "uid": "logyard"}}))
}

/// `GET /_cluster/health`.
pub(crate) async fn cluster_health() -> Response {
    elastic_answer(StatusCode::OK, json!({"cluster_name": "logyard", "status": "green", "timed_out": false}))
}

/// `POST /_bulk`.
pub(crate) async fn bulk(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk_to(state, principal, None, headers, body).await
}

/// `POST /{index}/_bulk`.
pub(crate) async fn bulk_index(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(index): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk_to(state, principal, Some(index), headers, body).await
}

async fn bulk_to(
    state: AppState,
    principal: Principal,
    path_index: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let rows = Some(intake::rows_schema(&state));
    let decoder = Bulk { path_index, mapping: state.protocols.index_mapping.clone(), rows };
    match intake::take(&state, &principal, Payload::Http { headers, body }, decoder, state.protocols.ack).await {
        Ok(taken) => answer(&taken, started),
        Err(e) => e.into_response_as(Form::Elastic),
    }
}

/// The answer, written directly into one buffer, without `fmt`: a bulk request may hold
/// thousands of items, and formatting them took 6 % of a bulk load's time.
fn answer(taken: &Taken<Vec<Item>>, started: Instant) -> Response {
    use logyard_core::scan::write_json_string;
    let id_base = uuid::Uuid::now_v7().simple().to_string();
    let mut number = itoa::Buffer::new();
    let failed = taken.items.iter().any(|item| refusal(taken, item).is_some());
    let took = started.elapsed().as_millis() as u64;
    let mut out = Vec::with_capacity(64 + taken.items.len() * 200);
    out.extend_from_slice(b"{\"took\":");
    out.extend_from_slice(number.format(took).as_bytes());
    out.extend_from_slice(if failed { b",\"errors\":true,\"items\":[" } else { b",\"errors\":false,\"items\":[" });
    for (n, item) in taken.items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(item.action.as_bytes());
        out.extend_from_slice(b"\":{\"_index\":");
        write_json_string(&mut out, &item.index);
        out.extend_from_slice(b",\"_id\":");
        match &item.id {
            Some(id) => write_json_string(&mut out, id),
            None => {
                out.push(b'"');
                out.extend_from_slice(id_base.as_bytes());
                out.push(b'-');
                out.extend_from_slice(number.format(n).as_bytes());
                out.push(b'"');
            }
        }
        match refusal(taken, item) {
            None => {
                out.extend_from_slice(
                    b",\"_version\":1,\"result\":\"created\",\"_shards\":{\"total\":1,\"successful\":1,\"failed\":0},\"_seq_no\":",
                );
                out.extend_from_slice(number.format(n).as_bytes());
                out.extend_from_slice(b",\"_primary_term\":1,\"status\":201}}");
            }
            Some((status, kind, reason)) => {
                out.extend_from_slice(b",\"status\":");
                out.extend_from_slice(number.format(status).as_bytes());
                out.extend_from_slice(b",\"error\":{\"type\":");
                write_json_string(&mut out, kind);
                out.extend_from_slice(b",\"reason\":");
                write_json_string(&mut out, reason);
                out.extend_from_slice(b"}}}");
            }
        }
    }
    out.extend_from_slice(b"]}");
    elastic_product((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], out).into_response())
}

/// Why an item was not taken (status, error type, reason); `None` when it was.
fn refusal<'t>(taken: &'t Taken<Vec<Item>>, item: &'t Item) -> Option<(u16, &'static str, &'t str)> {
    match &item.outcome {
        Outcome::Accepted(stream) => taken.refusal(stream).map(|r| (403, "security_exception", r.message.as_str())),
        Outcome::Refused { status, kind, reason } => Some((*status, *kind, reason.as_str())),
    }
}
