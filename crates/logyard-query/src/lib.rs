//! logyard-query: read-only SQL over the stream tables (Apache DataFusion), and the result
//! encodings. Knows nothing of HTTP; the server and the CLI both call [`QueryEngine`].

pub mod engine;
pub mod output;

pub use engine::{QueryEngine, QueryOptions, RunningQuery};
pub use output::Format;

use std::time::Duration;

use datafusion::error::DataFusionError;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    ReadOnly(String),
    #[error("{0}")]
    InvalidSql(String),
    #[error("the query ran longer than its time limit of {0:?} and was stopped")]
    Timeout(Duration),
    #[error("the query needs more memory than its limit allows and was stopped: {0}")]
    MemoryLimit(String),
    #[error("query failed: {0}")]
    Execution(String),
    #[error("reading tables: {0}")]
    Storage(String),
    #[error("encoding results: {0}")]
    Encode(String),
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
            DataFusionError::ResourcesExhausted(m) => QueryError::MemoryLimit(m),
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
                _ => DataFusionError::Execution(e.to_string()),
            },
            DataFusionError::SQL(e, _) => DataFusionError::Plan(e.to_string()),
            DataFusionError::SchemaError(e, _) => DataFusionError::Plan(e.to_string()),
            other => DataFusionError::Execution(other.strip_backtrace()),
        }
    }
}
