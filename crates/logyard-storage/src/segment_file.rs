//! The file a write-ahead log appends to, written with direct I/O where the file system
//! allows it.
//!
//! A buffered `write` copies every byte into the page cache, where the kernel allocates,
//! charges to the pod's memory cgroup and later writes back pages that nobody reads again
//! (the flusher has the records in memory; only a restart reads the log). With `O_DIRECT` the
//! device takes the bytes from our buffer: the log's bytes are copied once, into a reused
//! block-aligned buffer, and the page cache stays out of it. This is how the commit logs of
//! Redpanda and ScyllaDB are written.
//!
//! Direct writes must start and end on block boundaries. The file's last partial block is
//! kept at the front of the buffer and written again, padded with zeros, with the next
//! append; so between appends the file may end in zeros past its last record, which the
//! log's recovery reads as the end. [`SegmentFile::close`] cuts the padding off. Where the
//! file system refuses direct I/O (`EINVAL` when opening or writing), the file is written
//! through the page cache as before.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Direct I/O's unit: offsets and lengths are multiples of it (4 KiB covers devices of
/// 512-byte and 4 KiB logical blocks).
pub(crate) const BLOCK: usize = 4096;
/// Bytes the buffer holds: a larger append is written in pieces of this size.
const CHUNK: usize = 4 << 20;

/// An open segment and how many bytes of records it holds.
pub(crate) struct SegmentFile {
    file: File,
    path: PathBuf,
    len: u64,
    direct: Option<Blocks>,
}

/// The block-aligned buffer of direct writes; its first `len % BLOCK` bytes are the file's
/// last partial block.
struct Blocks {
    storage: Vec<u8>,
    /// Where the aligned `CHUNK` bytes begin in `storage`.
    start: usize,
}

impl Blocks {
    fn new() -> Self {
        let storage = vec![0; CHUNK + BLOCK];
        let start = (BLOCK - storage.as_ptr().addr() % BLOCK) % BLOCK;
        Self { storage, start }
    }

    fn buf(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + CHUNK]
    }
}

