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
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use tokio::sync::{Notify, watch};
use tracing::Instrument;

use logyard_core::StreamName;
use logyard_core::mask::Masking;
use logyard_storage::tables::BuildFn;
use logyard_storage::{AppendOutcome, NewRecord, Tables, Wal, WalOptions, WalRecord, WalSink};

use crate::IngestError;
use crate::build::{HeldEvents, build_held};
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
    /// How long a due commit waits at most for the `ack=commit` requests still being decoded
    /// ([`Ingestor::announce`]), so that it takes them too.
    pub commit_linger: Duration,
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
    /// What is masked in each stream's events before they are written.
    pub masking: Arc<Masking>,
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
            commit_linger: Duration::from_millis(10),
            memory_budget_bytes: 256 << 20,
            wal_budget_bytes: 0,
            raw: BundleOptions { max_age: Duration::from_secs(60), ..BundleOptions::default() },
            masking: Arc::default(),
        }
    }
}

/// One stream's part of a request: its encoded events and, for a stream that keeps request
/// bodies, the body.
#[derive(Debug, Clone)]
pub struct Append {
    pub stream: StreamName,
    pub events: Bytes,
    pub raw: Option<RawPayload>,
    /// The events' rows, when the decoder built them ([`Ingestor::rows_schema`]).
    pub prepared: Option<RecordBatch>,
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

/// An `ack=commit` request on its way to the write-ahead log, from the moment it is read
/// until its records are in their buffers ([`Ingestor::announce`]).
#[derive(Debug)]
#[must_use = "the request counts as on its way until this is dropped"]
pub struct Announced {
    on_the_way: watch::Sender<usize>,
}

impl Drop for Announced {
    fn drop(&mut self) {
        self.on_the_way.send_modify(|n| *n -= 1);
    }
}

/// What a buffer holds: items in write-ahead log position order, each of a size.
trait Buffered: Clone {
    fn position(&self) -> u64;
    fn bytes(&self) -> usize;
}

/// A stream's durable record until its commit: its encoded events, or the rows built from
/// them when the request came (the encoded events are then in the write-ahead log alone).
#[derive(Debug, Clone)]
struct HeldRecord {
    position: u64,
    events: HeldEvents,
    /// The encoded events' length: what they took of the memory budget.
    bytes: usize,
}

impl HeldRecord {
    fn of(record: WalRecord) -> Self {
        let bytes = record.events.len();
        Self { position: record.position, events: HeldEvents::of(record.events, record.prepared), bytes }
    }
}

impl Buffered for HeldRecord {
    fn position(&self) -> u64 {
        self.position
    }
    fn bytes(&self) -> usize {
        self.bytes
    }
}

/// A request body waiting for the archive: (position, encoded [`RawPayload`]).
type RawBody = (u64, Bytes);

impl Buffered for RawBody {
    fn position(&self) -> u64 {
        self.0
    }
    fn bytes(&self) -> usize {
        self.1.len()
    }
}

/// What a stream holds durable and not yet flushed, and the state of its flushes. One type
/// for events (flushed to the table) and request bodies (flushed to the archive): the same
/// taking, settling and back-off.
#[derive(Debug)]
struct Buffer<T> {
    items: VecDeque<T>,
    bytes: usize,
    /// When the oldest item arrived (or the last flush left some behind).
    since: Option<Instant>,
    /// An `ack=commit` request waits: flush at the next turn, whatever the size.
    flush_requested: bool,
    /// A flush holds the oldest items.
    flushing: bool,
    /// No flush attempt before this instant (after a failure).
    retry_at: Option<Instant>,
    failures: u32,
}

impl<T> Default for Buffer<T> {
    fn default() -> Self {
        Self {
            items: VecDeque::new(),
            bytes: 0,
            since: None,
            flush_requested: false,
            flushing: false,
            retry_at: None,
            failures: 0,
        }
    }
}

impl<T: Buffered> Buffer<T> {
    fn push(&mut self, item: T, now: Instant) {
        self.bytes += item.bytes();
        self.since.get_or_insert(now);
        self.items.push_back(item);
    }

