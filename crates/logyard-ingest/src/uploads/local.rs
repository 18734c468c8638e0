//! The local stand-in for S3, where nothing can be presigned: `PUT .../data` and
//! `PUT .../parts/{n}` with the checks S3 makes of a presigned request (the capability in the
//! URL, the expiry, the content type, the exact length), and joining a multipart upload's
//! parts (on S3, completing it from the parts' ETags). Does not change an upload's state and
//! does not ingest.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};

use logyard_storage::archive::ranged::ObjectReader;
use logyard_storage::{Location, StorageError};

use super::record::{UploadError, UploadRecord, UploadState, Uploads, expired};

/// Parts of an object being written that may wait at once (each `WriteMultipart`'s 5 MiB).
const PARTS_IN_FLIGHT: usize = 4;

impl Uploads {
    /// Stores the bytes of a pending upload (local storage, where nothing is presigned), with
    /// the checks S3 makes of a presigned PUT: the capability, the expiry, the content type
    /// and the exact length.
    pub async fn put_data<E: std::fmt::Display>(
        &self,
        id: &str,
        token: &str,
        content_type: Option<&str>,
        mut body: impl futures::Stream<Item = Result<Bytes, E>> + Unpin,
    ) -> Result<(), UploadError> {
        use futures::StreamExt;
        let record = self.status(id).await?;
        self.check_capability(&record, token)?;
        if content_type != Some(record.content_type.as_str()) {
            return Err(UploadError::Invalid(format!(
                "Content-Type must be {:?}, as announced (got {content_type:?})",
                record.content_type
            )));
        }
        let path = self.storage.path(&record.key);
        match self.storage.root_store().head(&path).await {
            Ok(_) => return Err(UploadError::Precondition(format!("the data of upload {id} was already received"))),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(StorageError::from_store("checking uploaded data")(e).into()),
        }
        let upload = self
            .storage
            .root_store()
            .put_multipart(&path)
            .await
            .map_err(StorageError::from_store("writing uploaded data"))?;
        let mut writer = object_store::WriteMultipart::new(upload);
        let mut received = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(UploadError::Invalid(format!("reading the body: {e}")));
                }
            };
            received += chunk.len() as u64;
            if received > record.size {
                let _ = writer.abort().await;
                return Err(UploadError::Invalid(format!(
                    "the body is longer than the {} bytes announced",
                    record.size
                )));
            }
            // Bounded: no more than a few parts wait for the disk.
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(StorageError::from_store("writing uploaded data")(e).into());
            }
            writer.put(chunk);
        }
        if received != record.size {
            let _ = writer.abort().await;
            return Err(UploadError::Invalid(format!("the body has {received} bytes; {} were announced", record.size)));
        }
        writer.finish().await.map_err(StorageError::from_store("writing uploaded data"))?;
        Ok(())
    }

    /// Local storage: stores one part of a multipart upload, checked like a presigned part.
    pub async fn put_part(&self, id: &str, n: u32, token: &str, body: Bytes) -> Result<String, UploadError> {
        let record = self.status(id).await?;
        self.check_capability(&record, token)?;
        let plan =
            record.multipart.as_ref().ok_or_else(|| UploadError::Invalid(format!("upload {id} is not multipart")))?;
        if n == 0 || n > plan.parts {
            return Err(UploadError::Invalid(format!("part {n}: parts are numbered 1 to {}", plan.parts)));
        }
        let expected = plan.part_bytes(record.size, n);
        if body.len() as u64 != expected {
            return Err(UploadError::Invalid(format!("part {n} has {} bytes; {expected} are expected", body.len())));
        }
        let etag = format!("\"{}\"", &sha256_hex_bytes(&body)[..32]);
        let marker = self.storage.path(&part_key(&record.key, n));
        let Location::Local(root) = self.storage.location() else {
            self.storage
                .root_store()
                .put(&marker, PutPayload::from_bytes(body))
                .await
                .map_err(StorageError::from_store("writing an upload part"))?;
            return Ok(etag);
        };
        // A local directory: the part goes straight to its place in the file, so that
        // completing is a rename, not a copy of the whole upload; an empty object marks it.
        let file = root.join(partial_key(&record.key));
        let offset = u64::from(n - 1) * plan.part_size;
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let out = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(&file)?;
            out.write_all_at(&body, offset)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        .map_err(|e| StorageError::Io("writing an upload part".into(), e))?;
        self.storage
            .root_store()
            .put(&marker, PutPayload::from_static(b""))
            .await
            .map_err(StorageError::from_store("writing an upload part"))?;
        Ok(etag)
    }

    pub(super) fn check_capability(&self, record: &UploadRecord, token: &str) -> Result<(), UploadError> {
        let valid = record
            .data_token_sha256
            .as_deref()
            .is_some_and(|h| subtle::ConstantTimeEq::ct_eq(h.as_bytes(), sha256_hex(token).as_bytes()).into());
        if !valid {
            return Err(UploadError::Forbidden(format!("the URL of upload {} is not valid", record.upload_id)));
        }
        if record.state != UploadState::Pending {
            return Err(UploadError::Conflict {
                id: record.upload_id.clone(),
                state: record.state,
                message: "its data was already received".into(),
            });
        }
        if expired(record) {
            return Err(UploadError::Forbidden(format!(
                "the URL of upload {} expired at {}",
                record.upload_id, record.expires_at
            )));
        }
        Ok(())
    }

    /// Puts a multipart upload's parts together: on S3 from the parts' ETags; on a local
    /// directory, where the parts are in place already, by renaming the file once all are
    /// there; in memory by joining the part objects in order.
    pub(super) async fn assemble(&self, record: &UploadRecord, parts: &[(u32, String)]) -> Result<(), UploadError> {
        let Some(plan) = &record.multipart else { return Ok(()) };
        match (self.storage.presigner(), &plan.s3_upload_id, self.storage.location()) {
            (Some(presigner), Some(s3_id), _) => {
                if parts.len() != plan.parts as usize {
                    return Err(UploadError::Invalid(format!(
                        "complete with the ETags of all {} parts ({} given)",
                        plan.parts,
                        parts.len()
                    )));
                }
                let mut parts = parts.to_vec();
                parts.sort_by_key(|p| p.0);
                presigner.complete_multipart(&self.storage.full_key(&record.key), s3_id, &parts).await?;
            }
            (_, _, Location::Local(root)) => {
                let store = self.storage.root_store();
                for n in 1..=plan.parts {
                    match store.head(&self.storage.path(&part_key(&record.key, n))).await {
                        Ok(_) => {}
                        Err(object_store::Error::NotFound { .. }) => {
                            return Err(UploadError::Conflict {
                                id: record.upload_id.clone(),
                                state: record.state,
                                message: format!("part {n} was not uploaded yet"),
                            });
                        }
                        Err(e) => return Err(StorageError::from_store("checking upload parts")(e).into()),
                    }
                }
                std::fs::rename(root.join(partial_key(&record.key)), root.join(&record.key))
                    .map_err(|e| StorageError::Io("joining upload parts".into(), e))?;
                self.delete_parts(record, plan.parts).await;
            }
            _ => {
                let store = self.storage.root_store();
                let upload = store
                    .put_multipart(&self.storage.path(&record.key))
                    .await
                    .map_err(StorageError::from_store("joining upload parts"))?;
                let mut writer = object_store::WriteMultipart::new(upload);
                for n in 1..=plan.parts {
                    let path = self.storage.path(&part_key(&record.key, n));
                    let part = match store.head(&path).await {
                        Ok(meta) => read_whole(store.clone(), meta).await,
                        Err(object_store::Error::NotFound { .. }) => {
                            let _ = writer.abort().await;
                            return Err(UploadError::Conflict {
                                id: record.upload_id.clone(),
                                state: record.state,
                                message: format!("part {n} was not uploaded yet"),
                            });
                        }
                        Err(e) => Err(StorageError::from_store("reading an upload part")(e)),
                    };
                    let part = match part {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = writer.abort().await;
                            return Err(e.into());
                        }
                    };
                    if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                        let _ = writer.abort().await;
                        return Err(StorageError::from_store("joining upload parts")(e).into());
                    }
                    writer.put(part);
                }
                writer.finish().await.map_err(StorageError::from_store("joining upload parts"))?;
                self.delete_parts(record, plan.parts).await;
            }
        }
        Ok(())
    }

    /// Drops what the parts of a multipart upload that will not be completed left behind.
    pub(super) async fn discard_parts(&self, record: &UploadRecord) {
        let Some(plan) = &record.multipart else { return };
        self.delete_parts(record, plan.parts).await;
        if let Location::Local(root) = self.storage.location() {
            let _ = std::fs::remove_file(root.join(partial_key(&record.key)));
        }
    }

    /// Deletes the part objects (or markers) of a joined upload.
    async fn delete_parts(&self, record: &UploadRecord, parts: u32) {
        for n in 1..=parts {
            let _ = self.storage.root_store().delete(&self.storage.path(&part_key(&record.key, n))).await;
        }
        if let Location::Local(root) = self.storage.location() {
            let _ = std::fs::remove_dir(root.join(format!("{}.parts", record.key)));
        }
    }
}

/// An object's bytes, read on a blocking thread (a local file directly: the store's own read
/// of a file zero-fills its buffer first, which costs a debug build more than the copy).
async fn read_whole(store: Arc<dyn ObjectStore>, meta: ObjectMeta) -> Result<Bytes, StorageError> {
    let mut reader = ObjectReader::new(store, meta.location, 0..meta.size, meta.e_tag);
    tokio::task::spawn_blocking(move || {
        let mut data = Vec::with_capacity(meta.size as usize);
        reader.read_to_end(&mut data).map(|_| Bytes::from(data))
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    .map_err(|e| StorageError::Io("reading an upload part".into(), e))
}

pub(super) fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex_bytes(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn part_key(key: &str, n: u32) -> String {
    format!("{key}.parts/{n:05}")
}

/// A local directory: the file the parts of a multipart upload are written into.
fn partial_key(key: &str) -> String {
    format!("{key}.partial")
}
