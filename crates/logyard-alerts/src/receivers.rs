//! Receivers, as configured (`[[alerts.receivers]]`), and delivery to them over HTTP.
//!
//! - `slack`: a Slack incoming webhook (Block Kit message).
//! - `alertmanager`: Alertmanager's `POST <url>/api/v2/alerts`, so the shop's routing,
//!   grouping, silences and PagerDuty integration apply.
//! - `webhook`: any URL, with the JSON body signed: `Logyard-Signature: v1=<hex HMAC-SHA-256
//!   of "<timestamp>.<body>">` and `Logyard-Timestamp: <unix seconds>` (the receiver checks
//!   both and refuses old timestamps, so a captured request cannot be replayed later).
//!
//! URLs (Slack's carries its secret) and keys are read from files (a mounted Secret) or given
//! in the configuration; they are never logged: errors name the receiver, not its URL.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::evaluator::{Deliver, Notice};
use crate::payload;

/// One receiver as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub name: String,
    pub kind: ReceiverKind,
    /// The URL, or a file holding it.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// The webhook's signing key (a file holding it).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverKind {
    Slack,
    Alertmanager,
    Webhook,
}

/// A receiver ready to deliver to.
struct Receiver {
    kind: ReceiverKind,
    url: String,
    key: Option<Vec<u8>>,
}

/// Delivers over HTTP to the configured receivers.
pub struct HttpReceivers {
    receivers: BTreeMap<String, Receiver>,
    client: reqwest::Client,
    /// The console's address, for links back to the rule's search.
    console_url: Option<String>,
}

fn read_secret(path: &PathBuf, what: &str, name: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| format!("alert receiver {name:?}: reading its {what} from {}: {e}", path.display()))
}

impl HttpReceivers {
    pub fn new(configs: &[ReceiverConfig], console_url: Option<String>) -> Result<Self, String> {
        let mut receivers = BTreeMap::new();
        for c in configs {
            let url = match (&c.url, &c.url_file) {
                (Some(u), None) => u.clone(),
                (None, Some(f)) => read_secret(f, "URL", &c.name)?,
                _ => return Err(format!("alert receiver {:?}: give `url` or `url_file`", c.name)),
            };
            let parsed = reqwest::Url::parse(&url)
                .map_err(|e| format!("alert receiver {:?}: its URL is not valid: {e}", c.name))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!("alert receiver {:?}: its URL is not http or https", c.name));
            }
            let key = match (&c.secret_file, c.kind) {
                (Some(f), ReceiverKind::Webhook) => Some(read_secret(f, "signing key", &c.name)?.into_bytes()),
                (None, ReceiverKind::Webhook) => {
                    return Err(format!(
                        "alert receiver {:?}: a webhook needs `secret_file` (its signing key)",
                        c.name
                    ));
                }
                (Some(_), _) => return Err(format!("alert receiver {:?}: only a webhook takes `secret_file`", c.name)),
                (None, _) => None,
            };
            let url = match c.kind {
                ReceiverKind::Alertmanager => format!("{}/api/v2/alerts", url.trim_end_matches('/')),
                _ => url,
            };
            if receivers.insert(c.name.clone(), Receiver { kind: c.kind, url, key }).is_some() {
                return Err(format!("alert receiver {:?} is configured twice", c.name));
            }
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("alert receivers: {e}"))?;
        Ok(Self { receivers, client, console_url })
    }

    pub fn names(&self) -> Vec<&str> {
        self.receivers.keys().map(String::as_str).collect()
    }

    fn link(&self, notice: &Notice) -> Option<String> {
        self.console_url.as_ref().map(|base| format!("{}/ui/#alerts/{}", base.trim_end_matches('/'), notice.rule))
    }
}

/// `v1=<hex HMAC-SHA-256 of "<timestamp>.<body>">`.
pub fn signature(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[async_trait::async_trait]
impl Deliver for HttpReceivers {
    async fn deliver(&self, name: &str, notice: &Notice) -> Result<(), String> {
        let receiver = self.receivers.get(name).ok_or_else(|| format!("no receiver is named {name:?}"))?;
        let link = self.link(notice);
        let body = match receiver.kind {
            ReceiverKind::Slack => payload::slack(notice, link.as_deref()),
            ReceiverKind::Alertmanager => payload::alertmanager(notice, link.as_deref()),
            ReceiverKind::Webhook => payload::webhook(notice, link.as_deref()),
        };
        let body = serde_json::to_vec(&body).expect("JSON serializes");
        let mut request = self.client.post(&receiver.url).header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(key) = &receiver.key {
            let timestamp = chrono::Utc::now().timestamp();
            request = request
                .header("Logyard-Timestamp", timestamp.to_string())
                .header("Logyard-Signature", signature(key, timestamp, &body));
        }
        // The error is reqwest's without the URL (it may carry a secret).
        let response = request.body(body).send().await.map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(format!("answered {status}: {}", text.chars().take(200).collect::<String>()))
    }

    fn repeats(&self, receiver: &str) -> bool {
        self.receivers.get(receiver).is_some_and(|r| r.kind == ReceiverKind::Alertmanager)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_the_timestamp_and_the_body() {
        // The value Python's hmac module computes for the same key and message.
        let sig = signature(b"key", 1_764_806_400, b"{\"rule\":\"x\"}");
        assert_eq!(sig, "v1=947e1529edb4a586b888af63ecc22c915abe5114c564a8dd5377142814de7ddc");
        assert_ne!(sig, signature(b"key", 1_764_806_401, b"{\"rule\":\"x\"}"));
        assert_ne!(sig, signature(b"other", 1_764_806_400, b"{\"rule\":\"x\"}"));
    }

    #[test]
    fn receivers_are_checked_without_showing_their_urls() {
        let cfg = |kind, url: &str, secret: Option<PathBuf>| ReceiverConfig {
            name: "r".into(),
            kind,
            url: Some(url.into()),
            url_file: None,
            secret_file: secret,
        };
        assert!(
            HttpReceivers::new(&[cfg(ReceiverKind::Slack, "https://hooks.slack.com/services/T/B/secret", None)], None)
                .is_ok()
        );
        let e =
            HttpReceivers::new(&[cfg(ReceiverKind::Webhook, "https://example.test/hook", None)], None).err().unwrap();
        assert!(e.contains("needs `secret_file`"), "{e}");
        let e = HttpReceivers::new(&[cfg(ReceiverKind::Slack, "ftp://x/secret", None)], None).err().unwrap();
        assert!(e.contains("not http or https") && !e.contains("secret"), "{e}");
        let am = HttpReceivers::new(&[cfg(ReceiverKind::Alertmanager, "http://127.0.0.1:9093/", None)], None).unwrap();
        assert_eq!(am.receivers["r"].url, "http://127.0.0.1:9093/api/v2/alerts");
        let both =
            ReceiverConfig { url_file: Some("/nonexistent".into()), ..cfg(ReceiverKind::Slack, "https://x", None) };
        assert!(HttpReceivers::new(&[both], None).err().unwrap().contains("give `url` or `url_file`"));
    }
}
