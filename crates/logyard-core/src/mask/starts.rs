//! Where a built-in detector's match can start, decided from a few bytes.
//!
//! The detectors' patterns start with digits, capitals and common letters, which leave a
//! regex engine no literal to skip ahead with: an unanchored search over a log line spends
//! most of its time at positions that cannot start anything. Every built-in detector's match
//! starts after a byte that is not part of a word, and each pattern needs a short, cheap shape
//! at its start (three digits and a separator, "eyJ", an '@' at the end of a run of address
//! characters). [`Starts`] walks the text once, looks at those positions only, and names the
//! detectors that may match there; the masker then runs its regex anchored at them.
//!
//! Each test here is implied by a detector's pattern and its check (a superset of where they
//! succeed): the tests of the masker compare the result with an unanchored search of the
//! whole text.

use wide::i8x16;

use super::Detector;

/// One bit per detector, by its position in [`Detector::ALL`].
pub(super) type DetectorSet = u16;

pub(super) const fn bit(d: Detector) -> DetectorSet {
    let mut k = 0;
    while k < Detector::ALL.len() {
        if Detector::ALL[k] as u8 == d as u8 {
            return 1 << k;
        }
        k += 1;
    }
    panic!("every detector is listed")
}

const WORD: u8 = 1;
/// May begin a detector's match (after a byte that is not part of a word).
const START: u8 = 2;
/// May be part of an e-mail address's local part.
const LOCAL: u8 = 4;
const HEX: u8 = 8;

static CLASS: [u8; 256] = {
    let mut class = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let word = c.is_ascii_alphanumeric() || c == b'_';
        let mut k = 0;
        if word {
            k |= WORD | LOCAL;
        }
        if c.is_ascii_digit() || c.is_ascii_uppercase() || matches!(c, b'+' | b'(' | b':' | b'a'..=b'f') {
            k |= START;
        }
        if matches!(c, b'.' | b'%' | b'+' | b'\'' | b'-') {
            k |= LOCAL;
        }
        if c.is_ascii_hexdigit() {
            k |= HEX;
        }
        class[b] = k;
        b += 1;
    }
    class
};

/// Classes of up to 64 bytes, one bit per byte.
#[derive(Debug, Default, Clone, Copy)]
struct Classes {
    word: u64,
    digit: u64,
    upper: u64,
    /// `a` to `f`.
    lower_hex: u64,
    /// Hex digits and ':'.
    hex_colon: u64,
    y: u64,
    /// ' ', '.', '-'.
    separator: u64,
    /// '+', '('.
    opening: u64,
    colon: u64,
}

impl Classes {
    /// The bytes that may start a pattern, judged with the byte after each: a digit before a
    /// hex digit or a separator, a capital before a capital or a hex digit (IBAN, AWS key,
    /// IPv6, "Bearer"), `a`-`f` before a hex digit or `y` (IPv6, "bearer", "eyJ"), "::", and
    /// '+' or '('. The byte after the last one is not known here: it counts as any.
    fn starts(&self) -> u64 {
        let next = |bits: u64| bits >> 1 | 1 << 63;
        self.digit & (next(self.hex_colon) | next(self.separator))
            | self.upper & (next(self.upper) | next(self.hex_colon))
            | self.lower_hex & (next(self.hex_colon) | next(self.y))
            | self.colon & next(self.colon)
            | self.opening
    }

