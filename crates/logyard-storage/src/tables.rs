//! Stream tables: Delta Lake tables under `tables/<stream>/`, partitioned by `date`.
//!
//! Appends are idempotent: each commit carries a Delta transaction identifier
//! (`txn` action: application id = the writer's id, version = the last write-ahead-log
//! position it contains). A writer replaying its log after a crash asks the table for the
//! version it last committed and skips what is already there.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::{CommitProperties, TransactionError};
use deltalake::logstore::LogStore;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::StreamExt;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use tracing::Instrument;

use logyard_core::StreamName;
use logyard_core::batch::{DATE_COLUMN, TIMESTAMP_COLUMN, base_schema};

use crate::StorageError;
use crate::head::{Attempt, Encoders, Head};
use crate::store::{Storage, TABLES_DIR};

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// A new table version holding `rows` rows.
    Committed { table_version: u64, rows: usize },
    /// Everything was already committed by an earlier attempt (found through the txn action).
    AlreadyCommitted,
}

/// What an append fenced by the writer's previous transaction version did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FencedOutcome {
    Appended(AppendOutcome),
    /// Another writer committed under the same application id since `base`: the table's
    /// version for it is `committed`, and nothing was written.
    Superseded {
        committed: Option<i64>,
    },
}

/// Builds the batches of one append against the table's current schema and the writer's
/// last committed transaction version (`None` when it never committed to this table).
/// Returns `None` when nothing is left to write.
pub type BuildResult = Result<Option<Vec<RecordBatch>>, Box<dyn std::error::Error + Send + Sync>>;

/// The batch builder of an append; it runs on a blocking thread.
pub type BuildFn = Arc<dyn Fn(SchemaRef, Option<i64>) -> BuildResult + Send + Sync>;

/// Which columns of the stream tables get Parquet bloom filters: split-block filters as the
/// Parquet format specifies them, so that DataFusion, DuckDB, Spark and Trino all skip the row
/// groups whose filter says an `=`/`IN` value is absent.
#[derive(Debug, Clone)]
pub struct BloomFilters {
    /// Columns given a filter in every stream that has them.
    pub columns: Vec<String>,
    /// Columns given a filter in one stream, beside `columns`.
    pub streams: HashMap<String, Vec<String>>,
    /// Whether text columns that look like identifiers get one too: chosen from a commit's
    /// sample (short values without spaces, many distinct; see [`Tables::choices`]), kept by
    /// compaction.
    pub detect: bool,
    /// The false-positive rate each filter is sized for (Parquet writers fold a filter down to
    /// the smallest size that keeps it).
    pub fpp: f64,
}

impl Default for BloomFilters {
    fn default() -> Self {
        Self { columns: Vec::new(), streams: HashMap::new(), detect: true, fpp: 0.05 }
    }
}

impl BloomFilters {
    /// The configured columns of a stream that `schema` has.
    pub(crate) fn configured_in(&self, stream: &StreamName, schema: &Schema) -> BTreeSet<String> {
        let own = self.streams.get(stream.as_str()).into_iter().flatten();
        self.columns.iter().chain(own).filter(|c| schema.column_with_name(c).is_some()).cloned().collect()
    }
}

/// Access to every stream's table, with one cached snapshot per table.
#[derive(Debug)]
pub struct Tables {
    storage: Storage,
    cache: Mutex<HashMap<StreamName, Arc<tokio::sync::Mutex<Option<DeltaTable>>>>>,
    /// The append path's view of each table (see [`crate::head`]); its lock orders one
    /// process's appends to a stream.
    heads: Mutex<HashMap<StreamName, Arc<tokio::sync::Mutex<Option<Head>>>>>,
    bloom_filters: BloomFilters,
    row_group_rows: usize,
    /// The threads a flush's files are encoded on, as many files at once as there are
    /// threads (see [`Head::write_files`]).
    encoders: Encoders,
    text_fields: logyard_core::TextFields,
    ids: crate::ids::IdCache,
    txns: TxnVersions,
    /// The column choices of each stream's last sampled commit (see [`Tables::choices`]).
    chosen: Mutex<HashMap<StreamName, Chosen>>,
}

/// Column choices made from a commit's sample, for the stream's next commits of that schema.
#[derive(Debug)]
struct Chosen {
    schema: SchemaRef,
    choices: ColumnChoices,
    at: std::time::Instant,
}

/// How long a stream's column choices serve its next commits of the same schema before a
/// commit samples its data again. Sampling looks at up to [`SAMPLE`] values of each column,
/// about a millisecond for the storefront's columns: nothing beside a commit of 150,000 events,
/// but with `ack=commit` a commit holds what a few requests sent, and sampling each of them
/// was 5 % of the server's time.
const CHOICES_KEPT: Duration = Duration::from_secs(60);

/// The cores this process may run on (its CPU affinity).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The transaction version of an application id in a table, as of a table version: delta-rs
/// finds it by reading every commit since the last checkpoint (up to a hundred GETs on S3
/// before each commit, more as the table grows), so it is kept here and brought up to date by
/// reading only the commits since.
type TxnVersions = Mutex<HashMap<(StreamName, String), (u64, Option<i64>)>>;

/// Beyond this many new commits, the version is read again from the whole log.
const TXN_CATCH_UP: u64 = 32;

/// Application ids kept at most (every upload has its own); beyond, the map starts afresh.
const TXN_KEPT: usize = 4096;

impl Tables {
    pub fn new(storage: Storage) -> Self {
        Self {
            storage,
            txns: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            heads: Mutex::new(HashMap::new()),
            bloom_filters: BloomFilters::default(),
            row_group_rows: ROW_GROUP_ROWS,
            encoders: Encoders::new(cores()),
            text_fields: Default::default(),
            ids: Default::default(),
            chosen: Mutex::new(HashMap::new()),
        }
    }

    /// Sets which columns get bloom filters (default: identifier-like text columns).
    pub fn with_bloom_filters(mut self, bloom_filters: BloomFilters) -> Self {
        self.bloom_filters = bloom_filters;
        self
    }

