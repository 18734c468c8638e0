//! The write path: write-ahead log -> per-stream buffers -> Delta commits.
//!
//! An accepted request is appended to the WAL; the WAL thread puts the durable record into
//! its stream's buffer (in position order) before the request is answered. The flusher
//! commits a stream's buffer when it is big or old enough, or on request, with the
//! position of its last record as the Delta transaction version; then the WAL may drop the
//! segments that hold only committed records. See `logyard_storage::wal` and
//! `logyard_storage::tables` for the two halves of the contract.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use tokio::sync::{Notify, watch};
use tracing::Instrument;

use logyard_core::StreamName;
use logyard_core::encoded::EventsEncoder;
use logyard_storage::tables::BuildFn;
use logyard_storage::{AppendOutcome, Tables, Wal, WalOptions, WalRecord, WalSink};

use crate::IngestError;
use crate::build::build_batches;
use crate::metrics::IngestMetrics;
use crate::raw::{RawArchiver, RawPayload};
use crate::uploads::bundler::BundleOptions;

/// Settings of the write path.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub wal_dir: std::path::PathBuf,
    pub wal_segment_bytes: u64,
    /// Commit a stream when its buffer holds this many bytes of events.
    pub flush_bytes: usize,
    /// ... or when its oldest buffered event is this old.
    pub flush_age: Duration,
    /// Streams committed at the same time.
    pub flush_concurrency: usize,
    /// Column cap per table (further fields go to `_conflicts`).
    pub max_columns: usize,
    /// How long an `ack=commit` request waits for its commit.
    pub commit_wait: Duration,
    /// Bytes of events held in memory (durable, not yet committed). A request that would
    /// pass it waits until a commit frees room (at most `commit_wait`), which slows senders
    /// to the pace of the commits instead of growing memory without bound.
    pub memory_budget_bytes: usize,
    /// Bytes the write-ahead log may hold before ingest is refused (503) until the flusher
    /// catches up; 0 = half of the space the log's filesystem offers it (free space plus
    /// what the log already holds), measured as it runs.
    pub wal_budget_bytes: u64,
    /// How the request bodies of streams that keep them are bundled into the archive
    /// (`max_age`: how long a body waits for a bundle's worth).
    pub raw: BundleOptions,
}

impl IngestOptions {
    pub fn new(wal_dir: impl Into<std::path::PathBuf>) -> Self {
        Self {
            wal_dir: wal_dir.into(),
            wal_segment_bytes: 64 << 20,
            flush_bytes: 64 << 20,
            flush_age: Duration::from_secs(10),
            flush_concurrency: 4,
            max_columns: logyard_core::batch::DEFAULT_MAX_COLUMNS,
            commit_wait: Duration::from_secs(60),
            memory_budget_bytes: 256 << 20,
            wal_budget_bytes: 0,
            raw: BundleOptions { max_age: Duration::from_secs(60), ..BundleOptions::default() },
        }
    }
}

/// When a request is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ack {
    /// Once the events are fsynced in the write-ahead log.
    #[default]
    Wal,
    /// Once they are committed to the table.
    Commit,
}

#[derive(Debug, Default)]
struct StreamBuffer {
    records: VecDeque<WalRecord>,
    bytes: usize,
    since: Option<Instant>,
    flush_requested: bool,
    flushing: bool,
    /// No flush attempt before this instant (after a failure).
    retry_at: Option<Instant>,
    failures: u32,
}

/// Request bodies of a stream waiting for the archive: (position, encoded [`RawPayload`]).
#[derive(Debug, Default)]
struct RawBuffer {
    records: VecDeque<(u64, Bytes)>,
    bytes: usize,
    since: Option<Instant>,
    flushing: bool,
    retry_at: Option<Instant>,
    failures: u32,
}

/// The buffers, shared with the WAL thread (which fills them).
#[derive(Debug, Default)]
struct Buffers {
    streams: Mutex<HashMap<StreamName, StreamBuffer>>,
    /// Locked after `streams` when both are.
    raw: Mutex<HashMap<StreamName, RawBuffer>>,
    /// Highest position handed over by the WAL.
    delivered: AtomicU64,
    buffered_bytes: AtomicU64,
}

