//! Masking personal data in events before they are written anywhere.
//!
//! Rules (`[[masking.rules]]`) pick streams, what to look for (built-in [`Detector`]s or a
//! regular expression of the shop's own) and what to do with it ([`Action`]): `redact`
//! replaces the value with its kind (`[email]`), `hash` with a keyed HMAC-SHA-256 of its
//! canonical form (so equal values still group and join, and cannot be recovered without the
//! key), `truncate` keeps a shortened form (an address's /24 or /48 network, a card's last
//! four digits), `drop` removes the field. A rule applies to the fields it names (column
//! names, `user.email`; a name covers the fields under it) or to every string field.
//!
//! One [`Masker`] per stream holds every pattern of the rules that apply to it, compiled into
//! one multi-pattern regex; an event is scanned once, and its JSON text is rewritten only
//! where something was found.

mod classes;
mod detect;
mod json;
mod starts;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, KeyInit, Mac};
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, PatternID, meta};
use serde::Deserialize;
use sha2::Sha256;

pub use detect::Detector;

use crate::encoded::{EventsDecoder, EventsEncoder};
use crate::stream::{glob_match, is_stream_pattern};
use json::Walk;
use starts::{DetectorSet, Starts};

/// 32 hex digits of HMAC-SHA-256 under `key` of `kind:value`: what the `hash` action writes
/// (`kind` names the detector or pattern) and what a token's `mask_fields` read (`kind`
/// `field`).
pub fn keyed_hash(key: &[u8], kind: &str, value: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(kind.as_bytes());
    mac.update(b":");
    mac.update(value.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// What masking made of one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskedValue {
    /// Nothing found (or nothing a rule for this column masks).
    Unchanged,
    Text(String),
    /// A `drop` rule found something: the field goes.
    Drop,
}

/// What happens to a value a rule finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Replaced by its kind: `[email]`, `[card]`, `[ip]`, or a custom rule's `[name]`.
    Redact,
    /// Replaced by 32 hex digits of HMAC-SHA-256 under the masking key.
    Hash,
    /// Shortened (see [`Detector`]); kinds without a short form are redacted.
    Truncate,
    /// The field holding it is removed.
    Drop,
}

/// One `[[masking.rules]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskRule {
    /// Stream names or globs; every stream when left out.
    #[serde(default = "every_stream")]
    pub streams: Vec<String>,
    /// Built-in detectors by name, or `"default"` for all of them.
    #[serde(default)]
    pub detectors: Vec<String>,
    /// A pattern of one's own (Rust regex syntax), besides or instead of the detectors.
    pub regex: Option<String>,
    /// What the custom pattern's values are called in `[name]` (default `redacted`).
    pub name: Option<String>,
    /// Default: each detector's own (`truncate` for `ip` and `card`, `redact` for the others);
    /// `redact` for a custom pattern.
    pub action: Option<Action>,
    /// Columns the rule applies to (`email`, `user.email`); every field when empty.
    #[serde(default)]
    pub fields: Vec<String>,
}

fn every_stream() -> Vec<String> {
    vec!["*".to_owned()]
}

/// A configuration mistake, naming the rule.
#[derive(Debug, thiserror::Error)]
#[error("masking.rules[{rule}]: {message}")]
pub struct MaskError {
    pub rule: usize,
    pub message: String,
}

/// Values masked, by kind: the detectors in [`Detector::ALL`] order, then custom patterns.
pub type MaskCounts = [u32; COUNTED];

pub const COUNTED: usize = Detector::ALL.len() + 1;

/// The name of each [`MaskCounts`] slot.
pub fn count_name(slot: usize) -> &'static str {
    Detector::ALL.get(slot).map_or("custom", |d| d.name())
}

/// Where a match lies in the scanned text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

/// A checked match of one pattern.
#[derive(Debug, Clone, Copy)]
struct Found {
    span: Span,
    pattern: usize,
}

#[derive(Debug, Clone)]
enum Kind {
    Detector(Detector),
    Custom(String),
}