    /// Rows per Parquet row group of the files written from now on.
    pub fn with_row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = rows.max(1);
        self
    }

    /// At most how many files a flush is encoded into at once, one per thread, each at least
    /// half a row group (0, the default: the cores this process may run on).
    pub fn with_encode_threads(mut self, threads: usize) -> Self {
        self.encoders = Encoders::new(if threads == 0 { cores() } else { threads });
        self
    }

    /// Sets the streams' text fields, which the indexes compaction writes cover (default:
    /// `message`).
    pub fn with_text_fields(mut self, text_fields: logyard_core::TextFields) -> Self {
        self.text_fields = text_fields;
        self
    }

    pub(crate) fn text_fields(&self, stream: &StreamName) -> &[String] {
        self.text_fields.of(stream)
    }

    pub(crate) fn encoders(&self) -> &Encoders {
        &self.encoders
    }

    pub(crate) fn row_group_rows(&self) -> usize {
        self.row_group_rows
    }

    pub(crate) fn bloom_filters(&self) -> &BloomFilters {
        &self.bloom_filters
    }

    /// The identifier indexes read so far.
    pub(crate) fn ids(&self) -> &crate::ids::IdCache {
        &self.ids
    }

    /// Where the identifier indexes of a stream's table are kept.
    pub(crate) fn ids_dir(&self, stream: &StreamName) -> crate::ids::IdsDir {
        crate::ids::IdsDir::new(self.storage.root_store(), &self.storage.path(&format!("{TABLES_DIR}/{stream}")))
    }

    /// The files of `table` (a version of the stream's table; paths relative to it), and
    /// their row groups, that may hold a row meeting every needle, by their indexes; `None`
    /// when nothing is ruled out.
    pub async fn narrow(
        &self,
        stream: &StreamName,
        table: &DeltaTable,
        needles: &[crate::ids::Needle],
    ) -> Result<Option<crate::ids::Narrowed>, StorageError> {
        self.ids.admitted(&self.ids_dir(stream), stream, table, needles).await
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub(crate) fn slot(&self, stream: &StreamName) -> Arc<tokio::sync::Mutex<Option<DeltaTable>>> {
        let mut cache = self.cache.lock().expect("table cache lock");
        cache.entry(stream.clone()).or_default().clone()
    }

    fn builder(&self, stream: &StreamName) -> Result<DeltaTableBuilder, StorageError> {
        let url = self.storage.table_url(stream);
        Ok(DeltaTableBuilder::from_url(url.clone())
            .map_err(StorageError::delta("opening table"))?
            .with_storage_backend(self.storage.root_store(), url))
    }

    /// The latest version of a stream's table, or `None` when the stream has no table yet.
    pub async fn latest(&self, stream: &StreamName) -> Result<Option<DeltaTable>, StorageError> {
        let slot = self.slot(stream);
        let mut guard = slot.lock().await;
        self.refresh(stream, &mut guard).await?;
        Ok(guard.clone())
    }

    /// Brings a cached table up to date, loading it the first time; leaves `None` when the
    /// table does not exist yet (no commit in its `_delta_log/`).
    ///
    /// A loaded table asks for its next commit by name first (one HEAD; Delta versions are
    /// consecutive), and only when that exists reads the log from there: a query of a table
    /// that has not changed lists nothing.
    pub(crate) async fn refresh(&self, stream: &StreamName, slot: &mut Option<DeltaTable>) -> Result<(), StorageError> {
        let log_dir = self.storage.path(&format!("{TABLES_DIR}/{stream}/_delta_log"));
        if let Some(table) = slot {
            if let Some(version) = table.version() {
                let next = log_dir.clone().join(format!("{:020}.json", version + 1));
                match object_store::ObjectStoreExt::head(self.storage.root_store().as_ref(), &next).await {
                    Err(object_store::Error::NotFound { .. }) => return Ok(()),
                    Err(e) => return Err(StorageError::from_store("looking for a table's next commit")(e)),
                    Ok(_) => {}
                }
            }
            return table.update_incremental(None).await.map_err(StorageError::delta("refreshing table"));
        }
        if !self.exists(stream).await? {
            return Ok(());
        }
        let table = self.builder(stream)?.load().await.map_err(StorageError::delta("loading table"))?;
        *slot = Some(table);
        Ok(())
    }

    /// Appends to a stream's table, creating it on first write; see [`BuildResult`].
    ///
    /// Concurrent commits by other writers are retried; a conflicting schema change makes
    /// `build` run again against the new schema.
    pub async fn append(
        &self,
        stream: &StreamName,
        app_id: &str,
        txn_version: i64,
        build: BuildFn,
    ) -> Result<AppendOutcome, StorageError> {
        match self.append_fenced(stream, app_id, Fence::Newer, txn_version, build).await? {
            FencedOutcome::Appended(outcome) => Ok(outcome),
            FencedOutcome::Superseded { .. } => unreachable!("an unfenced append is never superseded"),
        }
    }

    /// An append that only happens while the table's transaction version of `app_id` is
    /// `base` (`None`: no transaction yet): the fence for writers that take over each other's
    /// work, such as the Kinesis shard consumers. `txn_version` must be unique to this
    /// attempt. Two writers racing under one application id conflict in Delta's conflict
    /// check, and the loser finds the winner's version here.
    pub async fn append_after(
        &self,
        stream: &StreamName,
        app_id: &str,
        base: Option<i64>,
        txn_version: i64,
        build: BuildFn,
    ) -> Result<FencedOutcome, StorageError> {
        self.append_fenced(stream, app_id, Fence::After(base), txn_version, build).await
    }

    /// The table's transaction version of `app_id` (`None`: none, or no table yet).
    pub async fn transaction_version(&self, stream: &StreamName, app_id: &str) -> Result<Option<i64>, StorageError> {
        let slot = self.slot(stream);
        let mut guard = slot.lock().await;
        self.refresh(stream, &mut guard).await?;
        match guard.as_ref() {
            Some(table) => self.committed_version(stream, table, app_id).await,
            None => Ok(None),
        }
    }

    /// The table's transaction version of `app_id` (`None`: none yet), from [`TxnVersions`]
    /// and the commits since it was last seen.
    async fn committed_version(
        &self,
        stream: &StreamName,
        table: &DeltaTable,
        app_id: &str,
    ) -> Result<Option<i64>, StorageError> {
        let Some(version) = table.version() else { return Ok(None) };
        if let Some(value) = self.kept_txn(stream, table.log_store().as_ref(), version, app_id).await? {
            return Ok(value);
        }
        let state = table.snapshot().map_err(StorageError::delta("reading table state"))?;
        let value = state
            .transaction_version(table.log_store().as_ref(), app_id)
            .await
            .map_err(StorageError::delta("reading transaction version"))?;
        self.keep_txn((stream.clone(), app_id.to_owned()), version, value);
        Ok(value)
    }

    /// The transaction version of `app_id` at table `version` from [`TxnVersions`], brought
    /// up to date by reading at most [`TXN_CATCH_UP`] commits; `None` when not known.
    async fn kept_txn(
        &self,
        stream: &StreamName,
        log_store: &dyn LogStore,
        version: u64,
        app_id: &str,
    ) -> Result<Option<Option<i64>>, StorageError> {
        let key = (stream.clone(), app_id.to_owned());
        let seen = self.txns.lock().expect("txn versions lock").get(&key).copied();
        let found = match seen {
            Some((at, value)) if at == version => return Ok(Some(value)),
            Some((at, value)) if at < version && version - at <= TXN_CATCH_UP => {
                txn_since(log_store, app_id, at, version, value).await?
            }
            _ => None,
        };
        if let Some(value) = found {
            self.keep_txn(key, version, value);
        }
        Ok(found)
    }

    /// Records the transaction version a commit of this process set (at table `version`).
    fn committed(&self, stream: &StreamName, app_id: &str, version: u64, txn_version: i64) {
        self.keep_txn((stream.clone(), app_id.to_owned()), version, Some(txn_version));
    }

    fn keep_txn(&self, key: (StreamName, String), version: u64, value: Option<i64>) {
        let mut txns = self.txns.lock().expect("txn versions lock");
        if txns.len() >= TXN_KEPT && !txns.contains_key(&key) {
            txns.clear();
        }
        txns.insert(key, (version, value));
    }

    fn head_slot(&self, stream: &StreamName) -> Arc<tokio::sync::Mutex<Option<Head>>> {
        let mut heads = self.heads.lock().expect("table heads lock");
        heads.entry(stream.clone()).or_default().clone()
    }

    /// Whether the stream's table has a commit.
    async fn exists(&self, stream: &StreamName) -> Result<bool, StorageError> {
        let log_dir = self.storage.path(&format!("{TABLES_DIR}/{stream}/_delta_log"));
        let mut listing = self.storage.root_store().list(Some(&log_dir));
        match listing.next().await {
            None => Ok(false),
            Some(Err(e)) => Err(StorageError::from_store("listing a table log")(e)),
            Some(Ok(_)) => Ok(true),
        }
    }

    /// An append through [`Head`]: files written by delta-rs's writer, the commit written
    /// here, nothing replayed after it. Creating the table, adding columns and tables of a
    /// protocol this path does not write go through delta-rs's write operation instead.
    async fn append_fenced(
        &self,
        stream: &StreamName,
        app_id: &str,
        fence: Fence,
        txn_version: i64,
        build: BuildFn,
    ) -> Result<FencedOutcome, StorageError> {
        let slot = self.head_slot(stream);
        let mut guard = slot.lock().await;
        'load: for _ in 0..30 {
            if guard.is_none() {
                if !self.exists(stream).await? {
                    return self.append_through_delta_rs(stream, app_id, fence, txn_version, build).await;
                }
                *guard = Some(
                    Head::load(self.builder(stream)?.build_storage().map_err(StorageError::delta("opening table"))?)
                        .await?,
                );
            }
            let head = guard.as_mut().expect("loaded above");
            if !head.writable() {
                *guard = None;
                return self.append_through_delta_rs(stream, app_id, fence, txn_version, build).await;
            }
            let log_store = head.log_store();
            let mut committed = match self.kept_txn(stream, log_store.as_ref(), head.version(), app_id).await? {
                Some(value) => value,
                None => {
                    // Read from the whole log, at the latest version; the head is loaded
                    // again at that version or later, and catches up from there.
                    let latest = self.latest(stream).await?;
                    let at = latest.as_ref().and_then(|t| t.version());
                    let value = match latest.as_ref() {
                        Some(table) => self.committed_version(stream, table, app_id).await?,
                        None => None,
                    };
                    if at != Some(head.version()) {
                        *guard = None;
                        continue 'load;
                    }
                    value
                }
            };
            if let Some(outcome) = fence.verdict(committed, txn_version) {
                return Ok(outcome);
            }
            let schema = normalize(head.arrow_schema()?);
            let batches = match run_build(&build, schema.clone(), committed).await? {
                Some(b) => b,
                None => return Ok(FencedOutcome::Appended(AppendOutcome::AlreadyCommitted)),
            };
            if batches.iter().any(|b| !same_fields(&b.schema(), &schema)) {
                let wider = Schema::try_merge(batches.iter().map(|b| b.schema().as_ref().clone()))
                    .map_err(|e| StorageError::Build(format!("stream {stream}: new columns: {e}")))?;
                if wider.fields().iter().all(|f| schema.field_with_name(f.name()).is_ok()) {
                    // Not new columns but others missing or of other types: delta-rs's write
                    // operation casts them to the table's.
                    *guard = None;
                    return self.append_through_delta_rs(stream, app_id, fence, txn_version, build).await;
                }
                // New columns: committed first, on their own; the rows are then built again
                // against the schema they made, as after any other change of the table.
                for _ in 0..TXN_CATCH_UP {
                    match head.add_columns(&wider).await? {
                        Attempt::Committed(version) => {
                            tracing::info!(%stream, version, "added columns");
                            break;
                        }
                        Attempt::Lost(winner) if winner.changes_table => break,
                        Attempt::Lost(_) => {}
                    }
                }
                *guard = None;
                continue 'load;
            }
            let rows = batches.iter().map(|b| b.num_rows()).sum();
            let span = tracing::info_span!(
                "delta.commit",
                %stream,
                rows,
                table_version = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            );
            let properties = self.properties(stream, &batches);
            let adds = head
                .write_files(batches, properties, self.row_group_rows, &self.encoders)
                .instrument(span.clone())
                .await?;
            for _ in 0..TXN_CATCH_UP {
                match head.commit(&adds, app_id, txn_version).instrument(span.clone()).await? {
                    Attempt::Committed(table_version) => {
                        span.record("table_version", table_version);
                        self.committed(stream, app_id, table_version, txn_version);
                        if (table_version + 1).is_multiple_of(head.checkpoint_interval()) {
                            self.checkpoint(stream).await;
                        }
                        return Ok(FencedOutcome::Appended(AppendOutcome::Committed { table_version, rows }));
                    }
                    Attempt::Lost(winner) => {
                        // The files written stay unreferenced (vacuum removes them).
                        tracing::info!(%stream, version = head.version(), "commit raced another writer");
                        if winner.changes_table {
                            *guard = None;
                            continue 'load;
                        }
                        committed = winner.txn(app_id).or(committed);
                        self.keep_txn((stream.clone(), app_id.to_owned()), head.version(), committed);
                        if let Some(outcome) = fence.verdict(committed, txn_version) {
                            return Ok(outcome);
                        }
                    }
                }
            }
            // Still behind (other processes committed while this one did not): load the head
            // at the latest version instead of walking the log one put at a time.
            tracing::info!(%stream, version = head.version(), "behind the table's latest version; loading it");
            *guard = None;
        }
        Err(StorageError::Build(format!("stream {stream}: the table kept changing under an append")))
    }

    /// Writes a Delta checkpoint of the stream's latest version, so that a reader starting
    /// cold (a new server, Athena, Spark) reads one Parquet file of the log instead of every
    /// commit since the last checkpoint; then, unless the table turns it off, removes the log
    /// entries older than its `delta.logRetentionDuration` (30 days) that the checkpoint
    /// makes unneeded. Appends do it every `delta.checkpointInterval` commits (as delta-rs
    /// does after its own), compaction after it rewrites files. A failure is logged: the
    /// table is whole without it.
    pub(crate) async fn checkpoint(&self, stream: &StreamName) {
        use deltalake::table::config::TablePropertiesExt;
        let written = async {
            let Some(table) = self.latest(stream).await? else { return Ok(()) };
            deltalake::checkpoints::create_checkpoint(&table, None)
                .await
                .map_err(StorageError::delta("writing a checkpoint"))?;
            let state = table.snapshot().map_err(StorageError::delta("reading table state"))?;
            if state.table_config().enable_expired_log_cleanup() {
                deltalake::checkpoints::cleanup_metadata(&table, None)
                    .await
                    .map_err(StorageError::delta("removing expired log entries"))?;
            }
            Ok::<_, StorageError>(())
        };
        if let Err(e) = written.await {
            tracing::warn!(%stream, error = %e, "writing a checkpoint failed");
        }
    }

    /// Parquet settings for the batches of one commit (see [`writer_properties`]).
    fn properties(&self, stream: &StreamName, batches: &[RecordBatch]) -> WriterProperties {
        let fpp = self.bloom_filters.fpp;
        match batches.first() {
            None => writer_properties(&ColumnChoices::default(), fpp, self.row_group_rows, 0),
            Some(sample) => {
                let rows = batches.iter().map(RecordBatch::num_rows).sum();
                writer_properties(&self.choices(stream, sample), fpp, self.row_group_rows, rows)
            }
        }
    }

    /// The column choices for a commit whose first batch is `sample`: those of the stream's
    /// last commit sampled, while its schema is the same and for at most [`CHOICES_KEPT`];
    /// otherwise made from `sample`, and kept when it has a quarter of a full sample or more
    /// (a request's rows are a batch of their own, about 2,500 events per MB; a commit of a
    /// few events decides nothing for the next ones).
    fn choices(&self, stream: &StreamName, sample: &RecordBatch) -> ColumnChoices {
        let schema = sample.schema();
        if let Some(kept) = self.chosen.lock().expect("choices lock").get(stream)
            && kept.at.elapsed() < CHOICES_KEPT
            && kept.schema == schema
        {
            return kept.choices.clone();
        }
        let blooms = self.bloom_filters.configured_in(stream, &schema);
        let choices = ColumnChoices::of_sample(sample, blooms, self.bloom_filters.detect);
        if sample.num_rows() >= SAMPLE / 4 {
            let at = std::time::Instant::now();
            let kept = Chosen { schema, choices: choices.clone(), at };
            self.chosen.lock().expect("choices lock").insert(stream.clone(), kept);
        }
        choices
    }

    /// An append through delta-rs's write operation on the cached `DeltaTable`.
    async fn append_through_delta_rs(
        &self,
        stream: &StreamName,
        app_id: &str,
        fence: Fence,
        txn_version: i64,
        build: BuildFn,
    ) -> Result<FencedOutcome, StorageError> {
        let slot = self.slot(stream);
        let mut guard = slot.lock().await;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.refresh(stream, &mut guard).await?;
            let (schema, committed) = match guard.as_ref() {
                Some(table) => {
                    let state = table.snapshot().map_err(StorageError::delta("reading table state"))?;
                    (state.snapshot().arrow_schema(), self.committed_version(stream, table, app_id).await?)
                }
                None => (Arc::new(base_schema()), None),
            };
            if let Some(outcome) = fence.verdict(committed, txn_version) {
                return Ok(outcome);
            }
            let batches = match run_build(&build, normalize(schema), committed).await? {
                Some(b) => b,
                None => return Ok(FencedOutcome::Appended(AppendOutcome::AlreadyCommitted)),
            };
            let rows = batches.iter().map(|b| b.num_rows()).sum();
            let properties = self.properties(stream, &batches);
            // delta-rs retries a commit on a newer table version by itself, after checking
            // each commit that won against it; a winner that changed the table's metadata (a
            // schema) fails the retry with `MetadataChanged`, so a commit that adds columns
            // is only rebased over plain appends, and is rebuilt here against a winner's new
            // schema. Creating the table is never rebased: a writer that finds it created
            // reads it and builds again. (Retrying column additions here only, with no
            // rebase, starved them: with several replicas committing every few hundred
            // milliseconds, a new column never got in.)
            let creates = guard.is_none();
            let commit_retries = if creates { 0 } else { 20 };
            let table = match guard.clone() {
                Some(t) => t,
                None => self.builder(stream)?.build().map_err(StorageError::delta("opening table"))?,
            };
            let span = tracing::info_span!(
                "delta.commit",
                %stream,
                attempt,
                rows,
                table_version = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            );
            let result = table
                .write(batches)
                .with_save_mode(SaveMode::Append)
                .with_schema_mode(SchemaMode::Merge)
                .with_partition_columns([DATE_COLUMN])
                .with_writer_properties(properties)
                .with_commit_properties(
                    CommitProperties::default()
                        .with_application_transaction(Transaction::new(app_id, txn_version))
                        .with_max_retries(commit_retries),
                )
                .into_future()
                .instrument(span.clone())
                .await;
            match result {
                Ok(table) => {
                    let table_version = table.version().unwrap_or_default();
                    span.record("table_version", table_version);
                    // The commit carries (app_id, txn_version); a commit of another process
                    // under the same id in between would have failed it (Delta's conflict
                    // check on application ids), so this is the id's version at this table
                    // version.
                    self.committed(stream, app_id, table_version, txn_version);
                    *guard = Some(table);
                    return Ok(FencedOutcome::Appended(AppendOutcome::Committed { table_version, rows }));
                }
                Err(e) if attempt < 30 && is_retryable(&e) => {
                    span.record("otel.status_code", "ERROR");
                    tracing::info!(%stream, attempt, error = %e, "commit raced another writer; retrying");
                    // Reload from storage: the cached state is behind the winner's commit.
                    *guard = None;
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt.min(20)))).await;
                }
                Err(e) => {
                    span.record("otel.status_code", "ERROR");
                    return Err(StorageError::delta("appending")(e));
                }
            }
        }
    }
}

