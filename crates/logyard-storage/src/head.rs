//! The append path's view of a stream's table: its protocol, schema and latest version,
//! without the list of its files.
//!
//! delta-rs brings a `DeltaTable` up to date after each of its commits by replaying the
//! statistics of every file in the table, and lists the whole `_delta_log` for expired
//! entries: work that grows with the table, paid by every commit (the 200th commit of a day
//! cost several times the first). An append needs none of it. Appends that keep the
//! table's schema write their files with delta-rs's Parquet writer (the same statistics in
//! the `add` actions) and their commit directly: `<version>.json`, put only if absent, as
//! delta-rs puts it. A lost race is settled by reading the winner's commit: blind appends
//! conflict only with a change of protocol or metadata (the schema), or with a commit under
//! the same application id (the fences of [`crate::tables::Tables::append_after`]).
//! Checkpoints and the expiry of old log entries are written every
//! `delta.checkpointInterval` commits, as delta-rs does.

use std::collections::HashMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Date32Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use deltalake::BlindDeltaTable;
use deltalake::kernel::scalars::ScalarExt;
use deltalake::kernel::transaction::{CommitData, TransactionError};
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::logstore::{CommitOrBytes, LogStore, LogStoreRef};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use deltalake::{DeltaResult, DeltaTableError};
use futures::StreamExt;
use futures::stream::BoxStream;
use indexmap::IndexMap;
use logyard_core::batch::DATE_COLUMN;
use parquet::file::properties::WriterProperties;

use crate::StorageError;

/// A table's protocol, metadata and latest known version.
#[derive(Debug)]
pub(crate) struct Head {
    table: BlindDeltaTable,
    /// The latest version known. The commits after `table`'s version up to this one changed
    /// neither protocol nor metadata (they were read, or written here).
    version: u64,
}

/// What a commit attempt did.
pub(crate) enum Attempt {
    /// The commit is the table's version `.0`.
    Committed(u64),
    /// Another writer's commit took the version first.
    Lost(CommitSummary),
}

/// What the append path needs to know of a commit.
#[derive(Debug, Default)]
pub(crate) struct CommitSummary {
    /// It changed the protocol or the metadata (a schema, a property).
    pub changes_table: bool,
    /// Its application transactions: (application id, version).
    pub txns: Vec<(String, i64)>,
    /// The paths of the files it removed.
    pub removes: Vec<String>,
}

impl CommitSummary {
    fn parse(bytes: &[u8]) -> Self {
        let mut summary = Self::default();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
            if action.get("metaData").is_some() || action.get("protocol").is_some() {
                summary.changes_table = true;
            }
            if let Some(txn) = action.get("txn")
                && let (Some(app), Some(version)) =
                    (txn.get("appId").and_then(|a| a.as_str()), txn.get("version").and_then(|v| v.as_i64()))
            {
                summary.txns.push((app.to_owned(), version));
            }
            if let Some(path) = action.get("remove").and_then(|r| r.get("path")).and_then(|p| p.as_str()) {
                summary.removes.push(path.to_owned());
            }
        }
        summary
    }

    /// The version this commit sets for `app_id`, if it sets one.
    pub fn txn(&self, app_id: &str) -> Option<i64> {
        self.txns.iter().rev().find(|(app, _)| app == app_id).map(|(_, v)| *v)
    }
}

/// A commit of the log, summarised; `None` when it is missing (cleaned up, or not written).
pub(crate) async fn read_commit(log_store: &dyn LogStore, version: u64) -> Result<Option<CommitSummary>, StorageError> {
    let bytes = log_store.read_commit_entry(version).await.map_err(StorageError::delta("reading a commit"))?;
    Ok(bytes.map(|b| CommitSummary::parse(&b)))
}

/// Puts `bytes` as commit `version` if no commit has it; `Some(winner)` when another
/// writer's commit took the version first.
async fn put_commit(
    log_store: &dyn LogStore,
    version: u64,
    bytes: Bytes,
) -> Result<Option<CommitSummary>, StorageError> {
    match log_store.write_commit_entry(version, CommitOrBytes::LogBytes(bytes), uuid::Uuid::new_v4()).await {
        Ok(()) => Ok(None),
        Err(TransactionError::VersionAlreadyExists(_)) => {
            let winner = read_commit(log_store, version)
                .await?
                .ok_or_else(|| StorageError::Build(format!("commit {version} was taken, then could not be read")))?;
            Ok(Some(winner))
        }
        Err(e) => Err(StorageError::delta("committing")(e.into())),
    }
}

