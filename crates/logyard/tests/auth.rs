//! Bearer tokens: 401, 403, stream limits, the refuse-to-start rule, the audit stream, and
//! no secret anywhere it should not be.

mod common;

use common::*;
use serde_json::Value;

async fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req =
        client().request(method.parse().unwrap(), server.url(path)).header("content-type", "application/x-ndjson");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if path == "/api/v1/query" {
        req = req.header("content-type", "application/json");
    }
    let r = req.body(body.to_owned()).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test]
async fn tokens_scopes_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (shipper, e1) = create_token("shipper", "ingest", Some("storefront,app-*"));
    let (analyst, e2) = create_token("analyst", "query", Some("storefront"));
    let (admin, e3) = create_token("ops", "admin,query,ingest", None);
    let tokens_file = dir.path().join("tokens.toml");
    std::fs::write(&tokens_file, format!("{e1}\n{e2}\n{e3}")).unwrap();
    let server = ServerSpec::local(dir.path()).env("LOGYARD_TOKENS_FILE", tokens_file.to_str().unwrap()).start();
    let q = |sql: &str| serde_json::json!({"sql": sql}).to_string();

    // No token, a malformed header, an unknown token: 401 with a Bearer challenge.
    let (status, headers, body) = call(&server, "POST", "/api/v1/streams/storefront/events", None, "{}\n").await;
    assert_eq!(status, 401, "{body}");
    assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, headers, _) =
        call(&server, "POST", "/api/v1/query", Some("lyt_not-a-real-token"), &q("SELECT 1")).await;
    assert_eq!(status, 401);
    assert!(headers["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    // A scheme logyard does not take is malformed; basic authentication with a wrong token
    // as the password is an unknown token.
    let r = client().get(server.url("/api/v1/streams")).header("authorization", "Digest abc").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("invalid_request"));
    let r = client().get(server.url("/api/v1/streams")).header("authorization", "Basic dTpw").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));

    // Health stays open.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, _, _) = call(&server, "GET", path, None, "").await;
        assert_eq!(status, 200, "{path}");
    }

    // The shipper ingests into its streams only, and may not query.
    let (status, _, body) =
        call(&server, "POST", "/api/v1/streams/storefront/events?ack=commit", Some(&shipper), &events("s", 5)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) =
        call(&server, "POST", "/api/v1/streams/app-web/events?ack=commit", Some(&shipper), &events("w", 3)).await;
    assert_eq!(status, 200);
    let (status, _, body) =
        call(&server, "POST", "/api/v1/streams/secrets/events", Some(&shipper), &events("x", 1)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("may not use stream secrets"));
    let (status, _, body) = call(&server, "POST", "/api/v1/query", Some(&shipper), &q("SELECT 1")).await;
    assert_eq!(status, 403);
    assert!(body["error"]["message"].as_str().unwrap().contains("query scope"));

    // The analyst sees storefront, and app-web is as absent as a stream that does not exist.
    let (status, _, body) =
        call(&server, "POST", "/api/v1/query", Some(&analyst), &q("SELECT count(*) AS n FROM storefront")).await;
    assert_eq!((status, body["rows"][0]["n"].as_i64()), (200, Some(5)), "{body}");
    let (status, _, hidden) =
        call(&server, "POST", "/api/v1/query", Some(&analyst), &q("SELECT count(*) FROM \"app-web\"")).await;
    let (_, _, missing) =
        call(&server, "POST", "/api/v1/query", Some(&analyst), &q("SELECT count(*) FROM nonexistent")).await;
    assert_eq!(status, 400);
    assert_eq!(hidden["error"]["code"], missing["error"]["code"]);
    assert!(hidden["error"]["message"].as_str().unwrap().contains("not found"), "{hidden}");
    let (_, _, body) = call(&server, "POST", "/api/v1/query", Some(&analyst), &q("SHOW TABLES")).await;
    assert!(!body.to_string().contains("app-web"), "{body}");
    let (_, _, body) = call(&server, "GET", "/api/v1/streams", Some(&analyst), "").await;
    let names: Vec<_> = body["streams"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["storefront"]);
    let (status, _, _) = call(&server, "GET", "/api/v1/streams/app-web", Some(&analyst), "").await;
    assert_eq!(status, 403);
    let (status, _, _) = call(&server, "POST", "/api/v1/flush", Some(&analyst), "").await;
    assert_eq!(status, 403);

    // The admin flushes; the action lands in the audit stream with who, what and when.
    let (status, _, body) = call(&server, "POST", "/api/v1/flush", Some(&admin), "").await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = call(&server, "POST", "/api/v1/flush", Some(&admin), "").await;
    assert_eq!(status, 200);
    let (_, _, body) = call(
        &server,
        "POST",
        "/api/v1/query",
        Some(&admin),
        &q("SELECT actor, action, timestamp FROM \"logyard-audit\" ORDER BY timestamp"),
    )
    .await;
    let rows = body["rows"].as_array().unwrap_or_else(|| panic!("{body}"));
    assert!(!rows.is_empty(), "{body}");
    assert_eq!(rows[0]["actor"], "ops");
    assert_eq!(rows[0]["action"], "flush");
    assert!(rows[0]["timestamp"].as_str().unwrap().starts_with("20"));

    // Metrics count the refusals by reason.
    let (_, _, metrics) = call(&server, "GET", "/metrics", None, "").await;
    let text = metrics.as_str().unwrap().to_owned();
    for reason in ["missing", "unknown", "malformed"] {
        assert!(text.contains(&format!("logyard_auth_failures_total{{reason=\"{reason}\"}}")), "{reason}: {text}");
    }

    // No secret appears in the logs, the metrics, or any error body seen above.
    let logs = server.logs();
    for secret in [&shipper, &analyst, &admin, &"lyt_not-a-real-token".to_owned()] {
        assert!(!logs.contains(secret.as_str()), "a token in the logs");
        assert!(!text.contains(secret.as_str()), "a token in the metrics");
    }
    assert!(logs.contains("\"action\":\"flush\""), "the audit is logged too: {logs}");
}

