//! Receivers, as configured (`[[alerts.receivers]]`), and delivery to them over HTTP.
//!
//! - `slack`: a Slack incoming webhook (Block Kit message).
//! - `alertmanager`: Alertmanager's `POST <url>/api/v2/alerts`, so the shop's routing,
//!   grouping, silences and PagerDuty integration apply.
//! - `webhook`: any URL, with the JSON body signed: `Logyard-Signature: v1=<hex HMAC-SHA-256
//!   of "<timestamp>.<body>">` and `Logyard-Timestamp: <unix seconds>` (the receiver checks
//!   both and refuses old timestamps, so a captured request cannot be replayed later).
//! - `sns`: an Amazon SNS topic (`Publish`, signed with SigV4 by the AWS SDK's signer, with the
//!   SDK's credentials: IRSA on EKS); the message is the webhook's JSON, the subject its state
//!   and rule, so email, SQS, Lambda and chat subscribers all get something they can read.
//!
//! URLs (Slack's carries its secret) and keys are read from files (a mounted Secret), from AWS
//! Secrets Manager (read when first needed and again after a failed delivery, so a rotated
//! URL is picked up), or given in the configuration; they are never logged: errors name the
//! receiver, not its URL.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use aws_config::SdkConfig;
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
    /// The URL, a file holding it, or a Secrets Manager secret (name or ARN) holding it (as
    /// the secret's string, or its JSON's `url`).
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    #[serde(default)]
    pub url_secret: Option<String>,
    /// The webhook's signing key (a file holding it).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// An SNS topic's ARN (its region is the topic's).
    #[serde(default)]
    pub topic_arn: Option<String>,
    /// SNS only: another endpoint than `https://sns.<region>.amazonaws.com` (a VPC endpoint).
    #[serde(default)]
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverKind {
    Slack,
    Alertmanager,
    Webhook,
    Sns,
}

/// Where a receiver's URL comes from.
enum UrlSource {
    Fixed(String),
    /// A Secrets Manager secret, read when needed; forgotten after a failed delivery.
    Secret {
        id: String,
        client: aws_sdk_secretsmanager::Client,
        cached: tokio::sync::Mutex<Option<String>>,
    },
}

/// A receiver ready to deliver to.
struct Receiver {
    kind: ReceiverKind,
    url: UrlSource,
    key: Option<Vec<u8>>,
    sns: Option<Sns>,
}

