//! Stream names: the one place that decides what a stream may be called.

use std::fmt;

use crate::CoreError;

/// A validated stream name: `^[a-z0-9][a-z0-9_-]{0,62}$`.
///
/// Stream names become table names in SQL and path segments in the object store, so the
/// alphabet is deliberately small: no dots, slashes, upper case or spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName(String);

impl StreamName {
    pub const MAX_LEN: usize = 63;

    pub fn new(name: &str) -> Result<Self, CoreError> {
        if Self::is_valid(name) {
            Ok(Self(name.to_owned()))
        } else {
            Err(CoreError::InvalidStreamName(name.chars().take(80).collect()))
        }
    }

    pub fn is_valid(name: &str) -> bool {
        let bytes = name.as_bytes();
        let Some(first) = bytes.first() else {
            return false;
        };
        bytes.len() <= Self::MAX_LEN
            && (first.is_ascii_lowercase() || first.is_ascii_digit())
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for StreamName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["a", "storefront", "app-1", "alb_logs", "0", &"a".repeat(63)] {
            assert!(StreamName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in ["", "-a", "_a", "Store", "a.b", "a/b", "a b", "ä", &"a".repeat(64), ".."] {
            let err = StreamName::new(bad).unwrap_err();
            assert!(err.to_string().contains("invalid stream name"), "{err}");
        }
    }
}
