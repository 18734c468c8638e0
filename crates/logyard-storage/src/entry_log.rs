//! A log of small JSON entries in the object store: `<dir>/<n>.json`, numbered from 1.
//!
//! Entry `n + 1` is written only if it does not exist yet (`If-None-Match: *` on S3,
//! no-clobber on a local disk), by whoever read entry `n` as the latest. So the entries form
//! one line: a writer whose write fails has been overtaken and must read the latest entry
//! again. This is how processes that share a bucket hand work to each other with leases —
//! the Kinesis shard consumers and the alert evaluators. The latest entry is found by listing
//! the prefix (S3 lists are strongly consistent); old entries are deleted as new ones are
//! written.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Storage, StorageError};

/// Entries kept behind the latest one (for inspection); older ones are deleted.
const KEEP: u64 = 4;

/// One log.
#[derive(Debug, Clone)]
pub struct EntryLog {
    store: Arc<dyn ObjectStore>,
    dir: Path,
}

impl EntryLog {
    /// The log under `dir` (a path inside the storage root).
    pub fn new(storage: &Storage, dir: &str) -> Self {
        Self { store: storage.root_store(), dir: storage.path(dir) }
    }

    fn entry(&self, index: u64) -> Path {
        self.dir.clone().join(format!("{index:020}.json"))
    }

    /// The latest entry and its index, `None` when the log has no entry yet.
    pub async fn latest<T: DeserializeOwned>(&self) -> Result<Option<(u64, T)>, StorageError> {
        loop {
            let listed: Vec<_> = self
                .store
                .list(Some(&self.dir))
                .try_collect()
                .await
                .map_err(StorageError::from_store("listing a lease log"))?;
            let Some(index) =
                listed.iter().filter_map(|m| m.location.filename()?.strip_suffix(".json")?.parse::<u64>().ok()).max()
            else {
                return Ok(None);
            };
            match self.store.get(&self.entry(index)).await {
                Ok(r) => {
                    let bytes = r.bytes().await.map_err(StorageError::from_store("reading a lease log entry"))?;
                    let entry = serde_json::from_slice(&bytes)
                        .map_err(|e| StorageError::Config(format!("{} is not valid: {e}", self.entry(index))))?;
                    return Ok(Some((index, entry)));
                }
                // Deleted as newer entries came: list again.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(StorageError::from_store("reading a lease log entry")(e)),
            }
        }
    }

    /// Writes entry `index` unless it exists: `false` when another writer wrote it first.
    pub async fn write<T: Serialize>(&self, index: u64, entry: &T) -> Result<bool, StorageError> {
        let body = Bytes::from(serde_json::to_vec(entry).map_err(|e| StorageError::Config(e.to_string()))?);
        let options = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.store.put_opts(&self.entry(index), PutPayload::from(body), options).await {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => {
                return Ok(false);
            }
            Err(e) => return Err(StorageError::from_store("writing a lease log entry")(e)),
        }
        if index > KEEP {
            // Best effort: a leftover entry is only listed, never read.
            let old = self.entry(index - KEEP - 1);
            if let Err(e) = self.store.delete(&old).await
                && !matches!(e, object_store::Error::NotFound { .. })
            {
                tracing::debug!(entry = %old, error = %e, "deleting an old lease log entry failed");
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Location, StoreMetrics};

    #[tokio::test]
    async fn entries_form_one_line_and_old_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let storage =
            Storage::open(Location::Local(dir.path().to_owned()), &Default::default(), StoreMetrics::default())
                .await
                .unwrap();
        let log = EntryLog::new(&storage, "leases/x/y");
        assert_eq!(log.latest::<String>().await.unwrap(), None);
        assert!(log.write(1, &"a").await.unwrap());
        // A second writer that also read "no entry" loses.
        assert!(!log.write(1, &"b").await.unwrap());
        assert_eq!(log.latest::<String>().await.unwrap(), Some((1, "a".to_owned())));
        for i in 2..=12u64 {
            assert!(log.write(i, &format!("e{i}")).await.unwrap());
        }
        assert_eq!(log.latest::<String>().await.unwrap(), Some((12, "e12".to_owned())));
        let kept = std::fs::read_dir(dir.path().join("leases/x/y")).unwrap().count();
        assert_eq!(kept as u64, KEEP + 1, "old entries are deleted");
        // An entry that is not what the reader expects is named.
        let err = log.latest::<u64>().await.unwrap_err().to_string();
        assert!(err.contains("00000000000000000012.json is not valid"), "{err}");
    }
}
