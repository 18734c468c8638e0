//! Upload records and their state machine: the types clients and the server see, the
//! [`Uploads`] service, reading and saving `uploads/<id>.json`, and `complete` (pending →
//! uploaded, or failed on a wrong size). Knows nothing of presigning, of the local stand-in's
//! capability or of reading an object's contents.

use std::sync::Arc;
use std::time::Duration;

use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use logyard_core::time;
use logyard_storage::{Storage, StorageError, Tables};

use super::plan::Multipart;
use super::read::FileLineReport;

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
    /// What is masked in each stream's events before they are committed.
    pub masking: std::sync::Arc<logyard_core::mask::Masking>,
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
            masking: Default::default(),
        }
    }
}

/// Errors of uploads; the server maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Invalid(String),
    /// The uploaded file cannot be read (a damaged compression or archive).
    #[error("reading the upload: {0}")]
    Unreadable(#[from] std::io::Error),
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

impl logyard_core::ServiceError for UploadError {
    fn kind(&self) -> logyard_core::ErrorKind {
        use logyard_core::ErrorKind;
        match self {
            UploadError::Invalid(_) | UploadError::Unreadable(_) => ErrorKind::BadRequest,
            UploadError::NotFound(_) => ErrorKind::NotFound,
            UploadError::Conflict { .. } => ErrorKind::Conflict,
            UploadError::TooLarge(_) => ErrorKind::TooLarge,
            UploadError::Forbidden(_) => ErrorKind::Forbidden,
            UploadError::Precondition(_) => ErrorKind::PreconditionFailed,
            UploadError::Storage(e) => e.kind(),
            UploadError::Archive(e) => e.kind(),
            UploadError::Internal(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            UploadError::Invalid(_) | UploadError::Unreadable(_) => "invalid_upload",
            UploadError::NotFound(_) => "not_found",
            UploadError::Conflict { .. } => "upload_state",
            UploadError::TooLarge(_) => "payload_too_large",
            UploadError::Forbidden(_) => "forbidden",
            UploadError::Precondition(_) => "precondition_failed",
            UploadError::Storage(e) => e.code(),
            UploadError::Archive(_) | UploadError::Internal(_) => "upload_failed",
        }
    }
}

/// The upload service.
#[derive(Debug, Clone)]
pub struct Uploads {
    pub(super) storage: Storage,
    pub(super) tables: Arc<Tables>,
    pub(super) options: Arc<UploadOptions>,
    /// Uploads being ingested by this process.
    pub(super) inflight: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
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

    pub(super) async fn save(&self, record: &UploadRecord) -> Result<(), UploadError> {
        let body = serde_json::to_vec_pretty(record).expect("a record serializes");
        self.storage
            .root_store()
            .put(&self.storage.path(&record_key(&record.upload_id)), PutPayload::from(body))
            .await
            .map_err(StorageError::from_store("writing an upload record"))?;
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

pub(super) fn record_key(id: &str) -> String {
    format!("{UPLOADS_DIR}/{id}.json")
}

pub(super) fn expired(record: &UploadRecord) -> bool {
    time::parse_time_str(&record.expires_at).is_some_and(|t| t < time::now_micros())
}
