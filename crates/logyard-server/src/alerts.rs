//! Alert rules, their state, silences and acknowledgements (docs/alerts.md):
//!
//! - `GET /api/v1/alerts`: every rule the token may see, with who evaluates it, its alerts
//!   (pending or firing, silenced, acknowledged) and the notifications not delivered yet;
//! - `POST /api/v1/alerts` (`admin`): adds or replaces a rule (JSON, as in the configuration);
//! - `DELETE /api/v1/alerts/{name}` (`admin`): deletes a rule added through the API;
//! - `POST /api/v1/alerts/preview` `{"rule": {...}, "at": "RFC 3339"}` (`query`): what a rule
//!   says about one window (ending at or before `at`, default now), per group, without
//!   keeping anything: for trying a rule before saving it;
//! - `POST /api/v1/alerts/{name}/ack` `{"group": "...", "comment": "..."}` (`query`):
//!   acknowledges a firing alert until it resolves;
//! - `GET /api/v1/silences`, `POST /api/v1/silences` `{"matchers": {...}, "duration": "2h",
//!   "comment": "..."}` (`query`), `DELETE /api/v1/silences/{id}` (its author or `admin`).
//!
//! Everything is kept in the storage, so every replica answers the same and the evaluator,
//! wherever it runs, sees a change at its next tick.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use logyard_alerts::{AlertStore, NewSilence, QueryKind, Rule, Source};
use logyard_auth::{FieldAccess, Principal, Scope};
use logyard_core::{ErrorKind, StreamName};

use crate::body::read_json;
use crate::error::ApiError;
use crate::intake::authorize;
use crate::state::AppState;

fn time(ms: i64) -> String {
    logyard_core::time::rfc3339(ms.saturating_mul(1_000))
}

/// A search rule is shown to a token that may read all its streams and, in clear, every field
/// it reads (its fields, its groups, and the text fields its words are looked for in); a SQL
/// rule (which may read anything) only to a token that may read everything. Rules are
/// evaluated with every field in clear, so their groups and counts would otherwise tell a
/// token what it may not read.
fn may_see(state: &AppState, principal: &Principal, rule: &Rule) -> bool {
    let rules = principal.fields();
    match rule.query() {
        QueryKind::Search(search) => {
            if !search.streams.iter().all(|s| principal.may_see(s)) {
                return false;
            }
            if rules.is_empty() {
                return true;
            }
            let Ok(expr) = logyard_search::parse(&search.query) else { return false };
            let text_fields = &state.query.options().text_fields;
            let clear = |field: &str| rules.access(field) == FieldAccess::Clear;
            rule.group_by.as_deref().is_none_or(clear)
                && expr.reads().into_iter().all(|read| match read {
                    Some(field) => clear(field),
                    None => (search.streams.iter())
                        .all(|s| StreamName::new(s).is_ok_and(|s| text_fields.of(&s).iter().all(|f| clear(f)))),
                })
        }
        QueryKind::Sql(_) => principal.streams().is_none() && rules.is_empty(),
    }
}

async fn rule_json(store: &AlertStore, rule: Rule, source: Source, now_ms: i64) -> Result<Value, ApiError> {
    let entry = store.status(&rule.name).await?;
    let acks = store.acks(&rule.name, entry.as_ref()).await?;
    let mut alerts = Vec::new();
    let mut undelivered = Vec::new();
    let mut evaluator = Value::Null;
    let mut last_window_index = Value::Null;
    if let Some(entry) = &entry {
        if !entry.owner.is_empty() && entry.lease_until_ms > now_ms {
            evaluator = json!({"replica": entry.owner, "lease_until": time(entry.lease_until_ms)});
        }
        last_window_index = json!(entry.done);
        for (group, alert) in &entry.state.groups {
            alerts.push(json!({
                "group": group,
                "state": alert.phase,
                "value": alert.value,
                "active_since": time(alert.active_since_ms),
                "fired_at": alert.fired_ms.map(time),
                "silenced": alert.silenced,
                "acknowledged": acks.get(group).map(|a| json!({"by": a.by, "at": time(a.at_ms), "comment": a.comment})),
            }));
        }
        for n in &entry.outbox {
            undelivered.push(json!({
                "group": n.group,
                "state": n.outcome.as_str(),
                "receivers": n.receivers,
                "attempts": n.attempts,
                "last_error": n.last_error,
                "next_try": time(n.next_try_ms),
                "window_to": time(n.window_to_ms),
            }));
        }
    }
    Ok(json!({
        "name": rule.name,
        "source": source,
        "rule": rule,
        "evaluator": evaluator,
        "last_window_index": last_window_index,
        "alerts": alerts,
        "undelivered": undelivered,
    }))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    authorize(&principal, Scope::Query, None)?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut rules = Vec::new();
    for (rule, source) in state.alerts.rules().await? {
        if may_see(&state, &principal, &rule) {
            rules.push(rule_json(&state.alerts, rule, source, now_ms).await?);
        }
    }
    Ok(Json(json!({"rules": rules, "receivers": state.alerts.receivers()})))
}

