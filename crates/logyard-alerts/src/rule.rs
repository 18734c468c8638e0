//! An alert rule, as written in the configuration (`[[alerts.rules]]`) or sent to
//! `POST /api/v1/alerts`, and checked before it is kept.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::template::Template;

/// The most windows one rule may look back over (`window` / `every`).
const MAX_WINDOWS_PER_LOOKBACK: u32 = 10_000;

/// One alert rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Lower-case letters, digits, `-` and `_`; names the rule in the API, the state table
    /// and notifications.
    pub name: String,
    /// A SQL query whose rows carry a numeric `value` column (and the `group_by` column). It
    /// names its time range with `$__timeFilter(column)`, `$__timeFrom()` and `$__timeTo()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// ... or a search in the console's language, whose value is the count of matching events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchQuery>,
    /// One alert per value of this column (SQL) or field (search), e.g. `route`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
    /// How often the rule is evaluated: windows end on multiples of it.
    #[serde(with = "crate::span")]
    pub every: Duration,
    /// How far back each evaluation looks (default: `every`).
    #[serde(default, with = "crate::span::option", skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    pub condition: Condition,
    /// How long the condition must hold before the alert fires (0: at once).
    #[serde(default, rename = "for", with = "crate::span", skip_serializing_if = "Duration::is_zero")]
    pub for_: Duration,
    #[serde(default)]
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The notification's text; see [`Template`] for what it may name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The receivers (by name) told when the alert fires and resolves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
}

/// A rule's search: the streams and the query, as `POST /api/v1/search` takes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    pub streams: Vec<String>,
    #[serde(default)]
    pub query: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    #[default]
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// A rule that cannot be kept, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("alert rule {rule:?}: {message}")]
pub struct RuleError {
    pub rule: String,
    pub message: String,
}

/// What a rule's query is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind<'a> {
    Sql(&'a str),
    Search(&'a SearchQuery),
}

impl Rule {
    /// How far back each evaluation looks.
    pub fn window(&self) -> Duration {
        self.window.unwrap_or(self.every)
    }

    pub fn query(&self) -> QueryKind<'_> {
        match (&self.sql, &self.search) {
            (Some(sql), _) => QueryKind::Sql(sql),
            (None, Some(search)) => QueryKind::Search(search),
            (None, None) => unreachable!("a checked rule has a query"),
        }
    }

    /// The message template, read.
    pub fn template(&self) -> Result<Template, RuleError> {
        let text = self.message.as_deref().unwrap_or(crate::template::DEFAULT);
        Template::parse(text).map_err(|e| self.error(format!("message: {e}")))
    }

    fn error(&self, message: impl Into<String>) -> RuleError {
        RuleError { rule: self.name.clone(), message: message.into() }
    }

    /// Checks everything that can be checked without running the query; `receivers` are the
    /// names that may be notified.
    pub fn check(&self, receivers: &[&str]) -> Result<(), RuleError> {
        if !valid_name(&self.name) {
            return Err(self.error("a name is 1 to 64 lower-case letters, digits, `-` and `_`"));
        }
        match (&self.sql, &self.search) {
            (Some(_), Some(_)) => return Err(self.error("give `sql` or `search`, not both")),
            (None, None) => return Err(self.error("give a query: `sql` or `search`")),
            (Some(sql), None) if sql.trim().is_empty() => return Err(self.error("`sql` is empty")),
            (None, Some(search)) if search.streams.is_empty() => {
                return Err(self.error("`search.streams` names no stream"));
            }
            _ => {}
        }
        if self.every < Duration::from_secs(10) || self.every.subsec_nanos() != 0 {
            return Err(self.error("`every` is a whole number of seconds, at least 10s"));
        }
        let window = self.window();
        if window.is_zero() || window.subsec_nanos() != 0 {
            return Err(self.error("`window` is a whole number of seconds, more than 0"));
        }
        if window.as_secs() / self.every.as_secs() > u64::from(MAX_WINDOWS_PER_LOOKBACK) {
            return Err(self.error(format!("`window` is more than {MAX_WINDOWS_PER_LOOKBACK} times `every`")));
        }
        if let Some(group) = &self.group_by
            && group.trim().is_empty()
        {
            return Err(self.error("`group_by` is empty"));
        }
        if let Some(unknown) = self.notify.iter().find(|n| !receivers.contains(&n.as_str())) {
            return Err(self.error(format!(
                "notifies {unknown:?}, which is not a receiver (receivers: {})",
                if receivers.is_empty() { "none configured".to_owned() } else { receivers.join(", ") }
            )));
        }
        for key in self.labels.keys() {
            if !valid_label(key) {
                return Err(self.error(format!(
                    "label {key:?}: a label name is letters, digits and `_`, not starting with a digit"
                )));
            }
        }
        self.template()?;
        Ok(())
    }
}

pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Prometheus's (and so Alertmanager's) label names.
fn valid_label(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_text: &str) -> Rule {
        toml::from_str(toml_text).unwrap()
    }

    const CHECKOUT: &str = r#"
        name = "checkout-5xx"
        search = { streams = ["storefront"], query = "status:>=500 route:/checkout*" }
        group_by = "route"
        every = "1m"
        window = "5m"
        condition = "value > 50"
        for = "3m"
        severity = "critical"
        labels = { team = "payments" }
        message = "{{value}} errors on {{group}}"
        notify = ["oncall"]
    "#;

    #[test]
    fn a_rule_reads_from_toml_and_json_alike() {
        let r = rule(CHECKOUT);
        assert_eq!(r.every, Duration::from_secs(60));
        assert_eq!(r.window(), Duration::from_secs(300));
        assert_eq!(r.for_, Duration::from_secs(180));
        assert_eq!(r.severity, Severity::Critical);
        assert!(matches!(r.query(), QueryKind::Search(s) if s.streams == ["storefront"]));
        r.check(&["oncall"]).unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""every":"1m""#) && json.contains(r#""for":"3m""#), "{json}");
        assert_eq!(serde_json::from_str::<Rule>(&json).unwrap(), r);
        let sql = rule(
            "name = \"x\"\nsql = \"SELECT count(*) AS value FROM web WHERE $__timeFilter(timestamp)\"\nevery = \"30s\"\ncondition = \"rows > 0\"",
        );
        assert_eq!(sql.window(), Duration::from_secs(30));
        assert_eq!(sql.severity, Severity::Warning);
        sql.check(&[]).unwrap();
    }

    #[test]
    fn mistakes_are_refused_with_the_reason() {
        let refused = |edit: &dyn Fn(&mut Rule), receivers: &[&str]| {
            let mut r = rule(CHECKOUT);
            edit(&mut r);
            r.check(receivers).unwrap_err().to_string()
        };
        assert!(refused(&|r| r.name = "Checkout!".into(), &["oncall"]).contains("lower-case"));
        assert!(refused(&|r| r.sql = Some("SELECT 1".into()), &["oncall"]).contains("not both"));
        assert!(refused(&|r| r.search = None, &["oncall"]).contains("give a query"));
        assert!(refused(&|r| r.every = Duration::from_secs(1), &["oncall"]).contains("at least 10s"));
        assert!(refused(&|r| r.window = Some(Duration::from_millis(1500)), &["oncall"]).contains("whole number"));
        assert!(
            refused(&|_| {}, &[])
                .contains(r#"notifies "oncall", which is not a receiver (receivers: none configured)"#)
        );
        assert!(
            refused(
                &|r| {
                    r.labels.insert("team-name".into(), "x".into());
                },
                &["oncall"]
            )
            .contains("label")
        );
        assert!(refused(&|r| r.message = Some("{{nope}}".into()), &["oncall"]).contains("message"));
        let unknown = toml::from_str::<Rule>(&format!("{CHECKOUT}\nthreshold = 5")).unwrap_err().to_string();
        assert!(unknown.contains("unknown field `threshold`"), "{unknown}");
        let bad_condition = toml::from_str::<Rule>(&CHECKOUT.replace("value > 50", "value >> 50")).unwrap_err();
        assert!(bad_condition.to_string().contains("expected a number"), "{bad_condition}");
    }
}
