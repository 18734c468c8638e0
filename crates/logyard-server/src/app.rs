//! The HTTP API: routes, handlers, and `run(listener, state, shutdown)`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tracing::Instrument;

use logyard_core::parse::{self, LineReport};
use logyard_core::{StreamName, time};
use logyard_ingest::body::{self, Encoding};
use logyard_ingest::raw::{RawMeta, RawPayload};
use logyard_ingest::uploads::Uploads;
use logyard_ingest::{Ack, Ingestor};
use logyard_query::{Format, QueryEngine};
use logyard_storage::Storage;

use crate::client::ClientIp;
use crate::error::ApiError;
use crate::limits::Limits;
use crate::metrics::HttpMetrics;
use logyard_auth::{AuthFailure, Principal, Scope, TokenStore};

/// Who may call what.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    pub tokens: TokenStore,
    /// Without tokens, a server on loopback lets every request in; so does one started with
    /// `--insecure-no-auth`, which then warns on every readiness check.
    pub insecure: bool,
    /// Whether `/metrics` needs a token too.
    pub protect_metrics: bool,
}

impl AuthSettings {
    pub(crate) fn required(&self) -> bool {
        !self.tokens.current().is_empty()
    }
}

pub use logyard_ingest::maintenance::AUDIT_STREAM;

/// Limits on request bodies.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// Bytes as sent (before decompression).
    pub max_body_bytes: usize,
    /// Bytes after decompression.
    pub max_decoded_bytes: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self { max_body_bytes: 16 << 20, max_decoded_bytes: 128 << 20 }
    }
}

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub ingestor: Ingestor,
    pub query: QueryEngine,
    pub storage: Storage,
    pub body_limits: BodyLimits,
    pub wal_dir: PathBuf,
    pub registry: Arc<Registry>,
    pub http_metrics: HttpMetrics,
    pub auth: AuthSettings,
    pub limits: Limits,
    /// Proxies whose `X-Forwarded-For` is believed (the load balancer's subnets).
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    pub uploads: Uploads,
    /// Streams (names or globs) whose request bodies are archived as received.
    pub raw_streams: Arc<Vec<String>>,
    /// Where reports are read from.
    pub reports: logyard_report::store::ReportStore,
    /// How Elasticsearch index names become streams.
    pub index_mapping: logyard_ingest::elastic::IndexMapping,
    /// Firehose request ids lately delivered.
    pub firehose: Arc<crate::firehose::RecentRequests>,
    /// How OTLP log records find their stream.
    pub otlp: logyard_ingest::otlp::StreamChoice,
    /// How Loki entries find their stream.
    pub loki: logyard_ingest::loki::LokiChoice,
}

/// The router with every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/streams/{stream}/events", post(ingest))
        .route("/api/v1/streams", get(list_streams))
        .route("/api/v1/streams/{stream}", get(get_stream))
        .route("/api/v1/query", post(query))
        .route("/api/v1/flush", post(flush))
        .route("/api/v1/reports", get(crate::reports::list))
        .route("/api/v1/reports/daily/{date}", get(crate::reports::daily_html))
        .route("/api/v1/reports/daily/{date}/{file}", get(crate::reports::daily_file))
        .route("/api/v1/uploads", post(crate::uploads::create))
        .route("/api/v1/uploads/{id}", get(crate::uploads::status))
        .route("/api/v1/uploads/{id}/complete", post(crate::uploads::complete))
        .route("/api/v1/uploads/{id}/data", axum::routing::put(crate::uploads::put_data))
        .route("/api/v1/uploads/{id}/parts", post(crate::uploads::parts))
        .route("/api/v1/uploads/{id}/parts/{n}", axum::routing::put(crate::uploads::put_part))
        .route("/api/v1/firehose/{stream}", post(crate::firehose::deliver))
        .route("/v1/logs", post(crate::otlp::http))
        .route("/loki/api/v1/push", post(crate::loki::push))
        .route("/", get(crate::elastic::info).head(crate::elastic::info))
        .route("/_license", get(crate::elastic::license))
        .route("/_cluster/health", get(crate::elastic::cluster_health))
        .route("/_bulk", post(crate::elastic::bulk).put(crate::elastic::bulk))
        .route("/{index}/_bulk", post(crate::elastic::bulk_index).put(crate::elastic::bulk_index))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), admit))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then lets requests in flight finish.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Like [`run`], over TLS. Requests in flight get `grace` after `shutdown` resolves.