    /// Adds 16 bytes at bit `shift`.
    fn add(&mut self, bytes: [u8; 16], shift: usize) {
        let v: i8x16 = wide::bytemuck::cast(bytes);
        let at = |b: u8| i8x16::splat(b as i8);
        // Bytes from 0x80 are negative: outside every range below.
        let between = |v: i8x16, lo: u8, hi: u8| v.simd_gt(at(lo - 1)) & v.simd_lt(at(hi + 1));
        let bits = |m: i8x16| u64::from(m.to_bitmask() as u16) << shift;
        let digit = between(v, b'0', b'9');
        let colon = v.simd_eq(at(b':'));
        let upper_hex = between(v, b'A', b'F');
        let lower_hex = between(v, b'a', b'f');
        self.word |= bits(digit | between(v | at(0x20), b'a', b'z') | v.simd_eq(at(b'_')));
        self.digit |= bits(digit);
        self.upper |= bits(between(v, b'A', b'Z'));
        self.lower_hex |= bits(lower_hex);
        self.hex_colon |= bits(digit | upper_hex | lower_hex | colon);
        self.y |= bits(v.simd_eq(at(b'y')));
        self.separator |= bits(v.simd_eq(at(b' ')) | v.simd_eq(at(b'.')) | v.simd_eq(at(b'-')));
        self.opening |= bits(v.simd_eq(at(b'+')) | v.simd_eq(at(b'(')));
        self.colon |= bits(colon);
    }
}

fn is(b: Option<&u8>, k: u8) -> bool {
    b.is_some_and(|&b| CLASS[b as usize] & k != 0)
}

fn digit(b: Option<&u8>) -> bool {
    b.is_some_and(u8::is_ascii_digit)
}

/// Digits from `i` on, with single separators from `seps` between them, up to `max`.
fn digits(s: &[u8], i: usize, seps: &[u8], max: usize) -> usize {
    let mut count = 0;
    let mut j = i;
    while count < max {
        match s.get(j) {
            Some(b) if b.is_ascii_digit() => {
                count += 1;
                j += 1;
            }
            Some(b) if count > 0 && seps.contains(b) && digit(s.get(j + 1)) => j += 1,
            _ => break,
        }
    }
    count
}

/// An IPv6 address may start at `i`: up to four hex digits and a ':', and then either "::"
/// or seven colons in the run of hex digits and colons.
fn ipv6_at(s: &[u8], i: usize) -> bool {
    let hex = s[i..].iter().take(5).take_while(|&&b| CLASS[b as usize] & HEX != 0).count();
    if !(1..=4).contains(&hex) || s.get(i + hex) != Some(&b':') {
        return false;
    }
    let mut colons = 0;
    let mut last_colon = false;
    for &b in s[i + hex..].iter().take(40) {
        if b == b':' {
            if last_colon {
                return true;
            }
            colons += 1;
            last_colon = true;
        } else if CLASS[b as usize] & HEX != 0 {
            last_colon = false;
        } else {
            break;
        }
    }
    colons >= 7
}

/// Finds the positions of one text where the enabled detectors may match.
///
/// The text is looked at 64 bytes at a time: one pass over a chunk makes a bit mask of the
/// positions after a non-word byte whose byte may start a pattern (and of those inside the
/// run of address characters before an '@'), with no branch per byte; only the set bits are
/// then looked at one by one.
pub(super) struct Starts<'a> {
    s: &'a [u8],
    enabled: DetectorSet,
    /// The chunk loaded: its first position, and its bits.
    base: usize,
    loaded: bool,
    candidates: u64,
    /// Candidates that may start a pattern other than an e-mail address.
    starts: u64,
    /// Positions in a run of local-part characters before an '@' a domain follows.
    local: u64,
    /// Where to look for the next '@' from.
    at_from: usize,
}

impl<'a> Starts<'a> {
    pub(super) fn new(s: &'a [u8], enabled: DetectorSet) -> Self {
        let at_from = if enabled & bit(Detector::Email) != 0 { 0 } else { s.len() };
        Starts { s, enabled, base: 0, loaded: false, candidates: 0, starts: 0, local: 0, at_from }
    }

