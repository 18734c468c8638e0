//! Reading bundles as streams, in bounded memory whatever their size: checking a whole
//! bundle against its index in one pass ([`verify`]) and copying one member out of its frame
//! ([`copy_member`]). Both run on a blocking thread over any [`BufRead`]; fetching the bytes
//! is the caller's business. Knows the format of [`super::bundle`], nothing of object stores.

use std::cell::RefCell;
use std::io::{self, BufRead, Read, Write};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::bundle::{BundleError, BundleIndex, Member};

/// Bytes read at a time from a member's data.
const COPY_BUFFER: usize = 256 << 10;

/// A [`BufRead`] that counts the bytes consumed from it.
struct Counted<R> {
    inner: R,
    consumed: u64,
}

impl<R: BufRead> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.consumed += amount as u64;
        self.inner.consume(amount);
    }
}

/// Where one zstd frame lies: `offset..offset + length` of the bundle, decompressing to
/// `start..end` of the tar stream (`end` is `u64::MAX` while the frame is being read).
#[derive(Debug, Clone, Copy)]
struct FrameSpan {
    offset: u64,
    length: u64,
    start: u64,
    end: u64,
}

/// The tar stream of a bundle, decompressed frame by frame; notes each frame's span.
struct Frames<R: BufRead> {
    decoder: Option<zstd::stream::read::Decoder<'static, Counted<R>>>,
    /// The input between frames.
    input: Option<Counted<R>>,
    /// Decompressed bytes so far.
    position: u64,
    spans: Rc<RefCell<Vec<FrameSpan>>>,
}

impl<R: BufRead> Frames<R> {
    fn new(input: R, spans: Rc<RefCell<Vec<FrameSpan>>>) -> Self {
        Self { decoder: None, input: Some(Counted { inner: input, consumed: 0 }), position: 0, spans }
    }
}

impl<R: BufRead> Read for Frames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(decoder) = self.decoder.as_mut() {
                let n = decoder.read(buf)?;
                if n > 0 {
                    self.position += n as u64;
                    return Ok(n);
                }
                // The frame ended (its checksum checked by zstd).
                let input = self.decoder.take().expect("a decoder").finish();
                let mut spans = self.spans.borrow_mut();
                let span = spans.last_mut().expect("the open frame's span");
                span.length = input.consumed - span.offset;
                span.end = self.position;
                self.input = Some(input);
            }
            let mut input = self.input.take().expect("input between frames");
            if input.fill_buf()?.is_empty() {
                self.input = Some(input);
                return Ok(0);
            }
            self.spans.borrow_mut().push(FrameSpan {
                offset: input.consumed,
                length: 0,
                start: self.position,
                end: u64::MAX,
            });
            self.decoder = Some(zstd::stream::read::Decoder::with_buffer(input)?.single_frame());
        }
    }
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copies `size` bytes (or what there is) from `from` to `to`; returns how many.
fn copy_exactly(from: &mut impl Read, to: &mut impl Write, size: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; COPY_BUFFER.min(size.max(1) as usize)];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match from.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(size - left)
}

