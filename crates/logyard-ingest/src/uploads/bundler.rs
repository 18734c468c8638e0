//! Puts the originals of finished uploads into the archive: many small objects become one
//! bundle per stream and day, of about `target_bytes`.
//!
//! Crash safety: an intent (`archive/_intents/<bundle-id>.json`, naming the bundle and the
//! objects it takes) is written first; the bundle is streamed to the store as it is made
//! (each original read once, in windows, on a blocking thread) and checked against what was
//! sent, and its index written and read back (`Archive`); the upload records are marked
//! archived; the incoming objects and then the intent are deleted. An intent left by a crash
//! is finished (when its bundle verifies, read back as a stream) or dropped. Memory stays
//! bounded whatever the size of an upload.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use logyard_core::StreamName;
use logyard_core::time;
use logyard_storage::StorageError;
use logyard_storage::archive::ranged::ObjectReader;
use logyard_storage::archive::{ARCHIVE_DIR, Archive, BundleRef, MemberInfo, WriteOptions, part_bytes_for};

use super::{UploadError, UploadRecord, UploadState, Uploads};

const INTENTS_DIR: &str = "archive/_intents";

/// How originals are bundled.
#[derive(Debug, Clone)]
pub struct BundleOptions {
    /// Bytes of originals after which a bundle is written.
    pub target_bytes: u64,
    /// A group smaller than the target is bundled once its oldest upload is this old.
    pub max_age: Duration,
    /// zstd level of the bundles.
    pub level: i32,
    /// Decompressed bytes per zstd frame (0: a frame per member).
    pub frame_bytes: u64,
}

