//! The detectors against planted values and look-alikes, the actions, and the JSON rewriting.

use super::*;
use crate::event::TimeSource;

/// Numbers below `n` from a xorshift generator seeded with `state`.
pub(super) fn random(mut state: u64) -> impl FnMut(usize) -> usize {
    move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    }
}

fn rule(toml_like: MaskRule) -> Masking {
    Masking::new(vec![toml_like], Some(b"test key".to_vec())).unwrap()
}

fn default_rule() -> MaskRule {
    MaskRule {
        streams: every_stream(),
        detectors: vec!["default".into()],
        regex: None,
        name: None,
        action: None,
        fields: Vec::new(),
    }
}

fn masked(m: &Masker, text: &str) -> String {
    let out = m.mask(text, None);
    let new = out.text.unwrap_or_else(|| text.to_owned());
    serde_json::from_str::<serde_json::Value>(&new).unwrap_or_else(|e| panic!("{new} is not JSON: {e}"));
    new
}

/// Planted values each detector must find, in the sentences they come in.
const POSITIVES: &[(&str, &str)] = &[
    ("email", "li.wei@example.com"),
    ("email", "Zhang.San+orders@mail.example.com.cn"),
    ("email", "o'brien@example.ie"),
    ("email", "x_y-z%1@sub-domain.example.shop"),
    ("phone", "+86 138 0013 8000"),
    ("phone", "+8613800138000"),
    ("phone", "+1 (415) 555-2671"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "+49-30-901820"),
    ("phone", "0086 138 0013 8000"),
    ("phone", "13800138000"),
    ("phone", "138-0013-8000"),
    ("phone", "(415) 555-2671"),
    ("phone", "415-555-2671"),
    ("phone", "415.555.2671"),
    ("phone", "1-415-555-2671"),
    ("phone", "07700 900123"),
    ("phone", "010-62345678"),
    ("ip", "203.0.113.7"),
    ("ip", "10.0.0.1"),
    ("ip", "255.255.255.255"),
    ("ip", "2001:db8::8a2e:370:7334"),
    ("ip", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("ip", "fe80::1ff:fe23:4567:890a"),
    ("ip", "::1"),
    ("card", "4111111111111111"),
    ("card", "4111 1111 1111 1111"),
    ("card", "5500-0000-0000-0004"),
    ("card", "378282246310005"),
    ("card", "6011111111111117"),
    ("card", "6222021234567894"),
    ("card", "3530111333300000"),
    ("card", "2223003122003222"),
    ("iban", "GB82WEST12345698765432"),
    ("iban", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "DE89370400440532013000"),
    ("iban", "FR1420041010050500013M02606"),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjLTAwMDEyMyJ9.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
    ("bearer", "Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0"),
    ("bearer", "bearer abcdefgh.ijklmnop-qrst"),
    ("aws_key", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_key", "ASIAY34FZKBOKMUTVV7A"),
];

/// Look-alikes no detector may touch.
const NEGATIVES: &[&str] = &[
    // Order numbers and ids, some 16 digits long, failing Luhn or with no issuer prefix.
    "o-0012345",
    "order 4111111111111112 shipped",
    "order 1234567812345678",
    "sku 9780306406157",
    "tracking 1Z999AA10123456784",
    // Versions and dotted numbers.
    "version 1.2.3",
    "release 10.2.0.1.4",
    "v2.10.300.4",
    "chrome/120.0.6099.109",
    "Mozilla/5.0 (Macintosh) AppleWebKit/537.36 Chrome/131.0.0.0 Safari/537.36",
    "std::io::Error",
    "256.1.1.1",
    "3.14159",
    // Dates, times and timestamps.
    "2024-12-03",
    "03.12.2024",
    "2024/12/03 10:15:30",
    "2024-12-03T10:15:30.123Z",
    "10:15:30",
    "1733212345",
    "1733212345678",
    "20241203101530",
    // Other numbers.
    "bytes 34647",
    "latency 9.8 ms",
    "session s-7814272605f04e17",
    "price 1,299.00 CNY",
    "qty 3 at 19.99",
    "latency_ms 1234567",
    "port 8080",
    "status 503",
    // Hex and MAC addresses, hashes, uuids.
    "mac aa:bb:cc:dd:ee:ff",
    "sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "request 550e8400-e29b-41d4-a716-446655440000",
    "trace 4bf92f3577b34da6a3ce929d0e0e4736",
    // Words near the patterns.
    "bearer of bad news",
    "mail at example dot com",
    "user@localhost",
    "AKIA is a prefix",
    "GB82 is a code",
    "eyJhbGciOiJIUzI1NiJ9 alone",
    "email: [email]",
];

#[test]
fn detectors_find_the_planted_values_and_leave_look_alikes() {
    let masking = rule(MaskRule { action: Some(Action::Redact), ..default_rule() });
    let m = masking.for_stream("shop").unwrap();
    let (mut found, mut missed, mut wrong) = (0, Vec::new(), Vec::new());
    for (kind, value) in POSITIVES {
        let text = serde_json::json!({ "message": format!("customer said {value} today") }).to_string();
        let out = masked(&m, &text);
        let expected = format!("customer said [{kind}] today");
        if out.contains(&expected) {
            found += 1;
        } else {
            missed.push(format!("{kind} {value:?} -> {out}"));
        }
    }
    for value in NEGATIVES {
        let text = serde_json::json!({ "message": value }).to_string();
        let out = masked(&m, &text);
        if out != text {
            wrong.push(format!("{value:?} -> {out}"));
        }
    }
    let recall = found as f64 / POSITIVES.len() as f64;
    let precision = found as f64 / (found + wrong.len()) as f64;
    println!(
        "detectors: recall {recall:.3} ({found} of {}), precision {precision:.3} ({} of {} look-alikes masked)",
        POSITIVES.len(),
        wrong.len(),
        NEGATIVES.len()
    );
    assert!(missed.is_empty(), "missed: {missed:#?}");
    assert!(wrong.is_empty(), "masked look-alikes: {wrong:#?}");
}

#[test]
fn actions_and_fields() {
    let text = r#"{"ts":"2024-12-03T10:15:30Z","email":"Li.Wei@Example.com","client_ip":"203.0.113.7","note":"card 4111 1111 1111 1111","user":{"email":"li.wei@example.com","tier":"gold"}}"#;

    // Defaults: redact e-mails, truncate addresses and cards.
    let m = rule(default_rule()).for_stream("s").unwrap();
    assert_eq!(
        masked(&m, text),
        r#"{"ts":"2024-12-03T10:15:30Z","email":"[email]","client_ip":"203.0.113.0","note":"card **** **** **** 1111","user":{"email":"[email]","tier":"gold"}}"#
    );

    // Hash: equal values (whatever their case) hash alike, under the key.
    let m = rule(MaskRule { detectors: vec!["email".into()], action: Some(Action::Hash), ..default_rule() })
        .for_stream("s")
        .unwrap();
    let out: serde_json::Value = serde_json::from_str(&masked(&m, text)).unwrap();
    let hashed = out["email"].as_str().unwrap();
    assert_eq!(hashed.len(), 32);
    assert!(hashed.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(out["user"]["email"], out["email"], "one value, one hash");
    let other_key = Masking::new(
        vec![MaskRule { detectors: vec!["email".into()], action: Some(Action::Hash), ..default_rule() }],
        Some(b"another key".to_vec()),
    )
    .unwrap();
    let other: serde_json::Value = serde_json::from_str(&masked(&other_key.for_stream("s").unwrap(), text)).unwrap();
    assert_ne!(other["email"], out["email"], "the key matters");

    // Only the named fields: `user` covers `user.email`, the top-level e-mail stays.
    let m = rule(MaskRule { detectors: vec!["email".into()], fields: vec!["user".into()], ..default_rule() })
        .for_stream("s")
        .unwrap();
    let out: serde_json::Value = serde_json::from_str(&masked(&m, text)).unwrap();
    assert_eq!(out["email"], "Li.Wei@Example.com");
    assert_eq!(out["user"]["email"], "[email]");

    // A rule naming fields comes first there; elsewhere the rule for every field applies.
    let both = Masking::new(
        vec![
            default_rule(),
            MaskRule {
                detectors: vec!["email".into()],
                action: Some(Action::Hash),
                fields: vec!["email".into()],
                ..default_rule()
            },
        ],
        Some(b"test key".to_vec()),
    )
    .unwrap();
    let out: serde_json::Value = serde_json::from_str(&masked(&both.for_stream("s").unwrap(), text)).unwrap();
    assert_eq!(out["email"].as_str().unwrap().len(), 32, "{out}");
    assert_eq!(out["user"]["email"], "[email]", "{out}");

    // Drop: the fields holding a match go, commas and all, wherever they are.
    let m =
        rule(MaskRule { detectors: vec!["email".into(), "card".into()], action: Some(Action::Drop), ..default_rule() })
            .for_stream("s")
            .unwrap();
    assert_eq!(masked(&m, text), r#"{"ts":"2024-12-03T10:15:30Z","client_ip":"203.0.113.7","user":{"tier":"gold"}}"#);
    assert_eq!(masked(&m, r#"{"a":"x@example.com","b":1}"#), r#"{"b":1}"#);
    assert_eq!(masked(&m, r#"{"a":"x@example.com", "b":"y@example.com"}"#), r#"{ }"#);
    assert_eq!(masked(&m, r#"{"a":1,"b":"x@example.com"}"#), r#"{"a":1}"#);
    assert_eq!(masked(&m, r#"{"a":1,"b":"x@example.com","c":2}"#), r#"{"a":1,"c":2}"#);
    assert_eq!(masked(&m, r#"{"a":"x@example.com","b":["y@example.com"],"c":2}"#), r#"{"c":2}"#);

    // A custom pattern, named.
    let m = rule(MaskRule {
        detectors: Vec::new(),
        regex: Some("c-[0-9]{6}".into()),
        name: Some("customer".into()),
        ..default_rule()
    })
    .for_stream("s")
    .unwrap();
    assert_eq!(
        masked(&m, r#"{"customer_id":"c-000123","message":"for c-000123."}"#),
        r#"{"customer_id":"[customer]","message":"for [customer]."}"#
    );
}

#[test]
fn escapes_numbers_arrays_and_the_time_field() {
    let m = rule(default_rule()).for_stream("s").unwrap();
    // An e-mail spelled with a JSON escape is found in the value it decodes to.
    let out = masked(&m, r#"{"message":"mail li.wei\u0040example.com \"now\""}"#);
    assert_eq!(out, r#"{"message":"mail [email] \"now\""}"#);
    // A card number sent as a JSON number becomes a string; a part of a number is no match.
    assert_eq!(masked(&m, r#"{"pan":4111111111111111,"n":12.5}"#), r#"{"pan":"************1111","n":12.5}"#);
    // Values inside arrays and deep objects.
    assert_eq!(
        masked(&m, r#"{"to":["a@example.com",{"cc":"b@example.com"}],"k":{"k2":{"ip":"10.1.2.3"}}}"#),
        r#"{"to":["[email]",{"cc":"[email]"}],"k":{"k2":{"ip":"10.1.2.0"}}}"#
    );
    // A URL's host is an address; a version after one '/' is not.
    assert_eq!(
        masked(&m, r#"{"u":"http://10.1.2.3/health","ua":"Chrome/131.0.0.0"}"#),
        r#"{"u":"http://10.1.2.0/health","ua":"Chrome/131.0.0.0"}"#
    );
    // Keys stay as they are.
    assert_eq!(masked(&m, r#"{"a@example.com":1}"#), r#"{"a@example.com":1}"#);
    // The field the event's time came from is left alone.
    let time = TimeSource::Field(0);
    let field = time.field().unwrap();
    let text = format!(r#"{{"{field}":"10.0.0.1","ip":"10.0.0.1"}}"#);
    let out = m.mask(&text, Some(field)).text.unwrap();
    assert_eq!(out, format!(r#"{{"{field}":"10.0.0.1","ip":"10.0.0.0"}}"#));
    // Nothing found: no new text.
    assert!(m.mask(r#"{"message":"GET /products/42 200"}"#, None).text.is_none());
}

#[test]
fn counts_by_kind() {
    let m = rule(default_rule()).for_stream("s").unwrap();
    let out = m.mask(r#"{"a":"x@example.com y@example.com","b":"10.0.0.1"}"#, None);
    assert_eq!(out.counts[Detector::ALL.iter().position(|d| *d == Detector::Email).unwrap()], 2);
    assert_eq!(out.counts[Detector::ALL.iter().position(|d| *d == Detector::Ip).unwrap()], 1);
    assert_eq!(count_name(COUNTED - 1), "custom");
}

#[test]
fn rules_are_checked_at_load() {
    let err = |r: MaskRule, key: Option<Vec<u8>>| Masking::new(vec![default_rule(), r], key).unwrap_err().to_string();
    assert_eq!(
        err(MaskRule { detectors: vec!["mail".into()], ..default_rule() }, None),
        "masking.rules[1]: unknown detector \"mail\": use jwt, bearer, aws_key, email, iban, card, ip, phone or \"default\""
    );
    assert!(err(MaskRule { action: Some(Action::Hash), ..default_rule() }, None).contains("needs a key"));
    assert!(err(MaskRule { detectors: vec![], ..default_rule() }, None).contains("give `detectors`"));
    assert!(err(MaskRule { regex: Some("(".into()), ..default_rule() }, None).contains("invalid regex"));
    assert!(err(MaskRule { streams: vec!["Shop".into()], ..default_rule() }, None).contains("not a stream name"));
    let only = Masking::new(vec![MaskRule { streams: vec!["shop-*".into()], ..default_rule() }], None).unwrap();
    assert!(only.for_stream("shop-web").is_some());
    assert!(only.for_stream("audit").is_none());
}

/// Ids of 16 digits drawn at random: how many a card check takes for cards (by design about
/// one in ten of those with an issuer's prefix passes Luhn).
#[test]
fn random_sixteen_digit_ids_rarely_pass_as_cards() {
    let masking = rule(MaskRule { detectors: vec!["card".into()], ..default_rule() });
    let m = masking.for_stream("s").unwrap();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        state >> 33
    };
    let n = 20_000;
    let mut taken = 0;
    for _ in 0..n {
        let id: String = (0..16)
            .map(|i| char::from(b'0' + (next() % if i == 0 { 9 } else { 10 }) as u8 + u8::from(i == 0)))
            .collect();
        if m.mask(&format!(r#"{{"order":"{id}"}}"#), None).text.is_some() {
            taken += 1;
        }
    }
    let rate = taken as f64 / n as f64;
    println!("random 16-digit ids masked as cards: {taken} of {n} ({:.2}%)", rate * 100.0);
    assert!((0.02..0.06).contains(&rate), "{rate}");
}

/// The scan that runs the regex only where [`Starts`] says a detector may match finds
/// exactly what an unanchored search of the whole text finds, for every detector alone and
/// all together, on texts made of planted values, look-alikes and random pieces that sit
/// next to each other without spaces.
#[test]
fn scanning_at_likely_starts_finds_what_a_full_search_finds() {
    let mut next = random(0x2545_F491_4F6C_DD1D);
    const PIECES: &[&str] = &[
        " ",
        " ",
        "\"",
        ":",
        "::",
        ".",
        "-",
        "/",
        "//",
        "+",
        "(",
        ")",
        "@",
        "_",
        "=",
        ",",
        "ü",
        "\t",
        "x",
        "Ab",
        "e",
        "0",
        "00",
        "1",
        "13",
        "7",
        "42",
        "203",
        "555",
        "1234",
        "86",
        "4111",
        "a1f",
        "db8",
        "fe80",
        "GB",
        "82",
        "WEST",
        "eyJ",
        "Bearer",
        "AKIA",
        "IOSFODNN7EXAMPLE",
        "example",
        ".com",
        "li.wei",
        "%",
        "'",
    ];
    let samples: Vec<String> =
        POSITIVES.iter().map(|(_, v)| v.to_string()).chain(NEGATIVES.iter().map(|v| v.to_string())).collect();
    let mut texts: Vec<String> = samples.clone();
    for _ in 0..30_000 {
        let mut t = String::new();
        for _ in 0..1 + next(24) {
            match next(4) {
                0 => t.push_str(&samples[next(samples.len())]),
                _ => t.push_str(PIECES[next(PIECES.len())]),
            }
        }
        texts.push(t);
    }
    let mut sets: Vec<Vec<String>> = Detector::ALL.iter().map(|d| vec![d.name().to_owned()]).collect();
    sets.push(vec!["default".into()]);
    for detectors in sets {
        let masking = rule(MaskRule { detectors: detectors.clone(), ..default_rule() });
        let m = masking.for_stream("s").unwrap();
        let mut hits = 0;
        for t in &texts {
            let (mut fast, mut full) = (Vec::new(), Vec::new());
            m.scan_starts(t, &mut fast);
            m.scan_unanchored(t, &mut full);
            let spans = |f: &[Found]| f.iter().map(|f| (f.span.start, f.span.end, f.pattern)).collect::<Vec<_>>();
            assert_eq!(spans(&fast), spans(&full), "{detectors:?} in {t:?}");
            hits += full.len();
        }
        assert!(hits > 100, "{detectors:?}: the texts hold only {hits} matches");
    }
}

/// A request's events: only the ones with something to mask change, the others are kept as
/// they came and in their order; a request with nothing to mask is not copied at all.
#[test]
fn masking_a_request_changes_only_the_events_that_need_it() {
    let masking = rule(MaskRule { action: Some(Action::Redact), ..default_rule() });
    let m = masking.for_stream("s").unwrap();
    let texts = [
        r#"{"message":"plain 1"}"#,
        r#"{"message":"plain 2"}"#,
        r#"{"message":"mail li.wei@example.com"}"#,
        r#"{"message":"plain 3"}"#,
        r#"{"message":"call +86 138 0013 8000"}"#,
    ];
    let encode = |texts: &[&str]| {
        let mut e = crate::encoded::EventsEncoder::with_capacity(1024);
        for (i, t) in texts.iter().enumerate() {
            e.push(i as i64, TimeSource::Received, t).unwrap();
        }
        e
    };
    let plain = encode(&texts[..2]);
    let out = m.mask_events(plain.as_bytes()).unwrap();
    assert!(out.events.is_none());
    assert_eq!(out.counts.iter().sum::<u32>(), 0);

    let all = encode(&texts);
    let out = m.mask_events(all.as_bytes()).unwrap();
    let events = out.events.expect("two events changed");
    let got: Vec<(i64, String)> = crate::encoded::decode_events(events.as_bytes())
        .map(|e| e.map(|e| (e.time, e.text.to_owned())).unwrap())
        .collect();
    let expected: Vec<(i64, String)> = [
        r#"{"message":"plain 1"}"#,
        r#"{"message":"plain 2"}"#,
        r#"{"message":"mail [email]"}"#,
        r#"{"message":"plain 3"}"#,
        r#"{"message":"call [phone]"}"#,
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| (i as i64, t.to_string()))
    .collect();
    assert_eq!(got, expected);
    assert_eq!(out.counts[starts::bit(Detector::Email).trailing_zeros() as usize], 1);
    assert_eq!(out.counts[starts::bit(Detector::Phone).trailing_zeros() as usize], 1);
}

/// Masking without the walk ([`json::quick`]) gives the walk's text and counts, on events
/// with nested objects deeper than the columns go, arrays, numbers, keys that hold values
/// and a time field, for every action it is used with.
#[test]
fn masking_without_the_walk_gives_what_the_walk_gives() {
    let mut next = random(0x0DDB_1A5E_5BAD_5EED);
    let samples: Vec<&str> = POSITIVES.iter().map(|(_, v)| *v).chain(NEGATIVES.iter().copied()).collect();
    let keys = ["time", "msg", "ip", "203.0.113.9", "user", "tags", "a", "n"];
    let mut events = Vec::new();
    for _ in 0..4000 {
        fn value(next: &mut impl FnMut(usize) -> usize, samples: &[&str], keys: &[&str], depth: usize) -> String {
            let string = |next: &mut dyn FnMut(usize) -> usize| {
                let mut s = String::new();
                for _ in 0..1 + next(3) {
                    s.push_str([samples[next(samples.len())], " ", "x", "/", ":"][next(5).min(4)]);
                }
                serde_json::to_string(&s).unwrap()
            };
            match if depth > 4 { next(3) } else { next(6) } {
                0 => string(next),
                1 => ["13800138000", "4111111111111111", "-1.5e3", "0", "203"][next(5)].to_owned(),
                2 => ["true", "null", "\"\""][next(3)].to_owned(),
                3 | 4 => {
                    let members: Vec<String> = (0..next(4))
                        .map(|_| format!("\"{}\" : {}", keys[next(keys.len())], value(next, samples, keys, depth + 1)))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }
                _ => {
                    let items: Vec<String> = (0..next(4)).map(|_| value(next, samples, keys, depth + 1)).collect();
                    format!("[ {} ]", items.join(", "))
                }
            }
        }
        let time = if next(2) == 0 { samples[next(samples.len())] } else { "" };
        let mut members = vec![format!("\"time\":\"2026-11-20T00:00:00.221Z {time}\"")];
        for _ in 0..next(6) {
            members.push(format!("\"{}\":{}", keys[next(keys.len())], value(&mut next, &samples, &keys, 1)));
        }
        events.push(format!("{{{}}}", members.join(", ")));
    }
    let (mut differ_from_input, mut left_to_the_walk) = (0, 0);
    for action in [Action::Redact, Action::Hash, Action::Truncate] {
        let masking =
            Masking::new(vec![MaskRule { action: Some(action), ..default_rule() }], Some(vec![7; 32])).unwrap();
        let m = masking.for_stream("s").unwrap();
        assert!(m.quick);
        for event in &events {
            let mut found = Vec::new();
            m.scan(event, &mut found);
            let walked = json::Walk::new(&m, event, &found, Some("time")).run();
            match json::quick(&m, event, &found, Some("time")) {
                Some(quick) => {
                    assert_eq!(quick, walked, "{action:?} on {event}");
                    differ_from_input += usize::from(quick.0.is_some());
                }
                None => left_to_the_walk += 1,
            }
        }
    }
    assert!(differ_from_input > 1000, "only {differ_from_input} events had something masked");
    assert!(left_to_the_walk < 3 * events.len() / 2, "{left_to_the_walk} left to the walk");
    assert!(left_to_the_walk > 0, "no event with the time field's name twice");
}