/// The bytes of a commit of `actions` made by logyard at table version `read_version`: its
/// commit info first (the operation, when, what it read, whether it is a blind append, and
/// `app_metadata`), then the actions and the application transactions.
fn commit_entry(
    operation: DeltaOperation,
    read_version: u64,
    actions: impl IntoIterator<Item = Action>,
    app_metadata: HashMap<String, serde_json::Value>,
    txns: Vec<Transaction>,
) -> Result<Bytes, StorageError> {
    let mut info = operation.get_commit_info();
    info.timestamp = Some(chrono::Utc::now().timestamp_millis());
    info.read_version = Some(read_version);
    info.is_blind_append = Some(matches!(operation, DeltaOperation::Write { mode: SaveMode::Append, .. }));
    info.engine_info = Some(format!("logyard {}", env!("CARGO_PKG_VERSION")));
    let actions = std::iter::once(Action::CommitInfo(info)).chain(actions).collect();
    CommitData::new(actions, operation, app_metadata, txns)
        .get_bytes()
        .map_err(|e| StorageError::delta("committing")(e.into()))
}

/// A rewrite's commit (files replaced by files of the same rows: compaction) of `actions`
/// (its removes and adds) as `operation`, read at table version `read_version`,
/// written as the first free version after it; `None` when a commit since then removed one
/// of the same files or changed the table (the rewrite is then void: its files stay
/// unreferenced, and vacuum deletes them).
///
/// Appends in between never conflict: they touch no file a rewrite removes. Each commit in
/// between costs one failed put and one read, so a rewrite under appends many times a
/// second catches up with them instead of losing every race to them, as it did when each
/// attempt replayed the table's state (delta-rs's conflict checker).
pub(crate) async fn commit_rewrite(
    log_store: &dyn LogStore,
    read_version: u64,
    actions: Vec<Action>,
    operation: DeltaOperation,
    app_metadata: HashMap<String, serde_json::Value>,
) -> Result<Option<u64>, StorageError> {
    let removed: std::collections::HashSet<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Remove(r) => Some(r.path.clone()),
            _ => None,
        })
        .collect();
    let bytes = commit_entry(operation, read_version, actions, app_metadata, Vec::new())?;
    let mut version = read_version + 1;
    for _ in 0..REWRITE_CATCH_UP {
        match put_commit(log_store, version, bytes.clone()).await? {
            None => return Ok(Some(version)),
            Some(winner) if winner.changes_table || winner.removes.iter().any(|p| removed.contains(p)) => {
                return Ok(None);
            }
            Some(_) => version += 1,
        }
    }
    Err(StorageError::Build(format!(
        "a rewrite read at version {read_version} is still {REWRITE_CATCH_UP} commits behind the table"
    )))
}

/// Commits a rewrite walks past before it gives up (at a hundred appends a second, more
/// than a minute of them).
const REWRITE_CATCH_UP: u64 = 10_000;

