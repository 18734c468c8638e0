//! Each request's span, continued from the trace its caller started.
//!
//! The ALB adds `X-Amzn-Trace-Id`; OpenTelemetry clients send W3C `traceparent`. Either is
//! read (W3C first), so a request's spans join its caller's trace. The trace id is recorded
//! on the span as `trace_id`, which the JSON log lines carry, whether or not spans are
//! exported.

use std::sync::LazyLock;

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_aws::trace::XrayPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static PROPAGATOR: LazyLock<TextMapCompositePropagator> = LazyLock::new(propagator);

/// The W3C and X-Ray propagators, for processes that export spans.
pub fn propagator() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![Box::new(TraceContextPropagator::new()), Box::new(XrayPropagator::new())])
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` a child of the trace named in `headers`, and records its trace id (the
/// caller's, or the span's own when spans are exported) in its `trace_id` field.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    let parent = PROPAGATOR.extract(&Headers(headers));
    let incoming = parent.span().span_context().clone();
    if incoming.is_valid() {
        // Without an exporter there is no OpenTelemetry layer, and nothing to attach to.
        let _ = span.set_parent(parent);
    }
    let own = span.context().span().span_context().trace_id();
    let trace_id = if own != opentelemetry::trace::TraceId::INVALID { own } else { incoming.trace_id() };
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traced(headers: &[(&str, &str)]) -> Option<String> {
        use tracing_subscriber::layer::SubscriberExt;
        let captured = std::sync::Arc::new(std::sync::Mutex::new(None));
        let subscriber = tracing_subscriber::registry().with(Capture(captured.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", trace_id = tracing::field::Empty);
            let mut map = HeaderMap::new();
            for (k, v) in headers {
                map.insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
            }
            continue_trace(&span, &map);
        });
        captured.lock().unwrap().clone()
    }

    struct Capture(std::sync::Arc<std::sync::Mutex<Option<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
        fn on_record(
            &self,
            _: &tracing::span::Id,
            values: &tracing::span::Record<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct V<'a>(&'a std::sync::Mutex<Option<String>>);
            impl tracing::field::Visit for V<'_> {
                fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                    if field.name() == "trace_id" {
                        *self.0.lock().unwrap() = Some(format!("{value:?}"));
                    }
                }
            }
            values.record(&mut V(&self.0));
        }
    }

    #[test]
    fn the_callers_trace_id_is_kept_from_either_header() {
        let xray = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        assert_eq!(traced(&[("x-amzn-trace-id", xray)]).as_deref(), Some("5759e988bd862e3fe1be46a994272793"));
        let w3c = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert_eq!(traced(&[("traceparent", w3c)]).as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!(traced(&[("x-amzn-trace-id", "Root=garbage")]), None);
        assert_eq!(traced(&[]), None);
    }
}