/// An SNS topic and how to reach it.
struct Sns {
    topic_arn: String,
    region: String,
    endpoint: String,
    credentials: aws_credential_types::provider::SharedCredentialsProvider,
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

/// A URL a receiver may post to: http or https (the error does not show it).
fn check_url(url: &str, name: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("alert receiver {name:?}: its URL is not valid: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("alert receiver {name:?}: its URL is not http or https"));
    }
    Ok(())
}

/// The region of an SNS topic's ARN (`arn:<partition>:sns:<region>:<account>:<name>`).
fn topic_region(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.split(':').collect();
    (parts.len() == 6 && parts[0] == "arn" && parts[2] == "sns" && !parts[3].is_empty() && !parts[5].is_empty())
        .then_some(parts[3])
}

impl HttpReceivers {
    /// Checks the receivers; `aws` (the SDK's settings: credentials, region) is needed by SNS
    /// receivers and URLs in Secrets Manager.
    pub fn new(
        configs: &[ReceiverConfig],
        console_url: Option<String>,
        aws: Option<&SdkConfig>,
    ) -> Result<Self, String> {
        let mut receivers = BTreeMap::new();
        for c in configs {
            let needs_aws = || {
                aws.ok_or_else(|| format!("alert receiver {:?}: AWS settings are needed (none were loaded)", c.name))
            };
            let url = match (&c.url, &c.url_file, &c.url_secret, c.kind) {
                (None, None, None, ReceiverKind::Sns) => UrlSource::Fixed(String::new()),
                (_, _, _, ReceiverKind::Sns) => {
                    return Err(format!("alert receiver {:?}: an SNS receiver takes no URL", c.name));
                }
                (Some(u), None, None, _) => UrlSource::Fixed(u.clone()),
                (None, Some(f), None, _) => UrlSource::Fixed(read_secret(f, "URL", &c.name)?),
                (None, None, Some(id), _) => UrlSource::Secret {
                    id: id.clone(),
                    client: aws_sdk_secretsmanager::Client::new(needs_aws()?),
                    cached: Default::default(),
                },
                _ => return Err(format!("alert receiver {:?}: give one of `url`, `url_file` or `url_secret`", c.name)),
            };
            let sns = match (c.kind, &c.topic_arn) {
                (ReceiverKind::Sns, Some(arn)) => {
                    let region = topic_region(arn)
                        .ok_or_else(|| format!("alert receiver {:?}: {arn:?} is not an SNS topic ARN", c.name))?;
                    let endpoint = c.endpoint.clone().unwrap_or_else(|| format!("https://sns.{region}.amazonaws.com"));
                    check_url(&endpoint, &c.name)?;
                    let credentials = needs_aws()?
                        .credentials_provider()
                        .ok_or_else(|| format!("alert receiver {:?}: no AWS credentials are configured", c.name))?;
                    Some(Sns { topic_arn: arn.clone(), region: region.to_owned(), endpoint, credentials })
                }
                (ReceiverKind::Sns, None) => {
                    return Err(format!("alert receiver {:?}: an SNS receiver needs `topic_arn`", c.name));
                }
                (_, Some(_)) => {
                    return Err(format!("alert receiver {:?}: only an SNS receiver takes `topic_arn`", c.name));
                }
                (_, None) if c.endpoint.is_some() => {
                    return Err(format!("alert receiver {:?}: only an SNS receiver takes `endpoint`", c.name));
                }
                (_, None) => None,
            };
            if let UrlSource::Fixed(u) = &url
                && c.kind != ReceiverKind::Sns
            {
                check_url(u, &c.name)?;
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
            if receivers.insert(c.name.clone(), Receiver { kind: c.kind, url, key, sns }).is_some() {
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

impl Receiver {
    /// The URL to post to.
    async fn url(&self) -> Result<String, String> {
        let url = match &self.url {
            UrlSource::Fixed(url) => url.clone(),
            UrlSource::Secret { id, client, cached } => {
                let mut cached = cached.lock().await;
                if let Some(url) = &*cached {
                    url.clone()
                } else {
                    let url = read_url_secret(client, id).await?;
                    *cached = Some(url.clone());
                    url
                }
            }
        };
        Ok(match self.kind {
            ReceiverKind::Alertmanager => format!("{}/api/v2/alerts", url.trim_end_matches('/')),
            _ => url,
        })
    }

    /// After a failed delivery: a URL from Secrets Manager is read again next time.
    async fn forget_url(&self) {
        if let UrlSource::Secret { cached, .. } = &self.url {
            *cached.lock().await = None;
        }
    }
}

/// A webhook URL kept in Secrets Manager: the secret's string is the URL, or JSON with a `url`.
async fn read_url_secret(client: &aws_sdk_secretsmanager::Client, id: &str) -> Result<String, String> {
    let out = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| format!("reading secret {id:?}: {}", logyard_core::error_chain(&e)))?;
    let text = out.secret_string().ok_or_else(|| format!("secret {id:?} has no string value"))?.trim();
    let url = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(o)) => o
            .get("url")
            .and_then(|u| u.as_str())
            .ok_or_else(|| format!("secret {id:?} is JSON without a `url` string"))?
            .to_owned(),
        _ => text.to_owned(),
    };
    check_url(&url, id).map_err(|_| format!("secret {id:?} does not hold an http(s) URL"))?;
    Ok(url)
}

impl Sns {
    /// SNS `Publish` (the Query protocol), signed with SigV4.
    async fn publish(&self, client: &reqwest::Client, subject: &str, message: &str) -> Result<(), String> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", "Publish")
            .append_pair("Version", "2010-03-31")
            .append_pair("TopicArn", &self.topic_arn)
            .append_pair("Subject", subject)
            .append_pair("Message", message)
            .finish();
        let url = format!("{}/", self.endpoint.trim_end_matches('/'));
        let headers = [("content-type", "application/x-www-form-urlencoded; charset=utf-8")];
        let (status, text) = logyard_storage::aws::signed_post(
            client,
            &self.credentials,
            (&self.region, "sns"),
            &url,
            &headers,
            body.into_bytes(),
        )
        .await?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&text);
        Err(format!("SNS answered {status}: {}", text.chars().take(300).collect::<String>()))
    }
}

/// An SNS subject: printable ASCII, at most 100 characters.
fn sns_subject(notice: &Notice) -> String {
    let state = if notice.outcome == crate::state::Outcome::Resolved { "RESOLVED" } else { "FIRING" };
    let text = if notice.group.is_empty() {
        format!("{state}: {}", notice.rule)
    } else {
        format!("{state}: {} ({})", notice.rule, notice.group)
    };
    text.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).take(100).collect()
}

