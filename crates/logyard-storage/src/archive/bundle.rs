//! The bundle format: a tar archive compressed as a series of independent zstd frames, and an
//! index of where each member lies.
//!
//! Concatenated zstd frames decompress as one stream, so `tar --zstd -xf bundle.tar.zst` (or
//! `zstd -dc | tar -x`) extracts a whole bundle. Each frame holds whole members only, so one
//! member is read with a single ranged read of its frame, decompressed on its own. Members
//! smaller than the frame target share a frame (compressing several small files together
//! keeps most of the ratio of one stream); a larger member gets a frame of its own. A target
//! of 0 gives every member its own frame. Frames carry zstd's content checksum, and the index
//! the SHA-256 of every member.

use std::io::{self, Read, Write};

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

/// The tar stream's destination: the open zstd frame, if any, over the counted output.
struct FrameSink<W: Write> {
    level: i32,
    /// Set between frames; the encoder owns it while a frame is open.
    out: Option<Counting<W>>,
    encoder: Option<zstd::stream::write::Encoder<'static, Counting<W>>>,
    /// Where the open frame starts in the output.
    frame_start: u64,
    /// Decompressed bytes written to the open frame.
    frame_pos: u64,
}

impl<W: Write> FrameSink<W> {
    fn open(&mut self) -> io::Result<()> {
        if self.encoder.is_some() {
            return Ok(());
        }
        let out = self.out.take().expect("output present between frames");
        self.frame_start = out.written;
        self.frame_pos = 0;
        let mut encoder = zstd::stream::write::Encoder::new(out, self.level)?;
        encoder.include_checksum(true)?;
        encoder.include_contentsize(false)?;
        self.encoder = Some(encoder);
        Ok(())
    }

    /// Ends the open frame; returns its byte range.
    fn close(&mut self) -> io::Result<Option<(u64, u64)>> {
        let Some(encoder) = self.encoder.take() else { return Ok(None) };
        let out = encoder.finish()?;
        let range = (self.frame_start, out.written - self.frame_start);
        self.out = Some(out);
        Ok(Some(range))
    }
}

impl<W: Write> Write for FrameSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.open()?;
        let n = self.encoder.as_mut().expect("frame open").write(buf)?;
        self.frame_pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.encoder.as_mut() {
            Some(e) => e.flush(),
            None => Ok(()),
        }
    }
}

/// Writes a bundle member by member, streaming.
pub struct BundleWriter<W: Write> {
    tar: tar::Builder<FrameSink<W>>,
    frame_target: u64,
    members: Vec<Member>,
    /// Members of the open frame, whose range is known when it closes.
    pending: usize,
}

impl<W: Write> BundleWriter<W> {
    /// `level` is the zstd level (3 is zstd's default); `frame_target` the decompressed bytes
    /// after which a frame is closed (0: one frame per member).
    pub fn new(out: W, level: i32, frame_target: u64) -> Self {
        let sink = FrameSink {
            level,
            out: Some(Counting { inner: out, written: 0 }),
            encoder: None,
            frame_start: 0,
            frame_pos: 0,
        };
        let mut tar = tar::Builder::new(sink);
        tar.mode(tar::HeaderMode::Deterministic);
        Self { tar, frame_target, members: Vec::new(), pending: 0 }
    }

    /// Bytes written so far (closed frames only).
    pub fn written(&self) -> u64 {
        let sink = self.tar.get_ref();
        sink.out.as_ref().map_or(sink.frame_start, |o| o.written)
    }

