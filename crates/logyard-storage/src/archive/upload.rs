//! Writing a bundle to the object store while it is being made, in bounded memory whatever
//! its size.
//!
//! The [`BundleWriter`] runs on a blocking thread and writes into a [`PartWriter`], which cuts
//! the compressed bytes into parts of a fixed size, takes each part's MD5 (on S3, whose ETags
//! it is checked against; local files and memory have other ETags) and hands the part
//! through a bounded channel to an upload task on the runtime: a bundle of one part is one
//! PUT, a larger one a multipart upload with a few parts in flight. When the channel is full
//! the writer waits, so the bundler holds a few parts (and the compression pool's frames),
//! never the bundle. A writer that stops before the end (an error, a drop) closes the channel
//! and the task aborts the multipart upload.
//!
//! What was sent ([`Sent`]: bytes, part MD5s) is what the stored object is checked against
//! (see `Archive`); this module does not read anything back.

use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use md5::{Digest, Md5};
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use super::bundle::{BundleWriter, Member, MemberInfo};
use super::{Archive, ArchiveError, BundleRef};
use crate::StorageError;

/// The usual part size: S3 wants at least 5 MiB (but for the last part) and at most 10,000
/// parts, so 16 MiB parts hold objects of up to 156 GiB.
pub const PART_BYTES: usize = 16 << 20;
/// S3's limit on the parts of one multipart upload.
pub const MAX_PARTS: usize = 10_000;
/// Parts being sent at once.
const PARTS_IN_FLIGHT: usize = 2;

/// The part size for a bundle of up to `members_bytes` of members: [`PART_BYTES`], or whole
/// MiB large enough that 10,000 parts hold the bundle (with room for tar headers and zstd's
/// framing of data that does not compress).
pub fn part_bytes_for(members_bytes: u64) -> usize {
    let bound = members_bytes.saturating_add(members_bytes / 64).saturating_add(1 << 20);
    let needed = bound.div_ceil(MAX_PARTS as u64).div_ceil(1 << 20).saturating_mul(1 << 20);
    PART_BYTES.max(usize::try_from(needed).unwrap_or(usize::MAX))
}

/// How a bundle is written.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// zstd level.
    pub level: i32,
    /// Decompressed bytes per zstd frame of small members (0: a frame per member).
    pub frame_bytes: u64,
    /// Bytes per part of the upload (see [`part_bytes_for`]).
    pub part_bytes: usize,
}

enum Message {
    Part(Bytes, Option<[u8; 16]>),
    End,
}

/// The blocking side of an upload: cuts what is written into parts and hands them to the
/// upload task, waiting while the task is behind. Must not be used on the async runtime.
#[derive(Debug)]
pub struct PartWriter {
    buf: Vec<u8>,
    part_bytes: usize,
    parts: usize,
    /// Whether each part's MD5 is taken.
    md5: bool,
    tx: mpsc::Sender<Message>,
}

impl PartWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.parts == MAX_PARTS {
            return Err(io::Error::other(format!(
                "the object is larger than {MAX_PARTS} parts of {} bytes",
                self.part_bytes
            )));
        }
        let data = std::mem::take(&mut self.buf);
        let md5 = self.md5.then(|| Md5::digest(&data).into());
        self.parts += 1;
        self.tx
            .blocking_send(Message::Part(Bytes::from(data), md5))
            .map_err(|_| io::Error::other("the upload of the object stopped"))
    }

    /// Sends the last part and the end of the object.
    pub fn finish(mut self) -> io::Result<()> {
        if !self.buf.is_empty() || self.parts == 0 {
            self.send()?;
        }
        self.tx.blocking_send(Message::End).map_err(|_| io::Error::other("the upload of the object stopped"))
    }
}

