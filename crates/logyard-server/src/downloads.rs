//! Downloads a browser can save or open without the token in a URL: `POST /api/v1/downloads`
//! (with the token, as any call) names what to download and answers a one-time link,
//! `GET /api/v1/downloads/{ticket}`, that works once, within a minute, for what that token
//! may read. The link carries a random ticket, never the token.
//!
//! - `{"search": {streams, query, since | from, to}, "format": "ndjson" | "csv"}`: every event
//!   the search matches, newest first, streamed as the query runs (never held whole). CSV
//!   takes one stream (streams have different columns).
//! - `{"report": {"kind": "daily", "date": "2026-11-25", "file": "report.html"}}`: a file of a
//!   finished report, opened in its own tab with the report's own restrictive CSP.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;

use logyard_auth::{Principal, Scope};
use logyard_core::ErrorKind;
use logyard_query::output::Format;

use crate::api::query_slot;
use crate::body::read_json;
use crate::error::ApiError;
use crate::intake::authorize;
use crate::reports::report_response;
use crate::search::{SearchBody, request as search_request};
use crate::state::AppState;

/// How long a download link works.
const TICKET_LIFETIME: Duration = Duration::from_secs(60);
#[derive(Debug, Clone)]
enum What {
    Search { search: SearchBody, format: DownloadFormat },
    Report { report: ReportFile },
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DownloadFormat {
    Ndjson,
    Csv,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportFile {
    #[serde(default = "daily")]
    kind: String,
    date: String,
    #[serde(default = "report_html")]
    file: String,
}

fn daily() -> String {
    "daily".into()
}

fn report_html() -> String {
    "report.html".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DownloadRequest {
    search: Option<SearchBody>,
    format: Option<DownloadFormat>,
    report: Option<ReportFile>,
}

/// `POST /api/v1/downloads`: checks what is asked for now, answers a one-time link to it.
pub(crate) async fn create(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&principal, Scope::Query, None)?;
    let shape = r#"{"search": {...}, "format": "ndjson"} or {"report": {"date": "..."}}"#;
    let request: DownloadRequest = read_json(&headers, body, 1 << 20, "invalid_request", shape).await?;
    let what = match request {
        DownloadRequest { search: Some(search), format, report: None } => {
            let format = format.unwrap_or(DownloadFormat::Ndjson);
            // Refused now rather than when the link is opened.
            let checked = search_request(search.clone())?;
            if matches!(format, DownloadFormat::Csv) && checked.streams.len() != 1 {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "a CSV download takes one stream (streams have different columns); choose one, or download NDJSON",
                ));
            }
            for stream in &checked.streams {
                authorize(&principal, Scope::Query, Some(stream))?;
            }
            What::Search { search, format }
        }
        DownloadRequest { search: None, format: None, report: Some(report) } => What::Report { report },
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "name either a `search` (with a `format`) or a `report`",
            ));
        }
    };
    let ticket = state.downloads.issue(principal, Arc::new(what), TICKET_LIFETIME);
    Ok(Json(serde_json::json!({
        "url": format!("/api/v1/downloads/{ticket}"),
        "expires_in_seconds": TICKET_LIFETIME.as_secs(),
    })))
}

/// `GET /api/v1/downloads/{ticket}`: the download, for the token that asked for it.
pub(crate) async fn get(State(state): State<AppState>, Path(ticket): Path<String>) -> Result<Response, ApiError> {
    let redeemed = state.downloads.redeem(&ticket);
    let Some((principal, what)) =
        redeemed.and_then(|t| t.what.downcast_ref::<What>().cloned().map(|w| (t.principal, w)))
    else {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            "no_such_download",
            "this download link was used already or has expired (links work once, for a minute): ask for it again",
        ));
    };
    match what {
        What::Report { report } => report_response(&state, &principal, &report.kind, &report.date, &report.file).await,
        What::Search { search, format } => search_download(&state, principal, search, format).await,
    }
}

async fn search_download(
    state: &AppState,
    principal: Principal,
    search: SearchBody,
    format: DownloadFormat,
) -> Result<Response, ApiError> {
    authorize(&principal, Scope::Query, None)?;
    let slot = query_slot(state)?;
    let request = search_request(search)?;
    let statements = state.query.search_export_sql(&request, &principal).await?;
    let (format, extension) = match format {
        DownloadFormat::Ndjson => (Format::Ndjson, "ndjson"),
        DownloadFormat::Csv => (Format::Csv, "csv"),
    };
    // One stream after the other, each started when the one before has been sent.
    let query = state.query.clone();
    let max_rows = query.options().max_json_rows;
    let chunks = futures::stream::iter(statements)
        .then(move |sql| {
            let query = query.clone();
            let principal = principal.clone();
            async move {
                let running = query.execute_as(&sql, &principal).await?;
                logyard_query::output::encode(running, format, max_rows).await
            }
        })
        .map(|encoded| match encoded {
            Ok(stream) => stream.boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .flatten()
        .map(move |chunk| {
            // The download holds its query slot until its last byte is sent.
            let _ = &slot;
            chunk
        });
    let name = format!(
        "{}-{}.{extension}",
        request.streams.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("+"),
        logyard_core::time::rfc3339(request.to).replace(':', "")
    );
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")).expect("ASCII file name");
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(format.content_type())),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Tickets;

    #[test]
    fn a_ticket_works_once_and_not_after_it_expires() {
        let tickets = Tickets::default();
        let report = || -> Arc<dyn std::any::Any + Send + Sync> {
            Arc::new(What::Report {
                report: ReportFile { kind: daily(), date: "2026-11-25".into(), file: report_html() },
            })
        };
        let ticket = tickets.issue(Principal::anonymous(), report(), TICKET_LIFETIME);
        assert_eq!(ticket.len(), 64);
        assert!(tickets.redeem(&ticket).is_some());
        assert!(tickets.redeem(&ticket).is_none());

        let old = tickets.issue(Principal::anonymous(), report(), TICKET_LIFETIME);
        tickets.expire(&old);
        assert!(tickets.redeem(&old).is_none());
        assert!(tickets.redeem("not-a-ticket").is_none());
    }
}
