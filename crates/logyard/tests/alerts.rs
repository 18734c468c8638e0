//! Alert rules against a running server: a per-route rule on 5xx events fires for the failing
//! route only after its `for` duration, tells a signed webhook and a Slack-shaped receiver
//! once, resolves when the errors stop and says so; a receiver that fails at first gets the
//! notification once it recovers; every window is recorded in `logyard-alerts` exactly once.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
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

/// An HTTP receiver on 127.0.0.1 that records what it is sent and answers 500 to the first
/// `failures` requests on `/flaky`.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
}

async fn receiver(failures: u32) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let left = Arc::new(AtomicU32::new(failures));
    let record = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (record, left) = (record.clone(), left.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (record, left) = (record.clone(), left.clone());
                    async move {
                        let header = |name: &str| req.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
                        let (path, timestamp, signature) =
                            (req.uri().path().to_owned(), header("logyard-timestamp"), header("logyard-signature"));
                        let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
                        if path == "/flaky" && left.load(Ordering::SeqCst) > 0 {
                            left.fetch_sub(1, Ordering::SeqCst);
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

#[tokio::test(flavor = "multi_thread")]
async fn a_per_route_rule_fires_once_for_the_failing_route_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = receiver(2).await;
    std::fs::write(dir.path().join("hook.key"), "s3cret-signing-key\n").unwrap();
    let config = dir.path().join("logyard.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[alerts]
tick = "300ms"
settle = "1s"
lease = "5s"

[[alerts.receivers]]
name = "hook"
kind = "webhook"
url = "http://{addr}/hook"
secret_file = "{key}"

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
            key = dir.path().join("hook.key").display()
        ),
    )
    .unwrap();
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

    // Errors stop: the alert resolves and both receivers hear it; the flaky one got the
    // firing too, after its two failures.
    wait_for("the resolve notification", Duration::from_secs(60), || hooks.at("/hook").len() >= 2).await;
    let hook = hooks.at("/hook");
    assert_eq!(hook.len(), 2, "{hook:?}");
    assert_eq!(hook[1].json()["state"], "resolved");
    wait_for("the Slack messages", Duration::from_secs(60), || hooks.at("/flaky").len() >= 2).await;
    let slack = hooks.at("/flaky");
    assert_eq!(slack.len(), 2, "each message once, after the receiver recovered");
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
