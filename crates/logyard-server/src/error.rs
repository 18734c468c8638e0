//! The one place where errors become answers.
//!
//! Every library error knows its [`ErrorKind`] and code (`logyard_core::ServiceError`);
//! [`ApiError`] carries them to the edge, and [`status`] is the only map from kinds to HTTP
//! statuses (and [`grpc_code`] to gRPC codes). Each ingest protocol writes errors in the
//! form its clients read ([`Form`]): logyard's `{"error": {"code", "message"}}`,
//! Elasticsearch's, Firehose's, OTLP's `google.rpc.Status`, Loki's plain text. A failure the
//! client did not cause is a 5xx, and every 500 is logged with its cause.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost::Message;
use serde_json::json;

use logyard_core::{ErrorKind, ServiceError, error_chain, time};

/// An error on its way to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ErrorKind,
    /// A short stable name clients can match on.
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

/// The HTTP status of a kind of failure: the only such map.
pub fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        // Understood, but it needs more than a limit allows: retrying it will not help.
        ErrorKind::LimitExceeded => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        // The server gave up waiting for its own work (a query past `query.timeout`).
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
    }
}

/// The gRPC code of a kind: what OTLP clients retry (Unavailable, ResourceExhausted) and
/// what they drop.
pub fn grpc_code(kind: ErrorKind) -> tonic::Code {
    match kind {
        ErrorKind::BadRequest | ErrorKind::TooLarge | ErrorKind::UnsupportedMediaType => tonic::Code::InvalidArgument,
        ErrorKind::Unauthorized => tonic::Code::Unauthenticated,
        ErrorKind::Forbidden => tonic::Code::PermissionDenied,
        ErrorKind::NotFound => tonic::Code::NotFound,
        ErrorKind::Conflict | ErrorKind::PreconditionFailed => tonic::Code::FailedPrecondition,
        ErrorKind::TooManyRequests | ErrorKind::LimitExceeded => tonic::Code::ResourceExhausted,
        ErrorKind::Timeout => tonic::Code::DeadlineExceeded,
        ErrorKind::Internal => tonic::Code::Internal,
        ErrorKind::Unavailable => tonic::Code::Unavailable,
    }
}

impl ApiError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self { kind, code, message: message.into(), retry_after: None }
    }

    /// A 429 or 503 that tells the client when to come back.
    pub fn retry_later(kind: ErrorKind, code: &'static str, message: impl Into<String>, seconds: u64) -> Self {
        Self { kind, code, message: message.into(), retry_after: Some(seconds.max(1)) }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, "not_found", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, "forbidden", message)
    }

    pub fn status(&self) -> StatusCode {
        status(self.kind)
    }

    /// Logs a failure that is not the client's: every 500 leaves a line with its cause.
    fn log(&self) {
        if self.kind == ErrorKind::Internal {
            tracing::error!(code = self.code, error = %self.message, "request failed");
        }
    }

    /// The answer in the form `form`'s clients read.
    pub fn into_response_as(self, form: Form) -> Response {
        self.log();
        let status = self.status();
        let mut response = match form {
            Form::Json => {
                (status, Json(json!({"error": {"code": self.code, "message": self.message}}))).into_response()
            }
            Form::Elastic => {
                // Elasticsearch's exception names; 503s (backpressure) become 429s, which every
                // client retries.
                let kind = match self.kind {
                    _ if self.code.ends_with("_exception") => self.code,
                    ErrorKind::TooManyRequests | ErrorKind::Unavailable => "es_rejected_execution_exception",
                    ErrorKind::TooLarge => "content_too_long_exception",
                    ErrorKind::Unauthorized | ErrorKind::Forbidden => "security_exception",
                    ErrorKind::BadRequest | ErrorKind::UnsupportedMediaType => "parse_exception",
                    _ => "exception",
                };
                let status =
                    if status == StatusCode::SERVICE_UNAVAILABLE { StatusCode::TOO_MANY_REQUESTS } else { status };
                elastic_error(status, kind, &self.message)
            }
            Form::Firehose { request_id } => firehose_answer(status, &request_id, Some(&self.message)),
            Form::Otlp { json: true } => {
                let code = grpc_code(self.kind) as i32;
                (status, Json(json!({"code": code, "message": self.message}))).into_response()
            }
            Form::Otlp { json: false } => {
                let rpc = RpcStatus { code: grpc_code(self.kind) as i32, message: self.message };
                protobuf(status, rpc.encode_to_vec())
            }
            Form::Loki => (status, format!("{}\n", self.message)).into_response(),
        };
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }

    /// The gRPC status of the error.
    pub fn into_grpc(self) -> tonic::Status {
        self.log();
        tonic::Status::new(grpc_code(self.kind), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_response_as(Form::Json)
    }
}

