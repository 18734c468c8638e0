//! The write-ahead log: where an acknowledged event lives until its table commit.
//!
//! One directory per writer process (locked while open), holding the writer's id and
//! segment files named after their first position. A record is one request's events for one
//! stream:
//!
//! ```text
//! u32 length | u32 crc32 of the rest | u64 position | u8 flags+n | stream name (n bytes)
//!     [u32 raw length | raw payload]  (when the flags bit 0x80 is set)  | events
//! ```
//!
//! The events are encoded as [`logyard_core::encoded`] describes: each event's JSON text and
//! its flattened column values, so the flusher reads no JSON. The flags bit 0x40 marks that
//! encoding; records without it (written before it existed: events without their values) are
//! re-encoded when they are replayed.
//!
//! The raw payload is the request body as received, kept for streams that archive it: it is
//! in the same record as the events, so both are durable, or neither.
//!
//! One thread owns the files. It takes every append waiting in its queue, writes them (with
//! direct I/O where the file system allows it, see [`crate::segment_file`]), calls
//! `fdatasync` once (group commit), hands the records to the [`WalSink`] in position
//! order, and only then answers the callers: an answer means durable. Segments whose records
//! are all committed to tables are deleted when the flusher releases them.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use logyard_core::StreamName;

use crate::segment_file::SegmentFile;

const LOCK_FILE: &str = "LOCK";
const WRITER_ID_FILE: &str = "writer-id";
const SEGMENT_SUFFIX: &str = ".wal";
const HEADER: usize = 8;
/// The bit of the name-length byte that says a raw payload follows the name.
const RAW_FLAG: u8 = 0x80;
/// The bit of the name-length byte that says the events carry their leaves.
const LEAVES_FLAG: u8 = 0x40;
/// Stop gathering a group commit at this many bytes.
const GROUP_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("write-ahead log directory {0} is in use by another logyard process")]
    Locked(PathBuf),
    #[error("write-ahead log segment {path} is damaged at byte {offset} (not at its end): {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("write-ahead log is closed")]
    Closed,
    #[error("write-ahead log write failed: {0}")]
    WriteFailed(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io { path: path.to_owned(), source }
}

/// Settings of the write-ahead log.
#[derive(Debug, Clone)]
pub struct WalOptions {
    pub dir: PathBuf,
    /// Start a new segment after this many bytes.
    pub segment_bytes: u64,
}

/// One durable record: a request's events for one stream.
#[derive(Debug, Clone)]
pub struct WalRecord {
    pub position: u64,
    pub stream: StreamName,
    /// Encoded events; see [`logyard_core::encoded`].
    pub events: Bytes,
    /// The request body as received, for streams that archive it (opaque to the log).
    pub raw: Option<Bytes>,
    /// The events' rows, when they were built before the append (never on disk; `None` when
    /// replayed): see `logyard_core::parse::parse_body_into_rows`.
    pub prepared: Option<RecordBatch>,
}

/// Receives records once they are durable, in position order.
pub trait WalSink: Send + Sync + 'static {
    fn durable(&self, records: Vec<WalRecord>);
}

type Reply = oneshot::Sender<Result<u64, WalError>>;

/// A record to append: a stream's events and, for streams that archive it, the request body.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub stream: StreamName,
    pub events: Bytes,
    pub raw: Option<Bytes>,
    /// Handed to the sink with the durable record, not written.
    pub prepared: Option<RecordBatch>,
}

enum Command {
    /// Records written together: durable all, or none.
    Append {
        records: Vec<NewRecord>,
        reply: Reply,
    },
    Release(u64),
    Shutdown(oneshot::Sender<()>),
}

#[derive(Debug)]
struct Segment {
    first: u64,
    last: Option<u64>,
    path: PathBuf,
    bytes: u64,
}

/// Handle to the write-ahead log. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Wal {
    tx: mpsc::UnboundedSender<Command>,
    writer_id: Arc<str>,
    disk_bytes: Arc<AtomicU64>,
}

