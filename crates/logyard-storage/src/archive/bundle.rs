//! The bundle format: a tar archive compressed as a series of independent zstd frames, and an
//! index of where each member lies.
//!
//! Concatenated zstd frames decompress as one stream, so `tar --zstd -xf bundle.tar.zst` (or
//! `zstd -dc | tar -x`) extracts a whole bundle. Each frame holds whole members only, so one
//! member is read with a single ranged read of its frame, decompressed on its own. Members
//! smaller than the frame target share a frame (compressing several small files together
//! keeps most of the ratio of one stream); a larger member gets a frame of its own. A target
//! of 0 gives every member its own frame. Frames carry zstd's content checksum, and the index
//! the SHA-256 of every member. The writer writes to any [`Write`] (a file, or the parts of an
//! upload); reading a bundle back is `super::read`'s.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `format` of an index this code writes.
pub const INDEX_FORMAT: &str = "logyard-bundle/1";

/// Where one member lies in a bundle, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The path inside the archive.
    pub name: String,
    /// The byte range of the member's zstd frame in the bundle: `offset..offset + length`.
    pub offset: u64,
    pub length: u64,
    /// Where the member's data starts in the decompressed frame (after its tar headers).
    pub data_offset: u64,
    /// Bytes of data.
    pub size: u64,
    /// Hex SHA-256 of the data.
    pub sha256: String,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Rows ingested from the member, when it was ingested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Lines rejected at ingest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<u64>,
    /// The upload the member came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
}

/// The index stored beside a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleIndex {
    pub format: String,
    /// Bytes of the bundle.
    pub bytes: u64,
    pub members: Vec<Member>,
}

/// What describes a member before it is written.
#[derive(Debug, Clone, Default)]
pub struct MemberInfo {
    pub name: String,
    pub mtime: u64,
    pub rows: Option<u64>,
    pub rejected: Option<u64>,
    pub upload_id: Option<String>,
}

/// Errors reading a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("reading the bundle: {0}")]
    Io(#[from] io::Error),
    #[error("member {name:?}: {problem}")]
    Member { name: String, problem: String },
    #[error("the index is not valid: {0}")]
    Index(String),
}

/// Counts the bytes written through it.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Members at least this large are compressed as they are read, on the calling thread;
/// smaller frames are buffered and compressed by the pool.
const STREAMED_MEMBER: u64 = 4 << 20;

/// The zstd level of a frame that holds only members already compressed (gzip, zstd, bzip2,
/// xz files): their bytes do not compress again, every level stores them as raw blocks of the
/// same size, and level 1 finds that out fastest (BENCHMARKS.md, "Archive").
const COMPRESSED_MEMBERS_LEVEL: i32 = 1;

/// Whether a member's first bytes begin a gzip, zstd, bzip2 or xz stream.
fn already_compressed(head: &[u8]) -> bool {
    const MAGICS: [&[u8]; 4] = [&[0x1f, 0x8b], &[0x28, 0xb5, 0x2f, 0xfd], b"BZh", &[0xfd, b'7', b'z', b'X', b'Z', 0]];
    MAGICS.iter().any(|magic| head.starts_with(magic))
}

type Compressed = io::Result<Vec<u8>>;

/// A frame's raw bytes, its level, and where to send the compressed frame.
type Job = (Vec<u8>, i32, mpsc::Sender<Compressed>);

/// Threads that compress whole frames; results are taken back in order.
struct Pool {
    jobs: Option<mpsc::Sender<Job>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let workers = (0..threads)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || {
                    loop {
                        let job = rx.lock().expect("pool lock").recv();
                        let Ok((raw, level, reply)) = job else { return };
                        let _ = reply.send(compress_frame(&raw, level));
                    }
                })
            })
            .collect();
        Self { jobs: Some(tx), workers }
    }

    fn submit(&self, raw: Vec<u8>, level: i32) -> mpsc::Receiver<Compressed> {
        let (tx, rx) = mpsc::channel();
        self.jobs.as_ref().expect("pool running").send((raw, level, tx)).expect("pool threads alive");
        rx
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn frame_encoder<O: Write>(out: O, level: i32) -> io::Result<zstd::stream::write::Encoder<'static, O>> {
    let mut encoder = zstd::stream::write::Encoder::new(out, level)?;
    encoder.include_checksum(true)?;
    encoder.include_contentsize(false)?;
    Ok(encoder)
}