pub(crate) async fn put(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&principal, Scope::Admin, None)?;
    let shape =
        r#"{"name": "...", "search": {"streams": [...], "query": "..."}, "every": "1m", "condition": "value > 5"}"#;
    let rule: Rule = read_json(&headers, body, 256 << 10, "bad_alert_rule", shape).await?;
    if rule.name == "preview" {
        return Err(ApiError::bad_request(
            "bad_alert_rule",
            "`preview` names the API's rule preview; choose another name",
        ));
    }
    if let QueryKind::Search(search) = rule.query() {
        logyard_search::parse(&search.query)?;
    }
    if !may_see(&state, &principal, &rule) {
        return Err(ApiError::forbidden(
            "this token may not read everything the rule reads: every stream of a search rule and, in clear, its fields (a SQL rule needs a token that may read everything)",
        ));
    }
    let replaced = state.alerts.put_rule(&rule).await?;
    tracing::info!(rule = %rule.name, by = %principal.name, replaced, "alert rule saved");
    let status = if replaced { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(json!({"name": rule.name, "source": Source::Api, "rule": rule}))))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&principal, Scope::Admin, None)?;
    if !state.alerts.delete_rule(&name).await? {
        return Err(ApiError::new(ErrorKind::NotFound, "no_such_alert_rule", format!("no alert rule {name:?}")));
    }
    tracing::info!(rule = %name, by = %principal.name, "alert rule deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewRequest {
    rule: Rule,
    #[serde(default)]
    at: Option<String>,
}

