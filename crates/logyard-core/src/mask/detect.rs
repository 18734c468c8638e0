//! The built-in detectors: a pattern that finds candidates, and a check that keeps only the
//! real ones (octets up to 255, Luhn and issuer prefixes for cards, ISO 7064 mod 97 for IBANs,
//! digit counts and groupings for phone numbers, word boundaries for all).

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Deserialize;

/// A kind of personal or secret value logyard recognizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// `name@example.com`.
    Email,
    /// E.164 (`+86 138 0013 8000`), `00` international, and national forms: Chinese mobile
    /// numbers, North American numbers, numbers with a leading trunk `0`.
    Phone,
    /// IPv4 and IPv6 addresses.
    Ip,
    /// Payment card numbers (13 to 19 digits, a known issuer prefix, a valid Luhn digit).
    Card,
    /// International bank account numbers (valid mod-97 check digits).
    Iban,
    /// JSON Web Tokens (`eyJ...`.`eyJ...`.`...`).
    Jwt,
    /// `Bearer <token>` credentials.
    Bearer,
    /// AWS access key ids (`AKIA...`, `ASIA...`).
    AwsKey,
}

impl Detector {
    /// Every detector, in the order they are tried at one position.
    pub const ALL: [Detector; 8] = [
        Detector::Jwt,
        Detector::Bearer,
        Detector::AwsKey,
        Detector::Email,
        Detector::Iban,
        Detector::Card,
        Detector::Ip,
        Detector::Phone,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::Phone => "phone",
            Detector::Ip => "ip",
            Detector::Card => "card",
            Detector::Iban => "iban",
            Detector::Jwt => "jwt",
            Detector::Bearer => "bearer",
            Detector::AwsKey => "aws_key",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The candidate patterns (ASCII classes only, so the regex stays on its DFA).
    pub(crate) fn patterns(self) -> &'static [&'static str] {
        match self {
            Detector::Jwt => &[r"eyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*"],
            Detector::Bearer => &[r"[Bb][Ee][Aa][Rr][Ee][Rr][ \t]+[A-Za-z0-9\-._~+/]{8,}=*"],
            Detector::AwsKey => &[r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"],
            Detector::Email => &[r"[A-Za-z0-9_.%+'\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}"],
            Detector::Iban => &[r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?"],
            Detector::Card => &[r"[0-9](?:[ \-]?[0-9]){12,18}"],
            // IPv6: the full form, or a compressed one (with "::"); clock times never match.
            Detector::Ip => &[
                r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
                r"(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}",
                r"(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?::(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?",
            ],
            // Only the shapes phone numbers are written in, so that plain numbers (sizes,
            // ids, prices) are not even candidates.
            Detector::Phone => &[
                r"(?:\+|00)[1-9][0-9]{0,3}(?:[ .\-]?\(?[0-9]{1,5}\)?){1,6}",
                r"1[3-9][0-9](?:[ \-]?[0-9]{4}){2}",
                r"(?:1[ .\-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .\-])[2-9][0-9]{2}[ .\-][0-9]{4}",
                r"0[1-9][0-9]{1,4}[ \-]?[0-9]{3,4}[ \-]?[0-9]{0,4}",
            ],
        }
    }

    /// Whether `s[start..end]`, found by one of this detector's patterns, is a real one.
    pub(crate) fn accepts(self, s: &[u8], start: usize, end: usize) -> bool {
        let m = &s[start..end];
        let before = start.checked_sub(1).map(|i| s[i]);
        let after = s.get(end).copied();
        let next = s.get(end + 1).copied();
        let word = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        // The number goes on after one of `separators` (`1.2.3.4.5`, `2024-12-03`).
        let goes_on = |separators: &[u8]| {
            after.is_some_and(|a| separators.contains(&a)) && next.is_some_and(|b| b.is_ascii_digit())
        };
        match self {
            Detector::Jwt => !word(before) && !matches!(before, Some(b'-' | b'.')),
            Detector::Bearer => !word(before) && !word(after),
            Detector::AwsKey => !word(before) && !word(after),
            Detector::Email => {
                let at = m.iter().position(|&b| b == b'@').unwrap_or(0);
                m[0] != b'.'
                    && m[at - 1] != b'.'
                    && !word(after)
                    && after != Some(b'-')
                    && !m[at + 1..]
                        .split(|&b| b == b'.')
                        .any(|l| l.is_empty() || l[0] == b'-' || l[l.len() - 1] == b'-')
            }
            Detector::Iban => !word(before) && !word(after) && iban_valid(m),
            Detector::Card => {
                !word(before)
                    && !before.is_some_and(|b| b".-+/".contains(&b))
                    && !word(after)
                    && !goes_on(b".-")
                    && card_valid(m)
            }
            Detector::Ip => {
                if m.contains(&b':') {
                    !word(before)
                        && !before.is_some_and(|b| b":.".contains(&b))
                        && !word(after)
                        && !after.is_some_and(|b| b":.".contains(&b))
                        && ipv6(m).is_some()
                } else {
                    // After one '/' it is a version (`Chrome/131.0.0.0`); after "//", a host.
                    let version = before == Some(b'/') && (start < 2 || s[start - 2] != b'/');
                    !word(before)
                        && before != Some(b'.')
                        && !version
                        && !word(after)
                        && !goes_on(b".")
                        && ipv4(m).is_some()
                }
            }
            Detector::Phone => {
                !word(before)
                    && !before.is_some_and(|b| b".-+/:".contains(&b))
                    && !word(after)
                    && !goes_on(b".-:/")
                    && phone_valid(m)
            }
        }
    }

    /// The value as compared for `hash`, so that spellings of one value hash alike.
    pub(crate) fn canonical(self, m: &str) -> String {
        match self {
            Detector::Email => m.to_ascii_lowercase(),
            Detector::Phone => {
                let digits: String = m.chars().filter(char::is_ascii_digit).collect();
                match digits.strip_prefix("00") {
                    Some(rest) if !m.starts_with('+') => format!("+{rest}"),
                    _ if m.starts_with('+') => format!("+{digits}"),
                    _ => digits,
                }
            }
            Detector::Card => m.chars().filter(char::is_ascii_digit).collect(),
            Detector::Iban => m.chars().filter(|c| !c.is_ascii_whitespace()).collect::<String>().to_ascii_uppercase(),
            Detector::Ip => match ipv4(m.as_bytes()) {
                Some(v4) => v4.to_string(),
                None => ipv6(m.as_bytes()).map_or_else(|| m.to_owned(), |v6| v6.to_string()),
            },
            Detector::Jwt | Detector::Bearer | Detector::AwsKey => m.to_owned(),
        }
    }

    /// The shortened form `truncate` keeps, where one exists: an IPv4 address's /24 network,
    /// an IPv6 address's /48, a card's last four digits, a phone's last two, an e-mail's
    /// domain. `None`: this detector has none, and `truncate` redacts it.
    pub(crate) fn truncated(self, m: &str) -> Option<String> {
        match self {
            Detector::Ip => match ipv4(m.as_bytes()) {
                // Written as `ipv4` takes it (no leading zeros): the network is the text up
                // to the last dot.
                Some(_) => m.rfind('.').map(|dot| format!("{}0", &m[..=dot])),
                None => {
                    let s = ipv6(m.as_bytes())?.segments();
                    Some(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string())
                }
            },
            Detector::Card => Some(keep_last_digits(m, 4)),
            Detector::Phone => Some(keep_last_digits(m, 2)),
            Detector::Email => m.rsplit_once('@').map(|(_, domain)| format!("[email]@{domain}")),
            Detector::Iban | Detector::Jwt | Detector::Bearer | Detector::AwsKey => None,
        }
    }
}

/// `m` with every digit but the last `keep` replaced by `*`, its punctuation kept.
fn keep_last_digits(m: &str, keep: usize) -> String {
    let digits = m.bytes().filter(u8::is_ascii_digit).count();
    let mut seen = 0;
    m.chars()
        .map(|c| {
            if c.is_ascii_digit() {
                seen += 1;
                if seen + keep <= digits { '*' } else { c }
            } else {
                c
            }
        })
        .collect()
}

/// Four decimal octets; leading zeros ("010.001.002.003") are version strings or ids more
/// often than addresses, and are not taken.
fn ipv4(m: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = m.split(|&b| b == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty()
            || part.len() > 3
            || part.len() > 1 && part[0] == b'0'
            || !part.iter().all(u8::is_ascii_digit)
        {
            return None;
        }
        *octet = u8::try_from(part.iter().fold(0u16, |v, &d| v * 10 + u16::from(d - b'0'))).ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

fn ipv6(m: &[u8]) -> Option<Ipv6Addr> {
    let text = std::str::from_utf8(m).ok()?;
    let address: Ipv6Addr = text.parse().ok()?;
    // "::" alone, and all-digit groups without "::" (clock times are not valid anyway).
    (text.bytes().any(|b| b.is_ascii_hexdigit()) && !address.is_unspecified()).then_some(address)
}

fn digits_of(m: &[u8]) -> Vec<u8> {
    m.iter().filter(|b| b.is_ascii_digit()).map(|b| b - b'0').collect()
}

/// Luhn check digit, a length the issuer uses, a known issuer prefix, and one kind of
/// separator used throughout (`4111 1111 1111 1111`, `4111-1111-1111-1111`).
fn card_valid(m: &[u8]) -> bool {
    let separators: Vec<u8> = m.iter().copied().filter(|b| !b.is_ascii_digit()).collect();
    if separators.windows(2).any(|w| w[0] != w[1]) {
        return false;
    }
    let d = digits_of(m);
    if !(13..=19).contains(&d.len()) {
        return false;
    }
    let prefix = |n: usize| d[..n].iter().fold(0u32, |acc, &x| acc * 10 + x as u32);
    let issuer = match d[0] {
        4 => matches!(d.len(), 13 | 16 | 19),                     // Visa
        5 => (51..=55).contains(&prefix(2)) && d.len() == 16,     // Mastercard
        2 => (2221..=2720).contains(&prefix(4)) && d.len() == 16, // Mastercard
        3 => match prefix(2) {
            34 | 37 => d.len() == 15,                                                 // American Express
            35 => (3528..=3589).contains(&prefix(4)) && (16..=19).contains(&d.len()), // JCB
            36 | 38 | 39 | 30 => (14..=19).contains(&d.len()),                        // Diners Club
            _ => false,
        },
        6 => (16..=19).contains(&d.len()), // UnionPay (62), Discover (6011, 64, 65), Maestro
        _ => false,
    };
    issuer && luhn(&d)
}

fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = x as u32;
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616: 15 to 34 characters, check digits valid by ISO 7064 mod 97-10.
fn iban_valid(m: &[u8]) -> bool {
    let compact: Vec<u8> = m.iter().copied().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let mut remainder: u32 = 0;
    for &b in compact[4..].iter().chain(&compact[..4]) {
        let value = match b {
            b'0'..=b'9' => (b - b'0') as u32,
            b'A'..=b'Z' => (b - b'A') as u32 + 10,
            _ => return false,
        };
        remainder = if value >= 10 { (remainder * 100 + value) % 97 } else { (remainder * 10 + value) % 97 };
    }
    remainder == 1
}

/// A phone number's digit count and grouping: with `+` or `00`, 8 to 15 digits (E.164);
/// otherwise a Chinese mobile number (11 digits, `1[3-9]`), a North American number
/// (10 digits, or 11 after a `1`, area code and exchange not starting with 0 or 1), or a
/// national number after a trunk `0` (10 or 11 digits). Groups of 4-2-2 or 2-2-4 digits (dates)
/// are not phone numbers.
fn phone_valid(m: &[u8]) -> bool {
    let d = digits_of(m);
    let groups: Vec<usize> = m
        .split(|b| matches!(b, b' ' | b'.' | b'-' | b'(' | b')'))
        .filter(|g| !g.is_empty())
        .map(|g| g.iter().filter(|b| b.is_ascii_digit()).count())
        .collect();
    let dotted = m.contains(&b'.');
    if m[0] == b'+' {
        return (8..=15).contains(&d.len()) && d[0] != 0;
    }
    if m.starts_with(b"00") {
        return (10..=17).contains(&d.len()) && d[2] != 0;
    }
    if dotted && groups.len() > 3 {
        return false;
    }
    let nanp = |d: &[u8]| d.len() == 10 && d[0] >= 2 && d[3] >= 2;
    let shape = |expected: &[usize]| groups.len() == 1 || groups == expected;
    match d.len() {
        11 if d[0] == 1 => {
            let mobile = (3..=9).contains(&d[1]) && (shape(&[3, 4, 4]) || groups == [3, 3, 5]);
            mobile || (nanp(&d[1..]) && groups == [1, 3, 3, 4])
        }
        10 if nanp(&d) => shape(&[3, 3, 4]),
        10 | 11 if d[0] == 0 && d[1] != 0 => groups.len() <= 3 && !dotted,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(d: Detector, s: &str) -> bool {
        d.accepts(s.as_bytes(), 0, s.len())
    }

    #[test]
    fn checks_keep_the_real_ones() {
        assert!(accepted(Detector::Card, "4111 1111 1111 1111"));
        assert!(!accepted(Detector::Card, "4111 1111 1111 1112"), "Luhn");
        assert!(!accepted(Detector::Card, "4111-1111 1111-1111"), "mixed separators");
        assert!(!accepted(Detector::Card, "1234567812345670"), "no issuer starts with 1");
        assert!(accepted(Detector::Card, "6222021234567894"), "UnionPay");
        assert!(accepted(Detector::Iban, "GB82 WEST 1234 5698 7654 32"));
        assert!(!accepted(Detector::Iban, "GB83 WEST 1234 5698 7654 32"));
        assert!(accepted(Detector::Ip, "203.0.113.7"));
        assert!(!accepted(Detector::Ip, "256.1.1.1"));
        assert!(!accepted(Detector::Ip, "1.02.3.4"));
        assert!(accepted(Detector::Ip, "2001:db8::8a2e:370:7334"));
        assert!(!accepted(Detector::Ip, "10:15:30"));
        assert!(accepted(Detector::Phone, "+86 138 0013 8000"));
        assert!(accepted(Detector::Phone, "13800138000"));
        assert!(accepted(Detector::Phone, "(415) 555-2671"));
        assert!(!accepted(Detector::Phone, "2024-12-03"));
        assert!(!accepted(Detector::Phone, "1733212345"), "epoch seconds");
        assert!(accepted(Detector::Email, "li.wei@example.com.cn"));
        assert!(!accepted(Detector::Email, "a@-b.com"));
    }

    #[test]
    fn shortened_forms() {
        assert_eq!(Detector::Ip.truncated("203.0.113.7").unwrap(), "203.0.113.0");
        assert_eq!(Detector::Ip.truncated("2001:db8:85a3:1:2:8a2e:370:7334").unwrap(), "2001:db8:85a3::");
        assert_eq!(Detector::Card.truncated("4111 1111 1111 1111").unwrap(), "**** **** **** 1111");
        assert_eq!(Detector::Phone.truncated("+86 138 0013 8000").unwrap(), "+** *** **** **00");
        assert_eq!(Detector::Email.truncated("li.wei@example.com").unwrap(), "[email]@example.com");
        assert_eq!(Detector::Phone.canonical("0086 138-0013-8000"), "+8613800138000");
        assert_eq!(Detector::Email.canonical("Li.Wei@Example.com"), "li.wei@example.com");
    }
}
