//! Table maintenance: compaction (small files of a day merged into files sorted by time),
//! retention (days older than a cutoff dropped), and vacuum (files no version needs deleted).
//!
//! Each is one Delta commit (or a file deletion after one), so a query running meanwhile
//! reads one consistent version: never a missing or a doubled row.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU64;
use std::time::Duration;

use deltalake::operations::optimize::OptimizeType;
use deltalake::{FilterOp, FilterValue};
use serde::Serialize;

use logyard_core::StreamName;

use crate::StorageError;
use crate::store::TABLES_DIR;
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
            let blooms = self.day_bloom_columns(stream, &table, &day).await?;
            let properties = writer_properties(None, blooms, false, self.bloom_filters().fpp);
            let filters = [("date", FilterOp::Eq, FilterValue::Scalar(day.as_str()))];
            let (table, metrics) = table
                .optimize()
                .with_filters(&filters)
                .with_type(OptimizeType::ZOrder(vec!["timestamp".into()]))
                .with_target_size(target)
                .with_writer_properties(properties)
                .await
                .map_err(StorageError::delta("compacting"))?;
            *guard = Some(table);
            report.files_removed += metrics.num_files_removed;
            report.files_added += metrics.num_files_added;
            if metrics.num_files_removed > 0 {
                report.partitions.push(day);
            }
        }
        if report.files_removed > 0 {
            self.checkpoint(stream).await;
        }
        Ok(report)
    }

    /// Writes a Delta checkpoint of the stream's latest version, so that a reader starting
    /// cold (a new server, Athena, Spark) reads one Parquet file of the log instead of every
    /// commit since the last checkpoint (Delta writes one each 100 commits). A failure is
    /// logged: the table is whole without it.
    async fn checkpoint(&self, stream: &StreamName) {
        let slot = self.slot(stream);
        let guard = slot.lock().await;
        let Some(table) = guard.as_ref() else { return };
        if let Err(e) = deltalake::checkpoints::create_checkpoint(table, None).await {
            tracing::warn!(%stream, error = %e, "writing a checkpoint after compaction failed");
        }
    }

    /// The columns a compacted file of `day` gets bloom filters on: the configured ones the
    /// table has and, when detecting, those the day's files have filters on (as the commits
    /// that wrote them chose from their data). Reads the footers of at most 8 files.
    async fn day_bloom_columns(
        &self,
        stream: &StreamName,
        table: &deltalake::DeltaTable,
        day: &str,
    ) -> Result<BTreeSet<String>, StorageError> {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::Int64Type;
        let state = table.snapshot().map_err(StorageError::delta("reading table state"))?;
        let schema = state.snapshot().arrow_schema();
        let settings = self.bloom_filters();
        let mut columns = settings.configured_in(stream, &schema);
        if !settings.detect {
            return Ok(columns);
        }
        let actions = state.add_actions_table(true).map_err(StorageError::delta("reading the table's files"))?;
        let (Some(paths), Some(sizes), Some(dates)) = (
            actions.column_by_name("path"),
            actions.column_by_name("size_bytes"),
            actions.column_by_name("partition.date"),
        ) else {
            return Ok(columns);
        };
        let cast = |a| arrow::compute::cast(a, &arrow::datatypes::DataType::Utf8);
        let (paths, dates) = (cast(paths), cast(dates));
        let (Ok(paths), Ok(dates)) = (paths, dates) else { return Ok(columns) };
        let (paths, dates, sizes) =
            (paths.as_string::<i32>(), dates.as_string::<i32>(), sizes.as_primitive::<Int64Type>());
        let files = (0..actions.num_rows()).filter(|&i| dates.is_valid(i) && dates.value(i) == day).take(8);
        for i in files {
            let path = self.storage().path(&format!("{TABLES_DIR}/{stream}/{}", paths.value(i)));
            let metadata = read_footer(self.storage().root_store().as_ref(), &path, sizes.value(i).max(0) as u64)
                .await
                .map_err(|e| StorageError::Build(format!("reading the Parquet footer of {path}: {e}")))?;
            for row_group in metadata.row_groups() {
                for column in row_group.columns().iter().filter(|c| c.bloom_filter_offset().is_some()) {
                    columns.insert(column.column_path().string());
                }
            }
        }
        Ok(columns)
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

/// The footer of a Parquet file of `size` bytes: its last 64 KiB, and more when the footer is
/// longer.
async fn read_footer(
    store: &dyn object_store::ObjectStore,
    path: &object_store::path::Path,
    size: u64,
) -> Result<parquet::file::metadata::ParquetMetaData, Box<dyn std::error::Error + Send + Sync>> {
    use object_store::ObjectStoreExt;
    use parquet::errors::ParquetError;
    use parquet::file::metadata::ParquetMetaDataReader;
    let mut reader = ParquetMetaDataReader::new();
    let mut tail = size.min(64 << 10);
    loop {
        let bytes = store.get_range(path, size - tail..size).await?;
        match reader.try_parse_sized(&bytes, size) {
            Ok(()) => return Ok(reader.finish()?),
            Err(ParquetError::NeedMoreData(needed)) if (needed as u64) > tail && (needed as u64) <= size => {
                tail = needed as u64;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