impl Wal {
    /// Opens (or creates) the log in `options.dir`, hands every record found there to `sink`
    /// (they are durable but maybe not committed), and starts the writer thread.
    pub fn open(options: WalOptions, sink: Arc<dyn WalSink>) -> Result<Self, WalError> {
        let dir = options.dir.clone();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(WalError::Locked(dir)),
            Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        let writer_id: Arc<str> = read_or_create_writer_id(&dir)?.into();

        let (segments, records) = recover(&dir)?;
        let next = records.last().map(|r| r.position + 1).or_else(|| segments.back().map(|s| s.first)).unwrap_or(1);
        let disk_bytes = Arc::new(AtomicU64::new(segments.iter().map(|s| s.bytes).sum()));
        if !records.is_empty() {
            tracing::info!(records = records.len(), first = records[0].position, "replaying write-ahead log");
            sink.durable(records);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut writer =
            Writer { dir, options, segments, file: None, next, sink, disk_bytes: disk_bytes.clone(), _lock: lock };
        writer.open_active()?;
        std::thread::Builder::new()
            .name("logyard-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(io(Path::new("wal thread")))?;
        Ok(Self { tx, writer_id, disk_bytes })
    }

    /// This writer's id: the Delta application id of its commits.
    pub fn writer_id(&self) -> &str {
        &self.writer_id
    }

    /// Bytes of segment files on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes.load(Ordering::Relaxed)
    }

    /// Appends one record; returns its position once it is durable and in the sink.
    pub async fn append(&self, stream: StreamName, events: Bytes, raw: Option<Bytes>) -> Result<u64, WalError> {
        self.append_all(vec![NewRecord { stream, events, raw, prepared: None }]).await
    }

    /// Appends records in one group commit: all are durable or none is. Returns the position
    /// of the first; the others follow it in order.
    pub async fn append_all(&self, records: Vec<NewRecord>) -> Result<u64, WalError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Append { records, reply }).map_err(|_| WalError::Closed)?;
        rx.await.map_err(|_| WalError::Closed)?
    }

    /// Every position below `low_watermark` is committed: segments holding only such
    /// positions may go.
    pub fn release(&self, low_watermark: u64) {
        let _ = self.tx.send(Command::Release(low_watermark));
    }

    /// Stops the writer thread after the appends already queued.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

fn read_or_create_writer_id(dir: &Path) -> Result<String, WalError> {
    let path = dir.join(WRITER_ID_FILE);
    match fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&path)(e)),
    }
    let id = format!("logyard-{}", uuid::Uuid::new_v4().simple());
    let tmp = dir.join(format!("{WRITER_ID_FILE}.tmp"));
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(id.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)?;
    Ok(id)
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn segment_name(first: u64) -> String {
    format!("{first:020}{SEGMENT_SUFFIX}")
}

/// Reads every segment in order; truncates a torn record at the end of the last segment.
fn recover(dir: &Path) -> Result<(VecDeque<Segment>, Vec<WalRecord>), WalError> {
    let mut names: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let first = name.strip_suffix(SEGMENT_SUFFIX)?.parse::<u64>().ok()?;
            Some((first, e.path()))
        })
        .collect();
    names.sort();
    let mut segments = VecDeque::new();
    let mut records = Vec::new();
    let count = names.len();
    for (i, (first, path)) in names.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let mut data = Vec::new();
        File::open(&path).and_then(|mut f| f.read_to_end(&mut data)).map_err(io(&path))?;
        let data = Bytes::from(data);
        let mut offset = 0usize;
        let mut last = None;
        while offset < data.len() {
            match parse_record(&data, offset) {
                Ok((mut record, has_leaves, next)) => {
                    if !has_leaves {
                        // A whole record of the old format: damage here is not a torn tail.
                        record.events =
                            logyard_core::encoded::upgrade_v1(&record.events).map_err(|e| WalError::Corrupt {
                                path: path.clone(),
                                offset: offset as u64,
                                reason: format!("old events: {e}"),
                            })?;
                    }
                    last = Some(record.position);
                    records.push(record);
                    offset = next;
                }
                Err(reason) if is_last => {
                    if data[offset..].iter().any(|&b| b != 0) {
                        tracing::warn!(path = %path.display(), offset, reason, "truncating a torn record at the end of the write-ahead log");
                    } // else the zeros a direct write pads its last block with
                    let f = OpenOptions::new().write(true).open(&path).map_err(io(&path))?;
                    f.set_len(offset as u64).map_err(io(&path))?;
                    f.sync_all().map_err(io(&path))?;
                    break;
                }
                Err(reason) => return Err(WalError::Corrupt { path, offset: offset as u64, reason }),
            }
        }
        segments.push_back(Segment { first, last, path, bytes: offset as u64 });
    }
    Ok((segments, records))
}

