//! What receivers are sent: a Slack message (Block Kit), Alertmanager's v2 alerts, and the
//! generic webhook's JSON with its signature.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::evaluator::Notice;
use crate::state::Outcome;
use crate::template::format_number;

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn firing(n: &Notice) -> bool {
    n.outcome != Outcome::Resolved
}

/// A Slack incoming-webhook message: a header with the state and rule, the message, the
/// labels as fields, the window as context, and a button to the search it came from.
pub fn slack(n: &Notice, link: Option<&str>) -> Value {
    let state = if firing(n) { "FIRING" } else { "RESOLVED" };
    let title =
        if n.group.is_empty() { format!("{state}: {}", n.rule) } else { format!("{state}: {} ({})", n.rule, n.group) };
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Severity*\n{}", n.severity)}),
        json!({"type": "mrkdwn", "text": format!("*Value*\n{}", n.value.map(format_number).unwrap_or_else(|| "none".into()))}),
    ];
    fields.extend(n.labels.iter().take(8).map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}*\n{v}")})));
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&title, 150)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&n.text, 3000)}, "fields": fields}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
            "window {} to {} · since {}{}",
            rfc3339(n.window_from_ms), rfc3339(n.window_to_ms), rfc3339(n.starts_ms),
            n.ends_ms.map(|e| format!(" · resolved {}", rfc3339(e))).unwrap_or_default()
        )}]}),
    ];
    if let Some(link) = link {
        blocks.push(json!({"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open the search"}, "url": link}]}));
    }
    json!({"text": truncate(&format!("{title}: {}", n.text), 3000), "blocks": blocks})
}

/// Alertmanager's `POST /api/v2/alerts` body (postableAlerts): one alert whose labels are
/// the rule's with `alertname`, `severity` and the group; `endsAt` is when it resolved, or
/// for a firing alert until when it stands unless sent again.
pub fn alertmanager(n: &Notice, link: Option<&str>) -> Value {
    let mut labels = serde_json::Map::new();
    for (k, v) in &n.labels {
        labels.insert(k.clone(), json!(v));
    }
    labels.insert("alertname".into(), json!(n.rule));
    labels.insert("severity".into(), json!(n.severity));
    if !n.group.is_empty() {
        labels.insert("group".into(), json!(n.group));
    }
    let mut alert = json!({
        "labels": labels,
        "annotations": {"summary": n.text, "value": n.value.map(format_number).unwrap_or_default()},
        "startsAt": rfc3339(n.starts_ms),
    });
    if let Some(ends) = n.ends_ms.or(n.valid_until_ms) {
        alert["endsAt"] = json!(rfc3339(ends));
    }
    if let Some(link) = link {
        alert["generatorURL"] = json!(link);
    }
    json!([alert])
}

/// The generic webhook's body.
pub fn webhook(n: &Notice, link: Option<&str>) -> Value {
    json!({
        "rule": n.rule,
        "group": n.group,
        "state": if firing(n) { "firing" } else { "resolved" },
        "value": n.value,
        "severity": n.severity,
        "labels": n.labels,
        "message": n.text,
        "starts_at": rfc3339(n.starts_ms),
        "ends_at": n.ends_ms.map(rfc3339),
        "window": {"from": rfc3339(n.window_from_ms), "to": rfc3339(n.window_to_ms)},
        "link": link,
    })
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;

    pub(crate) fn notice(outcome: Outcome) -> Notice {
        Notice {
            rule: "checkout-5xx".into(),
            group: "/checkout".into(),
            outcome,
            value: Some(57.0),
            severity: "critical".into(),
            labels: BTreeMap::from([("team".into(), "payments".into())]),
            text: "57 errors on /checkout".into(),
            starts_ms: 1_764_806_400_000,
            ends_ms: (outcome == Outcome::Resolved).then_some(1_764_806_700_000),
            valid_until_ms: (outcome != Outcome::Resolved).then_some(1_764_806_640_000),
            window_index: 1,
            window_from_ms: 1_764_806_100_000,
            window_to_ms: 1_764_806_400_000,
            receivers: vec![],
            attempts: 0,
            next_try_ms: 0,
            last_error: None,
        }
    }

    #[test]
    fn alertmanager_alerts_carry_labels_and_ends_at_on_resolve() {
        let fired = alertmanager(&notice(Outcome::Fired), Some("http://logyard/ui/#search"));
        assert_eq!(fired[0]["labels"]["alertname"], "checkout-5xx");
        assert_eq!(fired[0]["labels"]["group"], "/checkout");
        assert_eq!(fired[0]["labels"]["team"], "payments");
        assert_eq!(fired[0]["startsAt"], "2025-12-04T00:00:00.000Z");
        assert_eq!(fired[0]["endsAt"], "2025-12-04T00:04:00.000Z", "stands for four evaluations unless sent again");
        assert_eq!(fired[0]["generatorURL"], "http://logyard/ui/#search");
        let resolved = alertmanager(&notice(Outcome::Resolved), None);
        assert_eq!(resolved[0]["endsAt"], "2025-12-04T00:05:00.000Z");
    }

    #[test]
    fn slack_messages_are_block_kit() {
        let m = slack(&notice(Outcome::Fired), Some("http://logyard/ui/"));
        assert_eq!(m["blocks"][0]["type"], "header");
        assert_eq!(m["blocks"][0]["text"]["text"], "FIRING: checkout-5xx (/checkout)");
        assert_eq!(m["blocks"][1]["text"]["text"], "57 errors on /checkout");
        assert_eq!(m["blocks"][1]["fields"][2]["text"], "*team*\npayments");
        assert_eq!(m["blocks"][3]["elements"][0]["url"], "http://logyard/ui/");
        let r = slack(&notice(Outcome::Resolved), None);
        assert!(r["text"].as_str().unwrap().starts_with("RESOLVED: checkout-5xx"));
        assert!(r["blocks"][2]["elements"][0]["text"].as_str().unwrap().contains("resolved 2025-12-04T00:05:00.000Z"));
        assert_eq!(truncate("abcdef", 4), "abc…");
    }

    #[test]
    fn webhook_bodies_name_the_state() {
        let w = webhook(&notice(Outcome::Resolved), None);
        assert_eq!(w["state"], "resolved");
        assert_eq!(w["value"], 57.0);
        assert_eq!(w["window"]["to"], "2025-12-04T00:00:00.000Z");
    }
}
