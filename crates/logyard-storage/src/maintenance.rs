//! Table maintenance: compaction (small files of a day merged into files sorted by time),
//! retention (days older than a cutoff dropped), and vacuum (files no version needs deleted).
//!
//! Each is one Delta commit (or a file deletion after one), so a query running meanwhile
//! reads one consistent version: never a missing or a doubled row.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use deltalake::DeltaTable;
use deltalake::datafusion::common::{Column, DataFusionError};
use deltalake::datafusion::logical_expr::Expr;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{Action, Add, Remove, cast_record_batch};
use deltalake::protocol::DeltaOperation;
use deltalake::writer::RecordBatchWriter;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;

use logyard_core::StreamName;
use logyard_core::batch::{DATE_COLUMN, TIMESTAMP_COLUMN};

use crate::StorageError;
use crate::files::{DataFile, files_of, read_footer};
use crate::head::commit_rewrite;
use crate::store::TABLES_DIR;
use crate::tables::{ColumnChoices, Tables, writer_properties};

/// The key of a maintenance commit's info that names who made it (a replica's writer id, or
/// the command).
pub const COMMIT_BY: &str = "logyard.by";

/// The commit properties of a maintenance commit made by `by`.
pub(crate) fn commit_by(by: &str) -> CommitProperties {
    CommitProperties::default()
        .with_metadata([(COMMIT_BY.to_owned(), serde_json::json!(by))])
        .with_max_retries(DELETE_COMMIT_ATTEMPTS)
}

/// Commit attempts of a deletion (retention, forgetting: delta-rs's delete operation) before
/// it gives up. Each attempt checks the commits since its read version and tries the next;
/// while replicas commit appends many times a second, delta-rs's default of 15 can lose
/// every time.
const DELETE_COMMIT_ATTEMPTS: usize = 200;

/// What a compaction did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CompactReport {
    pub partitions: Vec<String>,
    pub files_removed: u64,
    pub files_added: u64,
    /// Files given an identifier index ([`crate::ids`]): those compaction wrote, and any other
    /// it will not merge again that had none.
    pub files_indexed: u64,
}

/// The files one day's compaction removed and added.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Merged {
    files_removed: u64,
    files_added: u64,
}

/// What a retention run did to a table.
#[derive(Debug, Default, Clone, Serialize)]
pub struct DropReport {
    pub files_removed: u64,
    pub rows_removed: Option<u64>,
    pub files_deleted: u64,
    /// Identifier indexes deleted with the files they belonged to.
    pub indexes_deleted: u64,
}

impl Tables {
    /// The days of a stream with at least two files under half of `target_bytes`.
    pub async fn partitions_to_compact(
        &self,
        stream: &StreamName,
        target_bytes: u64,
    ) -> Result<Vec<String>, StorageError> {
        let Some(table) = self.latest(stream).await? else { return Ok(Vec::new()) };
        Ok(days_to_compact(&files_of(&table)?, target_bytes).into_iter().collect())
    }

    /// Merges the small files (under half of `target_bytes`) of the given days of a stream
    /// (default: every day with two or more) into files of about `target_bytes`, each sorted
    /// by `timestamp`: the files of a day, taken in the order of their earliest event, are
    /// packed into runs of at most `target_bytes`, and each run of two files or more is
    /// rewritten as one. Files already large are left as they are, so a day is not rewritten
    /// whole each time it grows.
    ///
    /// Each day is one commit naming `by` (a replica's writer id, or the command) as
    /// `logyard.by`. The day is read at one version of the table, without holding it:
    /// appends and queries go on meanwhile, and the commit goes in after the appends that
    /// came first ([`commit_rewrite`]). A commit in between that removed one of the same
    /// files voids the day's rewrite; the next run tries again.
    pub async fn compact(
        &self,
        stream: &StreamName,
        days: Option<Vec<String>>,
        target_bytes: u64,
        by: &str,
    ) -> Result<CompactReport, StorageError> {
        let days = match days {
            Some(d) => d,
            None => self.partitions_to_compact(stream, target_bytes).await?,
        };
        let mut report = CompactReport::default();
        for day in days {
            let Some(table) = self.latest(stream).await? else { break };
            if let Some(merged) = self.compact_day(stream, &table, &day, target_bytes, by).await? {
                report.files_removed += merged.files_removed;
                report.files_added += merged.files_added;
                report.partitions.push(day);
            }
        }
        if report.files_removed > 0 {
            self.checkpoint(stream).await;
        }
        report.files_indexed = self.index_ids(stream, target_bytes).await?;
        Ok(report)
    }