/// When an append under an application id may happen.
#[derive(Debug, Clone, Copy)]
enum Fence {
    /// Unless the id's transaction version is already the append's or later (idempotent retries).
    Newer,
    /// Only while the id's transaction version is this one (`None`: no transaction yet).
    After(Option<i64>),
}

impl Fence {
    /// What the append comes to without writing, given the id's transaction version
    /// `committed`; `None`: it goes on.
    fn verdict(self, committed: Option<i64>, txn_version: i64) -> Option<FencedOutcome> {
        match self {
            Fence::Newer if committed.is_some_and(|v| v >= txn_version) => {
                Some(FencedOutcome::Appended(AppendOutcome::AlreadyCommitted))
            }
            Fence::After(_) if committed == Some(txn_version) => {
                Some(FencedOutcome::Appended(AppendOutcome::AlreadyCommitted))
            }
            Fence::After(base) if committed != base => Some(FencedOutcome::Superseded { committed }),
            _ => None,
        }
    }
}

/// Runs an append's batch builder on a blocking thread.
async fn run_build(
    build: &BuildFn,
    schema: SchemaRef,
    committed: Option<i64>,
) -> Result<Option<Vec<RecordBatch>>, StorageError> {
    let build = build.clone();
    tokio::task::spawn_blocking(move || build(schema, committed))
        .await
        .map_err(|e| StorageError::Build(e.to_string()))?
        .map_err(|e| StorageError::Build(e.to_string()))
}