impl Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.part_bytes);
        }
        let n = buf.len().min(self.part_bytes - self.buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == self.part_bytes {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What an upload sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Sent {
    pub bytes: u64,
    pub parts: usize,
    /// The MD5 of each part, in order, when they were taken.
    pub part_md5s: Vec<[u8; 16]>,
    /// Sent as a multipart upload (else one PUT).
    pub multipart: bool,
}

impl Sent {
    /// The ETag S3 gives the object where its ETags are MD5s (no encryption, or SSE-S3): of
    /// one PUT, the body's MD5; of a multipart upload, the MD5 of its parts' MD5s, `-`, and
    /// the number of parts. `None` when the parts' MD5s were not taken.
    pub fn expected_etag(&self) -> Option<String> {
        if self.parts == 0 || self.part_md5s.len() != self.parts {
            return None;
        }
        if !self.multipart {
            return self.part_md5s.first().map(hex::encode);
        }
        let mut all = Md5::new();
        for m in &self.part_md5s {
            all.update(m);
        }
        Some(format!("{}-{}", hex::encode(all.finalize()), self.part_md5s.len()))
    }
}

/// Whether an ETag has the shape of S3's MD5-based ones (32 hex digits, and `-<parts>` for a
/// multipart upload). Local files and memory have other ETags; so do S3 objects encrypted
/// with SSE-KMS or SSE-C, though theirs have the same shape.
pub(crate) fn md5_shaped(etag: &str) -> bool {
    let (digest, parts) = match etag.split_once('-') {
        Some((d, p)) => (d, Some(p)),
        None => (etag, None),
    };
    digest.len() == 32
        && digest.bytes().all(|b| b.is_ascii_hexdigit())
        && parts.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// What the upload task ends with: `None` when the writer stopped before the end (the
/// upload was then aborted).
type Sending = JoinHandle<Result<Option<Sent>, StorageError>>;

/// Starts uploading an object to `path`: the writer for a blocking thread, and the task.
/// `md5`: take each part's MD5, to check the stored object's ETag against.
pub(crate) fn start(store: Arc<dyn ObjectStore>, path: Path, part_bytes: usize, md5: bool) -> (PartWriter, Sending) {
    let (tx, rx) = mpsc::channel(1);
    let writer = PartWriter { buf: Vec::new(), part_bytes: part_bytes.max(1), parts: 0, md5, tx };
    (writer, tokio::spawn(send(store, path, rx)))
}

async fn send(
    store: Arc<dyn ObjectStore>,
    path: Path,
    mut rx: mpsc::Receiver<Message>,
) -> Result<Option<Sent>, StorageError> {
    let mut sent = Sent::default();
    // The first part waits until it is known whether a second one follows.
    let mut first: Option<Bytes> = None;
    let mut upload: Option<Box<dyn MultipartUpload>> = None;
    let mut in_flight = JoinSet::new();
    let mut ended = false;
    let outcome: Result<(), StorageError> = async {
        while let Some(message) = rx.recv().await {
            let data = match message {
                Message::Part(data, md5) => {
                    sent.bytes += data.len() as u64;
                    sent.parts += 1;
                    sent.part_md5s.extend(md5);
                    data
                }
                Message::End => {
                    ended = true;
                    return Ok(());
                }
            };
            let data = match (upload.is_some(), first.take()) {
                (true, _) => data,
                (false, None) => {
                    first = Some(data);
                    continue;
                }
                (false, Some(held)) => {
                    let mut started = store.put_multipart(&path).await.map_err(store_failed)?;
                    in_flight.spawn(started.put_part(PutPayload::from_bytes(held)));
                    upload = Some(started);
                    data
                }
            };
            let upload = upload.as_mut().expect("a multipart upload from the second part on");
            while in_flight.len() >= PARTS_IN_FLIGHT {
                joined(in_flight.join_next().await.expect("parts in flight"))?;
            }
            in_flight.spawn(upload.put_part(PutPayload::from_bytes(data)));
        }
        Ok(())
    }
    .await;
    let outcome = match outcome {
        Ok(()) if !ended => Ok(false),
        Ok(()) => Ok(true),
        Err(e) => Err(e),
    };
    match (outcome, upload) {
        (Ok(true), None) => {
            store.put(&path, PutPayload::from_bytes(first.unwrap_or_default())).await.map_err(store_failed)?;
            Ok(Some(sent))
        }
        (Ok(true), Some(mut upload)) => {
            let mut result = Ok(());
            while let Some(part) = in_flight.join_next().await {
                result = result.and(joined(part));
            }
            if let Err(e) = result {
                let _ = upload.abort().await;
                return Err(e);
            }
            upload.complete().await.map_err(store_failed)?;
            sent.multipart = true;
            Ok(Some(sent))
        }
        (outcome, upload) => {
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
            if let Some(mut upload) = upload
                && let Err(e) = upload.abort().await
            {
                tracing::warn!(path = %path, error = %e, "aborting the upload of an archive bundle failed");
            }
            outcome.map(|_| None)
        }
    }
}

fn store_failed(source: object_store::Error) -> StorageError {
    StorageError::ObjectStore { context: "writing an archive bundle", source }
}

fn joined(part: Result<object_store::Result<()>, tokio::task::JoinError>) -> Result<(), StorageError> {
    match part {
        Ok(result) => result.map_err(store_failed),
        Err(e) => Err(StorageError::Io("writing an archive bundle".into(), io::Error::other(e))),
    }
}

/// What an upload sent, given how its writer ended: the task's error when the store failed
/// (the writer then only saw the channel close), else the writer's.
pub(crate) async fn outcome(key: &str, written: io::Result<()>, sending: Sending) -> Result<Sent, ArchiveError> {
    let task = sending.await;
    let writer_failed = |e: io::Error| ArchiveError::Storage(StorageError::Io(format!("writing bundle {key}"), e));
    match (written, task) {
        (Ok(()), Ok(Ok(Some(sent)))) => Ok(sent),
        (_, Ok(Err(e))) => Err(e.into()),
        (Err(e), _) => Err(writer_failed(e)),
        (Ok(()), Ok(Ok(None))) => Err(writer_failed(io::Error::other("the writer stopped before the end"))),
        (Ok(()), Err(e)) => Err(writer_failed(io::Error::other(e))),
    }
}

/// A bundle being written to the store: members are appended (each on a blocking thread),
/// then [`BundleUpload::finish`] completes the upload, writes the index and checks what is
/// stored. Dropped before `finish`, it aborts the upload.
pub struct BundleUpload {
    archive: Archive,
    key: String,
    writer: Option<BundleWriter<PartWriter>>,
    sending: Option<Sending>,
}

impl std::fmt::Debug for BundleUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleUpload").field("key", &self.key).finish_non_exhaustive()
    }
}

impl BundleUpload {
    pub(crate) fn new(archive: Archive, key: String, options: WriteOptions) -> Self {
        let path = archive.storage.path(&key);
        let (parts, sending) = start(archive.storage.root_store(), path, options.part_bytes, archive.md5_etags());
        let writer = BundleWriter::new(parts, options.level, options.frame_bytes);
        Self { archive, key, writer: Some(writer), sending: Some(sending) }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Appends a member of `size` bytes read from `data` (a blocking reader, read on a
    /// blocking thread).
    pub async fn append(
        &mut self,
        info: MemberInfo,
        size: u64,
        data: impl Read + Send + 'static,
    ) -> Result<Member, ArchiveError> {
        self.with_writer(move |writer| writer.append(info, size, data).cloned()).await
    }

    /// Runs `f` with the bundle's writer on a blocking thread (to append many members in one
    /// go). After an error the upload is aborted and the bundle can take no more.
    pub async fn with_writer<T, F>(&mut self, f: F) -> Result<T, ArchiveError>
    where
        F: FnOnce(&mut BundleWriter<PartWriter>) -> io::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let Some(mut writer) = self.writer.take() else {
            return Err(self.stopped());
        };
        // On an error the writer is dropped on the blocking thread: its drop may still write.
        let ran = tokio::task::spawn_blocking(move || f(&mut writer).map(|value| (writer, value))).await;
        match ran {
            Ok(Ok((writer, value))) => {
                self.writer = Some(writer);
                Ok(value)
            }
            Ok(Err(e)) => Err(self.failed(e).await),
            Err(e) => Err(self.failed(io::Error::other(e)).await),
        }
    }

    /// Ends the bundle, completes the upload, writes the index and checks the stored bundle
    /// against what was sent (see `Archive::store`).
    pub async fn finish(mut self) -> Result<(BundleRef, super::BundleIndex), ArchiveError> {
        let Some(writer) = self.writer.take() else {
            return Err(self.stopped());
        };
        let ended = tokio::task::spawn_blocking(move || {
            let (parts, index) = writer.finish()?;
            parts.finish()?;
            Ok::<_, io::Error>(index)
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)));
        let sending = self.sending.take().expect("the upload task until finished");
        let (written, index) = match ended {
            Ok(index) => (Ok(()), Some(index)),
            Err(e) => (Err(e), None),
        };
        let sent = outcome(&self.key, written, sending).await?;
        let index = index.expect("an index when the writer finished");
        let stored = self.archive.commit(&self.key, &sent, &index).await?;
        Ok((stored, index))
    }

    async fn failed(&mut self, e: io::Error) -> ArchiveError {
        match self.sending.take() {
            Some(sending) => outcome(&self.key, Err(e), sending).await.expect_err("the writer failed"),
            None => ArchiveError::Storage(StorageError::Io(format!("writing bundle {}", self.key), e)),
        }
    }

    fn stopped(&self) -> ArchiveError {
        ArchiveError::Storage(StorageError::Io(
            format!("writing bundle {}", self.key),
            io::Error::other("an earlier error stopped this bundle"),
        ))
    }
}

impl Drop for BundleUpload {
    fn drop(&mut self) {
        // Dropping the writer closes the channel (the task then aborts the upload); it may
        // write, which must not happen on the runtime.
        if let Some(writer) = self.writer.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || drop(writer))),
                Err(_) => drop(writer),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_hold_the_largest_bundle_in_10000_parts() {
        assert_eq!(part_bytes_for(0), PART_BYTES);
        assert_eq!(part_bytes_for(64 << 20), PART_BYTES);
        for members in [50u64 << 30, 150 << 30, 1 << 40] {
            let part = part_bytes_for(members) as u64;
            assert!(part >= PART_BYTES as u64 && part.is_multiple_of(1 << 20));
            assert!(part * MAX_PARTS as u64 >= members + members / 64, "{members}: {part}");
        }
        assert_eq!(part_bytes_for(1 << 40), 107 << 20);
    }

    #[test]
    fn the_expected_etag_is_s3s() {
        let md5 = |data: &[u8]| -> [u8; 16] { Md5::digest(data).into() };
        let single = Sent { bytes: 3, parts: 1, part_md5s: vec![md5(b"abc")], multipart: false };
        assert_eq!(single.expected_etag().unwrap(), "900150983cd24fb0d6963f7d28e17f72");
        let parts = Sent { bytes: 6, parts: 2, part_md5s: vec![md5(b"abc"), md5(b"def")], multipart: true };
        let mut both = Vec::new();
        both.extend_from_slice(&md5(b"abc"));
        both.extend_from_slice(&md5(b"def"));
        assert_eq!(parts.expected_etag().unwrap(), format!("{}-2", hex::encode(md5(&both))));
        // Without the parts' MD5s (local files, memory) there is nothing to expect.
        assert_eq!(Sent { bytes: 6, parts: 2, part_md5s: Vec::new(), multipart: true }.expected_etag(), None);
        for shaped in ["900150983cd24fb0d6963f7d28e17f72", "900150983cd24fb0d6963f7d28e17f72-12"] {
            assert!(md5_shaped(shaped), "{shaped}");
        }
        for other in ["1", "2a0f-18b3-400", "900150983cd24fb0d6963f7d28e17f72-", "900150983cd24fb0d6963f7d28e17f7z"] {
            assert!(!md5_shaped(other), "{other}");
        }
    }
}
