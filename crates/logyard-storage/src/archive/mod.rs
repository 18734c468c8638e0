//! The raw archive: original bytes kept byte-exact as seekable tar.zst bundles under
//! `archive/<stream>/date=YYYY-MM-DD/<bundle-id>.tar.zst`, each with its index beside it
//! (`<bundle-id>.index.json`). See [`bundle`] for the format.
//!
//! A bundle is streamed to the store as it is made (`upload`: parts of bounded size, a
//! multipart upload when it has more than one), then its index is written. Before
//! [`BundleUpload::finish`] or [`Archive::store`] returns, the stored bundle is checked against
//! what was sent — its length always; its ETag where the store gives MD5-based ETags (S3
//! without SSE-KMS), else, on S3, by reading it back as a stream — and the index is read back;
//! so a caller may delete what the bundle holds once it has returned. Nothing reads a whole
//! bundle or member into memory: verification and member reads stream (`read`), fetching
//! large ranges in windows (`ranged`). A listing shows only bundles whose index exists: a
//! bundle without one is an interrupted write.

pub mod bundle;
pub mod erase;
pub mod ranged;
pub mod read;
pub mod upload;

use std::io::{BufReader, Write};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;

use logyard_core::StreamName;

use crate::StorageError;
use crate::store::Storage;
pub use bundle::{BundleError, BundleIndex, BundleWriter, Member, MemberInfo};
pub use upload::{BundleUpload, PART_BYTES, PartWriter, WriteOptions, part_bytes_for};

/// Bytes of a bundle read ahead while it is checked or a member is copied out.
const READ_BUFFER: usize = 1 << 20;

pub const ARCHIVE_DIR: &str = "archive";
const BUNDLE_SUFFIX: &str = ".tar.zst";
const INDEX_SUFFIX: &str = ".index.json";

/// One stored bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BundleRef {
    pub stream: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    pub id: String,
    /// The bundle's key under the storage root.
    pub key: String,
    pub bytes: u64,
}

impl BundleRef {
    pub fn index_key(&self) -> String {
        index_key(&self.key)
    }
}

fn index_key(bundle_key: &str) -> String {
    format!("{}{INDEX_SUFFIX}", bundle_key.strip_suffix(BUNDLE_SUFFIX).unwrap_or(bundle_key))
}

/// Errors of the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("bundle {key}: {source}")]
    Bundle {
        key: String,
        #[source]
        source: BundleError,
    },
    #[error("bundle {0} has no member {1:?}")]
    NoMember(String, String),
    #[error("{0:?} is not a bundle key: expected archive/<stream>/date=YYYY-MM-DD/<id>.tar.zst")]
    NotABundle(String),
    /// The stored bundle is not what was sent.
    #[error("bundle {key} as stored: {problem}")]
    Stored { key: String, problem: String },
}

impl logyard_core::ServiceError for ArchiveError {
    fn kind(&self) -> logyard_core::ErrorKind {
        match self {
            ArchiveError::NoMember(..) => logyard_core::ErrorKind::NotFound,
            ArchiveError::NotABundle(_) => logyard_core::ErrorKind::BadRequest,
            ArchiveError::Storage(_) | ArchiveError::Bundle { .. } | ArchiveError::Stored { .. } => {
                logyard_core::ErrorKind::Internal
            }
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ArchiveError::NoMember(..) => "not_found",
            ArchiveError::NotABundle(_) => "invalid_bundle_key",
            ArchiveError::Storage(_) => "storage_error",
            ArchiveError::Bundle { .. } => "archive_damaged",
            ArchiveError::Stored { .. } => "archive_not_stored",
        }
    }
}

/// The archive under a storage root.
#[derive(Debug, Clone)]
pub struct Archive {
    storage: Storage,
}

impl Archive {
    pub fn new(storage: Storage) -> Self {
        Self { storage }
    }

    /// A new bundle's key: ids are UUIDv7, so keys sort by creation time.
    pub fn new_bundle_key(stream: &StreamName, date: &str) -> String {
        Self::bundle_key(stream, date, &uuid::Uuid::now_v7().simple().to_string())
    }

    /// The key of bundle `id` (letters, digits, `-` and `_`) of a stream's day.
    pub fn bundle_key(stream: &StreamName, date: &str, id: &str) -> String {
        format!("{ARCHIVE_DIR}/{stream}/date={date}/{id}{BUNDLE_SUFFIX}")
    }

