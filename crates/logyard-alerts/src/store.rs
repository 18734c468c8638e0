//! What the replicas share about alerts, kept in the storage so every replica and every
//! restart sees the same:
//!
//! - `alerts/rules/<name>.json`: rules added through `POST /api/v1/alerts` (the configured
//!   ones come from the configuration file and cannot be changed through the API);
//! - `alerts/silences/<id>.json`: silences, which keep matching alerts from being told until
//!   they end;
//! - `alerts/acks/<rule>/<group>.json`: acknowledgements ("someone is on it") of a firing
//!   alert, which last until that alert resolves;
//! - `alerts/leases/<rule>/`: each rule's lease log, with its state and the notifications not
//!   delivered yet (see [`crate::evaluator`]).

use std::collections::BTreeMap;

use logyard_storage::{EntryLog, Storage, StorageError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::evaluator::{Entry, LEASES_DIR};
use crate::rule::{Rule, RuleError};

const RULES_DIR: &str = "alerts/rules";
const SILENCES_DIR: &str = "alerts/silences";
const ACKS_DIR: &str = "alerts/acks";

/// Where a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The configuration file: changed by a new configuration, not through the API.
    Config,
    /// `POST /api/v1/alerts`, kept in the storage.
    Api,
}

/// A silence: alerts whose labels match every matcher are not told while it lasts (their
/// state goes on; an alert still firing when the silence ends is told then).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    /// Label name to value; `rule` names the rule, `group` the group, `severity` the
    /// severity, anything else one of the rule's labels. A value ending in `*` matches every
    /// value that starts with what comes before it.
    pub matchers: BTreeMap<String, String>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    #[serde(default)]
    pub comment: String,
    pub created_by: String,
}

impl Silence {
    pub fn active(&self, now_ms: i64) -> bool {
        self.starts_ms <= now_ms && now_ms < self.ends_ms
    }

    /// Whether it covers `group`'s alert of `rule`.
    pub fn matches(&self, rule: &Rule, group: &str) -> bool {
        self.matchers.iter().all(|(name, want)| {
            let have = match name.as_str() {
                "rule" | "alertname" => Some(rule.name.as_str()),
                "group" => Some(group),
                "severity" => Some(rule.severity.as_str()),
                label => rule.labels.get(label).map(String::as_str),
            };
            have.is_some_and(|have| match want.strip_suffix('*') {
                Some(prefix) => have.starts_with(prefix),
                None => have == want,
            })
        })
    }
}

/// A silence as `POST /api/v1/silences` takes it: matchers, and how long (`duration`, e.g.
/// `2h`) or until when (`ends_at`, RFC 3339); it starts now or at `starts_at`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    pub matchers: BTreeMap<String, String>,
    #[serde(default, with = "crate::span::option")]
    pub duration: Option<std::time::Duration>,
    #[serde(default)]
    pub starts_at: Option<String>,
    #[serde(default)]
    pub ends_at: Option<String>,
    #[serde(default)]
    pub comment: String,
}

/// The longest silence: a silence is for an incident or a maintenance, not for ever (change
/// or delete the rule instead).
const MAX_SILENCE_MS: i64 = 31 * 24 * 3600 * 1000;

impl NewSilence {
    /// The silence it asks for, made by `by` at `now_ms`.
    pub fn into_silence(self, by: &str, now_ms: i64) -> Result<Silence, StoreError> {
        let time = |field: &str, text: &str| {
            logyard_core::time::parse_time_str(text)
                .map(|micros| micros / 1_000)
                .ok_or_else(|| StoreError::Invalid(format!("`{field}`: {text:?} is not an RFC 3339 time")))
        };
        let starts_ms = match &self.starts_at {
            Some(t) => time("starts_at", t)?,
            None => now_ms,
        };
        let ends_ms = match (self.duration, &self.ends_at) {
            (Some(d), None) => starts_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            (None, Some(t)) => time("ends_at", t)?,
            _ => return Err(StoreError::Invalid("give `duration` (e.g. \"2h\") or `ends_at`, not both".into())),
        };
        if ends_ms - starts_ms > MAX_SILENCE_MS {
            return Err(StoreError::Invalid("a silence lasts at most 31 days".into()));
        }
        if ends_ms <= now_ms {
            return Err(StoreError::Invalid("the silence would already be over".into()));
        }
        if self.matchers.is_empty() {
            return Err(StoreError::Invalid("a silence needs at least one matcher (e.g. `rule`)".into()));
        }
        for (name, value) in &self.matchers {
            if name.is_empty() || value.is_empty() || name.len() > 128 || value.len() > 1024 {
                return Err(StoreError::Invalid(format!("matcher {name:?}: a name and a value are needed")));
            }
        }
        Ok(Silence {
            id: String::new(),
            matchers: self.matchers,
            starts_ms,
            ends_ms,
            comment: self.comment.chars().take(1000).collect(),
            created_by: by.to_owned(),
        })
    }
}

