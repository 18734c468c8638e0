//! Event time: which field carries it, how it is parsed, and the UTC date it falls on.
//!
//! Accepted forms: RFC 3339 (`2026-11-25T14:03:07.123Z`, any offset), the same without an
//! offset or with a space instead of `T` (read as UTC), and epoch numbers (JSON numbers or
//! digit strings) in seconds, milliseconds, microseconds or nanoseconds, told apart by
//! magnitude: below 1e11 seconds, below 1e14 milliseconds, below 1e17 microseconds, else
//! nanoseconds. Fractions are kept to the microsecond. Times outside the years 0001 to 9999
//! (which RFC 3339 can write, and every reader of the tables can read) are not times.

use chrono::{DateTime, NaiveDateTime};

/// The fields that may carry an event's time, in order of preference.
pub const TIME_FIELDS: [&str; 4] = ["timestamp", "@timestamp", "time", "ts"];

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z.
const EARLIEST: Micros = -62_135_596_800_000_000;
const LATEST: Micros = 253_402_300_799_999_999;

fn in_range(micros: Micros) -> Option<Micros> {
    (EARLIEST..=LATEST).contains(&micros).then_some(micros)
}

/// Parses a JSON value (already known to be a string or a number) as an event time.
pub fn parse_time_value(value: &serde_json::Value) -> Option<Micros> {
    let micros = match value {
        serde_json::Value::String(s) => parse_time_str(s),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                epoch_int_to_micros(i)
            } else {
                n.as_f64().and_then(epoch_float_to_micros)
            }
        }
        _ => None,
    };
    micros.and_then(in_range)
}

/// Parses a textual time: RFC 3339, naive ISO 8601 (UTC), or epoch digits.
pub fn parse_time_str(s: &str) -> Option<Micros> {
    parse_text(s).and_then(in_range)
}

fn parse_text(s: &str) -> Option<Micros> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(micros) = rfc3339_fast(s) {
        return Some(micros);
    }
    let b = s.as_bytes();
    if b.iter().all(|c| c.is_ascii_digit())
        || (b[0] == b'-' && b.len() > 1 && b[1..].iter().all(|c| c.is_ascii_digit()))
    {
        return s.parse::<i64>().ok().and_then(epoch_int_to_micros);
    }
    if b.iter().all(|c| c.is_ascii_digit() || *c == b'.') {
        return s.parse::<f64>().ok().and_then(epoch_float_to_micros);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_micros());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.and_utc().timestamp_micros());
        }
    }
    // `2026-11-25 14:03:07.123+01:00` and `...Z` with a space separator.
    if let Some(pos) = s.find(' ')
        && pos == 10
    {
        let mut t = s.to_owned();
        t.replace_range(10..11, "T");
        if let Ok(dt) = DateTime::parse_from_rfc3339(&t) {
            return Some(dt.timestamp_micros());
        }
    }
    None
}

/// [`parse_time_str`] of the form nearly every shipper (and ALB) writes; `None` for any other
/// form, which only the general parser reads.
pub(crate) fn parse_rfc3339_fast(s: &str) -> Option<Micros> {
    rfc3339_fast(s).and_then(in_range)
}