    /// Whether the flusher should flush it now: full, old or asked for, and not held or
    /// backing off.
    fn is_due(&self, now: Instant, target_bytes: usize, max_age: Duration) -> bool {
        !self.items.is_empty()
            && !self.flushing
            && self.retry_at.is_none_or(|t| t <= now)
            && (self.flush_requested
                || self.bytes >= target_bytes
                || self.since.is_some_and(|s| now.duration_since(s) >= max_age))
    }

    /// Takes the oldest items, up to `target_bytes` (at least one), for a flush; `None` when
    /// there is nothing or another flush holds them.
    fn take(&mut self, target_bytes: usize) -> Option<Vec<T>> {
        if self.items.is_empty() || self.flushing {
            return None;
        }
        self.flushing = true;
        self.flush_requested = false;
        let mut bytes = 0;
        let taken = self
            .items
            .iter()
            .take_while(|item| {
                let take = bytes == 0 || bytes + item.bytes() <= target_bytes;
                bytes += item.bytes();
                take
            })
            .cloned()
            .collect();
        Some(taken)
    }

    /// Ends a flush: on success (`Some(last)`) drops the items up to `last` and returns their
    /// bytes; on failure schedules the next attempt with a growing back-off.
    fn settle(&mut self, flushed: Option<u64>) -> usize {
        self.flushing = false;
        let Some(last) = flushed else {
            self.failures += 1;
            self.retry_at = Some(Instant::now() + backoff(self.failures));
            return 0;
        };
        let mut removed = 0;
        while self.items.front().is_some_and(|item| item.position() <= last) {
            removed += self.items.pop_front().expect("non-empty").bytes();
        }
        self.bytes -= removed;
        self.since = if self.items.is_empty() { None } else { Some(Instant::now()) };
        self.retry_at = None;
        self.failures = 0;
        removed
    }
}

type BufferMap<T> = Mutex<HashMap<StreamName, Buffer<T>>>;

/// The buffers, shared with the WAL thread (which fills them).
#[derive(Debug, Default)]
struct Buffers {
    streams: BufferMap<HeldRecord>,
    /// Locked after `streams` when both are.
    raw: BufferMap<RawBody>,
    /// A flush ended: a forced flush waiting for a buffer another flush held may go on.
    settled: Notify,
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
                added += raw.len();
                raw_buffers.entry(record.stream.clone()).or_default().push((record.position, raw), now);
            }
            added += record.events.len();
            let stream = record.stream.clone();
            streams.entry(stream).or_default().push(HeldRecord::of(record), now);
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
            .filter_map(|b| b.items.front().map(Buffered::position))
            .chain(raw.values().filter_map(|b| b.items.front().map(Buffered::position)))
            .min()
            .unwrap_or(delivered + 1)
            .min(delivered + 1)
    }
}

/// Where a kind of buffer is flushed to: events to their table, request bodies to the
/// archive. [`Ingestor::flush`] drives both the same way.
trait Stage: Sync {
    type Item: Buffered + Send + Sync + 'static;
    fn buffers<'a>(&self, buffers: &'a Buffers) -> &'a BufferMap<Self::Item>;
    /// Bytes taken per flush step.
    fn step_bytes(&self, options: &IngestOptions) -> usize;
    /// Bytes of a smaller step the background flusher takes first, when a stream has one.
    fn first_step_bytes(&self, _ingestor: &Ingestor, _stream: &StreamName) -> Option<usize> {
        None
    }
    /// Flushes the oldest items of a stream's buffer; returns what is counted (rows, bundles).
    fn flush_items(
        &self,
        ingestor: &Ingestor,
        stream: &StreamName,
        items: Vec<Self::Item>,
    ) -> impl std::future::Future<Output = Result<usize, IngestError>> + Send;
}

