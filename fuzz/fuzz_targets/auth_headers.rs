//! What a caller sends that authentication reads: the `Authorization` header, stream names
//! against token globs, and `X-Forwarded-For`.
//!
//! Invariants: nothing panics; a header is accepted only when it carries the configured
//! secret; `glob_match` agrees with a plain recursive matcher; the client address is the
//! peer or one of the forwarded addresses, and the peer whenever it is not a trusted proxy.

#![no_main]

use std::net::IpAddr;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use logyard_auth::forwarded::client_address;
use logyard_auth::{Scope, TokenConfig, Tokens, glob_match, hash_secret};

const SECRET: &str = "lyt_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";

static TOKENS: LazyLock<Tokens> = LazyLock::new(|| {
    Tokens::new(&[TokenConfig {
        name: "fuzz".into(),
        sha256: hash_secret(SECRET),
        scopes: vec![Scope::Ingest],
        streams: Some(vec!["app-*".into()]),
        ..Default::default()
    }])
    .unwrap()
});

fn reference_glob(p: &[u8], n: &[u8]) -> bool {
    match (p.first(), n.first()) {
        (None, None) => true,
        (Some(b'*'), _) => reference_glob(&p[1..], n) || (!n.is_empty() && reference_glob(p, &n[1..])),
        (Some(b'?'), Some(_)) => reference_glob(&p[1..], &n[1..]),
        (Some(a), Some(b)) if a == b => reference_glob(&p[1..], &n[1..]),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xff);
    let header = parts.next().unwrap_or_default();
    if let Ok(principal) = TOKENS.authenticate(Some(header)) {
        assert_eq!(principal.name, "fuzz");
        let text = std::str::from_utf8(header).expect("an accepted header is text");
        assert!(text.contains(SECRET), "accepted without the secret: {text:?}");
    }
    let _ = Scope::parse(&String::from_utf8_lossy(header));

    let pattern = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    if pattern.len() <= 16 && name.len() <= 24 {
        assert_eq!(
            glob_match(&pattern, &name),
            reference_glob(pattern.as_bytes(), name.as_bytes()),
            "{pattern:?} {name:?}"
        );
    }

    let forwarded = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let peer = IpAddr::from([10, 0, (data.len() % 3) as u8, 5]);
    let trusted = ["10.0.0.0/24".parse().unwrap(), "10.0.1.0/24".parse().unwrap(), "fd00::/8".parse().unwrap()];
    let values: Vec<&str> = forwarded.split('\n').collect();
    let client = client_address(peer, values.iter().copied(), &trusted);
    let listed = |ip: IpAddr| {
        forwarded.split(['\n', ',']).filter_map(|s| s.trim().parse::<IpAddr>().ok()).any(|f| f.to_canonical() == ip)
    };
    if !trusted.iter().any(|n| n.contains(&peer)) {
        assert_eq!(client, peer);
    } else {
        assert!(client == peer || listed(client), "{client} from {forwarded:?}");
    }
});
