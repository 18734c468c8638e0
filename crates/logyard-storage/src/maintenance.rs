//! Table maintenance: compaction (small files of a day merged into files sorted by time),
//! retention (days older than a cutoff dropped), and vacuum (files no version needs deleted).
//!
//! Each is one Delta commit (or a file deletion after one), so a query running meanwhile
//! reads one consistent version: never a missing or a doubled row.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::time::Duration;

use deltalake::operations::optimize::OptimizeType;
use deltalake::{FilterOp, FilterValue};
use serde::Serialize;

use logyard_core::StreamName;

use crate::StorageError;
use crate::tables::{Tables, writer_properties};

/// What a compaction did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CompactReport {
    pub partitions: Vec<String>,
    pub files_removed: u64,
    pub files_added: u64,
}

/// What a retention run did to a table.
#[derive(Debug, Default, Clone, Serialize)]
pub struct DropReport {
    pub files_removed: u64,
    pub rows_removed: Option<u64>,
    pub files_deleted: u64,
}

impl Tables {
    /// The days of a stream with at least two files under half of `target_bytes`.
    pub async fn partitions_to_compact(
        &self,
        stream: &StreamName,
        target_bytes: u64,
    ) -> Result<Vec<String>, StorageError> {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::Int64Type;
        let Some(table) = self.latest(stream).await? else { return Ok(Vec::new()) };
        let state = table.snapshot().map_err(StorageError::delta("reading table state"))?;
        let actions = state.add_actions_table(true).map_err(StorageError::delta("reading the table's files"))?;
        let (Some(sizes), Some(dates)) =
            (actions.column_by_name("size_bytes"), actions.column_by_name("partition.date"))
        else {
            return Ok(Vec::new());
        };
        let sizes = sizes.as_primitive::<Int64Type>();
        let dates = arrow::compute::cast(dates, &arrow::datatypes::DataType::Utf8)
            .map_err(|e| StorageError::Build(e.to_string()))?;
        let dates = dates.as_string::<i32>();
        let mut small: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..actions.num_rows() {
            if (sizes.value(i).max(0) as u64) < target_bytes / 2 && !dates.is_null(i) {
                *small.entry(dates.value(i).to_owned()).or_default() += 1;
            }
        }
        Ok(small.into_iter().filter(|(_, n)| *n >= 2).map(|(d, _)| d).collect())
    }

    /// Rewrites the given days of a stream (default: every day with small files) into files
    /// of about `target_bytes`, sorted by `timestamp`.
    pub async fn compact(
        &self,
        stream: &StreamName,
        days: Option<Vec<String>>,
        target_bytes: u64,
    ) -> Result<CompactReport, StorageError> {
        let days = match days {
            Some(d) => d,
            None => self.partitions_to_compact(stream, target_bytes).await?,
        };
        let mut report = CompactReport::default();
        let target = NonZeroU64::new(target_bytes.max(1)).expect("at least 1");
        for day in days {
            let slot = self.slot(stream);
            let mut guard = slot.lock().await;
            self.refresh(stream, &mut guard).await?;
            let Some(table) = guard.clone() else { break };
            let filters = [("date", FilterOp::Eq, FilterValue::Scalar(day.as_str()))];
            let (table, metrics) = table
                .optimize()
                .with_filters(&filters)
                .with_type(OptimizeType::ZOrder(vec!["timestamp".into()]))
                .with_target_size(target)
                .with_writer_properties(writer_properties(None))
                .await
                .map_err(StorageError::delta("compacting"))?;
            *guard = Some(table);
            report.files_removed += metrics.num_files_removed;
            report.files_added += metrics.num_files_added;
            if metrics.num_files_removed > 0 {
                report.partitions.push(day);
            }
        }
        Ok(report)
    }

    /// Removes the days of a stream before `cutoff` (`YYYY-MM-DD`) from its table (one commit),
    /// then deletes files no version younger than `keep` needs.
    pub async fn drop_before(
        &self,
        stream: &StreamName,
        cutoff: &str,
        keep: Duration,
    ) -> Result<DropReport, StorageError> {
        chrono::NaiveDate::parse_from_str(cutoff, "%Y-%m-%d")
            .map_err(|e| StorageError::Config(format!("cutoff {cutoff:?}: {e}")))?;
        let slot = self.slot(stream);
        let mut guard = slot.lock().await;
        self.refresh(stream, &mut guard).await?;
        let Some(table) = guard.clone() else { return Ok(DropReport::default()) };
        let (table, metrics) = table
            .delete()
            .with_predicate(format!("date < '{cutoff}'"))
            .await
            .map_err(StorageError::delta("dropping old days"))?;
        let mut report = DropReport {
            files_removed: metrics.num_removed_files as u64,
            rows_removed: metrics.num_deleted_rows.map(|n| n as u64),
            files_deleted: 0,
        };
        let (table, vacuum) = table
            .vacuum()
            .with_retention_period(chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX))
            .with_enforce_retention_duration(false)
            .await
            .map_err(StorageError::delta("vacuuming"))?;
        report.files_deleted = vacuum.files_deleted.len() as u64;
        *guard = Some(table);
        Ok(report)
    }
}
