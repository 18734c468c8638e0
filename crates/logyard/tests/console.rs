//! The console and what it stands on, against `logyard serve` processes: the live tail
//! (filters, resume without duplicates, sampling, heartbeats through an idle period, two
//! replicas merged through `--peers`), one-time download links, saved searches, and the whole
//! console in Debian's Chromium driven by Playwright (tests/console/browser.py), the alerts
//! page included, against a rule that fires and a receiver that cannot be reached.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::tail::*;
use common::*;
use serde_json::{Value, json};

fn event(id: &str, status: u16, message: &str) -> String {
    json!({"id": id, "status": status, "message": message, "http": {"method": "POST"}}).to_string()
}

async fn post(server: &Server, token: Option<&str>, stream: &str, body: String) -> Instant {
    let mut request = client().post(server.url(&format!("/api/v1/streams/{stream}/events"))).body(body);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let r = request.send().await.unwrap();
    let acknowledged = Instant::now();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    acknowledged
}

#[tokio::test]
async fn a_tail_shows_matching_events_as_they_become_durable_and_resumes_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (analyst, e1) = create_token("analyst", "query", Some("shop"));
    let (ops, e2) = create_token("ops", "admin,query,ingest", None);
    let tokens_file = dir.path().join("tokens.toml");
    std::fs::write(&tokens_file, format!("{e1}\n{e2}")).unwrap();
    let server = ServerSpec::local(dir.path())
        .env("LOGYARD_TOKENS_FILE", tokens_file.to_str().unwrap())
        .env("LOGYARD_TAIL_MAX_EVENTS_PER_SECOND", "50")
        // Commits wait: what the tail shows comes from the write-ahead log, not the table.
        .env("LOGYARD_INGEST_FLUSH_INTERVAL", "1h")
        .start();

    let query = [("streams", "shop"), ("q", "status:>=500 http.method:POST -\"health check\"")];
    let mut tail = Tail::open(&server, Some(&analyst), &query, None).await;
    let body = [
        event("a", 503, "checkout failed"),
        event("b", 200, "checkout ok"),
        event("c", 500, "health check"),
        event("d", 502, "payment declined"),
    ]
    .join("\n");
    let acknowledged = post(&server, Some(&ops), "shop", body).await;
    let a = tail.next(Duration::from_secs(2)).await.expect("event a within 2 s of its 200");
    let d = tail.next(Duration::from_secs(2)).await.expect("event d");
    println!("first tail event {:?} after the 200", acknowledged.elapsed());
    assert_eq!((a.event.as_str(), a.json()["id"].as_str()), ("event", Some("a")), "{a:?}");
    assert_eq!(d.json()["id"], "d");
    let fields = a.json();
    assert_eq!(fields["_stream"], "shop");
    assert_eq!(fields["http.method"], "POST", "flattened as search results are: {fields}");
    assert!(fields["timestamp"].as_str().unwrap().ends_with('Z'), "{fields}");
    post(&server, Some(&ops), "other", event("x", 500, "POST elsewhere")).await;
    assert!(tail.next(Duration::from_millis(500)).await.is_none(), "other streams and non-matches stay out");

    // Reconnecting with the last id: what was missed meanwhile, and nothing twice.
    drop(tail);
    post(&server, Some(&ops), "shop", [event("e", 500, "x"), event("f", 200, "x")].join("\n")).await;
    post(&server, Some(&ops), "shop", event("g", 504, "x")).await;
    let mut resumed = Tail::open(&server, Some(&analyst), &query, Some(&d.id)).await;
    let (ids, dropped, _) = resumed.drain(Duration::from_millis(700)).await;
    assert_eq!((ids, dropped), (vec!["e".to_owned(), "g".to_owned()], 0));
    // From the middle of a request: the events after it in that request.
    let mut from_a = Tail::open(&server, Some(&analyst), &query, Some(&a.id)).await;
    let (ids, _, _) = from_a.drain(Duration::from_millis(700)).await;
    assert_eq!(ids, ["d", "e", "g"]);

    // Past 50 events a second the tail samples, and says how many it left out.
    let burst: Vec<String> = (0..400).map(|i| event(&format!("s{i}"), 500, "burst")).collect();
    post(&server, Some(&ops), "shop", burst.join("\n")).await;
    let (ids, dropped, _) = resumed.drain(Duration::from_millis(1500)).await;
    assert!((50..=60).contains(&ids.len()), "{} sent", ids.len());
    assert_eq!(ids.len() as u64 + dropped, 400, "every event is sent or counted as dropped");

    // A token sees only its streams; a bad search names where.
    let r = client().get(server.url("/api/v1/tail?streams=other")).bearer_auth(&analyst).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r =
        client().get(server.url("/api/v1/tail?streams=shop&q=status:>=")).bearer_auth(&analyst).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let error: Value = r.json().await.unwrap();
    assert_eq!(error["error"]["code"], "bad_search", "{error}");
    let r = client().get(server.url("/api/v1/tail?streams=shop")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Without streams: every stream the token may read, and only those.
    let mut everything = Tail::open(&server, Some(&analyst), &[], None).await;
    post(&server, Some(&ops), "other", event("o", 200, "x")).await;
    post(&server, Some(&ops), "shop", event("h", 200, "x")).await;
    let (ids, _, _) = everything.drain(Duration::from_millis(700)).await;
    assert_eq!(ids, ["h"]);
}