impl<E: ServiceError> From<E> for ApiError {
    fn from(e: E) -> Self {
        let kind = e.kind();
        // A client error's own message is what it needs; an internal one carries its causes.
        let message = if kind == ErrorKind::Internal { error_chain(&e) } else { e.to_string() };
        Self { kind, code: e.code(), message, retry_after: e.retry_after() }
    }
}

/// The forms errors take, by the protocol a client speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    /// logyard's own: `{"error": {"code", "message"}}`.
    Json,
    /// Elasticsearch's: `{"error": {"root_cause", "type", "reason"}, "status"}`.
    Elastic,
    /// Firehose's: `{"requestId", "timestamp", "errorMessage"}`.
    Firehose { request_id: String },
    /// OTLP/HTTP's `google.rpc.Status`, in the request's encoding.
    Otlp { json: bool },
    /// Loki's plain text.
    Loki,
}

/// Answers carry this so that the official Elasticsearch clients accept them.
const ELASTIC_PRODUCT: (&str, &str) = ("x-elastic-product", "Elasticsearch");

/// An Elasticsearch answer.
pub fn elastic_answer(status: StatusCode, body: serde_json::Value) -> Response {
    elastic_product((status, Json(body)).into_response())
}

/// Marks an answer as Elasticsearch's.
pub fn elastic_product(mut response: Response) -> Response {
    response.headers_mut().insert(ELASTIC_PRODUCT.0, HeaderValue::from_static(ELASTIC_PRODUCT.1));
    response
}

/// An error as Elasticsearch writes one.
pub fn elastic_error(status: StatusCode, kind: &str, reason: &str) -> Response {
    let cause = json!({"type": kind, "reason": reason});
    elastic_answer(
        status,
        json!({"error": {"root_cause": [cause], "type": kind, "reason": reason}, "status": status.as_u16()}),
    )
}

/// An answer in Firehose's form.
pub fn firehose_answer(status: StatusCode, request_id: &str, error: Option<&str>) -> Response {
    let timestamp = time::now_micros() / 1000;
    let body = match error {
        None => json!({"requestId": request_id, "timestamp": timestamp}),
        Some(message) => json!({"requestId": request_id, "timestamp": timestamp, "errorMessage": message}),
    };
    (status, Json(body)).into_response()
}

/// A protobuf answer.
pub fn protobuf(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
    r
}

/// The `google.rpc.Status` message (without details).
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Broken(#[source] std::io::Error);

    impl ServiceError for Broken {
        fn kind(&self) -> ErrorKind {
            ErrorKind::Internal
        }
        fn code(&self) -> &'static str {
            "broken"
        }
    }

    #[test]
    fn an_internal_error_carries_its_causes_and_is_a_500_in_every_form() {
        let e = ApiError::from(Broken(std::io::Error::other("disk full")));
        assert_eq!(
            (e.status(), e.code, e.message.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, "broken", "outer: disk full")
        );
        for form in [Form::Json, Form::Loki, Form::Otlp { json: true }, Form::Firehose { request_id: "r".into() }] {
            assert_eq!(e.clone().into_response_as(form).status(), StatusCode::INTERNAL_SERVER_ERROR);
        }
        assert_eq!(e.into_grpc().code(), tonic::Code::Internal);
    }

    #[test]
    fn elasticsearch_clients_get_429_for_503_and_exception_names() {
        let busy = ApiError::retry_later(ErrorKind::Unavailable, "backpressure", "later", 5);
        let r = busy.into_response_as(Form::Elastic);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        assert_eq!(r.headers()["x-elastic-product"], "Elasticsearch");
    }

    #[test]
    fn query_limits_are_not_client_mistakes() {
        assert_eq!(status(ErrorKind::Timeout), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(status(ErrorKind::LimitExceeded), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