/// Reads a whole bundle as a stream and checks it against its index: every frame decodes
/// (with its checksum), the tar stream lists the indexed members in order, each member's
/// frame range, offset in its frame, size and SHA-256 are the index's, and the bundle has
/// the index's length. Memory stays bounded (a zstd window and a copy buffer) whatever the
/// bundle's size. Returns the members checked.
pub fn verify(bundle: impl BufRead, index: &BundleIndex) -> Result<usize, BundleError> {
    let spans = Rc::new(RefCell::new(Vec::new()));
    let mut archive = tar::Archive::new(Frames::new(bundle, spans.clone()));
    let mut expected = index.members.iter();
    // The frame each member's header and data lie in.
    let mut member_frames = Vec::with_capacity(index.members.len());
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let Some(member) = expected.next() else {
            return Err(BundleError::Index(format!("the archive has a member {name:?} the index does not list")));
        };
        let problem = |p: String| BundleError::Member { name: member.name.clone(), problem: p };
        if name != member.name {
            return Err(problem(format!("the archive has {name:?} in its place")));
        }
        let data_start = entry.raw_file_position();
        // The header's last byte lies in the member's frame (a frame holds whole members).
        let frame = spans
            .borrow()
            .iter()
            .rposition(|s| s.start < data_start)
            .ok_or_else(|| problem("its tar header lies in no frame".into()))?;
        let frame_start = spans.borrow()[frame].start;
        if data_start - frame_start != member.data_offset {
            return Err(problem(format!(
                "its data starts at {} of its frame, the index says {}",
                data_start - frame_start,
                member.data_offset
            )));
        }
        let size = entry.header().size()?;
        if size != member.size {
            return Err(problem(format!("{size} bytes in the archive, {} in the index", member.size)));
        }
        let mut sink = Hashing { inner: io::sink(), hasher: Sha256::new(), written: 0 };
        let copied = copy_exactly(&mut entry, &mut sink, size).map_err(|e| problem(e.to_string()))?;
        if copied != size {
            return Err(problem(format!("the bundle ends after {copied} of its {size} bytes")));
        }
        let sha = hex::encode(sink.hasher.finalize());
        if sha != member.sha256 {
            return Err(problem(format!("sha256 {sha}, expected {}", member.sha256)));
        }
        member_frames.push(frame);
    }
    if let Some(missing) = expected.next() {
        return Err(BundleError::Index(format!("the index lists {:?}, which the archive lacks", missing.name)));
    }
    // The end of the archive, and whatever follows it, must decode too.
    let mut frames = archive.into_inner();
    io::copy(&mut frames, &mut io::sink())?;
    let spans = spans.borrow();
    for (member, frame) in index.members.iter().zip(member_frames) {
        let span = spans[frame];
        if (span.offset, span.length) != (member.offset, member.length) {
            return Err(BundleError::Member {
                name: member.name.clone(),
                problem: format!(
                    "its frame is bytes {}..{} of the bundle, the index says {}..{}",
                    span.offset,
                    span.offset + span.length,
                    member.offset,
                    member.offset + member.length
                ),
            });
        }
    }
    let bytes = spans.last().map_or(0, |s| s.offset + s.length);
    if bytes != index.bytes {
        return Err(BundleError::Index(format!("the bundle has {bytes} bytes, the index says {}", index.bytes)));
    }
    Ok(index.members.len())
}