impl Kind {
    fn slot(&self) -> usize {
        match self {
            Kind::Detector(d) => Detector::ALL.iter().position(|x| x == d).expect("every detector is listed"),
            Kind::Custom(_) => Detector::ALL.len(),
        }
    }

    fn label(&self) -> String {
        match self {
            Kind::Detector(d) => format!("[{}]", d.name()),
            Kind::Custom(name) => format!("[{name}]"),
        }
    }
}

#[derive(Debug, Clone)]
struct Pattern {
    kind: Kind,
    action: Action,
    /// Empty: every field.
    fields: Arc<[String]>,
}

impl Pattern {
    fn applies_to(&self, path: &str) -> bool {
        self.fields.is_empty()
            || self
                .fields
                .iter()
                .any(|f| path.strip_prefix(f.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('.')))
    }
}

/// The rules that apply to one stream, compiled.
#[derive(Debug)]
pub struct Masker {
    regex: meta::Regex,
    patterns: Vec<Pattern>,
    /// The detector of each pattern, as a [`DetectorSet`] bit (0 for a custom pattern).
    detector_bits: Vec<DetectorSet>,
    /// The detectors of all patterns.
    enabled: DetectorSet,
    key: Option<Arc<[u8]>>,
    /// Some rule names the fields it applies to: a value's column name is needed.
    names_fields: bool,
    /// No rule names fields, drops them or has a pattern of its own: an event's matches can
    /// be masked without walking its JSON ([`json::quick`]).
    quick: bool,
    /// Some pattern is the shop's own: it may match across JSON tokens, so each value is
    /// scanned alone instead of the whole text at once, and anywhere in it.
    custom: bool,
}

/// One event's masking.
#[derive(Debug)]
pub struct Masked {
    /// The new text; `None` when nothing was masked.
    pub text: Option<String>,
    pub counts: MaskCounts,
}

/// A request's events after masking.
#[derive(Debug)]
pub struct MaskedEvents {
    /// `None` when no event changed.
    pub events: Option<EventsEncoder>,
    pub counts: MaskCounts,
}

impl Masker {
    fn new(rules: &[(usize, &MaskRule)], key: Option<Arc<[u8]>>) -> Result<Self, MaskError> {
        let mut sources: Vec<String> = Vec::new();
        let mut patterns = Vec::new();
        for &(i, rule) in rules {
            if let Some(regex) = &rule.regex {
                let name = rule.name.clone().unwrap_or_else(|| "redacted".into());
                sources.push(regex.clone());
                let action = rule.action.unwrap_or(Action::Redact);
                patterns.push((i, Pattern { kind: Kind::Custom(name), action, fields: rule.fields.clone().into() }));
            }
        }
        for &(i, rule) in rules {
            for detector in detectors_of(i, rule)? {
                let action = rule.action.unwrap_or(match detector {
                    Detector::Ip | Detector::Card => Action::Truncate,
                    _ => Action::Redact,
                });
                for p in detector.patterns() {
                    sources.push((*p).to_owned());
                    patterns.push((
                        i,
                        Pattern { kind: Kind::Detector(detector), action, fields: rule.fields.clone().into() },
                    ));
                }
            }
        }
        // Where several patterns match at one place, rules naming fields come before rules
        // for every field (`hash` for `customer_email`, `redact` elsewhere), and custom
        // patterns before the built-in ones.
        let order: Vec<usize> = {
            let mut order: Vec<usize> = (0..patterns.len()).collect();
            order.sort_by_key(|&i| (patterns[i].1.fields.is_empty(), matches!(patterns[i].1.kind, Kind::Detector(_))));
            order
        };
        let sources: Vec<String> = order.iter().map(|&i| sources[i].clone()).collect();
        let patterns: Vec<(usize, Pattern)> = order.iter().map(|&i| patterns[i].clone()).collect();
        let custom = patterns.iter().any(|(_, p)| matches!(p.kind, Kind::Custom(_)));
        let regex = meta::Regex::builder()
            .configure(meta::Config::new().match_kind(regex_automata::MatchKind::LeftmostFirst))
            .syntax(syntax::Config::new())
            .build_many(&sources)
            .map_err(|e| {
                let rule = e.pattern().and_then(|p| patterns.get(p.as_usize())).map_or(0, |(i, _)| *i);
                MaskError { rule, message: format!("invalid regex: {e}") }
            })?;
        let patterns: Vec<Pattern> = patterns.into_iter().map(|(_, p)| p).collect();
        let detector_bits: Vec<DetectorSet> = patterns
            .iter()
            .map(|p| match p.kind {
                Kind::Detector(d) => starts::bit(d),
                Kind::Custom(_) => 0,
            })
            .collect();
        let enabled = detector_bits.iter().fold(0, |all, b| all | b);
        let names_fields = patterns.iter().any(|p| !p.fields.is_empty());
        let quick = !names_fields && !custom && patterns.iter().all(|p| p.action != Action::Drop);
        Ok(Masker { regex, patterns, detector_bits, enabled, key, names_fields, quick, custom })
    }

