//! The evaluator: each rule evaluated once per window across every replica.
//!
//! Every rule has a lease log in the storage (`alerts/leases/<rule>/<n>.json`, an
//! [`EntryLog`]): its entries carry who evaluates the rule and until when, the last window
//! evaluated, the rule's alert state and the notifications not yet delivered. A replica
//! evaluates a rule only while it holds the lease; one that dies hands the rule over when the
//! lease runs out.
//!
//! A window is evaluated in three writes. First an entry naming the window and the state it
//! leads to (`pending`); then the window's rows are appended to the `logyard-alerts` table
//! with the Delta transaction (`alert:<rule>`, window index), so a window's rows land at most
//! once whoever writes them; then an entry that makes the pending state the rule's state and
//! queues its notifications. A replica that takes a rule over finds a pending window and asks
//! the table whether it landed: if so it adopts it, if not it evaluates the window again. So
//! no window is skipped or evaluated into the table twice.
//!
//! Notifications are delivered after their window is settled, retried with a growing back-off
//! while they fail, and removed from the queue only when delivered: at least once; a replica
//! that dies between delivering and writing that down delivers again after the takeover.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::state::{Outcome, RuleState};

/// The stream (Delta table) every evaluation is recorded in.
pub const HISTORY_STREAM: &str = "logyard-alerts";

/// Where the rules' lease logs live in the storage.
pub const LEASES_DIR: &str = "alerts/leases";

/// One entry of a rule's lease log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The replica evaluating the rule.
    pub owner: String,
    /// Until when the lease holds (ms since the epoch); 0: released.
    pub lease_until_ms: i64,
    /// The rule's definition the state belongs to: a changed rule starts afresh.
    pub definition: String,
    /// The last window evaluated and recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<i64>,
    #[serde(default)]
    pub state: RuleState,
    /// A window on its way into the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingWindow>,
    /// Notifications not delivered yet, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<Notice>,
}

/// A window evaluated but perhaps not recorded: the state and notifications it leads to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingWindow {
    pub index: i64,
    pub state: RuleState,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<Notice>,
}

/// A notification to deliver: an alert firing or resolving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub rule: String,
    /// The group (`""` for a rule without groups).
    pub group: String,
    pub outcome: Outcome,
    pub value: Option<f64>,
    pub severity: String,
    pub labels: BTreeMap<String, String>,
    /// The rule's message, filled.
    pub text: String,
    /// When the condition started to hold, and (for a resolve) when it stopped (ms).
    pub starts_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_ms: Option<i64>,
    /// For a firing alert: until when it stands if not heard of again (Alertmanager's
    /// `endsAt`; a firing alert is sent again at every evaluation to receivers that want it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until_ms: Option<i64>,
    /// The window that decided it.
    pub window_index: i64,
    pub window_from_ms: i64,
    pub window_to_ms: i64,
    /// Receivers still to be told.
    pub receivers: Vec<String>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub next_try_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Notice {
    /// What identifies the alert at a receiver (Alertmanager's fingerprint is its labels):
    /// the rule and the group.
    pub fn alert_key(&self) -> String {
        if self.group.is_empty() { self.rule.clone() } else { format!("{}/{}", self.rule, self.group) }
    }
}

/// Delivers notifications to receivers by name.
#[async_trait::async_trait]
pub trait Deliver: Send + Sync {
    /// Tells `receiver` about `notice`; an error says why it could not (it is retried).
    async fn deliver(&self, receiver: &str, notice: &Notice) -> Result<(), String>;

    /// Whether `receiver` wants a firing alert again at every evaluation (Alertmanager takes
    /// an alert not heard of for a while as resolved).
    fn repeats(&self, _receiver: &str) -> bool {
        false
    }
}

/// Retries of a notification: 10 s, doubling, at most 10 minutes apart.
pub fn retry_delay(attempts: u32) -> Duration {
    let secs = 10u64.saturating_mul(1u64 << attempts.saturating_sub(1).min(10));
    Duration::from_secs(secs.min(600))
}