#[tokio::test]
async fn metrics_can_require_a_token_and_the_tokens_file_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let (first, e1) = create_token("first", "query", None);
    let tokens_file = dir.path().join("tokens.toml");
    std::fs::write(&tokens_file, &e1).unwrap();
    let server = ServerSpec::local(dir.path())
        .env("LOGYARD_TOKENS_FILE", tokens_file.to_str().unwrap())
        .env("LOGYARD_AUTH_PROTECT_METRICS", "true")
        .start();
    assert_eq!(call(&server, "GET", "/metrics", None, "").await.0, 401);
    assert_eq!(call(&server, "GET", "/metrics", Some(&first), "").await.0, 200);

    // Replace the file: the new token works within seconds, the old one stops working.
    let (second, e2) = create_token("second", "query", None);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(&tokens_file, &e2).unwrap();
    let started = std::time::Instant::now();
    while call(&server, "GET", "/api/v1/streams", Some(&second), "").await.0 != 200 {
        assert!(started.elapsed().as_secs() < 20, "the tokens file was not reloaded");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(call(&server, "GET", "/api/v1/streams", Some(&first), "").await.0, 401);
}

#[test]
fn refuses_to_listen_beyond_loopback_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data");
    let (code, _, err) = cli(&["serve", "--listen", "0.0.0.0:0", "--storage", storage.to_str().unwrap()], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("refusing to listen on 0.0.0.0:0 without bearer tokens"), "{err}");
    assert!(err.contains("logyard token create"), "{err}");
}

#[tokio::test]
async fn insecure_no_auth_warns_on_every_readiness_check() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data");
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--insecure-no-auth", "--storage", storage.to_str().unwrap()])
        .env("LOGYARD_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    let port = line.trim().rsplit(':').next().unwrap().to_owned();
    let url = format!("http://127.0.0.1:{port}/readyz");
    let body: Value = client().get(&url).send().await.unwrap().json().await.unwrap();
    assert!(body["warning"].as_str().unwrap().contains("authentication is off"), "{body}");
    client().get(&url).send().await.unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    // Once at start, once per readiness check.
    assert!(logs.matches("authentication is off").count() >= 3, "{logs}");
}