pub(crate) async fn preview(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    authorize(&principal, Scope::Query, None)?;
    let shape = r#"{"rule": {"name": "...", "sql": "...", "every": "1m", "condition": "value > 5"}, "at": "2026-12-01T13:00:00Z"}"#;
    let request: PreviewRequest = read_json(&headers, body, 256 << 10, "bad_alert_rule", shape).await?;
    let rule = request.rule;
    let receivers: Vec<&str> = state.alerts.receivers().iter().map(String::as_str).collect();
    rule.check(&receivers).map_err(|e| ApiError::bad_request("bad_alert_rule", e.to_string()))?;
    if let QueryKind::Search(search) = rule.query() {
        logyard_search::parse(&search.query)?;
    }
    if !may_see(&state, &principal, &rule) {
        return Err(ApiError::forbidden(
            "this token may not read every stream the rule's query reads (a SQL rule needs a token for every stream)",
        ));
    }
    let at_ms = match &request.at {
        Some(text) => logyard_core::time::parse_time_str(text).map(|micros| micros / 1_000).ok_or_else(|| {
            ApiError::bad_request("invalid_request", format!("`at`: {text:?} is not an RFC 3339 time"))
        })?,
        None => chrono::Utc::now().timestamp_millis(),
    };
    let _slot = crate::api::query_slot(&state)?;
    let preview = logyard_alerts::preview(&state.query, &rule, at_ms).await?;
    let groups: Vec<Value> =
        preview.groups.iter().map(|o| json!({"group": o.group, "value": o.value, "holds": o.holds})).collect();
    Ok(Json(json!({
        "rule": rule.name,
        "window": {"from": time(preview.window.from_ms), "to": time(preview.window.to_ms)},
        "rows": preview.rows,
        "groups": groups,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    #[serde(default)]
    group: String,
    #[serde(default)]
    comment: String,
}

pub(crate) async fn ack(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    authorize(&principal, Scope::Query, None)?;
    let request: AckRequest =
        read_json(&headers, body, 16 << 10, "invalid_request", r#"{"group": "...", "comment": "..."}"#).await?;
    let missing = || ApiError::new(ErrorKind::NotFound, "no_such_alert_rule", format!("no alert rule {name:?}"));
    let rules = state.alerts.rules().await?;
    let (rule, _) = rules.iter().find(|(r, _)| r.name == name).ok_or_else(missing)?;
    if !may_see(&state, &principal, rule) {
        return Err(missing());
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    let comment: String = request.comment.chars().take(1000).collect();
    let Some(ack) = state.alerts.acknowledge(&name, &request.group, &principal.name, &comment, now_ms).await? else {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            "alert_not_firing",
            format!("alert rule {name:?} has no firing alert for group {:?}", request.group),
        ));
    };
    tracing::info!(rule = %name, group = %ack.group, by = %ack.by, "alert acknowledged");
    Ok(Json(json!({"rule": ack.rule, "group": ack.group, "by": ack.by, "at": time(ack.at_ms), "comment": ack.comment})))
}

fn silence_json(s: &logyard_alerts::Silence) -> Value {
    json!({
        "id": s.id,
        "matchers": s.matchers,
        "starts_at": time(s.starts_ms),
        "ends_at": time(s.ends_ms),
        "comment": s.comment,
        "created_by": s.created_by,
    })
}

/// The rule a silence names, when it names exactly one (`rule` or `alertname`, no `*`).
fn silenced_rule(matchers: &std::collections::BTreeMap<String, String>) -> Option<&str> {
    let name = matchers.get("rule").or_else(|| matchers.get("alertname"))?;
    (!name.ends_with('*')).then_some(name.as_str())
}

/// The rules whose silences `principal` may see, make and end: `None` for any (a token not
/// limited to some streams), else the names of the rules it may see (read once per request).
async fn silenceable_rules(
    state: &AppState,
    principal: &Principal,
) -> Result<Option<std::collections::HashSet<String>>, ApiError> {
    if principal.streams().is_none() && principal.fields().is_empty() {
        return Ok(None);
    }
    let rules = state.alerts.rules().await?;
    Ok(Some(rules.into_iter().filter(|(rule, _)| may_see(state, principal, rule)).map(|(rule, _)| rule.name).collect()))
}

/// Whether a silence with these matchers is one of `rules` (see [`silenceable_rules`]): a token
/// limited to some streams only silences one rule it may see, by name.
fn may_silence(
    rules: &Option<std::collections::HashSet<String>>,
    matchers: &std::collections::BTreeMap<String, String>,
) -> bool {
    match rules {
        None => true,
        Some(names) => silenced_rule(matchers).is_some_and(|name| names.contains(name)),
    }
}

pub(crate) async fn silences(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    authorize(&principal, Scope::Query, None)?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let rules = silenceable_rules(&state, &principal).await?;
    let silences = state.alerts.silences(now_ms).await?;
    let list: Vec<Value> = silences.iter().filter(|s| may_silence(&rules, &s.matchers)).map(silence_json).collect();
    Ok(Json(json!({"silences": list})))
}

pub(crate) async fn add_silence(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&principal, Scope::Query, None)?;
    let shape = r#"{"matchers": {"rule": "checkout-5xx"}, "duration": "2h", "comment": "..."}"#;
    let new: NewSilence = read_json(&headers, body, 64 << 10, "invalid_request", shape).await?;
    let silence = new.into_silence(&principal.name, chrono::Utc::now().timestamp_millis())?;
    if !may_silence(&silenceable_rules(&state, &principal).await?, &silence.matchers) {
        return Err(ApiError::forbidden(
            "a token limited to some streams silences one rule it may see: name it in the `rule` matcher",
        ));
    }
    let silence = state.alerts.add_silence(silence).await?;
    tracing::info!(id = %silence.id, by = %silence.created_by, "alert silence added");
    Ok((StatusCode::CREATED, Json(silence_json(&silence))))
}

pub(crate) async fn delete_silence(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&principal, Scope::Query, None)?;
    let silence = state
        .alerts
        .silence(&id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorKind::NotFound, "no_such_silence", format!("no silence {id:?}")))?;
    if !may_silence(&silenceable_rules(&state, &principal).await?, &silence.matchers) {
        return Err(ApiError::new(ErrorKind::NotFound, "no_such_silence", format!("no silence {id:?}")));
    }
    if silence.created_by != principal.name && !principal.has(Scope::Admin) {
        return Err(ApiError::forbidden(format!(
            "the silence was made by {:?}: only its author or an admin token may end it",
            silence.created_by
        )));
    }
    state.alerts.delete_silence(&id).await?;
    tracing::info!(id = %id, by = %principal.name, "alert silence ended");
    Ok(StatusCode::NO_CONTENT)
}
