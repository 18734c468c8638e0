//! The raw archive: original bytes kept byte-exact as seekable tar.zst bundles under
//! `archive/<stream>/date=YYYY-MM-DD/<bundle-id>.tar.zst`, each with its index beside it
//! (`<bundle-id>.index.json`). See [`bundle`] for the format.
//!
//! A bundle is written, then its index; both are read back and checked before [`Archive::store`]
//! returns, so a caller may delete what the bundle holds once it has returned. A listing
//! shows only bundles whose index exists: a bundle without one is an interrupted write.

pub mod bundle;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;

use logyard_core::StreamName;

use crate::StorageError;
use crate::store::Storage;
pub use bundle::{BundleError, BundleIndex, BundleWriter, Member, MemberInfo};

pub const ARCHIVE_DIR: &str = "archive";
const BUNDLE_SUFFIX: &str = ".tar.zst";
const INDEX_SUFFIX: &str = ".index.json";

/// One stored bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
}

impl logyard_core::ServiceError for ArchiveError {
    fn kind(&self) -> logyard_core::ErrorKind {
        match self {
            ArchiveError::NoMember(..) => logyard_core::ErrorKind::NotFound,
            ArchiveError::NotABundle(_) => logyard_core::ErrorKind::BadRequest,
            ArchiveError::Storage(_) | ArchiveError::Bundle { .. } => logyard_core::ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ArchiveError::NoMember(..) => "not_found",
            ArchiveError::NotABundle(_) => "invalid_bundle_key",
            ArchiveError::Storage(_) => "storage_error",
            ArchiveError::Bundle { .. } => "archive_damaged",
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

    /// Writes a bundle and its index, reads both back and checks every member.
    pub async fn store(&self, key: &str, bundle: Bytes, index: &BundleIndex) -> Result<BundleRef, ArchiveError> {
        let reference = parse_key(key, bundle.len() as u64)?;
        let store = self.storage.root_store();
        let bundle_path = self.storage.path(key);
        let index_path = self.storage.path(&index_key(key));
        store
            .put(&bundle_path, PutPayload::from_bytes(bundle))
            .await
            .map_err(StorageError::from_store("writing an archive bundle"))?;
        store
            .put(&index_path, PutPayload::from(index.to_json()))
            .await
            .map_err(StorageError::from_store("writing an archive index"))?;
        let stored = self.index(key).await?;
        if stored != *index {
            return Err(ArchiveError::Bundle {
                key: key.into(),
                source: BundleError::Index("the index read back differs".into()),
            });
        }
        self.verify(key).await?;
        Ok(reference)
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

    /// One member's bytes, with a single ranged read of its frame.
    pub async fn member(&self, key: &str, name: &str) -> Result<(Member, Vec<u8>), ArchiveError> {
        let index = self.index(key).await?;
        let member = index.member(name).cloned().ok_or_else(|| ArchiveError::NoMember(key.into(), name.into()))?;
        let frame = self
            .storage
            .root_store()
            .get_range(&self.storage.path(key), member.offset..member.offset + member.length)
            .await
            .map_err(StorageError::from_store("reading an archive member"))?;
        let data =
            bundle::read_member(&frame, &member).map_err(|source| ArchiveError::Bundle { key: key.into(), source })?;
        Ok((member, data))
    }

    /// Reads a whole bundle and checks every member against its index; returns how many.
    pub async fn verify(&self, key: &str) -> Result<usize, ArchiveError> {
        let index = self.index(key).await?;
        let bytes = self.storage.get(key).await?;
        bundle::verify(&bytes, &index).map_err(|source| ArchiveError::Bundle { key: key.into(), source })
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
        let (member, data) = archive.member(&key, "b.log").await.unwrap();
        assert_eq!(data, "contents of b.log\n".repeat(50).into_bytes());
        assert_eq!(member.size, data.len() as u64);
        assert!(matches!(archive.member(&key, "zzz").await, Err(ArchiveError::NoMember(..))));
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