/// An acknowledgement of one firing alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub rule: String,
    pub group: String,
    /// The alert it belongs to (when its condition started to hold): once that alert
    /// resolves, the acknowledgement is over.
    pub active_since_ms: i64,
    pub by: String,
    pub at_ms: i64,
    #[serde(default)]
    pub comment: String,
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// The rule comes from the configuration file.
    #[error("alert rule {0:?} comes from the configuration file; change it there")]
    Configured(String),
    #[error("{0}")]
    Invalid(String),
}

impl logyard_core::ServiceError for StoreError {
    fn kind(&self) -> logyard_core::ErrorKind {
        use logyard_core::ErrorKind;
        match self {
            StoreError::Storage(e) => e.kind(),
            StoreError::Rule(_) | StoreError::Invalid(_) => ErrorKind::BadRequest,
            StoreError::Configured(_) => ErrorKind::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            StoreError::Storage(e) => e.code(),
            StoreError::Rule(_) => "bad_alert_rule",
            StoreError::Invalid(_) => "invalid_request",
            StoreError::Configured(_) => "configured_alert_rule",
        }
    }
}

/// The rules, silences and acknowledgements every replica shares.
#[derive(Debug, Clone)]
pub struct AlertStore {
    storage: Storage,
    configured: Vec<Rule>,
    receivers: Vec<String>,
}

fn rule_key(name: &str) -> String {
    format!("{RULES_DIR}/{name}.json")
}

fn ack_key(rule: &str, group: &str) -> String {
    let digest = Sha256::digest(group.as_bytes());
    format!("{ACKS_DIR}/{rule}/{}.json", hex::encode(&digest[..16]))
}