    /// Compacts one day of `table` (a version of the stream's table): the rewrite of
    /// [`Tables::compact`]. `None` when there was nothing to merge, or when a commit since
    /// `table`'s version removed one of the files (the rewrite is void).
    async fn compact_day(
        &self,
        stream: &StreamName,
        table: &DeltaTable,
        day: &str,
        target_bytes: u64,
        by: &str,
    ) -> Result<Option<Merged>, StorageError> {
        let runs = runs_to_merge(table, day, target_bytes)?;
        if runs.is_empty() {
            return Ok(None);
        }
        let read_version = table.version().unwrap_or_default();
        let choices = self.rewrite_choices(stream, table, Some(day)).await?;
        let properties = writer_properties(&choices, self.bloom_filters().fpp, self.row_group_rows(), usize::MAX);
        let state = table.snapshot().map_err(StorageError::delta("reading table state"))?;
        let by_date = crate::head::by_date(state.metadata().partition_columns());
        let mut actions = Vec::new();
        let mut merged = Merged::default();
        for run in runs {
            let rows = sorted_rows(table, run.iter().map(|f| f.path.clone()).collect()).await?;
            let writer = RecordBatchWriter::for_table(table)
                .map_err(StorageError::delta("opening a table writer"))?
                .with_writer_properties(properties.clone());
            let adds = self
                .encoders()
                .encode_stream(writer, by_date, rows)
                .await
                .map_err(|_| StorageError::Build("encoding compacted files failed".into()))??;
            merged.files_removed += run.len() as u64;
            merged.files_added += adds.len() as u64;
            actions.extend(run.into_iter().map(|f| Action::Remove(f.remove)));
            actions.extend(adds.into_iter().map(|add| Action::Add(Add { data_change: false, ..add })));
        }
        let operation = DeltaOperation::Optimize {
            predicate: serde_json::to_string(&[format!("{DATE_COLUMN} = '{day}'")]).ok(),
            target_size: i64::try_from(target_bytes).unwrap_or(i64::MAX),
        };
        let metrics =
            serde_json::json!({ "numFilesRemoved": merged.files_removed, "numFilesAdded": merged.files_added });
        let metadata =
            HashMap::from([(COMMIT_BY.to_owned(), serde_json::json!(by)), ("operationMetrics".to_owned(), metrics)]);
        let log_store = table.log_store();
        match commit_rewrite(log_store.as_ref(), read_version, actions, operation, metadata).await? {
            Some(version) => {
                tracing::debug!(%stream, %day, version, removed = merged.files_removed, "compacted a day");
                Ok(Some(merged))
            }
            None => {
                tracing::info!(%stream, %day, "a commit removed files this compaction merged; it is left to the next run");
                Ok(None)
            }
        }
    }

    /// How a rewritten file of `day` (of any day: `None`) writes its columns: bloom filters on
    /// the configured columns the table has and, when detecting, on those the day's files have
    /// filters on; the encodings most of those files' chunks have (both as the commits that
    /// wrote them chose from their data). Reads the footers of at most 8 files.
    pub(crate) async fn rewrite_choices(
        &self,
        stream: &StreamName,
        table: &deltalake::DeltaTable,
        day: Option<&str>,
    ) -> Result<ColumnChoices, StorageError> {
        let state = table.snapshot().map_err(StorageError::delta("reading table state"))?;
        let schema = state.snapshot().arrow_schema();
        let settings = self.bloom_filters();
        let mut footers = Vec::new();
        let files = files_of(table)?.into_iter().filter(|f| day.is_none() || f.date.as_deref() == day).take(8);
        for file in files {
            footers.push(self.footer(stream, &file).await?);
        }
        Ok(ColumnChoices::of_files(&footers, settings.configured_in(stream, &schema), settings.detect))
    }

