//! Event times as text: RFC 3339, naive ISO 8601, epoch digits.
//!
//! Invariants: nothing panics; a time that parses is one the partition date and RFC 3339
//! rendering can represent, and RFC 3339 output parses back to the same microsecond.

#![no_main]

use libfuzzer_sys::fuzz_target;
use logyard_core::time::{date_string, days_since_epoch, parse_time_str, parse_time_value, rfc3339};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    check(parse_time_str(text));
    // The same text as a JSON value (a number or a string), as events carry it.
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text)
        && (value.is_number() || value.is_string())
    {
        check(parse_time_value(&value));
    }
});

fn check(parsed: Option<i64>) {
    let Some(micros) = parsed else { return };
    let text = rfc3339(micros);
    assert_eq!(parse_time_str(&text), Some(micros), "{micros} rendered as {text}");
    let date = date_string(micros);
    assert_eq!(&text[..date.len()], date, "the partition date of {micros}");
    let _ = days_since_epoch(micros);
}