/// The form nearly every shipper writes, `2026-11-25T14:03:07.123Z` (a fraction of 1 to 9
/// digits, or none; `Z` or `±HH:MM`), read without chrono's general parser. `None` for
/// anything else, which [`parse_text`] then reads the general way (leap seconds included).
fn rfc3339_fast(s: &str) -> Option<Micros> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |n, c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0;
    if b[i] == b'.' {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        let kept = digits.min(6);
        micros = num(i + 1..i + 1 + kept)? * 10i64.pow((6 - kept) as u32);
        i += 1 + digits;
    }
    let offset = match &b[i..] {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let seconds = h * 3600 + m * 60;
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(seconds * 1_000_000 + micros)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn epoch_int_to_micros(v: i64) -> Option<Micros> {
    let a = v.unsigned_abs();
    if a < 100_000_000_000 {
        v.checked_mul(1_000_000)
    } else if a < 100_000_000_000_000 {
        v.checked_mul(1_000)
    } else if a < 100_000_000_000_000_000 {
        Some(v)
    } else {
        Some(v / 1_000)
    }
}

fn epoch_float_to_micros(v: f64) -> Option<Micros> {
    if !v.is_finite() {
        return None;
    }
    let a = v.abs();
    let micros = if a < 1e11 {
        v * 1e6
    } else if a < 1e14 {
        v * 1e3
    } else if a < 1e17 {
        v
    } else {
        v / 1e3
    };
    if micros.abs() < 9.2e18 { Some(micros.round() as i64) } else { None }
}

/// Days since 1970-01-01 of a UTC microsecond timestamp (the `date` partition value).
pub fn days_since_epoch(micros: Micros) -> i32 {
    micros.div_euclid(MICROS_PER_DAY) as i32
}

/// `YYYY-MM-DD` of a UTC microsecond timestamp.
pub fn date_string(micros: Micros) -> String {
    match DateTime::from_timestamp_micros(micros) {
        Some(dt) => dt.format("%Y-%m-%d").to_string(),
        None => "1970-01-01".to_owned(),
    }
}

/// RFC 3339 with microseconds, `Z` for UTC.
pub fn rfc3339(micros: Micros) -> String {
    match DateTime::from_timestamp_micros(micros) {
        Some(dt) => dt.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        None => micros.to_string(),
    }
}

/// The current time in UTC microseconds.
pub fn now_micros() -> Micros {
    chrono::Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: i64 = 1_764_079_387_000_000; // 2025-11-25T14:03:07Z

    /// Found by fuzzing (fuzz/README.md): a 22-digit epoch number read as nanoseconds fell in
    /// the year 57880, which no RFC 3339 text or table reader represents.
    #[test]
    fn times_outside_years_1_to_9999_are_not_times() {
        assert_eq!(parse_time_value(&serde_json::from_str("1764350287264307430726").unwrap()), None);
        assert_eq!(parse_time_str("1764350287264307430726"), None);
        assert_eq!(parse_time_str("-99999999999999999"), None);
        assert_eq!(parse_time_str("9999-12-31T23:59:59.999999Z"), Some(LATEST));
        assert_eq!(parse_time_str("0001-01-01T00:00:00Z"), Some(EARLIEST));
        assert_eq!(parse_time_str(&rfc3339(LATEST)), Some(LATEST));
        assert_eq!(parse_time_str(&rfc3339(EARLIEST)), Some(EARLIEST));
    }

    #[test]
    fn rfc3339_with_offsets_and_fractions() {
        assert_eq!(parse_time_str("2025-11-25T14:03:07Z"), Some(T));
        assert_eq!(parse_time_str("2025-11-25T15:03:07+01:00"), Some(T));
        assert_eq!(parse_time_str("2025-11-25T14:03:07.123456Z"), Some(T + 123_456));
        assert_eq!(parse_time_str("2025-11-25T14:03:07.123456789Z"), Some(T + 123_456));
        assert_eq!(parse_time_str("2025-11-25 14:03:07"), Some(T));
        assert_eq!(parse_time_str("2025-11-25T14:03:07.5"), Some(T + 500_000));
        assert_eq!(parse_time_str("2025-11-25 15:03:07+01:00"), Some(T));
    }

    /// The fast reader of the common form agrees with chrono's RFC 3339 parser on every text
    /// it accepts, and accepts every text of that form chrono does (but leap seconds).
    #[test]
    fn the_common_form_is_read_as_chrono_reads_it() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let (mut fast_read, mut tried) = (0, 0);
        for _ in 0..200_000 {
            let (second, digits, hours, minutes) = (next(61), next(11), next(26), next(61));
            let fraction: String = (0..digits).map(|_| char::from(b'0' + next(10) as u8)).collect();
            let offset = match next(3) {
                0 => "Z".to_owned(),
                1 => format!("+{hours:02}:{minutes:02}"),
                _ => format!("-{hours:02}:{minutes:02}"),
            };
            let text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{second:02}{}{}{offset}",
                next(10_000),
                next(14),
                next(33),
                next(25),
                next(61),
                if digits > 0 || next(4) == 0 { "." } else { "" },
                fraction,
            );
            let chrono = DateTime::parse_from_rfc3339(&text).ok().map(|t| t.timestamp_micros());
            let fast = rfc3339_fast(&text);
            tried += 1;
            if let Some(micros) = fast {
                fast_read += 1;
                assert_eq!(Some(micros), chrono, "{text}");
            } else if chrono.is_some() && second < 60 && (1..=9).contains(&digits) && hours < 24 && minutes < 60 {
                panic!("{text}: read by chrono, not by the fast reader");
            }
        }
        assert!(fast_read * 10 > tried, "the fast reader read {fast_read} of {tried}");
        assert_eq!(rfc3339_fast("2025-11-25T14:03:07Z"), Some(T));
        assert_eq!(rfc3339_fast("1969-12-31T23:59:59.999999-00:00"), Some(-1));
        assert_eq!(rfc3339_fast("2024-02-29T00:00:00Z").map(days_since_epoch), Some(19_782));
        assert_eq!(rfc3339_fast("2023-02-29T00:00:00Z"), None);
    }

    #[test]
    fn epoch_numbers_by_magnitude() {
        assert_eq!(parse_time_value(&json!(1_764_079_387)), Some(T));
        assert_eq!(parse_time_value(&json!(1_764_079_387_000_i64)), Some(T));
        assert_eq!(parse_time_value(&json!(1_764_079_387_000_000_i64)), Some(T));
        assert_eq!(parse_time_value(&json!(1_764_079_387_000_000_000_i64)), Some(T));
        assert_eq!(parse_time_value(&json!(1_764_079_387.25)), Some(T + 250_000));
        assert_eq!(parse_time_value(&json!("1764079387")), Some(T));
        assert_eq!(parse_time_value(&json!("1764079387.5")), Some(T + 500_000));
    }

    #[test]
    fn garbage_is_not_a_time() {
        for bad in [json!("yesterday"), json!(""), json!(true), json!({"a": 1}), json!("2025-13-45T00:00:00Z")] {
            assert_eq!(parse_time_value(&bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(date_string(T), "2025-11-25");
        assert_eq!(days_since_epoch(0), 0);
        assert_eq!(days_since_epoch(-1), -1);
        assert_eq!(date_string(days_since_epoch(T) as i64 * MICROS_PER_DAY), "2025-11-25");
    }
}
