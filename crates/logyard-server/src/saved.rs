//! Saved searches, shared by everyone on the server and kept in the storage (so every replica
//! and every restart sees them): `console/saved-searches/<id>.json`.
//!
//! - `GET /api/v1/saved-searches`: those whose streams the token may all read.
//! - `POST /api/v1/saved-searches` `{"name": "...", "search": {streams, query, since | from,
//!   to, columns}}`: saves one (the `query` scope); its owner is the token's name.
//! - `DELETE /api/v1/saved-searches/{id}`: by its owner, or a token with the `admin` scope.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use logyard_auth::{Principal, Scope};
use logyard_core::{ErrorKind, StreamName};

use crate::body::read_json;
use crate::error::ApiError;
use crate::intake::authorize;
use crate::state::AppState;

const DIR: &str = "console/saved-searches";
/// Longest name, in characters.
const MAX_NAME: usize = 200;
/// Longest search text, in characters.
const MAX_QUERY: usize = 10_000;

/// A search as the console's URL holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Search {
    streams: Vec<String>,
    #[serde(default)]
    query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    #[serde(default)]
    columns: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Saved {
    id: String,
    name: String,
    owner: String,
    created_at: String,
    search: Search,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSaved {
    name: String,
    search: Search,
}

fn key(id: &str) -> String {
    format!("{DIR}/{id}.json")
}

/// An id as [`create`] makes them (so that a path cannot name another object).
fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn load(state: &AppState, id: &str) -> Result<Option<Saved>, ApiError> {
    match state.storage.get(&key(id)).await {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            ApiError::new(ErrorKind::Internal, "bad_saved_search", format!("saved search {id} cannot be read: {e}"))
        }),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn list(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&principal, Scope::Query, None)?;
    let mut out = Vec::new();
    for name in state.storage.list_names(DIR).await? {
        let Some(id) = name.strip_suffix(".json").filter(|id| valid_id(id)) else { continue };
        match load(&state, id).await {
            Ok(Some(saved)) if saved.search.streams.iter().all(|s| principal.may_see(s)) => out.push(saved),
            Ok(_) => {}
            Err(e) => tracing::warn!(id, error = %e.message, "skipping a saved search"),
        }
    }
    out.sort_by(|a, b| a.name.to_lowercase().cmp(&b.name.to_lowercase()).then(a.created_at.cmp(&b.created_at)));
    Ok(Json(serde_json::json!({ "saved_searches": out })))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Saved>), ApiError> {
    authorize(&principal, Scope::Query, None)?;
    let shape = r#"{"name": "...", "search": {"streams": [...], "query": "..."}}"#;
    let new: NewSaved = read_json(&headers, body, 64 << 10, "invalid_request", shape).await?;
    let name = new.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("a name of 1 to {MAX_NAME} characters is needed"),
        ));
    }
    if new.search.streams.is_empty() {
        return Err(ApiError::bad_request("invalid_request", "a saved search names at least one stream"));
    }
    if new.search.query.chars().count() > MAX_QUERY {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("the search is longer than {MAX_QUERY} characters"),
        ));
    }
    logyard_search::parse(&new.search.query)?;
    for stream in &new.search.streams {
        authorize(&principal, Scope::Query, Some(&StreamName::new(stream)?))?;
    }
    let saved = Saved {
        id: uuid::Uuid::new_v4().simple().to_string(),
        name,
        owner: principal.name.clone(),
        created_at: logyard_core::time::rfc3339(logyard_core::time::now_micros()),
        search: new.search,
    };
    let bytes = serde_json::to_vec_pretty(&saved).expect("serializes");
    state.storage.put(&key(&saved.id), bytes.into()).await?;
    Ok((StatusCode::CREATED, Json(saved)))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&principal, Scope::Query, None)?;
    let missing = || ApiError::new(ErrorKind::NotFound, "no_such_saved_search", format!("no saved search {id:?}"));
    if !valid_id(&id) {
        return Err(missing());
    }
    let saved = load(&state, &id).await?.ok_or_else(missing)?;
    if !saved.search.streams.iter().all(|s| principal.may_see(s)) {
        return Err(missing());
    }
    if saved.owner != principal.name && !principal.has(Scope::Admin) {
        return Err(ApiError::forbidden(format!(
            "saved search {:?} belongs to {:?}: only its owner or an admin token may delete it",
            saved.name, saved.owner
        )));
    }
    state.storage.delete(&key(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
