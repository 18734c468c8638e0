//! logyard-storage: the object store from a URL, stream tables (Delta Lake), and the
//! write-ahead log.
//!
//! Knows nothing of HTTP or SQL. Every S3 request goes through [`aws`]'s bridge to the AWS
//! SDK credential chain and through [`metered::MeteredStore`]'s counters.

pub mod archive;
pub mod aws;
pub mod catalog;
pub mod entry_log;
mod files;
pub mod forget;
mod head;
pub mod ids;
pub mod lease;
pub mod local_reads;
pub mod location;
pub mod maintenance;
pub mod metered;
pub mod presign;
mod segment_file;
pub mod shared_reads;
pub mod store;
pub mod tables;
pub mod wal;

pub use entry_log::EntryLog;
pub use lease::{JobLease, Turn};
pub use location::Location;
pub use metered::StoreMetrics;
pub use store::Storage;
pub use tables::{AppendOutcome, FencedOutcome, Tables};
pub use wal::{NewRecord, Wal, WalError, WalOptions, WalRecord, WalSink};

/// Every file under `dir` (tests that look at what is stored).
#[cfg(test)]
pub(crate) fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { stack.push(path) } else { files.push(path) }
        }
    }
    files
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid storage location {0:?}: {1}")]
    InvalidLocation(String, String),
    #[error("storage configuration: {0}")]
    Config(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("object store, {context}: {source}")]
    ObjectStore {
        context: &'static str,
        #[source]
        source: object_store::Error,
    },
    #[error("delta table, {context}: {source}")]
    Delta {
        context: &'static str,
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    #[error("building record batches: {0}")]
    Build(String),
}

impl logyard_core::ServiceError for StorageError {
    /// Nothing here is the caller's doing: a storage failure is internal.
    fn kind(&self) -> logyard_core::ErrorKind {
        logyard_core::ErrorKind::Internal
    }

    fn code(&self) -> &'static str {
        "storage_error"
    }
}

impl StorageError {
    /// Whether the object asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::ObjectStore { source: object_store::Error::NotFound { .. }, .. })
    }

    pub fn from_store(context: &'static str) -> impl FnOnce(object_store::Error) -> Self {
        move |source| StorageError::ObjectStore { context, source }
    }

    pub(crate) fn delta(context: &'static str) -> impl FnOnce(deltalake::DeltaTableError) -> Self {
        move |source| StorageError::Delta { context, source: Box::new(source) }
    }
}