fn is_refused(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

impl SegmentFile {
    /// Creates an empty segment (which must not exist).
    pub(crate) fn create(path: &Path) -> io::Result<Self> {
        let direct = OpenOptions::new().create_new(true).write(true).custom_flags(libc::O_DIRECT).open(path);
        match direct {
            Ok(file) => Ok(Self { file, path: path.to_owned(), len: 0, direct: Some(Blocks::new()) }),
            Err(e) if is_refused(&e) => {
                let file = OpenOptions::new().create_new(true).append(true).open(path)?;
                Ok(Self { file, path: path.to_owned(), len: 0, direct: None })
            }
            Err(e) => Err(e),
        }
    }

    /// Opens a segment whose first `len` bytes are records, to append after them; whatever
    /// follows them is cut off.
    pub(crate) fn open(path: &Path, len: u64) -> io::Result<Self> {
        let kept = len % BLOCK as u64;
        let mut tail = vec![0; kept as usize];
        let buffered = OpenOptions::new().read(true).write(true).open(path)?;
        buffered.set_len(len)?;
        buffered.read_exact_at(&mut tail, len - kept)?;
        match OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path) {
            Ok(file) => {
                let mut blocks = Blocks::new();
                blocks.buf()[..tail.len()].copy_from_slice(&tail);
                Ok(Self { file, path: path.to_owned(), len, direct: Some(blocks) })
            }
            Err(e) if is_refused(&e) => Ok(Self { file: buffered, path: path.to_owned(), len, direct: None }),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of records in the file.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Whether appends bypass the page cache.
    pub(crate) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Appends `parts` one after another and makes them durable (`fdatasync`). On an error
    /// the file holds what it held before, as far as the file system lets us undo it.
    pub(crate) fn append(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let result = match &mut self.direct {
            Some(blocks) => match append_direct(&self.file, blocks, self.len, parts) {
                Err(e) if is_refused(&e) => {
                    tracing::warn!(path = %self.path.display(), "direct I/O refused; writing the write-ahead log through the page cache");
                    self.file = OpenOptions::new().append(true).open(&self.path)?;
                    self.direct = None;
                    self.file.set_len(self.len)?;
                    append_buffered(&mut self.file, parts)
                }
                other => other,
            },
            None => append_buffered(&mut self.file, parts),
        };
        match result {
            Ok(()) => {
                self.len += parts.iter().map(|p| p.len() as u64).sum::<u64>();
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    /// Cuts the padding of the last direct write off and makes the file durable.
    pub(crate) fn close(&self) -> io::Result<()> {
        if self.direct.is_some() {
            self.file.set_len(self.len)?;
        }
        self.file.sync_data()
    }
}

fn append_buffered(file: &mut File, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    file.sync_data()
}

/// Copies `parts` behind the partial block at the buffer's front, writes whole chunks as the
/// buffer fills and the rest padded to a block, then syncs. The buffer's front is the new
/// partial block afterwards, or the old one again after an error.
fn append_direct(file: &File, blocks: &mut Blocks, len: u64, parts: &[&[u8]]) -> io::Result<()> {
    let kept = (len % BLOCK as u64) as usize;
    let mut at = len - kept as u64;
    let saved = blocks.buf()[..kept].to_vec();
    let result = (|| {
        let buf = blocks.buf();
        let mut filled = kept;
        for part in parts {
            let mut part = *part;
            while !part.is_empty() {
                let n = part.len().min(CHUNK - filled);
                buf[filled..filled + n].copy_from_slice(&part[..n]);
                filled += n;
                part = &part[n..];
                if filled == CHUNK {
                    file.write_all_at(buf, at)?;
                    at += CHUNK as u64;
                    filled = 0;
                }
            }
        }
        let padded = filled.div_ceil(BLOCK) * BLOCK;
        buf[filled..padded].fill(0);
        file.write_all_at(&buf[..padded], at)?;
        file.sync_data()?;
        let partial = filled % BLOCK;
        buf.copy_within(filled - partial..filled, 0);
        Ok(())
    })();
    if result.is_err() {
        blocks.buf()[..kept].copy_from_slice(&saved);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of every value 0..=250 in turn, so that a misplaced block shows.
    fn pattern(n: usize, seed: usize) -> Vec<u8> {
        (0..n).map(|i| ((i + seed) % 251) as u8).collect()
    }

    #[test]
    fn appends_of_any_size_read_back_in_order_after_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.wal");
        let mut f = SegmentFile::create(&path).unwrap();
        assert!(f.is_direct(), "ext4 and xfs take direct I/O; a test directory on tmpfs may not");
        let mut expected = Vec::new();
        // Around a block, inside one, across many, and larger than the buffer.
        for (i, n) in [1, 4095, 1, 4096, 10, 9000, CHUNK + 5000, 3, 2 * CHUNK].into_iter().enumerate() {
            let (a, b) = (pattern(n / 2, i), pattern(n - n / 2, i + 7));
            f.append(&[&a, &b]).unwrap();
            expected.extend_from_slice(&a);
            expected.extend_from_slice(&b);
            assert_eq!(f.len(), expected.len() as u64);
            let on_disk = std::fs::read(&path).unwrap();
            assert_eq!(on_disk.len() % BLOCK, 0, "a direct write ends on a block");
            assert_eq!(&on_disk[..expected.len()], &expected[..], "after append {i}");
            assert!(on_disk[expected.len()..].iter().all(|&b| b == 0), "padding is zeros");
        }
        f.close().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected, "close cuts the padding off");

        let mut f = SegmentFile::open(&path, expected.len() as u64).unwrap();
        let more = pattern(5000, 3);
        f.append(&[&more]).unwrap();
        f.close().unwrap();
        expected.extend_from_slice(&more);
        assert_eq!(std::fs::read(&path).unwrap(), expected, "appending after a reopen keeps the partial block");
    }

    #[test]
    fn opening_cuts_what_follows_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.wal");
        std::fs::write(&path, pattern(10_000, 0)).unwrap();
        let mut f = SegmentFile::open(&path, 6000).unwrap();
        f.append(&[b"end"]).unwrap();
        f.close().unwrap();
        let mut expected = pattern(6000, 0);
        expected.extend_from_slice(b"end");
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }
}
