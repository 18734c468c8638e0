//! A rule's alerts, one per group: inactive → pending → firing → resolved (inactive again).
//!
//! Each evaluation observes, per group, whether the condition holds. A group whose condition
//! starts to hold becomes pending, and firing once it has held for the rule's `for` duration
//! (at once when `for` is 0); a pending group whose condition stops holding goes back to
//! inactive without a word; a firing one resolves. A group the evaluation does not mention
//! (no row for it) is a group whose condition does not hold. Only firing and resolving are
//! told to receivers; silences and acknowledgements change who is told, not the state.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The alerts of one rule that are not inactive, by group (`""` for a rule without groups).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, Alert>,
}

/// One group's alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub phase: Phase,
    /// When the condition started to hold (the end of that window, ms since the epoch).
    pub active_since_ms: i64,
    /// When it fired, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_ms: Option<i64>,
    /// The value at the latest evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// It fired under a silence and receivers have not been told (they are told if it is
    /// still firing when the silence ends, and never of its resolve otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub silenced: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Pending,
    Firing,
}

/// What one evaluation saw for one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub group: String,
    pub value: Option<f64>,
    pub holds: bool,
}

/// A group's state after an evaluation, as recorded in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The condition does not hold and did not before.
    Inactive,
    /// It holds, not yet for `for`.
    Pending,
    /// It has just fired: receivers are told.
    Fired,
    /// It fired before and still holds.
    Firing,
    /// It fired before and no longer holds: receivers are told.
    Resolved,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Inactive => "inactive",
            Outcome::Pending => "pending",
            Outcome::Fired => "firing",
            Outcome::Firing => "firing",
            Outcome::Resolved => "resolved",
        }
    }

    /// Whether receivers are told.
    pub fn notifies(self) -> bool {
        matches!(self, Outcome::Fired | Outcome::Resolved)
    }
}

/// One group's part of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub group: String,
    pub value: Option<f64>,
    pub outcome: Outcome,
    /// When the condition started to hold (for firing and resolved alerts).
    pub active_since_ms: Option<i64>,
    /// Receivers were not told of its firing (a silence covered it).
    pub silenced: bool,
}

