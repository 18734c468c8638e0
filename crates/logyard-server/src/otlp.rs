//! OTLP logs: `POST /v1/logs` (OTLP/HTTP, protobuf or JSON, gzip) and the OTLP/gRPC
//! `LogsService/Export` on a port of its own. Records become events (see
//! `logyard_ingest::otlp`), durable before the answer; records that cannot be taken are
//! reported the OTLP way, in `partial_success.rejected_log_records`.
//!
//! The stream: the `X-Logyard-Stream` header (gRPC metadata `x-logyard-stream`) when given,
//! else the configured attribute's value, else the default stream.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;

use logyard_auth::{Principal, Scope};
use logyard_core::{StreamName, time};
use logyard_ingest::Ack;
use logyard_ingest::body::{self, Encoding};
use logyard_ingest::otlp::{decode, parse_request};

use crate::app::{AppState, authorize, blocking, check_backpressure, read_ingest_body};
use crate::error::ApiError;

pub const STREAM_HEADER: &str = "x-logyard-stream";

/// Takes a request's records; the answer to send back.
async fn export(
    state: &AppState,
    principal: &Principal,
    request: ExportLogsServiceRequest,
    stream: Option<&str>,
) -> Result<ExportLogsServiceResponse, ApiError> {
    let stream = stream
        .map(|s| StreamName::new(s).map_err(|e| ApiError::bad_request("invalid_stream", e.to_string())))
        .transpose()?;
    let choice = state.otlp.clone();
    let received = time::now_micros();
    let mut decoded = blocking(move || decode(&request, stream.as_ref(), &choice, received)).await?;
    let metrics = state.ingestor.metrics();
    for (stream, events) in std::mem::take(&mut decoded.streams) {
        if let Err(e) = authorize(principal, Scope::Ingest, Some(&stream)) {
            decoded.reject(events.len(), e.message);
            continue;
        }
        state.ingestor.append_events(&stream, events, Ack::Wal).await?;
    }
    metrics.rejected("otlp", decoded.rejected);
    let partial_success = (decoded.rejected > 0).then(|| ExportLogsPartialSuccess {
        rejected_log_records: decoded.rejected as i64,
        error_message: decoded.first_error.unwrap_or_default(),
    });
    Ok(ExportLogsServiceResponse { partial_success })
}

/// `POST /v1/logs`.
pub async fn http(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim().starts_with("application/json"));
    match http_export(&state, &principal, &headers, body, json).await {
        Ok(answer) if json => axum::Json(answer).into_response(),
        Ok(answer) => protobuf(StatusCode::OK, answer.encode_to_vec()),
        Err(e) => {
            // google.rpc.Status, in the request's encoding.
            let code = grpc_code(e.status);
            let mut response = if json {
                (e.status, axum::Json(serde_json::json!({"code": code as i32, "message": e.message}))).into_response()
            } else {
                let status = RpcStatus { code: code as i32, message: e.message.clone() };
                protobuf(e.status, status.encode_to_vec())
            };
            if let Some(seconds) = e.retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
            }
            response
        }
    }
}

/// The `google.rpc.Status` message (without details).
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn protobuf(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
    r
}

async fn http_export(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    body: Body,
    json: bool,
) -> Result<ExportLogsServiceResponse, ApiError> {
    let encoding = Encoding::from_header(headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()))?;
    check_backpressure(state)?;
    let raw = read_ingest_body(state, principal, headers, body).await?;
    let max_decoded = state.body_limits.max_decoded_bytes;
    let request = blocking(move || {
        let decoded = body::decode(raw, encoding, max_decoded)?;
        Ok::<_, logyard_ingest::IngestError>(parse_request(&decoded, json))
    })
    .await??
    .map_err(|e| ApiError::bad_request("bad_otlp_request", e))?;
    let stream = headers.get(STREAM_HEADER).and_then(|v| v.to_str().ok());
    export(state, principal, request, stream).await
}

/// The OTLP/gRPC logs service.
#[derive(Clone)]
pub struct Grpc {
    state: AppState,
}

impl Grpc {
    pub fn service(state: AppState) -> LogsServiceServer<Grpc> {
        LogsServiceServer::new(Grpc { state })
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// The largest gRPC message (the default HTTP body limit).
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// The gRPC code of an HTTP status: what OTLP clients retry (Unavailable, ResourceExhausted)
/// and what they drop.
fn grpc_code(status: StatusCode) -> tonic::Code {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::InvalidArgument,
        StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
        StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
        StatusCode::TOO_MANY_REQUESTS => tonic::Code::ResourceExhausted,
        _ => tonic::Code::Unavailable,
    }
}

fn status(e: ApiError) -> tonic::Status {
    tonic::Status::new(grpc_code(e.status), e.message)
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let state = &self.state;
        let metadata = request.metadata();
        let principal = if state.auth.required() {
            let header = metadata.get("authorization").map(|v| v.as_bytes());
            state.auth.tokens.current().authenticate(header).map_err(|_| {
                tonic::Status::unauthenticated("a valid token is required: authorization: Bearer <token>")
            })?
        } else {
            Principal::anonymous()
        };
        let stream = metadata.get(STREAM_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        check_backpressure(state).map_err(status)?;
        let answer = export(state, &principal, request.into_inner(), stream.as_deref()).await.map_err(status)?;
        Ok(tonic::Response::new(answer))
    }
}
