//! Table maintenance: compaction (small files of a day merged into files sorted by time),
//! retention (days older than a cutoff dropped), and vacuum (files no version needs deleted).
//!
//! Each is one Delta commit (or a file deletion after one), so a query running meanwhile
//! reads one consistent version: never a missing or a doubled row.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU64;
use std::time::Duration;

use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::optimize::OptimizeType;
use deltalake::{FilterOp, FilterValue};
use serde::Serialize;

use logyard_core::StreamName;

use crate::StorageError;
use crate::files::{DataFile, files_of, read_footer};
use crate::store::TABLES_DIR;
use crate::tables::{Tables, writer_properties};

/// The key of a maintenance commit's info that names who made it (a replica's writer id, or
/// the command).
pub const COMMIT_BY: &str = "logyard.by";

/// The commit properties of a maintenance commit made by `by`.
pub(crate) fn commit_by(by: &str) -> CommitProperties {
    CommitProperties::default()
        .with_metadata([(COMMIT_BY.to_owned(), serde_json::json!(by))])
        .with_max_retries(REWRITE_COMMIT_ATTEMPTS)
}

/// Commit attempts of a table rewrite (compaction, retention, forgetting) before it gives up:
/// each attempt checks the commits since its read version and tries the next, and while
/// replicas commit appends many times a second delta-rs's default of 15 lost every time.
const REWRITE_COMMIT_ATTEMPTS: usize = 200;

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

    /// Rewrites the given days of a stream (default: every day with small files) into files
    /// of about `target_bytes`, sorted by `timestamp`. Each day's commit names `by` (a
    /// replica's writer id, or the command) as `logyard.by` in its commit info.
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
        let target = NonZeroU64::new(target_bytes.max(1)).expect("at least 1");
        for day in days {
            let slot = self.slot(stream);
            let mut guard = slot.lock().await;
            self.refresh(stream, &mut guard).await?;
            let Some(table) = guard.clone() else { break };
            let blooms = self.bloom_columns(stream, &table, Some(&day)).await?;
            let properties = writer_properties(None, blooms, false, self.bloom_filters().fpp, self.row_group_rows());
            let filters = [("date", FilterOp::Eq, FilterValue::Scalar(day.as_str()))];
            let (table, metrics) = table
                .optimize()
                .with_filters(&filters)
                .with_type(OptimizeType::ZOrder(vec!["timestamp".into()]))
                .with_target_size(target)
                .with_writer_properties(properties)
                .with_commit_properties(commit_by(by))
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
        report.files_indexed = self.index_ids(stream, target_bytes).await?;
        Ok(report)
    }

    /// The columns a rewritten file of `day` (of any day: `None`) gets bloom filters on: the
    /// configured ones the table has and, when detecting, those the day's files have filters
    /// on (as the commits that wrote them chose from their data). Reads the footers of at
    /// most 8 files.
    pub(crate) async fn bloom_columns(
        &self,
        stream: &StreamName,
        table: &deltalake::DeltaTable,
        day: Option<&str>,
    ) -> Result<BTreeSet<String>, StorageError> {
        let state = table.snapshot().map_err(StorageError::delta("reading table state"))?;
        let schema = state.snapshot().arrow_schema();
        let settings = self.bloom_filters();
        let mut columns = settings.configured_in(stream, &schema);
        if !settings.detect {
            return Ok(columns);
        }
        let files = files_of(table)?.into_iter().filter(|f| day.is_none() || f.date.as_deref() == day).take(8);
        for file in files {
            let path = self.storage().path(&format!("{TABLES_DIR}/{stream}/{}", file.path));
            let metadata = read_footer(self.storage().root_store().as_ref(), &path, file.size)
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
            let path = self.storage().path(&format!("{TABLES_DIR}/{stream}/{}", file.path));
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::tables::BuildFn;
    use crate::{Location, Storage};

    fn build(first: usize, n: usize) -> BuildFn {
        use logyard_core::batch::{BatchBuilder, PendingEvent};
        let texts: Vec<String> = (first..first + n).map(|i| format!("{{\"id\":\"e{i}\"}}")).collect();
        Arc::new(move |schema, _| {
            let mut b = BatchBuilder::new(schema, texts.len());
            for t in &texts {
                let source = logyard_core::event::TimeSource::Received;
                b.push(PendingEvent { time: 1_764_064_800_000_000, source, text: t })?;
            }
            Ok(Some(vec![b.finish()?]))
        })
    }

    /// Two replicas (or a replica and `logyard compact`) compacting the same day: under the
    /// tables lease one runs and the other waits its turn, and no row is ever there twice.
    /// (Without the lease delta-rs lets both rewrites commit, and every row of the day is
    /// doubled: this test fails that way when the lease is taken out.)
    #[tokio::test]
    async fn compactions_of_one_day_by_two_replicas_never_double_a_row() {
        use crate::lease::{JobLease, TABLES};
        let dir = tempfile::tempdir().unwrap();
        let open = || async {
            let location = Location::Local(dir.path().to_owned());
            Tables::new(Storage::open(location, &Default::default(), Default::default()).await.unwrap())
        };
        let (a, b) = (open().await, open().await);
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