fn compress_frame(raw: &[u8], level: i32) -> Compressed {
    let mut encoder = frame_encoder(Vec::with_capacity(raw.len() / 3 + 64), level)?;
    encoder.write_all(raw)?;
    encoder.finish()
}

/// The tar stream's destination: frames compressed in parallel (or, for a large member, as
/// it streams), written in order to the counted output.
struct FrameSink<W: Write> {
    /// The level of a frame that holds a member not already compressed.
    level: i32,
    /// The open frame holds a member that is not already compressed.
    plain: bool,
    /// Set except while a streamed frame's encoder owns it.
    out: Option<Counting<W>>,
    /// The open buffered frame's raw bytes.
    raw: Vec<u8>,
    /// The open streamed frame, and where it starts.
    streamed: Option<(zstd::stream::write::Encoder<'static, Counting<W>>, u64)>,
    /// Decompressed bytes written to the open frame.
    frame_pos: u64,
    /// Frames closed so far; the open frame's number.
    frames: usize,
    pool: Pool,
    /// Frames being compressed, oldest first.
    queue: VecDeque<mpsc::Receiver<Compressed>>,
    /// Byte ranges of the frames written, by frame number.
    ranges: Vec<(u64, u64)>,
    /// The level of each frame closed, by frame number.
    #[cfg(test)]
    levels: Vec<i32>,
}

impl<W: Write> FrameSink<W> {
    fn out(&mut self) -> &mut Counting<W> {
        self.out.as_mut().expect("output present outside a streamed frame")
    }

    /// Writes the compressed frames that are ready (all of them with `all`), in order.
    fn drain(&mut self, all: bool) -> io::Result<()> {
        while let Some(rx) = self.queue.front() {
            let frame = if all {
                rx.recv().map_err(|_| io::Error::other("a compression thread stopped"))?
            } else {
                match rx.try_recv() {
                    Ok(f) => f,
                    Err(mpsc::TryRecvError::Empty) => return Ok(()),
                    Err(mpsc::TryRecvError::Disconnected) => {
                        return Err(io::Error::other("a compression thread stopped"));
                    }
                }
            }?;
            self.queue.pop_front();
            let start = self.out().written;
            self.out().write_all(&frame)?;
            self.ranges.push((start, frame.len() as u64));
        }
        Ok(())
    }

    /// The open frame's zstd level.
    fn frame_level(&self) -> i32 {
        if self.plain { self.level } else { COMPRESSED_MEMBERS_LEVEL }
    }

    /// Starts a frame compressed as it is written (for a large member, `plain` when it is not
    /// already compressed).
    fn begin_streamed(&mut self, plain: bool) -> io::Result<()> {
        self.close()?;
        self.drain(true)?;
        self.plain = plain;
        let out = self.out.take().expect("output present between frames");
        let start = out.written;
        self.streamed = Some((frame_encoder(out, self.frame_level())?, start));
        Ok(())
    }

    /// Ends the open frame, if any.
    fn close(&mut self) -> io::Result<()> {
        if let Some((encoder, start)) = self.streamed.take() {
            let out = encoder.finish()?;
            self.ranges.push((start, out.written - start));
            self.out = Some(out);
        } else if !self.raw.is_empty() {
            let raw = std::mem::take(&mut self.raw);
            self.queue.push_back(self.pool.submit(raw, self.frame_level()));
            // Keep a bounded number of frames in memory.
            while self.queue.len() > 2 * self.pool.workers.len() {
                let rx = self.queue.front().expect("non-empty");
                let frame = rx.recv().map_err(|_| io::Error::other("a compression thread stopped"))??;
                self.queue.pop_front();
                let start = self.out().written;
                self.out().write_all(&frame)?;
                self.ranges.push((start, frame.len() as u64));
            }
            self.drain(false)?;
        } else {
            return Ok(());
        }
        #[cfg(test)]
        self.levels.push(self.frame_level());
        self.frames += 1;
        self.frame_pos = 0;
        self.plain = false;
        Ok(())
    }
}

impl<W: Write> Write for FrameSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match self.streamed.as_mut() {
            Some((encoder, _)) => encoder.write(buf)?,
            None => {
                self.raw.extend_from_slice(buf);
                buf.len()
            }
        };
        self.frame_pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes a bundle member by member. Frames of small members are compressed by a pool of
/// threads (one per core, at most four) and written in order; a large member streams.
pub struct BundleWriter<W: Write> {
    tar: tar::Builder<FrameSink<W>>,
    frame_target: u64,
    members: Vec<Member>,
    /// The frame each member lies in.
    member_frames: Vec<usize>,
}

impl<W: Write> BundleWriter<W> {
    /// `level` is the zstd level (3 is zstd's default); `frame_target` the decompressed bytes
    /// after which a frame is closed (0: one frame per member).
    pub fn new(out: W, level: i32, frame_target: u64) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
        let sink = FrameSink {
            level,
            plain: false,
            out: Some(Counting { inner: out, written: 0 }),
            raw: Vec::new(),
            streamed: None,
            frame_pos: 0,
            frames: 0,
            pool: Pool::new(threads),
            queue: VecDeque::new(),
            ranges: Vec::new(),
            #[cfg(test)]
            levels: Vec::new(),
        };
        let mut tar = tar::Builder::new(sink);
        tar.mode(tar::HeaderMode::Deterministic);
        Self { tar, frame_target, members: Vec::new(), member_frames: Vec::new() }
    }

