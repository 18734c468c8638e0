//! An event's JSON text through the masking rules (`logyard_core::mask`): every built-in
//! detector and a custom pattern, with the action and the fields the first byte picks.
//!
//! Invariants: nothing panics; the scan that runs the regex only where a detector may start
//! finds what an unanchored search of the whole text finds; a masked event is still a JSON object that `check_line`
//! accepts, with the same time and time field; the counts are zero exactly when nothing
//! changed. (Masking is not idempotent: a phone number glued to a card number is no match
//! until the card is masked; the fuzzer found that, and its input is a seed.)

#![no_main]

use libfuzzer_sys::fuzz_target;
use logyard_core::event::check_line;
use std::sync::{Arc, OnceLock};

use logyard_core::mask::{Action, MaskRule, Masker, Masking};

/// The maskers the low four bits of the first byte pick, compiled once.
fn maskers() -> &'static [Arc<Masker>] {
    static MASKERS: OnceLock<Vec<Arc<Masker>>> = OnceLock::new();
    MASKERS.get_or_init(|| {
        (0u8..16)
            .map(|selector| {
                let action = [Action::Redact, Action::Hash, Action::Truncate, Action::Drop][(selector & 3) as usize];
                let fields = if selector & 4 == 0 { Vec::new() } else { vec!["message".to_owned(), "user".to_owned()] };
                let rule = MaskRule {
                    streams: vec!["*".into()],
                    detectors: vec!["default".into()],
                    regex: (selector & 8 != 0).then(|| "c-[0-9]{6}".to_owned()),
                    name: Some("customer".into()),
                    action: Some(action),
                    fields,
                };
                let masking = Masking::new(vec![rule], Some(vec![1; 32])).expect("the rule is valid");
                masking.for_stream("s").expect("every stream")
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, line)) = data.split_first() else { return };
    if let Ok(text) = std::str::from_utf8(line) {
        let masker = &maskers()[(selector & 15) as usize];
        assert!(masker.scans_agree(text), "the scans differ on {text:?}");
    }
    let Ok(checked) = check_line(line, 0) else { return };
    let Ok(text) = std::str::from_utf8(line) else { return };
    let masker = maskers()[(selector & 15) as usize].clone();
    let field = checked.source.field();
    let first = masker.mask(text, field);
    let total: u32 = first.counts.iter().sum();
    let Some(masked) = first.text else {
        assert_eq!(total, 0, "counted but unchanged: {text}");
        return;
    };
    let again = check_line(masked.as_bytes(), 0).unwrap_or_else(|e| panic!("{masked:?} from {text:?}: {e}"));
    assert_eq!((again.time, again.source), (checked.time, checked.source), "{masked:?} from {text:?}");
    assert!(total > 0, "changed without counting: {text:?} -> {masked:?}");
});