pub async fn run_tls(
    listener: std::net::TcpListener,
    tls: axum_server::tls_rustls::RustlsConfig,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(grace));
    });
    axum_server::from_tcp_rustls(listener, tls)?
        .handle(handle)
        .serve(router(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .await
}

async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let client = crate::client::client_ip(peer, request.headers(), &state.trusted_proxies);
    request.extensions_mut().insert(ClientIp(client));
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = request.method().clone();
    let span = tracing::info_span!(
        "http.request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = route,
        url.path = request.uri().path(),
        client.address = %client,
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    crate::trace::continue_trace(&span, request.headers());
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let took = started.elapsed();
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    state.http_metrics.observe(&route, method.as_str(), status, took);
    span.in_scope(|| {
        tracing::debug!(%method, route, %client, status, ms = took.as_millis() as u64, "request");
    });
    response
}

/// Lets a request in with its [`Principal`], or answers 401.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    // An upload's data URL carries its own capability, as a presigned S3 URL does.
    let upload_data = request.method() == axum::http::Method::PUT
        && path.starts_with("/api/v1/uploads/")
        && (path.ends_with("/data") || path.contains("/parts/"));
    let open =
        matches!(path, "/healthz" | "/readyz") || (path == "/metrics" && !state.auth.protect_metrics) || upload_data;
    if open || !state.auth.required() {
        request.extensions_mut().insert(Principal::anonymous());
        return next.run(request).await;
    }
    let tokens = state.auth.tokens.current();
    let firehose = path.starts_with("/api/v1/firehose/");
    let firehose_key = request.headers().get(crate::firehose::ACCESS_KEY).filter(|_| firehose);
    let authenticated = match (firehose_key, request.headers().get(header::AUTHORIZATION)) {
        // Firehose sends the endpoint's access key in a header of its own.
        (Some(key), None) => tokens.check_secret(key.as_bytes()).ok_or(AuthFailure::Unknown),
        (_, header) => tokens.authenticate(header.map(|v| v.as_bytes())),
    };
    match authenticated {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(failure) => {
            state.http_metrics.auth_failure(failure.reason());
            let (error, message) = match failure {
                AuthFailure::Missing => (None, "a token is required: send Authorization: Bearer <token>"),
                AuthFailure::Malformed => {
                    (Some("invalid_request"), "the Authorization header must be Bearer, ApiKey or Basic with a token")
                }
                AuthFailure::Unknown => (Some("invalid_token"), "the token is not valid"),
            };
            let challenge = match error {
                Some(e) => format!("Bearer realm=\"logyard\", error=\"{e}\""),
                None => "Bearer realm=\"logyard\"".to_owned(),
            };
            let mut response = if firehose {
                let id = crate::firehose::request_id(request.headers());
                crate::firehose::answer(StatusCode::UNAUTHORIZED, &id, Some(message))
            } else if crate::elastic::is_elastic_path(path) {
                crate::elastic::error(StatusCode::UNAUTHORIZED, "security_exception", message)
            } else {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response()
            };
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge.parse().expect("valid header value"));
            response
        }
    }
}

/// Bounds the requests in flight and each token's request rate (after [`authenticate`]).
async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        return next.run(request).await;
    }
    let Some(_slot) = state.limits.request_slot() else {
        state.http_metrics.limited("concurrent_requests");
        let limit = state.limits.settings.max_concurrent_requests;
        return ApiError::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("{limit} requests are already being served; retry later"),
            1,
        )
        .into_response();
    };
    let principal = request.extensions().get::<Principal>().map(|p| p.name.clone()).unwrap_or_default();
    if let Err(retry) = state.limits.check_request(&principal) {
        state.http_metrics.limited("request_rate");
        return ApiError::retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "token {principal:?} sends more than {} requests per second",
                state.limits.settings.requests_per_second
            ),
            retry.seconds(),
        )
        .into_response();
    }
    next.run(request).await
}

/// 403 unless the caller holds `scope` (and may touch `stream`, when given).
pub(crate) fn authorize(principal: &Principal, scope: Scope, stream: Option<&StreamName>) -> Result<(), ApiError> {
    if !principal.has(scope) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("token {:?} does not have the {} scope", principal.name, scope.as_str()),
        ));
    }
    if let Some(stream) = stream
        && !principal.may_see(stream.as_str())
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("token {:?} may not use stream {stream}", principal.name),
        ));
    }
    Ok(())
}