impl WalSink for Buffers {
    fn durable(&self, records: Vec<WalRecord>) {
        let mut streams = self.streams.lock().expect("buffers lock");
        let mut raw_buffers = self.raw.lock().expect("raw buffers lock");
        let now = Instant::now();
        let mut last = 0;
        let mut added = 0usize;
        for mut record in records {
            last = record.position;
            if let Some(raw) = record.raw.take() {
                let buf = raw_buffers.entry(record.stream.clone()).or_default();
                buf.bytes += raw.len();
                added += raw.len();
                buf.since.get_or_insert(now);
                buf.records.push_back((record.position, raw));
            }
            let buf = streams.entry(record.stream.clone()).or_default();
            buf.bytes += record.events.len();
            added += record.events.len();
            buf.since.get_or_insert(now);
            buf.records.push_back(record);
        }
        self.buffered_bytes.fetch_add(added as u64, Ordering::Relaxed);
        self.delivered.fetch_max(last, Ordering::Release);
    }
}

impl Buffers {
    /// The lowest position still needed: everything below it is committed.
    fn low_watermark(&self) -> u64 {
        let streams = self.streams.lock().expect("buffers lock");
        let raw = self.raw.lock().expect("raw buffers lock");
        let delivered = self.delivered.load(Ordering::Acquire);
        streams
            .values()
            .filter_map(|b| b.records.front().map(|r| r.position))
            .chain(raw.values().filter_map(|b| b.records.front().map(|r| r.0)))
            .min()
            .unwrap_or(delivered + 1)
            .min(delivered + 1)
    }
}

/// Room for events in memory, counted in bytes (one semaphore permit per byte). Events
/// replayed from the WAL at start take room without waiting: a debt the first commits pay.
#[derive(Debug)]
struct Memory {
    room: tokio::sync::Semaphore,
    budget: usize,
    debt: AtomicU64,
}

impl Memory {
    fn new(budget: usize, replayed: u64) -> Self {
        let budget = budget.clamp(1, u32::MAX as usize);
        let replayed = replayed as usize;
        let debt = replayed.saturating_sub(budget) as u64;
        Self { room: tokio::sync::Semaphore::new(budget.saturating_sub(replayed)), budget, debt: AtomicU64::new(debt) }
    }

    /// Waits for room for `bytes`, at most `wait`.
    async fn take(&self, bytes: usize, wait: Duration) -> Result<(), IngestError> {
        let n = bytes.clamp(1, self.budget) as u32;
        match tokio::time::timeout(wait, self.room.acquire_many(n)).await {
            Ok(Ok(permit)) => {
                permit.forget();
                Ok(())
            }
            Ok(Err(_)) => Err(IngestError::ShuttingDown),
            Err(_) => Err(IngestError::Busy(wait)),
        }
    }

    /// Gives back the room of `bytes` of events (committed, or never written).
    fn give(&self, bytes: usize) {
        let mut n = bytes as u64;
        let _ = self.debt.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |debt| {
            let pay = debt.min(bytes as u64);
            n = bytes as u64 - pay;
            Some(debt - pay)
        });
        let room = self.budget.saturating_sub(self.room.available_permits()).min(n as usize);
        self.room.add_permits(room);
    }
}

/// The write path of one process.
#[derive(Debug, Clone)]
pub struct Ingestor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    wal: Wal,
    tables: Arc<Tables>,
    raw_archiver: RawArchiver,
    buffers: Arc<Buffers>,
    committed: Mutex<HashMap<StreamName, watch::Sender<u64>>>,
    wake: Notify,
    /// Bounds the streams committed at the same time.
    flush_slots: tokio::sync::Semaphore,
    /// Room for buffered events, in KiB (see [`IngestOptions::memory_budget_bytes`]).
    memory: Memory,
    /// The current write-ahead log budget in bytes (see [`IngestOptions::wal_budget_bytes`]).
    wal_budget: AtomicU64,
    options: IngestOptions,
    metrics: IngestMetrics,
}