impl Head {
    /// Loads the protocol and metadata of the table's latest version (a checkpoint and the
    /// commits after it; no file statistics). The table must exist.
    pub async fn load(log_store: LogStoreRef) -> Result<Self, StorageError> {
        let table =
            BlindDeltaTable::try_new_with_log_store(log_store).await.map_err(StorageError::delta("loading table"))?;
        let version = table.version();
        Ok(Self { table, version })
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn log_store(&self) -> LogStoreRef {
        self.table.log_store()
    }

    /// The table's schema as Arrow sees it.
    pub fn arrow_schema(&self) -> Result<SchemaRef, StorageError> {
        self.table.arrow_schema().map_err(StorageError::delta("reading table schema"))
    }

    /// Whether this path may write to the table: it knows no writer feature beyond the
    /// protocol logyard creates (writer version 2: append-only and column invariants; it
    /// sets no invariants). A table another engine upgraded goes through delta-rs's
    /// writer, which checks what it asks for.
    pub fn writable(&self) -> bool {
        let protocol = serde_json::to_value(self.table.protocol()).unwrap_or_default();
        let writer = protocol.get("minWriterVersion").and_then(|v| v.as_i64()).unwrap_or(i64::MAX);
        let invariants = self.table.schema().fields().any(|f| f.metadata().contains_key("delta.invariants"));
        writer <= 2 && !invariants
    }

    /// The `delta.checkpointInterval` of the table (100 unless set).
    pub fn checkpoint_interval(&self) -> u64 {
        use deltalake::table::config::TablePropertiesExt;
        self.table.table_properties().checkpoint_interval().get()
    }

    /// Writes `batches` (of the table's schema, sorted by time) as Parquet files under the
    /// table and returns their `add` actions, statistics included. The encoding runs on the
    /// `encoders`' threads, never on a runtime worker: requests queued behind a flush on that
    /// worker would wait for it. A flush of two half row groups (of `row_group_rows`) or more
    /// is cut into consecutive runs of rows, as many as there are threads and each at least
    /// half a row group, encoded at once, one file each.
    pub async fn write_files(
        &self,
        batches: Vec<RecordBatch>,
        properties: WriterProperties,
        row_group_rows: usize,
        encoders: &Encoders,
    ) -> Result<Vec<Add>, StorageError> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let parts = encoders.threads.min(rows / (row_group_rows / 2).max(1)).max(1);
        let mut encodings = Vec::with_capacity(parts);
        for run in split_rows(batches, parts) {
            let writer = RecordBatchWriter::for_blind_appends(&self.table)
                .map_err(StorageError::delta("opening a table writer"))?
                .with_writer_properties(properties.clone());
            encodings.push(encoders.encode(writer, by_date(self.table.metadata().partition_columns()), run));
        }
        let mut adds = Vec::new();
        for encoding in encodings {
            adds.extend(encoding.await.map_err(|_| StorageError::Build("encoding table files failed".into()))??);
        }
        Ok(adds)
    }

    /// Commits `adds` as the next version, under the application transaction
    /// (`app_id`, `txn_version`). A lost race moves the head past the winner's commit
    /// unless that commit changed the table (then the head must be loaded again).
    pub async fn commit(&mut self, adds: &[Add], app_id: &str, txn_version: i64) -> Result<Attempt, StorageError> {
        let bytes = self.commit_bytes(adds, app_id, txn_version)?;
        self.put(bytes).await
    }

    /// Commits the table's schema with the columns of `schema` it lacks added at its end (a
    /// commit of metadata alone, as `ALTER TABLE ... ADD COLUMNS`); the head must be loaded
    /// again after it, as after any change of the table. A lost race moves the head past the
    /// winner's commit unless that commit changed the table.
    ///
    /// Columns go in ahead of the rows that bring them, in a commit that costs one put: put
    /// together (delta-rs's write operation), the rows were rebased over other writers'
    /// appends by replaying the table's state at each attempt, and under replicas that commit
    /// several times a second the commit lost every race and an append with a new column
    /// never got in (nor its replica shut down).
    pub async fn add_columns(&mut self, schema: &arrow::datatypes::Schema) -> Result<Attempt, StorageError> {
        use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
        use deltalake::kernel::{MetadataExt, StructField, StructType};
        let failed = |e: &dyn std::fmt::Display| StorageError::Build(format!("adding columns: {e}"));
        let current = self.table.schema();
        let mut added: Vec<StructField> = Vec::new();
        for field in schema.fields().iter().filter(|f| current.field(f.name()).is_none()) {
            added.push(field.as_ref().try_into_kernel().map_err(|e| failed(&e))?);
        }
        let fields: Vec<StructField> = current.fields().cloned().chain(added.iter().cloned()).collect();
        let schema = StructType::try_new(fields).map_err(|e| failed(&e))?;
        let metadata = self.table.metadata().clone().with_schema(&schema).map_err(|e| failed(&e))?;
        let operation = DeltaOperation::AddColumn { fields: added };
        let bytes = commit_entry(operation, self.version, [Action::Metadata(metadata)], HashMap::new(), Vec::new())?;
        self.put(bytes).await
    }