impl RuleState {
    /// Applies the evaluation of the window ending at `at_ms`; returns a step for every group
    /// observed or active before, in group order.
    pub fn step(&mut self, at_ms: i64, for_: Duration, observed: &[Observation]) -> Vec<Step> {
        let for_ms = i64::try_from(for_.as_millis()).unwrap_or(i64::MAX);
        let mut seen: BTreeMap<&str, &Observation> = BTreeMap::new();
        for o in observed {
            seen.insert(&o.group, o);
        }
        let mut groups: Vec<String> = seen.keys().map(|g| (*g).to_owned()).collect();
        groups.extend(self.groups.keys().filter(|g| !seen.contains_key(g.as_str())).cloned());
        groups.sort();
        let mut steps = Vec::with_capacity(groups.len());
        for group in groups {
            let observation = seen.get(group.as_str());
            let holds = observation.is_some_and(|o| o.holds);
            let value = observation.and_then(|o| o.value);
            let before = self.groups.remove(&group);
            let (outcome, after) = match (before, holds) {
                (None, false) => (Outcome::Inactive, None),
                (None, true) => {
                    let since = at_ms;
                    if for_ms == 0 {
                        (
                            Outcome::Fired,
                            Some(Alert {
                                phase: Phase::Firing,
                                active_since_ms: since,
                                fired_ms: Some(at_ms),
                                value,
                                silenced: false,
                            }),
                        )
                    } else {
                        (
                            Outcome::Pending,
                            Some(Alert {
                                phase: Phase::Pending,
                                active_since_ms: since,
                                fired_ms: None,
                                value,
                                silenced: false,
                            }),
                        )
                    }
                }
                (Some(a), true) if a.phase == Phase::Pending => {
                    if at_ms.saturating_sub(a.active_since_ms) >= for_ms {
                        (Outcome::Fired, Some(Alert { phase: Phase::Firing, fired_ms: Some(at_ms), value, ..a }))
                    } else {
                        (Outcome::Pending, Some(Alert { value, ..a }))
                    }
                }
                (Some(a), true) => (Outcome::Firing, Some(Alert { value, ..a })),
                (Some(a), false) if a.phase == Phase::Pending => (Outcome::Inactive, None),
                (Some(a), false) => {
                    steps.push(Step {
                        group,
                        value,
                        outcome: Outcome::Resolved,
                        active_since_ms: Some(a.active_since_ms),
                        silenced: a.silenced,
                    });
                    continue;
                }
            };
            let active_since_ms = after.as_ref().map(|a| a.active_since_ms);
            let silenced = after.as_ref().is_some_and(|a| a.silenced);
            if let Some(a) = after {
                self.groups.insert(group.clone(), a);
            }
            steps.push(Step { group, value, outcome, active_since_ms, silenced });
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(group: &str, value: f64, holds: bool) -> Observation {
        Observation { group: group.to_owned(), value: Some(value), holds }
    }

    fn outcomes(steps: &[Step]) -> Vec<(&str, Outcome)> {
        steps.iter().map(|s| (s.group.as_str(), s.outcome)).collect()
    }

    const MIN: i64 = 60_000;

    #[test]
    fn an_alert_fires_after_for_and_resolves_once() {
        let mut state = RuleState::default();
        let for_ = Duration::from_secs(180);
        assert_eq!(outcomes(&state.step(MIN, for_, &[seen("", 3.0, false)])), [("", Outcome::Inactive)]);
        assert_eq!(outcomes(&state.step(2 * MIN, for_, &[seen("", 60.0, true)])), [("", Outcome::Pending)]);
        assert_eq!(outcomes(&state.step(3 * MIN, for_, &[seen("", 70.0, true)])), [("", Outcome::Pending)]);
        assert_eq!(outcomes(&state.step(4 * MIN, for_, &[seen("", 70.0, true)])), [("", Outcome::Pending)]);
        let fired = state.step(5 * MIN, for_, &[seen("", 80.0, true)]);
        assert_eq!(outcomes(&fired), [("", Outcome::Fired)]);
        assert_eq!(fired[0].active_since_ms, Some(2 * MIN));
        assert!(fired[0].outcome.notifies());
        assert_eq!(state.groups[""].fired_ms, Some(5 * MIN));
        assert_eq!(outcomes(&state.step(6 * MIN, for_, &[seen("", 90.0, true)])), [("", Outcome::Firing)]);
        let resolved = state.step(7 * MIN, for_, &[seen("", 1.0, false)]);
        assert_eq!(outcomes(&resolved), [("", Outcome::Resolved)]);
        assert!(resolved[0].outcome.notifies());
        assert!(state.groups.is_empty());
        assert_eq!(outcomes(&state.step(8 * MIN, for_, &[seen("", 1.0, false)])), [("", Outcome::Inactive)]);
    }

    #[test]
    fn a_pending_alert_that_stops_holding_is_forgotten_quietly() {
        let mut state = RuleState::default();
        let for_ = Duration::from_secs(120);
        state.step(MIN, for_, &[seen("", 60.0, true)]);
        let steps = state.step(2 * MIN, for_, &[seen("", 1.0, false)]);
        assert_eq!(outcomes(&steps), [("", Outcome::Inactive)]);
        assert!(!steps[0].outcome.notifies());
        // Holding again starts the count again.
        state.step(3 * MIN, for_, &[seen("", 60.0, true)]);
        assert_eq!(outcomes(&state.step(4 * MIN, for_, &[seen("", 60.0, true)])), [("", Outcome::Pending)]);
        assert_eq!(outcomes(&state.step(5 * MIN, for_, &[seen("", 60.0, true)])), [("", Outcome::Fired)]);
    }

    #[test]
    fn groups_fire_and_resolve_on_their_own() {
        let mut state = RuleState::default();
        let now = Duration::ZERO;
        let steps =
            state.step(MIN, now, &[seen("/checkout", 70.0, true), seen("/cart", 2.0, false), seen("/pay", 55.0, true)]);
        assert_eq!(
            outcomes(&steps),
            [("/cart", Outcome::Inactive), ("/checkout", Outcome::Fired), ("/pay", Outcome::Fired)]
        );
        // /pay has no row any more: its condition does not hold.
        let steps = state.step(2 * MIN, now, &[seen("/checkout", 80.0, true)]);
        assert_eq!(outcomes(&steps), [("/checkout", Outcome::Firing), ("/pay", Outcome::Resolved)]);
        assert_eq!(steps[1].value, None);
        // The state survives being written and read back (it is kept in the rule's log).
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<RuleState>(&json).unwrap(), state);
    }
}
