//! A rule's condition: `value > 50`, `rows > 0`, `change(1d) > 50%`.
//!
//! ```text
//! condition = subject op number ["%"]
//! subject   = "value" | "rows" | "change(" duration ")"
//! op        = ">" | ">=" | "<" | "<=" | "==" | "!="
//! ```
//!
//! `value` is the rule's value (per group), `rows` how many rows its query returned, and
//! `change(1d)` the percentage change of the value against the same window a day (`7d`, `1w`:
//! a week) before; a percentage is written with `%` and only after `change(...)`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a condition compares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subject {
    Value,
    Rows,
    /// Percentage change against the same window this long before.
    Change(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Op::Gt => left > right,
            Op::Ge => left >= right,
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Eq => left == right,
            Op::Ne => left != right,
        }
    }
}

/// A parsed condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    pub subject: Subject,
    pub op: Op,
    pub threshold: f64,
}

/// A condition that cannot be read; `at` is the character position of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "condition {text:?}: {message} (at character {at}); write it as `value > 50`, `rows > 0` or `change(1d) > 50%`"
)]
pub struct ConditionError {
    pub text: String,
    pub message: String,
    pub at: usize,
}

impl Condition {
    /// Reads a condition.
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        let fail = |at: usize, message: &str| ConditionError { text: text.to_owned(), message: message.to_owned(), at };
        let mut rest = text.trim_start();
        let pos = |rest: &str| text.len() - rest.len();
        let word_end = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let (word, after) = rest.split_at(word_end);
        let subject = match word {
            "value" => Subject::Value,
            "rows" => Subject::Rows,
            "change" => {
                let Some(inner) = after.strip_prefix('(') else {
                    return Err(fail(pos(after), "`change` takes a duration in parentheses, as in change(1d)"));
                };
                let Some(close) = inner.find(')') else {
                    return Err(fail(pos(inner), "`)` is missing"));
                };
                let span = &inner[..close];
                let back = parse_duration(span.trim())
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| fail(pos(inner), "expected a duration such as 1h, 1d or 7d"))?;
                rest = &inner[close + 1..];
                Subject::Change(back)
            }
            _ => return Err(fail(pos(rest), "expected `value`, `rows` or `change(...)`")),
        };
        if !matches!(subject, Subject::Change(_)) {
            rest = after;
        }
        rest = rest.trim_start();
        let (op, len) = [(">=", Op::Ge), ("<=", Op::Le), ("==", Op::Eq), ("!=", Op::Ne), (">", Op::Gt), ("<", Op::Lt)]
            .into_iter()
            .find(|(s, _)| rest.starts_with(s))
            .map(|(s, op)| (op, s.len()))
            .ok_or_else(|| fail(pos(rest), "expected one of > >= < <= == !="))?;
        rest = rest[len..].trim_start();
        let number_at = pos(rest);
        let percent = rest.trim_end().ends_with('%');
        let number = rest.trim_end().trim_end_matches('%').trim_end();
        let threshold: f64 =
            number.parse().ok().filter(|n: &f64| n.is_finite()).ok_or_else(|| fail(number_at, "expected a number"))?;
        match (subject, percent) {
            (Subject::Change(_), false) => Err(fail(number_at, "a change is a percentage: write it with %")),
            (Subject::Value | Subject::Rows, true) => {
                Err(fail(number_at + number.len(), "only change(...) is a percentage"))
            }
            _ => Ok(Condition { subject, op, threshold }),
        }
    }

    /// Whether the condition holds for a value (`None`: the query gave no value) given the
    /// query's row count and, for `change`, the value of the earlier window.
    pub fn holds(&self, value: Option<f64>, rows: usize, before: Option<f64>) -> bool {
        match self.subject {
            Subject::Rows => self.op.holds(rows as f64, self.threshold),
            Subject::Value => value.is_some_and(|v| self.op.holds(v, self.threshold)),
            Subject::Change(_) => change_percent(value, before).is_some_and(|c| self.op.holds(c, self.threshold)),
        }
    }

    /// How far back the earlier window lies, for `change(...)`.
    pub fn compare_back(&self) -> Option<Duration> {
        match self.subject {
            Subject::Change(back) => Some(back),
            _ => None,
        }
    }
}

