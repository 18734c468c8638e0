//! A notification's text: `{{value}} 5xx on {{group}} in the last {{window}}`.
//!
//! Placeholders are `{{rule}}`, `{{value}}`, `{{group}}`, `{{threshold}}`, `{{condition}}`,
//! `{{window}}`, `{{severity}}`, `{{state}}` and `{{labels.NAME}}`; anything else between
//! `{{` and `}}` is refused when the rule is checked, so a typo never reaches a pager.

use std::collections::BTreeMap;

/// Used when a rule gives no message.
pub const DEFAULT: &str = "{{rule}}: {{condition}} (value {{value}}{{group_suffix}})";

/// A template, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
}

/// What fills a template.
#[derive(Debug, Clone, Default)]
pub struct Values<'a> {
    pub rule: &'a str,
    pub value: Option<f64>,
    pub group: Option<&'a str>,
    pub threshold: f64,
    pub condition: String,
    pub window: String,
    pub severity: &'a str,
    pub state: &'a str,
    pub labels: Option<&'a BTreeMap<String, String>>,
}

const FIELDS: [&str; 10] =
    ["rule", "value", "group", "group_suffix", "threshold", "condition", "window", "severity", "state", "labels."];

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let inner_at = text.len() - rest.len() + open + 2;
            let Some(close) = rest[open + 2..].find("}}") else {
                return Err(format!("`{{{{` at character {} is not closed with `}}}}`", inner_at - 2));
            };
            let name = rest[open + 2..open + 2 + close].trim();
            let known = FIELDS
                .iter()
                .any(|f| if f.ends_with('.') { name.len() > f.len() && name.starts_with(f) } else { name == *f });
            if !known {
                return Err(format!(
                    "{{{{{name}}}}} at character {} is not one of rule, value, group, threshold, condition, window, severity, state, labels.NAME",
                    inner_at - 2
                ));
            }
            parts.push(Part::Field(name.to_owned()));
            rest = &rest[open + 2 + close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    pub fn render(&self, v: &Values<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(name) => match name.as_str() {
                    "rule" => out.push_str(v.rule),
                    "value" => out.push_str(&v.value.map(format_number).unwrap_or_else(|| "none".to_owned())),
                    "group" => out.push_str(v.group.unwrap_or("")),
                    "group_suffix" => {
                        if let Some(g) = v.group {
                            out.push_str(", ");
                            out.push_str(g);
                        }
                    }
                    "threshold" => out.push_str(&format_number(v.threshold)),
                    "condition" => out.push_str(&v.condition),
                    "window" => out.push_str(&v.window),
                    "severity" => out.push_str(v.severity),
                    "state" => out.push_str(v.state),
                    label => {
                        let key = label.trim_start_matches("labels.");
                        out.push_str(v.labels.and_then(|l| l.get(key)).map(String::as_str).unwrap_or(""));
                    }
                },
            }
        }
        out
    }
}

/// A number as people read it: integers without a fraction, others to 4 significant places.
pub fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else if n.is_finite() {
        let s = format!("{n:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled() {
        let labels = BTreeMap::from([("team".to_owned(), "payments".to_owned())]);
        let t = Template::parse("{{ value }} 5xx on {{group}} in {{window}} ({{labels.team}}{{labels.none}})").unwrap();
        let v = Values {
            rule: "checkout-5xx",
            value: Some(57.0),
            group: Some("/checkout"),
            window: "5m".into(),
            labels: Some(&labels),
            ..Default::default()
        };
        assert_eq!(t.render(&v), "57 5xx on /checkout in 5m (payments)");
        let d = Template::parse(DEFAULT).unwrap();
        let v = Values { rule: "p95", value: Some(1234.56789), condition: "value > 800".into(), ..Default::default() };
        assert_eq!(d.render(&v), "p95: value > 800 (value 1234.5679)");
        assert_eq!(format_number(0.5), "0.5");
        assert_eq!(format_number(f64::INFINITY), "inf");
    }

    #[test]
    fn unknown_or_unclosed_placeholders_are_refused() {
        let e = Template::parse("x {{valeu}}").unwrap_err();
        assert!(e.contains("{{valeu}} at character 2 is not one of"), "{e}");
        assert!(Template::parse("{{value").unwrap_err().contains("not closed"));
        assert!(Template::parse("{{labels.}}").is_err());
        assert_eq!(Template::parse("plain").unwrap().render(&Values::default()), "plain");
    }
}