    /// Appends one member of `size` bytes read from `data`.
    pub fn append(&mut self, info: MemberInfo, size: u64, data: impl Read) -> io::Result<&Member> {
        // A member that does not fit the open frame's target starts a frame of its own.
        let open = self.tar.get_ref().frame_pos;
        if open > 0 && (self.frame_target == 0 || open + size > self.frame_target) {
            self.close_frame()?;
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(info.mtime);
        header.set_entry_type(tar::EntryType::Regular);
        let mut hashing = HashingReader { inner: data.take(size), hasher: Sha256::new(), read: 0 };
        self.tar.append_data(&mut header, &info.name, &mut hashing)?;
        if hashing.read != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: {} bytes announced, {} read", info.name, size, hashing.read),
            ));
        }
        let padding = (512 - size % 512) % 512;
        let end = self.tar.get_ref().frame_pos;
        self.members.push(Member {
            name: info.name,
            offset: 0,
            length: 0,
            data_offset: end - padding - size,
            size,
            sha256: hex(&hashing.hasher.finalize()),
            mtime: info.mtime,
            rows: info.rows,
            rejected: info.rejected,
            upload_id: info.upload_id,
        });
        self.pending += 1;
        if self.frame_target == 0 || end >= self.frame_target {
            self.close_frame()?;
        }
        Ok(self.members.last().expect("just pushed"))
    }

    fn close_frame(&mut self) -> io::Result<()> {
        if let Some((offset, length)) = self.tar.get_mut().close()? {
            let n = self.members.len();
            for m in &mut self.members[n - self.pending..] {
                m.offset = offset;
                m.length = length;
            }
        }
        self.pending = 0;
        Ok(())
    }

    /// Ends the archive (its closing zero blocks in a last frame of their own) and returns
    /// the output and the index.
    pub fn finish(mut self) -> io::Result<(W, BundleIndex)> {
        self.close_frame()?;
        let mut sink = self.tar.into_inner()?;
        sink.close()?;
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

/// A member's data from its frame (the bytes `member.offset..member.offset + member.length`
/// of the bundle), checked against its size, tar header and SHA-256.
pub fn read_member(frame: &[u8], member: &Member) -> Result<Vec<u8>, BundleError> {
    let problem = |p: String| BundleError::Member { name: member.name.clone(), problem: p };
    let end = member.data_offset + member.size;
    let mut decoder = zstd::stream::read::Decoder::with_buffer(frame).map_err(|e| problem(e.to_string()))?;
    let mut head = vec![0u8; member.data_offset as usize];
    decoder.read_exact(&mut head).map_err(|e| problem(format!("frame: {e}")))?;
    let mut data = Vec::with_capacity(member.size as usize);
    (&mut decoder).take(member.size).read_to_end(&mut data).map_err(|e| problem(format!("frame: {e}")))?;
    if data.len() as u64 != member.size {
        return Err(problem(format!("the frame holds {} of {} bytes", data.len(), end)));
    }
    // The header just before the data must be this member's.
    if member.data_offset < 512 {
        return Err(problem("no tar header before the data".into()));
    }
    let mut archive = tar::Archive::new(&head[..]);
    let names: Vec<String> = archive
        .entries()
        .map_err(|e| problem(e.to_string()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.path().ok().map(|p| p.to_string_lossy().into_owned()))
        .collect();
    if names.last().is_none_or(|n| *n != member.name) {
        return Err(problem(format!("the tar header before the data names {:?}", names.last())));
    }
    let sha = hex(&Sha256::digest(&data));
    if sha != member.sha256 {
        return Err(problem(format!("sha256 {sha}, expected {}", member.sha256)));
    }
    Ok(data)
}

/// Checks every member of a whole bundle against its index; returns the members checked.
pub fn verify(bundle: &[u8], index: &BundleIndex) -> Result<usize, BundleError> {
    if bundle.len() as u64 != index.bytes {
        return Err(BundleError::Index(format!(
            "the bundle has {} bytes, the index says {}",
            bundle.len(),
            index.bytes
        )));
    }
    for m in &index.members {
        let frame = &bundle[m.offset as usize..(m.offset + m.length) as usize];
        read_member(frame, m)?;
    }
    // And the whole stream is one valid tar archive with the indexed members in order.
    let decoder = zstd::stream::read::Decoder::new(bundle)?;
    let mut archive = tar::Archive::new(decoder);
    let mut names = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        names.push(entry.path()?.to_string_lossy().into_owned());
        io::copy(&mut entry, &mut io::sink())?;
    }
    let indexed: Vec<&str> = index.members.iter().map(|m| m.name.as_str()).collect();
    if names != indexed {
        return Err(BundleError::Index(format!("the archive lists {names:?}, the index {indexed:?}")));
    }
    Ok(index.members.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(files: &[(&str, Vec<u8>)], frame_target: u64) -> (Vec<u8>, BundleIndex) {
        let mut w = BundleWriter::new(Vec::new(), 3, frame_target);
        for (i, (name, data)) in files.iter().enumerate() {
            let info = MemberInfo { name: (*name).into(), mtime: 1_764_000_000 + i as u64, ..Default::default() };
            w.append(info, data.len() as u64, &data[..]).unwrap();
        }
        w.finish().unwrap()
    }

    fn files() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("a.log", b"one\ntwo\n".to_vec()),
            ("dir/b.ndjson", (0..2000).map(|i| format!("{{\"i\":{i}}}\n")).collect::<String>().into_bytes()),
            ("empty", Vec::new()),
            (
                "a/very/long/path/that/needs/more/than/one/hundred/bytes/of/tar/header/space/to/be/written/in/full.log",
                vec![7u8; 513],
            ),
        ]
    }

    #[test]
    fn members_read_back_from_their_frame_alone() {
        for target in [0, 1 << 20] {
            let files = files();
            let (bytes, index) = bundle(&files, target);
            assert_eq!(index.members.len(), files.len());
            assert_eq!(index.bytes, bytes.len() as u64);
            for ((name, data), m) in files.iter().zip(&index.members) {
                assert_eq!(m.name, *name);
                let frame = &bytes[m.offset as usize..(m.offset + m.length) as usize];
                assert_eq!(&read_member(frame, m).unwrap(), data, "{name} with frame target {target}");
            }
            assert_eq!(verify(&bytes, &index).unwrap(), files.len());
            let frames: std::collections::BTreeSet<u64> = index.members.iter().map(|m| m.offset).collect();
            if target == 0 {
                assert_eq!(frames.len(), files.len(), "a frame per member");
            } else {
                assert_eq!(frames.len(), 1, "small members share a frame");
            }
        }
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
    fn a_changed_byte_is_caught() {
        let (mut bytes, index) = bundle(&files(), 0);
        let m = &index.members[1];
        bytes[(m.offset + m.length / 2) as usize] ^= 0x40;
        let err = verify(&bytes, &index).unwrap_err().to_string();
        assert!(err.contains("dir/b.ndjson"), "{err}");
        // A wrong hash in the index is caught too.
        let (bytes, mut index) = bundle(&files(), 0);
        index.members[0].sha256 = "0".repeat(64);
        assert!(verify(&bytes, &index).unwrap_err().to_string().contains("sha256"));
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
