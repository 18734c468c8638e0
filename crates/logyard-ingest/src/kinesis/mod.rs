//! Kinesis Data Streams consumer: every shard of a stream into one logyard stream, exactly
//! once.
//!
//! A [`Consumer`] lists the shards, takes leases on its share of them (free ones first, then
//! one at a time from a consumer holding more than its share) and runs a [`ShardWorker`] per
//! shard held. A child shard (after a split or merge) is taken only once its parents are read
//! to their end, so records of one partition key stay in order.
//!
//! Kinesis keeps the records, so it is this path's write-ahead log: a worker holds what it
//! read in memory and commits it to the table in batches (by size or age), then checkpoints.
//! Each commit carries a Delta transaction (application id `kinesis/<stream>/<shard>`,
//! version = the batch number) and only happens while the table's version for that id is the
//! one the worker started from. Before committing, the worker records the batch as pending in
//! the shard's [`checkpoint`] log. So after a crash or a takeover the next holder learns from
//! the table whether the pending batch landed (then it resumes after that batch's last record)
//! or not (then after the checkpoint); a holder that lost its lease while committing loses the
//! race in Delta's conflict check instead of writing twice.
//!
//! Records are decoded like Firehose records ([`logyard_protocols::records::decode_record`]: NDJSON, JSON,
//! text, gzip, CloudWatch Logs subscription envelopes). A record that cannot be decoded is
//! logged with its shard and sequence number and counted as rejected; the others go on.

pub mod checkpoint;
mod get_records;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::ShardIteratorType;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinSet;

use logyard_core::StreamName;
use logyard_core::batch::BatchBuilder;
use logyard_core::encoded::{EVENT_HEADER_BYTES, EventsEncoder};
use logyard_storage::tables::BuildFn;
use logyard_storage::{AppendOutcome, FencedOutcome, Tables};

use crate::IngestMetrics;
use crate::build::{HeldEvents, build_held};
use checkpoint::{Checkpoint, Pending, ShardLog};
use get_records::{Page, RawBody};
use logyard_protocols::Protocol;
use logyard_protocols::records::decode_record;

/// Where a shard with no checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartPosition {
    /// The oldest record kept.
    #[default]
    TrimHorizon,
    /// Records put from now on.
    Latest,
}

/// Settings of one consumer.
#[derive(Debug, Clone)]
pub struct KinesisOptions {
    /// The Kinesis stream: a name or an ARN.
    pub stream: String,
    /// The logyard stream its records go to.
    pub target: StreamName,
    /// This consumer's name in the leases (unique among the consumers of the stream).
    pub worker_id: String,
    pub start: StartPosition,
    /// How long a lease holds without renewal; a dead holder's shards move after it.
    pub lease: Duration,
    /// Commit a shard's records when this many bytes of events are held...
    pub flush_bytes: usize,
    /// ... or when the oldest is this old.
    pub flush_age: Duration,
    /// Wait between reads of a shard that has nothing new.
    pub idle_wait: Duration,
    /// Records asked for per GetRecords call (at most 10,000).
    pub records_per_call: i32,
    /// Column cap of the table.
    pub max_columns: usize,
    /// The target stream's masking rules, applied before anything is written.
    pub masker: Option<std::sync::Arc<logyard_core::mask::Masker>>,
}

impl KinesisOptions {
    pub fn new(stream: impl Into<String>, target: StreamName, worker_id: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            target,
            worker_id: worker_id.into(),
            start: StartPosition::TrimHorizon,
            lease: Duration::from_secs(30),
            flush_bytes: 32 << 20,
            flush_age: Duration::from_secs(10),
            idle_wait: Duration::from_secs(1),
            records_per_call: 10_000,
            max_columns: logyard_core::batch::DEFAULT_MAX_COLUMNS,
            masker: None,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    pub stream: String,
    pub shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KinesisLabels {
    pub stream: String,
}

/// Prometheus metrics of the Kinesis consumers.
#[derive(Debug, Clone, Default)]
pub struct KinesisMetrics {
    pub records: Family<KinesisLabels, Counter>,
    pub throttled: Family<KinesisLabels, Counter>,
    pub leases: Family<KinesisLabels, Gauge>,
    pub millis_behind: Family<ShardLabels, Gauge>,
}

impl KinesisMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register("logyard_kinesis_records", "Kinesis records read, by Kinesis stream", self.records.clone());
        r.register(
            "logyard_kinesis_throttled",
            "GetRecords calls refused with ProvisionedThroughputExceeded (retried with backoff)",
            self.throttled.clone(),
        );
        r.register("logyard_kinesis_leases", "Kinesis shards this process holds", self.leases.clone());
        r.register(
            "logyard_kinesis_millis_behind_latest",
            "How far behind the newest record of its shard the last read was",
            self.millis_behind.clone(),
        );
    }

