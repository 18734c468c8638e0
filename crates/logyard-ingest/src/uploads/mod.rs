//! Uploads: files that clients put straight into the storage (a presigned S3 PUT, or
//! `PUT /api/v1/uploads/{id}/data` on local storage), then ingest and archive.
//!
//! Life of an upload, recorded in `uploads/<id>.json`: `pending` (URL handed out) →
//! `uploaded` (the object exists with the announced size) → `ingesting` → `done` (rows
//! accepted and rejected, first errors) or `failed` (why). The object sits at
//! `incoming/<stream>/<date>/<id>/<filename>` until the bundler has put it in the archive.
//!
//! Ingest is exactly-once without the write-ahead log (the object is already durable): the
//! file is read in chunks, and chunk N is committed with the Delta transaction
//! (`upload-<id>`, N), so a restart skips the chunks already committed.

pub mod bundler;
pub mod read;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use logyard_core::StreamName;
use logyard_core::time::{self, Micros};
use logyard_storage::tables::BuildFn;
use logyard_storage::{AppendOutcome, Storage, StorageError, Tables};

pub use read::FileLineReport;
use read::{Chunk, read_upload};

use crate::build::build_batches;

/// Where upload records live.
pub const UPLOADS_DIR: &str = "uploads";
/// Where uploaded objects wait to be archived.
pub const INCOMING_DIR: &str = "incoming";

/// How an uploaded file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadFormat {
    Ndjson,
    Json,
    Text,
    Alb,
    Tar,
}

/// What a client asks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    pub stream: String,
    pub filename: String,
    pub size: u64,
    pub content_type: String,
    pub format: UploadFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadState {
    Pending,
    Uploaded,
    Ingesting,
    Done,
    Failed,
}

/// The record of one upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub upload_id: String,
    pub stream: String,
    pub filename: String,
    /// The object's key under the storage root.
    pub key: String,
    pub size: u64,
    pub content_type: String,
    pub format: UploadFormat,
    pub state: UploadState,
    /// Who asked for it (the token's name).
    pub principal: String,
    pub created_at: String,
    pub expires_at: String,
    #[serde(default)]
    pub rows: u64,
    #[serde(default)]
    pub rejected: u64,
    #[serde(default)]
    pub errors: Vec<FileLineReport>,
    /// Chunks committed so far.
    #[serde(default)]
    pub chunks: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The archive bundle that holds the original, once archived (empty when nothing
    /// arrived to archive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<String>,
    /// Local storage: SHA-256 of the capability in the data URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_token_sha256: Option<String>,
    /// A large file's multipart plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart: Option<Multipart>,
}

/// How a large file is sent: `parts` parts of `part_size` bytes (the last one shorter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Multipart {
    pub part_size: u64,
    pub parts: u32,
    /// S3's id of the multipart upload (none on local storage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_upload_id: Option<String>,
}

impl Multipart {
    fn plan(size: u64, min_part: u64) -> Self {
        // S3 allows 10,000 parts; parts are whole MiB.
        let part_size = min_part.max(size.div_ceil(10_000)).div_ceil(1 << 20) * (1 << 20);
        Multipart { part_size, parts: size.div_ceil(part_size) as u32, s3_upload_id: None }
    }

    /// Bytes of part `n` (1-based) of a file of `size` bytes.
    pub fn part_bytes(&self, size: u64, n: u32) -> u64 {
        let start = u64::from(n - 1) * self.part_size;
        (size - start).min(self.part_size)
    }
}