/// Delivers what is due in `outbox` at `now_ms`: each notice to each receiver left; a
/// receiver that fails is kept for a later try. A receiver hears about one alert in order: a
/// notice waits while an earlier one about the same alert is still owed to that receiver (a
/// resolve never overtakes its firing). Returns whether anything changed.
pub async fn deliver_due(outbox: &mut Vec<Notice>, deliver: &Arc<dyn Deliver>, now_ms: i64) -> bool {
    let mut changed = false;
    let mut owed = std::collections::BTreeSet::new();
    for notice in outbox.iter_mut() {
        let key = notice.alert_key();
        if notice.next_try_ms > now_ms {
            owed.extend(notice.receivers.iter().map(|r| (r.clone(), key.clone())));
            continue;
        }
        let mut left = Vec::new();
        let mut error = None;
        for receiver in std::mem::take(&mut notice.receivers) {
            if owed.contains(&(receiver.clone(), key.clone())) {
                left.push(receiver);
                continue;
            }
            changed = true;
            match deliver.deliver(&receiver, notice).await {
                Ok(()) => {
                    tracing::info!(rule = %notice.rule, group = %notice.group, outcome = notice.outcome.as_str(), receiver = %receiver, "alert notification delivered");
                }
                Err(e) => {
                    tracing::warn!(rule = %notice.rule, group = %notice.group, receiver = %receiver, error = %e, attempt = notice.attempts + 1, "alert notification not delivered; will retry");
                    error = Some(format!("{receiver}: {e}"));
                    owed.insert((receiver.clone(), key.clone()));
                    left.push(receiver);
                }
            }
        }
        notice.receivers = left;
        if let Some(e) = error {
            notice.attempts += 1;
            notice.last_error = Some(e);
            notice.next_try_ms = now_ms + i64::try_from(retry_delay(notice.attempts).as_millis()).unwrap_or(i64::MAX);
        }
    }
    outbox.retain(|n| !n.receivers.is_empty());
    changed
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A receiver that fails its first `fail` deliveries, and records the ones it took.
    struct Flaky {
        fail: Mutex<u32>,
        got: Mutex<Vec<(String, String)>>,
    }

    #[async_trait::async_trait]
    impl Deliver for Flaky {
        async fn deliver(&self, receiver: &str, notice: &Notice) -> Result<(), String> {
            let mut fail = self.fail.lock().unwrap();
            if receiver == "flaky" && *fail > 0 {
                *fail -= 1;
                return Err("HTTP 500".into());
            }
            self.got.lock().unwrap().push((receiver.to_owned(), notice.alert_key()));
            Ok(())
        }
    }

    fn notice(receivers: &[&str]) -> Notice {
        Notice {
            rule: "checkout-5xx".into(),
            group: "/checkout".into(),
            outcome: Outcome::Fired,
            value: Some(57.0),
            severity: "critical".into(),
            labels: BTreeMap::new(),
            text: "57 errors".into(),
            starts_ms: 0,
            ends_ms: None,
            valid_until_ms: None,
            window_index: 1,
            window_from_ms: 0,
            window_to_ms: 60_000,
            receivers: receivers.iter().map(|r| (*r).to_owned()).collect(),
            attempts: 0,
            next_try_ms: 0,
            last_error: None,
        }
    }

    #[tokio::test]
    async fn a_failing_receiver_is_retried_later_and_told_once() {
        let flaky = Arc::new(Flaky { fail: Mutex::new(2), got: Mutex::new(Vec::new()) });
        let deliver: Arc<dyn Deliver> = flaky.clone();
        let mut outbox = vec![notice(&["slack", "flaky"])];
        assert!(deliver_due(&mut outbox, &deliver, 1_000).await);
        assert_eq!(outbox.len(), 1, "kept for the receiver that failed");
        assert_eq!(outbox[0].receivers, ["flaky"]);
        assert_eq!((outbox[0].attempts, outbox[0].next_try_ms), (1, 11_000));
        assert_eq!(outbox[0].last_error.as_deref(), Some("flaky: HTTP 500"));
        assert!(!deliver_due(&mut outbox, &deliver, 10_999).await, "not due yet");
        deliver_due(&mut outbox, &deliver, 11_000).await;
        assert_eq!((outbox[0].attempts, outbox[0].next_try_ms), (2, 31_000));
        // The resolve comes while the firing is still owed to `flaky`: it waits behind it.
        outbox.push(Notice { outcome: Outcome::Resolved, ..notice(&["slack", "flaky"]) });
        deliver_due(&mut outbox, &deliver, 20_000).await;
        assert_eq!(outbox.len(), 2);
        assert_eq!(outbox[1].receivers, ["flaky"], "slack got the resolve; flaky waits for its firing first");
        deliver_due(&mut outbox, &deliver, 31_000).await;
        assert!(outbox.is_empty(), "delivered");
        let got = flaky.got.lock().unwrap().clone();
        let key = "checkout-5xx//checkout".to_owned();
        assert_eq!(
            got,
            [
                ("slack".into(), key.clone()),
                ("slack".into(), key.clone()),
                ("flaky".into(), key.clone()),
                ("flaky".into(), key)
            ]
        );
        assert_eq!(retry_delay(30), Duration::from_secs(600));
    }
}
