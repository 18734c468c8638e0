//! The one intake: every ingest request, whatever its protocol, goes
//! read → decode → authorize → append → count here. A protocol module only builds its
//! [`Decoder`] from the request and writes the answer from what [`take`] returns.
//!
//! - **Read**: the body within `server.max_body_bytes` and the token's byte rate; refused
//!   with 503 while the write-ahead log is over its budget (backpressure).
//! - **Decode**: decompression (bounded by `server.max_decoded_bytes`) and the protocol's
//!   decoder, on a blocking thread.
//! - **Authorize**: once for every protocol, per stream: a token without the ingest scope is
//!   refused as a whole (403); the events of a stream the token may not write are refused
//!   ([`Taken::refused`]) and the other streams are taken. The protocol answers that per
//!   item where it has per-item answers (bulk items, OTLP partial success), else as a 403.
//! - **Append**: every taken stream's events in one write-ahead-log group commit, so a
//!   request is durable as a whole or not at all; the request body rides along when the
//!   request's one stream keeps bodies (`archive.raw_streams`). An `ack=commit` request is
//!   announced to the flusher from decode to append, so that a commit due meanwhile takes it
//!   too ([`logyard_ingest::Ingestor::announce`]).
//! - **Count**: `logyard_ingested_events_total` and `logyard_ingested_bytes_total` (the JSON
//!   text of accepted events) once durable, `logyard_rejected_events_total` for what was not
//!   taken, all labelled by stream and protocol.

use axum::body::Body;
use axum::http::{HeaderMap, header};

use logyard_auth::{Principal, Scope};
use logyard_core::{ErrorKind, StreamName, time};
use logyard_ingest::raw::{RawMeta, RawPayload};
use logyard_ingest::{Ack, Append};
use logyard_protocols::body::{self, Encoding};
use logyard_protocols::{Decoder, Rejected, RowsSchema};

use crate::body::{header_str, read_body};
use crate::error::ApiError;
use crate::state::AppState;

/// Where a request's events come from.
pub(crate) enum Payload {
    /// An HTTP body, to read and decode.
    Http { headers: HeaderMap, body: Body },
    /// A message the transport decoded already (OTLP/gRPC), of `bytes` bytes; the decoder
    /// holds it.
    Decoded { bytes: usize },
}

/// The events of a stream the token may not write.
#[derive(Debug)]
pub(crate) struct Refused {
    pub stream: StreamName,
    pub events: usize,
    pub message: String,
}

/// What the intake did with a request.
#[derive(Debug)]
pub(crate) struct Taken<I> {
    /// What the protocol's answer needs (its decoder's items).
    pub items: I,
    /// Events made durable.
    pub accepted: usize,
    /// Items that could not be made events.
    pub rejected: Rejected,
    /// Streams refused to the token.
    pub refused: Vec<Refused>,
}

impl<I> Taken<I> {
    /// Events not taken: rejected or refused.
    pub fn not_taken(&self) -> usize {
        self.rejected.total() + self.refused.iter().map(|r| r.events).sum::<usize>()
    }

    /// Why the first event was not taken: a refusal first, else a rejection.
    pub fn first_problem(&self) -> Option<String> {
        self.refused.first().map(|r| r.message.clone()).or_else(|| self.rejected.first.clone())
    }

    /// The refusal of `stream`, if it was refused.
    pub fn refusal(&self, stream: &StreamName) -> Option<&Refused> {
        self.refused.iter().find(|r| &r.stream == stream)
    }

    /// A 403 naming every refused stream, if any was, and what was taken of the others.
    pub fn refusal_error(&self) -> Option<ApiError> {
        let first = self.refused.first()?;
        let events = self.refused.iter().map(|r| r.events).sum::<usize>();
        let mut message = if self.refused.len() == 1 {
            format!("{}: {events} events refused", first.message)
        } else {
            let names: Vec<&str> = self.refused.iter().map(|r| r.stream.as_str()).collect();
            format!("{events} events refused: the token may not write streams {}", names.join(", "))
        };
        if self.accepted > 0 {
            message.push_str(&format!("; {} events of other streams were taken", self.accepted));
        }
        Some(ApiError::forbidden(message))
    }
}