    fn stream(&self, stream: &str) -> KinesisLabels {
        KinesisLabels { stream: stream.to_owned() }
    }
}

/// Errors of the consumer.
#[derive(Debug, thiserror::Error)]
pub enum KinesisError {
    #[error("Kinesis {call} on {stream}: {message}")]
    Api { call: &'static str, stream: String, message: String },
    #[error(transparent)]
    Storage(#[from] logyard_storage::StorageError),
    #[error("shard {shard}: {message}")]
    Checkpoint { shard: String, message: String },
}

impl logyard_core::ServiceError for KinesisError {
    fn kind(&self) -> logyard_core::ErrorKind {
        match self {
            KinesisError::Api { .. } => logyard_core::ErrorKind::Unavailable,
            KinesisError::Storage(e) => e.kind(),
            KinesisError::Checkpoint { .. } => logyard_core::ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            KinesisError::Api { .. } => "kinesis_error",
            KinesisError::Storage(e) => e.code(),
            KinesisError::Checkpoint { .. } => "kinesis_checkpoint",
        }
    }
}

/// A shard as `ListShards` gives it.
#[derive(Debug, Clone)]
struct ShardInfo {
    id: String,
    parents: Vec<String>,
}

/// Shared by the consumer and its workers.
struct Context {
    client: Client,
    tables: Arc<Tables>,
    options: KinesisOptions,
    ingest: IngestMetrics,
    metrics: KinesisMetrics,
    /// The target table's schema at this consumer's last commit: the records read after it
    /// build their rows as they are decoded, and the commit does not parse them again.
    schema: Mutex<Option<SchemaRef>>,
}

impl Context {
    fn log(&self, shard: &str) -> ShardLog {
        ShardLog::new(self.tables.storage(), &self.options.stream, self.options.target.as_str(), shard)
    }

    fn api_error(&self, call: &'static str, e: impl std::error::Error + 'static) -> KinesisError {
        KinesisError::Api { call, stream: self.options.stream.clone(), message: logyard_core::error_chain(&e) }
    }

    fn app_id(&self, shard: &str) -> String {
        format!("kinesis/{}/{shard}", checkpoint::short_name(&self.options.stream))
    }
}

/// Reads a Kinesis stream into a logyard stream until stopped; see the module documentation.
pub struct Consumer {
    ctx: Arc<Context>,
}

/// How a worker ended.
#[derive(Debug)]
enum Exit {
    /// The shard is closed and read to its end.
    Finished,
    /// Another consumer took the lease.
    Lost,
    Stopped,
}

impl Consumer {
    pub fn new(
        client: Client,
        tables: Arc<Tables>,
        options: KinesisOptions,
        ingest: IngestMetrics,
        metrics: KinesisMetrics,
    ) -> Self {
        Self { ctx: Arc::new(Context { client, tables, options, ingest, metrics, schema: Mutex::new(None) }) }
    }

    /// Runs until `stop` turns true; then commits what the workers hold and releases their
    /// leases. Errors only when the stream cannot be listed at start.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) -> Result<(), KinesisError> {
        let ctx = &self.ctx;
        let options = &ctx.options;
        // Fail early on a wrong stream name or missing permission.
        self.list_shards().await?;
        tracing::info!(stream = %options.stream, target = %options.target, worker = %options.worker_id, "kinesis consumer started");
        let mut workers: JoinSet<(String, Result<Exit, KinesisError>)> = JoinSet::new();
        let mut held: HashSet<String> = HashSet::new();
        let mut finished: HashSet<String> = HashSet::new();
        let sync_every = (options.lease / 3).max(Duration::from_millis(200));
        loop {
            while let Some(done) = workers.try_join_next() {
                self.reaped(done, &mut held, &mut finished);
            }
            if let Err(e) = self.balance(&mut workers, &mut held, &mut finished, &stop).await {
                tracing::warn!(stream = %options.stream, error = %e, "kinesis: shard sync failed; retrying");
            }
            ctx.metrics.leases.get_or_create(&ctx.metrics.stream(&options.stream)).set(held.len() as i64);
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                Some(done) = workers.join_next(), if !workers.is_empty() => self.reaped(done, &mut held, &mut finished),
                _ = tokio::time::sleep(sync_every) => {}
            }
        }
        while let Some(done) = workers.join_next().await {
            self.reaped(done, &mut held, &mut finished);
        }
        ctx.metrics.leases.get_or_create(&ctx.metrics.stream(&options.stream)).set(0);
        tracing::info!(stream = %options.stream, "kinesis consumer stopped");
        Ok(())
    }