#[tokio::test]
async fn a_tail_on_either_replica_shows_both_replicas_events_once() {
    let dir = tempfile::tempdir().unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    let peers = format!("127.0.0.1:{port_a},localhost:{port_b}");
    let spec = |name: &str, port: u16| {
        let mut spec = ServerSpec::local(&dir.path().join(name)).env("LOGYARD_TAIL_PEERS", &peers);
        spec.storage = dir.path().join("shared-data").display().to_string();
        spec.listen = Some(format!("127.0.0.1:{port}"));
        spec
    };
    let a = spec("a", port_a).start();
    let b = spec("b", port_b).start();

    let mut on_a = Tail::open(&a, None, &[("streams", "web"), ("q", "status:500")], None).await;
    let mut on_b = Tail::open(&b, None, &[("streams", "web"), ("q", "status:500")], None).await;
    // The peers connect in the background.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..5 {
        post(&a, None, "web", event(&format!("a{i}"), 500, "x")).await;
        post(&b, None, "web", event(&format!("b{i}"), 500, "x")).await;
        post(&b, None, "web", event(&format!("b{i}-ok"), 200, "x")).await;
    }
    let expected: Vec<String> = (0..5).flat_map(|i| [format!("a{i}"), format!("b{i}")]).collect();
    for tail in [&mut on_a, &mut on_b] {
        let (mut ids, _, last) = tail.drain(Duration::from_millis(1500)).await;
        ids.sort();
        let mut want = expected.clone();
        want.sort();
        assert_eq!(ids, want, "each replica's events once");
        // The id tells both replicas' positions, so a reconnect to either resumes both.
        assert_eq!(last.split(',').count(), 2, "{last}");
    }

    // Resuming on the other replica with an id from the first: nothing twice, nothing lost.
    let (_, _, last) = {
        post(&a, None, "web", event("a-late", 500, "x")).await;
        on_a.drain(Duration::from_millis(1500)).await
    };
    drop(on_a);
    post(&a, None, "web", event("a-missed", 500, "x")).await;
    post(&b, None, "web", event("b-missed", 500, "x")).await;
    let mut again = Tail::open(&b, None, &[("streams", "web"), ("q", "status:500")], Some(&last)).await;
    let (mut ids, _, _) = again.drain(Duration::from_millis(2000)).await;
    ids.sort();
    assert_eq!(ids, ["a-missed", "b-missed"]);
}

#[tokio::test]
async fn an_idle_tail_is_held_open_by_heartbeats_for_two_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path()).start();
    let mut tail = Tail::open(&server, None, &[("streams", "quiet")], None).await;
    let started = Instant::now();
    let got = tail.next(Duration::from_secs(120)).await;
    assert!(got.is_none(), "nothing happened, yet: {got:?}");
    assert!(tail.heartbeats >= 7, "{} heartbeats in {:?} (one each 15 s)", tail.heartbeats, started.elapsed());
    post(&server, None, "quiet", event("after", 200, "still here")).await;
    let m = tail.next(Duration::from_secs(2)).await.expect("the tail still works");
    assert_eq!(m.json()["id"], "after");
}