/// Whether a batch has exactly the table's columns (names and types; a batch with new
/// columns changes the table's metadata).
fn same_fields(batch: &Schema, table: &Schema) -> bool {
    batch.fields().len() == table.fields().len()
        && batch
            .fields()
            .iter()
            .zip(table.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
}

/// The last transaction version of `app_id` in the commits after table version `at` up to
/// `to`, starting from `value` (its version at `at`); `None` when a commit is missing (cleaned
/// up: the caller reads the whole log).
async fn txn_since(
    log_store: &dyn LogStore,
    app_id: &str,
    at: u64,
    to: u64,
    mut value: Option<i64>,
) -> Result<Option<Option<i64>>, StorageError> {
    for v in at + 1..=to {
        let Some(commit) = crate::head::read_commit(log_store, v).await? else { return Ok(None) };
        value = commit.txn(app_id).or(value);
    }
    Ok(Some(value))
}

/// Errors that another writer's concurrent commit explains.
fn is_retryable(e: &DeltaTableError) -> bool {
    match e {
        DeltaTableError::Transaction { source } => matches!(
            source,
            TransactionError::VersionAlreadyExists(_)
                | TransactionError::CommitConflict(_)
                | TransactionError::MaxCommitAttempts(_)
        ),
        DeltaTableError::VersionAlreadyExists(_) => true,
        // A column another writer added with a different type: rebuild against the new schema.
        DeltaTableError::SchemaMismatch { .. } | DeltaTableError::Arrow { .. } => true,
        DeltaTableError::Generic(msg) => msg.contains("already exists") || msg.contains("schema"),
        _ => false,
    }
}

/// How the columns of a file are written beyond the defaults: chosen from the data of a
/// commit ([`ColumnChoices::of_sample`]), or kept from the files a rewrite (compaction,
/// forgetting) replaces ([`ColumnChoices::of_files`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ColumnChoices {
    /// Columns with bloom filters.
    pub blooms: BTreeSet<String>,
    /// Columns written without a dictionary, in this encoding.
    pub encodings: BTreeMap<String, Encoding>,
}

impl ColumnChoices {
    /// `blooms` and, when `detect`, the text columns of `sample` that look like identifiers;
    /// a column whose values are mostly distinct skips the dictionary, which would only
    /// overflow: text (trace ids, request ids) stores lengths apart from the bytes
    /// (DELTA_LENGTH_BYTE_ARRAY), integers are byte-stream split; zstd compresses both better
    /// than plain values.
    pub(crate) fn of_sample(sample: &RecordBatch, mut blooms: BTreeSet<String>, detect: bool) -> Self {
        use arrow::array::AsArray;
        use arrow::datatypes::Int64Type;
        let mut encodings = BTreeMap::new();
        for (field, column) in sample.schema().fields().iter().zip(sample.columns()) {
            if let Some(strings) = column.as_string_opt::<i32>() {
                // Identifiers are short and have no whitespace; looked at in the same pass.
                let mut identifier_shaped = true;
                let seen = Sampled::of(strings.iter().flatten().inspect(|v| {
                    identifier_shaped &= v.len() <= 64 && !v.bytes().any(|b| b.is_ascii_whitespace());
                }));
                if seen.mostly_distinct() {
                    encodings.insert(field.name().clone(), Encoding::DELTA_LENGTH_BYTE_ARRAY);
                }
                if detect && identifier_shaped && seen.identifiers() {
                    blooms.insert(field.name().clone());
                }
            } else if let Some(ints) = column.as_primitive_opt::<Int64Type>() {
                // Measurements (sizes, counts) rather than codes: split the bytes of each value
                // into streams, which zstd compresses better than a dictionary that overflows.
                if field.name() != TIMESTAMP_COLUMN && Sampled::of(ints.iter().flatten()).mostly_distinct() {
                    encodings.insert(field.name().clone(), Encoding::BYTE_STREAM_SPLIT);
                }
            }
        }
        Self { blooms, encodings }
    }

