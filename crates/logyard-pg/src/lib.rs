//! logyard-pg: the shop's PostgreSQL (RDS) database as SQL tables beside the logs.
//!
//! [`client`] connects the RDS way — TLS `verify-full` against a CA bundle, the password from
//! a file, a value the program read, a Secrets Manager secret (re-read when authentication
//! fails: rotation) or an IAM authentication token ([`credentials`]) — and runs read-only
//! statements from a small pool, with a statement timeout, retries on transient errors and a
//! span per statement. [`provider`] shows configured tables to DataFusion as `pg.<table>`,
//! pushing projections, filters and limits down as parameterized SQL ([`sql`]).

#![recursion_limit = "256"]

pub mod client;
pub mod credentials;
pub mod provider;
pub mod sql;

pub use client::{Pg, PgSettings, SslMode};
pub use credentials::{Password, PasswordSource};
pub use provider::PgSchema;

use std::time::Duration;

/// Errors of the orders database. None of them carries a password or token.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("orders database settings: {0}")]
    Config(String),
    #[error("cannot connect to the orders database at {target}: {message}")]
    Connect { target: String, message: String },
    #[error("TLS to the orders database at {target} failed: {message}")]
    Tls { target: String, message: String },
    #[error("the orders database at {target} refused user {user:?}: {message}")]
    Auth { target: String, user: String, message: String },
    #[error("orders database: {0}")]
    Query(String),
    #[error("orders database: no connection within {0:?}")]
    Timeout(Duration),
    #[error("reading the database secret {secret_id:?}: {message}")]
    Secret { secret_id: String, message: String },
    #[error("making an RDS IAM authentication token: {0}")]
    IamToken(String),
}

impl logyard_core::ServiceError for PgError {
    fn kind(&self) -> logyard_core::ErrorKind {
        use logyard_core::ErrorKind;
        match self {
            PgError::Connect { .. } | PgError::Tls { .. } | PgError::Timeout(_) => ErrorKind::Unavailable,
            PgError::Config(_)
            | PgError::Auth { .. }
            | PgError::Query(_)
            | PgError::Secret { .. }
            | PgError::IamToken(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        "orders_database"
    }
}