    /// Puts a commit as the next version; see [`Head::commit`].
    async fn put(&mut self, bytes: Bytes) -> Result<Attempt, StorageError> {
        let version = self.version + 1;
        match put_commit(self.table.log_store().as_ref(), version, bytes).await? {
            None => {
                self.version = version;
                Ok(Attempt::Committed(version))
            }
            Some(winner) => {
                if !winner.changes_table {
                    self.version = version;
                }
                Ok(Attempt::Lost(winner))
            }
        }
    }

    fn commit_bytes(&self, adds: &[Add], app_id: &str, txn_version: i64) -> Result<Bytes, StorageError> {
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: Some(self.table.metadata().partition_columns().to_vec()),
            predicate: None,
        };
        let adds = adds.iter().cloned().map(Action::Add);
        commit_entry(operation, self.version, adds, HashMap::new(), vec![Transaction::new(app_id, txn_version)])
    }
}

/// The threads that encode table files, started at the first flush and kept as long as the
/// tables are. Long-lived threads reuse the memory the allocator keeps per thread from one
/// flush to the next; tokio's blocking pool starts threads as it needs them and keeps idle
/// ones for 10 s, each holding on to what its last flush freed (the server's peak memory
/// under `ack=commit` grew by about half with it).
#[derive(Debug)]
pub(crate) struct Encoders {
    threads: usize,
    jobs: std::sync::OnceLock<std::sync::mpsc::Sender<EncodeJob>>,
}

type EncodeJob = Box<dyn FnOnce() + Send>;

impl Encoders {
    pub fn new(threads: usize) -> Self {
        Self { threads: threads.max(1), jobs: std::sync::OnceLock::new() }
    }

    /// Encodes and puts `batches` through `writer` on one of the threads (started at once).
    fn encode(
        &self,
        writer: RecordBatchWriter,
        by_date: bool,
        batches: Vec<RecordBatch>,
    ) -> tokio::sync::oneshot::Receiver<Result<Vec<Add>, StorageError>> {
        self.encode_stream(writer, by_date, futures::stream::iter(batches.into_iter().map(Ok)).boxed())
    }

    /// Encodes and puts the batches of `batches` through `writer` on one of the threads, as
    /// they come: a rewrite's sorted rows are never all held twice. `by_date`: the table is
    /// partitioned by date alone (see [`by_date`]).
    pub(crate) fn encode_stream(
        &self,
        mut writer: RecordBatchWriter,
        by_date: bool,
        mut batches: BoxStream<'static, Result<RecordBatch, StorageError>>,
    ) -> tokio::sync::oneshot::Receiver<Result<Vec<Add>, StorageError>> {
        let runtime = tokio::runtime::Handle::current();
        let (done, result) = tokio::sync::oneshot::channel();
        let job: EncodeJob = Box::new(move || {
            let written = runtime.block_on(async move {
                while let Some(batch) = batches.next().await {
                    let batch = batch?;
                    let written =
                        if by_date { write_by_date(&mut writer, batch).await } else { writer.write(batch).await };
                    written.map_err(StorageError::delta("writing table files"))?;
                }
                writer.flush().await.map_err(StorageError::delta("writing table files"))
            });
            let _ = done.send(written);
        });
        let jobs = self.jobs.get_or_init(|| self.start());
        // The threads end only when the sender is dropped, with the tables; a job that
        // panics drops its answer (an error for its flush) and leaves its thread running.
        if jobs.send(job).is_err() {
            tracing::error!("the encoding threads are gone");
        }
        result
    }

    fn start(&self) -> std::sync::mpsc::Sender<EncodeJob> {
        let (jobs, queue) = std::sync::mpsc::channel::<EncodeJob>();
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        for n in 0..self.threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("logyard-encode-{n}"))
                .spawn(move || {
                    loop {
                        let job = queue.lock().expect("encoder queue lock").recv();
                        match job {
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                })
                .expect("starting an encoding thread");
        }
        jobs
    }
}