    fn scans_values(&self) -> bool {
        self.custom
    }

    fn accepts(&self, s: &[u8], m: &regex_automata::Match) -> bool {
        if m.is_empty() {
            return false;
        }
        match &self.patterns[m.pattern().as_usize()].kind {
            Kind::Detector(d) => d.accepts(s, m.start(), m.end()),
            Kind::Custom(_) => true,
        }
    }

    /// Every checked match in `s`, in order, none overlapping. The regex engine finds the
    /// literal every match of the e-mail, JWT, bearer and AWS key patterns holds ('@', "eyJ",
    /// ...) faster than [`Starts`] walks the text: a masker with only those searches the
    /// whole text.
    fn scan(&self, s: &str, out: &mut Vec<Found>) {
        const LITERAL: DetectorSet = starts::bit(Detector::Email)
            | starts::bit(Detector::Jwt)
            | starts::bit(Detector::Bearer)
            | starts::bit(Detector::AwsKey);
        if self.custom || self.enabled & !LITERAL == 0 {
            self.scan_unanchored(s, out);
        } else {
            self.scan_starts(s, out);
        }
    }

    /// [`Masker::scan`] for built-in detectors only: the regex runs anchored where
    /// [`Starts`] finds that a detector may match.
    fn scan_starts(&self, s: &str, out: &mut Vec<Found>) {
        let bytes = s.as_bytes();
        let mut starts = Starts::new(bytes, self.enabled);
        let (mut at, mut after_match) = (0, false);
        while let Some((i, may)) = starts.next(at, after_match) {
            match self.anchored(bytes, i, may) {
                Some(hit) => {
                    out.push(hit);
                    (at, after_match) = (hit.span.end, true);
                }
                None => (at, after_match) = (i + 1, false),
            }
        }
    }

    /// The first checked match at `i` of the patterns of the detectors in `may`.
    fn anchored(&self, bytes: &[u8], i: usize, may: DetectorSet) -> Option<Found> {
        let found = |m: regex_automata::Match| Found {
            span: Span { start: m.start(), end: m.end() },
            pattern: m.pattern().as_usize(),
        };
        let first = self.regex.search(&Input::new(bytes).range(i..).anchored(Anchored::Yes))?;
        if self.accepts(bytes, &first) {
            return Some(found(first));
        }
        (0..self.patterns.len())
            .filter(|&p| p != first.pattern().as_usize() && self.detector_bits[p] & may != 0)
            .find_map(|p| {
                let input = Input::new(bytes).range(i..).anchored(Anchored::Pattern(PatternID::must(p)));
                self.regex.search(&input).filter(|m| self.accepts(bytes, m)).map(found)
            })
    }

    /// Whether the scan at likely starts finds what an unanchored search finds in `text` (for
    /// the fuzz target; a masker with custom patterns, or only literal-led detectors, always
    /// uses the latter).
    #[doc(hidden)]
    pub fn scans_agree(&self, text: &str) -> bool {
        let (mut fast, mut full) = (Vec::new(), Vec::new());
        self.scan(text, &mut fast);
        self.scan_unanchored(text, &mut full);
        let spans = |f: &[Found]| f.iter().map(|f| (f.span, f.pattern)).collect::<Vec<_>>();
        spans(&fast) == spans(&full)
    }