    /// Whether the store's ETags may be the MD5s of what was sent (S3's are, unless encrypted
    /// with a KMS key); an upload takes its parts' MD5s only then.
    fn md5_etags(&self) -> bool {
        matches!(self.storage.location(), crate::Location::S3 { .. })
    }

    /// Starts writing bundle `key` (see [`BundleUpload`]).
    pub fn create(&self, key: &str, options: WriteOptions) -> Result<BundleUpload, ArchiveError> {
        parse_key(key, 0)?;
        Ok(BundleUpload::new(self.clone(), key.to_owned(), options))
    }

    /// Writes a bundle made in memory and its index, with the checks of
    /// [`BundleUpload::finish`].
    pub async fn store(&self, key: &str, bundle: Bytes, index: &BundleIndex) -> Result<BundleRef, ArchiveError> {
        parse_key(key, 0)?;
        let (mut parts, sending) =
            upload::start(self.storage.root_store(), self.storage.path(key), PART_BYTES, self.md5_etags());
        let written = tokio::task::spawn_blocking(move || {
            parts.write_all(&bundle)?;
            parts.finish()
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let sent = upload::outcome(key, written, sending).await?;
        self.commit(key, &sent, index).await
    }

    /// Checks a bundle just sent against what was sent, then writes its index and reads it
    /// back.
    async fn commit(&self, key: &str, sent: &upload::Sent, index: &BundleIndex) -> Result<BundleRef, ArchiveError> {
        let stored = |problem: String| ArchiveError::Stored { key: key.into(), problem };
        if sent.bytes != index.bytes {
            return Err(stored(format!("{} bytes were sent, the index says {}", sent.bytes, index.bytes)));
        }
        let store = self.storage.root_store();
        let meta = store
            .head(&self.storage.path(key))
            .await
            .map_err(StorageError::from_store("checking a stored archive bundle"))?;
        if meta.size != sent.bytes {
            return Err(stored(format!("{} bytes are stored, {} were sent", meta.size, sent.bytes)));
        }
        let etag = meta.e_tag.as_deref().map(|e| e.trim_matches('"').to_ascii_lowercase());
        let expected = sent.expected_etag();
        let checked = match (etag.as_deref(), expected.as_deref()) {
            (Some(e), Some(x)) if e == x => "etag",
            // SSE-KMS gives ETags of the same shape that are no MD5: read the bundle back.
            (Some(e), Some(_)) if upload::md5_shaped(e) => "read back",
            _ => "length",
        };
        store
            .put(&self.storage.path(&index_key(key)), PutPayload::from(index.to_json()))
            .await
            .map_err(StorageError::from_store("writing an archive index"))?;
        if self.index(key).await? != *index {
            return Err(stored("the index read back differs".into()));
        }
        if checked == "read back" {
            tracing::info!(bundle = key, etag = ?etag, expected = ?expected, "the bundle's etag is not the md5 of what was sent; reading it back");
            self.verify(key).await?;
        }
        tracing::info!(bundle = key, bytes = sent.bytes, parts = sent.parts, checked, "archive bundle stored");
        parse_key(key, sent.bytes)
    }

    /// Bundles with an index, oldest first; all streams, or one.
    pub async fn list(&self, stream: Option<&StreamName>) -> Result<Vec<BundleRef>, ArchiveError> {
        let prefix = match stream {
            Some(s) => format!("{ARCHIVE_DIR}/{s}"),
            None => ARCHIVE_DIR.to_owned(),
        };
        let root = self.storage.path("");
        let objects: Vec<_> = self
            .storage
            .root_store()
            .list(Some(&self.storage.path(&prefix)))
            .try_collect()
            .await
            .map_err(StorageError::from_store("listing the archive"))?;
        let relative = |p: &object_store::path::Path| -> String {
            let full = p.as_ref();
            full.strip_prefix(root.as_ref()).unwrap_or(full).trim_start_matches('/').to_owned()
        };
        let indexes: std::collections::HashSet<String> =
            objects.iter().map(|o| relative(&o.location)).filter(|k| k.ends_with(INDEX_SUFFIX)).collect();
        let mut out: Vec<BundleRef> = objects
            .iter()
            .filter_map(|o| {
                let key = relative(&o.location);
                (key.ends_with(BUNDLE_SUFFIX) && indexes.contains(&index_key(&key)))
                    .then(|| parse_key(&key, o.size).ok())
                    .flatten()
            })
            .collect();
        out.sort_by(|a, b| (&a.date, &a.id, &a.stream).cmp(&(&b.date, &b.id, &b.stream)));
        Ok(out)
    }

    pub async fn index(&self, key: &str) -> Result<BundleIndex, ArchiveError> {
        let bytes = self.storage.get(&index_key(key)).await?;
        BundleIndex::from_json(&bytes).map_err(|source| ArchiveError::Bundle { key: key.into(), source })
    }

    /// Writes one member's bytes to `out` as they are decompressed from its frame (one ranged
    /// read, fetched in windows), checking its size and SHA-256 on the way: memory stays
    /// bounded whatever the member's size. On an error, what was written must not be used.
    pub async fn member<W: Write + Send + 'static>(
        &self,
        key: &str,
        name: &str,
        out: W,
    ) -> Result<(Member, W), ArchiveError> {
        let index = self.index(key).await?;
        let member = index.member(name).cloned().ok_or_else(|| ArchiveError::NoMember(key.into(), name.into()))?;
        self.member_of(key, member, out).await
    }

    /// [`Archive::member`] of a member of the index already read.
    async fn member_of<W: Write + Send + 'static>(
        &self,
        key: &str,
        member: Member,
        mut out: W,
    ) -> Result<(Member, W), ArchiveError> {
        let range = member.offset..member.offset + member.length;
        let frame = ranged::ObjectReader::new(self.storage.root_store(), self.storage.path(key), range, None);
        let bundle_key = key.to_owned();
        tokio::task::spawn_blocking(move || {
            read::copy_member(BufReader::with_capacity(READ_BUFFER, frame), &member, &mut out)
                .map_err(|source| ArchiveError::Bundle { key: bundle_key, source })?;
            Ok((member, out))
        })
        .await
        .map_err(|e| StorageError::Io("reading an archive member".into(), std::io::Error::other(e)))?
    }