#[tokio::test]
async fn downloads_are_one_time_links_and_saved_searches_belong_to_their_owner() {
    let dir = tempfile::tempdir().unwrap();
    let (analyst, e1) = create_token("analyst", "query", Some("shop"));
    let (ops, e2) = create_token("ops", "admin,query,ingest", None);
    let (other, e3) = create_token("other", "query", None);
    let tokens_file = dir.path().join("tokens.toml");
    std::fs::write(&tokens_file, format!("{e1}\n{e2}\n{e3}")).unwrap();
    let spec = ServerSpec::local(dir.path()).env("LOGYARD_TOKENS_FILE", tokens_file.to_str().unwrap());
    let mut server = spec.start();
    let body: Vec<String> = (0..250).map(|i| event(&format!("e{i}"), [200, 503][i % 2], "x")).collect();
    let url = server.url("/api/v1/streams/shop/events?ack=commit");
    let r = client().post(url).bearer_auth(&ops).body(body.join("\n")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    post(&server, Some(&ops), "secret", event("s", 503, "x")).await;

    let ask = |token: &str, body: Value| {
        let request = client().post(server.url("/api/v1/downloads")).bearer_auth(token).json(&body);
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let search = json!({"streams": ["shop"], "query": "status:503", "since": "1h"});
    let (status, link) = ask(&analyst, json!({"search": search, "format": "ndjson"})).await;
    assert_eq!(status, 200, "{link}");
    let path = link["url"].as_str().unwrap();
    assert!(path.starts_with("/api/v1/downloads/") && !path.contains(&analyst), "{path}");
    // The link needs no token, works once, and holds every match (not one page).
    let r = client().get(server.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-disposition"].to_str().unwrap().starts_with("attachment; filename=\"shop-"));
    let text = r.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 125);
    assert!(lines.iter().all(|l| l["status"] == 503 && l["_stream"] == "shop"));
    assert!(lines.windows(2).all(|w| w[0]["timestamp"].as_str() >= w[1]["timestamp"].as_str()), "newest first");
    let r = client().get(server.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 404, "a link works once");
    let (_, link) = ask(&analyst, json!({"search": search, "format": "csv"})).await;
    let csv = client().get(server.url(link["url"].as_str().unwrap())).send().await.unwrap().text().await.unwrap();
    assert_eq!(csv.lines().count(), 126, "a header and 125 rows");
    assert!(csv.lines().next().unwrap().starts_with("_stream,"), "{csv:.200}");
    // Refused when asked, not when opened.
    let two = json!({"search": {"streams": ["shop", "secret"], "since": "1h"}, "format": "csv"});
    assert_eq!(ask(&ops, two).await.0, 400, "CSV takes one stream");
    let hidden = json!({"search": {"streams": ["secret"], "since": "1h"}, "format": "ndjson"});
    assert_eq!(ask(&analyst, hidden).await.0, 403);

    // Saved searches: shared, kept in the storage, deleted by their owner or an admin.
    let save = |token: &str, body: Value| {
        let request = client().post(server.url("/api/v1/saved-searches")).bearer_auth(token).json(&body);
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, mine) =
        save(&analyst, json!({"name": "5xx", "search": {"streams": ["shop"], "query": "status:>=500", "since": "1h"}}))
            .await;
    assert_eq!(status, 201, "{mine}");
    assert_eq!(mine["owner"], "analyst");
    let (status, _) =
        save(&ops, json!({"name": "secret", "search": {"streams": ["secret"], "query": "", "since": "1h"}})).await;
    assert_eq!(status, 201);
    let (status, e) = save(&analyst, json!({"name": "bad", "search": {"streams": ["shop"], "query": "a:>="}})).await;
    assert_eq!((status, &e["error"]["code"]), (400, &json!("bad_search")));
    let (status, _) = save(&analyst, json!({"name": "hidden", "search": {"streams": ["secret"]}})).await;
    assert_eq!(status, 403);

    server.terminate(Duration::from_secs(30));
    let server = spec.start();
    let list = |token: &str| {
        let request = client().get(server.url("/api/v1/saved-searches")).bearer_auth(token);
        async move {
            let v: Value = request.send().await.unwrap().json().await.unwrap();
            v["saved_searches"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(&ops).await, ["5xx", "secret"], "kept across a restart");
    assert_eq!(list(&analyst).await, ["5xx"], "a search over a hidden stream is not listed");
    let delete = |token: &str, id: &str| {
        let request = client().delete(server.url(&format!("/api/v1/saved-searches/{id}"))).bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let id = mine["id"].as_str().unwrap();
    assert_eq!(delete(&other, id).await, 403, "not the owner");
    assert_eq!(delete(&analyst, "../../tables").await, 404);
    assert_eq!(delete(&analyst, id).await, 204);
    assert_eq!(delete(&analyst, id).await, 404);
    assert_eq!(list(&ops).await, ["secret"]);
}

/// The Python with Playwright that drives Debian's Chromium, and where screenshots go.
fn browser() -> (std::path::PathBuf, std::path::PathBuf) {
    let python = program("LOGYARD_TEST_PYTHON", "python3", "scripts/test.sh makes a venv with playwright");
    let chromium = std::path::Path::new("/usr/bin/chromium");
    assert!(chromium.exists(), "Debian's chromium is required (scripts/test.sh installs it)");
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&out).unwrap();
    (python, out)
}

#[tokio::test]
async fn the_console_works_in_a_real_browser() {
    let (python, out) = browser();

    let dir = tempfile::tempdir().unwrap();
    let (analyst, e1) = create_token("analyst", "query", Some("storefront"));
    let (ops, e2) = create_token("ops", "admin,query,ingest", None);
    let tokens_file = dir.path().join("tokens.toml");
    std::fs::write(&tokens_file, format!("{e1}\n{e2}")).unwrap();
    let spec = ServerSpec::local(dir.path()).env("LOGYARD_TOKENS_FILE", tokens_file.to_str().unwrap());
    let mut server = spec.start();
    let now = chrono::Utc::now();
    let seed = |stream: &str, body: String| {
        let url = server.url(&format!("/api/v1/streams/{stream}/events?ack=commit"));
        let request = client().post(url).bearer_auth(&ops).body(body);
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        }
    };
    seed("storefront", storefront_events(now)).await;
    seed("payments", event("p1", 200, "card ok")).await;
    let date = now.format("%Y-%m-%d").to_string();
    let (code, _, err) = cli(&["report", "daily", "--date", &date, "--storage", &spec.storage], &[]);
    assert_eq!(code, 0, "{err}");

    let run = |args: &[&str]| {
        let output = std::process::Command::new(&python)
            .arg(common::crate_dir().join("tests/console/browser.py"))
            .args(args)
            .output()
            .unwrap();
        let text = format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "browser.py {}:\n{text}", args[0]);
    };
    let out_dir = out.to_str().unwrap();
    run(&["first", &server.base, &ops, &analyst, out_dir]);
    let logs = server.logs();
    for token in [&ops, &analyst] {
        assert!(!logs.contains(token.as_str()), "a token in the server's log");
    }
    server.terminate(Duration::from_secs(30));
    let server = spec.start();
    run(&["second", &server.base, &ops, out_dir]);

    let shots: BTreeMap<String, u64> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len()))
        .collect();
    for page in ["search", "sql", "streams", "reports"] {
        for size in ["desktop", "phone"] {
            let name = format!("{page}-{size}.png");
            assert!(shots.get(&name).is_some_and(|&b| b > 10_000), "{name} missing or blank: {shots:?}");
        }
    }
    println!("screenshots in {}", out.display());
}

