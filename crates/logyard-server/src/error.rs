//! The one place where errors become HTTP statuses.
//!
//! Every error body is `{"error": {"code": "...", "message": "..."}}`. A failure the client
//! did not cause is a 5xx; only what the client can fix is a 4xx.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use logyard_ingest::IngestError;
use logyard_query::QueryError;
use logyard_storage::StorageError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429 and 503 answers).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    /// A 429 or 503 that tells the client when to come back.
    pub fn retry_later(status: StatusCode, code: &'static str, message: impl Into<String>, seconds: u64) -> Self {
        Self { status, code, message: message.into(), retry_after: Some(seconds.max(1)) }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn internal(code: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::error!(code, error = %message, "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::UnsupportedMediaType(m) => {
                ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", m)
            }
            IngestError::TooLarge(m) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m),
            IngestError::BadEncoding(m) => ApiError::bad_request("bad_encoding", m),
            IngestError::CommitTimeout(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "commit_timeout", e.to_string())
            }
            IngestError::Busy(_) => ApiError::retry_later(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string(), 5),
            IngestError::ShuttingDown => {
                ApiError::retry_later(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", e.to_string(), 1)
            }
            IngestError::Wal(_) => ApiError::internal("wal_error", e.to_string()),
            IngestError::Storage(_) => ApiError::internal("storage_error", e.to_string()),
            IngestError::Core(_) => ApiError::internal("internal", e.to_string()),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::ReadOnly(m) => ApiError::bad_request("read_only", m),
            QueryError::InvalidSql(m) => ApiError::bad_request("invalid_sql", m),
            QueryError::Timeout(_) => ApiError::bad_request("query_timeout", e.to_string()),
            QueryError::MemoryLimit(_) => ApiError::bad_request("query_memory_limit", e.to_string()),
            QueryError::Execution(_) => ApiError::internal("query_failed", e.to_string()),
            QueryError::Storage(_) => ApiError::internal("storage_error", e.to_string()),
            QueryError::Encode(_) => ApiError::internal("encode_error", e.to_string()),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        ApiError::internal("storage_error", e.to_string())
    }
}