/// `batches` cut into `parts` consecutive runs of rows as equal as can be (slices share
/// the batches' buffers).
fn split_rows(batches: Vec<RecordBatch>, parts: usize) -> Vec<Vec<RecordBatch>> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let per_part = rows.div_ceil(parts.max(1)).max(1);
    let mut runs: Vec<Vec<RecordBatch>> = vec![Vec::new()];
    let mut room = per_part;
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if room == 0 {
                runs.push(Vec::new());
                room = per_part;
            }
            let take = room.min(batch.num_rows() - offset);
            runs.last_mut().expect("one run at least").push(batch.slice(offset, take));
            offset += take;
            room -= take;
        }
    }
    runs
}

/// Whether a table of these partition columns is partitioned by date alone, as every
/// stream's table is: then its files are written by [`write_by_date`].
pub(crate) fn by_date(partition_columns: &[String]) -> bool {
    matches!(partition_columns, [column] if column == DATE_COLUMN)
}

/// Writes `batch`, whose table is partitioned by date alone, a date's rows at a time. delta-rs's
/// `write` sorts the rows by partition and copies each partition's rows out (an Arrow `take`
/// of every column: 2.8% of the server's samples under ingest), also when the batch holds one
/// date. Batches come sorted by time, so a date's rows are one run, handed over as a slice:
/// no copy. (Unsorted batches would only make more, shorter runs.)
async fn write_by_date(writer: &mut RecordBatchWriter, batch: RecordBatch) -> DeltaResult<()> {
    let dates = batch.column_by_name(DATE_COLUMN).and_then(|c| c.as_primitive_opt::<Date32Type>());
    let Some(dates) = dates.filter(|d| d.null_count() == 0).cloned() else {
        return writer.write(batch).await;
    };
    let days = dates.values();
    let mut start = 0;
    while start < days.len() {
        let end = days[start..].iter().position(|&d| d != days[start]).map_or(days.len(), |n| start + n);
        let date = ScalarExt::from_array(&dates, start)
            .ok_or_else(|| DeltaTableError::generic(format!("no partition value in row {start}")))?;
        let values = IndexMap::from([(DATE_COLUMN.to_owned(), date)]);
        writer.write_partition(batch.slice(start, end - start), &values, WriteMode::Default).await?;
        start = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_cut_into_consecutive_runs_of_equal_size() {
        use arrow::array::{Array, Int64Array};
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "n",
            arrow::datatypes::DataType::Int64,
            false,
        )]));
        let batch = |from: i64, to: i64| {
            RecordBatch::try_new(schema.clone(), vec![std::sync::Arc::new(Int64Array::from_iter_values(from..to))])
                .unwrap()
        };
        let runs = split_rows(vec![batch(0, 7), batch(7, 10), batch(10, 11)], 3);
        let values: Vec<Vec<i64>> = runs
            .iter()
            .map(|run| {
                run.iter()
                    .flat_map(|b| {
                        let column = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().clone();
                        (0..column.len()).map(move |i| column.value(i))
                    })
                    .collect()
            })
            .collect();
        assert_eq!(values, vec![(0..4).collect::<Vec<_>>(), (4..8).collect(), (8..11).collect()]);
        assert_eq!(split_rows(vec![batch(0, 5)], 1).len(), 1);
    }

    #[test]
    fn a_commit_summary_names_table_changes_and_transactions() {
        let commit = br#"{"commitInfo":{"operation":"WRITE"}}
{"add":{"path":"a.parquet"}}
{"remove":{"path":"b.parquet","dataChange":false}}
{"txn":{"appId":"wal-1","version":7}}
{"txn":{"appId":"upload-2","version":1}}
"#;
        let summary = CommitSummary::parse(commit);
        assert!(!summary.changes_table);
        assert_eq!(summary.txn("wal-1"), Some(7));
        assert_eq!(summary.txn("upload-2"), Some(1));
        assert_eq!(summary.txn("other"), None);
        assert_eq!(summary.removes, ["b.parquet"]);
        let schema = br#"{"metaData":{"id":"x"}}"#;
        assert!(CommitSummary::parse(schema).changes_table);
        assert!(CommitSummary::parse(br#"{"protocol":{"minReaderVersion":1,"minWriterVersion":7}}"#).changes_table);
    }
}