/// Records an administrative action in the audit stream: who, what, when.
pub async fn audit(
    ingestor: &Ingestor,
    who: &str,
    client: Option<ClientIp>,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    let events = logyard_ingest::maintenance::audit_event(who, client.map(|c| c.0.to_string()), action, detail);
    let stream = StreamName::new(AUDIT_STREAM).expect("valid stream name");
    ingestor.append(&stream, events, Ack::Wal).await?;
    tracing::info!(actor = who, action, "audit");
    Ok(())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see README.md for the API")
}

/// Refuses ingest (503) while the write-ahead log holds more than its budget.
pub(crate) fn check_backpressure(state: &AppState) -> Result<(), ApiError> {
    match state.ingestor.backpressure() {
        None => Ok(()),
        Some(pressure) => {
            state.http_metrics.limited("backpressure");
            Err(ApiError::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "backpressure",
                format!(
                    "{} bytes wait in the write-ahead log, above its budget of {} bytes, until the storage takes them; retry later",
                    pressure.wal_bytes, pressure.budget
                ),
                5,
            ))
        }
    }
}

/// Reads an ingest body (as sent) within the size limit and the token's byte rate.
pub(crate) async fn read_ingest_body(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    let raw = read_body(headers, body, state.body_limits.max_body_bytes).await?;
    if let Err(retry) = state.limits.check_bytes(&principal.name, raw.len()) {
        state.http_metrics.limited("byte_rate");
        return Err(ApiError::retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "token {:?} sends more than {} bytes per second",
                principal.name, state.limits.settings.bytes_per_second
            ),
            retry.seconds(),
        ));
    }
    Ok(raw)
}

/// Runs decompression and parsing off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

/// Bytes of an oversized body that are still read (and dropped) before answering 413, so
/// that a client still sending sees the answer instead of a reset connection.
const DRAIN_LIMIT: u64 = 64 << 20;

/// Reads a body, failing with 413 once it passes `max` bytes.
pub(crate) async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the limit of {max} bytes"),
        )
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64 + DRAIN_LIMIT) {
        return Err(too_large());
    }
    let mut body = body.into_data_stream();
    let mut buf = bytes::BytesMut::with_capacity(declared.map_or(64 << 10, |l| l.min(max as u64) as usize));
    let mut over = false;
    let mut drained = 0u64;
    while let Some(chunk) = futures::StreamExt::next(&mut body).await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("bad_body", format!("reading the request body: {e}")))?;
        if over {
            drained += chunk.len() as u64;
            if drained > DRAIN_LIMIT {
                break;
            }
        } else if buf.len() + chunk.len() > max {
            over = true;
            buf = bytes::BytesMut::new();
        } else {
            buf.extend_from_slice(&chunk);
        }
    }
    if over {
        return Err(too_large());
    }
    Ok(buf.freeze())
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Result<Option<&str>, ApiError> {
    headers
        .get(&name)
        .map(|v| {
            v.to_str().map_err(|_| ApiError::bad_request("bad_header", format!("header {name} is not valid text")))
        })
        .transpose()
}