    /// Appends one member of `size` bytes read from `data`. A frame that holds only members
    /// already compressed (by their first bytes) is written at zstd level 1.
    pub fn append(&mut self, info: MemberInfo, size: u64, data: impl Read) -> io::Result<&Member> {
        let mut data = data.take(size);
        let mut head = Vec::with_capacity(6);
        (&mut data).take(6).read_to_end(&mut head)?;
        let plain = !already_compressed(&head);
        let data = (&head[..]).chain(data);
        let sink = self.tar.get_mut();
        // A member that does not fit the open frame's target starts a frame of its own.
        if sink.frame_pos > 0 && (self.frame_target == 0 || sink.frame_pos + size > self.frame_target) {
            sink.close()?;
        }
        let streamed = size >= STREAMED_MEMBER;
        if streamed {
            sink.begin_streamed(plain)?;
        } else {
            sink.plain |= plain;
        }
        let frame = sink.frames;
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(info.mtime);
        header.set_entry_type(tar::EntryType::Regular);
        let mut hashing = HashingReader { inner: data, hasher: Sha256::new(), read: 0 };
        self.tar.append_data(&mut header, &info.name, &mut hashing)?;
        if hashing.read != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: {} bytes announced, {} read", info.name, size, hashing.read),
            ));
        }
        let padding = (512 - size % 512) % 512;
        let sink = self.tar.get_mut();
        let end = sink.frame_pos;
        self.members.push(Member {
            name: info.name,
            offset: 0,
            length: 0,
            data_offset: end - padding - size,
            size,
            sha256: hex::encode(hashing.hasher.finalize()),
            mtime: info.mtime,
            rows: info.rows,
            rejected: info.rejected,
            upload_id: info.upload_id,
        });
        self.member_frames.push(frame);
        if streamed || self.frame_target == 0 || end >= self.frame_target {
            sink.close()?;
        }
        Ok(self.members.last().expect("just pushed"))
    }

    /// Ends the archive (its closing zero blocks in a last frame of their own) and returns
    /// the output and the index.
    pub fn finish(mut self) -> io::Result<(W, BundleIndex)> {
        self.tar.get_mut().close()?;
        let mut sink = self.tar.into_inner()?;
        sink.close()?;
        sink.drain(true)?;
        for (m, frame) in self.members.iter_mut().zip(&self.member_frames) {
            let (offset, length) = sink.ranges[*frame];
            m.offset = offset;
            m.length = length;
        }
        let out = sink.out.take().expect("output present after the last frame");
        let index = BundleIndex { format: INDEX_FORMAT.into(), bytes: out.written, members: self.members };
        Ok((out.inner, index))
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

impl BundleIndex {
    pub fn from_json(bytes: &[u8]) -> Result<Self, BundleError> {
        let index: BundleIndex = serde_json::from_slice(bytes).map_err(|e| BundleError::Index(e.to_string()))?;
        if index.format != INDEX_FORMAT {
            return Err(BundleError::Index(format!("format {:?}, expected {INDEX_FORMAT:?}", index.format)));
        }
        for m in &index.members {
            if m.offset.checked_add(m.length).is_none_or(|end| end > index.bytes) {
                return Err(BundleError::Index(format!("member {:?} lies outside the bundle", m.name)));
            }
        }
        Ok(index)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("an index serializes")
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn bundle(files: &[(&str, Vec<u8>)], frame_target: u64) -> (Vec<u8>, BundleIndex) {
        let mut w = BundleWriter::new(Vec::new(), 3, frame_target);
        for (i, (name, data)) in files.iter().enumerate() {
            let info = MemberInfo { name: (*name).into(), mtime: 1_764_000_000 + i as u64, ..Default::default() };
            w.append(info, data.len() as u64, &data[..]).unwrap();
        }
        w.finish().unwrap()
    }

    pub(crate) fn files() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("a.log", b"one\ntwo\n".to_vec()),
            ("dir/b.ndjson", (0..2000).map(|i| format!("{{\"i\":{i}}}\n")).collect::<String>().into_bytes()),
            ("empty", Vec::new()),
            (
                "a/very/long/path/that/needs/more/than/one/hundred/bytes/of/tar/header/space/to/be/written/in/full.log",
                vec![7u8; 513],
            ),
            // Large enough to be compressed as it streams, between small members.
            ("big.log", (0..(5u32 << 20) / 8).flat_map(|i| (i % 1000).to_le_bytes().repeat(2)).collect()),
            ("after.log", b"last\n".to_vec()),
        ]
    }

    #[test]
    fn the_whole_bundle_is_one_tar_stream() {
        let files = files();
        let (bytes, _) = bundle(&files, 0);
        let mut archive = tar::Archive::new(zstd::stream::read::Decoder::new(&bytes[..]).unwrap());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            seen.push((entry.path().unwrap().to_string_lossy().into_owned(), data));
        }
        let expected: Vec<(String, Vec<u8>)> = files.into_iter().map(|(n, d)| (n.to_owned(), d)).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn frames_of_compressed_members_alone_are_written_at_level_1() {
        let gzip = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&b"GET /a 200\n".repeat(100)).unwrap();
            e.finish().unwrap()
        };
        let zstd = zstd::encode_all(&b"line\n".repeat(100)[..], 3).unwrap();
        let large_gzip = [&gzip[..], &vec![0u8; STREAMED_MEMBER as usize]].concat();
        let text = b"GET /b 500\n".repeat(100);
        let members: [(&str, &[u8]); 7] = [
            ("a.log.gz", &gzip),
            ("b.log.zst", &zstd),
            ("c.log", &text),
            ("d.log.gz", &gzip),
            ("e.log", b"x\n"),
            ("big.log.gz", &large_gzip),
            ("big.log", &large_gzip[2..]),
        ];
        // Frames of 2 KiB: a and b; c; d and e; each large member streamed on its own.
        let mut w = BundleWriter::new(Vec::new(), 9, 2048);
        for (name, data) in members {
            let info = MemberInfo { name: name.into(), ..Default::default() };
            w.append(info, data.len() as u64, data).unwrap();
        }
        assert_eq!(w.tar.get_ref().levels, [1, 9, 9, 1, 9]);
        let (bytes, index) = w.finish().unwrap();
        let mut archive = tar::Archive::new(zstd::stream::read::Decoder::new(&bytes[..]).unwrap());
        for (entry, (name, data)) in archive.entries().unwrap().zip(members) {
            let mut entry = entry.unwrap();
            let mut read = Vec::new();
            entry.read_to_end(&mut read).unwrap();
            assert_eq!((entry.path().unwrap().to_str().unwrap(), &read[..]), (name, data));
        }
        assert_eq!(index.members.len(), 7);
    }

    #[test]
    fn a_short_reader_is_an_error() {
        let mut w = BundleWriter::new(Vec::new(), 3, 0);
        let info = MemberInfo { name: "x".into(), ..Default::default() };
        assert!(w.append(info, 10, &b"abc"[..]).is_err());
    }

    #[test]
    fn the_index_round_trips_and_is_checked() {
        let (_, index) = bundle(&files(), 1 << 20);
        assert_eq!(BundleIndex::from_json(&index.to_json()).unwrap(), index);
        let mut bad = index.clone();
        bad.members[0].length = bad.bytes + 1;
        assert!(BundleIndex::from_json(&bad.to_json()).is_err());
    }
}
