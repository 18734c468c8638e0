//! Evaluating a search against one event in memory, for what never reaches a table first (the
//! live tail). It answers what [`to_sql`](crate::to_sql) would for a table whose columns have
//! the event's types: the same terms match the same events, with the types of the event's own
//! values in place of the table's column types.

use std::cmp::Ordering;
use std::collections::HashMap;

use logyard_core::event::Scalar;

use crate::parse::{Expr, Op, Part, Pattern};

/// The flattened leaves of one event (`http.method` → `"POST"`), as ingest flattens them.
pub type Leaves<'a> = HashMap<String, Scalar<'a>>;

/// A search ready to test events.
#[derive(Debug, Clone)]
pub struct Matcher {
    expr: Expr,
    /// Fields that words and phrases are looked for in.
    text: Vec<String>,
}

impl Matcher {
    pub fn new(expr: Expr, text_fields: Vec<String>) -> Self {
        Self { expr, text: text_fields }
    }

    /// Whether the event matches every term the search asks for.
    pub fn matches(&self, event: &Leaves<'_>) -> bool {
        self.eval(&self.expr, event)
    }

    fn eval(&self, expr: &Expr, event: &Leaves<'_>) -> bool {
        match expr {
            Expr::All => true,
            Expr::Text { pattern, .. } => self.text.iter().any(|f| match event.get(f) {
                Some(Scalar::Text(t)) => contains_ignoring_case(t, pattern),
                _ => false,
            }),
            Expr::Exists { field, .. } => event.contains_key(field),
            Expr::Field { field, op, value, .. } => event.get(field).is_some_and(|leaf| compare(leaf, *op, value)),
            Expr::Not(inner) => !self.eval(inner, event),
            Expr::And(terms) => terms.iter().all(|t| self.eval(t, event)),
            Expr::Or(terms) => terms.iter().any(|t| self.eval(t, event)),
        }
    }
}

/// `leaf <op> value`, as the SQL translation compares a column of the leaf's type.
fn compare(leaf: &Scalar<'_>, op: Op, value: &Pattern) -> bool {
    let Some(text) = value.literal() else {
        return wildcard_match(&leaf_text(leaf), &value.parts, false);
    };
    let holds = |ordering: Option<Ordering>| {
        ordering.is_some_and(|o| match op {
            Op::Eq => o == Ordering::Equal,
            Op::Gt => o == Ordering::Greater,
            Op::Ge => o != Ordering::Less,
            Op::Lt => o == Ordering::Less,
            Op::Le => o != Ordering::Greater,
        })
    };
    match leaf {
        Scalar::Int(i) => match text.parse::<i64>() {
            Ok(v) => holds(Some(i.cmp(&v))),
            Err(_) => holds(number(&text).and_then(|v| (*i as f64).partial_cmp(&v))),
        },
        Scalar::Float(f) => holds(number(&text).and_then(|v| f.partial_cmp(&v))),
        Scalar::Bool(b) => op == Op::Eq && text.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Scalar::Text(t) if op != Op::Eq && number(&text).is_some() => {
            holds(number(t).zip(number(&text)).and_then(|(a, b)| a.partial_cmp(&b)))
        }
        Scalar::Text(t) => holds(Some(t.as_ref().cmp(text.as_str()))),
        Scalar::Json(t) => holds(Some((*t).cmp(text.as_str()))),
    }
}

fn number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|f| f.is_finite())
}

/// A leaf as text, as `CAST(column AS VARCHAR)` writes it.
fn leaf_text<'a>(leaf: &'a Scalar<'_>) -> std::borrow::Cow<'a, str> {
    match leaf {
        Scalar::Bool(b) => b.to_string().into(),
        Scalar::Int(i) => i.to_string().into(),
        Scalar::Float(f) => f.to_string().into(),
        Scalar::Text(t) => t.as_ref().into(),
        Scalar::Json(t) => (*t).into(),
    }
}

/// `ILIKE '%pattern%'`.
fn contains_ignoring_case(text: &str, pattern: &Pattern) -> bool {
    let mut parts = Vec::with_capacity(pattern.parts.len() + 2);
    parts.push(Part::Any);
    parts.extend(pattern.parts.iter().cloned());
    parts.push(Part::Any);
    wildcard_match(text, &parts, true)
}

/// Whether all of `text` matches the parts (`*` any run of characters), as `LIKE` does.
fn wildcard_match(text: &str, parts: &[Part], ignore_case: bool) -> bool {
    let fold = |s: &str| if ignore_case { s.to_lowercase() } else { s.to_owned() };
    let text = fold(text);
    let mut rest = text.as_str();
    let mut anchored = true;
    let last = parts.len().saturating_sub(1);
    for (i, part) in parts.iter().enumerate() {
        match part {
            Part::Any => anchored = false,
            Part::Text(t) => {
                let t = fold(t);
                if anchored {
                    let Some(after) = rest.strip_prefix(t.as_str()) else { return false };
                    rest = after;
                } else if i == last {
                    // The last literal must end the text.
                    return rest.ends_with(t.as_str());
                } else {
                    let Some(found) = rest.find(t.as_str()) else { return false };
                    rest = &rest[found + t.len()..];
                }
                anchored = true;
            }
        }
    }
    !anchored || rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn event() -> Leaves<'static> {
        let leaves = [
            ("message", Scalar::Text("Payment DECLINED for order o-1".into())),
            ("route", Scalar::Text("/api/checkout".into())),
            ("status", Scalar::Int(502)),
            ("latency_ms", Scalar::Float(930.5)),
            ("cached", Scalar::Bool(false)),
            ("http.method", Scalar::Text("POST".into())),
            ("code", Scalar::Text("0042".into())),
            ("tags", Scalar::Json(r#"["a","b"]"#)),
        ];
        leaves.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    fn hits(search: &str) -> bool {
        Matcher::new(parse(search).unwrap(), vec!["message".into(), "route".into()]).matches(&event())
    }

    #[test]
    fn terms_match_as_their_sql_does() {
        for yes in [
            "",
            "declined",
            "\"payment declined\"",
            "checkout",
            "pay*ed",
            "status:502",
            "status:>=500",
            "status:<503",
            "status:5*",
            "latency_ms:>900",
            "latency_ms:930.5",
            "cached:FALSE",
            "http.method:POST",
            "http.method:P*",
            "route:/api/*",
            "route:*checkout",
            "code:>=42",
            "code:0042",
            "tags:*",
            "NOT status:404",
            "-level:debug",
            "status:404 OR checkout",
            "(status:404 OR status:502) declined",
        ] {
            assert!(hits(yes), "{yes:?} should match");
        }
        for no in [
            "refund",
            "status:500",
            "status:>502",
            "status:abc",
            "http.method:post",
            "route:/api",
            "route:*check",
            "cached:>false",
            "level:*",
            "level:error",
            "-status:502",
            "status:404 OR refund",
            "declined status:404",
            "o-2",
        ] {
            assert!(!hits(no), "{no:?} should not match");
        }
    }

    #[test]
    fn wildcards_anchor_at_both_ends() {
        let m = |text: &str, pattern: &str| {
            let Expr::Field { value, .. } = parse(&format!("f:{pattern}")).unwrap() else { panic!() };
            wildcard_match(text, &value.parts, false)
        };
        assert!(m("abcabc", "a*c"));
        assert!(m("abcabc", "*abc"));
        assert!(m("abc", "a*b*c"));
        assert!(!m("abcab", "a*c"));
        assert!(m("aXbXc", "a*X*c"));
    }
}