impl Default for BundleOptions {
    fn default() -> Self {
        Self { target_bytes: 64 << 20, max_age: Duration::from_secs(600), level: 3, frame_bytes: 1 << 20 }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Intent {
    bundle: String,
    uploads: Vec<String>,
}

impl Uploads {
    /// Archives the originals of finished uploads: every group now with `force`, else the
    /// groups that reached the target size or age. Returns the bundles written.
    pub async fn archive_finished(&self, options: &BundleOptions, force: bool) -> Result<Vec<BundleRef>, UploadError> {
        self.resolve_intents().await?;
        let now = time::now_micros();
        let mut groups: BTreeMap<(String, String), Vec<UploadRecord>> = BTreeMap::new();
        for record in self.records().await? {
            if record.archived.is_some() || !matches!(record.state, UploadState::Done | UploadState::Failed) {
                continue;
            }
            let date = record.created_at.get(..10).unwrap_or("1970-01-01").to_owned();
            groups.entry((record.stream.clone(), date)).or_default().push(record);
        }
        let mut written = Vec::new();
        for ((stream, date), mut records) in groups {
            if !self.options().masking.archives_originals(&stream) {
                // The stream is masked: its rows are, the files as sent are not, so they are
                // not archived but deleted.
                for mut r in records {
                    delete(self.storage(), &r.key).await?;
                    prune_empty_dirs(self.storage(), &r.key);
                    r.archived = Some(String::new());
                    self.save_record(&r).await?;
                }
                continue;
            }
            records.sort_by(|a, b| a.created_at.cmp(&b.created_at));
            // Only objects that exist: an upload that failed before anything arrived has none.
            let mut present = Vec::new();
            for r in records {
                match self.storage().root_store().head(&self.storage().path(&r.key)).await {
                    Ok(meta) => present.push((r, meta)),
                    Err(object_store::Error::NotFound { .. }) => {
                        let mut r = r;
                        r.archived = Some(String::new());
                        self.save_record(&r).await?;
                    }
                    Err(e) => return Err(StorageError::from_store("checking an uploaded object")(e).into()),
                }
            }
            let mut group = Vec::new();
            let mut bytes = 0;
            let count = present.len();
            for (i, (record, meta)) in present.into_iter().enumerate() {
                bytes += meta.size;
                group.push((record, meta));
                let last = i + 1 == count;
                let oldest = time::parse_time_str(&group[0].0.created_at).unwrap_or(now);
                let old = now - oldest >= options.max_age.as_micros() as i64;
                if bytes >= options.target_bytes || (last && (force || old)) {
                    written.push(self.bundle(&stream, &date, std::mem::take(&mut group), options).await?);
                    bytes = 0;
                }
            }
        }
        Ok(written)
    }

    /// Writes one bundle of the originals in `objects` (each with what a HEAD said of it).
    async fn bundle(
        &self,
        stream: &str,
        date: &str,
        objects: Vec<(UploadRecord, ObjectMeta)>,
        options: &BundleOptions,
    ) -> Result<BundleRef, UploadError> {
        let storage = self.storage();
        let stream_name = StreamName::new(stream).map_err(|e| UploadError::Invalid(e.to_string()))?;
        let key = Archive::new_bundle_key(&stream_name, date);
        let intent =
            Intent { bundle: key.clone(), uploads: objects.iter().map(|(r, _)| r.upload_id.clone()).collect() };
        storage
            .root_store()
            .put(&storage.path(&intent_key(&key)), PutPayload::from(serde_json::to_vec(&intent).expect("serializes")))
            .await
            .map_err(StorageError::from_store("writing an archive intent"))?;

        // A bundle holds less than the target plus one upload: its parts are sized for that.
        let part_bytes = part_bytes_for(options.target_bytes.saturating_add(self.options().max_bytes));
        let write = WriteOptions { level: options.level, frame_bytes: options.frame_bytes, part_bytes };
        let mut bundle = Archive::new(storage.clone()).create(&key, write)?;
        for (r, meta) in &objects {
            // Read once, in windows, straight into the bundle.
            let original =
                ObjectReader::new(storage.root_store(), meta.location.clone(), 0..meta.size, meta.e_tag.clone());
            let info = MemberInfo {
                name: format!("{}/{}", r.upload_id, r.filename),
                mtime: meta.last_modified.timestamp().max(0) as u64,
                rows: Some(r.rows),
                rejected: Some(r.rejected),
                upload_id: Some(r.upload_id.clone()),
            };
            bundle.append(info, meta.size, original).await?;
        }
        let (stored, _) = bundle.finish().await?;
        self.finish_intent(&intent).await?;
        tracing::info!(bundle = key, members = objects.len(), bytes = stored.bytes, "archived uploads");
        Ok(stored)
    }

    /// Marks the intent's uploads archived, deletes their incoming objects, then the intent.
    async fn finish_intent(&self, intent: &Intent) -> Result<(), UploadError> {
        let storage = self.storage();
        for id in &intent.uploads {
            let mut record = match self.status(id).await {
                Ok(r) => r,
                Err(UploadError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            if record.archived.is_none() {
                record.archived = Some(intent.bundle.clone());
                self.save_record(&record).await?;
            }
            delete(storage, &record.key).await?;
            prune_empty_dirs(storage, &record.key);
        }
        delete(storage, &intent_key(&intent.bundle)).await
    }

    /// Finishes or drops the intents a crash left behind.
    async fn resolve_intents(&self) -> Result<(), UploadError> {
        let storage = self.storage();
        let intents: Vec<_> = storage
            .root_store()
            .list(Some(&storage.path(INTENTS_DIR)))
            .try_collect()
            .await
            .map_err(StorageError::from_store("listing archive intents"))?;
        let archive = Archive::new(storage.clone());
        for object in intents {
            let bytes = storage
                .root_store()
                .get(&object.location)
                .await
                .map_err(StorageError::from_store("reading an archive intent"))?
                .bytes()
                .await
                .map_err(StorageError::from_store("reading an archive intent"))?;
            let Ok(intent) = serde_json::from_slice::<Intent>(&bytes) else { continue };
            let complete = archive.verify(&intent.bundle).await.is_ok();
            if complete {
                tracing::info!(bundle = intent.bundle, "finishing an archive bundle written before a restart");
                self.finish_intent(&intent).await?;
            } else {
                tracing::info!(bundle = intent.bundle, "dropping an archive bundle left unfinished by a restart");
                delete(storage, &intent.bundle).await?;
                delete(storage, &intent.bundle.replace(".tar.zst", ".index.json")).await?;
                delete(storage, &intent_key(&intent.bundle)).await?;
            }
        }
        Ok(())
    }
}

fn intent_key(bundle_key: &str) -> String {
    let id = bundle_key.rsplit('/').next().unwrap_or(bundle_key).trim_end_matches(".tar.zst");
    debug_assert!(bundle_key.starts_with(ARCHIVE_DIR));
    format!("{INTENTS_DIR}/{id}.json")
}

async fn delete(storage: &logyard_storage::Storage, key: &str) -> Result<(), UploadError> {
    match storage.root_store().delete(&storage.path(key)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(StorageError::from_store("deleting an archived object")(e).into()),
    }
}

/// On a local directory, removes the directories an archived object leaves empty (up to
/// `incoming/`), so that they do not pile up; object stores have no directories.
fn prune_empty_dirs(storage: &logyard_storage::Storage, key: &str) {
    let logyard_storage::Location::Local(root) = storage.location() else { return };
    let stop = root.join(super::INCOMING_DIR);
    let mut dir = root.join(key).parent().map(std::path::Path::to_path_buf);
    while let Some(d) = dir {
        if d == stop || !d.starts_with(&stop) || std::fs::remove_dir(&d).is_err() {
            break;
        }
        dir = d.parent().map(std::path::Path::to_path_buf);
    }
}
