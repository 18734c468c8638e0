//! `GET /api/v1/reports` and the files of a report (the `query` scope).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use logyard_auth::{Principal, Scope};

use crate::error::ApiError;
use crate::intake::authorize;
use crate::state::AppState;

/// The finished reports, newest first, each with its files.
pub(crate) async fn list(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Response, ApiError> {
    authorize(&principal, Scope::Query, None)?;
    let reports: Vec<serde_json::Value> = state
        .reports
        .list()
        .await?
        .into_iter()
        .map(|m| {
            serde_json::json!({
                "kind": m.kind,
                "date": m.date,
                "generated_at": m.generated_at,
                "url": format!("/api/v1/reports/{}/{}", m.kind, m.date),
                "files": m.files,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "reports": reports })).into_response())
}

/// The HTML of a daily report.
pub(crate) async fn daily_html(
    state: State<AppState>,
    principal: axum::Extension<Principal>,
    Path(date): Path<String>,
) -> Result<Response, ApiError> {
    daily_file(state, principal, Path((date, "report.html".to_owned()))).await
}

/// One file of a daily report: `report.html`, `report.json` or a table's CSV.
pub(crate) async fn daily_file(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path((date, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    report_response(&state, &principal, "daily", &date, &name).await
}

/// A file of a report, for the caller's token (also a download link's).
pub(crate) async fn report_response(
    state: &AppState,
    principal: &Principal,
    kind: &str,
    date: &str,
    name: &str,
) -> Result<Response, ApiError> {
    authorize(principal, Scope::Query, None)?;
    if !principal.fields().is_empty() {
        return Err(ApiError::forbidden(
            "reports are written with every field in clear, and this token has deny_fields or mask_fields",
        ));
    }
    if chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_err() {
        return Err(ApiError::bad_request("invalid_date", format!("{date:?} is not a date like 2026-11-25")));
    }
    let data = state.reports.file(kind, date, name).await?;
    let content_type = match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("csv") => "text/csv; charset=utf-8",
        _ => "application/octet-stream",
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            // The report is static: no scripts, nothing fetched.
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'; img-src data:"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        data,
    )
        .into_response())
}