    /// The key of a file of a stream's table (`path` as the Delta log names it).
    fn file_key(&self, stream: &StreamName, path: &str) -> object_store::path::Path {
        self.storage().path(&format!("{TABLES_DIR}/{stream}/{path}"))
    }

    /// The Parquet footer of a file of a stream's table.
    async fn footer(
        &self,
        stream: &StreamName,
        file: &DataFile,
    ) -> Result<parquet::file::metadata::ParquetMetaData, StorageError> {
        let path = self.file_key(stream, &file.path);
        read_footer(self.storage().root_store().as_ref(), &path, file.size)
            .await
            .map_err(|e| StorageError::Build(format!("reading the Parquet footer of {path}: {e}")))
    }

    /// Removes the days of a stream before `cutoff` (`YYYY-MM-DD`) from its table (one commit
    /// naming `by`), then deletes files no version younger than `keep` needs.
    pub async fn drop_before(
        &self,
        stream: &StreamName,
        cutoff: &str,
        keep: Duration,
        by: &str,
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
            .with_commit_properties(commit_by(by))
            .await
            .map_err(StorageError::delta("dropping old days"))?;
        let mut report = DropReport {
            files_removed: metrics.num_removed_files as u64,
            rows_removed: metrics.num_deleted_rows.map(|n| n as u64),
            files_deleted: 0,
            indexes_deleted: 0,
        };
        let (table, vacuum) = table
            .vacuum()
            .with_retention_period(chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX))
            .with_enforce_retention_duration(false)
            .await
            .map_err(StorageError::delta("vacuuming"))?;
        report.files_deleted = vacuum.files_deleted.len() as u64;
        *guard = Some(table.clone());
        drop(guard);
        report.indexes_deleted = self.forget_ids(stream, &table, keep).await?;
        Ok(report)
    }
}

impl Tables {
    /// Writes the identifier index of each file that has none and that compaction will not
    /// merge again (its day has at most one file under half of `target_bytes`); returns how many.
    pub async fn index_ids(&self, stream: &StreamName, target_bytes: u64) -> Result<u64, StorageError> {
        let Some(table) = self.latest(stream).await? else { return Ok(0) };
        let files = files_of(&table)?;
        let unsettled = days_to_compact(&files, target_bytes);
        let dir = self.ids_dir(stream);
        let indexed: BTreeSet<String> = dir.list().await?.into_iter().map(|(f, _)| f).collect();
        let store = self.storage().root_store();
        let mut written = 0;
        for file in files {
            if indexed.contains(&file.path) || file.date.as_ref().is_some_and(|d| unsettled.contains(d)) {
                continue;
            }
            let path = self.file_key(stream, &file.path);
            let index = crate::ids::build(store.clone(), path, file.size, self.text_fields(stream)).await?;
            dir.put(&file.path, index).await?;
            written += 1;
        }
        if written > 0 {
            // Queries of this version listed the indexes before these.
            self.ids().forget_listing(stream);
        }
        Ok(written)
    }