    /// What the files of `footers` were written with: `blooms` and, when `detect`, every
    /// column some of their chunks have a bloom filter on; a column keeps the encoding
    /// without a dictionary that most of its chunks were written in. A rewrite of files a
    /// commit chose for from its data makes the same choice (without one, a compacted day
    /// stored its trace ids 12 % larger than the commits' files had).
    pub(crate) fn of_files(footers: &[ParquetMetaData], mut blooms: BTreeSet<String>, detect: bool) -> Self {
        let mut chunks: BTreeMap<String, (usize, BTreeMap<Encoding, usize>)> = BTreeMap::new();
        for column in footers.iter().flat_map(|f| f.row_groups()).flat_map(|g| g.columns()) {
            let name = column.column_path().string();
            if detect && column.bloom_filter_offset().is_some() {
                blooms.insert(name.clone());
            }
            let (count, without_dictionary) = chunks.entry(name).or_default();
            *count += 1;
            if column.dictionary_page_offset().is_none() {
                let kept = [Encoding::DELTA_LENGTH_BYTE_ARRAY, Encoding::BYTE_STREAM_SPLIT];
                if let Some(encoding) = kept.into_iter().find(|e| column.encodings_mask().is_set(*e)) {
                    *without_dictionary.entry(encoding).or_default() += 1;
                }
            }
        }
        let encodings = (chunks.into_iter())
            .filter(|(name, _)| name != TIMESTAMP_COLUMN)
            .filter_map(|(name, (count, without))| {
                let (encoding, n) = without.into_iter().max_by_key(|(_, n)| *n)?;
                (n * 2 > count).then_some((name, encoding))
            })
            .collect();
        Self { blooms, encodings }
    }
}

/// The zstd level of every Parquet file logyard writes. Pages are at most about 1 MiB, too
/// little for the deeper match search of higher levels to find more: on the storefront and ALB
/// tables level 1 gives files 1.5 % smaller than level 3 (zstd's and DuckDB's default) and
/// writes them faster (BENCHMARKS.md, "Ingest", run R).
const ZSTD_LEVEL: i32 = 1;

/// Parquet settings for a file: zstd, page statistics, the sorted time column delta-encoded,
/// and the encodings and bloom filters of `choices`, the filters sized for `fpp`.
pub(crate) fn writer_properties(
    choices: &ColumnChoices,
    fpp: f64,
    row_group_rows: usize,
    rows: usize,
) -> WriterProperties {
    use parquet::schema::types::ColumnPath;

    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).expect("valid zstd level")))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_column_dictionary_enabled(ColumnPath::from(TIMESTAMP_COLUMN), false)
        .set_column_encoding(ColumnPath::from(TIMESTAMP_COLUMN), Encoding::DELTA_BINARY_PACKED);
    for (column, encoding) in &choices.encodings {
        let path = ColumnPath::from(column.as_str());
        builder = builder.set_column_dictionary_enabled(path.clone(), false).set_column_encoding(path, *encoding);
    }
    // Sized for a row group of distinct values (or for the rows written, when fewer), then
    // folded down to `fpp` once written. Left at the writer's default (a million values), a
    // filter of a row group of 128 Ki rows started at 1 MiB, and of a commit of 10,000
    // events as large, allocated and folded for every column and row group.
    let ndv = rows.min(row_group_rows).max(1) as u64;
    for column in &choices.blooms {
        let path = ColumnPath::from(column.as_str());
        builder = builder.set_column_bloom_filter_fpp(path.clone(), fpp).set_column_bloom_filter_max_ndv(path, ndv);
    }
    builder.build()
}

/// Rows per Parquet row group by default (`tables.row_group_rows`). A query for one id or one hour reads the row groups its
/// statistics and bloom filters admit, each column's dictionary page whole: at 128 Ki rows
/// (arrow-rs writes 1 Mi) a needle decodes an eighth of the dictionaries, and statistics narrow
/// an hour of a day to one or two row groups, for about 3 % more bytes (BENCHMARKS.md, "Needles").
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Values looked at to tell a mostly-distinct column.
const SAMPLE: usize = 4096;

/// How many of a column's first [`SAMPLE`] values were looked at, and how many were distinct.
struct Sampled {
    values: usize,
    distinct: usize,
}

impl Sampled {
    fn of<T: std::hash::Hash + Eq>(values: impl Iterator<Item = T>) -> Self {
        let mut seen = foldhash::HashSet::with_capacity_and_hasher(SAMPLE, Default::default());
        let mut count = 0usize;
        for value in values.take(SAMPLE) {
            count += 1;
            seen.insert(value);
        }
        Self { values: count, distinct: seen.len() }
    }

    /// More than half distinct (of at least 64 values).
    fn mostly_distinct(&self) -> bool {
        self.values >= 64 && self.distinct * 2 > self.values
    }

    /// Many distinct, as order, trace, customer and session ids are: at least 32, and one in
    /// 16 or more (of at least 64 values).
    fn identifiers(&self) -> bool {
        self.values >= 64 && self.distinct >= 32 && self.distinct * 16 >= self.values
    }
}