/// Events, committed to their stream's table.
struct ToTable;
/// Request bodies, bundled into the archive.
struct ToArchive;

impl Stage for ToTable {
    type Item = HeldRecord;

    fn buffers<'a>(&self, buffers: &'a Buffers) -> &'a BufferMap<HeldRecord> {
        &buffers.streams
    }

    fn step_bytes(&self, options: &IngestOptions) -> usize {
        options.flush_bytes
    }

    /// A stream this process has not committed yet is flushed once a sixteenth of a step is
    /// held: its schema is then known, and the requests after it come with their rows
    /// ([`Ingestor::rows_schema`]) instead of being parsed again at the flush.
    fn first_step_bytes(&self, ingestor: &Ingestor, stream: &StreamName) -> Option<usize> {
        let known = ingestor.inner.schemas.lock().expect("schemas lock").contains_key(stream);
        (!known).then(|| (ingestor.inner.options.flush_bytes / 16).max(1))
    }

    async fn flush_items(
        &self,
        ingestor: &Ingestor,
        stream: &StreamName,
        records: Vec<HeldRecord>,
    ) -> Result<usize, IngestError> {
        ingestor.commit(stream, records).await
    }
}

impl Stage for ToArchive {
    type Item = RawBody;

    fn buffers<'a>(&self, buffers: &'a Buffers) -> &'a BufferMap<RawBody> {
        &buffers.raw
    }

    fn step_bytes(&self, options: &IngestOptions) -> usize {
        options.raw.target_bytes.clamp(1, usize::MAX as u64) as usize
    }

    async fn flush_items(
        &self,
        ingestor: &Ingestor,
        stream: &StreamName,
        bodies: Vec<RawBody>,
    ) -> Result<usize, IngestError> {
        let last = bodies.last().map_or(0, |b| b.0);
        let span = tracing::info_span!("archive_bodies", %stream, records = bodies.len(), position = last);
        let written = ingestor.inner.raw_archiver.archive(stream, &bodies).instrument(span).await?;
        Ok(written.len())
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
    tail: crate::tail::TailHub,
    /// Each stream's schema as its last flush built it: what decoders build requests' rows
    /// against ([`Ingestor::rows_schema`]).
    schemas: Mutex<HashMap<StreamName, SchemaRef>>,
    /// How many `ack=commit` requests are on their way ([`Announced`]).
    on_the_way: watch::Sender<usize>,
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
                tail: crate::tail::TailHub::default(),
                schemas: Mutex::new(HashMap::new()),
                on_the_way: watch::channel(0).0,
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

    /// What is masked in each stream's events (applied by the callers of [`Self::append_all`],
    /// on their blocking threads, before the events reach it).
    pub fn masking(&self) -> &Arc<Masking> {
        &self.inner.options.masking
    }

    pub fn metrics(&self) -> &IngestMetrics {
        &self.inner.metrics
    }

    /// Where the records this process makes durable are published (live tail).
    pub fn tail(&self) -> &crate::tail::TailHub {
        &self.inner.tail
    }

    /// Bytes of the write-ahead log on disk (pending commit, or not yet reclaimed).
    pub fn wal_bytes(&self) -> u64 {
        self.inner.wal.disk_bytes()
    }

    /// Bytes of events buffered and not yet committed.
    pub fn buffered_bytes(&self) -> u64 {
        self.inner.buffers.buffered_bytes.load(Ordering::Relaxed)
    }

    /// What a decoder needs to build a request's rows for `stream` as it reads the events:
    /// the schema the stream's last flush built its rows with (published before that flush
    /// commits), and the column limit. `None` until the stream's first flush in this process
    /// has built its rows, and for a stream whose events are
    /// masked (masking changes their values after they are read); the flush builds the rows
    /// then.
    pub fn rows_schema(&self, stream: &StreamName) -> Option<(SchemaRef, usize)> {
        if self.inner.options.masking.for_stream(stream.as_str()).is_some() {
            return None;
        }
        let schema = self.inner.schemas.lock().expect("schemas lock").get(stream).cloned()?;
        Some((schema, self.inner.options.max_columns))
    }

    /// Makes one stream's encoded events durable; with [`Ack::Commit`], waits for their
    /// commit too.
    pub async fn append(&self, stream: &StreamName, events: Bytes, ack: Ack) -> Result<(), IngestError> {
        self.append_all(vec![Append { stream: stream.clone(), events, raw: None, prepared: None }], ack, None).await
    }

    /// Tells the flusher that a request with `ack` is being decoded (its body read: what is
    /// left is this process's work), when `ack` is [`Ack::Commit`]: a commit that falls due
    /// meanwhile waits for it (at most [`IngestOptions::commit_linger`]) so that the request
    /// rides in it instead of waiting for the next one. Under `ack=commit` from several
    /// clients, a commit then holds what every waiting client sent, not the one or two
    /// requests that happened to be there.
    /// The request counts as on its way until the returned value is dropped, which
    /// [`Ingestor::append_all`] does once the records are in their buffers.
    pub fn announce(&self, ack: Ack) -> Option<Announced> {
        (ack == Ack::Commit).then(|| {
            self.inner.on_the_way.send_modify(|n| *n += 1);
            Announced { on_the_way: self.inner.on_the_way.clone() }
        })
    }

    /// Makes a request's events durable: every stream's record in one group commit of the
    /// write-ahead log, so that all of them are durable or none is. With [`Ack::Commit`],
    /// waits for each stream's commit too. `announced` is the request's [`Ingestor::announce`],
    /// which ends once its records are in their buffers.
    pub async fn append_all(
        &self,
        appends: Vec<Append>,
        ack: Ack,
        announced: Option<Announced>,
    ) -> Result<(), IngestError> {
        let records: Vec<NewRecord> = appends
            .into_iter()
            .map(|a| NewRecord {
                stream: a.stream,
                events: a.events,
                raw: a.raw.map(|r| r.encode()),
                prepared: a.prepared,
            })
            .collect();
        let len: usize = records.iter().map(|r| r.events.len() + r.raw.as_ref().map_or(0, Bytes::len)).sum();
        let streams: Vec<StreamName> = records.iter().map(|r| r.stream.clone()).collect();
        let published: Vec<Bytes> = records.iter().map(|r| r.events.clone()).collect();
        self.inner.memory.take(len, self.inner.options.commit_wait).await?;
        let names = streams.iter().map(StreamName::as_str).collect::<Vec<_>>().join(",");
        let span = tracing::info_span!("wal.append", stream = names, bytes = len, position = tracing::field::Empty);
        let appended = self.inner.wal.append_all(records).instrument(span.clone()).await;
        // The records are in their buffers (or the request failed): a commit need not wait.
        drop(announced);
        let first = match appended {
            Ok(p) => p,
            Err(e) => {
                self.inner.memory.give(len);
                return Err(e.into());
            }
        };
        span.record("position", first);
        self.inner.tail.publish(streams.iter().zip(published).enumerate().map(|(i, (stream, events))| {
            crate::tail::Durable { position: first + i as u64, stream: stream.clone(), events }
        }));
        self.wake_for_first_steps(&streams);
        if ack == Ack::Commit {
            for stream in &streams {
                self.request_flush(stream);
            }
            for (i, stream) in streams.iter().enumerate() {
                let position = first + i as u64;
                self.wait_committed(stream, position)
                    .instrument(tracing::info_span!("wait_committed", %stream))
                    .await?;
            }
        }
        Ok(())
    }

    /// Records an administrative action in the audit stream (durable in the write-ahead log):
    /// who, from where, what, when.
    pub async fn audit(
        &self,
        actor: &str,
        client: Option<String>,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<(), IngestError> {
        let events = crate::maintenance::audit_event(actor, client, action, detail);
        let stream = StreamName::new(crate::maintenance::AUDIT_STREAM).expect("a valid stream name");
        self.append(&stream, events, Ack::Wal).await?;
        tracing::info!(actor, action, "audit");
        Ok(())
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

    /// Wakes the flusher when one of `streams` has no schema in this process yet and holds the
    /// first step that makes one, instead of leaving it to the flusher's next round (up to
    /// 200 ms of requests more that come without their rows).
    fn wake_for_first_steps(&self, streams: &[StreamName]) {
        let now = Instant::now();
        let due = {
            let map = self.inner.buffers.streams.lock().expect("buffers lock");
            streams.iter().any(|s| {
                ToTable
                    .first_step_bytes(self, s)
                    .is_some_and(|step| map.get(s).is_some_and(|b| b.is_due(now, step, self.inner.options.flush_age)))
            })
        };
        if due {
            self.inner.wake.notify_one();
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
        let streams = self.buffered(&ToTable);
        let raw_streams = self.buffered(&ToArchive);
        let mut tasks = tokio::task::JoinSet::new();
        for stream in streams {
            let this = self.clone();
            tasks.spawn(async move {
                let r = this.flush(&ToTable, &stream, true).await.map(|rows| (rows, 0));
                (stream, r)
            });
        }
        for stream in raw_streams {
            let this = self.clone();
            tasks.spawn(async move {
                let r = this.flush(&ToArchive, &stream, true).await.map(|bundles| (0, bundles));
                (stream, r)
            });
        }
        let mut summary = FlushSummary::default();
        let mut first_error = None;
        for (stream, r) in tasks.join_all().await {
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

    /// The streams with something in their buffers of a stage.
    fn buffered<S: Stage>(&self, stage: &S) -> Vec<StreamName> {
        let map = stage.buffers(&self.inner.buffers).lock().expect("buffers lock");
        map.iter().filter(|(_, b)| !b.items.is_empty()).map(|(s, _)| s.clone()).collect()
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
            self.update_wal_budget();
            self.inner.metrics.buffered_bytes.set(self.buffered_bytes() as i64);
            self.inner.metrics.wal_bytes.set(self.wal_bytes() as i64);
            let options = &self.inner.options;
            let mut tasks = tokio::task::JoinSet::new();
            let due = self.due(&ToTable, options.flush_age);
            if !due.is_empty() {
                self.linger().await;
            }
            for stream in due {
                let this = self.clone();
                tasks.spawn(async move {
                    if let Err(e) = this.flush(&ToTable, &stream, false).await {
                        tracing::warn!(%stream, error = %e, "flush failed; the events stay in the write-ahead log and will be retried");
                    }
                });
            }
            for stream in self.due(&ToArchive, options.raw.max_age) {
                let this = self.clone();
                tasks.spawn(async move {
                    if let Err(e) = this.flush(&ToArchive, &stream, false).await {
                        tracing::warn!(%stream, error = %e, "archiving request bodies failed; they stay in the write-ahead log and will be retried");
                    }
                });
            }
            tasks.join_all().await;
        }
    }

    /// Waits while `ack=commit` requests are on their way to the write-ahead log, at most
    /// [`IngestOptions::commit_linger`] ([`Ingestor::announce`]). Their clients wait for a
    /// commit; the core is busy decoding them meanwhile, so waiting costs no time.
    async fn linger(&self) {
        let mut on_the_way = self.inner.on_the_way.subscribe();
        if *on_the_way.borrow_and_update() == 0 {
            return;
        }
        let _ = tokio::time::timeout(self.inner.options.commit_linger, on_the_way.wait_for(|n| *n == 0)).await;
    }

    /// The streams whose buffers of a stage are due for a flush.
    fn due<S: Stage>(&self, stage: &S, max_age: Duration) -> Vec<StreamName> {
        let now = Instant::now();
        let step = stage.step_bytes(&self.inner.options);
        let map = stage.buffers(&self.inner.buffers).lock().expect("buffers lock");
        map.iter()
            .filter(|(s, b)| b.is_due(now, stage.first_step_bytes(self, s).unwrap_or(step), max_age))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Flushes a stream's buffer of a stage a step (about `step_bytes`) at a time: with
    /// `force`, everything it held when called (waiting for a flush that holds it to end);
    /// else at least one step (the stage's first step when it has one), then while a whole
    /// step's worth is left. Returns what the steps counted (rows committed, bundles written).
    async fn flush<S: Stage>(&self, stage: &S, stream: &StreamName, force: bool) -> Result<usize, IngestError> {
        let map = stage.buffers(&self.inner.buffers);
        let full_step = stage.step_bytes(&self.inner.options);
        let end = {
            let map = map.lock().expect("buffers lock");
            map.get(stream).and_then(|b| b.items.back().map(Buffered::position))
        };
        let Some(end) = end else { return Ok(0) };
        let mut counted = 0;
        let mut steps = 0;
        loop {
            let first_step = if force { None } else { stage.first_step_bytes(self, stream) };
            let step = first_step.unwrap_or(full_step);
            let items = loop {
                let settled = self.inner.buffers.settled.notified();
                tokio::pin!(settled);
                {
                    let mut map = map.lock().expect("buffers lock");
                    let Some(buf) = map.get_mut(stream) else { return Ok(counted) };
                    let first = buf.items.front().map(Buffered::position);
                    let done = match first {
                        None => true,
                        Some(_) if !force => steps > 0 && buf.bytes < step,
                        Some(first) => first > end,
                    };
                    if done {
                        return Ok(counted);
                    }
                    if let Some(items) = buf.take(step) {
                        break items;
                    }
                    if !force {
                        return Ok(counted);
                    }
                    // Another flush holds the buffer: wait for it to settle, then look again.
                    settled.as_mut().enable();
                }
                settled.await;
            };
            let last = items.last().map(Buffered::position).expect("a step takes at least one item");
            let result = stage.flush_items(self, stream, items).await;
            let removed = {
                let mut map = map.lock().expect("buffers lock");
                map.entry(stream.clone()).or_default().settle(result.as_ref().ok().map(|_| last))
            };
            self.inner.buffers.settled.notify_waiters();
            match result {
                Ok(n) => {
                    counted += n;
                    steps += 1;
                    self.inner.buffers.buffered_bytes.fetch_sub(removed as u64, Ordering::Relaxed);
                    self.inner.memory.give(removed);
                    self.inner.wal.release(self.inner.buffers.low_watermark());
                    if force && last >= end {
                        return Ok(counted);
                    }
                }
                Err(e) => {
                    self.inner.metrics.flush_errors.inc();
                    return Err(e);
                }
            }
        }
    }

    /// Commits records of a stream to its table (one flush step); returns the rows.
    async fn commit(&self, stream: &StreamName, records: Vec<HeldRecord>) -> Result<usize, IngestError> {
        let _slot = self.inner.flush_slots.acquire().await.map_err(|_| IngestError::ShuttingDown)?;
        let last = records.last().map(|r| r.position).expect("non-empty");
        let started = Instant::now();
        let max_columns = self.inner.options.max_columns;
        let record_count = records.len();
        let records = Arc::new(records);
        let metrics = self.inner.metrics.clone();
        // How many rows the last build found built as their requests were read.
        let built = Arc::new(Mutex::new(0u64));
        let made = built.clone();
        let inner = self.inner.clone();
        let name = stream.clone();
        let build: BuildFn = Arc::new(move |schema: SchemaRef, committed: Option<i64>| {
            let floor = committed.unwrap_or(0).max(0) as u64;
            let started = Instant::now();
            let held = records.iter().filter(|r| r.position > floor);
            let prepared = held.clone().map(|r| r.events.prepared_rows()).sum();
            let batches = build_held(schema, held.map(|r| (r.position, r.events.as_held())), max_columns);
            metrics.build_seconds.observe(started.elapsed().as_secs_f64());
            // The requests read from now on build their rows against this schema, before the
            // commit: should it fail, the next flush keeps the columns of the rows built
            // against it (`batches_from_held`).
            if let Ok(Some(batches)) = &batches
                && let Some(last) = batches.last()
            {
                inner.schemas.lock().expect("schemas lock").insert(name.clone(), last.schema());
            }
            *made.lock().expect("build lock") = prepared;
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
        let outcome =
            match self.inner.tables.append(stream, self.writer_id(), last as i64, build).instrument(span.clone()).await
            {
                Ok(outcome) => outcome,
                Err(e) => {
                    span.record("otel.status_code", "ERROR");
                    return Err(IngestError::Storage(e));
                }
            };
        let rows = match outcome {
            AppendOutcome::Committed { rows, table_version } => {
                tracing::debug!(%stream, rows, table_version, position = last, "committed");
                let prepared = *built.lock().expect("build lock");
                self.inner.metrics.rows_built_at_request.inc_by(prepared);
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
        Ok(rows)
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

    /// An ingestor over a local directory with its flusher running, and the flusher's stop.
    async fn running(dir: &std::path::Path, options: IngestOptions) -> (Ingestor, tokio::sync::oneshot::Sender<()>) {
        let location = logyard_storage::Location::Local(dir.join("data"));
        let storage = logyard_storage::Storage::open(location, &Default::default(), Default::default()).await.unwrap();
        let ingestor = Ingestor::open(options, Arc::new(Tables::new(storage)), IngestMetrics::default()).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let flusher = ingestor.clone();
        tokio::spawn(async move { flusher.run_flusher(async move { stopped.await.unwrap_or(()) }).await });
        (ingestor, stop)
    }

    fn event(n: u64) -> Append {
        let mut events = logyard_core::encoded::EventsEncoder::default();
        let now = logyard_core::time::now_micros();
        events.push(now, logyard_core::TimeSource::Received, &format!("{{\"n\":{n}}}")).unwrap();
        Append { stream: StreamName::new("orders").unwrap(), events: events.finish(), raw: None, prepared: None }
    }

    async fn version(ingestor: &Ingestor) -> Option<u64> {
        let stream = StreamName::new("orders").unwrap();
        ingestor.tables().latest(&stream).await.unwrap().and_then(|t| t.version())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_due_commit_waits_for_an_announced_request_and_takes_it_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = IngestOptions::new(dir.path().join("wal"));
        // Far longer than the test: the commit waits for the request, not for the limit.
        options.commit_linger = Duration::from_secs(600);
        let (ingestor, _stop) = running(dir.path(), options).await;
        ingestor.append_all(vec![event(0)], Ack::Commit, None).await.unwrap();
        let before = version(&ingestor).await.expect("the first commit made the table");

        let announced = ingestor.announce(Ack::Commit);
        assert!(announced.is_some());
        let first = tokio::spawn({
            let ingestor = ingestor.clone();
            async move { ingestor.append_all(vec![event(1)], Ack::Commit, None).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!first.is_finished(), "the commit did not wait for the announced request");
        assert_eq!(version(&ingestor).await, Some(before));

        ingestor.append_all(vec![event(2)], Ack::Commit, announced).await.unwrap();
        first.await.unwrap().unwrap();
        assert_eq!(version(&ingestor).await, Some(before + 1), "both requests ride in one commit");
        assert!(ingestor.announce(Ack::Wal).is_none(), "ack=wal requests are not announced");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_announced_request_that_never_lands_holds_a_commit_back_no_longer_than_the_linger() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = IngestOptions::new(dir.path().join("wal"));
        options.commit_linger = Duration::from_millis(20);
        options.commit_wait = Duration::from_secs(20);
        let (ingestor, _stop) = running(dir.path(), options).await;
        let _stuck = ingestor.announce(Ack::Commit);
        ingestor.append_all(vec![event(1)], Ack::Commit, None).await.expect("committed despite the stuck request");
        assert!(version(&ingestor).await.is_some());
    }

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
