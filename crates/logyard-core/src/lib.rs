//! logyard-core: events, stream names, event time, schema inference and Arrow batches.
//!
//! Pure data handling with no IO: nothing here touches files, the network or the clock
//! except [`time::now_micros`]. Storage, HTTP and SQL live in the crates above this one.

pub mod alb;
pub mod batch;
pub mod encoded;
pub mod error;
pub mod event;
pub mod mask;
pub mod parse;
pub mod scan;
pub mod stream;
pub mod time;

pub use batch::{BatchBuilder, PendingEvent};
pub use error::{ErrorKind, ServiceError, error_chain};
pub use event::{CheckedLine, LineError, TimeSource};
pub use stream::{StreamName, TextFields};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(
        "invalid stream name {0:?}: use 1 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
    )]
    InvalidStreamName(String),
    #[error("stored event is not valid JSON: {0}")]
    CorruptEvent(String),
    #[error("arrow: {0}")]
    Arrow(String),
}

impl ServiceError for CoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            CoreError::InvalidStreamName(_) => ErrorKind::BadRequest,
            CoreError::CorruptEvent(_) | CoreError::Arrow(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            CoreError::InvalidStreamName(_) => "invalid_stream",
            CoreError::CorruptEvent(_) => "corrupt_event",
            CoreError::Arrow(_) => "internal",
        }
    }
}