/// The change from `before` to `now` in percent: `None` without both values; from zero to more
/// than zero is an infinite rise.
pub fn change_percent(now: Option<f64>, before: Option<f64>) -> Option<f64> {
    let (now, before) = (now?, before?);
    if before == 0.0 {
        return Some(if now == 0.0 {
            0.0
        } else if now > 0.0 {
            f64::INFINITY
        } else {
            f64::NEG_INFINITY
        });
    }
    Some((now - before) / before.abs() * 100.0)
}

/// `1d`, `7d`, `1w`, `12h`, `30m` (humantime's forms).
fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text).ok()
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.subject {
            Subject::Value => write!(f, "value {} {}", self.op.symbol(), self.threshold),
            Subject::Rows => write!(f, "rows {} {}", self.op.symbol(), self.threshold),
            Subject::Change(back) => {
                write!(f, "change({}) {} {}%", humantime::format_duration(back), self.op.symbol(), self.threshold)
            }
        }
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Condition::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_read_as_written() {
        let c = Condition::parse("value > 50").unwrap();
        assert_eq!(c, Condition { subject: Subject::Value, op: Op::Gt, threshold: 50.0 });
        assert_eq!(Condition::parse(" rows>0 ").unwrap().op, Op::Gt);
        assert_eq!(Condition::parse("value <= 0.5").unwrap().threshold, 0.5);
        let change = Condition::parse("change(1d) > 50%").unwrap();
        assert_eq!(change.subject, Subject::Change(Duration::from_secs(86_400)));
        assert_eq!(change.compare_back(), Some(Duration::from_secs(86_400)));
        assert_eq!(Condition::parse("change(1w) >= -20%").unwrap().threshold, -20.0);
        // Written back in a form that reads again the same.
        for text in ["value > 50", "rows >= 1", "change(1day) > 50%", "value != 3.25"] {
            let c = Condition::parse(text).unwrap();
            assert_eq!(Condition::parse(&c.to_string()).unwrap(), c, "{text} -> {c}");
        }
    }

    #[test]
    fn mistakes_are_named_with_their_position() {
        let e = Condition::parse("count > 5").unwrap_err();
        assert_eq!(e.at, 0);
        assert!(e.to_string().contains("expected `value`, `rows` or `change(...)`"), "{e}");
        assert_eq!(Condition::parse("value => 5").unwrap_err().at, 6);
        assert_eq!(Condition::parse("value > lots").unwrap_err().message, "expected a number");
        assert!(Condition::parse("value > 50%").unwrap_err().message.contains("only change"));
        assert!(Condition::parse("change(1d) > 50").unwrap_err().message.contains("percentage"));
        assert!(Condition::parse("change(soon) > 5%").unwrap_err().message.contains("duration"));
        assert!(Condition::parse("change(1d > 5%").unwrap_err().message.contains(")"));
        assert!(Condition::parse("value > inf").is_err());
    }

    #[test]
    fn conditions_hold_on_values_rows_and_changes() {
        let v = Condition::parse("value > 50").unwrap();
        assert!(v.holds(Some(51.0), 1, None));
        assert!(!v.holds(Some(50.0), 1, None));
        assert!(!v.holds(None, 0, None), "no value: nothing to compare");
        let r = Condition::parse("rows > 0").unwrap();
        assert!(r.holds(None, 3, None));
        assert!(!r.holds(None, 0, None));
        let c = Condition::parse("change(1d) > 50%").unwrap();
        assert!(c.holds(Some(160.0), 1, Some(100.0)));
        assert!(!c.holds(Some(140.0), 1, Some(100.0)));
        assert!(c.holds(Some(1.0), 1, Some(0.0)), "from nothing to something is a rise");
        assert!(!c.holds(Some(0.0), 1, Some(0.0)));
        assert!(!c.holds(Some(10.0), 1, None), "no earlier window: no change");
        assert_eq!(change_percent(Some(50.0), Some(-100.0)), Some(150.0));
    }
}