/// Copies a member's data out of its frame (the bytes `member.offset..member.offset +
/// member.length` of the bundle, as a stream) to `out` as it is decompressed, checking that
/// the tar header before it names the member, its size and its SHA-256. Data is written
/// before the hash can be checked: on an error, what was written must not be used.
pub fn copy_member(frame: impl BufRead, member: &Member, out: &mut impl Write) -> Result<u64, BundleError> {
    let problem = |p: String| BundleError::Member { name: member.name.clone(), problem: p };
    if member.data_offset < 512 {
        return Err(problem("no tar header before the data".into()));
    }
    let mut decoder =
        zstd::stream::read::Decoder::with_buffer(frame).map_err(|e| problem(e.to_string()))?.single_frame();
    // The members before it in the frame, read and dropped, up to its own header.
    let mut archive = tar::Archive::new((&mut decoder).take(member.data_offset));
    let mut header_name = None;
    for entry in archive.entries().map_err(|e| problem(format!("frame: {e}")))? {
        let mut entry = entry.map_err(|e| problem(format!("frame: {e}")))?;
        if entry.raw_file_position() == member.data_offset {
            header_name = Some(entry.path().map_err(|e| problem(e.to_string()))?.to_string_lossy().into_owned());
            break;
        }
        io::copy(&mut entry, &mut io::sink()).map_err(|e| problem(format!("frame: {e}")))?;
    }
    if archive.into_inner().limit() != 0 || header_name.as_deref() != Some(member.name.as_str()) {
        return Err(problem(format!("the tar header before the data names {header_name:?}")));
    }
    let mut hashing = Hashing { inner: out, hasher: Sha256::new(), written: 0 };
    let copied = copy_exactly(&mut decoder, &mut hashing, member.size).map_err(|e| problem(format!("frame: {e}")))?;
    if copied != member.size {
        return Err(problem(format!("the frame holds {copied} of its {} bytes", member.size)));
    }
    let sha = hex::encode(hashing.hasher.finalize());
    if sha != member.sha256 {
        return Err(problem(format!("sha256 {sha}, expected {}", member.sha256)));
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::bundle::tests::{bundle, files};

    fn read_member(bytes: &[u8], m: &Member) -> Result<Vec<u8>, BundleError> {
        let mut out = Vec::new();
        copy_member(&bytes[m.offset as usize..(m.offset + m.length) as usize], m, &mut out)?;
        Ok(out)
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
                assert_eq!(&read_member(&bytes, m).unwrap(), data, "{name} with frame target {target}");
            }
            assert_eq!(verify(&bytes[..], &index).unwrap(), files.len());
            let frames: std::collections::BTreeSet<u64> = index.members.iter().map(|m| m.offset).collect();
            if target == 0 {
                assert_eq!(frames.len(), files.len(), "a frame per member");
            } else {
                assert_eq!(frames.len(), 3, "small members share a frame; a large one has its own");
            }
        }
    }

    #[test]
    fn a_changed_byte_is_caught() {
        let (mut bytes, index) = bundle(&files(), 0);
        let m = &index.members[1];
        bytes[(m.offset + m.length / 2) as usize] ^= 0x40;
        let err = verify(&bytes[..], &index).unwrap_err().to_string();
        assert!(err.contains("dir/b.ndjson") || err.contains("checksum"), "{err}");
        assert!(read_member(&bytes, m).is_err());
        // A wrong hash in the index is caught too, by both readers.
        let (bytes, mut index) = bundle(&files(), 0);
        index.members[0].sha256 = "0".repeat(64);
        assert!(verify(&bytes[..], &index).unwrap_err().to_string().contains("sha256"));
        assert!(read_member(&bytes, &index.members[0]).unwrap_err().to_string().contains("sha256"));
    }

    #[test]
    fn an_index_that_does_not_match_the_bundle_is_caught() {
        let (bytes, index) = bundle(&files(), 1 << 20);
        type Change = fn(&mut BundleIndex);
        let cases: [(&str, Change); 6] = [
            ("lacks", |i| i.members.push(Member { name: "extra".into(), ..i.members[0].clone() })),
            ("does not list", |i| {
                i.members.pop();
            }),
            ("in its place", |i| i.members.swap(0, 1)),
            ("of the bundle", |i| i.members[4].offset += 1),
            ("of its frame", |i| i.members[1].data_offset += 512),
            ("bytes, the index says", |i| i.bytes += 1),
        ];
        for (expected, change) in cases {
            let mut wrong = index.clone();
            change(&mut wrong);
            let err = verify(&bytes[..], &wrong).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
        // A truncated bundle fails to decode.
        assert!(verify(&bytes[..bytes.len() - 10], &index).is_err());
    }

    #[test]
    fn a_member_is_copied_in_bounded_pieces_and_its_header_is_checked() {
        let (bytes, index) = bundle(&files(), 1 << 20);
        let big = &index.members[4];
        assert_eq!(read_member(&bytes, big).unwrap().len() as u64, big.size);
        // The index pointing at another member's data is refused, before any output.
        let mut wrong = index.members[1].clone();
        wrong.name = index.members[0].name.clone();
        let mut out = Vec::new();
        let frame = &bytes[wrong.offset as usize..(wrong.offset + wrong.length) as usize];
        assert!(copy_member(frame, &wrong, &mut out).unwrap_err().to_string().contains("names"));
        assert!(out.is_empty());
    }
}
