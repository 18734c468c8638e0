//! logyard-auth: who a caller is and what it may do. Bearer tokens with scopes and stream
//! globs, and the client address behind trusted proxies ([`forwarded`]). No IO, no HTTP
//! types: the server hands it header values.
//!
//! Tokens are configured by the SHA-256 of their secret, never in clear. A presented token
//! is hashed and compared with every configured hash in constant time. Each token has
//! scopes (`ingest`, `query`, `admin`) and, optionally, the streams it is limited to (exact
//! names or globs with `*` and `?`), and the columns it may not read or reads masked
//! ([`fields`]).

pub mod fields;
pub mod forwarded;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use fields::{FieldAccess, FieldRules};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Ingest,
    Query,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Query => "query",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "ingest" => Ok(Scope::Ingest),
            "query" => Ok(Scope::Query),
            "admin" => Ok(Scope::Admin),
            other => Err(format!("unknown scope {other:?}: use ingest, query or admin")),
        }
    }
}

/// One configured token.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A name for logs and the audit trail.
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub sha256: String,
    pub scopes: Vec<Scope>,
    /// Streams the token is limited to (names or globs); absent = every stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<Vec<String>>,
    /// Columns the token may not read (`email`, `user.email`: see [`fields`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_fields: Vec<String>,
    /// Columns the token reads as keyed hashes of their values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mask_fields: Vec<String>,
}

/// The caller a request was authenticated as.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    scopes: Vec<Scope>,
    streams: Option<Vec<String>>,
    fields: Arc<FieldRules>,
}

impl Principal {
    /// The principal of a server running without tokens (`--insecure-no-auth` or loopback).
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            scopes: vec![Scope::Ingest, Scope::Query, Scope::Admin],
            streams: None,
            fields: Arc::default(),
        }
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// The stream patterns the token is limited to; `None` for every stream.
    pub fn streams(&self) -> Option<&[String]> {
        self.streams.as_deref()
    }

    /// Whether the token may touch `stream` at all.
    pub fn may_see(&self, stream: &str) -> bool {
        match &self.streams {
            None => true,
            Some(patterns) => patterns.iter().any(|p| glob_match(p, stream)),
        }
    }

    /// The columns the token may not read, or reads masked.
    pub fn fields(&self) -> &FieldRules {
        &self.fields
    }
}

/// Why a request was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Malformed,
    Unknown,
}

impl AuthFailure {
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::Unknown => "unknown",
        }
    }
}

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Arc<Vec<([u8; 32], Principal)>>,
}

impl Tokens {
    pub fn new(configs: &[TokenConfig]) -> Result<Self, String> {
        let mut entries = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let bytes = hex::decode(c.sha256.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| format!("token {:?} (entry {}): sha256 must be 64 hex digits", c.name, i + 1))?;
            if c.scopes.is_empty() {
                return Err(format!("token {:?}: give it at least one scope", c.name));
            }
            if let Some(streams) = &c.streams {
                for p in streams {
                    if !is_stream_pattern(p) {
                        return Err(format!("token {:?}: {p:?} is not a stream name or glob", c.name));
                    }
                }
            }
            let fields =
                FieldRules::new(&c.deny_fields, &c.mask_fields).map_err(|e| format!("token {:?}: {e}", c.name))?;
            entries.push((
                bytes,
                Principal {
                    name: c.name.clone(),
                    scopes: c.scopes.clone(),
                    streams: c.streams.clone(),
                    fields: Arc::new(fields),
                },
            ));
        }
        Ok(Self { entries: Arc::new(entries) })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether some token reads columns masked (which needs the masking key).
    pub fn masks_fields(&self) -> bool {
        self.entries.iter().any(|(_, p)| !p.fields.masked().is_empty())
    }

    /// Authenticates an `Authorization` header value: `Bearer <token>`, `ApiKey <token>`
    /// (as Elasticsearch clients send an API key), or `Basic` with the token as the password
    /// (for shippers that only speak basic authentication; the user name is not checked).
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Principal, AuthFailure> {
        let value = authorization.ok_or(AuthFailure::Missing)?;
        let token = credential(value).ok_or(AuthFailure::Malformed)?;
        self.check_secret(&token).ok_or(AuthFailure::Unknown)
    }

    /// Finds the token whose hash matches `secret`, comparing with every entry.
    pub fn check_secret(&self, secret: &[u8]) -> Option<Principal> {
        let digest: [u8; 32] = Sha256::digest(secret).into();
        let mut found = None;
        for (hash, principal) in self.entries.iter() {
            if bool::from(hash.ct_eq(&digest)) {
                found = Some(principal.clone());
            }
        }
        found
    }
}

/// The secret an `Authorization` header carries.
fn credential(value: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    let (scheme, rest) = value.split_at(value.iter().position(|b| *b == b' ')?);
    let rest = rest.trim_ascii();
    if rest.is_empty() || rest.contains(&b' ') {
        return None;
    }
    match scheme.to_ascii_lowercase().as_slice() {
        b"bearer" | b"apikey" => Some(rest.to_vec()),
        b"basic" => {
            let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
            let colon = decoded.iter().position(|b| *b == b':')?;
            let password = &decoded[colon + 1..];
            (!password.is_empty()).then(|| password.to_vec())
        }
        _ => None,
    }
}