/// A record, whether its events carry their leaves, and where the next record starts.
fn parse_record(data: &Bytes, offset: usize) -> Result<(WalRecord, bool, usize), String> {
    let rest = &data[offset..];
    if rest.len() < HEADER {
        return Err("short header".into());
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    if len < 9 || rest.len() < HEADER + len {
        return Err("short record".into());
    }
    let body = &rest[HEADER..HEADER + len];
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    let position = u64::from_le_bytes(body[0..8].try_into().expect("8 bytes"));
    let has_raw = body[8] & RAW_FLAG != 0;
    let has_leaves = body[8] & LEAVES_FLAG != 0;
    let n = (body[8] & !(RAW_FLAG | LEAVES_FLAG)) as usize;
    if body.len() < 9 + n {
        return Err("short stream name".into());
    }
    let name = std::str::from_utf8(&body[9..9 + n]).map_err(|e| e.to_string())?;
    let stream = StreamName::new(name).map_err(|e| e.to_string())?;
    let mut start = offset + HEADER + 9 + n;
    let end = offset + HEADER + len;
    let raw = if has_raw {
        let raw_len = data
            .get(start..start + 4)
            .filter(|_| start + 4 <= end)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or("short raw payload length")?;
        start += 4;
        if start + raw_len > end {
            return Err("short raw payload".into());
        }
        start += raw_len;
        Some(data.slice(start - raw_len..start))
    } else {
        None
    };
    Ok((WalRecord { position, stream, events: data.slice(start..end), raw, prepared: None }, has_leaves, end))
}

/// Appends a record's header to `buf`: everything but its raw payload and events, which
/// follow it on disk.
fn encode_header(buf: &mut Vec<u8>, position: u64, stream: &StreamName, raw: Option<&[u8]>, events: &[u8]) {
    let name = stream.as_str().as_bytes();
    let raw_part = raw.map_or(0, |r| 4 + r.len());
    let len = 8 + 1 + name.len() + raw_part + events.len();
    let start = buf.len();
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&position.to_le_bytes());
    buf.push(name.len() as u8 | LEAVES_FLAG | if raw.is_some() { RAW_FLAG } else { 0 });
    buf.extend_from_slice(name);
    if let Some(raw) = raw {
        buf.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&buf[start + HEADER..]);
    if let Some(raw) = raw {
        crc.update(raw);
    }
    crc.update(events);
    buf[start + 4..start + 8].copy_from_slice(&crc.finalize().to_le_bytes());
}

/// An append waiting for the next group commit.
struct Append {
    records: Vec<NewRecord>,
    reply: Reply,
}

struct Writer {
    dir: PathBuf,
    options: WalOptions,
    segments: VecDeque<Segment>,
    file: Option<SegmentFile>,
    next: u64,
    sink: Arc<dyn WalSink>,
    disk_bytes: Arc<AtomicU64>,
    _lock: File,
}