#[async_trait::async_trait]
impl Deliver for HttpReceivers {
    async fn deliver(&self, name: &str, notice: &Notice) -> Result<(), String> {
        let receiver = self.receivers.get(name).ok_or_else(|| format!("no receiver is named {name:?}"))?;
        let link = self.link(notice);
        if let Some(sns) = &receiver.sns {
            let message = serde_json::to_string(&payload::webhook(notice, link.as_deref())).expect("JSON serializes");
            return sns.publish(&self.client, &sns_subject(notice), &message).await;
        }
        let body = match receiver.kind {
            ReceiverKind::Slack => payload::slack(notice, link.as_deref()),
            ReceiverKind::Alertmanager => payload::alertmanager(notice, link.as_deref()),
            ReceiverKind::Webhook | ReceiverKind::Sns => payload::webhook(notice, link.as_deref()),
        };
        let body = serde_json::to_vec(&body).expect("JSON serializes");
        let result = self.post(receiver, body).await;
        if result.is_err() {
            receiver.forget_url().await;
        }
        result
    }

    fn repeats(&self, receiver: &str) -> bool {
        self.receivers.get(receiver).is_some_and(|r| r.kind == ReceiverKind::Alertmanager)
    }
}

impl HttpReceivers {
    async fn post(&self, receiver: &Receiver, body: Vec<u8>) -> Result<(), String> {
        let url = receiver.url().await?;
        let mut request = self.client.post(&url).header(reqwest::header::CONTENT_TYPE, "application/json");
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

    #[tokio::test]
    async fn receivers_are_checked_without_showing_their_urls() {
        let cfg = |kind, url: &str, secret: Option<PathBuf>| ReceiverConfig {
            name: "r".into(),
            kind,
            url: Some(url.into()),
            url_file: None,
            url_secret: None,
            secret_file: secret,
            topic_arn: None,
            endpoint: None,
        };
        let new = |c: ReceiverConfig| HttpReceivers::new(&[c], None, None);
        assert!(new(cfg(ReceiverKind::Slack, "https://hooks.slack.com/services/T/B/secret", None)).is_ok());
        let e = new(cfg(ReceiverKind::Webhook, "https://example.test/hook", None)).err().unwrap();
        assert!(e.contains("needs `secret_file`"), "{e}");
        let e = new(cfg(ReceiverKind::Slack, "ftp://x/secret", None)).err().unwrap();
        assert!(e.contains("not http or https") && !e.contains("secret"), "{e}");
        let am = new(cfg(ReceiverKind::Alertmanager, "http://127.0.0.1:9093/", None)).unwrap();
        assert_eq!(am.receivers["r"].url().await.unwrap(), "http://127.0.0.1:9093/api/v2/alerts");
        let both =
            ReceiverConfig { url_file: Some("/nonexistent".into()), ..cfg(ReceiverKind::Slack, "https://x", None) };
        assert!(new(both).err().unwrap().contains("give one of `url`, `url_file` or `url_secret`"));
        let in_secrets_manager =
            ReceiverConfig { url: None, url_secret: Some("shop/slack".into()), ..cfg(ReceiverKind::Slack, "", None) };
        assert!(new(in_secrets_manager).err().unwrap().contains("AWS settings are needed"));

        let sns =
            |arn: &str| ReceiverConfig { url: None, topic_arn: Some(arn.into()), ..cfg(ReceiverKind::Sns, "", None) };
        assert!(new(sns("arn:aws:sns:eu-west-1:123456789012:alerts")).err().unwrap().contains("AWS settings"));
        assert!(new(sns("arn:aws:sqs:eu-west-1:123456789012:alerts")).err().unwrap().contains("not an SNS topic ARN"));
        let with_url = ReceiverConfig { url: Some("https://x".into()), ..sns("arn:aws:sns:eu-west-1:1:a") };
        assert!(new(with_url).err().unwrap().contains("takes no URL"));
        let no_topic = ReceiverConfig { topic_arn: None, ..sns("") };
        assert!(new(no_topic).err().unwrap().contains("needs `topic_arn`"));
        assert_eq!(topic_region("arn:aws-cn:sns:cn-north-1:123:t"), Some("cn-north-1"));
    }

    #[test]
    fn sns_subjects_are_short_printable_ascii() {
        let mut n = crate::payload::tests::notice(crate::state::Outcome::Resolved);
        n.group = "/caf\u{e9}".repeat(30);
        let subject = sns_subject(&n);
        assert!(subject.starts_with("RESOLVED: checkout-5xx (/caf?/caf?"), "{subject}");
        assert_eq!(subject.chars().count(), 100);
    }
}
