//! Reports in storage: `reports/daily/date=YYYY-MM-DD/` holds `report.html`, `report.json`,
//! a CSV per table, and `manifest.json`, written last.
//!
//! A report exists only once its manifest does: the listing shows only reports with one, and
//! a file is served only when its SHA-256 matches the manifest. Writing a report again first
//! deletes the manifest, so a report being rewritten (or one whose job died midway) is not
//! visible at all.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use logyard_storage::StorageError;
use logyard_storage::store::Storage;

use crate::DailyReport;

pub const REPORTS_DIR: &str = "reports";
const MANIFEST: &str = "manifest.json";

/// What a finished report holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `daily`.
    pub kind: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    pub generated_at: String,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("no {kind} report for {date}")]
    NotFound { kind: String, date: String },
    #[error("the {kind} report for {date} has no file {name:?}")]
    NoFile { kind: String, date: String, name: String },
    #[error("the {kind} report for {date} is being rewritten; try again")]
    Changed { kind: String, date: String },
    #[error("the manifest of the {kind} report for {date} is not valid: {message}")]
    BadManifest { kind: String, date: String, message: String },
}

impl logyard_core::ServiceError for StoreError {
    fn kind(&self) -> logyard_core::ErrorKind {
        use logyard_core::ErrorKind;
        match self {
            StoreError::Storage(e) => e.kind(),
            StoreError::NotFound { .. } | StoreError::NoFile { .. } => ErrorKind::NotFound,
            StoreError::Changed { .. } => ErrorKind::Unavailable,
            StoreError::BadManifest { .. } => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            StoreError::Storage(e) => e.code(),
            StoreError::NotFound { .. } | StoreError::NoFile { .. } => "not_found",
            StoreError::Changed { .. } => "report_changing",
            StoreError::BadManifest { .. } => "bad_report",
        }
    }

    fn retry_after(&self) -> Option<u64> {
        matches!(self, StoreError::Changed { .. }).then_some(5)
    }
}

/// Reports under a storage root.
#[derive(Debug, Clone)]
pub struct ReportStore {
    storage: Storage,
}

fn dir(kind: &str, date: &str) -> String {
    format!("{REPORTS_DIR}/{kind}/date={date}")
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl ReportStore {
    pub fn new(storage: Storage) -> Self {
        Self { storage }
    }

    /// Writes a daily report: its HTML, JSON and CSV files, then the manifest.
    pub async fn write_daily(&self, report: &DailyReport) -> Result<Manifest, StoreError> {
        let mut files: Vec<(String, Vec<u8>)> = vec![
            ("report.html".into(), crate::html::render(report).into_bytes()),
            ("report.json".into(), serde_json::to_vec_pretty(report).expect("a report serializes")),
        ];
        files.extend(crate::csv::tables(report));
        self.write("daily", &report.date, &report.generated_at, files).await
    }

    async fn write(
        &self,
        kind: &str,
        date: &str,
        generated_at: &str,
        files: Vec<(String, Vec<u8>)>,
    ) -> Result<Manifest, StoreError> {
        let store = self.storage.root_store();
        let dir = dir(kind, date);
        let manifest_path = self.storage.path(&format!("{dir}/{MANIFEST}"));
        match store.delete(&manifest_path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(StorageError::from_store("deleting a report manifest")(e).into()),
        }
        let mut entries = Vec::with_capacity(files.len());
        for (name, data) in files {
            entries.push(FileEntry { name: name.clone(), bytes: data.len() as u64, sha256: hex_sha256(&data) });
            store
                .put(&self.storage.path(&format!("{dir}/{name}")), PutPayload::from(data))
                .await
                .map_err(StorageError::from_store("writing a report file"))?;
        }
        let manifest =
            Manifest { kind: kind.into(), date: date.into(), generated_at: generated_at.into(), files: entries };
        store
            .put(&manifest_path, PutPayload::from(serde_json::to_vec_pretty(&manifest).expect("serializes")))
            .await
            .map_err(StorageError::from_store("writing a report manifest"))?;
        Ok(manifest)
    }

    /// Finished reports, newest date first.
    pub async fn list(&self) -> Result<Vec<Manifest>, StoreError> {
        let prefix = self.storage.path(REPORTS_DIR);
        let objects: Vec<_> = self
            .storage
            .root_store()
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(StorageError::from_store("listing reports"))?;
        let mut out = Vec::new();
        for o in objects.iter().filter(|o| o.location.filename() == Some(MANIFEST)) {
            let parts: Vec<String> = o.location.parts().map(|p| p.as_ref().to_owned()).collect();
            let [.., kind, date, _] = &parts[..] else { continue };
            let Some(date) = date.strip_prefix("date=") else { continue };
            match self.manifest(kind, date).await {
                Ok(m) => out.push(m),
                Err(e) => tracing::warn!(error = %e, "skipping a report"),
            }
        }
        out.sort_by(|a, b| (&b.date, &a.kind).cmp(&(&a.date, &b.kind)));
        Ok(out)
    }

    /// The manifest of a finished report.
    pub async fn manifest(&self, kind: &str, date: &str) -> Result<Manifest, StoreError> {
        let key = format!("{}/{MANIFEST}", dir(kind, date));
        let bytes = match self.storage.get(&key).await {
            Ok(b) => b,
            Err(StorageError::ObjectStore { source: object_store::Error::NotFound { .. }, .. }) => {
                return Err(StoreError::NotFound { kind: kind.into(), date: date.into() });
            }
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes).map_err(|e| StoreError::BadManifest {
            kind: kind.into(),
            date: date.into(),
            message: e.to_string(),
        })
    }

    /// One file of a finished report, checked against its manifest.
    pub async fn file(&self, kind: &str, date: &str, name: &str) -> Result<Bytes, StoreError> {
        let manifest = self.manifest(kind, date).await?;
        let entry = manifest.files.iter().find(|f| f.name == name).ok_or_else(|| StoreError::NoFile {
            kind: kind.into(),
            date: date.into(),
            name: name.into(),
        })?;
        let data = match self.storage.get(&format!("{}/{name}", dir(kind, date))).await {
            Ok(d) => d,
            Err(StorageError::ObjectStore { source: object_store::Error::NotFound { .. }, .. }) => {
                return Err(StoreError::Changed { kind: kind.into(), date: date.into() });
            }
            Err(e) => return Err(e.into()),
        };
        if hex_sha256(&data) != entry.sha256 {
            return Err(StoreError::Changed { kind: kind.into(), date: date.into() });
        }
        Ok(data)
    }
}
