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

use super::Detector;
use super::classes::Classes;

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

/// The positions of a chunk (bits of `c`, the chunk's classes) where an enabled detector's
/// pattern may start, judged with the bytes around each: a superset of where
/// [`Starts::shapes`] finds one (whether the byte before is part of a word is left to the
/// caller). The first byte of the chunk counts as the first of the text. `more`: the text
/// goes on after the chunk, so a byte past its end may be anything.
fn likely_starts(c: &Classes, more: bool, enabled: DetectorSet) -> u64 {
    // The class bits of the byte `k` places after each position, and of the one before.
    let after = |x: u64, k: u32| x >> k | if more { !0u64 << (64 - k) } else { 0 };
    let prev = |x: u64| x << 1;
    let on = |d: Detector| if enabled & bit(d) != 0 { !0u64 } else { 0 };
    let digit = c.digit;
    let nonzero = digit & !c.zero;
    let two_to_nine = nonzero & !c.one;
    let sep = c.space | c.dot | c.dash;
    let after_dot = prev(c.dot);
    // After one '/' a dotted number is a version (`Chrome/131.0.0.0`); after "//", a host.
    let version = prev(c.slash) & !(c.slash << 2);
    let punct = c.dot | c.dash | c.plus | c.slash;
    let after_punct = prev(punct);
    let after_punct_colon = prev(punct | c.colon);

    let dot_digit = c.dot & after(digit, 1);
    let ipv4 = digit
        & !after_dot
        & !version
        & (after(dot_digit, 1) | after(digit, 1) & (after(dot_digit, 2) | after(digit, 2) & after(dot_digit, 3)));
    let hex = c.hex;
    let colon = c.colon;
    let ipv6 = hex
        & !prev(colon | c.dot)
        & (after(colon, 1)
            | after(hex, 1) & (after(colon, 2) | after(hex, 2) & (after(colon, 3) | after(hex, 3) & after(colon, 4))))
        | colon & after(colon, 1) & !after_dot;
    // Cards: 13 digits at least, single spaces or dashes between them.
    let grouped = digit | (c.space | c.dash) & after(digit, 1) & prev(digit);
    let run2 = grouped & after(grouped, 1);
    let run4 = run2 & after(run2, 2);
    let run8 = run4 & after(run4, 4);
    let card = digit & !after_punct & run8 & after(run8, 5);
    let phone = !after_punct_colon
        & (c.plus & after(nonzero, 1)
            | c.paren & after(two_to_nine, 1)
            | c.zero & (after(c.zero, 1) & after(nonzero, 2) | after(nonzero, 1))
            | c.one & (after(digit, 1) | after(sep, 1) & after(c.paren | digit, 2))
            | two_to_nine & after(digit, 1) & after(digit, 2) & after(sep, 3));
    let upper = c.upper;
    ipv4 & on(Detector::Ip)
        | ipv6 & on(Detector::Ip)
        | card & on(Detector::Card)
        | phone & on(Detector::Phone)
        | upper & after(upper, 1) & after(digit, 2) & after(digit, 3) & on(Detector::Iban)
        | c.a & after(upper, 1) & after(upper, 2) & after(c.a, 3) & on(Detector::AwsKey)
        | c.e & after(c.y, 1) & after(upper, 2) & on(Detector::Jwt)
        | c.b & after(c.e, 1) & on(Detector::Bearer)
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

/// Four groups of one to three digits with dots between them start at `i`.
fn ipv4_at(s: &[u8], i: usize) -> bool {
    let mut j = i;
    for group in 0..4 {
        if group > 0 {
            if s.get(j) != Some(&b'.') {
                return false;
            }
            j += 1;
        }
        let run = s[j.min(s.len())..].iter().take(4).take_while(|b| b.is_ascii_digit()).count();
        if !(1..=3).contains(&run) {
            return false;
        }
        j += run;
    }
    true
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
    /// How many bytes from `base` the chunk's bits cover.
    span: usize,
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
        Starts { s, enabled, base: 0, span: 0, loaded: false, candidates: 0, starts: 0, local: 0, at_from }
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
                from = self.base + self.span;
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
        if self.loaded && (self.base..self.base + self.span).contains(&i) {
            return;
        }
        let s = self.s;
        // The chunk holds the two bytes before `i`, so that each position's bits can be
        // judged with the bytes before it.
        let first = i.saturating_sub(2);
        let end = (first + 64).min(s.len());
        let classes = match s[first..].first_chunk::<64>() {
            Some(chunk) => Classes::of(chunk),
            None => {
                let mut padded = [0u8; 64];
                padded[..end - first].copy_from_slice(&s[first..end]);
                Classes::of(&padded)
            }
        };
        let boundary = !(classes.word << 1);
        let skip = i - first;
        let start = (likely_starts(&classes, end < s.len(), self.enabled) & boundary) >> skip;
        let local = self.local_runs(i, end);
        self.base = i;
        self.span = end - i;
        self.loaded = true;
        self.local = local;
        self.starts = start;
        self.candidates = start | local & (boundary >> skip);
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
                if run <= 3 && after == Some(&b'.') && before != Some(b'.') && !version && ipv4_at(s, i) {
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

    /// At every position after a non-word byte where the shape tests find a detector, the
    /// chunk's bits say a pattern may start, wherever in a chunk the position falls (first
    /// byte, middle, near the end where the bytes after it are not loaded) and for every
    /// detector alone: the vector pass only ever leaves out positions that cannot match.
    #[test]
    fn likely_starts_hold_every_shape() {
        let mut next = super::super::tests::random(0x9E37_79B9_7F4A_7C15);
        const PIECES: &[&str] = &[
            " ", "  ", ".", "-", "/", "//", ":", "::", "+", "(", ")", "_", "\"", "x", "0", "00", "1", "12", "13", "2",
            "7", "42", "203", "555", "4111", "1234 ", "a1f", "fe80", "db8:", "GB", "WEST", "eyJ", "Bearer ",
            "bearer\t", "AKIA", "ASIA", "E", "y", "ü", "Chrome/", "10.", "138 ",
        ];
        let mut shapes_seen = 0;
        let all = Detector::ALL.iter().fold(0, |m, d| m | bit(*d));
        let sets: Vec<DetectorSet> = Detector::ALL.iter().map(|d| bit(*d)).chain([all]).collect();
        for round in 0..3000 {
            let mut t = String::new();
            while t.len() < 40 + round % 150 {
                t.push_str(PIECES[next(PIECES.len())]);
            }
            let s = t.as_bytes();
            for &enabled in &sets {
                let mut starts = Starts::new(s, enabled);
                for i in 0..s.len() {
                    if i > 0 && (s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'_') {
                        continue;
                    }
                    let shapes = starts.shapes(i) & enabled;
                    if shapes == 0 {
                        continue;
                    }
                    shapes_seen += 1;
                    for base in [i, i.saturating_sub(1 + next(60)), i.saturating_sub(61)] {
                        starts.loaded = false;
                        starts.load_for(base);
                        assert!(i < base + starts.span, "a chunk covers 62 bytes at least");
                        assert!(
                            starts.starts >> (i - base) & 1 == 1,
                            "detectors {enabled:#b}: {shapes:#b} at {i} ({:?}) of {t:?}, chunk from {base}",
                            &t[i..]
                        );
                    }
                }
            }
        }
        assert!(shapes_seen > 10_000, "only {shapes_seen} shapes in the texts");
    }
}
