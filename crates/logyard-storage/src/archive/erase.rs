//! Rewriting a bundle without the lines that hold a data subject's values (forgetting a
//! customer).
//!
//! Each member is read out once, through its compression (`.gz`, `.zst`, `.zz` as the name
//! says), into a spool file, and, for text members (`.ndjson`, `.json`, `.log`, ...), split
//! into lines of which those the caller's test finds something in are left out. A new bundle
//! beside the old one holds every member: as it was, byte for byte, where nothing was found;
//! its remaining lines, compressed as before, where some were; and not at all for a binary
//! member (a protobuf request body) with something found anywhere in it, since a line of it
//! cannot be cut out. The old bundle's index is deleted at once (the bundle leaves listings);
//! its bytes go when the caller deletes it, after the vacuum window.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Archive, ArchiveError, BundleRef, Member, MemberInfo, WriteOptions, parse_key};
use crate::StorageError;

/// Whether a line (or a binary member, whole) holds what is being erased.
pub type Holds = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// A binary member is examined whole, in memory, up to this size; a larger one holding
/// something cannot be erased and is an error.
const MAX_BINARY_MEMBER: u64 = 256 << 20;

/// What rewriting a bundle did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    /// The bundle rewritten (its index deleted; its bytes left for the caller to delete).
    pub old: BundleRef,
    pub new: BundleRef,
    pub lines_removed: u64,
    /// Text members some lines were removed from.
    pub members_rewritten: u64,
    /// Binary members left out whole.
    pub members_dropped: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Plain,
    Gzip,
    Zstd,
    Zlib,
}

/// A member's compression and whether what it holds is text, from its name.
fn kind_of(name: &str) -> (Codec, bool) {
    let (codec, inner) = match name.rsplit_once('.') {
        Some((inner, "gz")) => (Codec::Gzip, inner),
        Some((inner, "zst")) => (Codec::Zstd, inner),
        Some((inner, "zz")) => (Codec::Zlib, inner),
        _ => (Codec::Plain, name),
    };
    let ext = inner.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    let text = matches!(ext.as_deref(), Some("ndjson" | "jsonl" | "json" | "log" | "txt" | "csv" | "tsv"));
    (codec, text)
}

/// What one member became.
enum Outcome {
    Unchanged,
    Rewritten { lines_removed: u64 },
    Dropped,
}

/// The sink a member is copied into: its bytes as stored into `raw`, and, decoded, into the
/// line filter (text) or a buffer (binary).
struct Sink {
    raw: File,
    decoded: Decoded,
}

