//! Compaction and retention over every stream, for `logyard compact`, `logyard retention
//! run` and the server's schedule. Retention deletions are written to the audit stream.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use logyard_core::StreamName;
use logyard_core::encoded::EventsEncoder;
use logyard_core::time;
use logyard_storage::archive::Archive;
use logyard_storage::maintenance::{CompactReport, DropReport};
use logyard_storage::tables::BuildFn;
use logyard_storage::{StorageError, Tables};

use crate::IngestError;
use crate::build::build_batches;

/// The stream that audit events go to.
pub const AUDIT_STREAM: &str = "logyard-audit";

/// How long each stream's data is kept.
#[derive(Debug, Clone, Default)]
pub struct RetentionPolicy {
    /// Days kept for streams not named below (0: forever).
    pub days: u32,
    /// Days kept per stream (0: forever).
    pub streams: BTreeMap<String, u32>,
    /// Files a deletion leaves behind are deleted once this old, so that queries already
    /// running can finish.
    pub vacuum_keep: Duration,
}

impl RetentionPolicy {
    pub fn days_for(&self, stream: &str) -> u32 {
        self.streams.get(stream).copied().unwrap_or(self.days)
    }
}

/// What retention did to one stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamRetention {
    pub stream: String,
    /// Days before this one were dropped.
    pub cutoff: String,
    pub table: DropReport,
    pub bundles_deleted: Vec<String>,
}

/// What compaction did to one stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamCompaction {
    pub stream: String,
    #[serde(flatten)]
    pub report: CompactReport,
}

/// Compacts every stream (or the ones given), the commits naming `by`; returns the streams
/// where files were merged or indexed.
pub async fn compact_streams(
    tables: &Tables,
    streams: Option<Vec<StreamName>>,
    target_bytes: u64,
    by: &str,
) -> Result<Vec<StreamCompaction>, StorageError> {
    let streams = match streams {
        Some(s) => s,
        None => tables.storage().list_streams().await?,
    };
    let mut out = Vec::new();
    for stream in streams {
        let report = tables.compact(&stream, None, target_bytes, by).await?;
        if report.files_removed > 0 || report.files_indexed > 0 {
            tracing::info!(%stream, partitions = ?report.partitions, removed = report.files_removed, added = report.files_added, indexed = report.files_indexed, "compacted");
            out.push(StreamCompaction { stream: stream.to_string(), report });
        }
    }
    Ok(out)
}

/// Drops the days older than each stream's retention from its table and its archive, and
/// records each deletion in the audit stream as done by `actor`.
pub async fn apply_retention(
    tables: &Arc<Tables>,
    policy: &RetentionPolicy,
    actor: &str,
) -> Result<Vec<StreamRetention>, IngestError> {
    let archive = Archive::new(tables.storage().clone());
    let today = time::now_micros();
    let mut out = Vec::new();
    // One listing of the archive, grouped by stream.
    let mut bundles: BTreeMap<String, Vec<logyard_storage::archive::BundleRef>> = BTreeMap::new();
    for b in archive.list(None).await? {
        bundles.entry(b.stream.clone()).or_default().push(b);
    }
    let mut streams: Vec<String> = tables.storage().list_streams().await?.iter().map(|s| s.to_string()).collect();
    streams.extend(bundles.keys().filter(|s| !streams.contains(s)).cloned().collect::<Vec<_>>());
    for name in streams {
        let days = policy.days_for(&name);
        // The audit stream is kept for ever unless its retention is set by name.
        if days == 0 || (name == AUDIT_STREAM && !policy.streams.contains_key(AUDIT_STREAM)) {
            continue;
        }
        let Ok(stream) = StreamName::new(&name) else { continue };
        let cutoff = time::date_string(today - i64::from(days) * 86_400_000_000);
        let table = tables.drop_before(&stream, &cutoff, policy.vacuum_keep, actor).await?;
        let mut bundles_deleted = Vec::new();
        for bundle in bundles.remove(&name).unwrap_or_default() {
            if bundle.date < cutoff {
                archive.delete(&bundle).await?;
                bundles_deleted.push(bundle.key);
            }
        }
        if table.files_removed > 0 || !bundles_deleted.is_empty() {
            let detail = serde_json::json!({
                "stream": name,
                "retention_days": days,
                "cutoff": cutoff,
                "table_files_removed": table.files_removed,
                "rows_removed": table.rows_removed,
                "bundles_deleted": bundles_deleted,
            });
            audit(tables, actor, "retention", detail).await?;
            tracing::info!(
                stream = name,
                cutoff,
                files = table.files_removed,
                bundles = bundles_deleted.len(),
                "retention applied"
            );
        }
        out.push(StreamRetention { stream: name, cutoff, table, bundles_deleted });
    }
    Ok(out)
}

/// An audit event, encoded: who (`actor`, and the client address when known), what, when.
pub fn audit_event(actor: &str, client: Option<String>, action: &str, detail: serde_json::Value) -> bytes::Bytes {
    let now = time::now_micros();
    let event = serde_json::json!({
        "timestamp": time::rfc3339(now),
        "actor": actor,
        "client": client,
        "action": action,
        "detail": detail,
    });
    let mut events = EventsEncoder::default();
    events.push(now, logyard_core::TimeSource::Received, &event.to_string()).expect("an object");
    events.finish()
}

/// Commits one audit event straight to the audit stream (for processes without a WAL).
pub async fn audit(tables: &Tables, actor: &str, action: &str, detail: serde_json::Value) -> Result<(), StorageError> {
    let payload = audit_event(actor, None, action, detail);
    let build: BuildFn = Arc::new(move |schema, _| build_batches(schema, [(0, payload.as_ref())], 1000));
    let stream = StreamName::new(AUDIT_STREAM).expect("a valid stream name");
    let app_id = format!("audit-{}", uuid::Uuid::now_v7().simple());
    tables.append(&stream, &app_id, 1, build).await?;
    Ok(())
}