impl Ingestor {
    /// Opens the write-ahead log (replaying what it holds into the buffers).
    pub fn open(options: IngestOptions, tables: Arc<Tables>, metrics: IngestMetrics) -> Result<Self, IngestError> {
        let buffers = Arc::new(Buffers::default());
        let wal = Wal::open(
            WalOptions { dir: options.wal_dir.clone(), segment_bytes: options.wal_segment_bytes },
            buffers.clone(),
        )?;
        let replayed = buffers.buffered_bytes.load(Ordering::Relaxed);
        let raw_archiver = RawArchiver::new(tables.storage().clone(), wal.writer_id(), options.raw.clone());
        let this = Self {
            inner: Arc::new(Inner {
                wal,
                tables,
                raw_archiver,
                buffers,
                committed: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                flush_slots: tokio::sync::Semaphore::new(options.flush_concurrency.max(1)),
                memory: Memory::new(options.memory_budget_bytes, replayed),
                wal_budget: AtomicU64::new(u64::MAX),
                options,
                metrics,
            }),
        };
        this.update_wal_budget();
        Ok(this)
    }

    /// Recomputes the write-ahead log budget (a statvfs call when it is automatic).
    fn update_wal_budget(&self) {
        let budget = match self.inner.options.wal_budget_bytes {
            0 => match rustix::fs::statvfs(&self.inner.options.wal_dir) {
                Ok(st) => (st.f_bavail.saturating_mul(st.f_frsize) + self.wal_bytes()) / 2,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the free space of the write-ahead log directory");
                    u64::MAX
                }
            },
            fixed => fixed,
        };
        self.inner.wal_budget.store(budget, Ordering::Relaxed);
        self.inner.metrics.wal_budget.set(budget.min(i64::MAX as u64) as i64);
    }

    /// `Some` while the write-ahead log holds more than its budget: ingest should be refused
    /// until the flusher catches up. Nothing already acknowledged is affected.
    pub fn backpressure(&self) -> Option<Backpressure> {
        let wal_bytes = self.wal_bytes();
        let budget = self.inner.wal_budget.load(Ordering::Relaxed);
        let over = wal_bytes > budget;
        self.inner.metrics.backpressure.set(i64::from(over));
        over.then_some(Backpressure { wal_bytes, budget })
    }

    pub fn writer_id(&self) -> &str {
        self.inner.wal.writer_id()
    }

    pub fn tables(&self) -> &Arc<Tables> {
        &self.inner.tables
    }

    pub fn metrics(&self) -> &IngestMetrics {
        &self.inner.metrics
    }

    /// Bytes of the write-ahead log on disk (pending commit, or not yet reclaimed).
    pub fn wal_bytes(&self) -> u64 {
        self.inner.wal.disk_bytes()
    }

    /// Bytes of events buffered and not yet committed.
    pub fn buffered_bytes(&self) -> u64 {
        self.inner.buffers.buffered_bytes.load(Ordering::Relaxed)
    }

    /// Makes encoded events durable; with [`Ack::Commit`], waits for their commit too.
    /// Returns the WAL position of the record.
    pub async fn append(&self, stream: &StreamName, events: Bytes, ack: Ack) -> Result<u64, IngestError> {
        self.append_with_raw(stream, events, None, ack).await
    }

    /// [`Self::append`] of an encoder's events, counted as accepted (events and bytes) once
    /// durable: the path of the protocols that decode into events (bulk, OTLP, Loki, Firehose).
    pub async fn append_events(
        &self,
        stream: &StreamName,
        events: EventsEncoder,
        ack: Ack,
    ) -> Result<u64, IngestError> {
        let (count, payload) = (events.len(), events.finish());
        let bytes = payload.len();
        let position = self.append(stream, payload, ack).await?;
        self.inner.metrics.accepted(stream.as_str(), count, bytes);
        Ok(position)
    }

    /// [`Self::append`], keeping the request's body in the archive too (when `raw` is given):
    /// the body is durable with the events, and archived once.
    pub async fn append_with_raw(
        &self,
        stream: &StreamName,
        events: Bytes,
        raw: Option<RawPayload>,
        ack: Ack,
    ) -> Result<u64, IngestError> {
        let raw = raw.map(|r| r.encode());
        let len = events.len() + raw.as_ref().map_or(0, Bytes::len);
        self.inner.memory.take(len, self.inner.options.commit_wait).await?;
        let span = tracing::info_span!("wal.append", %stream, bytes = len, position = tracing::field::Empty);
        let position = match self.inner.wal.append(stream.clone(), events, raw).instrument(span.clone()).await {
            Ok(p) => p,
            Err(e) => {
                self.inner.memory.give(len);
                return Err(e.into());
            }
        };
        span.record("position", position);
        if ack == Ack::Commit {
            self.request_flush(stream);
            self.wait_committed(stream, position).instrument(tracing::info_span!("wait_committed", %stream)).await?;
        }
        Ok(position)
    }

    fn committed_rx(&self, stream: &StreamName) -> watch::Receiver<u64> {
        let mut committed = self.inner.committed.lock().expect("committed lock");
        committed.entry(stream.clone()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    async fn wait_committed(&self, stream: &StreamName, position: u64) -> Result<(), IngestError> {
        let mut rx = self.committed_rx(stream);
        let wait = rx.wait_for(|c| *c >= position);
        match tokio::time::timeout(self.inner.options.commit_wait, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(IngestError::ShuttingDown),
            Err(_) => Err(IngestError::CommitTimeout(self.inner.options.commit_wait)),
        }
    }

    fn request_flush(&self, stream: &StreamName) {
        if let Some(buf) = self.inner.buffers.streams.lock().expect("buffers lock").get_mut(stream) {
            buf.flush_requested = true;
        }
        self.inner.wake.notify_one();
    }

    /// Commits everything buffered now (all streams), and archives every request body
    /// waiting for the archive, returning once it is done.
    pub async fn flush_all(&self) -> Result<FlushSummary, IngestError> {
        let streams: Vec<StreamName> = {
            let streams = self.inner.buffers.streams.lock().expect("buffers lock");
            streams.iter().filter(|(_, b)| !b.records.is_empty()).map(|(s, _)| s.clone()).collect()
        };
        let raw_streams: Vec<StreamName> = {
            let raw = self.inner.buffers.raw.lock().expect("raw buffers lock");
            raw.iter().filter(|(_, b)| !b.records.is_empty()).map(|(s, _)| s.clone()).collect()
        };
        let mut summary = FlushSummary::default();
        let mut tasks = tokio::task::JoinSet::new();
        for stream in streams {
            let this = self.clone();
            tasks.spawn(async move {
                let r = this.flush_stream(&stream, true).await.map(|rows| (rows, 0));
                (stream, r)
            });
        }
        for stream in raw_streams {
            let this = self.clone();
            tasks.spawn(async move {
                let r = this.flush_raw(&stream, true).await.map(|bundles| (0, bundles));
                (stream, r)
            });
        }
        let results = tasks.join_all().await;
        let mut first_error = None;
        for (stream, r) in results {
            match r {
                Ok((rows, bundles)) => {
                    summary.streams += usize::from(rows > 0);
                    summary.rows += rows;
                    summary.bundles += bundles;
                }
                Err(e) => {
                    tracing::error!(%stream, error = %e, "flush failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    /// The background flusher: commits streams (and archives request bodies) that are due
    /// until `shutdown` resolves.
    pub async fn run_flusher(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            let mut tasks = tokio::task::JoinSet::new();
            for stream in self.due_streams() {
                let this = self.clone();
                tasks.spawn(async move {
                    if let Err(e) = this.flush_stream(&stream, false).await {
                        tracing::warn!(%stream, error = %e, "flush failed; the events stay in the write-ahead log and will be retried");
                    }
                });
            }
            for stream in self.due_raw_streams() {
                let this = self.clone();
                tasks.spawn(async move {
                    if let Err(e) = this.flush_raw(&stream, false).await {
                        tracing::warn!(%stream, error = %e, "archiving request bodies failed; they stay in the write-ahead log and will be retried");
                    }
                });
            }
            tasks.join_all().await;
        }
    }

    fn due_raw_streams(&self) -> Vec<StreamName> {
        let now = Instant::now();
        let opts = &self.inner.options.raw;
        let raw = self.inner.buffers.raw.lock().expect("raw buffers lock");
        raw.iter()
            .filter(|(_, b)| {
                !b.records.is_empty()
                    && !b.flushing
                    && b.retry_at.is_none_or(|t| t <= now)
                    && (b.bytes as u64 >= opts.target_bytes
                        || b.since.is_some_and(|s| now.duration_since(s) >= opts.max_age))
            })
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Archives the request bodies a stream holds, a bundle's worth at a time: all of them
    /// with `force`, else until less than a bundle's worth is left. Returns the bundles written.
    async fn flush_raw(&self, stream: &StreamName, force: bool) -> Result<usize, IngestError> {
        let target = self.inner.options.raw.target_bytes.clamp(1, usize::MAX as u64) as usize;
        let end = {
            let raw = self.inner.buffers.raw.lock().expect("raw buffers lock");
            raw.get(stream).and_then(|b| b.records.back().map(|r| r.0))
        };
        let Some(end) = end else { return Ok(0) };
        let mut bundles = 0;
        loop {
            // None: another flush holds the buffer; wait for it (with `force`) or leave it.
            let taken: Option<Vec<(u64, Bytes)>> = {
                let mut raw = self.inner.buffers.raw.lock().expect("raw buffers lock");
                let Some(buf) = raw.get_mut(stream) else { return Ok(bundles) };
                if buf.records.is_empty() || (!force && bundles > 0 && buf.bytes < target) {
                    return Ok(bundles);
                }
                if buf.flushing {
                    None
                } else {
                    buf.flushing = true;
                    let mut bytes = 0;
                    Some(
                        buf.records
                            .iter()
                            .take_while(|(_, r)| {
                                let take = bytes == 0 || bytes + r.len() <= target;
                                bytes += r.len();
                                take
                            })
                            .cloned()
                            .collect(),
                    )
                }
            };
            let Some(records) = taken else {
                if !force {
                    return Ok(bundles);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let last = records.last().expect("non-empty").0;
            let span = tracing::info_span!("archive_bodies", %stream, records = records.len(), position = last);
            let result = self.inner.raw_archiver.archive(stream, &records).instrument(span).await;
            let mut raw = self.inner.buffers.raw.lock().expect("raw buffers lock");
            let buf = raw.entry(stream.clone()).or_default();
            buf.flushing = false;
            match result {
                Ok(written) => {
                    let mut removed = 0;
                    while buf.records.front().is_some_and(|r| r.0 <= last) {
                        removed += buf.records.pop_front().expect("non-empty").1.len();
                    }
                    buf.bytes -= removed;
                    buf.since = if buf.records.is_empty() { None } else { Some(Instant::now()) };
                    buf.retry_at = None;
                    buf.failures = 0;
                    drop(raw);
                    self.inner.buffers.buffered_bytes.fetch_sub(removed as u64, Ordering::Relaxed);
                    self.inner.memory.give(removed);
                    bundles += written.len();
                    self.inner.wal.release(self.inner.buffers.low_watermark());
                    if force && last >= end {
                        return Ok(bundles);
                    }
                }
                Err(e) => {
                    buf.failures += 1;
                    buf.retry_at = Some(Instant::now() + backoff(buf.failures));
                    drop(raw);
                    self.inner.metrics.flush_errors.inc();
                    return Err(e);
                }
            }
        }
    }

    fn due_streams(&self) -> Vec<StreamName> {
        self.update_wal_budget();
        let now = Instant::now();
        let opts = &self.inner.options;
        let streams = self.inner.buffers.streams.lock().expect("buffers lock");
        self.inner.metrics.buffered_bytes.set(self.buffered_bytes() as i64);
        self.inner.metrics.wal_bytes.set(self.wal_bytes() as i64);
        streams
            .iter()
            .filter(|(_, b)| {
                !b.records.is_empty()
                    && !b.flushing
                    && b.retry_at.is_none_or(|t| t <= now)
                    && (b.flush_requested
                        || b.bytes >= opts.flush_bytes
                        || b.since.is_some_and(|s| now.duration_since(s) >= opts.flush_age))
            })
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Commits what a stream has buffered, in commits of about `flush_bytes` each: all of
    /// it with `force`, else until less than `flush_bytes` is left. Returns the rows committed.
    async fn flush_stream(&self, stream: &StreamName, force: bool) -> Result<usize, IngestError> {
        let target = {
            let streams = self.inner.buffers.streams.lock().expect("buffers lock");
            streams.get(stream).and_then(|b| b.records.back().map(|r| r.position))
        };
        let Some(target) = target else { return Ok(0) };
        let mut rows = 0;
        loop {
            let Some(chunk) = self.flush_chunk(stream, force).await? else { return Ok(rows) };
            rows += chunk.rows;
            let more =
                if force { chunk.last < target } else { chunk.remaining_bytes >= self.inner.options.flush_bytes };
            if !more {
                return Ok(rows);
            }
        }
    }

    /// Commits the oldest `flush_bytes` (at least one record) of a stream's buffer.
    async fn flush_chunk(&self, stream: &StreamName, force: bool) -> Result<Option<Chunk>, IngestError> {
        let _slot = self.inner.flush_slots.acquire().await.map_err(|_| IngestError::ShuttingDown)?;
        let records: Vec<WalRecord> = {
            let mut streams = self.inner.buffers.streams.lock().expect("buffers lock");
            let Some(buf) = streams.get_mut(stream) else { return Ok(None) };
            if buf.records.is_empty() || (buf.flushing && !force) {
                return Ok(None);
            }
            buf.flushing = true;
            buf.flush_requested = false;
            let mut bytes = 0;
            buf.records
                .iter()
                .take_while(|r| {
                    let take = bytes == 0 || bytes + r.events.len() <= self.inner.options.flush_bytes;
                    bytes += r.events.len();
                    take
                })
                .cloned()
                .collect()
        };
        let last = records.last().map(|r| r.position).expect("non-empty");
        let started = Instant::now();
        let max_columns = self.inner.options.max_columns;
        let record_count = records.len();
        let records = Arc::new(records);
        let metrics = self.inner.metrics.clone();
        let build: BuildFn = Arc::new(move |schema: SchemaRef, committed: Option<i64>| {
            let floor = committed.unwrap_or(0).max(0) as u64;
            let started = Instant::now();
            let payloads = records.iter().filter(|r| r.position > floor).map(|r| (r.position, &r.events[..]));
            let batches = build_batches(schema, payloads, max_columns);
            metrics.build_seconds.observe(started.elapsed().as_secs_f64());
            batches
        });
        let span = tracing::info_span!(
            "flush",
            %stream,
            records = record_count,
            position = last,
            rows = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let result =
            self.inner.tables.append(stream, self.writer_id(), last as i64, build).instrument(span.clone()).await;
        let mut streams = self.inner.buffers.streams.lock().expect("buffers lock");
        let buf = streams.entry(stream.clone()).or_default();
        buf.flushing = false;
        match result {
            Ok(outcome) => {
                let mut removed_bytes = 0;
                while buf.records.front().is_some_and(|r| r.position <= last) {
                    let r = buf.records.pop_front().expect("non-empty");
                    removed_bytes += r.events.len();
                }
                buf.bytes -= removed_bytes;
                buf.since = if buf.records.is_empty() { None } else { Some(Instant::now()) };
                buf.retry_at = None;
                buf.failures = 0;
                let remaining_bytes = buf.bytes;
                drop(streams);
                self.inner.buffers.buffered_bytes.fetch_sub(removed_bytes as u64, Ordering::Relaxed);
                self.inner.memory.give(removed_bytes);
                let rows = match outcome {
                    AppendOutcome::Committed { rows, table_version } => {
                        tracing::debug!(%stream, rows, table_version, position = last, "committed");
                        rows
                    }
                    AppendOutcome::AlreadyCommitted => {
                        tracing::info!(%stream, position = last, "already committed before a restart; skipped");
                        0
                    }
                };
                span.record("rows", rows);
                self.inner.metrics.observe_flush(started.elapsed(), rows);
                self.committed_tx(stream).send_modify(|c| *c = (*c).max(last));
                self.inner.wal.release(self.inner.buffers.low_watermark());
                Ok(Some(Chunk { rows, last, remaining_bytes }))
            }
            Err(e) => {
                buf.failures += 1;
                let backoff = backoff(buf.failures);
                buf.retry_at = Some(Instant::now() + backoff);
                drop(streams);
                self.inner.metrics.flush_errors.inc();
                span.record("otel.status_code", "ERROR");
                Err(IngestError::Storage(e))
            }
        }
    }

    fn committed_tx(&self, stream: &StreamName) -> watch::Sender<u64> {
        let mut committed = self.inner.committed.lock().expect("committed lock");
        committed.entry(stream.clone()).or_insert_with(|| watch::channel(0).0).clone()
    }

    /// Commits everything, retrying until `deadline`, then closes the write-ahead log.
    pub async fn shutdown(&self, deadline: Instant) -> Result<(), IngestError> {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.flush_all().await {
                Ok(summary) => {
                    tracing::info!(rows = summary.rows, streams = summary.streams, "final flush done");
                    break;
                }
                Err(e) if Instant::now() + delay < deadline => {
                    tracing::warn!(error = %e, "final flush failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    self.inner.wal.close().await;
                    return Err(e);
                }
            }
        }
        self.inner.wal.close().await;
        Ok(())
    }
}

fn backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(250) * 2u32.saturating_pow(failures.min(7));
    let capped = base.min(Duration::from_secs(30));
    // Jitter: 50-100% of the capped delay.
    let jitter = rand_fraction();
    capped.mul_f64(0.5 + 0.5 * jitter)
}

fn rand_fraction() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    let h = RandomState::new().hash_one(Instant::now());
    (h % 10_000) as f64 / 10_000.0
}

/// What one commit of a flush did.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    rows: usize,
    /// The last WAL position committed.
    last: u64,
    /// Bytes still buffered for the stream after it.
    remaining_bytes: usize,
}

/// The write-ahead log is over its budget.
#[derive(Debug, Clone, Copy)]
pub struct Backpressure {
    pub wal_bytes: u64,
    pub budget: u64,
}

/// What a flush committed.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct FlushSummary {
    pub streams: usize,
    pub rows: usize,
    /// Archive bundles of request bodies written.
    pub bundles: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_room_is_taken_given_back_and_replayed_bytes_are_a_debt() {
        let m = Memory::new(1000, 0);
        m.take(600, Duration::from_millis(10)).await.unwrap();
        let e = m.take(600, Duration::from_millis(10)).await.unwrap_err();
        assert!(matches!(e, IngestError::Busy(_)), "{e}");
        m.give(600);
        m.take(600, Duration::from_millis(10)).await.unwrap();
        // A request larger than the whole budget takes all of it, and still fits.
        m.give(600);
        m.take(5000, Duration::from_millis(10)).await.unwrap();
        m.give(5000);
        assert_eq!(m.room.available_permits(), 1000);

        // 1500 bytes replayed against a budget of 1000: no room until 1500 are committed.
        let m = Memory::new(1000, 1500);
        assert_eq!(m.room.available_permits(), 0);
        m.give(1000);
        assert_eq!(m.room.available_permits(), 500, "500 paid the debt");
        m.give(500);
        assert_eq!(m.room.available_permits(), 1000);
    }
}