/// Where and how one part is sent.
#[derive(Debug, Clone, Serialize)]
pub struct PartTarget {
    pub part_number: u32,
    pub method: &'static str,
    pub url: String,
    pub size: u64,
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Where and how the client sends the bytes.
#[derive(Debug, Clone, Serialize)]
pub struct UploadTarget {
    pub method: &'static str,
    /// The URL of a single PUT; `None` for a multipart plan.
    pub url: Option<String>,
    pub headers: std::collections::BTreeMap<String, String>,
    /// A multipart plan's parts (send each, keep each answer's `ETag`, then complete with them).
    pub parts: Option<Vec<PartTarget>>,
    pub expires_at: String,
}

/// Limits and sizes.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Largest upload.
    pub max_bytes: u64,
    /// How long a presigned URL (and a pending upload) stays valid; at most 15 minutes.
    pub url_expiry: Duration,
    /// Input bytes per committed chunk.
    pub chunk_bytes: usize,
    /// Largest JSON document (format `json`), read whole.
    pub max_json_bytes: usize,
    pub max_columns: usize,
    /// Base URL of this server, for the local-storage upload URL.
    pub public_url: String,
    /// Files larger than this get a multipart plan.
    pub multipart_threshold: u64,
    /// Smallest part of a multipart plan.
    pub part_bytes: u64,
    /// A multipart upload not completed by then is aborted.
    pub multipart_expiry: Duration,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            max_bytes: 50 << 30,
            url_expiry: Duration::from_secs(15 * 60),
            chunk_bytes: 32 << 20,
            max_json_bytes: 128 << 20,
            max_columns: 1000,
            public_url: "http://127.0.0.1:8080".into(),
            multipart_threshold: 100 << 20,
            part_bytes: 16 << 20,
            multipart_expiry: Duration::from_secs(86_400),
        }
    }
}

