//! Logs to stderr (JSON or text) and, when the standard `OTEL_*` variables ask for it, spans
//! exported over OTLP to the ADOT collector or X-Ray's OTLP endpoint.
//!
//! Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set, unless `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. The protocol comes
//! from `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc`, or
//! `http/protobuf` (the default, as the specification says). Sampling (`OTEL_TRACES_SAMPLER`),
//! the service name (`OTEL_SERVICE_NAME`, default `logyard`), batching (`OTEL_BSP_*`),
//! headers and timeouts are read by the OpenTelemetry SDK. Trace ids are X-Ray compatible.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context as _, bail};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, filter};

/// Flushes the spans still buffered when dropped (at the end of `serve`).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: exporting the last spans failed: {e}");
        }
    }
}

/// The OTLP protocol the environment asks for, or `None` when export is off.
fn otlp_protocol(env: &BTreeMap<String, String>) -> anyhow::Result<Option<Protocol>> {
    let get = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || get("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return Ok(None);
    }
    if get("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() && get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none() {
        return Ok(None);
    }
    if let Some(exporter) = get("OTEL_TRACES_EXPORTER")
        && !exporter.eq_ignore_ascii_case("otlp")
    {
        bail!("OTEL_TRACES_EXPORTER={exporter:?} is not supported: use otlp or none");
    }
    match get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or(get("OTEL_EXPORTER_OTLP_PROTOCOL")) {
        None | Some("http/protobuf") => Ok(Some(Protocol::HttpProtobuf)),
        Some("grpc") => Ok(Some(Protocol::Grpc)),
        Some(other) => bail!("OTLP protocol {other:?} is not supported: use grpc or http/protobuf"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// Spans go to OTLP only from logyard's own code: the exporter's HTTP and gRPC clients trace
/// too, and must not feed themselves.
fn exported_targets() -> filter::Targets {
    filter::Targets::new().with_target("logyard", tracing::Level::INFO)
}

/// Sets up logging to stderr and, when configured, span export. Call from within the
/// runtime (the gRPC exporter needs it).
pub fn init(filter: EnvFilter, json: bool, env: &BTreeMap<String, String>) -> anyhow::Result<Telemetry> {
    let protocol = otlp_protocol(env)?;
    let provider = match protocol {
        None => None,
        Some(protocol) => Some(provider(protocol, env)?),
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("logyard"))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_filter(exported_targets())
    });
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .fmt_fields(JsonFields::new())
            .event_format(JsonWithTrace(
                tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
            ))
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed()
    };
    tracing_subscriber::registry().with(filter).with(TraceIds).with(fmt).with(otel).init();
    if let Some(p) = protocol {
        opentelemetry::global::set_text_map_propagator(logyard_server::trace::propagator());
        tracing::info!(protocol = ?p, "exporting spans over OTLP");
    }
    Ok(Telemetry { provider })
}

fn provider(protocol: Protocol, env: &BTreeMap<String, String>) -> anyhow::Result<SdkTracerProvider> {
    let exporter = match protocol {
        Protocol::Grpc => SpanExporter::builder().with_tonic().build(),
        Protocol::HttpProtobuf => {
            let mut builder = SpanExporter::builder().with_http();
            // The builder appends /v1/traces to OTEL_EXPORTER_OTLP_ENDPOINT itself, and uses
            // OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as it is.
            if let Some(endpoint) = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                builder = builder.with_endpoint(endpoint.clone());
            }
            builder.build()
        }
    }
    .context("setting up the OTLP span exporter")?;
    let service = env.get("OTEL_SERVICE_NAME").cloned().unwrap_or_else(|| "logyard".into());
    let resource = Resource::builder()
        .with_service_name(service)
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_id_generator(opentelemetry_aws::trace::XrayIdGenerator::default())
        .with_resource(resource)
        .build())
}

/// The trace id a span recorded in its `trace_id` field, kept for the log lines within it.
#[derive(Clone)]
struct TraceId(String);

/// Keeps each span's `trace_id` field where [`JsonWithTrace`] finds it.
struct TraceIds;

struct TraceIdVisitor(Option<String>);

impl Visit for TraceIdVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "trace_id" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "trace_id" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for TraceIds {
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        let mut visitor = TraceIdVisitor(None);
        attrs.record(&mut visitor);
        if let (Some(trace), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().insert(TraceId(trace));
        }
    }

    fn on_record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        let mut visitor = TraceIdVisitor(None);
        values.record(&mut visitor);
        if let (Some(trace), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().replace(TraceId(trace));
        }
    }
}

/// JSON lines with a top-level `trace_id` when the event happens within a traced request.
struct JsonWithTrace(Format<Json>);

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let trace = ctx
            .event_scope()
            .and_then(|scope| scope.from_root().find_map(|span| span.extensions().get::<TraceId>().cloned()));
        let Some(TraceId(trace)) = trace else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"trace_id\":\"{trace}\",{rest}"),
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn export_follows_the_standard_variables() {
        assert_eq!(otlp_protocol(&env(&[])).unwrap(), None);
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert_eq!(otlp_protocol(&env(&[endpoint])).unwrap(), Some(Protocol::HttpProtobuf));
        assert_eq!(
            otlp_protocol(&env(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).unwrap(),
            Some(Protocol::Grpc)
        );
        assert_eq!(
            otlp_protocol(&env(&[
                endpoint,
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
            ]))
            .unwrap(),
            Some(Protocol::HttpProtobuf)
        );
        assert_eq!(otlp_protocol(&env(&[endpoint, ("OTEL_SDK_DISABLED", "true")])).unwrap(), None);
        assert_eq!(otlp_protocol(&env(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")])).unwrap(), None);
        let err = otlp_protocol(&env(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")])).unwrap_err();
        assert!(err.to_string().contains("http/json"), "{err}");
        let err = otlp_protocol(&env(&[endpoint, ("OTEL_TRACES_EXPORTER", "zipkin")])).unwrap_err();
        assert!(err.to_string().contains("zipkin"), "{err}");
    }
}