/// Delta reads strings back as views in some configurations; logyard builds plain Utf8.
pub(crate) fn normalize(schema: SchemaRef) -> SchemaRef {
    use arrow::datatypes::{DataType, Field};
    if !schema.fields().iter().any(|f| matches!(f.data_type(), DataType::Utf8View | DataType::LargeUtf8)) {
        return schema;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8View | DataType::LargeUtf8 => f.as_ref().clone().with_data_type(DataType::Utf8),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// What `GET /api/v1/streams` shows of a stream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamInfo {
    pub name: String,
    pub table_version: u64,
    pub rows: u64,
    pub bytes: u64,
    pub files: u64,
    /// Earliest and latest event time (RFC 3339), from the files' statistics.
    pub earliest: Option<String>,
    pub latest: Option<String>,
    pub schema: Vec<ColumnInfo>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

impl Tables {
    /// Size, row count, time range and schema of a stream's table.
    pub async fn info(&self, stream: &StreamName) -> Result<Option<StreamInfo>, StorageError> {
        use arrow::array::AsArray;
        use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
        let Some(table) = self.latest(stream).await? else { return Ok(None) };
        let state = table.snapshot().map_err(StorageError::delta("reading table state"))?;
        let schema = state.snapshot().arrow_schema();
        let actions = state.add_actions_table(true).map_err(StorageError::delta("reading file statistics"))?;
        let sum = |name: &str| -> u64 {
            actions
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .map(|a| a.iter().flatten().map(|v| v.max(0) as u64).sum())
                .unwrap_or(0)
        };
        let extreme = |name: &str, min: bool| -> Option<String> {
            let col = actions.column_by_name(name)?;
            let casted = arrow::compute::cast(
                col,
                &arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
            )
            .ok()?;
            let a = casted.as_primitive_opt::<TimestampMicrosecondType>()?;
            let v = if min { arrow::compute::min(a) } else { arrow::compute::max(a) }?;
            chrono::DateTime::from_timestamp_micros(v).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        };
        Ok(Some(StreamInfo {
            name: stream.to_string(),
            table_version: table.version().unwrap_or_default(),
            rows: sum("num_records"),
            bytes: sum("size_bytes"),
            files: actions.num_rows() as u64,
            earliest: extreme("min.timestamp", true),
            latest: extreme("max.timestamp", false),
            schema: schema
                .fields()
                .iter()
                .map(|f| ColumnInfo {
                    name: f.name().clone(),
                    data_type: f.data_type().to_string(),
                    nullable: f.is_nullable(),
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
impl Tables {
    /// Tables in a local directory, with the default storage settings.
    pub(crate) async fn open_local(dir: &std::path::Path) -> Self {
        let location = crate::Location::Local(dir.to_owned());
        Tables::new(Storage::open(location, &Default::default(), Default::default()).await.unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, StringArray};
    use parquet::basic::Encoding;
    use parquet::schema::types::ColumnPath;

    /// Where a build says it has started, then waits to be let go on.
    struct Gate {
        arrived: std::sync::mpsc::SyncSender<()>,
        go: std::sync::Barrier,
    }

    /// A build of events with these ids; the first build waits at `gate` when one is given.
    fn build(ids: &[&str], gate: Option<Arc<Gate>>) -> BuildFn {
        build_field("id", ids, gate)
    }

    /// A build of events with a text field `field` set to each id.
    fn build_field(field: &str, ids: &[&str], gate: Option<Arc<Gate>>) -> BuildFn {
        use logyard_core::batch::{BatchBuilder, PendingEvent};
        let texts: Vec<String> = ids.iter().map(|id| format!("{{\"{field}\":\"{id}\"}}")).collect();
        let gate = Mutex::new(gate);
        Arc::new(move |schema, _| {
            if let Some(g) = gate.lock().unwrap().take() {
                g.arrived.send(()).unwrap();
                g.go.wait();
            }
            let mut b = BatchBuilder::new(schema, 100);
            for t in &texts {
                let source = logyard_core::event::TimeSource::Received;
                b.push(PendingEvent { time: 1_764_064_800_000_000, source, text: t })?;
            }
            Ok(Some(vec![b.finish()?]))
        })
    }

    /// Two processes' views of the tables under `dir`.
    async fn two_processes(dir: &std::path::Path) -> (Tables, Tables) {
        (Tables::open_local(dir).await, Tables::open_local(dir).await)
    }

    async fn rows(tables: &Tables, stream: &StreamName) -> u64 {
        tables.info(stream).await.unwrap().map_or(0, |i| i.rows)
    }

    /// The rows of the stream's table that meet `predicate` (SQL).
    async fn count_where(tables: &Tables, stream: &StreamName, predicate: &str) -> i64 {
        use arrow::array::AsArray;
        use deltalake::datafusion::prelude::SessionContext;
        let table = tables.latest(stream).await.unwrap().unwrap();
        let ctx = SessionContext::new();
        ctx.register_table("t", table.table_provider().await.unwrap()).unwrap();
        let sql = format!("SELECT count(*) FROM t WHERE {predicate}");
        let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        batches[0].column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0)
    }

    /// The transaction version kept from this process's last commit is brought up to date
    /// from the commits since: another process's commit under the same id is seen (as a
    /// second replica finishing an upload), and one under another id changes nothing.
    /// (`tests/s3.rs` counts the reads on S3.)
    #[tokio::test]
    async fn the_transaction_version_follows_the_commits_of_other_processes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = two_processes(dir.path()).await;
        let stream = StreamName::new("txns").unwrap();
        for n in 1..=30 {
            a.append(&stream, "writer-a", n, build(&["x"], None)).await.unwrap();
        }
        // Another process commits under other ids, then under the same id with a later
        // version (as a second replica finishing an upload): both are seen.
        b.append(&stream, "writer-b", 1, build(&["y"], None)).await.unwrap();
        b.append(&stream, "writer-a", 100, build(&["z"], None)).await.unwrap();
        let outcome = a.append(&stream, "writer-a", 50, build(&["dup"], None)).await.unwrap();
        assert!(matches!(outcome, AppendOutcome::AlreadyCommitted), "{outcome:?}");
        assert_eq!(a.transaction_version(&stream, "writer-a").await.unwrap(), Some(100));
        assert_eq!(a.transaction_version(&stream, "writer-b").await.unwrap(), Some(1));
        assert_eq!(rows(&a, &stream).await, 32);
    }

    /// A flush of events on both sides of midnight, not in time order, lands in each day's
    /// partition (the append path hands delta-rs a date's run of rows at a time).
    #[tokio::test]
    async fn a_flush_across_midnight_lands_in_both_days() {
        use logyard_core::batch::{BatchBuilder, PendingEvent};
        let dir = tempfile::tempdir().unwrap();
        let (tables, _) = two_processes(dir.path()).await;
        let stream = StreamName::new("midnight").unwrap();
        let midnight: i64 = 1_764_115_200_000_000; // 2025-11-26T00:00:00Z
        let at = |seconds: &'static [i64]| -> BuildFn {
            Arc::new(move |schema, _| {
                let mut b = BatchBuilder::new(schema, 100);
                for s in seconds {
                    let source = logyard_core::event::TimeSource::Received;
                    b.push(PendingEvent { time: midnight + s * 1_000_000, source, text: "{\"a\":1}" })?;
                }
                Ok(Some(vec![b.finish()?]))
            })
        };
        // The first commit creates the table; the second takes the append path.
        tables.append(&stream, "w", 1, at(&[-7200])).await.unwrap();
        tables.append(&stream, "w", 2, at(&[-2, -1, 1, -3, 2, 3])).await.unwrap();
        assert_eq!(count_where(&tables, &stream, "date = DATE '2025-11-25'").await, 4);
        assert_eq!(count_where(&tables, &stream, "date = DATE '2025-11-26'").await, 3);
        let misplaced = "(date = DATE '2025-11-25') <> (timestamp < TIMESTAMP '2025-11-26T00:00:00Z')";
        assert_eq!(count_where(&tables, &stream, misplaced).await, 0, "each row in its own day");
        let table = tables.latest(&stream).await.unwrap().unwrap();
        let mut days: Vec<String> = table
            .get_file_uris()
            .unwrap()
            .map(|uri| uri.split('/').find(|p| p.starts_with("date=")).unwrap().to_owned())
            .collect();
        days.sort();
        assert_eq!(days, ["date=2025-11-25", "date=2025-11-25", "date=2025-11-26"], "one file per commit and day");
    }

    /// A reader whose table has not changed asks for the next commit by name and lists
    /// nothing; another writer's commit is seen at its next look.
    #[tokio::test]
    async fn an_unchanged_table_is_not_listed_again_and_another_writers_commit_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let location = crate::Location::Local(dir.path().to_owned());
        let writer =
            Tables::new(Storage::open(location.clone(), &Default::default(), Default::default()).await.unwrap());
        let metrics = crate::StoreMetrics::default();
        let reader = Tables::new(Storage::open(location, &Default::default(), metrics.clone()).await.unwrap());
        let count = |operation| metrics.requests.get_or_create(&crate::metered::OpLabels { operation }).get();
        let stream = StreamName::new("probed").unwrap();

        writer.append(&stream, "test", 1, build(&["a"], None)).await.unwrap();
        let version = reader.latest(&stream).await.unwrap().unwrap().version().unwrap();
        let (lists, heads) = (count("list"), count("head"));
        for _ in 0..3 {
            assert_eq!(reader.latest(&stream).await.unwrap().unwrap().version(), Some(version));
        }
        assert_eq!(count("list"), lists, "an unchanged table is not listed");
        assert_eq!(count("head"), heads + 3, "one look for the next commit per refresh");

        writer.append(&stream, "test", 2, build(&["b", "c"], None)).await.unwrap();
        assert_eq!(reader.latest(&stream).await.unwrap().unwrap().version(), Some(version + 1));
        assert_eq!(rows(&reader, &stream).await, 3);
    }

    /// Two writers take over one piece of work from the same transaction version: exactly one
    /// lands, the other learns the winner's version, even when both built their rows against
    /// the same table version (Delta's conflict check on the application id decides).
    #[tokio::test]
    async fn fenced_appends_under_one_app_id_land_once() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = two_processes(dir.path()).await;
        let (one, two) = (Arc::new(one), Arc::new(two));
        let stream = StreamName::new("fenced").unwrap();
        let app = "kinesis/shop/shardId-000000000001";

        let first = one.append_after(&stream, app, None, 1, build(&["a", "b"], None)).await.unwrap();
        assert!(matches!(first, FencedOutcome::Appended(AppendOutcome::Committed { rows: 2, .. })), "{first:?}");
        // The same attempt again (a retry after a lost answer): already there.
        let again = one.append_after(&stream, app, None, 1, build(&["a", "b"], None)).await.unwrap();
        assert_eq!(again, FencedOutcome::Appended(AppendOutcome::AlreadyCommitted));

        // Both start from version 1; the second builds its rows while the first commits.
        let (arrived, at_gate) = std::sync::mpsc::sync_channel(1);
        let gate = Arc::new(Gate { arrived, go: std::sync::Barrier::new(2) });
        let racing = {
            let (two, stream, gate) = (two.clone(), stream.clone(), gate.clone());
            tokio::spawn(async move { two.append_after(&stream, app, Some(1), 3, build(&["x"], Some(gate))).await })
        };
        tokio::task::spawn_blocking(move || at_gate.recv_timeout(Duration::from_secs(60)).unwrap()).await.unwrap();
        let winner = one.append_after(&stream, app, Some(1), 2, build(&["c"], None)).await.unwrap();
        assert!(matches!(winner, FencedOutcome::Appended(AppendOutcome::Committed { rows: 1, .. })), "{winner:?}");
        tokio::task::spawn_blocking(move || gate.go.wait()).await.unwrap();
        let loser = racing.await.unwrap().unwrap();
        assert_eq!(loser, FencedOutcome::Superseded { committed: Some(2) });
        // A writer still at version 1 is fenced out without building anything.
        let late = two.append_after(&stream, app, Some(1), 4, build(&["y"], None)).await.unwrap();
        assert_eq!(late, FencedOutcome::Superseded { committed: Some(2) });
        assert_eq!(rows(&two, &stream).await, 3);
        assert_eq!(two.transaction_version(&stream, app).await.unwrap(), Some(2));
    }

    fn commit_json(dir: &std::path::Path, stream: &str, version: u64) -> String {
        std::fs::read_to_string(dir.join(format!("{TABLES_DIR}/{stream}/_delta_log/{version:020}.json"))).unwrap()
    }

    /// Two processes append to one table in turns, each from a view of it the other has
    /// moved on: a commit that finds its version taken goes after the winner's, and one
    /// whose winner added a column is built again against the new schema. Every row lands
    /// once, each commit of the append path carries its statistics and transaction.
    #[tokio::test]
    async fn appends_of_two_processes_interleave_and_follow_each_others_columns() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = two_processes(dir.path()).await;
        let stream = StreamName::new("turns").unwrap();
        let committed = |o: AppendOutcome| match o {
            AppendOutcome::Committed { table_version, .. } => table_version,
            other => panic!("{other:?}"),
        };
        assert_eq!(committed(a.append(&stream, "a", 1, build(&["a1"], None)).await.unwrap()), 0);
        assert_eq!(committed(a.append(&stream, "a", 2, build(&["a2"], None)).await.unwrap()), 1);
        assert_eq!(committed(b.append(&stream, "b", 1, build(&["b1"], None)).await.unwrap()), 2);
        // `a` last saw version 1: version 2 is taken, it commits 3.
        assert_eq!(committed(a.append(&stream, "a", 3, build(&["a3", "a4"], None)).await.unwrap()), 3);
        // `b` adds a column (a commit of the schema alone, then its rows); `a`, behind, finds
        // the new schema and builds again.
        assert_eq!(committed(b.append(&stream, "b", 2, build_field("region", &["eu"], None)).await.unwrap()), 5);
        let columns = commit_json(dir.path(), "turns", 4);
        assert!(columns.contains(r#""operation":"ADD COLUMN""#) && columns.contains("region"), "{columns}");
        assert!(!columns.contains(r#"{"add":"#), "{columns}");
        assert_eq!(committed(a.append(&stream, "a", 4, build(&["a5"], None)).await.unwrap()), 6);
        assert_eq!(rows(&a, &stream).await, 7);
        let schema = a.info(&stream).await.unwrap().unwrap().schema;
        assert!(schema.iter().any(|c| c.name == "region"), "{schema:?}");
        assert_eq!(count_where(&a, &stream, "region = 'eu'").await, 1);

        let fast = commit_json(dir.path(), "turns", 6);
        assert!(fast.contains(r#""engineInfo":"logyard"#), "{fast}");
        assert!(fast.contains(r#"{"txn":{"appId":"a","version":4"#), "{fast}");
        assert!(fast.contains(r#"\"minValues\":{"#) && fast.contains(r#"\"id\":\"a5\""#), "{fast}");
        assert_eq!(a.transaction_version(&stream, "a").await.unwrap(), Some(4));
        assert_eq!(a.transaction_version(&stream, "b").await.unwrap(), Some(2));
    }

    /// A process whose last commit is far behind the table's latest version (another
    /// process committed 120 times since) loads the table's head again after a few lost
    /// races instead of walking the log one put at a time, and commits once.
    #[tokio::test]
    async fn a_writer_far_behind_the_table_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = two_processes(dir.path()).await;
        let stream = StreamName::new("behind").unwrap();
        a.append(&stream, "a", 1, build(&["a1"], None)).await.unwrap();
        for n in 1..=120 {
            b.append(&stream, "b", n, build(&["b"], None)).await.unwrap();
        }
        let outcome = a.append(&stream, "a", 2, build(&["a2"], None)).await.unwrap();
        assert!(matches!(outcome, AppendOutcome::Committed { table_version: 121, rows: 1 }), "{outcome:?}");
        assert_eq!(rows(&b, &stream).await, 122);
        assert_eq!(b.transaction_version(&stream, "a").await.unwrap(), Some(2));
    }

    /// The append path writes a checkpoint every `delta.checkpointInterval` commits (100),
    /// as delta-rs does after its own, and a new reader starts from it.
    #[tokio::test]
    async fn every_hundredth_commit_writes_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (tables, reader) = two_processes(dir.path()).await;
        let stream = StreamName::new("checked").unwrap();
        for n in 1..=101 {
            tables.append(&stream, "w", n, build(&["x"], None)).await.unwrap();
        }
        let log = dir.path().join(format!("{TABLES_DIR}/checked/_delta_log"));
        assert!(log.join(format!("{:020}.checkpoint.parquet", 99)).exists());
        assert!(!log.join(format!("{:020}.checkpoint.parquet", 100)).exists());
        let last: serde_json::Value =
            serde_json::from_slice(&std::fs::read(log.join("_last_checkpoint")).unwrap()).unwrap();
        assert_eq!(last["version"], 99);
        assert_eq!(rows(&reader, &stream).await, 101);
        assert_eq!(reader.transaction_version(&stream, "w").await.unwrap(), Some(101));
    }

    /// A stream's table after a first small append (so that later appends take the append
    /// path), and batches of `rows` distinct ids in its schema.
    async fn table_and_rows(tables: &Tables, stream: &StreamName, rows: usize) -> Vec<RecordBatch> {
        tables.append(stream, "w", 1, build(&["first"], None)).await.unwrap();
        let table = tables.latest(stream).await.unwrap().unwrap();
        let schema = normalize(table.snapshot().unwrap().snapshot().arrow_schema());
        let ids: Vec<String> =
            (0..rows).map(|i| format!("{:032x}", (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15))).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        build(&ids, None)(schema, None).unwrap().unwrap()
    }

    /// A flush of two half row groups or more is encoded into files at once, one per thread
    /// allowed, consecutive runs of its rows, committed together.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_flush_is_encoded_into_files_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let tables = Tables::open_local(dir.path()).await.with_row_group_rows(1000).with_encode_threads(2);
        let stream = StreamName::new("hot").unwrap();
        let batches = table_and_rows(&tables, &stream, 5000).await;
        let outcome = tables.append(&stream, "w", 2, Arc::new(move |_, _| Ok(Some(batches.clone())))).await.unwrap();
        assert!(matches!(outcome, AppendOutcome::Committed { rows: 5000, table_version: 1 }), "{outcome:?}");
        let commit = commit_json(dir.path(), "hot", 1);
        let records: Vec<i64> = commit
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap().get("add").cloned())
            .map(|add| {
                let stats: serde_json::Value = serde_json::from_str(add["stats"].as_str().unwrap()).unwrap();
                stats["numRecords"].as_i64().unwrap()
            })
            .collect();
        assert_eq!(records, vec![2500, 2500]);
        assert_eq!(rows(&tables, &stream).await, 5001);
        // Below two half row groups, one file.
        let warm = StreamName::new("warm").unwrap();
        let batches = table_and_rows(&tables, &warm, 999).await;
        tables.append(&warm, "w", 2, Arc::new(move |_, _| Ok(Some(batches.clone())))).await.unwrap();
        assert_eq!(commit_json(dir.path(), "warm", 1).lines().filter(|l| l.starts_with("{\"add\"")).count(), 1);
    }

    /// Encoding a flush leaves the runtime's thread free: on a runtime of one thread, a
    /// task ticking every millisecond keeps ticking while a large append is encoded.
    #[tokio::test(flavor = "current_thread")]
    async fn encoding_a_flush_does_not_hold_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let (tables, _) = two_processes(dir.path()).await;
        let stream = StreamName::new("busy").unwrap();
        let batches = table_and_rows(&tables, &stream, 200_000).await;
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = tokio::spawn({
            let done = done.clone();
            async move {
                let mut longest = Duration::ZERO;
                let mut last = std::time::Instant::now();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    longest = longest.max(last.elapsed());
                    last = std::time::Instant::now();
                }
                longest
            }
        });
        tokio::task::yield_now().await;
        let started = std::time::Instant::now();
        tables.append(&stream, "w", 2, Arc::new(move |_, _| Ok(Some(batches.clone())))).await.unwrap();
        let took = started.elapsed();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let longest = ticker.await.unwrap();
        assert!(longest * 4 < took, "the ticker waited {longest:?} at once during an append of {took:?}");
    }

    /// A commit's sample of 1000 events: distinct trace ids, two methods, sizes, three codes.
    fn sample() -> RecordBatch {
        let distinct: ArrayRef = Arc::new(StringArray::from_iter_values((0..1000).map(|i| format!("{i:032x}"))));
        let repeated: ArrayRef = Arc::new(StringArray::from_iter_values((0..1000).map(|i| ["GET", "POST"][i % 2])));
        let sizes: ArrayRef =
            Arc::new(arrow::array::Int64Array::from_iter_values((0..1000).map(|i| i * 7919 % 100_003)));
        let codes: ArrayRef =
            Arc::new(arrow::array::Int64Array::from_iter_values((0..1000).map(|i| [200, 404, 500][i % 3])));
        RecordBatch::try_from_iter([("trace_id", distinct), ("method", repeated), ("bytes", sizes), ("status", codes)])
            .unwrap()
    }

    #[test]
    fn encodings_follow_the_data() {
        let choices = ColumnChoices::of_sample(&sample(), BTreeSet::from(["status".to_owned()]), true);
        let props = writer_properties(&choices, 0.05, ROW_GROUP_ROWS, 1000);
        let col = |n: &str| ColumnPath::from(n);
        assert!(!props.dictionary_enabled(&col("trace_id")));
        assert_eq!(props.encoding(&col("trace_id")), Some(Encoding::DELTA_LENGTH_BYTE_ARRAY));
        assert!(props.dictionary_enabled(&col("method")));
        assert_eq!(props.encoding(&col("bytes")), Some(Encoding::BYTE_STREAM_SPLIT));
        assert!(props.dictionary_enabled(&col("status")));
        assert_eq!(props.encoding(&col(TIMESTAMP_COLUMN)), Some(Encoding::DELTA_BINARY_PACKED));
        assert!(!props.dictionary_enabled(&col(TIMESTAMP_COLUMN)));
        // Bloom filters: the configured column, and the text one that looks like identifiers.
        assert!(props.bloom_filter_properties(&col("trace_id")).is_some());
        assert!(props.bloom_filter_properties(&col("status")).is_some());
        assert!(props.bloom_filter_properties(&col("method")).is_none());
        assert!(props.bloom_filter_properties(&col("bytes")).is_none());
        // Sized for the rows written (1000, fewer than a row group), then folded.
        assert_eq!(props.bloom_filter_properties(&col("trace_id")).unwrap().ndv(), 1000);
    }

    /// A commit of a full sample decides the encodings and filters of the stream's next commits
    /// of its schema; a commit with a new column, or after a short one, samples again.
    #[tokio::test]
    async fn a_streams_choices_serve_its_next_commits_of_the_same_schema() {
        let dir = tempfile::tempdir().unwrap();
        let tables = Tables::open_local(dir.path()).await;
        let stream = StreamName::new("web").unwrap();
        let ids = |n: usize, distinct: bool| -> ArrayRef {
            Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("{:032x}", if distinct { i } else { 7 }))))
        };
        let batch = |n, distinct| RecordBatch::try_from_iter([("trace_id", ids(n, distinct))]).unwrap();
        let chosen = |b: &RecordBatch| tables.choices(&stream, b);
        let identifiers = ColumnChoices {
            blooms: BTreeSet::from(["trace_id".to_owned()]),
            encodings: BTreeMap::from([("trace_id".to_owned(), Encoding::DELTA_LENGTH_BYTE_ARRAY)]),
        };
        // A short commit decides for itself alone.
        assert_eq!(chosen(&batch(SAMPLE / 4 - 1, false)), ColumnChoices::default());
        assert_eq!(chosen(&batch(SAMPLE, true)), identifiers);
        // The next commits of the schema keep those choices, whatever their own values.
        assert_eq!(chosen(&batch(SAMPLE, false)), identifiers);
        assert_eq!(chosen(&batch(10, false)), identifiers);
        // Another schema is sampled: its repeated ids get neither a filter nor an encoding.
        let wider =
            RecordBatch::try_from_iter([("trace_id", ids(SAMPLE, false)), ("route", ids(SAMPLE, false))]).unwrap();
        assert_eq!(chosen(&wider), ColumnChoices::default());
        // Choices older than their time are made again.
        tables.chosen.lock().unwrap().get_mut(&stream).unwrap().at -= CHOICES_KEPT;
        let wider_ids =
            RecordBatch::try_from_iter([("trace_id", ids(SAMPLE, true)), ("route", ids(SAMPLE, false))]).unwrap();
        assert_eq!(chosen(&wider_ids), identifiers);
    }

    /// The footers of files written from a sample's choices give the same choices back, which
    /// is what a compaction of those files writes with; a column written with a dictionary
    /// in most of its chunks gets one again.
    #[test]
    fn a_rewrite_keeps_the_choices_its_files_were_written_with() {
        let write = |batch: &RecordBatch, choices: &ColumnChoices| {
            let props = writer_properties(choices, 0.05, 250, batch.num_rows());
            let mut out = Vec::new();
            let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
            writer.write(batch).unwrap();
            writer.close().unwrap();
            parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&bytes::Bytes::from(out)).unwrap()
        };
        let batch = sample();
        let chosen = ColumnChoices::of_sample(&batch, BTreeSet::from(["status".to_owned()]), true);
        assert_eq!(chosen.encodings.len(), 2, "{chosen:?}");
        assert_eq!(chosen.blooms, BTreeSet::from(["status".to_owned(), "trace_id".to_owned()]));
        let footer = write(&batch, &chosen);
        assert_eq!(footer.num_row_groups(), 4);
        assert_eq!(ColumnChoices::of_files(std::slice::from_ref(&footer), BTreeSet::new(), true), chosen);
        // Without detection only the configured filters are kept; the encodings stay.
        let configured = BTreeSet::from(["method".to_owned()]);
        let kept = ColumnChoices::of_files(std::slice::from_ref(&footer), configured.clone(), false);
        assert_eq!(kept, ColumnChoices { blooms: configured, encodings: chosen.encodings.clone() });
        // Two files with a dictionary for every column outvote one without.
        let plain = write(&batch, &ColumnChoices::default());
        let outvoted = ColumnChoices::of_files(&[footer, plain.clone(), plain], BTreeSet::new(), false);
        assert!(outvoted.encodings.is_empty(), "{outvoted:?}");
    }
}
