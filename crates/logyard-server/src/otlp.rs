//! OTLP logs: `POST /v1/logs` (OTLP/HTTP, protobuf or JSON, gzip) and the OTLP/gRPC
//! `LogsService/Export` on a port of its own. Records become events (see
//! `logyard_protocols::otlp`) through the intake; records that are not taken are reported
//! the OTLP way, in `partial_success.rejected_log_records`.
//!
//! The stream: the `X-Logyard-Stream` header (gRPC metadata `x-logyard-stream`) when given,
//! else the configured attribute's value, else the default stream.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;

use logyard_auth::Principal;
use logyard_core::ErrorKind;
use logyard_protocols::otlp::{OtlpExport, OtlpHttp};

use crate::body::{STREAM_HEADER, named_stream};
use crate::error::{ApiError, Form, protobuf};
use crate::intake::{self, Payload, Taken};
use crate::state::AppState;

/// The OTLP answer: records not taken are a partial success.
fn answer(taken: &Taken<()>) -> ExportLogsServiceResponse {
    let rejected = taken.not_taken();
    let partial_success = (rejected > 0).then(|| ExportLogsPartialSuccess {
        rejected_log_records: rejected as i64,
        error_message: taken.first_problem().unwrap_or_default(),
    });
    ExportLogsServiceResponse { partial_success }
}

/// `POST /v1/logs`.
pub(crate) async fn http(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let json = crate::body::is_json(&headers);
    let result = async {
        let stream = named_stream(headers.get(STREAM_HEADER).and_then(|v| v.to_str().ok()))?;
        let decoder =
            OtlpHttp { json, stream, choice: state.protocols.otlp.clone(), rows: Some(intake::rows_schema(&state)) };
        intake::take(&state, &principal, Payload::Http { headers, body }, decoder, state.protocols.ack).await
    }
    .await;
    match result {
        Ok(taken) if json => axum::Json(answer(&taken)).into_response(),
        Ok(taken) => protobuf(StatusCode::OK, answer(&taken).encode_to_vec()),
        Err(e) => e.into_response_as(Form::Otlp { json }),
    }
}

/// The OTLP/gRPC logs service.
#[derive(Clone)]
pub struct Grpc {
    state: AppState,
}

impl Grpc {
    pub fn service(state: AppState) -> LogsServiceServer<Grpc> {
        let max = state.body_limits.max_body_bytes;
        LogsServiceServer::new(Grpc { state })
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(max)
    }

    async fn export(&self, request: tonic::Request<ExportLogsServiceRequest>) -> Result<Taken<()>, ApiError> {
        let state = &self.state;
        let metadata = request.metadata();
        let principal = if state.auth.required() {
            let header = metadata.get("authorization").map(|v| v.as_bytes());
            state.auth.tokens.current().authenticate(header).map_err(|_| {
                ApiError::new(
                    ErrorKind::Unauthorized,
                    "unauthorized",
                    "a valid token is required: authorization: Bearer <token>",
                )
            })?
        } else {
            Principal::anonymous()
        };
        let stream = named_stream(metadata.get(STREAM_HEADER).and_then(|v| v.to_str().ok()))?;
        let request = request.into_inner();
        let bytes = request.encoded_len();
        let decoder = OtlpExport {
            request,
            stream,
            choice: state.protocols.otlp.clone(),
            rows: Some(intake::rows_schema(state)),
        };
        intake::take(state, &principal, Payload::Decoded { bytes }, decoder, state.protocols.ack).await
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        match Grpc::export(self, request).await {
            Ok(taken) => Ok(tonic::Response::new(answer(&taken))),
            Err(e) => Err(e.into_grpc()),
        }
    }
}
