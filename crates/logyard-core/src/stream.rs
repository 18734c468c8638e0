//! Stream names: the one place that decides what a stream may be called.

use std::collections::BTreeMap;
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

    /// A stream name made of another system's name (a service, an app label): lower case,
    /// other characters as `-`, leading `-` and `_` dropped, cut at the longest length.
    /// `Checkout.API` becomes `checkout-api`; `None` when nothing is left.
    pub fn from_foreign(value: &str) -> Option<Self> {
        let name: String = value
            .trim()
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' { c } else { '-' })
            .collect();
        let name = name.trim_start_matches(['-', '_']);
        Self::new(&name[..name.len().min(Self::MAX_LEN)]).ok()
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

/// Which fields of a stream hold its free text: where searches look for words and phrases,
/// and what the text index of a table covers.
#[derive(Debug, Clone)]
pub struct TextFields {
    /// For every stream not named in `streams`.
    pub default: Vec<String>,
    pub streams: BTreeMap<String, Vec<String>>,
}

impl Default for TextFields {
    fn default() -> Self {
        Self { default: vec!["message".into()], streams: BTreeMap::new() }
    }
}

impl TextFields {
    /// The text fields of `stream`.
    pub fn of(&self, stream: &StreamName) -> &[String] {
        self.streams.get(stream.as_str()).unwrap_or(&self.default)
    }
}

/// A stream name or a glob of them (`*` and `?`).
pub fn is_stream_pattern(p: &str) -> bool {
    !p.is_empty() && p.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "_-*?".contains(ch))
}

/// `*` matches any run of characters, `?` any one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        // A `*` in the pattern is always a wildcard, even against a `*` in the name.
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_names_are_made_stream_names() {
        let f = |s: &str| StreamName::from_foreign(s).map(|n| n.to_string());
        assert_eq!(f("Checkout.API").as_deref(), Some("checkout-api"));
        assert_eq!(f("  _web shop ").as_deref(), Some("web-shop"));
        assert_eq!(f(&"x".repeat(100)).unwrap().len(), 63);
        assert_eq!(f("..."), None);
        assert_eq!(f("ünï").as_deref(), Some("n-"), "non-ASCII becomes dashes");
    }

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
