//! logyard-search: the search language people type in the console, the CLI (`logyard search`),
//! live tail filters and alert rules, and its translation to the SQL that DataFusion runs.
//!
//! ```text
//! status:>=500 checkout                 free text AND a comparison (implicit AND)
//! "payment declined" -level:debug        a phrase, a negated field match
//! http.method:POST AND (route:/api/* OR status:404)
//! NOT order_id:*                         events without an order id
//! ```
//!
//! - A word or a `"quoted phrase"` matches the stream's text fields (`message` and those its
//!   configuration names), case-insensitively, anywhere in the text.
//! - `field:value` matches a field exactly (`*` in a bare value is a wildcard: `route:/api/*`);
//!   `field:>=500`, `:>`, `:<`, `:<=` compare; `field:*` means the field is present. Nested
//!   fields are named with dots (`http.method`), as ingest flattens them.
//! - `-term` and `NOT term` negate (an event without the field matches `-field:value`);
//!   `AND` binds tighter than `OR`; parentheses group; terms side by side are ANDed. The
//!   operators are upper case: `and`, `or` and `not` are words.
//! - A backslash escapes the next character in a bare word (`path:a\:b`, `\*`) and in a
//!   quoted one (`\"`, `\\`).
//!
//! [`Matcher`] answers the same question for one event in memory (the live tail).
//!
//! Pure: no IO, no knowledge of tables beyond the [`Fields`] a caller describes. Values and
//! field names reach SQL only as quoted literals and quoted identifiers; nothing typed becomes
//! SQL syntax. Errors name the character position they were found at.

mod matcher;
mod parse;
mod sql;

pub use matcher::{Leaves, Matcher};
pub use parse::{Expr, Op, Part, Pattern, parse};
pub use sql::{FieldKind, Fields, ident, to_sql};

use logyard_core::{ErrorKind, ServiceError};

/// A search that cannot be read or cannot run against the chosen streams.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("search: {message} (at character {at})")]
pub struct SearchError {
    /// Where in the search text (in characters, from 0) the problem was found.
    pub at: usize,
    pub message: String,
}

impl SearchError {
    pub(crate) fn new(at: usize, message: impl Into<String>) -> Self {
        Self { at, message: message.into() }
    }
}

impl ServiceError for SearchError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::BadRequest
    }
    fn code(&self) -> &'static str {
        "bad_search"
    }
}