/// 403 unless the caller holds `scope` (and may use `stream`, when given).
pub(crate) fn authorize(principal: &Principal, scope: Scope, stream: Option<&StreamName>) -> Result<(), ApiError> {
    if !principal.has(scope) {
        return Err(ApiError::forbidden(format!(
            "token {:?} does not have the {} scope",
            principal.name,
            scope.as_str()
        )));
    }
    if let Some(stream) = stream
        && !principal.may_see(stream.as_str())
    {
        return Err(ApiError::forbidden(refusal(principal, stream)));
    }
    Ok(())
}

fn refusal(principal: &Principal, stream: &StreamName) -> String {
    format!("token {:?} may not use stream {stream}", principal.name)
}

/// Runs work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        ApiError::new(ErrorKind::Internal, "internal", format!("{what} stopped: {}", logyard_core::error_chain(&e)))
    })
}

/// Refuses ingest (503) while the write-ahead log holds more than its budget.
fn check_backpressure(state: &AppState) -> Result<(), ApiError> {
    let Some(pressure) = state.ingestor.backpressure() else { return Ok(()) };
    state.http_metrics.limited("backpressure");
    Err(ApiError::retry_later(
        ErrorKind::Unavailable,
        "backpressure",
        format!(
            "{} bytes wait in the write-ahead log, above its budget of {} bytes, until the storage takes them; retry later",
            pressure.wal_bytes, pressure.budget
        ),
        5,
    ))
}

/// Counts `bytes` of a request against the token's byte rate (429 past it).
fn check_byte_rate(state: &AppState, principal: &Principal, bytes: usize) -> Result<(), ApiError> {
    let Err(retry) = state.limits.check_bytes(&principal.name, bytes) else { return Ok(()) };
    state.http_metrics.limited("byte_rate");
    Err(ApiError::retry_later(
        ErrorKind::TooManyRequests,
        "rate_limited",
        format!(
            "token {:?} sends more than {} bytes per second",
            principal.name, state.limits.settings.bytes_per_second
        ),
        retry.seconds(),
    ))
}

/// The body as sent, with what the archive keeps of the request.
struct Sent {
    body: axum::body::Bytes,
    content_type: Option<String>,
    content_encoding: Option<String>,
}

/// A stream's masking rules, applied on the decoding thread so that nothing unmasked is
/// written (`[[masking.rules]]`).
struct Masking {
    rules: std::sync::Arc<logyard_core::mask::Masking>,
    metrics: logyard_ingest::IngestMetrics,
}

impl Masking {
    fn of(state: &AppState) -> Self {
        Masking { rules: state.ingestor.masking().clone(), metrics: state.ingestor.metrics().clone() }
    }

    fn apply<I>(self, mut decoded: logyard_protocols::Decoded<I>) -> Result<logyard_protocols::Decoded<I>, ApiError> {
        if !self.rules.is_empty() {
            for (stream, events) in decoded.streams.iter_mut() {
                let Some(masker) = self.rules.for_stream(stream.as_str()) else { continue };
                // The rows built while decoding hold what masking changes.
                decoded.rows.remove(stream);
                let taken = std::mem::take(events);
                *events = logyard_ingest::mask_events(&masker, stream.as_str(), taken, &self.metrics)?;
            }
        }
        Ok(decoded)
    }
}

/// What the archive keeps of a masked stream's request: its events after masking, as NDJSON
/// (the body as sent would hold what masking removed).
fn masked_body(mut meta: RawMeta, events: &logyard_core::encoded::EventsEncoder) -> Result<RawPayload, ApiError> {
    let mut body = Vec::with_capacity(events.text_bytes() + events.len());
    for event in logyard_core::encoded::decode_events(events.as_bytes()) {
        let event = event.map_err(|e| ApiError::new(ErrorKind::Internal, "internal", format!("masked events: {e}")))?;
        body.extend_from_slice(event.text.as_bytes());
        body.push(b'\n');
    }
    meta.content_type = Some("application/x-ndjson".into());
    meta.content_encoding = None;
    Ok(RawPayload { meta, body: body.into() })
}