    fn reaped(
        &self,
        done: Result<(String, Result<Exit, KinesisError>), tokio::task::JoinError>,
        held: &mut HashSet<String>,
        finished: &mut HashSet<String>,
    ) {
        let stream = &self.ctx.options.stream;
        match done {
            Ok((shard, result)) => {
                held.remove(&shard);
                match result {
                    Ok(Exit::Finished) => {
                        tracing::info!(%stream, %shard, "kinesis: shard read to its end");
                        finished.insert(shard);
                    }
                    Ok(Exit::Lost) => tracing::info!(%stream, %shard, "kinesis: lease taken by another consumer"),
                    Ok(Exit::Stopped) => {}
                    Err(e) => {
                        tracing::error!(%stream, %shard, error = %e, "kinesis: shard worker failed; it will be retried")
                    }
                }
            }
            Err(e) => tracing::error!(%stream, error = %e, "kinesis: shard worker panicked"),
        }
    }

    async fn list_shards(&self) -> Result<Vec<ShardInfo>, KinesisError> {
        let ctx = &self.ctx;
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut call = ctx.client.list_shards();
            call = match &token {
                Some(t) => call.next_token(t),
                None if ctx.options.stream.starts_with("arn:") => call.stream_arn(&ctx.options.stream),
                None => call.stream_name(&ctx.options.stream),
            };
            let out = call.send().await.map_err(|e| ctx.api_error("ListShards", e))?;
            for s in out.shards() {
                let parents = [s.parent_shard_id(), s.adjacent_parent_shard_id()]
                    .into_iter()
                    .flatten()
                    .map(str::to_owned)
                    .collect();
                shards.push(ShardInfo { id: s.shard_id().to_owned(), parents });
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(shards),
            }
        }
    }

    /// Takes free shards up to this consumer's share, or one from a consumer above its share.
    async fn balance(
        &self,
        workers: &mut JoinSet<(String, Result<Exit, KinesisError>)>,
        held: &mut HashSet<String>,
        finished: &mut HashSet<String>,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), KinesisError> {
        let ctx = &self.ctx;
        let me = &ctx.options.worker_id;
        let shards = self.list_shards().await?;
        let listed: HashSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
        let mut entries: HashMap<String, Option<(u64, Checkpoint)>> = HashMap::new();
        for shard in &shards {
            if !finished.contains(&shard.id) && !held.contains(&shard.id) {
                let latest = ctx.log(&shard.id).latest().await?;
                if latest.as_ref().is_some_and(|(_, c)| c.finished) {
                    finished.insert(shard.id.clone());
                }
                entries.insert(shard.id.clone(), latest);
            }
        }
        let ready = |s: &ShardInfo| {
            !finished.contains(&s.id) && s.parents.iter().all(|p| finished.contains(p) || !listed.contains(p.as_str()))
        };
        let now = now_ms();
        let mut per_owner: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut free = Vec::new();
        let mut eligible = 0usize;
        for s in shards.iter().filter(|s| ready(s)) {
            eligible += 1;
            if held.contains(&s.id) {
                continue;
            }
            match entries.get(&s.id).and_then(Option::as_ref) {
                Some((_, c)) if c.held(now) && c.owner != *me => per_owner.entry(&c.owner).or_default().push(&s.id),
                _ => free.push(s.id.as_str()),
            }
        }
        let consumers = per_owner.len() + 1;
        let share = eligible.div_ceil(consumers);
        let mut wanted: Vec<&str> = free.into_iter().take(share.saturating_sub(held.len())).collect();
        if wanted.is_empty() && held.len() < share {
            // Nothing free: one shard from the consumer holding the most, if above its share.
            if let Some((_, theirs)) = per_owner.iter().filter(|(_, v)| v.len() > share).max_by_key(|(_, v)| v.len()) {
                wanted.extend(theirs.first());
            }
        }
        for shard in wanted {
            let (index, previous) = entries.get(shard).cloned().flatten().unwrap_or_default();
            let entry =
                Checkpoint { owner: me.clone(), lease_until_ms: now_ms() + millis(ctx.options.lease), ..previous };
            if !ctx.log(shard).write(index + 1, &entry).await? {
                continue;
            }
            tracing::info!(stream = %ctx.options.stream, %shard, worker = %me, batch = entry.batch, "kinesis: lease taken");
            held.insert(shard.to_owned());
            let worker = ShardWorker::new(ctx.clone(), shard.to_owned(), index + 1, entry, stop.clone());
            let shard = shard.to_owned();
            workers.spawn(async move { (shard, worker.run().await) });
        }
        Ok(())
    }
}