    /// [`Masker::scan`] by unanchored searches of the whole text (custom patterns match
    /// anywhere).
    fn scan_unanchored(&self, s: &str, out: &mut Vec<Found>) {
        let bytes = s.as_bytes();
        let mut at = 0;
        while at < bytes.len() {
            let Some(m) = self.regex.search(&Input::new(bytes).range(at..)) else { break };
            let hit = if self.accepts(bytes, &m) {
                Some(m)
            } else {
                // Another pattern may match here where the first one's check failed.
                (0..self.patterns.len()).filter(|&p| p != m.pattern().as_usize()).find_map(|p| {
                    let anchored = Input::new(bytes).range(m.start()..).anchored(Anchored::Pattern(PatternID::must(p)));
                    self.regex.search(&anchored).filter(|o| self.accepts(bytes, o))
                })
            };
            match hit {
                Some(h) => {
                    out.push(Found { span: Span { start: h.start(), end: h.end() }, pattern: h.pattern().as_usize() });
                    at = h.end();
                }
                None => at = self.next_start(bytes, m.start()),
            }
        }
    }

    /// Where a match may start after a failed one at `start`: the built-in detectors start
    /// only after a byte that is not part of a word; custom patterns anywhere.
    fn next_start(&self, bytes: &[u8], start: usize) -> usize {
        let mut i = start + 1;
        while i < bytes.len() {
            let boundary = bytes[i] & 0xC0 != 0x80;
            let after_word = bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_';
            if boundary && (self.custom || !after_word) {
                break;
            }
            i += 1;
        }
        i
    }

    /// Masks what `found` holds in `content`, the value of column `path`. In a number, only a
    /// match of the whole number counts.
    fn apply(&self, content: &str, found: &[Found], path: &str, number: bool, counts: &mut MaskCounts) -> MaskedValue {
        let mut out = String::with_capacity(content.len() + 16);
        let mut copied = 0;
        for f in found {
            if f.span.start < copied {
                continue;
            }
            let f = if self.patterns[f.pattern].applies_to(path) {
                *f
            } else {
                // The pattern found here belongs to a rule for other fields; another rule's
                // may apply to this one.
                match self.for_field(content.as_bytes(), f.span.start, path) {
                    Some(other) => other,
                    None => continue,
                }
            };
            let p = &self.patterns[f.pattern];
            if number && (f.span.start > 0 || f.span.end < content.len()) {
                continue;
            }
            let m = &content[f.span.start..f.span.end];
            let with = match (p.action, &p.kind) {
                (Action::Drop, _) => {
                    counts[p.kind.slot()] += 1;
                    return MaskedValue::Drop;
                }
                (Action::Redact, kind) => kind.label(),
                (Action::Hash, Kind::Detector(d)) => self.hash(d.name(), &d.canonical(m)),
                (Action::Hash, Kind::Custom(name)) => self.hash(name, m),
                (Action::Truncate, Kind::Detector(d)) => d.truncated(m).unwrap_or_else(|| p.kind.label()),
                (Action::Truncate, kind) => kind.label(),
            };
            if with == m {
                // Already in its short form (`203.0.113.0`).
                continue;
            }
            counts[p.kind.slot()] += 1;
            out.push_str(&content[copied..f.span.start]);
            out.push_str(&with);
            copied = f.span.end;
        }
        if out.is_empty() && copied == 0 {
            return MaskedValue::Unchanged;
        }
        out.push_str(&content[copied..]);
        MaskedValue::Text(out)
    }

    /// The first pattern that applies to `path` and matches (checked) at `start`.
    fn for_field(&self, s: &[u8], start: usize, path: &str) -> Option<Found> {
        (0..self.patterns.len()).filter(|&p| self.patterns[p].applies_to(path)).find_map(|p| {
            let anchored = Input::new(s).range(start..).anchored(Anchored::Pattern(PatternID::must(p)));
            let m = self.regex.search(&anchored).filter(|m| self.accepts(s, m))?;
            Some(Found { span: Span { start: m.start(), end: m.end() }, pattern: p })
        })
    }