/// Errors of uploads; the server maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Invalid(String),
    #[error("no upload {0:?}")]
    NotFound(String),
    #[error("upload {id} is {state:?}: {message}")]
    Conflict { id: String, state: UploadState, message: String },
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Precondition(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Archive(#[from] logyard_storage::archive::ArchiveError),
    #[error("{0}")]
    Internal(String),
}

/// The upload service.
#[derive(Debug, Clone)]
pub struct Uploads {
    storage: Storage,
    tables: Arc<Tables>,
    options: Arc<UploadOptions>,
    /// Uploads being ingested by this process.
    inflight: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl Uploads {
    pub fn new(tables: Arc<Tables>, options: UploadOptions) -> Self {
        let mut options = options;
        options.url_expiry = options.url_expiry.min(Duration::from_secs(15 * 60));
        Self { storage: tables.storage().clone(), tables, options: Arc::new(options), inflight: Default::default() }
    }

    pub fn options(&self) -> &UploadOptions {
        &self.options
    }

    /// Checks a request, records a pending upload, and says where to send the bytes.
    pub async fn create(
        &self,
        request: UploadRequest,
        principal: &str,
    ) -> Result<(UploadRecord, UploadTarget), UploadError> {
        let stream = StreamName::new(&request.stream).map_err(|e| UploadError::Invalid(e.to_string()))?;
        if request.size == 0 {
            return Err(UploadError::Invalid("size must be at least 1 byte".into()));
        }
        if request.size > self.options.max_bytes {
            return Err(UploadError::TooLarge(format!(
                "size {} is over the limit of {} bytes",
                request.size, self.options.max_bytes
            )));
        }
        check_content_type(&request.content_type)?;
        if request.format == UploadFormat::Alb {
            return Err(UploadError::Invalid(
                "format alb: ALB access logs are read from their bucket with `logyard import alb`".into(),
            ));
        }
        let filename = sanitize_filename(&request.filename)?;
        let now = time::now_micros();
        let id = uuid::Uuid::now_v7().simple().to_string();
        let date = time::date_string(now);
        let key = format!("{INCOMING_DIR}/{stream}/{date}/{id}/{filename}");
        let expires = now + self.options.url_expiry.as_micros() as Micros;
        let record = UploadRecord {
            upload_id: id.clone(),
            stream: stream.to_string(),
            filename,
            key: key.clone(),
            size: request.size,
            content_type: request.content_type.clone(),
            format: request.format,
            state: UploadState::Pending,
            principal: principal.to_owned(),
            created_at: time::rfc3339(now),
            expires_at: time::rfc3339(expires),
            rows: 0,
            rejected: 0,
            errors: Vec::new(),
            chunks: 0,
            failure: None,
            archived: None,
            data_token_sha256: None,
            multipart: None,
        };
        let mut record = record;
        // The length and type are signed, and so is `If-None-Match: *`: the URL writes the
        // object once; S3 answers a second PUT with 412.
        let headers = [
            ("content-length", request.size.to_string()),
            ("content-type", request.content_type.clone()),
            ("if-none-match", "*".to_owned()),
        ];
        let local_token = self.storage.presigner().is_none().then(|| {
            // No S3 to presign against: the URLs carry a capability for this upload alone.
            let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
            record.data_token_sha256 = Some(sha256_hex(&token));
            token
        });
        let target = if request.size > self.options.multipart_threshold {
            let mut plan = Multipart::plan(request.size, self.options.part_bytes);
            if let Some(presigner) = self.storage.presigner() {
                let full_key = self.storage.full_key(&key);
                plan.s3_upload_id = Some(presigner.create_multipart(&full_key, &request.content_type).await?);
            }
            // A multipart upload may take long: the record lives `multipart_expiry`, each URL
            // `url_expiry`.
            record.expires_at = time::rfc3339(now + self.options.multipart_expiry.as_micros() as Micros);
            let numbers: Vec<u32> = (1..=plan.parts).collect();
            record.multipart = Some(plan);
            let parts = self.part_targets(&record, &numbers, local_token.as_deref()).await?;
            UploadTarget {
                method: "PUT",
                url: None,
                headers: Default::default(),
                parts: Some(parts),
                expires_at: record.expires_at.clone(),
            }
        } else {
            match self.storage.presigner() {
                Some(presigner) => {
                    let signed = presigner
                        .presign("PUT", &self.storage.full_key(&key), &[], &headers, self.options.url_expiry)
                        .await?;
                    UploadTarget {
                        method: signed.method,
                        url: Some(signed.url),
                        headers: signed.headers.into_iter().collect(),
                        parts: None,
                        expires_at: record.expires_at.clone(),
                    }
                }
                None => UploadTarget {
                    method: "PUT",
                    url: Some(format!(
                        "{}/api/v1/uploads/{id}/data?token={}",
                        self.options.public_url.trim_end_matches('/'),
                        local_token.as_deref().unwrap_or_default()
                    )),
                    headers: headers.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                    parts: None,
                    expires_at: record.expires_at.clone(),
                },
            }
        };
        self.save(&record).await?;
        Ok((record, target))
    }

    /// Fresh URLs for parts of a multipart upload (they expire after `url_expiry`; a client
    /// that resumes asks again). On local storage the capability is the one given.
    pub async fn part_targets(
        &self,
        record: &UploadRecord,
        numbers: &[u32],
        local_token: Option<&str>,
    ) -> Result<Vec<PartTarget>, UploadError> {
        let plan = record.multipart.as_ref().ok_or_else(|| UploadError::Invalid("not a multipart upload".into()))?;
        let mut out = Vec::with_capacity(numbers.len());
        for &n in numbers {
            if n == 0 || n > plan.parts {
                return Err(UploadError::Invalid(format!("part {n}: parts are numbered 1 to {}", plan.parts)));
            }
            let size = plan.part_bytes(record.size, n);
            let headers = [("content-length", size.to_string())];
            let (url, headers) = match (self.storage.presigner(), &plan.s3_upload_id) {
                (Some(presigner), Some(s3_id)) => {
                    let number = n.to_string();
                    let signed = presigner
                        .presign(
                            "PUT",
                            &self.storage.full_key(&record.key),
                            &[("partNumber", &number), ("uploadId", s3_id)],
                            &headers,
                            self.options.url_expiry,
                        )
                        .await?;
                    (signed.url, signed.headers)
                }
                _ => (
                    format!(
                        "{}/api/v1/uploads/{}/parts/{n}?token={}",
                        self.options.public_url.trim_end_matches('/'),
                        record.upload_id,
                        local_token.unwrap_or_default()
                    ),
                    headers.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
                ),
            };
            out.push(PartTarget { part_number: n, method: "PUT", url, size, headers: headers.into_iter().collect() });
        }
        Ok(out)
    }

    /// Fresh part URLs for a client resuming a multipart upload (on local storage it proves
    /// the capability of the first URLs).
    pub async fn resume_parts(
        &self,
        id: &str,
        numbers: &[u32],
        token: Option<&str>,
    ) -> Result<Vec<PartTarget>, UploadError> {
        let record = self.status(id).await?;
        if self.storage.presigner().is_none() {
            self.check_capability(&record, token.unwrap_or_default())?;
        } else if record.state != UploadState::Pending || expired(&record) {
            return Err(UploadError::Conflict {
                id: id.into(),
                state: record.state,
                message: "it can no longer receive parts".into(),
            });
        }
        self.part_targets(&record, numbers, token).await
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
        self.storage
            .root_store()
            .put(&self.storage.path(&part_key(&record.key, n)), PutPayload::from_bytes(body))
            .await
            .map_err(StorageError::from_store("writing an upload part"))?;
        Ok(etag)
    }

    fn check_capability(&self, record: &UploadRecord, token: &str) -> Result<(), UploadError> {
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

    /// Puts a multipart upload's parts together: on S3 from the parts' ETags, on local
    /// storage by joining the part objects in order.
    async fn assemble(&self, record: &UploadRecord, parts: &[(u32, String)]) -> Result<(), UploadError> {
        let Some(plan) = &record.multipart else { return Ok(()) };
        match (self.storage.presigner(), &plan.s3_upload_id) {
            (Some(presigner), Some(s3_id)) => {
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
            _ => {
                let store = self.storage.root_store();
                let upload = store
                    .put_multipart(&self.storage.path(&record.key))
                    .await
                    .map_err(StorageError::from_store("joining upload parts"))?;
                let mut writer = object_store::WriteMultipart::new(upload);
                for n in 1..=plan.parts {
                    let part = match store.get(&self.storage.path(&part_key(&record.key, n))).await {
                        Ok(p) => p.bytes().await.map_err(StorageError::from_store("reading an upload part"))?,
                        Err(object_store::Error::NotFound { .. }) => {
                            let _ = writer.abort().await;
                            return Err(UploadError::Conflict {
                                id: record.upload_id.clone(),
                                state: record.state,
                                message: format!("part {n} was not uploaded yet"),
                            });
                        }
                        Err(e) => return Err(StorageError::from_store("reading an upload part")(e).into()),
                    };
                    writer.put(part);
                }
                writer.finish().await.map_err(StorageError::from_store("joining upload parts"))?;
                for n in 1..=plan.parts {
                    let _ = store.delete(&self.storage.path(&part_key(&record.key, n))).await;
                }
                if let logyard_storage::Location::Local(root) = self.storage.location() {
                    let _ = std::fs::remove_dir(root.join(format!("{}.parts", record.key)));
                }
            }
        }
        Ok(())
    }

    /// The record of an upload.
    pub async fn status(&self, id: &str) -> Result<UploadRecord, UploadError> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(UploadError::NotFound(id.into()));
        }
        match self.storage.get(&record_key(id)).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| UploadError::Internal(format!("the record of upload {id} is damaged: {e}"))),
            Err(StorageError::ObjectStore { source: object_store::Error::NotFound { .. }, .. }) => {
                Err(UploadError::NotFound(id.into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn save(&self, record: &UploadRecord) -> Result<(), UploadError> {
        let body = serde_json::to_vec_pretty(record).expect("a record serializes");
        self.storage
            .root_store()
            .put(&self.storage.path(&record_key(&record.upload_id)), PutPayload::from(body))
            .await
            .map_err(StorageError::from_store("writing an upload record"))?;
        Ok(())
    }

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
            writer.put(chunk);
        }
        if received != record.size {
            let _ = writer.abort().await;
            return Err(UploadError::Invalid(format!("the body has {received} bytes; {} were announced", record.size)));
        }
        writer.finish().await.map_err(StorageError::from_store("writing uploaded data"))?;
        Ok(())
    }

    /// Checks that the object is there with the announced size and marks it uploaded; the
    /// caller then runs [`Uploads::ingest`].
    pub async fn complete(&self, id: &str, parts: &[(u32, String)]) -> Result<UploadRecord, UploadError> {
        let mut record = self.status(id).await?;
        match record.state {
            UploadState::Pending => {}
            // Completing twice is harmless: the first one's outcome is reported.
            _ => return Ok(record),
        }
        self.assemble(&record, parts).await?;
        let meta = match self.storage.root_store().head(&self.storage.path(&record.key)).await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(UploadError::Conflict {
                    id: id.into(),
                    state: record.state,
                    message: "nothing was uploaded yet: PUT the file to the URL first".into(),
                });
            }
            Err(e) => return Err(StorageError::from_store("checking the uploaded object")(e).into()),
        };
        if meta.size != record.size {
            record.state = UploadState::Failed;
            record.failure = Some(format!("{} bytes were uploaded; {} were announced", meta.size, record.size));
            self.save(&record).await?;
            return Ok(record);
        }
        record.state = UploadState::Uploaded;
        self.save(&record).await?;
        Ok(record)
    }

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
        let object = self
            .storage
            .root_store()
            .get(&self.storage.path(&record.key))
            .await
            .map_err(StorageError::from_store("reading the uploaded object"))?;
        let reader = tokio_util::io::StreamReader::new(futures::TryStreamExt::map_err(
            object.into_stream(),
            std::io::Error::other,
        ));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(2);
        let format = record.format;
        let received = time::parse_time_str(&record.created_at).unwrap_or_else(time::now_micros);
        let (chunk_bytes, max_json) = (self.options.chunk_bytes, self.options.max_json_bytes);
        let reading = tokio::task::spawn_blocking(move || {
            let input = tokio_util::io::SyncIoBridge::new(reader);
            read_upload(input, format, received, chunk_bytes, max_json, &mut |chunk| {
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
            Ok(Err(e)) => Err(UploadError::Invalid(e.to_string())),
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
                    if let (Some(presigner), Some(Multipart { s3_upload_id: Some(s3_id), .. })) =
                        (self.storage.presigner(), &r.multipart)
                        && let Err(e) = presigner.abort_multipart(&self.storage.full_key(&r.key), s3_id).await
                    {
                        tracing::warn!(upload = r.upload_id, error = %e, "aborting an expired multipart upload failed");
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

    /// Every upload record.
    pub async fn records(&self) -> Result<Vec<UploadRecord>, UploadError> {
        use futures::TryStreamExt;
        let objects: Vec<_> = self
            .storage
            .root_store()
            .list(Some(&self.storage.path(UPLOADS_DIR)))
            .try_collect()
            .await
            .map_err(StorageError::from_store("listing uploads"))?;
        let mut out = Vec::new();
        for o in objects {
            let Some(id) = o.location.filename().and_then(|f| f.strip_suffix(".json")) else { continue };
            match self.status(id).await {
                Ok(r) => out.push(r),
                Err(UploadError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub(crate) fn storage(&self) -> &Storage {
        &self.storage
    }

    pub(crate) async fn save_record(&self, record: &UploadRecord) -> Result<(), UploadError> {
        self.save(record).await
    }
}

fn sha256_hex(text: &str) -> String {
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

fn record_key(id: &str) -> String {
    format!("{UPLOADS_DIR}/{id}.json")
}

fn expired(record: &UploadRecord) -> bool {
    time::parse_time_str(&record.expires_at).is_some_and(|t| t < time::now_micros())
}

/// A media type `type/subtype` with optional parameters, in the characters HTTP allows.
fn check_content_type(value: &str) -> Result<(), UploadError> {
    let essence = value.split(';').next().unwrap_or("").trim();
    let token = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c));
    let valid = value.len() <= 200
        && value.chars().all(|c| c.is_ascii() && !c.is_ascii_control())
        && essence.split_once('/').is_some_and(|(t, s)| token(t) && token(s));
    if valid { Ok(()) } else { Err(UploadError::Invalid(format!("content_type {value:?} is not a media type"))) }
}

/// The last path component, in characters that are safe in keys and archives.
fn sanitize_filename(name: &str) -> Result<String, UploadError> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).take(200).collect();
    let cleaned = cleaned.trim_start_matches('.').to_owned();
    if cleaned.is_empty() {
        return Err(UploadError::Invalid(format!("filename {name:?} has no usable characters")));
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_are_reduced_to_safe_characters() {
        assert_eq!(sanitize_filename("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(sanitize_filename("C:\\logs\\app 1.log").unwrap(), "app_1.log");
        assert_eq!(sanitize_filename(".hidden").unwrap(), "hidden");
        assert_eq!(sanitize_filename("été.ndjson").unwrap(), "_t_.ndjson");
        assert!(sanitize_filename("../").is_err());
    }

    #[test]
    fn content_types_are_checked() {
        for ok in ["application/x-ndjson", "text/plain; charset=utf-8", "application/gzip"] {
            assert!(check_content_type(ok).is_ok(), "{ok}");
        }
        for bad in ["", "text", "text/", "a/b\r\nx: y", "tëxt/plain"] {
            assert!(check_content_type(bad).is_err(), "{bad}");
        }
    }
}
