//! `POST /api/v1/search`: the search language over streams, for the console and the CLI.
//! A page of the newest matching events, the cursor of the next page, the SQL that ran and,
//! when asked, the matching events counted over time.

use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;

use logyard_auth::{Principal, Scope};
use logyard_core::StreamName;
use logyard_core::time::now_micros;
use logyard_query::search::time_range;
use logyard_query::{SearchRequest, SearchResult};

use crate::api::query_slot;
use crate::body::read_json;
use crate::error::ApiError;
use crate::intake::authorize;
use crate::state::AppState;

/// Events per page when the request does not say.
const DEFAULT_LIMIT: usize = 100;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchBody {
    streams: Vec<String>,
    #[serde(default)]
    query: String,
    /// RFC 3339; or `since`, a duration before `to` ("15m", "24h", "7d").
    from: Option<String>,
    since: Option<String>,
    /// RFC 3339; default now.
    to: Option<String>,
    limit: Option<usize>,
    before: Option<String>,
    #[serde(default)]
    histogram: bool,
}

pub(crate) async fn search(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<SearchResult>, ApiError> {
    authorize(&principal, Scope::Query, None)?;
    let slot = query_slot(&state)?;
    let shape = r#"{"streams": ["..."], "query": "...", "since": "15m"}"#;
    let body: SearchBody = read_json(&headers, body, 1 << 20, "invalid_request", shape).await?;
    let request = request(body)?;
    let started = Instant::now();
    let result = state.query.search(&request, &principal).await;
    state.http_metrics.observe_query(started.elapsed(), result.is_ok());
    drop(slot);
    Ok(Json(result?))
}

pub(crate) fn request(body: SearchBody) -> Result<SearchRequest, ApiError> {
    let streams = body.streams.iter().map(|s| StreamName::new(s)).collect::<Result<Vec<_>, _>>()?;
    let (from, to) = time_range(body.from.as_deref(), body.since.as_deref(), body.to.as_deref(), now_micros())?;
    let before = body.before.as_deref().map(str::parse).transpose()?;
    Ok(SearchRequest {
        streams,
        query: body.query,
        from,
        to,
        limit: body.limit.unwrap_or(DEFAULT_LIMIT),
        before,
        histogram: body.histogram,
    })
}