    fn hash(&self, kind: &str, value: &str) -> String {
        keyed_hash(self.key.as_deref().expect("rules that hash have a key (checked at load)"), kind, value)
    }

    /// Masks one value of column `column` (a typed column, such as an ALB log's), counting
    /// what it masks into `counts`.
    pub fn mask_value(&self, column: &str, value: &str, counts: &mut MaskCounts) -> MaskedValue {
        let mut found = Vec::new();
        self.scan(value, &mut found);
        if found.is_empty() {
            return MaskedValue::Unchanged;
        }
        self.apply(value, &found, column, false, counts)
    }

    /// Masks one event's JSON text (checked at ingest); `time_field` is the top-level key
    /// its time came from, which is left alone.
    pub fn mask(&self, text: &str, time_field: Option<&str>) -> Masked {
        let mut found = Vec::new();
        let escapes = memchr::memchr(b'\\', text.as_bytes()).is_some();
        if !self.custom {
            self.scan(text, &mut found);
            if found.is_empty() && !escapes {
                return Masked { text: None, counts: [0; COUNTED] };
            }
        }
        if self.quick
            && !escapes
            && let Some((text, counts)) = json::quick(self, text, &found, time_field)
        {
            return Masked { text, counts };
        }
        let (text, counts) = Walk::new(self, text, &found, time_field).run();
        Masked { text, counts }
    }

    /// Masks encoded events ([`EventsEncoder`]'s bytes). Nothing is copied until an event
    /// changes.
    pub fn mask_events(&self, encoded: &[u8]) -> Result<MaskedEvents, String> {
        let mut out: Option<EventsEncoder> = None;
        let mut counts = [0; COUNTED];
        let mut decoder = EventsDecoder::new(encoded);
        let mut leaves = Vec::new();
        let mut n = 0;
        while let Some(event) = decoder.next_with_leaves(&mut leaves) {
            let event = event?;
            let masked = self.mask(event.text, event.source.field());
            for (total, k) in counts.iter_mut().zip(masked.counts) {
                *total += k;
            }
            match (masked.text, &mut out) {
                (Some(text), None) => {
                    // The first change: the events before it go in as they were.
                    let mut o = EventsEncoder::with_capacity(encoded.len() + encoded.len() / 8);
                    let mut before = EventsDecoder::new(encoded);
                    let mut before_leaves = Vec::new();
                    for _ in 0..n {
                        let e = before.next_with_leaves(&mut before_leaves).ok_or("an event vanished")??;
                        o.push_decoded(&e, &before_leaves, before.paths())?;
                        before_leaves.clear();
                    }
                    o.push(event.time, event.source, &text).map_err(|e| format!("masked event: {e}"))?;
                    out = Some(o);
                }
                (Some(text), Some(o)) => {
                    o.push(event.time, event.source, &text).map_err(|e| format!("masked event: {e}"))?
                }
                (None, Some(o)) => o.push_decoded(&event, &leaves, decoder.paths())?,
                (None, None) => {}
            }
            leaves.clear();
            n += 1;
        }
        Ok(MaskedEvents { events: out, counts })
    }
}

fn detectors_of(i: usize, rule: &MaskRule) -> Result<Vec<Detector>, MaskError> {
    let mut out = Vec::new();
    for name in &rule.detectors {
        if name == "default" {
            out.extend(Detector::ALL);
            continue;
        }
        match Detector::from_name(name) {
            Some(d) => out.push(d),
            None => {
                let known: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
                return Err(MaskError {
                    rule: i,
                    message: format!("unknown detector {name:?}: use {} or \"default\"", known.join(", ")),
                });
            }
        }
    }
    // In the order of `Detector::ALL`: the one tried first where two match at one place.
    out.sort_by_key(|d| Detector::ALL.iter().position(|x| x == d));
    out.dedup();
    Ok(out)
}