impl Writer {
    /// Opens the last segment for appending, or starts one.
    fn open_active(&mut self) -> Result<(), WalError> {
        if self.segments.is_empty() {
            return self.start_segment();
        }
        let seg = self.segments.back().expect("non-empty");
        self.file = Some(SegmentFile::open(&seg.path, seg.bytes).map_err(io(&seg.path))?);
        Ok(())
    }

    fn start_segment(&mut self) -> Result<(), WalError> {
        if let Some(f) = &self.file {
            // Its padding off before the next segment starts: only the last may end in zeros.
            f.close().map_err(io(f.path()))?;
        }
        let path = self.dir.join(segment_name(self.next));
        let f = SegmentFile::create(&path).map_err(io(&path))?;
        sync_dir(&self.dir)?;
        tracing::debug!(path = %path.display(), direct = f.is_direct(), "new write-ahead log segment");
        self.segments.push_back(Segment { first: self.next, last: None, path, bytes: 0 });
        self.file = Some(f);
        Ok(())
    }

    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut buf = Vec::with_capacity(1 << 20);
        while let Some(first) = rx.blocking_recv() {
            let mut appends = Vec::new();
            let mut release = None;
            let mut shutdown = None;
            let mut pending = Some(first);
            let mut bytes = 0usize;
            while let Some(cmd) = pending.take().or_else(|| if bytes < GROUP_BYTES { rx.try_recv().ok() } else { None })
            {
                match cmd {
                    Command::Append { records, reply } => {
                        bytes += records
                            .iter()
                            .map(|r| r.events.len() + r.raw.as_ref().map_or(0, Bytes::len))
                            .sum::<usize>();
                        appends.push(Append { records, reply });
                    }
                    Command::Release(lw) => release = Some(release.map_or(lw, |r: u64| r.max(lw))),
                    Command::Shutdown(done) => {
                        shutdown = Some(done);
                        break;
                    }
                }
            }
            if !appends.is_empty() {
                self.write_group(&mut buf, appends);
            }
            if let Some(lw) = release {
                self.release(lw);
            }
            if let Some(done) = shutdown {
                if let Some(f) = &self.file {
                    let _ = f.close();
                }
                // Release the directory lock before answering, so the caller may reopen it.
                drop(self);
                let _ = done.send(());
                return;
            }
        }
    }

    fn write_group(&mut self, buf: &mut Vec<u8>, appends: Vec<Append>) {
        // Headers in one buffer, payloads written from where they are: no copy of them.
        buf.clear();
        let first = self.next;
        let records = || appends.iter().flat_map(|a| &a.records);
        let mut ends = Vec::new();
        for (i, r) in records().enumerate() {
            encode_header(buf, first + i as u64, &r.stream, r.raw.as_deref(), &r.events);
            ends.push(buf.len());
        }
        let count = ends.len() as u64;
        let mut parts: Vec<&[u8]> = Vec::with_capacity(3 * ends.len());
        let mut start = 0;
        for (r, end) in records().zip(&ends) {
            parts.push(&buf[start..*end]);
            if let Some(raw) = &r.raw {
                parts.push(raw);
            }
            parts.push(&r.events);
            start = *end;
        }
        let written: usize = parts.iter().map(|p| p.len()).sum();
        let seg = self.segments.back_mut().expect("an active segment");
        let file = self.file.as_mut().expect("an open segment");
        // On an error the file is cut back to its whole records.
        let result = file.append(&parts);
        drop(parts);
        if let Err(e) = result {
            let message = format!("{}: {e}", seg.path.display());
            tracing::error!(error = %message, "write-ahead log append failed");
            for a in appends {
                let _ = a.reply.send(Err(WalError::WriteFailed(message.clone())));
            }
            return;
        }
        seg.bytes = file.len();
        self.disk_bytes.fetch_add(written as u64, Ordering::Relaxed);
        if count == 0 {
            for a in appends {
                let _ = a.reply.send(Ok(first));
            }
            return;
        }
        let last = first + count - 1;
        seg.last = Some(last);
        self.next = last + 1;
        let mut replies = Vec::with_capacity(appends.len());
        let mut durable = Vec::with_capacity(count as usize);
        let mut position = first;
        for a in appends {
            replies.push((a.reply, position));
            for r in a.records {
                durable.push(WalRecord {
                    position,
                    stream: r.stream,
                    events: r.events,
                    raw: r.raw,
                    prepared: r.prepared,
                });
                position += 1;
            }
        }
        self.sink.durable(durable);
        for (reply, position) in replies {
            let _ = reply.send(Ok(position));
        }
        if seg.bytes >= self.options.segment_bytes
            && let Err(e) = self.start_segment()
        {
            tracing::error!(error = %e, "cannot start a new write-ahead log segment; appending to the current one");
        }
    }

    fn release(&mut self, low_watermark: u64) {
        while self.segments.len() > 1 {
            let seg = &self.segments[0];
            // A segment is done when the next one starts at or below the watermark.
            let next_first = self.segments[1].first;
            if next_first > low_watermark {
                break;
            }
            match fs::remove_file(&seg.path) {
                Ok(()) => {
                    self.disk_bytes.fetch_sub(seg.bytes, Ordering::Relaxed);
                    self.segments.pop_front();
                }
                Err(e) => {
                    tracing::warn!(path = %seg.path.display(), error = %e, "cannot delete a write-ahead log segment");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logyard_core::TimeSource;
    use logyard_core::encoded::{EventsEncoder, decode_events};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<WalRecord>>);

    impl WalSink for Collect {
        fn durable(&self, records: Vec<WalRecord>) {
            self.0.lock().unwrap().extend(records);
        }
    }

    fn events(texts: &[&str]) -> Bytes {
        let mut e = EventsEncoder::default();
        for (i, t) in texts.iter().enumerate() {
            e.push(i as i64, TimeSource::Received, t).unwrap();
        }
        e.finish()
    }

    fn open(dir: &Path, segment_bytes: u64) -> (Wal, Arc<Collect>) {
        let sink = Arc::new(Collect::default());
        let wal = Wal::open(WalOptions { dir: dir.into(), segment_bytes }, sink.clone()).unwrap();
        (wal, sink)
    }

    #[tokio::test]
    async fn appends_are_replayed_after_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = StreamName::new("s").unwrap();
        let (wal, sink) = open(dir.path(), 1 << 20);
        let id = wal.writer_id().to_owned();
        let p1 = wal.append(s.clone(), events(&["{\"a\":1}"]), None).await.unwrap();
        let raw = Bytes::from_static(b"the body as sent");
        let p2 = wal.append(s.clone(), events(&["{\"a\":2}", "{\"a\":3}"]), Some(raw.clone())).await.unwrap();
        assert_eq!((p1, p2), (1, 2));
        assert_eq!(sink.0.lock().unwrap().len(), 2);
        wal.close().await;
        drop(wal);

        let (wal, sink) = open(dir.path(), 1 << 20);
        assert_eq!(wal.writer_id(), id, "the writer id survives restarts");
        let got = sink.0.lock().unwrap().clone();
        assert_eq!(got.iter().map(|r| r.position).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(texts(&got[1].events), ["{\"a\":2}", "{\"a\":3}"]);
        assert_eq!((got[0].raw.as_ref(), got[1].raw.as_ref()), (None, Some(&raw)), "the raw payload comes back");
        assert_eq!(wal.append(s, events(&["{}"]), None).await.unwrap(), 3, "positions continue");
    }

    #[tokio::test]
    async fn records_appended_together_get_consecutive_positions() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (StreamName::new("a").unwrap(), StreamName::new("b").unwrap());
        let (wal, sink) = open(dir.path(), 1 << 20);
        let record =
            |s: &StreamName, t: &str| NewRecord { stream: s.clone(), events: events(&[t]), raw: None, prepared: None };
        let first = wal.append_all(vec![record(&a, "{\"n\":1}"), record(&b, "{\"n\":2}")]).await.unwrap();
        let next = wal.append(a.clone(), events(&["{\"n\":3}"]), None).await.unwrap();
        assert_eq!((first, next), (1, 3));
        let got: Vec<(u64, String)> =
            sink.0.lock().unwrap().iter().map(|r| (r.position, r.stream.to_string())).collect();
        assert_eq!(got, [(1, "a".into()), (2, "b".into()), (3, "a".into())]);
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_earlier_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        let s = StreamName::new("s").unwrap();
        let (wal, _) = open(dir.path(), 1 << 20);
        wal.append(s.clone(), events(&["{\"a\":1}"]), None).await.unwrap();
        wal.close().await;
        drop(wal);
        let seg = dir.path().join(segment_name(1));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[42, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (wal, sink) = open(dir.path(), 1 << 20);
        assert_eq!(sink.0.lock().unwrap().len(), 1);
        assert_eq!(wal.append(s, events(&["{}"]), None).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_log_left_by_a_crash_ends_in_padding_and_replays_whole() {
        let dir = tempfile::tempdir().unwrap();
        let s = StreamName::new("s").unwrap();
        let (wal, _) = open(dir.path(), 1 << 20);
        for n in 0..3 {
            wal.append(s.clone(), events(&[&format!("{{\"n\":{n}}}")]), None).await.unwrap();
        }
        // What is on disk while the log is open is what a crash leaves.
        let crashed = tempfile::tempdir().unwrap();
        for name in [segment_name(1), WRITER_ID_FILE.into()] {
            fs::copy(dir.path().join(&name), crashed.path().join(&name)).unwrap();
        }
        let on_disk = fs::read(crashed.path().join(segment_name(1))).unwrap();
        assert_eq!(on_disk.len(), crate::segment_file::BLOCK, "the last block is padded");
        let (wal, sink) = open(crashed.path(), 1 << 20);
        let replayed: Vec<String> = sink.0.lock().unwrap().iter().flat_map(|r| texts(&r.events)).collect();
        assert_eq!(replayed, ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}"]);
        assert_eq!(wal.append(s, events(&["{\"n\":3}"]), None).await.unwrap(), 4);
        wal.close().await;
        drop(wal);
        let (_wal, sink) = open(crashed.path(), 1 << 20);
        let replayed: Vec<String> = sink.0.lock().unwrap().iter().flat_map(|r| texts(&r.events)).collect();
        assert_eq!(
            replayed,
            ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}", "{\"n\":3}"],
            "appended behind the padding's place"
        );
    }

    fn texts(events: &Bytes) -> Vec<String> {
        decode_events(events).map(|e| e.unwrap().text.to_owned()).collect()
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (_wal, _) = open(dir.path(), 1 << 20);
        let err = Wal::open(WalOptions { dir: dir.path().into(), segment_bytes: 1 }, Arc::new(Collect::default()))
            .unwrap_err();
        assert!(matches!(err, WalError::Locked(_)), "{err}");
    }

    #[tokio::test]
    async fn released_segments_are_deleted_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = StreamName::new("s").unwrap();
        let count = || {
            fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "wal"))
                .count()
        };
        let (wal, _) = open(dir.path(), 1);
        for _ in 0..4 {
            wal.append(s.clone(), events(&["{\"x\":1}"]), None).await.unwrap();
        }
        wal.close().await;
        drop(wal);
        assert_eq!(count(), 5, "one record per segment plus the empty active one");

        let (wal, sink) = open(dir.path(), 1);
        assert_eq!(sink.0.lock().unwrap().len(), 4);
        wal.release(3);
        wal.close().await;
        drop(wal);
        assert_eq!(count(), 3, "the segments of positions 1 and 2 are gone");
        let (_wal, sink) = open(dir.path(), 1);
        let positions: Vec<_> = sink.0.lock().unwrap().iter().map(|r| r.position).collect();
        assert_eq!(positions, [3, 4]);
    }
}
