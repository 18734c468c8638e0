//! What runs around every request, outermost first: [`observe`] (the client's address, the
//! request's span continued from `traceparent` or `X-Amzn-Trace-Id`, metrics and a log
//! line), [`authenticate`] (a [`Principal`], or 401) and [`admit`] (requests in flight and
//! each token's request rate). Refusals are written in the form the path's clients read.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use logyard_auth::{AuthFailure, Principal};
use logyard_core::ErrorKind;

use crate::client::ClientIp;
use crate::console::wants_html;
use crate::error::{ApiError, Form};
use crate::state::AppState;

/// The header Firehose sends the endpoint's access key in.
pub const FIREHOSE_ACCESS_KEY: &str = "x-amz-firehose-access-key";
/// The header Firehose sends its request id in.
pub const FIREHOSE_REQUEST_ID: &str = "x-amz-firehose-request-id";

/// The form errors of a path take: the protocol its clients speak.
pub(crate) fn form_of(path: &str, headers: &HeaderMap) -> Form {
    if path.starts_with("/api/v1/firehose/") {
        Form::Firehose { request_id: firehose_request_id(headers) }
    } else if matches!(path, "/" | "/_bulk" | "/_license" | "/_cluster/health") || path.ends_with("/_bulk") {
        Form::Elastic
    } else if path == "/v1/logs" {
        Form::Otlp { json: crate::body::is_json(headers) }
    } else if path == "/loki/api/v1/push" {
        Form::Loki
    } else {
        Form::Json
    }
}

pub(crate) fn firehose_request_id(headers: &HeaderMap) -> String {
    headers.get(FIREHOSE_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

pub(crate) async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
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
pub(crate) async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    // An upload's data URL carries its own capability, as a presigned S3 URL does.
    let upload_data = request.method() == Method::PUT
        && path.starts_with("/api/v1/uploads/")
        && (path.ends_with("/data") || path.contains("/parts/"));
    // The console's files are public (the page asks for a token); so is `/` for a browser,
    // which is sent there.
    let console = path == "/ui" || path.starts_with("/ui/") || (path == "/" && wants_html(request.headers()));
    // So does a download link: its ticket was handed out to a token (`downloads`).
    let download = request.method() == Method::GET && path.starts_with("/api/v1/downloads/");
    let open = matches!(path, "/healthz" | "/readyz")
        || (path == "/metrics" && !state.auth.protect_metrics)
        || upload_data
        || download
        || console;
    if open || !state.auth.required() {
        request.extensions_mut().insert(Principal::anonymous());
        return next.run(request).await;
    }
    let tokens = state.auth.tokens.current();
    let firehose = path.starts_with("/api/v1/firehose/");
    let firehose_key = request.headers().get(FIREHOSE_ACCESS_KEY).filter(|_| firehose);
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
            let form = form_of(path, request.headers());
            let mut response = ApiError::new(ErrorKind::Unauthorized, "unauthorized", message).into_response_as(form);
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_str(&challenge).expect("ASCII"));
            response
        }
    }
}

/// Bounds the requests in flight and each token's request rate (after [`authenticate`]).
pub(crate) async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return next.run(request).await;
    }
    let Some(_slot) = state.limits.request_slot() else {
        state.http_metrics.limited("concurrent_requests");
        let limit = state.limits.settings.max_concurrent_requests;
        return ApiError::retry_later(
            ErrorKind::Unavailable,
            "overloaded",
            format!("{limit} requests are already being served; retry later"),
            1,
        )
        .into_response_as(form_of(path, request.headers()));
    };
    let principal = request.extensions().get::<Principal>().map(|p| p.name.clone()).unwrap_or_default();
    if let Err(retry) = state.limits.check_request(&principal) {
        state.http_metrics.limited("request_rate");
        return ApiError::retry_later(
            ErrorKind::TooManyRequests,
            "rate_limited",
            format!(
                "token {principal:?} sends more than {} requests per second",
                state.limits.settings.requests_per_second
            ),
            retry.seconds(),
        )
        .into_response_as(form_of(path, request.headers()));
    }
    next.run(request).await
}