/// Reads one shard while it holds its lease.
struct ShardWorker {
    ctx: Arc<Context>,
    shard: String,
    log: ShardLog,
    app_id: String,
    /// Index of the latest entry (written by this worker).
    index: u64,
    entry: Checkpoint,
    stop: watch::Receiver<bool>,
    /// Read and not committed: encoded events per GetRecords call, with their rows when
    /// they were built as the records were decoded.
    buffer: Vec<HeldEvents>,
    /// The encoder of the last page whose rows were built, emptied, for the next page.
    scratch: Option<EventsEncoder>,
    buffer_bytes: usize,
    buffer_events: usize,
    buffer_since: Option<Instant>,
    /// Sequence number of the last record read.
    last_read: Option<String>,
}

impl ShardWorker {
    fn new(ctx: Arc<Context>, shard: String, index: u64, entry: Checkpoint, stop: watch::Receiver<bool>) -> Self {
        let log = ctx.log(&shard);
        let app_id = ctx.app_id(&shard);
        Self {
            ctx,
            shard,
            log,
            app_id,
            index,
            entry,
            stop,
            buffer: Vec::new(),
            scratch: None,
            buffer_bytes: 0,
            buffer_events: 0,
            buffer_since: None,
            last_read: None,
        }
    }

    async fn run(mut self) -> Result<Exit, KinesisError> {
        let committed = self.ctx.tables.transaction_version(&self.ctx.options.target, &self.app_id).await?;
        let checkpointed = self.entry.batch;
        self.settle(committed)?;
        if self.entry.batch != checkpointed {
            tracing::info!(stream = %self.ctx.options.stream, shard = %self.shard, batch = self.entry.batch, "kinesis: a batch was committed before its checkpoint was stored; reading on after it");
        }
        let mut iterator = self.iterator().await?;
        let mut backoff = Duration::ZERO;
        let mut wait = Duration::ZERO;
        loop {
            if *self.stop.borrow() {
                return self.stop_and_release().await;
            }
            if self.lease_due() && !self.write(self.entry.clone()).await? {
                return Ok(Exit::Lost);
            }
            // No iterator: the shard is closed and read to its end; commit the rest.
            let closed = iterator.is_none();
            if closed || self.flush_due() {
                match self.flush().await? {
                    Flushed::Lost => return Ok(Exit::Lost),
                    Flushed::Rewind => {
                        iterator = self.iterator().await?;
                        continue;
                    }
                    Flushed::Done => {}
                }
            }
            let Some(current) = iterator.clone() else {
                let entry = Checkpoint { finished: true, lease_until_ms: 0, ..self.entry.clone() };
                return Ok(if self.write(entry).await? { Exit::Finished } else { Exit::Lost });
            };
            if !wait.is_zero() {
                let mut stop = self.stop.clone();
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => continue,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            let ctx = self.ctx.clone();
            let raw = RawBody::default();
            let call = ctx
                .client
                .get_records()
                .shard_iterator(current)
                .limit(ctx.options.records_per_call)
                .customize()
                .interceptor(raw.clone())
                .send()
                .await;
            let body = match call {
                Ok(_) => match raw.bytes().await {
                    Some(Ok(body)) => Ok(body),
                    Some(Err(e)) => Err(format!("reading the answer: {e}")),
                    None => Err("the answer had no body".to_owned()),
                },
                Err(e) => {
                    let service = e.as_service_error();
                    if service.is_some_and(|s| {
                        s.is_provisioned_throughput_exceeded_exception() || s.is_kms_throttling_exception()
                    }) {
                        ctx.metrics.throttled.get_or_create(&ctx.metrics.stream(&ctx.options.stream)).inc();
                        backoff = (backoff * 2)
                            .clamp(Duration::from_millis(200), (ctx.options.lease / 4).min(Duration::from_secs(10)));
                        tracing::info!(stream = %ctx.options.stream, shard = %self.shard, wait_ms = backoff.as_millis() as u64, "kinesis: throughput exceeded; backing off");
                        wait = jitter(backoff);
                        continue;
                    } else if service.is_some_and(|s| s.is_expired_iterator_exception()) {
                        iterator = self.iterator().await?;
                        wait = Duration::ZERO;
                        continue;
                    }
                    Err(logyard_core::error_chain(&e))
                }
            };
            let parsed = body.as_deref().map_err(String::clone).and_then(|b| {
                Page::parse(b).map_err(|e| format!("GetRecords answered with a body that is not its JSON: {e}"))
            });
            let page = match parsed {
                Ok(page) => {
                    backoff = Duration::ZERO;
                    page
                }
                Err(error) => {
                    tracing::warn!(stream = %ctx.options.stream, shard = %self.shard, %error, "kinesis: GetRecords failed; retrying");
                    backoff = (backoff * 2).clamp(Duration::from_millis(500), Duration::from_secs(10));
                    wait = jitter(backoff);
                    continue;
                }
            };
            let behind = page.millis_behind_latest.unwrap_or(0);
            ctx.metrics
                .millis_behind
                .get_or_create(&ShardLabels { stream: ctx.options.stream.clone(), shard: self.shard.clone() })
                .set(behind);
            self.take(&page.records);
            // At most five reads a second per shard (the Kinesis limit); slower when idle.
            wait =
                if page.records.is_empty() || behind == 0 { ctx.options.idle_wait } else { Duration::from_millis(200) };
            iterator = page.next_shard_iterator;
        }
    }

    /// Decodes records into the buffer.
    fn take(&mut self, records: &[get_records::Record<'_>]) {
        let Some(last) = records.last() else { return };
        let ctx = &self.ctx;
        let target = ctx.options.target.as_str();
        let room = records.iter().map(|r| r.data.len() / 4 * 3 + EVENT_HEADER_BYTES).sum();
        let mut events = self.scratch.take().unwrap_or_else(|| EventsEncoder::with_capacity(room));
        // Masking rewrites events after they are decoded: their rows are built at the commit.
        let schema = ctx.schema.lock().expect("schema lock").clone().filter(|_| ctx.options.masker.is_none());
        let mut rows = schema.map(|s| BatchBuilder::with_capacity(s, ctx.options.max_columns, records.len()));
        let mut data = Vec::new();
        let (mut accepted, mut rejected) = (0usize, 0usize);
        for r in records {
            let arrived = r.arrived_micros().unwrap_or_else(logyard_core::time::now_micros);
            let decoded = r
                .data_into(&mut data)
                .map_err(|e| format!("data is not base64: {e}"))
                .and_then(|()| decode_record(&data, arrived, &mut events, &mut rows).map_err(|e| e.to_string()));
            match decoded {
                Ok(outcome) => {
                    accepted += outcome.events;
                    rejected += outcome.rejected;
                }
                Err(e) => {
                    rejected += 1;
                    tracing::warn!(stream = %ctx.options.stream, shard = %self.shard, sequence = %r.sequence_number, error = %e, "kinesis: record skipped");
                }
            }
        }
        ctx.metrics.records.get_or_create(&ctx.metrics.stream(&ctx.options.stream)).inc_by(records.len() as u64);
        ctx.ingest.rejected(Some(target), Protocol::Kinesis, rejected);
        self.buffer_events += accepted;
        self.last_read = Some(last.sequence_number.clone().into_owned());
        if let Some(masker) = &ctx.options.masker
            && !events.is_empty()
        {
            events = match crate::mask_events(masker, target, events, &ctx.ingest) {
                Ok(masked) => masked,
                Err(e) => {
                    // Never written unmasked: the records are counted rejected instead.
                    tracing::error!(stream = %ctx.options.stream, shard = %self.shard, error = %e, "kinesis: records skipped");
                    ctx.ingest.rejected(Some(target), Protocol::Kinesis, accepted);
                    self.buffer_events -= accepted;
                    EventsEncoder::default()
                }
            };
        }
        if !events.is_empty() {
            let rows = rows
                .and_then(|rows| rows.finish_prepared().ok().flatten())
                .filter(|rows| rows.num_rows() == events.len());
            self.buffer_bytes += events.text_bytes();
            match rows {
                // The events were needed for their rows only: their memory takes the next page.
                Some(rows) => {
                    events.clear();
                    self.scratch = Some(events);
                    self.buffer.push(HeldEvents::Prepared(rows));
                }
                None => self.buffer.push(HeldEvents::Encoded(events.finish())),
            }
        } else {
            events.clear();
            self.scratch = Some(events);
        }
        self.buffer_since.get_or_insert_with(Instant::now);
    }

    fn settle(&mut self, committed: Option<i64>) -> Result<(), KinesisError> {
        self.entry
            .settle(committed)
            .map_err(|e| KinesisError::Checkpoint { shard: self.shard.clone(), message: e.to_string() })
    }

    /// An iterator after the checkpoint (or at the start position when there is none).
    async fn iterator(&mut self) -> Result<Option<String>, KinesisError> {
        self.clear();
        let ctx = &self.ctx;
        let options = &ctx.options;
        let mut call = ctx.client.get_shard_iterator().shard_id(&self.shard);
        call = if options.stream.starts_with("arn:") {
            call.stream_arn(&options.stream)
        } else {
            call.stream_name(&options.stream)
        };
        call = match (&self.entry.sequence, options.start) {
            (Some(seq), _) => {
                call.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(seq)
            }
            (None, StartPosition::TrimHorizon) => call.shard_iterator_type(ShardIteratorType::TrimHorizon),
            (None, StartPosition::Latest) => call.shard_iterator_type(ShardIteratorType::Latest),
        };
        let out = call.send().await.map_err(|e| ctx.api_error("GetShardIterator", e))?;
        Ok(out.shard_iterator().map(str::to_owned))
    }

    fn clear(&mut self) {
        self.buffer.clear();
        self.buffer_bytes = 0;
        self.buffer_events = 0;
        self.buffer_since = None;
        self.last_read = None;
    }

    fn lease_due(&self) -> bool {
        // Renewed when a third of the lease is left... two thirds of it are spent.
        self.entry.lease_until_ms - now_ms() < millis(self.ctx.options.lease) * 2 / 3
    }

    /// Whether the buffer is to be committed: a flush step is held, or its oldest record is
    /// old. Until this consumer's first commit a sixteenth of a step will do, so that the
    /// records after it build their rows as they are read ([`Context::schema`]).
    fn flush_due(&self) -> bool {
        let options = &self.ctx.options;
        let step = if self.ctx.schema.lock().expect("schema lock").is_some() {
            options.flush_bytes
        } else {
            (options.flush_bytes / 16).max(1)
        };
        self.buffer_bytes >= step || self.buffer_since.is_some_and(|t| t.elapsed() >= options.flush_age)
    }

    /// Appends the next entry (renewing the lease); `false` when the lease was lost.
    async fn write(&mut self, mut entry: Checkpoint) -> Result<bool, KinesisError> {
        if entry.lease_until_ms != 0 {
            entry.lease_until_ms = now_ms() + millis(self.ctx.options.lease);
        }
        if !self.log.write(self.index + 1, &entry).await? {
            return Ok(false);
        }
        self.index += 1;
        self.entry = entry;
        Ok(true)
    }

    /// Commits the buffer: pending entry, fenced append, checkpoint.
    async fn flush(&mut self) -> Result<Flushed, KinesisError> {
        let Some(last) = self.last_read.clone() else { return Ok(Flushed::Done) };
        if self.buffer.is_empty() {
            // Records without events (CloudWatch control messages, rejected lines): nothing to
            // commit, only the position moves.
            let done = Checkpoint { sequence: Some(last), ..self.entry.clone() };
            self.clear();
            return Ok(if self.write(done).await? { Flushed::Done } else { Flushed::Lost });
        }
        let batch = self.entry.next_batch();
        let base = self.entry.base();
        let mut intent = self.entry.clone();
        intent.pending.push(Pending { batch, sequence: last.clone() });
        if !self.write(intent).await? {
            return Ok(Flushed::Lost);
        }
        let started = Instant::now();
        let held = Arc::new(std::mem::take(&mut self.buffer));
        let prepared: u64 = held.iter().map(HeldEvents::prepared_rows).sum();
        let max_columns = self.ctx.options.max_columns;
        // The table's schema as this build leaves it, kept for the records after it once the
        // build commits.
        let made = Arc::new(Mutex::new(None::<SchemaRef>));
        let schema_out = made.clone();
        let build: BuildFn = Arc::new(move |schema, _| {
            let batches =
                build_held(schema, held.iter().enumerate().map(|(i, h)| (i as u64, h.as_held())), max_columns);
            if let Ok(Some(batches)) = &batches {
                *schema_out.lock().expect("build lock") = batches.last().map(RecordBatch::schema);
            }
            batches
        });
        let ctx = self.ctx.clone();
        let outcome = ctx.tables.append_after(&ctx.options.target, &self.app_id, base, batch, build).await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                // The batch may have landed or not; a fresh read from the table settles it.
                ctx.ingest.flush_errors.inc();
                let committed = ctx.tables.transaction_version(&ctx.options.target, &self.app_id).await?;
                self.settle(committed)?;
                tracing::warn!(stream = %ctx.options.stream, shard = %self.shard, error = %e, "kinesis: commit failed; reading again from the checkpoint");
                return Ok(Flushed::Rewind);
            }
        };
        match outcome {
            FencedOutcome::Appended(appended) => {
                let rows = match appended {
                    AppendOutcome::Committed { rows, .. } => {
                        if let Some(schema) = made.lock().expect("build lock").take() {
                            *ctx.schema.lock().expect("schema lock") = Some(schema);
                        }
                        ctx.ingest.rows_built_at_request.inc_by(prepared);
                        rows
                    }
                    AppendOutcome::AlreadyCommitted => 0,
                };
                ctx.ingest.observe_flush(started.elapsed(), rows);
                tracing::debug!(stream = %ctx.options.stream, shard = %self.shard, batch, rows, "kinesis: batch committed");
                if rows > 0 {
                    ctx.ingest.accepted(
                        ctx.options.target.as_str(),
                        Protocol::Kinesis,
                        self.buffer_events,
                        self.buffer_bytes,
                    );
                }
                let done = Checkpoint { batch, sequence: Some(last), pending: Vec::new(), ..self.entry.clone() };
                self.clear();
                Ok(if self.write(done).await? { Flushed::Done } else { Flushed::Lost })
            }
            FencedOutcome::Superseded { committed } => {
                // A former holder's pending batch landed meanwhile: continue after it.
                self.settle(committed)?;
                tracing::info!(stream = %ctx.options.stream, shard = %self.shard, ?committed, "kinesis: an earlier holder's batch landed; reading on after it");
                Ok(Flushed::Rewind)
            }
        }
    }

    async fn stop_and_release(mut self) -> Result<Exit, KinesisError> {
        if let Flushed::Lost = self.flush().await? {
            return Ok(Exit::Lost);
        }
        let released = Checkpoint { lease_until_ms: 0, ..self.entry.clone() };
        self.write(released).await?;
        Ok(Exit::Stopped)
    }
}

enum Flushed {
    Done,
    /// The lease is gone.
    Lost,
    /// The checkpoint moved: read again from it.
    Rewind,
}

fn now_ms() -> i64 {
    logyard_core::time::now_micros() / 1000
}

fn millis(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// `d` plus up to a quarter more, so throttled workers do not retry in step.
fn jitter(d: Duration) -> Duration {
    let nanos = u64::from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos(),
    );
    d + Duration::from_nanos(nanos % (d.as_nanos() as u64 / 4 + 1))
}
