//! Alert rules against a running server: a per-route rule on 5xx events fires for the failing
//! route only after its `for` duration, tells a signed webhook and a Slack-shaped receiver
//! once, resolves when the errors stop and says so; a receiver that fails at first gets the
//! notification once it recovers; every window is recorded in `logyard-alerts` exactly once.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use common::*;

/// A request a receiver took.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    timestamp: Option<String>,
    signature: Option<String>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP receiver on 127.0.0.1 that records what it is sent; on `/flaky` it answers 500
/// for `down` after the first request there.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
}

async fn receiver(down: Duration) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let failing_since: Arc<Mutex<Option<Instant>>> = Arc::default();
    let record = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (record, failing_since) = (record.clone(), failing_since.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (record, failing_since) = (record.clone(), failing_since.clone());
                    async move {
                        let header = |name: &str| req.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
                        let (path, timestamp, signature) =
                            (req.uri().path().to_owned(), header("logyard-timestamp"), header("logyard-signature"));
                        let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
                        let failing = path == "/flaky"
                            && failing_since.lock().unwrap().get_or_insert_with(Instant::now).elapsed() < down;
                        if failing {
                            record.lock().unwrap().push(Received {
                                path: "refused".into(),
                                timestamp,
                                signature,
                                body,
                            });
                            return Ok::<_, hyper::Error>(
                                Response::builder().status(500).body(Full::new(Bytes::from("down"))).unwrap(),
                            );
                        }
                        record.lock().unwrap().push(Received { path, timestamp, signature, body });
                        Ok(Response::new(Full::new(Bytes::from("ok"))))
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Receiver { addr, got }
}

impl Receiver {
    fn at(&self, path: &str) -> Vec<Received> {
        self.got.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }
}

fn hmac_v1(key: &str, timestamp: &str, body: &[u8]) -> String {
    // Computed by Python's hmac module, as a receiver written by someone else would.
    let python = std::env::var("LOGYARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(python)
        .args(["-c", "import hmac,hashlib,sys; k,t=sys.argv[1:3]; b=sys.stdin.buffer.read(); print('v1='+hmac.new(k.encode(), t.encode()+b'.'+b, hashlib.sha256).hexdigest())", key, timestamp])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(body)?;
            child.wait_with_output()
        })
        .expect("running python3");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `n` events of `route` with `status`, timed now.
fn events(route: &str, status: u16, n: usize) -> String {
    let now = chrono::Utc::now().to_rfc3339();
    (0..n)
        .map(|i| {
            format!("{{\"timestamp\":\"{now}\",\"route\":\"{route}\",\"status\":{status},\"message\":\"e{i}\"}}\n")
        })
        .collect()
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "waited {limit:?} for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A configuration file in `dir`: quick alert timings, a webhook receiver `hook` at
/// `hooks`'s `/hook` signed with `key`, then `rest`.
fn config_with_hook(dir: &std::path::Path, hooks: SocketAddr, key: &str, rest: &str) -> std::path::PathBuf {
    let key_file = dir.join("hook.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let config = dir.join("logyard.toml");
    let head = format!(
        "[alerts]\ntick = \"300ms\"\nsettle = \"1s\"\nlease = \"5s\"\n\n[[alerts.receivers]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://{hooks}/hook\"\nsecret_file = \"{}\"\n",
        key_file.display()
    );
    std::fs::write(&config, head + rest).unwrap();
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn a_per_route_rule_fires_once_for_the_failing_route_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    // The Slack-shaped receiver is down for the first minute.
    let hooks = receiver(Duration::from_secs(60)).await;
    let config = config_with_hook(
        dir.path(),
        hooks.addr,
        "s3cret-signing-key",
        &format!(
            r#"
[[alerts.receivers]]
name = "slack"
kind = "slack"
url = "http://{addr}/flaky"

[[alerts.rules]]
name = "errors-by-route"
search = {{ streams = ["web"], query = "status:>=500" }}
group_by = "route"
every = "10s"
condition = "value > 5"
for = "10s"
severity = "critical"
labels = {{ team = "payments" }}
message = "{{{{value}}}} errors on {{{{group}}}} in {{{{window}}}}"
notify = ["hook", "slack"]
"#,
            addr = hooks.addr,
        ),
    );
    let server = ServerSpec::local(dir.path()).env("LOGYARD_CONFIG", config.to_str().unwrap()).start();

    // 5xx on /checkout (about 40 a window) and a few on /cart (one every 10 s, below the
    // threshold) for about 30 s.
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(30) {
        let cart_errors = usize::from(round % 10 == 0);
        round += 1;
        let body = events("/checkout", 503, 4) + &events("/cart", 500, cart_errors) + &events("/cart", 200, 5);
        let (status, _) = ingest(&server, "web", body, "").await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    wait_for("the firing notification", Duration::from_secs(30), || !hooks.at("/hook").is_empty()).await;
    let firing = hooks.at("/hook");
    assert_eq!(firing.len(), 1, "told once: {firing:?}");
    let body = firing[0].json();
    assert_eq!((body["state"].as_str(), body["group"].as_str()), (Some("firing"), Some("/checkout")), "{body}");
    assert_eq!(body["labels"]["team"], "payments");
    assert!(body["message"].as_str().unwrap().ends_with("errors on /checkout in 10s"), "{body}");
    let (timestamp, signature) = (firing[0].timestamp.clone().unwrap(), firing[0].signature.clone().unwrap());
    assert_eq!(signature, hmac_v1("s3cret-signing-key", &timestamp, &firing[0].body), "the signature checks");

    // Errors stop: the alert resolves and both receivers hear it; the flaky one gets the
    // firing too, once, after its minute of 500s (retried after 10, 20 and 40 s).
    wait_for("the resolve notification", Duration::from_secs(60), || hooks.at("/hook").len() >= 2).await;
    let hook = hooks.at("/hook");
    assert_eq!(hook.len(), 2, "{hook:?}");
    assert_eq!(hook[1].json()["state"], "resolved");
    wait_for("the Slack messages", Duration::from_secs(120), || hooks.at("/flaky").len() >= 2).await;
    let slack = hooks.at("/flaky");
    assert_eq!(slack.len(), 2, "each message once, after the receiver recovered");
    let refused = hooks.at("refused");
    assert!(refused.len() >= 3, "tried at 0, 10 and 30 s while down: {}", refused.len());
    assert!(refused.iter().all(|r| r.json()["blocks"][0]["text"]["text"] == "FIRING: errors-by-route (/checkout)"));
    assert_eq!(slack[0].json()["blocks"][0]["text"]["text"], "FIRING: errors-by-route (/checkout)");
    assert_eq!(slack[1].json()["blocks"][0]["text"]["text"], "RESOLVED: errors-by-route (/checkout)");
    assert!(
        hook.iter().chain(&slack).all(|r| !String::from_utf8_lossy(&r.body).contains("/cart")),
        "/cart never alerts"
    );

    // Every window once in the history table; /cart seen but never firing.
    flush(&server).await;
    let repeated = rows(
        &server,
        "SELECT window_index, \"group\", count(*) AS n FROM \"logyard-alerts\" GROUP BY 1, 2 HAVING count(*) > 1",
    )
    .await;
    assert!(repeated.is_empty(), "a window recorded twice: {repeated:?}");
    let states =
        rows(&server, "SELECT \"group\", state, count(*) AS n FROM \"logyard-alerts\" GROUP BY 1, 2 ORDER BY 1, 2")
            .await;
    let has = |group: &str, state: &str| states.iter().any(|r| r["group"] == group && r["state"] == state);
    assert!(has("/checkout", "pending") && has("/checkout", "firing") && has("/checkout", "resolved"), "{states:?}");
    assert!(!has("/cart", "firing") && has("/cart", "inactive"), "{states:?}");
    let windows = count(&server, "SELECT count(DISTINCT window_index) FROM \"logyard-alerts\"").await;
    let span = count(&server, "SELECT max(window_index) - min(window_index) + 1 FROM \"logyard-alerts\"").await;
    assert_eq!(windows, span, "no window skipped");
}

/// Alertmanager's v2 API as a test receiver: every request validated against Alertmanager's
/// own OpenAPI spec (tests/alertmanager/, vendored with its licence) by a Python process.
struct Alertmanager {
    child: std::process::Child,
    url: String,
}

impl Alertmanager {
    fn start() -> Alertmanager {
        use std::io::BufRead;
        let python = std::env::var("LOGYARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let here = common::crate_dir().join("tests/alertmanager");
        let mut child = std::process::Command::new(&python)
            .arg(here.join("receiver.py"))
            .arg(here.join("openapi.yaml"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("running {python} (scripts/test.sh makes the venv with PyYAML and jsonschema): {e}")
            });
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("listening ").unwrap_or_else(|| panic!("receiver.py said {line:?}"));
        Alertmanager { url: format!("http://127.0.0.1:{port}"), child }
    }

    /// What it was sent: `{"path", "valid", "errors", "body"}` per request.
    async fn received(&self) -> Vec<Value> {
        client().get(format!("{}/received", self.url)).send().await.unwrap().json().await.unwrap()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request with a token; returns the status and the JSON body.
async fn call(server: &Server, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = client().request(method.parse().unwrap(), server.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The rule `name` as `GET /api/v1/alerts` shows it to `token`.
async fn shown(server: &Server, token: &str, name: &str) -> Option<Value> {
    let (status, body) = call(server, "GET", "/api/v1/alerts", token, None).await;
    assert_eq!(status, 200, "{body}");
    body["rules"].as_array().unwrap().iter().find(|r| r["name"] == name).cloned()
}

fn alert<'a>(rule: &'a Value, group: &str) -> Option<&'a Value> {
    rule["alerts"].as_array().unwrap().iter().find(|a| a["group"] == group)
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_silences_and_acknowledgements_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = receiver(Duration::ZERO).await;
    let am = Alertmanager::start();
    let (admin, e1) = create_token("ops", "admin,query,ingest", None);
    let (oncall, e2) = create_token("oncall", "query", Some("web"));
    let closed = free_port();
    let config = config_with_hook(
        dir.path(),
        hooks.addr,
        "k",
        &format!(
            r#"
[[alerts.receivers]]
name = "am"
kind = "alertmanager"
url = "{am}"

[[alerts.receivers]]
name = "down"
kind = "slack"
url = "http://127.0.0.1:{closed}/never"

[[alerts.rules]]
name = "configured"
sql = "SELECT 0 AS value"
every = "10s"
condition = "value > 1"

{e1}
{e2}
"#,
            am = am.url,
        ),
    );
    let server = ServerSpec::local(dir.path()).env("LOGYARD_CONFIG", config.to_str().unwrap()).start();

    // Only an admin token changes rules; mistakes are named; configured rules stay as configured.
    let rule = serde_json::json!({
        "name": "errors-by-route",
        "search": {"streams": ["web"], "query": "status:>=500"},
        "group_by": "route",
        "every": "10s",
        "condition": "value > 5",
        "severity": "critical",
        "message": "{{value}} errors on {{group}}",
        "notify": ["hook", "am", "down"],
    });
    let (status, body) = call(&server, "POST", "/api/v1/alerts", &oncall, Some(rule.clone())).await;
    assert_eq!(status, 403, "{body}");
    let mut bad = rule.clone();
    bad["condition"] = "value >> 5".into();
    let (status, body) = call(&server, "POST", "/api/v1/alerts", &admin, Some(bad)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_alert_rule")), "{body}");
    let mut bad = rule.clone();
    bad["notify"] = serde_json::json!(["nobody"]);
    let (status, body) = call(&server, "POST", "/api/v1/alerts", &admin, Some(bad)).await;
    assert!(status == 400 && body["error"]["message"].as_str().unwrap().contains("not a receiver"), "{body}");
    let mut bad = rule.clone();
    bad["search"]["query"] = "status:>=500 AND (".into();
    let (status, body) = call(&server, "POST", "/api/v1/alerts", &admin, Some(bad)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_search")), "{body}");
    let (status, _) = call(&server, "DELETE", "/api/v1/alerts/configured", &admin, None).await;
    assert_eq!(status, 409);
    let (status, body) = call(&server, "POST", "/api/v1/alerts", &admin, Some(rule.clone())).await;
    assert_eq!(status, 201, "{body}");

    // /cart is silenced before anything fires.
    let silence = serde_json::json!({"matchers": {"rule": "errors-by-route", "group": "/cart"}, "duration": "1h", "comment": "cart deploy"});
    let (status, silence) = call(&server, "POST", "/api/v1/silences", &oncall, Some(silence)).await;
    assert_eq!(status, 201, "{silence}");
    assert_eq!(silence["created_by"], "oncall");
    let (status, body) =
        call(&server, "POST", "/api/v1/silences", &oncall, Some(serde_json::json!({"matchers": {}, "duration": "1h"})))
            .await;
    assert_eq!(status, 400, "{body}");
    // A token limited to `web` silences only rules it may see, named.
    for matchers in [serde_json::json!({"group": "/cart"}), serde_json::json!({"rule": "configured"})] {
        let asked = serde_json::json!({"matchers": matchers, "duration": "1h"});
        let (status, body) = call(&server, "POST", "/api/v1/silences", &oncall, Some(asked)).await;
        assert_eq!(status, 403, "{body}");
    }

    // Errors on both routes until told to stop.
    let sending = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sender = {
        let (url, admin, sending) = (server.url("/api/v1/streams/web/events"), admin.clone(), sending.clone());
        tokio::spawn(async move {
            while sending.load(Ordering::SeqCst) {
                let body = events("/checkout", 503, 4) + &events("/cart", 500, 4);
                let r = client().post(&url).bearer_auth(&admin).body(body).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 200);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    wait_for("the firing notification", Duration::from_secs(60), || !hooks.at("/hook").is_empty()).await;
    let shown_rule = shown(&server, &oncall, "errors-by-route").await.expect("a search rule on web is shown");
    assert_eq!(shown_rule["source"], "api");
    let (checkout, cart) = (alert(&shown_rule, "/checkout").unwrap(), alert(&shown_rule, "/cart").unwrap());
    assert_eq!((checkout["state"].as_str(), checkout["silenced"].as_bool()), (Some("firing"), Some(false)));
    assert_eq!((cart["state"].as_str(), cart["silenced"].as_bool()), (Some("firing"), Some(true)), "{shown_rule}");
    assert!(shown(&server, &oncall, "configured").await.is_none(), "a SQL rule needs a token for every stream");
    assert_eq!(shown(&server, &admin, "configured").await.unwrap()["source"], "config");
    // The receiver that cannot be reached: its notification waits, with the reason, shown.
    let started = Instant::now();
    let owed = loop {
        let rule = shown(&server, &oncall, "errors-by-route").await.unwrap();
        let owed = rule["undelivered"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["receivers"] == serde_json::json!(["down"]))
            .cloned();
        match owed {
            Some(owed) if owed["attempts"].as_u64() >= Some(1) => break owed,
            _ => assert!(started.elapsed() < Duration::from_secs(20), "no undelivered notification shown: {rule}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(owed["attempts"].as_u64().unwrap() >= 1 && owed["last_error"].as_str().unwrap().starts_with("down: "));
    assert!(!owed["last_error"].as_str().unwrap().contains("/never"), "the URL (a secret) is not shown");

    // Acknowledged by the person on call; nothing else can be acknowledged.
    let (status, ack) = call(
        &server,
        "POST",
        "/api/v1/alerts/errors-by-route/ack",
        &oncall,
        Some(serde_json::json!({"group": "/checkout", "comment": "looking"})),
    )
    .await;
    assert_eq!((status, ack["by"].as_str()), (200, Some("oncall")), "{ack}");
    let (status, _) =
        call(&server, "POST", "/api/v1/alerts/errors-by-route/ack", &oncall, Some(serde_json::json!({"group": "/x"})))
            .await;
    assert_eq!(status, 409);
    let shown_rule = shown(&server, &admin, "errors-by-route").await.unwrap();
    assert_eq!(alert(&shown_rule, "/checkout").unwrap()["acknowledged"]["comment"], "looking");

    // The silence ends while /cart still fails: now it is told.
    let id = silence["id"].as_str().unwrap();
    let (status, _) = call(&server, "DELETE", &format!("/api/v1/silences/{id}"), &oncall, None).await;
    assert_eq!(status, 204);
    let told = |group: &str, state: &str| {
        hooks.at("/hook").iter().filter(|r| r.json()["group"] == group && r.json()["state"] == state).count()
    };
    wait_for("/cart told once its silence ended", Duration::from_secs(40), || told("/cart", "firing") == 1).await;

    // Errors stop: both resolve, each told once.
    sending.store(false, Ordering::SeqCst);
    sender.await.unwrap();
    wait_for("both resolves", Duration::from_secs(60), || {
        told("/checkout", "resolved") + told("/cart", "resolved") == 2
    })
    .await;
    assert_eq!((told("/checkout", "firing"), told("/cart", "firing")), (1, 1));

    // Alertmanager got every request in the shape its API takes: the firing alerts again at
    // each evaluation (or it would resolve them itself), with endsAt, and the resolves.
    let am_got = am.received().await;
    assert!(am_got.iter().all(|r| r["valid"] == true && r["path"] == "/api/v2/alerts"), "{am_got:?}");
    let am_alerts: Vec<&Value> = am_got.iter().flat_map(|r| r["body"].as_array().unwrap()).collect();
    let checkout_posts: Vec<&&Value> = am_alerts.iter().filter(|a| a["labels"]["group"] == "/checkout").collect();
    assert!(checkout_posts.len() >= 3, "firing, repeated, resolved: {checkout_posts:?}");
    assert!(checkout_posts.iter().all(|a| a["endsAt"].is_string() && a["labels"]["alertname"] == "errors-by-route"));

    // The silenced firing is in the history; the rule is deleted, its history stays.
    assert_eq!(call(&server, "POST", "/api/v1/flush", &admin, None).await.0, 200);
    let sql =
        "SELECT count(*) AS n FROM \"logyard-alerts\" WHERE \"group\" = '/cart' AND silenced AND state = 'firing'";
    let (status, body) = call(&server, "POST", "/api/v1/query", &admin, Some(serde_json::json!({"sql": sql}))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["rows"][0]["n"].as_i64().unwrap() >= 1, "{body}");
    let (status, _) = call(&server, "DELETE", "/api/v1/alerts/errors-by-route", &admin, None).await;
    assert_eq!(status, 204);
    assert!(shown(&server, &admin, "errors-by-route").await.is_none());
    let (status, _) = call(&server, "DELETE", "/api/v1/alerts/errors-by-route", &admin, None).await;
    assert_eq!(status, 404);
}

/// Runs Python (the test venv's, with boto3) against moto; returns its standard output.
fn boto3(moto: &Moto, script: &str) -> String {
    let python = std::env::var("LOGYARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args(["-c", script, &moto.endpoint])
        .env("AWS_ACCESS_KEY_ID", "setup")
        .env("AWS_SECRET_ACCESS_KEY", "setup")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sns_topics_and_webhook_urls_in_secrets_manager() {
    let moto = Moto::start();
    let hooks = receiver(Duration::ZERO).await;
    // A topic with an SQS queue subscribed (where the test reads what SNS delivered), and the
    // Slack URL kept in Secrets Manager.
    let topic = boto3(
        &moto,
        &format!(
            r#"
import sys, boto3
e = sys.argv[1]
sns, sqs, sm = (boto3.client(s, endpoint_url=e) for s in ("sns", "sqs", "secretsmanager"))
topic = sns.create_topic(Name="shop-alerts")["TopicArn"]
queue = sqs.create_queue(QueueName="alerts-mail")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
sm.create_secret(Name="shop/slack-url", SecretString='{{"url": "http://{addr}/slack"}}')
print(topic)
"#,
            addr = hooks.addr
        ),
    );
    let topic = topic.trim();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_hook(
        dir.path(),
        hooks.addr,
        "k",
        &format!(
            r#"
[[alerts.receivers]]
name = "sns"
kind = "sns"
topic_arn = "{topic}"
endpoint = "{sns}"

[[alerts.receivers]]
name = "slack"
kind = "slack"
url_secret = "shop/slack-url"

[[alerts.rules]]
name = "payment-errors"
search = {{ streams = ["web"], query = "status:>=500" }}
every = "10s"
condition = "value > 3"
severity = "critical"
notify = ["sns", "slack"]
"#,
            sns = moto.proxied,
        ),
    );
    let mut spec = ServerSpec::local(dir.path()).env("LOGYARD_CONFIG", config.to_str().unwrap());
    spec.env.extend(aws_env("AWS_ENDPOINT_URL", &moto.endpoint, "AKIDALERTS", "alerts-secret"));
    let server = spec.start();

    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        let (status, _) = ingest(&server, "web", events("/pay", 502, 2), "").await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    wait_for("the resolve on Slack", Duration::from_secs(60), || hooks.at("/slack").len() >= 2).await;
    let slack = hooks.at("/slack");
    assert_eq!(slack[0].json()["blocks"][0]["text"]["text"], "FIRING: payment-errors");
    assert_eq!(slack[1].json()["blocks"][0]["text"]["text"], "RESOLVED: payment-errors");

    // SNS delivered both to the queue, as JSON with a subject; the requests were signed with
    // the server's credentials.
    let read = r#"
import sys, json, boto3
sqs = boto3.client("sqs", endpoint_url=sys.argv[1])
queue = sqs.get_queue_url(QueueName="alerts-mail")["QueueUrl"]
got = []
for _ in range(5):
    got += [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])]
print(json.dumps(got))
"#;
    let messages: Vec<Value> = serde_json::from_str(&boto3(&moto, read)).unwrap();
    let mut told: Vec<(String, String)> = messages
        .iter()
        .map(|m| {
            let inner: Value = serde_json::from_str(m["Message"].as_str().unwrap()).unwrap();
            assert_eq!(inner["rule"], "payment-errors");
            (m["Subject"].as_str().unwrap().to_owned(), inner["state"].as_str().unwrap().to_owned())
        })
        .collect();
    told.sort(); // a standard queue keeps no order
    assert_eq!(
        told,
        [
            ("FIRING: payment-errors".to_owned(), "firing".to_owned()),
            ("RESOLVED: payment-errors".to_owned(), "resolved".to_owned())
        ]
    );
    let signers = moto.faults.signers();
    assert!(!signers.is_empty() && signers.iter().all(|s| s.access_key_id == "AKIDALERTS"), "{signers:?}");
    assert!(!server.logs().contains(&hooks.addr.to_string()), "the URL from the secret is never logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_evaluate_each_window_once_and_a_killed_leader_is_taken_over_within_a_lease() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("logyard.toml");
    // A rule that fires at every window without data: one evaluation per window is easy to count.
    std::fs::write(
        &config,
        "[alerts]\ntick = \"300ms\"\nsettle = \"1s\"\nlease = \"5s\"\n\n[[alerts.rules]]\nname = \"always\"\nsql = \"SELECT 1 AS value\"\nevery = \"10s\"\ncondition = \"value > 0\"\n",
    )
    .unwrap();
    let spec = ServerSpec::local(dir.path()).env("LOGYARD_CONFIG", config.to_str().unwrap());
    let mut a = spec.clone().env("LOGYARD_ALERTS_WORKER_ID", "replica-a").start();
    let mut b_spec = spec.env("LOGYARD_ALERTS_WORKER_ID", "replica-b");
    b_spec.wal_dir = dir.path().join("wal-b");
    let mut b = b_spec.start();
    let evaluator = |server: &Server| {
        let url = server.url("/api/v1/alerts");
        async move {
            let body: Value = client().get(url).send().await.unwrap().json().await.unwrap();
            let rule = body["rules"].as_array().unwrap().iter().find(|r| r["name"] == "always").cloned().unwrap();
            (rule["evaluator"]["replica"].as_str().map(str::to_owned), rule["last_window_index"].as_i64())
        }
    };
    // Three windows under the first leader.
    let started = Instant::now();
    let (leader, first_window) = loop {
        if let (Some(owner), Some(done)) = evaluator(&a).await {
            break (owner, done);
        }
        assert!(started.elapsed() < Duration::from_secs(30), "nobody evaluates the rule");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    loop {
        let (_, done) = evaluator(&a).await;
        if done >= Some(first_window + 2) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the leader stopped evaluating");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // kill -9 the leader: the other holds the lease within one lease (5 s) and a tick.
    let a_led = leader == "replica-a";
    let killed_at = Instant::now();
    if a_led {
        a.kill9()
    } else {
        b.kill9()
    };
    let (survivor, survivor_name) = if a_led { (&b, "replica-b") } else { (&a, "replica-a") };
    let survivor_url = survivor.base.clone();
    loop {
        let (owner, _) = evaluator(survivor).await;
        if owner.as_deref() == Some(survivor_name) {
            break;
        }
        assert!(killed_at.elapsed() < Duration::from_secs(8), "not taken over within a lease: {owner:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let taken_over = killed_at.elapsed();
    // Two more windows under the new leader, then count.
    let (_, done_at_takeover) = evaluator(survivor).await;
    loop {
        let (_, done) = evaluator(survivor).await;
        if done >= done_at_takeover.map(|d| d + 2) {
            break;
        }
        assert!(killed_at.elapsed() < Duration::from_secs(60), "the new leader does not evaluate");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let per_window = rows(survivor, "SELECT window_index, count(*) AS n, max(evaluator) AS evaluator FROM \"logyard-alerts\" WHERE rule = 'always' GROUP BY 1 ORDER BY 1").await;
    let indexes: Vec<i64> = per_window.iter().map(|r| r["window_index"].as_i64().unwrap()).collect();
    assert!(per_window.iter().all(|r| r["n"] == 1), "a window evaluated twice: {per_window:?}");
    assert_eq!(indexes.len() as i64, indexes.last().unwrap() - indexes[0] + 1, "a window skipped: {indexes:?}");
    let by: Vec<&str> = per_window.iter().map(|r| r["evaluator"].as_str().unwrap()).collect();
    let switches = by.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!((by[0], *by.last().unwrap(), switches), (leader.as_str(), survivor_name, 1), "{by:?}");
    println!("taken over {taken_over:?} after kill -9 (lease 5 s); windows {indexes:?} by {by:?} via {survivor_url}");
}

/// The ready rules of docs/alerts.md, as JSON.
fn documented_rules() -> Vec<Value> {
    let doc = include_str!("../../../docs/alerts.md");
    let ready = doc.split("## Ready rules for a shop").nth(1).unwrap();
    let block = ready.split("```toml\n").nth(1).unwrap().split("```").next().unwrap();
    let table: toml::Table = block.parse().unwrap();
    serde_json::to_value(&table["alerts"]["rules"]).unwrap().as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ready_rules_find_what_a_shop_s_day_holds() {
    // A day of storefront logs (2026-11-25, with a payments incident from 13:00 to 13:20) and
    // its orders in PostgreSQL.
    let big = [("LOGYARD_SERVER_MAX_BODY_BYTES", "268435456"), ("LOGYARD_SERVER_MAX_DECODED_BYTES", "268435456")];
    let shop = common::pg::shop_with(300_000, &big).await;
    let preview = |rule: &Value, at: &str| {
        let (url, body) = (shop.server.url("/api/v1/alerts/preview"), serde_json::json!({"rule": rule, "at": at}));
        async move {
            let r = client().post(url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let holding = |answer: &Value| -> Vec<String> {
        answer["groups"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["holds"] == true)
            .map(|g| g["group"].as_str().unwrap().to_owned())
            .collect()
    };
    let rules = documented_rules();
    let rule = |name: &str| rules.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no ready rule {name}"));
    let incident = "2026-11-25T13:20:00Z";

    let rate = preview(rule("checkout-payment-5xx-rate"), incident).await;
    assert_eq!(rate["window"]["from"], "2026-11-25T13:15:00.000000Z");
    assert!(holding(&rate).contains(&"/api/payments".to_owned()), "{rate}");
    // A calm hour's window: the first of the morning whose payments, counted from the logs,
    // failed at most 2 % (the rule's threshold; a payment fails 5 % of the time outside the
    // incident, so a window of a dozen payments holding one failure is over it).
    let events: Vec<Value> = shop
        .logs
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let payments_in = |from: &str, to: &str| {
        let window = events.iter().filter(|e| e["route"] == "/api/payments").filter(|e| {
            let t = e["timestamp"].as_str().unwrap();
            t >= from && t < to
        });
        window.fold((0, 0), |(n, failed), e| (n + 1, failed + usize::from(e["status"].as_u64().unwrap() >= 500)))
    };
    let (calm_at, calm_payments) = (6..12)
        .map(|hour| {
            (
                format!("2026-11-25T{hour:02}:00:00Z"),
                format!("2026-11-25T{:02}:55:00", hour - 1),
                format!("2026-11-25T{hour:02}:00:00"),
            )
        })
        .map(|(at, from, to)| (at, payments_in(&from, &to)))
        .find(|(_, (n, failed))| *n > 0 && failed * 50 <= *n)
        .expect("a calm window in the morning");
    let calm = preview(rule("checkout-payment-5xx-rate"), &calm_at).await;
    assert!(
        !holding(&calm).contains(&"/api/payments".to_owned()),
        "no incident at {calm_at} ({calm_payments:?}): {calm}"
    );
    let payments = calm["groups"].as_array().unwrap().iter().find(|g| g["group"] == "/api/payments").unwrap();
    let (n, failed) = calm_payments;
    assert_eq!(payments["value"].as_f64().unwrap(), 100.0 * failed as f64 / n as f64, "{calm}");
    let p95 = preview(rule("p95-latency-by-route"), incident).await;
    assert!(holding(&p95).contains(&"/api/payments".to_owned()), "{p95}");
    let declines = preview(rule("payment-declines"), incident).await;
    assert_eq!(holding(&declines), [""], "nothing failed a week before: {declines}");
    let pending = preview(rule("pending-orders-hit-by-5xx"), incident).await;
    assert_eq!(holding(&pending), [""], "{pending}");
    assert!(pending["groups"][0]["value"].as_f64().unwrap() >= 1.0);
    let busy = preview(rule("storefront-silent"), incident).await;
    assert!(holding(&busy).is_empty(), "{busy}");
    let silent = preview(rule("storefront-silent"), "2026-11-26T12:00:00Z").await;
    assert_eq!(holding(&silent), [""], "no events the next day: {silent}");

    // The pending-orders rule agrees with PostgreSQL and the logs counted another way.
    let (from, to) = ("2026-11-25T12:20:00", "2026-11-25T13:20:00");
    let failed_orders: std::collections::BTreeSet<String> = events
        .iter()
        .filter(|e| {
            let t = e["timestamp"].as_str().unwrap();
            t >= from && t < to && e["status"].as_u64().unwrap() >= 500
        })
        .filter_map(|e| e["order_id"].as_str().map(str::to_owned))
        .collect();
    let pending_ids = shop.pg.psql("SELECT id FROM orders WHERE status = 'pending'");
    let expected = failed_orders.iter().filter(|id| pending_ids.lines().any(|l| l.trim() == id.as_str())).count();
    assert_eq!(pending["groups"][0]["value"].as_f64().unwrap() as usize, expected, "{pending}");
}