    /// The first position at or after `from` where an enabled detector may match, and which.
    /// `after_match`: `from` is where the previous match ended, and a match may start there
    /// whatever precedes it (an e-mail address's start is not checked).
    pub(super) fn next(&mut self, mut from: usize, after_match: bool) -> Option<(usize, DetectorSet)> {
        let len = self.s.len();
        if after_match && from < len {
            self.load_for(from);
            let found = self.detectors_at(from, CLASS[self.s[from] as usize] & START != 0);
            if found != 0 {
                return Some((from, found));
            }
            from += 1;
        }
        while from < len {
            self.load_for(from);
            let bits = self.candidates & (!0u64 << (from - self.base));
            if bits == 0 {
                from = self.base + 64;
                continue;
            }
            let i = self.base + bits.trailing_zeros() as usize;
            let found = self.detectors_at(i, self.starts >> (i - self.base) & 1 == 1);
            if found != 0 {
                return Some((i, found));
            }
            from = i + 1;
        }
        None
    }

    /// The enabled detectors that may match at `i` of the loaded chunk: by its shape where
    /// `may_start`, and e-mail where `i` is in an address's local part.
    fn detectors_at(&self, i: usize, may_start: bool) -> DetectorSet {
        let mut found = if may_start { self.shapes(i) & self.enabled } else { 0 };
        if self.local >> (i - self.base) & 1 == 1 {
            found |= bit(Detector::Email);
        }
        found
    }

    /// Makes the chunk holding `i` the loaded one.
    fn load_for(&mut self, i: usize) {
        if self.loaded && (self.base..self.base + 64).contains(&i) {
            return;
        }
        let s = self.s;
        let end = (i + 64).min(s.len());
        let mut classes = Classes::default();
        for (k, block) in s[i..end].chunks(16).enumerate() {
            let bytes = block.try_into().unwrap_or_else(|_| {
                let mut padded = [0u8; 16];
                padded[..block.len()].copy_from_slice(block);
                padded
            });
            classes.add(bytes, 16 * k);
        }
        let word_before = u64::from(i > 0 && CLASS[s[i - 1] as usize] & WORD != 0);
        let boundary = !(classes.word << 1 | word_before);
        let start = classes.starts();
        let local = self.local_runs(i, end);
        self.base = i;
        self.loaded = true;
        self.local = local;
        self.starts = start & boundary;
        self.candidates = (start | local) & boundary;
    }