pub use logyard_core::stream::{glob_match, is_stream_pattern};

/// The configured tokens, replaceable while the server runs (the tokens file is reloaded
/// when it changes).
#[derive(Debug, Clone, Default)]
pub struct TokenStore(Arc<std::sync::RwLock<Tokens>>);

impl TokenStore {
    pub fn new(tokens: Tokens) -> Self {
        Self(Arc::new(std::sync::RwLock::new(tokens)))
    }

    pub fn current(&self) -> Tokens {
        self.0.read().expect("token store lock").clone()
    }

    pub fn replace(&self, tokens: Tokens) {
        *self.0.write().expect("token store lock") = tokens;
    }
}

/// A new random secret: `lyt_` and 43 characters of URL-safe base64 (256 bits).
pub fn new_secret(random: [u8; 32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::from("lyt_");
    let mut bits = 0u32;
    let mut acc = 0u32;
    for b in random {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

/// Hex SHA-256 of a secret, as configured.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(&[
            TokenConfig {
                name: "shipper".into(),
                sha256: hash_secret("s3cret-ingest"),
                scopes: vec![Scope::Ingest],
                streams: Some(vec!["storefront".into(), "app-*".into()]),
                ..Default::default()
            },
            TokenConfig {
                name: "analyst".into(),
                sha256: hash_secret("s3cret-query"),
                scopes: vec![Scope::Query],
                streams: None,
                deny_fields: vec!["email".into()],
                mask_fields: vec!["customer_id".into()],
            },
        ])
        .unwrap()
    }

    #[test]
    fn authenticates_by_hash_and_limits_scopes_and_streams() {
        let t = tokens();
        let p = t.authenticate(Some(b"Bearer s3cret-ingest")).unwrap();
        assert_eq!(p.name, "shipper");
        assert!(p.has(Scope::Ingest) && !p.has(Scope::Query));
        assert!(p.may_see("storefront") && p.may_see("app-web") && !p.may_see("alb"));
        let q = t.authenticate(Some(b"Bearer s3cret-query")).unwrap();
        assert!(q.may_see("anything"));
        assert_eq!(q.fields().access("email"), FieldAccess::Denied);
        assert_eq!(q.fields().access("customer_id"), FieldAccess::Masked);
        assert!(p.fields().is_empty() && t.masks_fields());
        assert_eq!(t.authenticate(None).unwrap_err(), AuthFailure::Missing);
        assert_eq!(t.authenticate(Some(b"Basic abc")).unwrap_err(), AuthFailure::Malformed);
        // Elasticsearch clients' API keys, and basic authentication with the token as password.
        assert_eq!(t.authenticate(Some(b"ApiKey s3cret-query")).unwrap().name, q.name);
        let basic = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "fluent-bit:s3cret-ingest")
        );
        assert_eq!(t.authenticate(Some(basic.as_bytes())).unwrap().name, p.name);
        let no_password =
            format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "user:"));
        assert_eq!(t.authenticate(Some(no_password.as_bytes())).unwrap_err(), AuthFailure::Malformed);
        assert_eq!(t.authenticate(Some(b"Digest x")).unwrap_err(), AuthFailure::Malformed);
        assert_eq!(t.authenticate(Some(b"Bearer wrong")).unwrap_err(), AuthFailure::Unknown);
    }

    #[test]
    fn secrets_are_long_and_distinct() {
        let a = new_secret([1; 32]);
        let b = new_secret([2; 32]);
        assert!(a.starts_with("lyt_") && a.len() == 4 + 43, "{a}");
        assert_ne!(a, b);
        let t = Tokens::new(&[TokenConfig {
            name: "n".into(),
            sha256: hash_secret(&a),
            scopes: vec![Scope::Admin],
            streams: None,
            ..Default::default()
        }])
        .unwrap();
        assert!(t.check_secret(a.as_bytes()).is_some());
        assert!(t.check_secret(b.as_bytes()).is_none());
    }

    #[test]
    fn globs() {
        for (p, n, ok) in [
            ("app-*", "app-", true),
            ("app-*", "app-web", true),
            ("app-*", "ap", false),
            ("a?c", "abc", true),
            ("*", "x", true),
            ("*-prod", "shop-prod", true),
            ("*-prod", "shop-dev", false),
            // Found by fuzzing (fuzz/README.md): a `*` in the name was taken as the pattern's
            // literal `*`, and the match failed further on.
            ("*a?b*", "*xayb::zz", true),
            ("*b", "*ab", true),
        ] {
            assert_eq!(glob_match(p, n), ok, "{p} {n}");
        }
    }

    #[test]
    fn bad_configuration_is_named() {
        let e = Tokens::new(&[TokenConfig {
            name: "x".into(),
            sha256: "abc".into(),
            scopes: vec![Scope::Query],
            streams: None,
            ..Default::default()
        }])
        .unwrap_err();
        assert!(e.contains("64 hex digits"), "{e}");
        let e = Tokens::new(&[TokenConfig {
            name: "x".into(),
            sha256: hash_secret("a"),
            scopes: vec![],
            streams: None,
            ..Default::default()
        }])
        .unwrap_err();
        assert!(e.contains("scope"), "{e}");
    }
}