/// Every stream's masking: the rules, and a [`Masker`] per stream compiled when the stream
/// first needs it.
#[derive(Debug, Default)]
pub struct Masking {
    rules: Vec<MaskRule>,
    key: Option<Arc<[u8]>>,
    /// Streams whose archive keeps what was sent, unmasked.
    keep_originals: Vec<String>,
    by_stream: Mutex<HashMap<String, Option<Arc<Masker>>>>,
}

impl Masking {
    /// Checks the rules (every one is compiled once here, so a mistake stops the start).
    /// `key`: the secret of the `hash` action.
    pub fn new(rules: Vec<MaskRule>, key: Option<Vec<u8>>) -> Result<Self, MaskError> {
        Self::keeping_originals(rules, key, Vec::new())
    }

    /// [`Masking::new`], with the streams (names or globs) whose archive keeps the request
    /// bodies and uploaded files as they were sent, unmasked.
    pub fn keeping_originals(
        rules: Vec<MaskRule>,
        key: Option<Vec<u8>>,
        keep_originals: Vec<String>,
    ) -> Result<Self, MaskError> {
        for (i, rule) in rules.iter().enumerate() {
            let fail = |message: String| Err(MaskError { rule: i, message });
            if let Some(p) = rule.streams.iter().find(|p| !is_stream_pattern(p)) {
                return fail(format!("{p:?} is not a stream name or glob"));
            }
            if rule.detectors.is_empty() && rule.regex.is_none() {
                return fail("give `detectors` (or \"default\"), a `regex`, or both".into());
            }
            if let Some(name) = &rule.name
                && (name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
            {
                return fail(format!("name {name:?}: use a-z, 0-9 and '_'"));
            }
            if rule.action == Some(Action::Hash) && key.as_ref().is_none_or(|k| k.is_empty()) {
                return fail("action \"hash\" needs a key: set masking.key_file".into());
            }
            if rule.action == Some(Action::Truncate) && rule.detectors.is_empty() {
                return fail(
                    "action \"truncate\" has no short form for a custom pattern: use redact, hash or drop".into(),
                );
            }
            if let Some(f) = rule.fields.iter().find(|f| f.is_empty()) {
                return fail(format!("field name {f:?} is empty"));
            }
        }
        let key: Option<Arc<[u8]>> = key.map(Into::into);
        // Every rule alone (for an error naming it), then all of them together: a stream's
        // masker holds a subset of them, which compiles when the whole set does.
        let all: Vec<(usize, &MaskRule)> = rules.iter().enumerate().collect();
        for rule in &all {
            Masker::new(std::slice::from_ref(rule), key.clone())?;
        }
        if !all.is_empty() {
            Masker::new(&all, key.clone())?;
        }
        Ok(Masking { rules, key, keep_originals, by_stream: Mutex::new(HashMap::new()) })
    }

    /// Whether any rule exists.
    /// The masking key (`masking.key_file`), if there is one.
    pub fn key(&self) -> Option<Arc<[u8]>> {
        self.key.clone()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether what `stream`'s senders sent (request bodies, uploaded files) may be archived
    /// as it was: no rule masks the stream, or `keep_originals` names it.
    pub fn archives_originals(&self, stream: &str) -> bool {
        self.keep_originals.iter().any(|p| glob_match(p, stream)) || self.for_stream(stream).is_none()
    }

    /// The masker of `stream`; `None` when no rule applies to it.
    pub fn for_stream(&self, stream: &str) -> Option<Arc<Masker>> {
        if self.rules.is_empty() {
            return None;
        }
        let mut cache = self.by_stream.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = cache.get(stream) {
            return m.clone();
        }
        let rules: Vec<(usize, &MaskRule)> =
            self.rules.iter().enumerate().filter(|(_, r)| r.streams.iter().any(|p| glob_match(p, stream))).collect();
        let masker = if rules.is_empty() {
            None
        } else {
            // A subset of the rules compiled together at load.
            Some(Arc::new(Masker::new(&rules, self.key.clone()).expect("rules were checked at load")))
        };
        cache.insert(stream.to_owned(), masker.clone());
        masker
    }
}

#[cfg(test)]
mod tests;