    /// The positions of `[base, end)` in a run of local-part characters before an '@' that a
    /// domain follows, as bits from `base`.
    fn local_runs(&mut self, base: usize, end: usize) -> u64 {
        let s = self.s;
        let mut bits = 0u64;
        let mut from = self.at_from.max(base);
        while from < s.len() {
            let Some(at) = memchr::memchr(b'@', &s[from..]).map(|k| from + k) else {
                self.at_from = s.len();
                break;
            };
            let mut run = at;
            while run > 0 && CLASS[s[run - 1] as usize] & LOCAL != 0 {
                run -= 1;
            }
            if run >= end {
                self.at_from = at;
                break;
            }
            let domain = s.get(at + 1).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'-');
            if domain {
                for k in run.max(base)..at.min(end) {
                    bits |= 1 << (k - base);
                }
            }
            if at >= end {
                self.at_from = at;
                break;
            }
            from = at + 1;
        }
        bits
    }

    /// The detectors whose pattern may start at `i`, a position after a non-word byte.
    fn shapes(&self, i: usize) -> DetectorSet {
        let s = self.s;
        let c = s[i];
        let before = i.checked_sub(1).map(|k| s[k]);
        let next = s.get(i + 1);
        let want = |d: Detector| self.enabled & bit(d) != 0;
        let mut found = 0;
        if want(Detector::Ip) && is(Some(&c), HEX) && !before.is_some_and(|b| b == b':' || b == b'.') && ipv6_at(s, i) {
            found |= bit(Detector::Ip);
        }
        match c {
            b'0'..=b'9' if self.enabled & (bit(Detector::Ip) | bit(Detector::Card) | bit(Detector::Phone)) != 0 => {
                let run = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
                let after = s.get(i + run);
                // After one '/' a dotted number is a version (`Chrome/131.0.0.0`).
                let version = before == Some(b'/') && (i < 2 || s[i - 2] != b'/');
                if run <= 3 && after == Some(&b'.') && digit(s.get(i + run + 1)) && before != Some(b'.') && !version {
                    found |= bit(Detector::Ip);
                }
                // Digits with single spaces or dashes between them: what cards and most phone
                // numbers need at least.
                // Only a separator after the run can make the group longer than the run.
                let grouped = if matches!(after, Some(b' ' | b'-')) { digits(s, i, b" -", 13) } else { run.min(13) };
                if !before.is_some_and(|b| b".-+/".contains(&b)) && grouped >= 13 {
                    found |= bit(Detector::Card);
                }
                if !before.is_some_and(|b| b".-+/:".contains(&b)) {
                    let at = |k: usize| s.get(i + k).copied().unwrap_or(0);
                    let separator = |b: Option<&u8>| b.is_some_and(|b| b" .-".contains(b));
                    let phone = match c {
                        b'0' => {
                            (at(1) == b'0' && (b'1'..=b'9').contains(&at(2)))
                                || ((b'1'..=b'9').contains(&at(1)) && grouped >= 6)
                        }
                        b'1' => {
                            ((b'3'..=b'9').contains(&at(1)) && grouped >= 11)
                                || (separator(next) && (at(2) == b'(' || at(2).is_ascii_digit()))
                        }
                        _ => run == 3 && separator(after),
                    };
                    if phone {
                        found |= bit(Detector::Phone);
                    }
                }
            }
            b'+' if next.is_some_and(|b| (b'1'..=b'9').contains(b))
                && !before.is_some_and(|b| b".-+/:".contains(&b)) =>
            {
                found |= bit(Detector::Phone);
            }
            b'(' if next.is_some_and(|b| (b'2'..=b'9').contains(b))
                && !before.is_some_and(|b| b".-+/:".contains(&b)) =>
            {
                found |= bit(Detector::Phone);
            }
            b':' if next == Some(&b':') && before != Some(b'.') => found |= bit(Detector::Ip),
            _ => {}
        }
        if c.is_ascii_alphabetic()
            && self.enabled & (bit(Detector::Jwt) | bit(Detector::Bearer) | bit(Detector::AwsKey) | bit(Detector::Iban))
                != 0
        {
            let rest = &s[i..];
            if rest.starts_with(b"eyJ") {
                found |= bit(Detector::Jwt);
            }
            if rest.len() > 6 && rest[..6].eq_ignore_ascii_case(b"bearer") && matches!(rest[6], b' ' | b'\t') {
                found |= bit(Detector::Bearer);
            }
            if [b"AKIA", b"ASIA", b"ABIA", b"ACCA"].iter().any(|p| rest.starts_with(*p)) {
                found |= bit(Detector::AwsKey);
            }
            if rest.len() >= 4
                && rest[0].is_ascii_uppercase()
                && rest[1].is_ascii_uppercase()
                && rest[2].is_ascii_digit()
                && rest[3].is_ascii_digit()
            {
                found |= bit(Detector::Iban);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector classification agrees with the table for every byte in every lane, and a
    /// byte that may start a pattern before some next byte is one of [`START`].
    #[test]
    fn classes_agree_with_the_table() {
        for b in 0..=255u8 {
            for lane in 0..16 {
                let mut bytes = [0u8; 16];
                bytes[lane] = b;
                let mut classes = Classes::default();
                classes.add(bytes, 0);
                assert_eq!(classes.word >> lane & 1 == 1, CLASS[b as usize] & WORD != 0, "word {b:#x} lane {lane}");
                for next in 0..=255u8 {
                    if lane < 15 {
                        bytes[lane + 1] = next;
                    }
                    let mut classes = Classes::default();
                    classes.add(bytes, 0);
                    if classes.starts() >> lane & 1 == 1 {
                        assert!(CLASS[b as usize] & START != 0, "start {b:#x} before {next:#x}, lane {lane}");
                    }
                }
            }
        }
    }
}