    /// Reads a whole bundle as a stream and checks it against its index (every member's
    /// place, size and SHA-256, and the bundle's length); returns how many members.
    pub async fn verify(&self, key: &str) -> Result<usize, ArchiveError> {
        let index = self.index(key).await?;
        let store = self.storage.root_store();
        let path = self.storage.path(key);
        let meta = store.head(&path).await.map_err(StorageError::from_store("reading an archive bundle"))?;
        let bad = |source| ArchiveError::Bundle { key: key.into(), source };
        if meta.size != index.bytes {
            return Err(bad(BundleError::Index(format!(
                "the bundle has {} bytes, the index says {}",
                meta.size, index.bytes
            ))));
        }
        let bundle = ranged::ObjectReader::new(store, path, 0..meta.size, meta.e_tag);
        tokio::task::spawn_blocking(move || read::verify(BufReader::with_capacity(READ_BUFFER, bundle), &index))
            .await
            .map_err(|e| StorageError::Io("checking an archive bundle".into(), std::io::Error::other(e)))?
            .map_err(bad)
    }

    /// Deletes a bundle: its index first, so that it leaves listings at once.
    pub async fn delete(&self, bundle: &BundleRef) -> Result<(), ArchiveError> {
        let store = self.storage.root_store();
        for key in [bundle.index_key(), bundle.key.clone()] {
            match store.delete(&self.storage.path(&key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(StorageError::from_store("deleting an archive bundle")(e).into()),
            }
        }
        Ok(())
    }
}

/// `archive/<stream>/date=YYYY-MM-DD/<id>.tar.zst` into its parts.
fn parse_key(key: &str, bytes: u64) -> Result<BundleRef, ArchiveError> {
    let bad = || ArchiveError::NotABundle(key.into());
    let parts: Vec<&str> = key.split('/').collect();
    let [dir, stream, date, file] = parts[..] else { return Err(bad()) };
    let date = date.strip_prefix("date=").ok_or_else(bad)?;
    let id = file.strip_suffix(BUNDLE_SUFFIX).ok_or_else(bad)?;
    if dir != ARCHIVE_DIR
        || StreamName::new(stream).is_err()
        || chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_err()
        || id.is_empty()
        || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad());
    }
    Ok(BundleRef { stream: stream.into(), date: date.into(), id: id.into(), key: key.into(), bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::Location;
    use crate::metered::StoreMetrics;

    async fn archive() -> Archive {
        let storage = Storage::open(Location::Memory, &Default::default(), StoreMetrics::default()).await.unwrap();
        Archive::new(storage)
    }

    fn sample(names: &[&str]) -> (Bytes, BundleIndex) {
        let mut w = BundleWriter::new(Vec::new(), 3, 1 << 20);
        for n in names {
            let data = format!("contents of {n}\n").repeat(50);
            w.append(MemberInfo { name: (*n).into(), ..Default::default() }, data.len() as u64, data.as_bytes())
                .unwrap();
        }
        let (bytes, index) = w.finish().unwrap();
        (Bytes::from(bytes), index)
    }

    #[tokio::test]
    async fn stored_bundles_are_listed_read_by_member_and_deleted() {
        let archive = archive().await;
        let web = StreamName::new("web").unwrap();
        let key = Archive::new_bundle_key(&web, "2026-11-25");
        let (bytes, index) = sample(&["a.log", "b.log"]);
        let stored = archive.store(&key, bytes.clone(), &index).await.unwrap();
        assert_eq!((stored.stream.as_str(), stored.date.as_str()), ("web", "2026-11-25"));
        let (bytes2, index2) = sample(&["c.log"]);
        let other = Archive::new_bundle_key(&StreamName::new("app").unwrap(), "2026-11-24");
        archive.store(&other, bytes2, &index2).await.unwrap();

        let all = archive.list(None).await.unwrap();
        assert_eq!(all.iter().map(|b| b.key.as_str()).collect::<Vec<_>>(), [other.as_str(), key.as_str()]);
        assert_eq!(archive.list(Some(&web)).await.unwrap(), std::slice::from_ref(&stored));
        let (member, data) = archive.member(&key, "b.log", Vec::new()).await.unwrap();
        assert_eq!(data, "contents of b.log\n".repeat(50).into_bytes());
        assert_eq!(member.size, data.len() as u64);
        assert!(matches!(archive.member(&key, "zzz", Vec::new()).await, Err(ArchiveError::NoMember(..))));
        assert_eq!(archive.verify(&key).await.unwrap(), 2);

        archive.delete(&stored).await.unwrap();
        assert_eq!(archive.list(Some(&web)).await.unwrap(), []);
    }

    #[tokio::test]
    async fn a_bundle_without_its_index_is_not_listed() {
        let archive = archive().await;
        let key = Archive::new_bundle_key(&StreamName::new("web").unwrap(), "2026-11-25");
        archive.storage.root_store().put(&archive.storage.path(&key), PutPayload::from_static(b"x")).await.unwrap();
        assert_eq!(archive.list(None).await.unwrap(), []);
    }

    /// Bytes that do not compress (xorshift).
    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    const SMALL_PARTS: WriteOptions = WriteOptions { level: 3, frame_bytes: 1 << 20, part_bytes: 64 << 10 };

    #[tokio::test]
    async fn a_bundle_streams_in_parts_and_a_tampered_part_is_caught() {
        let archive = archive().await;
        let key = Archive::new_bundle_key(&StreamName::new("web").unwrap(), "2026-11-25");
        let big = noise(1 << 20, 7);
        let mut upload = archive.create(&key, SMALL_PARTS).unwrap();
        upload.append(MemberInfo { name: "a.log".into(), ..Default::default() }, 6, &b"hello\n"[..]).await.unwrap();
        let member = upload
            .append(
                MemberInfo { name: "big.bin".into(), ..Default::default() },
                big.len() as u64,
                std::io::Cursor::new(big.clone()),
            )
            .await
            .unwrap();
        assert_eq!(member.size, big.len() as u64);
        let (stored, index) = upload.finish().await.unwrap();
        assert!(stored.bytes > 10 * (64 << 10), "{} bytes: many parts", stored.bytes);
        assert_eq!(stored.bytes, index.bytes);
        assert_eq!(archive.index(&key).await.unwrap(), index);
        assert_eq!(archive.verify(&key).await.unwrap(), 2);
        let (_, data) = archive.member(&key, "big.bin", Vec::new()).await.unwrap();
        assert!(data == big, "the member reads back byte-exact");

        // A byte changed in the third part, length unchanged: verification names the member.
        let path = archive.storage.path(&key);
        let store = archive.storage.root_store();
        let mut bytes = store.get(&path).await.unwrap().bytes().await.unwrap().to_vec();
        bytes[2 * (64 << 10) + 100] ^= 0x01;
        store.put(&path, PutPayload::from(bytes)).await.unwrap();
        let err = archive.verify(&key).await.unwrap_err().to_string();
        assert!(err.contains("big.bin"), "{err}");
        assert!(archive.member(&key, "big.bin", Vec::new()).await.is_err());
        // The other member's frame is intact.
        assert_eq!(archive.member(&key, "a.log", Vec::new()).await.unwrap().1, b"hello\n");
    }

    #[tokio::test]
    async fn a_stored_bundle_of_another_length_is_refused() {
        let archive = archive().await;
        let key = Archive::new_bundle_key(&StreamName::new("web").unwrap(), "2026-11-25");
        let path = archive.storage.path(&key);
        let (mut parts, sending) = upload::start(archive.storage.root_store(), path.clone(), 64 << 10, true);
        let (written, index) = tokio::task::spawn_blocking(move || {
            let mut writer = BundleWriter::new(&mut parts, 3, 0);
            let big = noise(300 << 10, 3);
            writer.append(MemberInfo { name: "x".into(), ..Default::default() }, big.len() as u64, &big[..])?;
            let (_, index) = writer.finish()?;
            Ok::<_, std::io::Error>((parts.finish(), index))
        })
        .await
        .unwrap()
        .unwrap();
        let sent = upload::outcome(&key, written, sending).await.unwrap();
        assert!(sent.multipart && sent.parts > 4 && sent.part_md5s.len() == sent.parts, "{sent:?}");
        // The store holds one byte less than was sent.
        let store = archive.storage.root_store();
        let mut bytes = store.get(&path).await.unwrap().bytes().await.unwrap().to_vec();
        assert_eq!(bytes.len() as u64, sent.bytes);
        bytes.pop();
        store.put(&path, PutPayload::from(bytes)).await.unwrap();
        let err = archive.commit(&key, &sent, &index).await.unwrap_err();
        assert!(err.to_string().contains("bytes are stored"), "{err}");
        assert!(archive.list(None).await.unwrap().is_empty(), "no index is written");
    }

    #[tokio::test]
    async fn a_failing_member_aborts_the_upload() {
        /// Its bytes, then an error.
        struct Failing(std::io::Cursor<Vec<u8>>);
        impl std::io::Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                match self.0.read(buf)? {
                    0 => Err(std::io::Error::other("the source went away")),
                    n => Ok(n),
                }
            }
        }
        let archive = archive().await;
        let key = Archive::new_bundle_key(&StreamName::new("web").unwrap(), "2026-11-25");
        let mut upload = archive.create(&key, SMALL_PARTS).unwrap();
        let info = MemberInfo { name: "x".into(), ..Default::default() };
        let err =
            upload.append(info.clone(), 10 << 20, Failing(std::io::Cursor::new(noise(5 << 20, 1)))).await.unwrap_err();
        assert!(err.to_string().contains("the source went away"), "{err}");
        assert!(upload.append(info, 1, &b"x"[..]).await.is_err(), "no more after an error");
        assert!(upload.finish().await.is_err());
        let head = archive.storage.root_store().head(&archive.storage.path(&key)).await;
        assert!(matches!(head, Err(object_store::Error::NotFound { .. })), "{head:?}");
    }

    #[test]
    fn keys_are_checked() {
        assert!(parse_key("archive/web/date=2026-11-25/0190abc.tar.zst", 1).is_ok());
        for bad in [
            "archive/web/2026-11-25/x.tar.zst",
            "archive/Web/date=2026-11-25/x.tar.zst",
            "archive/web/date=2026-13-25/x.tar.zst",
            "archive/web/date=2026-11-25/../x.tar.zst",
            "tables/web/date=2026-11-25/x.tar.zst",
        ] {
            assert!(parse_key(bad, 1).is_err(), "{bad}");
        }
    }
}