    /// Deletes the indexes of files `table` no longer has, and those of an older format, once
    /// older than `keep` (an index of a file a newer commit added may be younger); returns how
    /// many.
    pub(crate) async fn forget_ids(
        &self,
        stream: &StreamName,
        table: &deltalake::DeltaTable,
        keep: Duration,
    ) -> Result<u64, StorageError> {
        use object_store::ObjectStoreExt;
        let live: BTreeSet<String> = files_of(table)?.into_iter().map(|f| f.path).collect();
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
        let store = self.storage().root_store();
        let (current, outdated) = self.ids_dir(stream).list_every().await?;
        let orphans = current.into_iter().filter(|(file, _)| !live.contains(file)).map(|(_, meta)| meta);
        let mut deleted = 0;
        for meta in orphans.chain(outdated) {
            if meta.last_modified <= cutoff {
                store.delete(&meta.location).await.map_err(StorageError::from_store("deleting an index"))?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

/// The days with at least two files under half of `target_bytes`.
fn days_to_compact(files: &[DataFile], target_bytes: u64) -> BTreeSet<String> {
    let mut small: BTreeMap<&str, usize> = BTreeMap::new();
    for file in files.iter().filter(|f| f.size < target_bytes / 2) {
        if let Some(date) = &file.date {
            *small.entry(date).or_default() += 1;
        }
    }
    small.into_iter().filter(|(_, n)| *n >= 2).map(|(d, _)| d.to_owned()).collect()
}

/// A small file of a day that compaction may merge.
struct SmallFile {
    path: String,
    /// Its earliest event (`minValues.timestamp` of its statistics, RFC 3339), to order by.
    earliest: Option<String>,
    size: u64,
    remove: Remove,
}

/// The runs of small files of `day` to merge: its files under half of `target_bytes` in the
/// order of their earliest event, packed into consecutive runs of at most `target_bytes`;
/// runs of one file are left out.
fn runs_to_merge(table: &DeltaTable, day: &str, target_bytes: u64) -> Result<Vec<Vec<SmallFile>>, StorageError> {
    let state = table.snapshot().map_err(StorageError::delta("reading table state"))?;
    let mut small: Vec<SmallFile> = Vec::new();
    for file in state.log_data().iter() {
        let size = file.size().max(0) as u64;
        let date = file.partition_values_map().remove(DATE_COLUMN).flatten();
        if size >= target_bytes / 2 || date.as_deref() != Some(day) {
            continue;
        }
        let earliest = file.stats().and_then(|stats| {
            let stats: serde_json::Value = serde_json::from_str(&stats).ok()?;
            stats["minValues"][TIMESTAMP_COLUMN].as_str().map(str::to_owned)
        });
        small.push(SmallFile { path: file.path().into_owned(), earliest, size, remove: file.remove_action(false) });
    }
    small.sort_by(|a, b| a.earliest.cmp(&b.earliest).then_with(|| a.path.cmp(&b.path)));
    let mut runs: Vec<Vec<SmallFile>> = Vec::new();
    let mut bytes = 0;
    for file in small {
        match runs.last_mut() {
            Some(run) if bytes + file.size <= target_bytes => {
                bytes += file.size;
                run.push(file);
            }
            _ => {
                bytes = file.size;
                runs.push(vec![file]);
            }
        }
    }
    runs.retain(|run| run.len() >= 2);
    Ok(runs)
}

/// The rows of the table's files at `paths` (relative to the table), sorted by time, in the
/// table's schema (columns a file lacks are null).
async fn sorted_rows(
    table: &DeltaTable,
    paths: Vec<String>,
) -> Result<BoxStream<'static, Result<RecordBatch, StorageError>>, StorageError> {
    let state = table.snapshot().map_err(StorageError::delta("reading table state"))?;
    let schema = crate::tables::normalize(state.snapshot().arrow_schema());
    let provider = table.table_provider().with_file_paths(paths).await.map_err(read_error)?;
    let sorted = SessionContext::new()
        .read_table(provider)
        .and_then(|frame| frame.sort(vec![Expr::Column(Column::from_name(TIMESTAMP_COLUMN)).sort(true, false)]))
        .map_err(read_error)?;
    let rows = sorted.execute_stream().await.map_err(read_error)?;
    // In the table's schema (a column a file lacks is null), as delta-rs's optimize writes.
    let rows = rows.map(move |batch| {
        cast_record_batch(&batch.map_err(read_error)?, schema.clone(), false, true)
            .map_err(StorageError::delta("reading files to compact"))
    });
    Ok(rows.boxed())
}

fn read_error(e: DataFusionError) -> StorageError {
    StorageError::Build(format!("reading files to compact: {e}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::tables::BuildFn;

    const DAY_START: i64 = 1_764_028_800_000_000; // 2025-11-25T00:00:00Z

    fn build(first: usize, n: usize) -> BuildFn {
        build_at(first, n, 1_764_064_800_000_000)
    }

    /// `n` events `e<first>`.. at `time` and a microsecond apart after it.
    fn build_at(first: usize, n: usize, time: i64) -> BuildFn {
        use logyard_core::batch::{BatchBuilder, PendingEvent};
        let texts: Vec<String> = (first..first + n).map(|i| format!("{{\"id\":\"e{i}\"}}")).collect();
        Arc::new(move |schema, _| {
            let mut b = BatchBuilder::new(schema, texts.len());
            for (i, t) in texts.iter().enumerate() {
                let source = logyard_core::event::TimeSource::Received;
                b.push(PendingEvent { time: time + i as i64, source, text: t })?;
            }
            Ok(Some(vec![b.finish()?]))
        })
    }

    /// The event times of a file of the stream's table, in file order.
    async fn times(tables: &Tables, stream: &StreamName, path: &str) -> Vec<i64> {
        use arrow::array::AsArray;
        use arrow::datatypes::TimestampMicrosecondType;
        use object_store::ObjectStoreExt;
        let key = tables.file_key(stream, path);
        let bytes = tables.storage().root_store().get(&key).await.unwrap().bytes().await.unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().build().unwrap();
        let mut times = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let column = batch.column_by_name(TIMESTAMP_COLUMN).unwrap();
            times.extend(column.as_primitive::<TimestampMicrosecondType>().values().iter().copied());
        }
        times
    }

    fn paths(table: &DeltaTable) -> BTreeMap<String, u64> {
        files_of(table).unwrap().into_iter().map(|f| (f.path, f.size)).collect()
    }

    /// Small files are merged into one sorted by time, whatever order they came in; a file
    /// already large is left as it is.
    #[tokio::test]
    async fn small_files_are_merged_sorted_by_time_and_large_ones_are_left() {
        let dir = tempfile::tempdir().unwrap();
        let tables = Tables::open_local(dir.path()).await;
        let stream = StreamName::new("merged").unwrap();
        let hour = 3_600_000_000;
        tables.append(&stream, "w", 1, build_at(0, 20_000, DAY_START)).await.unwrap();
        for (i, h) in [5, 3, 4, 1].into_iter().enumerate() {
            tables.append(&stream, "w", i as i64 + 2, build_at(100 * (i + 1), 50, DAY_START + h * hour)).await.unwrap();
        }
        let before = paths(&tables.latest(&stream).await.unwrap().unwrap());
        let large = *before.values().max().unwrap();
        let small: u64 = before.values().filter(|s| **s < large).sum();
        assert!(small * 4 < large, "the test's small files are small: {before:?}");
        let report = tables.compact(&stream, None, large * 2 - 2, "test").await.unwrap();
        assert_eq!((report.files_removed, report.files_added), (4, 1), "{report:?}");
        assert_eq!(report.partitions, ["2025-11-25"]);

        let after = paths(&tables.latest(&stream).await.unwrap().unwrap());
        let (large_path, _) = before.iter().find(|(_, s)| **s == large).unwrap();
        assert!(after.contains_key(large_path), "the large file stays: {after:?}");
        assert_eq!(after.len(), 2, "{after:?}");
        let merged = after.keys().find(|p| *p != large_path).unwrap();
        let times = times(&tables, &stream, merged).await;
        assert_eq!(times.len(), 200);
        assert!(times.is_sorted(), "the merged file is sorted by time");
        assert_eq!(tables.info(&stream).await.unwrap().unwrap().rows, 20_200);
        let again = tables.compact(&stream, None, large * 2 - 2, "test").await.unwrap();
        assert_eq!(again.files_removed, 0, "nothing left to merge: {again:?}");
    }

    /// A compacted file writes each column as the commits' files did: ids that are mostly
    /// distinct without a dictionary (their commits chose that from the data), and the
    /// bloom filters those files had.
    #[tokio::test]
    async fn a_compacted_file_keeps_the_encodings_and_filters_of_the_files_it_merges() {
        use parquet::basic::Encoding;
        let dir = tempfile::tempdir().unwrap();
        let tables = Tables::open_local(dir.path()).await;
        let stream = StreamName::new("kept").unwrap();
        for i in 0..3 {
            tables.append(&stream, "w", i as i64 + 1, build_at(100 * i, 100, DAY_START + i as i64)).await.unwrap();
        }
        let chunk = |footer: &parquet::file::metadata::ParquetMetaData| {
            let group = footer.row_group(0);
            let id = group.columns().iter().find(|c| c.column_path().string() == "id").unwrap().clone();
            (
                id.dictionary_page_offset().is_none(),
                id.encodings_mask().is_set(Encoding::DELTA_LENGTH_BYTE_ARRAY),
                id.bloom_filter_offset().is_some(),
            )
        };
        let table = tables.latest(&stream).await.unwrap().unwrap();
        let before = files_of(&table).unwrap();
        assert_eq!(before.len(), 3);
        for file in &before {
            let footer = tables.footer(&stream, file).await.unwrap();
            assert_eq!(chunk(&footer), (true, true, true), "a commit's file: {}", file.path);
        }
        let report = tables.compact(&stream, None, 1 << 30, "test").await.unwrap();
        assert_eq!((report.files_removed, report.files_added), (3, 1), "{report:?}");
        let after = files_of(&tables.latest(&stream).await.unwrap().unwrap()).unwrap();
        let footer = tables.footer(&stream, &after[0]).await.unwrap();
        assert_eq!(footer.file_metadata().num_rows(), 300);
        assert_eq!(chunk(&footer), (true, true, true), "the compacted file");
    }

    /// A compaction read at one version commits after the appends of another process that
    /// came first; a second rewrite of the same files read at that version is void, and no
    /// row is ever there twice.
    #[tokio::test]
    async fn a_compaction_goes_in_after_appends_and_a_second_one_of_the_same_files_is_void() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Tables::open_local(dir.path()).await, Tables::open_local(dir.path()).await);
        let stream = StreamName::new("raced").unwrap();
        for i in 0..6 {
            a.append(&stream, "a", i + 1, build(50 * i as usize, 50)).await.unwrap();
        }
        let read = a.latest(&stream).await.unwrap().unwrap();
        let day = "2025-11-25";
        for i in 0..3 {
            b.append(&stream, "b", i + 1, build(1000 + 50 * i as usize, 50)).await.unwrap();
        }
        let merged = a.compact_day(&stream, &read, day, 1 << 30, "a").await.unwrap();
        assert_eq!(merged, Some(Merged { files_removed: 6, files_added: 1 }));
        let latest = a.latest(&stream).await.unwrap().unwrap();
        assert_eq!(latest.version(), Some(read.version().unwrap() + 4), "after the three appends");
        assert_eq!(paths(&latest).len(), 4, "the merged file and the three appended since");

        let again = b.compact_day(&stream, &read, day, 1 << 30, "b").await.unwrap();
        assert_eq!(again, None, "the files were merged by the first compaction");
        assert_eq!(a.latest(&stream).await.unwrap().unwrap().version(), latest.version());
        assert_eq!(a.info(&stream).await.unwrap().unwrap().rows, 450);
    }

    /// Two replicas (or a replica and `logyard compact`) compacting the same day: under the
    /// tables lease one runs and the other waits its turn (and finds nothing left to merge),
    /// and no row is ever there twice. Without the lease both would do the work, and the
    /// commit's check would void the second (the test above).
    #[tokio::test]
    async fn compactions_of_one_day_by_two_replicas_never_double_a_row() {
        use crate::lease::{JobLease, TABLES};
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Tables::open_local(dir.path()).await, Tables::open_local(dir.path()).await);
        let lease =
            |tables: &Tables, owner: &str| JobLease::new(tables.storage(), TABLES, owner, Duration::from_secs(30));
        let (lease_a, lease_b) = (lease(&a, "a"), lease(&b, "b"));
        let stream = StreamName::new("twice").unwrap();
        let mut written = 0;
        for round in 0..4 {
            for i in 0..6 {
                a.append(&stream, "w", (round * 6 + i + 1) as i64, build(written, 50)).await.unwrap();
                written += 50;
            }
            let look = Duration::from_millis(20);
            let (ra, rb) = tokio::join!(
                lease_a.run_when_free("compaction", look, a.compact(&stream, None, 1 << 30, "a")),
                lease_b.run_when_free("compaction", look, b.compact(&stream, None, 1 << 30, "b")),
            );
            let (ra, rb) = (ra.unwrap(), rb.unwrap());
            let removed = [ra.files_removed, rb.files_removed];
            assert!(
                removed.contains(&0) && removed.iter().sum::<u64>() >= 6,
                "one compacted, the other found one file: {removed:?}"
            );
            let rows = a.info(&stream).await.unwrap().unwrap().rows;
            assert_eq!(rows, written as u64, "round {round}: rows after two compactions");
        }
    }
}
