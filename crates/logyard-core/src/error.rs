//! What kind of failure an error is. Every library error implements [`ServiceError`]: it
//! knows its [`ErrorKind`] and a short stable code, and the edges decide from those alone —
//! the server maps kinds to HTTP statuses (and gRPC codes) in one place, the binary to exit
//! messages. A failure the caller did not cause is [`ErrorKind::Internal`] or
//! [`ErrorKind::Unavailable`], never a client error.

/// The kinds of failure, as a caller sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is wrong and the caller can fix it.
    BadRequest,
    /// No valid credentials.
    Unauthorized,
    /// Valid credentials without the right to do this.
    Forbidden,
    NotFound,
    /// The thing is in a state that does not allow this now.
    Conflict,
    /// A condition the caller set does not hold (a second write of a write-once object).
    PreconditionFailed,
    /// The request is larger than a limit.
    TooLarge,
    /// A content type or encoding that is not understood.
    UnsupportedMediaType,
    /// Understood, but it needs more than a limit allows (a query's memory).
    LimitExceeded,
    /// The caller sends too fast; retry later.
    TooManyRequests,
    /// Something failed inside; not the caller's doing.
    Internal,
    /// Not possible right now (overload, backpressure, shutdown); retry later.
    Unavailable,
    /// The work did not finish within its time limit.
    Timeout,
}

/// An error that knows what kind of failure it is.
pub trait ServiceError: std::error::Error + Send + Sync + 'static {
    /// Decides the status at every edge.
    fn kind(&self) -> ErrorKind;
    /// A short stable name clients can match on, e.g. `query_timeout`.
    fn code(&self) -> &'static str;
    /// Seconds after which a retry may succeed (for `TooManyRequests` and `Unavailable`).
    fn retry_after(&self) -> Option<u64> {
        None
    }
}

/// The error and its sources on one line (libraries nest the useful part).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_source_once() {
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(error_chain(&e), "outer: disk full");
    }
}