enum Decoded {
    Plain(Filter),
    Gzip(flate2::write::MultiGzDecoder<Filter>),
    Zstd(zstd::stream::write::Decoder<'static, Filter>),
    Zlib(flate2::write::ZlibDecoder<Filter>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.raw.write_all(buf)?;
        match &mut self.decoded {
            Decoded::Plain(w) => w.write_all(buf)?,
            Decoded::Gzip(w) => w.write_all(buf)?,
            Decoded::Zstd(w) => w.write_all(buf)?,
            Decoded::Zlib(w) => w.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Decoded {
    fn finish(self) -> io::Result<Filter> {
        match self {
            Decoded::Plain(w) => Ok(w),
            Decoded::Gzip(w) => w.finish(),
            Decoded::Zstd(mut w) => {
                w.flush()?;
                Ok(w.into_inner())
            }
            Decoded::Zlib(w) => w.finish(),
        }
    }
}

/// Decoded text, line by line, without the lines `holds` finds something in, encoded again
/// into `out`; or a binary member's bytes, kept to be looked at whole.
struct Filter {
    holds: Holds,
    text: bool,
    partial: Vec<u8>,
    removed: u64,
    out: Encoded,
}

impl Filter {
    fn line(&mut self, line: &[u8]) -> io::Result<()> {
        if (self.holds)(line) {
            self.removed += 1;
            Ok(())
        } else {
            self.out.write_all(line)
        }
    }

    fn end(mut self) -> io::Result<(Encoded, u64, bool)> {
        if !self.text {
            let found = (self.holds)(&self.partial);
            return Ok((self.out, 0, found));
        }
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() {
            self.line(&rest)?;
        }
        Ok((self.out, self.removed, false))
    }
}

impl Write for Filter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.text {
            if (self.partial.len() + buf.len()) as u64 > MAX_BINARY_MEMBER {
                return Err(io::Error::other(format!(
                    "a binary member over {MAX_BINARY_MEMBER} bytes cannot be examined for erasure"
                )));
            }
            self.partial.extend_from_slice(buf);
            return Ok(buf.len());
        }
        let mut rest = buf;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            let (line, after) = rest.split_at(end + 1);
            if self.partial.is_empty() {
                self.line(line)?;
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.line(&whole)?;
            }
            rest = after;
        }
        self.partial.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The kept lines, compressed as the member was.
enum Encoded {
    Plain(File),
    Gzip(flate2::write::GzEncoder<File>),
    Zstd(zstd::stream::write::Encoder<'static, File>),
    Zlib(flate2::write::ZlibEncoder<File>),
}

impl Encoded {
    fn new(codec: Codec, file: File) -> io::Result<Self> {
        let level = flate2::Compression::default();
        Ok(match codec {
            Codec::Plain => Encoded::Plain(file),
            Codec::Gzip => Encoded::Gzip(flate2::write::GzEncoder::new(file, level)),
            Codec::Zstd => Encoded::Zstd(zstd::stream::write::Encoder::new(file, 3)?),
            Codec::Zlib => Encoded::Zlib(flate2::write::ZlibEncoder::new(file, level)),
        })
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoded::Plain(w) => w.write_all(buf),
            Encoded::Gzip(w) => w.write_all(buf),
            Encoded::Zstd(w) => w.write_all(buf),
            Encoded::Zlib(w) => w.write_all(buf),
        }
    }

    fn finish(self) -> io::Result<File> {
        match self {
            Encoded::Plain(w) => Ok(w),
            Encoded::Gzip(w) => w.finish(),
            Encoded::Zstd(w) => w.finish(),
            Encoded::Zlib(w) => w.finish(),
        }
    }
}

/// A member read out: what to write into the new bundle, and what became of it.
struct Spooled {
    member: Member,
    file: File,
    outcome: Outcome,
}

fn io_error(what: &str) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |e| ArchiveError::Storage(StorageError::Io(format!("erasing from the archive: {what}"), e))
}

impl Archive {
    /// Rewrites `bundle` without what `holds` finds (see the module's documentation); `None`,
    /// and nothing written, when it finds nothing.
    pub async fn erase_lines(
        &self,
        bundle: &BundleRef,
        holds: Holds,
        options: WriteOptions,
    ) -> Result<Option<Erasure>, ArchiveError> {
        let index = self.index(&bundle.key).await?;
        let mut spooled = Vec::with_capacity(index.members.len());
        for member in &index.members {
            let (codec, text) = kind_of(&member.name);
            let filter = Filter {
                holds: holds.clone(),
                text,
                partial: Vec::new(),
                removed: 0,
                out: Encoded::new(codec, tempfile::tempfile().map_err(io_error("a spool file"))?)
                    .map_err(io_error("a compressor"))?,
            };
            let decoded = match codec {
                Codec::Plain => Decoded::Plain(filter),
                Codec::Gzip => Decoded::Gzip(flate2::write::MultiGzDecoder::new(filter)),
                Codec::Zstd => Decoded::Zstd(zstd::stream::write::Decoder::new(filter).map_err(io_error("zstd"))?),
                Codec::Zlib => Decoded::Zlib(flate2::write::ZlibDecoder::new(filter)),
            };
            let sink = Sink { raw: tempfile::tempfile().map_err(io_error("a spool file"))?, decoded };
            let (member, sink) = self.member_of(&bundle.key, member.clone(), sink).await?;
            let name = member.name.clone();
            let done = tokio::task::spawn_blocking(move || -> io::Result<(File, Outcome)> {
                let Sink { raw, decoded } = sink;
                let (encoded, lines_removed, binary_found) = decoded.finish()?.end()?;
                let rewritten = encoded.finish()?;
                let (mut file, outcome) = match (binary_found, lines_removed) {
                    (true, _) => (raw, Outcome::Dropped),
                    (false, 0) => (raw, Outcome::Unchanged),
                    (false, n) => (rewritten, Outcome::Rewritten { lines_removed: n }),
                };
                file.rewind()?;
                Ok((file, outcome))
            })
            .await
            .map_err(|e| io_error("a member")(io::Error::other(e)))?
            .map_err(|e| ArchiveError::Bundle {
                key: bundle.key.clone(),
                source: super::BundleError::Member { name, problem: e.to_string() },
            })?;
            spooled.push(Spooled { member, file: done.0, outcome: done.1 });
        }
        if spooled.iter().all(|s| matches!(s.outcome, Outcome::Unchanged)) {
            return Ok(None);
        }

        let key = Archive::bundle_key(
            &logyard_core::StreamName::new(&bundle.stream).map_err(|_| ArchiveError::NotABundle(bundle.key.clone()))?,
            &bundle.date,
            &format!("{}-{}", bundle.id, uuid::Uuid::now_v7().simple()),
        );
        parse_key(&key, 0)?;
        let mut upload = self.create(&key, options)?;
        let (mut lines_removed, mut members_rewritten, mut members_dropped) = (0, 0, Vec::new());
        for Spooled { member, file, outcome } in spooled {
            let removed = match outcome {
                Outcome::Dropped => {
                    members_dropped.push(member.name);
                    continue;
                }
                Outcome::Unchanged => 0,
                Outcome::Rewritten { lines_removed } => lines_removed,
            };
            if removed > 0 {
                members_rewritten += 1;
                lines_removed += removed;
            }
            let size = file.metadata().map_err(io_error("a spool file"))?.len();
            let info = MemberInfo {
                name: member.name,
                mtime: member.mtime,
                rows: member.rows.map(|r| r.saturating_sub(removed)),
                rejected: member.rejected,
                upload_id: member.upload_id,
            };
            upload.append(info, size, file).await?;
        }
        let (new, _) = upload.finish().await?;
        // The old bundle leaves listings now; its bytes stay for readers until deleted.
        let store = self.storage.root_store();
        match object_store::ObjectStoreExt::delete(store.as_ref(), &self.storage.path(&bundle.index_key())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(StorageError::from_store("deleting an archive index")(e).into()),
        }
        Ok(Some(Erasure { old: bundle.clone(), new, lines_removed, members_rewritten, members_dropped }))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use bytes::Bytes;
    use logyard_core::StreamName;

    use super::*;
    use crate::Storage;
    use crate::archive::BundleWriter;

    const SUBJECT: &str = "c-000001";

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out).unwrap();
        out
    }

    #[tokio::test]
    async fn a_bundle_is_rewritten_without_the_subjects_lines_and_the_rest_stays_byte_exact() {
        let dir = tempfile::tempdir().unwrap();
        let location = crate::Location::Local(dir.path().to_owned());
        let archive = Archive::new(Storage::open(location, &Default::default(), Default::default()).await.unwrap());
        let lines = |ids: &[&str]| -> Vec<u8> {
            ids.iter()
                .map(|id| format!("{{\"customer_id\":\"{id}\",\"message\":\"checkout\"}}\n"))
                .collect::<String>()
                .into_bytes()
        };
        let members: Vec<(&str, Vec<u8>, Option<u64>)> = vec![
            ("a.ndjson", lines(&["c-000002", SUBJECT, "c-000003"]), Some(3)),
            ("b.ndjson.gz", gzip(&lines(&[SUBJECT, "c-000002"])), Some(2)),
            ("c.bin", [b"\x0a\x08".as_slice(), SUBJECT.as_bytes(), b"\x12\x00"].concat(), Some(1)),
            ("d.ndjson", lines(&["c-000004"]), Some(1)),
            ("e.ndjson.zst", zstd::encode_all(&lines(&["c-000005", "c-000006"])[..], 3).unwrap(), Some(2)),
            // The last line has no newline.
            ("f.log", b"ok c-000002\nC-000001 paid".to_vec(), None),
        ];
        let mut writer = BundleWriter::new(Vec::new(), 3, 1 << 20);
        for (name, data, rows) in &members {
            let info = MemberInfo { name: (*name).into(), mtime: 1_764_064_800, rows: *rows, ..Default::default() };
            writer.append(info, data.len() as u64, &data[..]).unwrap();
        }
        let (bytes, index) = writer.finish().unwrap();
        let key = Archive::new_bundle_key(&StreamName::new("shop").unwrap(), "2026-11-25");
        let old = archive.store(&key, Bytes::from(bytes), &index).await.unwrap();

        let holds: Holds =
            Arc::new(|line: &[u8]| line.to_ascii_lowercase().windows(SUBJECT.len()).any(|w| w == SUBJECT.as_bytes()));
        let options = WriteOptions { level: 3, frame_bytes: 1 << 20, part_bytes: crate::archive::PART_BYTES };
        let erasure = archive.erase_lines(&old, holds.clone(), options).await.unwrap().expect("something erased");
        assert_eq!((erasure.lines_removed, erasure.members_rewritten), (3, 3), "{erasure:?}");
        assert_eq!(erasure.members_dropped, ["c.bin"]);
        // Only the new bundle is listed; it checks against its index.
        assert_eq!(archive.list(None).await.unwrap(), std::slice::from_ref(&erasure.new));
        assert_eq!(archive.verify(&erasure.new.key).await.unwrap(), 5);
        let new_index = archive.index(&erasure.new.key).await.unwrap();
        let read = |name: &'static str| {
            let archive = archive.clone();
            let key = erasure.new.key.clone();
            async move { archive.member(&key, name, Vec::new()).await.unwrap().1 }
        };
        assert_eq!(read("a.ndjson").await, lines(&["c-000002", "c-000003"]));
        assert_eq!(gunzip(&read("b.ndjson.gz").await), lines(&["c-000002"]));
        assert_eq!(read("f.log").await, b"ok c-000002\n");
        assert_eq!(new_index.member("a.ndjson").unwrap().rows, Some(2));
        for unchanged in ["d.ndjson", "e.ndjson.zst"] {
            assert_eq!(
                new_index.member(unchanged).unwrap().sha256,
                index.member(unchanged).unwrap().sha256,
                "{unchanged}"
            );
        }
        // A second pass finds nothing more.
        assert!(archive.erase_lines(&erasure.new, holds, options).await.unwrap().is_none());

        // Once the old bundle is deleted, no stored byte holds the subject, compressed or not.
        archive.delete(&old).await.unwrap();
        for path in crate::files_under(dir.path()) {
            let stored = std::fs::read(&path).unwrap();
            let tar = zstd::decode_all(&stored[..]).unwrap_or_default();
            let mut texts = vec![stored, tar.clone()];
            let mut entries = tar::Archive::new(&tar[..]);
            for entry in entries.entries().unwrap() {
                let mut data = Vec::new();
                entry.unwrap().read_to_end(&mut data).unwrap();
                texts.push(gunzip_or_unzstd(&data));
                texts.push(data);
            }
            for text in texts {
                assert!(
                    !text.to_ascii_lowercase().windows(SUBJECT.len()).any(|w| w == SUBJECT.as_bytes()),
                    "{}",
                    path.display()
                );
            }
        }
    }

    fn gunzip_or_unzstd(data: &[u8]) -> Vec<u8> {
        if data.starts_with(&[0x1f, 0x8b]) {
            return gunzip(data);
        }
        zstd::decode_all(data).unwrap_or_default()
    }
}
