//! Prometheus metrics of the write path.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use logyard_protocols::Protocol;

/// The labels of the ingest counters: the stream, and the protocol the events came by.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub stream: String,
    pub protocol: String,
}

/// The labels of the masking counter: the stream, and the kind of value masked.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MaskLabels {
    pub stream: String,
    pub kind: String,
}

/// The `stream` label of items that named no valid stream.
pub const NO_STREAM: &str = "_invalid";

#[derive(Debug, Clone)]
pub struct IngestMetrics {
    pub events: Family<StreamLabels, Counter>,
    pub bytes: Family<StreamLabels, Counter>,
    pub rejected: Family<StreamLabels, Counter>,
    pub masked: Family<MaskLabels, Counter>,
    pub wal_bytes: Gauge,
    pub wal_budget: Gauge,
    pub backpressure: Gauge,
    pub buffered_bytes: Gauge,
    pub flush_seconds: Histogram,
    pub build_seconds: Histogram,
    pub flushed_rows: Counter,
    /// Of the committed rows, those whose columns were built as their request (or Kinesis
    /// records) were read.
    pub rows_built_at_request: Counter,
    pub flush_errors: Counter,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        Self {
            events: Family::default(),
            bytes: Family::default(),
            rejected: Family::default(),
            masked: Family::default(),
            wal_bytes: Gauge::default(),
            wal_budget: Gauge::default(),
            backpressure: Gauge::default(),
            buffered_bytes: Gauge::default(),
            flush_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            build_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            flushed_rows: Counter::default(),
            rows_built_at_request: Counter::default(),
            flush_errors: Counter::default(),
        }
    }
}

impl IngestMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register("logyard_ingested_events", "Events accepted (durable), by stream and protocol", self.events.clone());
        r.register(
            "logyard_ingested_bytes",
            "Bytes of the JSON text of accepted events, by stream and protocol",
            self.bytes.clone(),
        );
        r.register(
            "logyard_rejected_events",
            "Events not taken (unreadable, or for a stream the token may not write), by stream and protocol",
            self.rejected.clone(),
        );
        r.register(
            "logyard_masked_values",
            "Values masked at ingest, by stream and kind (email, phone, ip, card, ..., custom)",
            self.masked.clone(),
        );
        r.register("logyard_wal_bytes", "Bytes of write-ahead log on disk", self.wal_bytes.clone());
        r.register(
            "logyard_buffered_bytes",
            "Bytes of events durable but not yet committed",
            self.buffered_bytes.clone(),
        );
        r.register(
            "logyard_flush_duration_seconds",
            "Time to build and commit one stream's buffer",
            self.flush_seconds.clone(),
        );
        r.register(
            "logyard_flush_build_duration_seconds",
            "Time to build one flush's rows, before they are written and committed",
            self.build_seconds.clone(),
        );
        r.register("logyard_committed_rows", "Rows committed to tables", self.flushed_rows.clone());
        r.register(
            "logyard_committed_rows_built_at_request",
            "Committed rows whose columns were built as their request or Kinesis records were read (the others were built from the events at the flush)",
            self.rows_built_at_request.clone(),
        );
        r.register("logyard_flush_errors", "Failed flush attempts (retried)", self.flush_errors.clone());
        r.register(
            "logyard_wal_budget_bytes",
            "Write-ahead log bytes allowed before ingest is refused",
            self.wal_budget.clone(),
        );
        r.register(
            "logyard_backpressure",
            "1 while ingest is refused because the write-ahead log passed its budget",
            self.backpressure.clone(),
        );
    }

    pub fn observe_flush(&self, took: Duration, rows: usize) {
        self.flush_seconds.observe(took.as_secs_f64());
        self.flushed_rows.inc_by(rows as u64);
    }

    /// Counts events made durable: how many, and the bytes of their JSON text.
    pub fn accepted(&self, stream: &str, protocol: Protocol, events: usize, bytes: usize) {
        let labels = StreamLabels { stream: stream.to_owned(), protocol: protocol.as_str().to_owned() };
        self.events.get_or_create(&labels).inc_by(events as u64);
        self.bytes.get_or_create(&labels).inc_by(bytes as u64);
    }

    /// Counts what masking found in a stream's events.
    pub fn masked(&self, stream: &str, counts: &logyard_core::mask::MaskCounts) {
        for (slot, &n) in counts.iter().enumerate() {
            if n > 0 {
                let labels =
                    MaskLabels { stream: stream.to_owned(), kind: logyard_core::mask::count_name(slot).to_owned() };
                self.masked.get_or_create(&labels).inc_by(n as u64);
            }
        }
    }

    /// Counts events not taken; `None` for items that named no valid stream.
    pub fn rejected(&self, stream: Option<&str>, protocol: Protocol, events: usize) {
        if events > 0 {
            let labels =
                StreamLabels { stream: stream.unwrap_or(NO_STREAM).to_owned(), protocol: protocol.as_str().to_owned() };
            self.rejected.get_or_create(&labels).inc_by(events as u64);
        }
    }
}