/// 5xx events on /checkout and /cart, timed now, posted every second until `sending` is false.
fn send_errors(
    url: String,
    token: String,
    sending: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while sending.load(std::sync::atomic::Ordering::SeqCst) {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let mut body = String::new();
            for route in ["/checkout", "/cart"] {
                for status in [503, 500, 200] {
                    let message = format!("POST {route} {status}");
                    let line = json!({"timestamp": now, "route": route, "status": status, "message": message});
                    body.push_str(&line.to_string());
                    body.push('\n');
                }
            }
            let r = client().post(&url).bearer_auth(&token).body(body).send().await.unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// `GET path` with a token: the JSON answer, failing the test on anything but a 200.
async fn get_json(server: &Server, token: &str, path: &str) -> Value {
    let r = client().get(server.url(path)).bearer_auth(token).send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "GET {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_alerts_page_in_a_real_browser() {
    let (python, out) = browser();

    let dir = tempfile::tempdir().unwrap();
    let (ops, e1) = create_token("ops", "admin,query,ingest", None);
    let (oncall, e2) = create_token("oncall", "query", None);
    let key_file = dir.path().join("hook.key");
    std::fs::write(&key_file, "console-test-signing-key\n").unwrap();
    // Nothing listens there: the webhook's notifications stay undelivered, with the error.
    let closed = free_port();
    let config = dir.path().join("logyard.toml");
    std::fs::write(
        &config,
        format!(
            r#"[alerts]
tick = "300ms"
settle = "1s"
lease = "5s"

[[alerts.receivers]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:{closed}/hook"
secret_file = "{key}"

[[alerts.rules]]
name = "checkout-errors"
search = {{ streams = ["web"], query = "status:>=500" }}
group_by = "route"
every = "10s"
condition = "value > 3"
severity = "critical"
notify = ["hook"]

{e1}
{e2}
"#,
            key = key_file.display(),
        ),
    )
    .unwrap();
    let server = ServerSpec::local(dir.path()).env("LOGYARD_CONFIG", config.to_str().unwrap()).start();

    let sending = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sender = send_errors(server.url("/api/v1/streams/web/events"), ops.clone(), sending.clone());

    // Both routes firing, a delivery failed, and the firing recorded in logyard-alerts.
    let started = Instant::now();
    loop {
        let body = get_json(&server, &oncall, "/api/v1/alerts").await;
        let rule = body["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "checkout-errors")
            .cloned()
            .expect("the configured rule is listed");
        let firing = |group: &str| {
            rule["alerts"].as_array().unwrap().iter().any(|a| a["group"] == group && a["state"] == "firing")
        };
        let failed = rule["undelivered"].as_array().unwrap().iter().any(|n| n["last_error"].is_string());
        if firing("/checkout") && firing("/cart") && failed {
            let sql =
                "SELECT count(*) AS n FROM \"logyard-alerts\" WHERE rule = 'checkout-errors' AND state = 'firing'";
            let recorded = client()
                .post(server.url("/api/v1/query"))
                .bearer_auth(&oncall)
                .json(&json!({"sql": sql}))
                .send()
                .await
                .unwrap();
            if recorded.status() == 200 {
                let recorded: Value = recorded.json().await.unwrap();
                if recorded["rows"][0]["n"].as_i64().unwrap_or(0) >= 2 {
                    break;
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "checkout-errors did not fire for both routes with a failed delivery within 60 s: {rule}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("firing after {:?}", started.elapsed());

    let script = common::crate_dir().join("tests/console/browser.py");
    let args =
        ["alerts".to_owned(), server.base.clone(), ops.clone(), oncall.clone(), out.to_str().unwrap().to_owned()];
    let output =
        tokio::task::spawn_blocking(move || std::process::Command::new(python).arg(script).args(args).output())
            .await
            .unwrap()
            .unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    sending.store(false, std::sync::atomic::Ordering::SeqCst);
    sender.await.unwrap();
    assert!(output.status.success(), "browser.py alerts:\n{text}");

    // What the page did, seen from the API: /checkout acknowledged by the query token, the
    // silence on /cart ended, the rule the admin added from the form (then edited) deleted.
    let body = get_json(&server, &ops, "/api/v1/alerts").await;
    let rule = body["rules"].as_array().unwrap().iter().find(|r| r["name"] == "checkout-errors").unwrap();
    let checkout = rule["alerts"].as_array().unwrap().iter().find(|a| a["group"] == "/checkout").unwrap();
    assert_eq!(checkout["acknowledged"]["by"], "oncall", "{rule}");
    let silences = get_json(&server, &ops, "/api/v1/silences").await;
    assert_eq!(silences["silences"], json!([]), "the silence the page made was ended there");
    let names: Vec<&str> = body["rules"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["checkout-errors"], "the rule cart-errors, deleted on the page, is still listed");
    let logs = server.logs();
    for token in [&ops, &oncall] {
        assert!(!logs.contains(token.as_str()), "a token in the server's log");
    }
    for name in ["alerts-1280x800.png", "alerts-390x844.png", "alerts-form-1280x800.png", "alerts-form-390x844.png"] {
        let bytes = std::fs::metadata(out.join(name)).map(|m| m.len()).unwrap_or(0);
        assert!(bytes > 10_000, "{name} missing or blank ({bytes} bytes)");
    }
    println!("screenshots in {}", out.display());
}