#[derive(Debug, Deserialize)]
struct IngestParams {
    #[serde(default)]
    ack: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct IngestResponse {
    pub accepted: usize,
    pub rejected: usize,
    pub errors: Vec<LineReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
}

async fn ingest(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(stream): Path<String>,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let stream = StreamName::new(&stream).map_err(|e| ApiError::bad_request("invalid_stream", e.to_string()))?;
    authorize(&principal, Scope::Ingest, Some(&stream))?;
    let ack = match params.ack.as_deref() {
        None | Some("wal") => Ack::Wal,
        Some("commit") => Ack::Commit,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("ack={other:?}: use ack=wal or ack=commit"),
            ));
        }
    };
    let format = body::format_from_content_type(header_str(&headers, header::CONTENT_TYPE)?)?;
    let encoding = Encoding::from_header(header_str(&headers, header::CONTENT_ENCODING)?)?;
    check_backpressure(&state)?;
    let raw = read_ingest_body(&state, &principal, &headers, body).await?;
    let max_decoded = state.body_limits.max_decoded_bytes;
    let received = time::now_micros();
    let keep_body = state.raw_streams.iter().any(|p| logyard_auth::glob_match(p, stream.as_str())).then(|| {
        let header = |name| header_str(&headers, name).ok().flatten().map(str::to_owned);
        (raw.clone(), header(header::CONTENT_TYPE), header(header::CONTENT_ENCODING))
    });
    let parsed = blocking(move || {
        let decoded = body::decode(raw, encoding, max_decoded)?;
        Ok::<_, logyard_ingest::IngestError>((decoded.len(), parse::parse_body(&decoded, format, received)))
    })
    .await??;
    let (decoded_len, parsed) = parsed;
    let metrics = state.ingestor.metrics();
    metrics.rejected(stream.as_str(), parsed.rejected);
    if parsed.accepted == 0 {
        let (code, message) = if parsed.rejected == 0 {
            ("empty_body", "the body holds no events".to_owned())
        } else {
            ("no_valid_events", format!("all {} events were rejected; see errors", parsed.rejected))
        };
        let body = IngestResponse {
            accepted: 0,
            rejected: parsed.rejected,
            errors: parsed.errors,
            error: Some(serde_json::json!({"code": code, "message": message})),
        };
        return Ok((StatusCode::BAD_REQUEST, Json(body)).into_response());
    }
    let accepted = parsed.accepted;
    let raw = keep_body.map(|(body, content_type, content_encoding)| RawPayload {
        meta: RawMeta {
            received,
            content_type,
            content_encoding,
            accepted: accepted as u64,
            rejected: parsed.rejected as u64,
        },
        body,
    });
    state.ingestor.append_with_raw(&stream, parsed.events.finish(), raw, ack).await?;
    metrics.accepted(stream.as_str(), accepted, decoded_len);
    Ok(Json(IngestResponse { accepted, rejected: parsed.rejected, errors: parsed.errors, error: None }).into_response())
}

async fn flush(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    client: Option<axum::Extension<ClientIp>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&principal, Scope::Admin, None)?;
    audit(&state.ingestor, &principal.name, client.map(|c| c.0), "flush", serde_json::json!({})).await?;
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

async fn query(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&principal, Scope::Query, None)?;
    let Some(slot) = state.limits.query_slot() else {
        state.http_metrics.limited("concurrent_queries");
        return Err(ApiError::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_queries",
            format!("{} queries are already running; retry later", state.limits.settings.max_concurrent_queries),
            1,
        ));
    };
    let raw = read_body(&headers, body, 1 << 20).await?;
    let request: QueryRequest = serde_json::from_slice(&raw).map_err(|e| {
        ApiError::bad_request(
            "invalid_request",
            format!("the body must be {{\"sql\": \"...\", \"format\": \"json\"}}: {e}"),
        )
    })?;
    let format: Format = match request.format.as_deref() {
        None => Format::Json,
        Some(f) => f.parse().map_err(|m: String| ApiError::bad_request("invalid_request", m))?,
    };
    let started = Instant::now();
    let result = async {
        let visible = move |stream: &str| principal.may_see(stream);
        let running = state.query.execute_visible(&request.sql, &visible).await?;
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

async fn list_streams(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&principal, Scope::Query, None)?;
    let names = state.storage.list_streams().await?;
    let mut streams = Vec::with_capacity(names.len());
    for name in names.into_iter().filter(|n| principal.may_see(n.as_str())) {
        if let Some(info) = state.query.tables().info(&name).await? {
            streams.push(info);
        }
    }
    Ok(Json(serde_json::json!({ "streams": streams })))
}

async fn get_stream(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(stream): Path<String>,
) -> Result<Response, ApiError> {
    let stream = StreamName::new(&stream).map_err(|e| ApiError::bad_request("invalid_stream", e.to_string()))?;
    authorize(&principal, Scope::Query, Some(&stream))?;
    match state.query.tables().info(&stream).await? {
        Some(info) => Ok(Json(info).into_response()),
        None => Err(ApiError::not_found(format!("stream {stream} has no table yet"))),
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
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

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let m = state.ingestor.metrics();
    m.wal_bytes.set(state.ingestor.wal_bytes() as i64);
    m.buffered_bytes.set(state.ingestor.buffered_bytes() as i64);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &state.registry)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], out).into_response())
}
