//! HTTP and query metrics.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone)]
pub struct HttpMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Histogram,
    pub queries: Family<OutcomeLabels, Counter>,
    pub query_seconds: Histogram,
    pub auth_failures: Family<ReasonLabels, Counter>,
    pub limited: Family<ReasonLabels, Counter>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            request_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 18)),
            queries: Family::default(),
            query_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            auth_failures: Family::default(),
            limited: Family::default(),
        }
    }
}

impl HttpMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register("logyard_http_requests", "HTTP requests by route, method and status", self.requests.clone());
        r.register("logyard_http_request_duration_seconds", "HTTP request durations", self.request_seconds.clone());
        r.register("logyard_queries", "SQL queries by outcome (ok or error)", self.queries.clone());
        r.register(
            "logyard_auth_failures",
            "Requests refused for authentication, by reason (missing, malformed, unknown)",
            self.auth_failures.clone(),
        );
        r.register(
            "logyard_limited_requests",
            "Requests refused by a limit: request_rate, byte_rate, concurrent_requests, concurrent_queries, backpressure",
            self.limited.clone(),
        );
        r.register(
            "logyard_query_duration_seconds",
            "Time to plan a query and produce its first rows",
            self.query_seconds.clone(),
        );
    }

    pub fn limited(&self, reason: &'static str) {
        self.limited.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn observe(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { route: route.to_owned(), method: method.to_owned(), status })
            .inc();
        self.request_seconds.observe(took.as_secs_f64());
    }

    pub fn observe_query(&self, took: Duration, ok: bool) {
        self.queries.get_or_create(&OutcomeLabels { outcome: if ok { "ok" } else { "error" } }).inc();
        self.query_seconds.observe(took.as_secs_f64());
    }
}
