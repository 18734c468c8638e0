//! Ingesting an uploaded object: read in chunks on a blocking thread (`read`), each chunk
//! committed with the Delta transaction (`upload-<id>`, N) so that a rerun skips what was
//! committed; and the sweeper, which ingests uploads whose client never completed them and
//! fails the ones that expired. Does not write the objects themselves or archive them.

use std::sync::Arc;

use object_store::ObjectStoreExt;

use logyard_core::StreamName;
use logyard_core::time;
use logyard_storage::archive::ranged::ObjectReader;
use logyard_storage::tables::BuildFn;
use logyard_storage::{AppendOutcome, StorageError};

use super::plan::Multipart;
use super::read::{Chunk, read_upload};
use super::record::{UploadError, UploadRecord, UploadState, Uploads, expired};
use crate::build::build_batches;

impl Uploads {
    /// Ingests an uploaded object, chunk by chunk, and records the outcome. Safe to run again
    /// after a crash: committed chunks are skipped.
    pub async fn ingest(&self, id: &str) -> Result<UploadRecord, UploadError> {
        if !self.inflight.lock().expect("inflight lock").insert(id.to_owned()) {
            return self.status(id).await;
        }
        let result = self.ingest_once(id).await;
        self.inflight.lock().expect("inflight lock").remove(id);
        result
    }

    async fn ingest_once(&self, id: &str) -> Result<UploadRecord, UploadError> {
        let mut record = self.status(id).await?;
        if !matches!(record.state, UploadState::Uploaded | UploadState::Ingesting) {
            return Ok(record);
        }
        record.state = UploadState::Ingesting;
        self.save(&record).await?;
        match self.read_and_commit(&mut record).await {
            Ok(()) => record.state = UploadState::Done,
            Err(e) => {
                tracing::warn!(upload = id, error = %e, "upload ingest failed");
                record.state = UploadState::Failed;
                record.failure = Some(e.to_string());
            }
        }
        self.save(&record).await?;
        tracing::info!(upload = id, stream = record.stream, rows = record.rows, rejected = record.rejected, state = ?record.state, "upload ingested");
        Ok(record)
    }

    async fn read_and_commit(&self, record: &mut UploadRecord) -> Result<(), UploadError> {
        let stream = StreamName::new(&record.stream).map_err(|e| UploadError::Invalid(e.to_string()))?;
        let path = self.storage.path(&record.key);
        let meta = self
            .storage
            .root_store()
            .head(&path)
            .await
            .map_err(StorageError::from_store("reading the uploaded object"))?;
        // In windows: one GET of a large object would outlive the S3 client's request timeout.
        let input = ObjectReader::new(self.storage.root_store(), path, 0..meta.size, meta.e_tag);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(2);
        let format = record.format;
        let received = time::parse_time_str(&record.created_at).unwrap_or_else(time::now_micros);
        let (chunk_bytes, max_json) = (self.options.chunk_bytes, self.options.max_json_bytes);
        let masker = self.options.masking.for_stream(stream.as_str());
        let reading = tokio::task::spawn_blocking(move || {
            read_upload(input, format, received, chunk_bytes, max_json, &mut |mut chunk| {
                if let Some(masker) = &masker {
                    // Nothing of a masked stream is committed unmasked.
                    let masked = masker.mask_events(chunk.events.as_bytes()).map_err(std::io::Error::other)?;
                    if let Some(events) = masked.events {
                        chunk.events = events;
                    }
                }
                tx.blocking_send(chunk).map_err(|_| std::io::Error::other("the committer stopped"))
            })
        });
        let app_id = format!("upload-{}", record.upload_id);
        let mut number = 0u64;
        record.rows = 0;
        record.rejected = 0;
        record.errors.clear();
        while let Some(chunk) = rx.recv().await {
            number += 1;
            record.rejected += chunk.rejected as u64;
            for e in chunk.errors {
                if record.errors.len() < logyard_core::parse::MAX_REPORTED_ERRORS {
                    record.errors.push(e);
                }
            }
            if chunk.accepted == 0 {
                continue;
            }
            let accepted = chunk.accepted as u64;
            let payload = chunk.events.finish();
            let max_columns = self.options.max_columns;
            let build: BuildFn =
                Arc::new(move |schema, _| build_batches(schema, [(number, payload.as_ref())], max_columns));
            let outcome =
                self.tables.append(&stream, &app_id, number as i64, build).await.map_err(UploadError::Storage)?;
            if let AppendOutcome::AlreadyCommitted = outcome {
                tracing::info!(upload = record.upload_id, chunk = number, "chunk committed before a restart; skipped");
            }
            record.rows += accepted;
            record.chunks = number;
            if number.is_multiple_of(8) {
                self.save(record).await?;
            }
        }
        match reading.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(UploadError::Internal(format!("reading the upload stopped: {e}"))),
        }
    }

    /// Pending uploads whose object arrived but was never completed, and pending uploads that
    /// expired with nothing uploaded: the first are ingested, the second marked failed.
    /// Returns the ids ingested.
    pub async fn sweep(&self) -> Result<Vec<String>, UploadError> {
        let mut ingested = Vec::new();
        for record in self.records().await? {
            let stale = matches!(record.state, UploadState::Uploaded | UploadState::Ingesting)
                || (record.state == UploadState::Pending && expired(&record));
            if !stale {
                continue;
            }
            // A multipart upload cannot be completed without its client (S3 needs the ETags).
            let completed = if record.state == UploadState::Pending && record.multipart.is_some() {
                Err(UploadError::Conflict {
                    id: record.upload_id.clone(),
                    state: record.state,
                    message: "a multipart upload".into(),
                })
            } else {
                self.complete(&record.upload_id, &[]).await
            };
            let record = match completed {
                Ok(r) => r,
                Err(UploadError::Conflict { .. }) => {
                    let mut r = record;
                    r.state = UploadState::Failed;
                    r.failure = Some(format!("the upload was not completed before it expired at {}", r.expires_at));
                    match (self.storage.presigner(), &r.multipart) {
                        (Some(presigner), Some(Multipart { s3_upload_id: Some(s3_id), .. })) => {
                            if let Err(e) = presigner.abort_multipart(&self.storage.full_key(&r.key), s3_id).await {
                                tracing::warn!(upload = r.upload_id, error = %e, "aborting an expired multipart upload failed");
                            }
                        }
                        (None, Some(_)) => self.discard_parts(&r).await,
                        _ => {}
                    }
                    self.save(&r).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if matches!(record.state, UploadState::Uploaded | UploadState::Ingesting) {
                self.ingest(&record.upload_id).await?;
                ingested.push(record.upload_id);
            }
        }
        Ok(ingested)
    }
}