/// What decoders build their streams' rows against as they read the events: each stream's
/// schema as its last flush built it ([`logyard_ingest::Ingestor::rows_schema`]).
pub(crate) fn rows_schema(state: &AppState) -> RowsSchema {
    let ingestor = state.ingestor.clone();
    RowsSchema(std::sync::Arc::new(move |stream| ingestor.rows_schema(stream)))
}

/// Takes a request: see the module documentation.
pub(crate) async fn take<D: Decoder>(
    state: &AppState,
    principal: &Principal,
    payload: Payload,
    decoder: D,
    ack: Ack,
) -> Result<Taken<D::Items>, ApiError> {
    authorize(principal, Scope::Ingest, None)?;
    check_backpressure(state)?;
    let received = time::now_micros();
    let (mut decoded, sent, announced) = match payload {
        Payload::Http { headers, body } => {
            let encoding = Encoding::from_header(header_str(&headers, header::CONTENT_ENCODING.as_str())?)?;
            let raw = read_body(&headers, body, state.body_limits.max_body_bytes).await?;
            check_byte_rate(state, principal, raw.len())?;
            // From here the request is this process's work alone (no network): a commit that
            // falls due may wait for it.
            let announced = state.ingestor.announce(ack);
            let text = |name: header::HeaderName| header_str(&headers, name.as_str()).ok().flatten().map(str::to_owned);
            let sent = Sent {
                body: raw.clone(),
                content_type: text(header::CONTENT_TYPE),
                content_encoding: text(header::CONTENT_ENCODING),
            };
            let max_decoded = state.body_limits.max_decoded_bytes;
            let masking = Masking::of(state);
            let decoded = blocking("decoding a request", move || {
                let body = body::decode(raw, encoding, max_decoded)?;
                masking.apply(decoder.decode(&body, received)?)
            })
            .await??;
            (decoded, Some(sent), announced)
        }
        Payload::Decoded { bytes } => {
            check_byte_rate(state, principal, bytes)?;
            let announced = state.ingestor.announce(ack);
            let masking = Masking::of(state);
            let decoded =
                blocking("decoding a request", move || masking.apply(decoder.decode(&[], received)?)).await??;
            (decoded, None, announced)
        }
    };

    let metrics = state.ingestor.metrics();
    let protocol = D::PROTOCOL;
    for (stream, count) in &decoded.rejected.by_stream {
        metrics.rejected(stream.as_ref().map(StreamName::as_str), protocol, *count);
    }
    let one_stream = decoded.streams.len() == 1;
    let rejected_total = decoded.rejected.total();
    let mut refused = Vec::new();
    let mut appends = Vec::with_capacity(decoded.streams.len());
    let mut counts = Vec::with_capacity(decoded.streams.len());
    for (stream, events) in decoded.streams {
        if !principal.may_see(stream.as_str()) {
            metrics.rejected(Some(stream.as_str()), protocol, events.len());
            refused.push(Refused { message: refusal(principal, &stream), stream, events: events.len() });
            continue;
        }
        counts.push((stream.clone(), events.len(), events.text_bytes()));
        let raw = match &sent {
            Some(sent) if one_stream && state.keeps_bodies(&stream) => {
                let meta = RawMeta {
                    received,
                    content_type: sent.content_type.clone(),
                    content_encoding: sent.content_encoding.clone(),
                    accepted: events.len() as u64,
                    rejected: rejected_total as u64,
                };
                Some(if !state.ingestor.masking().archives_originals(stream.as_str()) {
                    masked_body(meta, &events)?
                } else {
                    RawPayload { meta, body: sent.body.clone() }
                })
            }
            _ => None,
        };
        let prepared = decoded.rows.remove(&stream);
        appends.push(Append { stream, events: events.finish(), raw, prepared });
    }
    if !appends.is_empty() {
        state.ingestor.append_all(appends, ack, announced).await?;
    }
    let mut accepted = 0;
    for (stream, events, bytes) in counts {
        metrics.accepted(stream.as_str(), protocol, events, bytes);
        accepted += events;
    }
    Ok(Taken { items: decoded.items, accepted, rejected: decoded.rejected, refused })
}
