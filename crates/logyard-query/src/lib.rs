//! logyard-query: read-only SQL over the stream tables (Apache DataFusion), and the result
//! encodings. Knows nothing of HTTP; the server and the CLI both call [`QueryEngine`].

pub mod engine;
mod footers;
pub mod icontains;
mod narrowed;
mod null_checks;
pub mod output;
pub mod postgres;
mod protect;
mod repeated;
pub mod search;

pub use engine::{QueryEngine, QueryOptions, RunningQuery, check_datafusion_settings};
pub use logyard_core::TextFields;
pub use output::Format;
pub use search::{Cursor, SearchRequest, SearchResult};

use std::time::Duration;

use datafusion::error::DataFusionError;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Search(#[from] logyard_search::SearchError),
    #[error("no stream named {0} (or this token may not read it)")]
    NoStream(String),
    #[error("{0}")]
    ReadOnly(String),
    #[error("{0}")]
    InvalidSql(String),
    #[error("the query ran longer than its time limit of {0:?} and was stopped")]
    Timeout(Duration),
    #[error("the query needs more memory than {} allows and was stopped: {detail}", memory_limit(.limit))]
    MemoryLimit { limit: Option<usize>, detail: String },
    #[error("query failed: {0}")]
    Execution(String),
    #[error("reading tables: {0}")]
    Storage(String),
    #[error("encoding results: {0}")]
    Encode(String),
}

fn memory_limit(limit: &Option<usize>) -> String {
    match limit {
        Some(bytes) => format!("its limit of {bytes} bytes (query.memory_limit)"),
        None => "its limit (query.memory_limit)".to_owned(),
    }
}

impl logyard_core::ServiceError for QueryError {
    fn kind(&self) -> logyard_core::ErrorKind {
        use logyard_core::ErrorKind;
        match self {
            QueryError::BadRequest(_) | QueryError::ReadOnly(_) | QueryError::InvalidSql(_) => ErrorKind::BadRequest,
            QueryError::Search(e) => e.kind(),
            QueryError::NoStream(_) => ErrorKind::NotFound,
            QueryError::Timeout(_) => ErrorKind::Timeout,
            QueryError::MemoryLimit { .. } => ErrorKind::LimitExceeded,
            QueryError::Execution(_) | QueryError::Storage(_) | QueryError::Encode(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            QueryError::BadRequest(_) => "invalid_request",
            QueryError::Search(e) => e.code(),
            QueryError::NoStream(_) => "no_such_stream",
            QueryError::ReadOnly(_) => "read_only",
            QueryError::InvalidSql(_) => "invalid_sql",
            QueryError::Timeout(_) => "query_timeout",
            QueryError::MemoryLimit { .. } => "query_memory_limit",
            QueryError::Execution(_) => "query_failed",
            QueryError::Storage(_) => "storage_error",
            QueryError::Encode(_) => "encode_error",
        }
    }
}

impl From<logyard_storage::StorageError> for QueryError {
    fn from(e: logyard_storage::StorageError) -> Self {
        QueryError::Storage(e.to_string())
    }
}

impl QueryError {
    /// Sorts a DataFusion error into what the user did wrong and what went wrong inside.
    pub fn from_datafusion(e: DataFusionError) -> Self {
        let e = e.find_root().clone_shallow();
        match e {
            DataFusionError::External(inner) => match inner.downcast::<QueryError>() {
                Ok(q) => *q,
                Err(other) => QueryError::Execution(other.to_string()),
            },
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => QueryError::InvalidSql(e.strip_backtrace()),
            DataFusionError::ResourcesExhausted(m) => QueryError::MemoryLimit { limit: None, detail: m },
            other => QueryError::Execution(other.strip_backtrace()),
        }
    }
}

trait CloneShallow {
    fn clone_shallow(&self) -> DataFusionError;
}

impl CloneShallow for DataFusionError {
    /// A copy of the root error good enough for classification and messages.
    fn clone_shallow(&self) -> DataFusionError {
        match self {
            DataFusionError::ResourcesExhausted(m) => DataFusionError::ResourcesExhausted(m.clone()),
            DataFusionError::Plan(m) => DataFusionError::Plan(m.clone()),
            DataFusionError::NotImplemented(m) => DataFusionError::NotImplemented(m.clone()),
            DataFusionError::External(e) => match e.downcast_ref::<QueryError>() {
                Some(QueryError::Timeout(d)) => DataFusionError::External(Box::new(QueryError::Timeout(*d))),
                Some(QueryError::MemoryLimit { limit, detail }) => {
                    DataFusionError::External(Box::new(QueryError::MemoryLimit {
                        limit: *limit,
                        detail: detail.clone(),
                    }))
                }
                _ => DataFusionError::Execution(e.to_string()),
            },
            DataFusionError::SQL(e, _) => DataFusionError::Plan(e.to_string()),
            DataFusionError::SchemaError(e, _) => DataFusionError::Plan(e.to_string()),
            other => DataFusionError::Execution(other.strip_backtrace()),
        }
    }
}