/// A silence id as [`AlertStore::add_silence`] makes them (so that a path cannot name another
/// object).
fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl AlertStore {
    /// The configured rules are checked here, against the receivers that exist.
    pub fn new(storage: Storage, configured: Vec<Rule>, receivers: Vec<String>) -> Result<Self, RuleError> {
        let names: Vec<&str> = receivers.iter().map(String::as_str).collect();
        let mut seen = std::collections::BTreeSet::new();
        for rule in &configured {
            rule.check(&names)?;
            if !seen.insert(rule.name.as_str()) {
                return Err(RuleError { rule: rule.name.clone(), message: "two rules have this name".into() });
            }
        }
        Ok(Self { storage, configured, receivers })
    }

    pub fn receivers(&self) -> &[String] {
        &self.receivers
    }

    async fn read<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        match self.storage.get(key).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StorageError::Config(format!("{key} cannot be read: {e}"))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn write<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StorageError> {
        self.storage.put(key, serde_json::to_vec_pretty(value).expect("serializes").into()).await
    }

    /// Every rule, the configured ones first; a stored rule that no longer checks (a receiver
    /// it names is gone) is left out with a warning.
    pub async fn rules(&self) -> Result<Vec<(Rule, Source)>, StorageError> {
        let mut out: Vec<(Rule, Source)> = self.configured.iter().map(|r| (r.clone(), Source::Config)).collect();
        let names: Vec<&str> = self.receivers.iter().map(String::as_str).collect();
        for file in self.storage.list_names(RULES_DIR).await? {
            let Some(name) = file.strip_suffix(".json") else { continue };
            if self.configured.iter().any(|r| r.name == name) {
                continue;
            }
            match self.read::<Rule>(&rule_key(name)).await {
                Ok(Some(rule)) => match rule.check(&names) {
                    Ok(()) if rule.name == name => out.push((rule, Source::Api)),
                    Ok(()) => tracing::warn!(file, "alert rule: the stored rule's name differs from its file; skipped"),
                    Err(e) => tracing::warn!(error = %e, "alert rule: a stored rule no longer checks; skipped"),
                },
                Ok(None) => {}
                Err(e) => tracing::warn!(file, error = %e, "alert rule: a stored rule cannot be read; skipped"),
            }
        }
        Ok(out)
    }

    /// Adds or replaces a rule; `true` when it replaced one.
    pub async fn put_rule(&self, rule: &Rule) -> Result<bool, StoreError> {
        let names: Vec<&str> = self.receivers.iter().map(String::as_str).collect();
        rule.check(&names)?;
        if self.configured.iter().any(|r| r.name == rule.name) {
            return Err(StoreError::Configured(rule.name.clone()));
        }
        let existed = self.read::<Rule>(&rule_key(&rule.name)).await?.is_some();
        self.write(&rule_key(&rule.name), rule).await?;
        Ok(existed)
    }

    /// Deletes a stored rule; `false` when there is none of that name. Its history stays.
    pub async fn delete_rule(&self, name: &str) -> Result<bool, StoreError> {
        if self.configured.iter().any(|r| r.name == name) {
            return Err(StoreError::Configured(name.to_owned()));
        }
        let key = rule_key(name);
        if !crate::rule::valid_name(name) || self.read::<Rule>(&key).await?.is_none() {
            return Ok(false);
        }
        self.storage.delete(&key).await?;
        Ok(true)
    }

    /// A rule's latest lease log entry: who evaluates it, its alerts, the notifications owed.
    pub async fn status(&self, rule: &str) -> Result<Option<Entry>, StorageError> {
        let log = EntryLog::new(&self.storage, &format!("{LEASES_DIR}/{rule}"));
        Ok(log.latest::<Entry>().await?.map(|(_, e)| e))
    }

    /// Every silence not yet ended at `now_ms` (ended ones are deleted as they are found).
    pub async fn silences(&self, now_ms: i64) -> Result<Vec<Silence>, StorageError> {
        let mut out = Vec::new();
        for file in self.storage.list_names(SILENCES_DIR).await? {
            let Some(id) = file.strip_suffix(".json").filter(|id| valid_id(id)) else { continue };
            let key = format!("{SILENCES_DIR}/{id}.json");
            match self.read::<Silence>(&key).await {
                Ok(Some(s)) if s.ends_ms > now_ms => out.push(s),
                Ok(Some(_)) => self.storage.delete(&key).await?,
                Ok(None) => {}
                Err(e) => tracing::warn!(file, error = %e, "alert silence cannot be read; skipped"),
            }
        }
        out.sort_by_key(|s| (s.starts_ms, s.id.clone()));
        Ok(out)
    }

    /// Keeps a new silence and gives it its id.
    pub async fn add_silence(&self, mut silence: Silence) -> Result<Silence, StoreError> {
        if silence.matchers.is_empty() {
            return Err(StoreError::Invalid("a silence needs at least one matcher (e.g. `rule`)".into()));
        }
        if silence.ends_ms <= silence.starts_ms {
            return Err(StoreError::Invalid("a silence must end after it starts".into()));
        }
        silence.id = uuid::Uuid::new_v4().simple().to_string();
        self.write(&format!("{SILENCES_DIR}/{}.json", silence.id), &silence).await?;
        Ok(silence)
    }

    /// A silence by id (`None` for an unknown or malformed id).
    pub async fn silence(&self, id: &str) -> Result<Option<Silence>, StorageError> {
        if !valid_id(id) {
            return Ok(None);
        }
        self.read(&format!("{SILENCES_DIR}/{id}.json")).await
    }

    /// Ends a silence now.
    pub async fn delete_silence(&self, id: &str) -> Result<(), StorageError> {
        if valid_id(id) {
            self.storage.delete(&format!("{SILENCES_DIR}/{id}.json")).await?;
        }
        Ok(())
    }

    /// Acknowledges the firing alert `group` of `rule` as it is now; `None` when that alert
    /// is not firing.
    pub async fn acknowledge(
        &self,
        rule: &str,
        group: &str,
        by: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<Option<Ack>, StorageError> {
        let firing = self.status(rule).await?.and_then(|entry| {
            entry.state.groups.get(group).filter(|a| a.phase == crate::state::Phase::Firing).map(|a| a.active_since_ms)
        });
        let Some(active_since_ms) = firing else { return Ok(None) };
        let ack = Ack {
            rule: rule.to_owned(),
            group: group.to_owned(),
            active_since_ms,
            by: by.to_owned(),
            at_ms: now_ms,
            comment: comment.to_owned(),
        };
        self.write(&ack_key(rule, group), &ack).await?;
        Ok(Some(ack))
    }

    /// A rule's acknowledgements by group, only those of alerts `state` still holds.
    pub async fn acks(&self, rule: &str, entry: Option<&Entry>) -> Result<BTreeMap<String, Ack>, StorageError> {
        let mut out = BTreeMap::new();
        if !crate::rule::valid_name(rule) {
            return Ok(out);
        }
        for file in self.storage.list_names(&format!("{ACKS_DIR}/{rule}")).await? {
            let key = format!("{ACKS_DIR}/{rule}/{file}");
            let Some(ack) = self.read::<Ack>(&key).await? else { continue };
            let current = entry
                .and_then(|e| e.state.groups.get(&ack.group))
                .is_some_and(|a| a.active_since_ms == ack.active_since_ms);
            if current {
                out.insert(ack.group.clone(), ack);
            } else if entry.is_some() {
                // Its alert resolved: the acknowledgement is over.
                self.storage.delete(&key).await?;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Rule {
        toml::from_str(
            r#"
            name = "checkout-5xx"
            search = { streams = ["storefront"], query = "status:>=500" }
            group_by = "route"
            every = "1m"
            condition = "value > 5"
            severity = "critical"
            labels = { team = "payments" }
            "#,
        )
        .unwrap()
    }

    fn silence(matchers: &[(&str, &str)]) -> Silence {
        Silence {
            id: String::new(),
            matchers: matchers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            starts_ms: 1_000,
            ends_ms: 2_000,
            comment: String::new(),
            created_by: "ops".into(),
        }
    }

    #[test]
    fn silences_match_on_every_matcher_and_only_while_they_last() {
        let r = rule();
        assert!(silence(&[("rule", "checkout-5xx")]).matches(&r, "/checkout"));
        assert!(silence(&[("alertname", "checkout-5xx"), ("group", "/checkout")]).matches(&r, "/checkout"));
        assert!(!silence(&[("rule", "checkout-5xx"), ("group", "/checkout")]).matches(&r, "/cart"));
        assert!(silence(&[("group", "/check*"), ("team", "payments")]).matches(&r, "/checkout"));
        assert!(!silence(&[("team", "search")]).matches(&r, "/checkout"));
        assert!(!silence(&[("region", "eu")]).matches(&r, "/checkout"), "a label the rule lacks never matches");
        assert!(silence(&[("severity", "critical")]).matches(&r, ""));
        let s = silence(&[("rule", "x")]);
        assert!(!s.active(999) && s.active(1_000) && s.active(1_999) && !s.active(2_000));
    }

    #[tokio::test]
    async fn stored_rules_silences_and_acks_are_shared_through_the_storage() {
        let dir = tempfile::tempdir().unwrap();
        let location = logyard_storage::Location::Local(dir.path().to_owned());
        let storage = Storage::open(location, &Default::default(), Default::default()).await.unwrap();
        let configured = Rule { name: "configured".into(), ..rule() };
        let store = AlertStore::new(storage.clone(), vec![configured.clone()], vec![]).unwrap();
        assert!(!store.put_rule(&rule()).await.unwrap());
        assert!(store.put_rule(&rule()).await.unwrap(), "a second put replaces");
        assert!(matches!(store.put_rule(&configured).await, Err(StoreError::Configured(_))));
        let bad = Rule { notify: vec!["nobody".into()], ..rule() };
        assert!(store.put_rule(&bad).await.unwrap_err().to_string().contains("not a receiver"));
        // Another replica's store sees the same rules.
        let other = AlertStore::new(storage, vec![configured], vec![]).unwrap();
        let names: Vec<_> = other.rules().await.unwrap().into_iter().map(|(r, s)| (r.name, s)).collect();
        assert_eq!(names, [("configured".to_owned(), Source::Config), ("checkout-5xx".to_owned(), Source::Api)]);
        assert!(other.delete_rule("checkout-5xx").await.unwrap());
        assert!(!other.delete_rule("checkout-5xx").await.unwrap());
        assert!(!other.delete_rule("../../x").await.unwrap());
        assert_eq!(store.rules().await.unwrap().len(), 1);

        let kept = store.add_silence(silence(&[("rule", "checkout-5xx")])).await.unwrap();
        assert_eq!(other.silences(1_500).await.unwrap(), std::slice::from_ref(&kept));
        assert_eq!(other.silence(&kept.id).await.unwrap(), Some(kept.clone()));
        assert!(other.silences(2_000).await.unwrap().is_empty(), "an ended silence is gone");
        assert_eq!(store.silence(&kept.id).await.unwrap(), None);
        assert!(store.add_silence(silence(&[])).await.is_err());
        let asked = |json: &str| serde_json::from_str::<NewSilence>(json).unwrap().into_silence("ops", 1_000);
        let two_hours = asked(r#"{"matchers": {"rule": "x"}, "duration": "2h", "comment": "deploy"}"#).unwrap();
        assert_eq!((two_hours.starts_ms, two_hours.ends_ms, two_hours.created_by.as_str()), (1_000, 7_201_000, "ops"));
        let until = asked(r#"{"matchers": {"rule": "x"}, "ends_at": "1970-01-01T00:00:05Z"}"#).unwrap();
        assert_eq!(until.ends_ms, 5_000);
        let refused = |json: &str| asked(json).unwrap_err().to_string();
        assert!(refused(r#"{"matchers": {"rule": "x"}}"#).contains("give `duration`"));
        assert!(refused(r#"{"matchers": {"rule": "x"}, "duration": "40d"}"#).contains("at most 31 days"));
        assert!(refused(r#"{"matchers": {"rule": "x"}, "ends_at": "yesterday"}"#).contains("not an RFC 3339 time"));
        assert!(
            refused(r#"{"matchers": {"rule": "x"}, "ends_at": "1970-01-01T00:00:00Z"}"#).contains("already be over")
        );

        // Nothing fires: nothing to acknowledge.
        assert_eq!(store.acknowledge("checkout-5xx", "/checkout", "ops", "", 5).await.unwrap(), None);
        let log = EntryLog::new(&store.storage, &format!("{LEASES_DIR}/checkout-5xx"));
        let firing = crate::state::Alert {
            phase: crate::state::Phase::Firing,
            active_since_ms: 60_000,
            fired_ms: Some(60_000),
            value: Some(9.0),
            silenced: false,
        };
        let mut entry = Entry::default();
        entry.state.groups.insert("/checkout".into(), firing);
        assert!(log.write(1, &entry).await.unwrap());
        let ack = store.acknowledge("checkout-5xx", "/checkout", "ops", "on it", 70_000).await.unwrap().unwrap();
        assert_eq!((ack.active_since_ms, ack.by.as_str()), (60_000, "ops"));
        assert_eq!(other.acks("checkout-5xx", Some(&entry)).await.unwrap()["/checkout"], ack);
        // The alert resolves: its acknowledgement is over.
        assert!(log.write(2, &Entry::default()).await.unwrap());
        let now = other.status("checkout-5xx").await.unwrap();
        assert!(other.acks("checkout-5xx", now.as_ref()).await.unwrap().is_empty());
        assert!(other.acks("checkout-5xx", Some(&entry)).await.unwrap().is_empty(), "deleted");
    }
}
