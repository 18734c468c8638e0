//! Searches in the search language (`POST /api/v1/search`, `logyard search`) against a
//! `logyard serve` process: each search finds what hand-written SQL finds, pages walk every
//! match once in time order, the histogram counts them, and tokens see only their streams.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{Value, json};

const FROM: &str = "2026-12-01T09:00:00Z";
const TO: &str = "2026-12-01T11:00:00Z";

/// 300 events from 10:00:00, three at each second (so pages must split equal times).
fn shop_events() -> String {
    let mut out = String::new();
    for i in 0..300 {
        let status = [200, 200, 404, 500, 503][i % 5];
        let level = match status {
            500.. => "error",
            404 => "warn",
            _ => "info",
        };
        let route = ["/checkout", "/api/cart", "/api/payments", "/products/1"][i % 4];
        let mut message = format!("{route} {status}");
        for (every, text) in [(7, " payment declined: 51"), (11, " 100% off"), (13, " 1000 items"), (17, " it's done")]
        {
            if i % every == 0 {
                message.push_str(text);
            }
        }
        let mut event = json!({
            "timestamp": format!("2026-12-01T10:{:02}:{:02}Z", i / 3 / 60, i / 3 % 60),
            "id": format!("e{i:03}"),
            "status": status,
            "level": level,
            "route": route,
            "message": message,
            "http": {"method": if i % 2 == 1 { "POST" } else { "GET" }},
        });
        if i % 3 == 0 {
            event["order_id"] = json!(format!("o-{i:07}"));
        }
        out.push_str(&event.to_string());
        out.push('\n');
    }
    out
}

async fn search(server: &Server, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = client().post(server.url("/api/v1/search")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Every page of a search, `limit` events at a time: the ids in order and how many pages.
async fn all_pages(server: &Server, query: &str, limit: usize) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut before = Value::Null;
    let mut last_time = String::from("~");
    for pages in 1.. {
        let body =
            json!({"streams": ["shop"], "query": query, "from": FROM, "to": TO, "limit": limit, "before": before});
        let (status, r) = search(server, None, body).await;
        assert_eq!(status, 200, "{query}: {r}");
        for event in r["events"].as_array().unwrap() {
            let time = event["timestamp"].as_str().unwrap().to_owned();
            assert!(time <= last_time, "{query}: {time} after {last_time}: newest first");
            last_time = time;
            ids.push(event["id"].as_str().unwrap().to_owned());
        }
        before = r["next"].clone();
        if before.is_null() {
            return (ids, pages);
        }
        assert!(pages < 1000, "{query}: pages do not end");
    }
    unreachable!()
}

#[tokio::test]
async fn searches_find_what_sql_finds_page_by_page() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path()).start();
    let (status, r) = ingest(&server, "shop", shop_events(), "").await;
    assert_eq!(status, 200, "{r}");
    flush(&server).await;

    // (search, the same condition written by hand in SQL)
    let cases = [
        ("", "TRUE"),
        ("checkout", "lower(message) LIKE '%checkout%'"),
        ("status:>=500 checkout", "status >= 500 AND lower(message) LIKE '%checkout%'"),
        ("\"PAYMENT DECLINED\"", "lower(message) LIKE '%payment declined%'"),
        ("-level:info", "level <> 'info'"),
        ("NOT level:info AND NOT level:warn", "level = 'error'"),
        ("http.method:POST route:/api/*", "\"http.method\" = 'POST' AND starts_with(route, '/api/')"),
        ("order_id:*", "order_id IS NOT NULL"),
        ("-order_id:*", "order_id IS NULL"),
        ("status:404 OR status:503", "status IN (404, 503)"),
        ("(status:404 OR status:503) -route:/checkout", "status IN (404, 503) AND route <> '/checkout'"),
        ("100%", "strpos(message, '100%') > 0"),
        ("it's", "strpos(message, 'it''s') > 0"),
        ("nosuchfield:1", "FALSE"),
        ("-nosuchfield:1", "TRUE"),
        ("order_id:o-00000*", "starts_with(order_id, 'o-00000')"),
    ];
    for (query, condition) in cases {
        let expected: Vec<String> =
            rows(&server, &format!("SELECT id FROM shop WHERE {condition} ORDER BY timestamp DESC, id"))
                .await
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect();
        let (ids, pages) = all_pages(&server, query, 7).await;
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{query}: an event shown twice");
        assert_eq!(unique, expected.iter().collect::<BTreeSet<_>>(), "{query}");
        assert_eq!(pages, expected.len().div_ceil(7).max(1), "{query}");

        let body = json!({"streams": ["shop"], "query": query, "from": FROM, "to": TO, "histogram": true});
        let (status, r) = search(&server, None, body).await;
        assert_eq!(status, 200, "{r}");
        let histogram = &r["histogram"];
        assert_eq!(histogram["total"], expected.len(), "{query}: {histogram}");
        let summed: u64 = histogram["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b["counts"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()))
            .sum();
        assert_eq!(summed, expected.len() as u64, "{query}");
        assert_eq!(r["events"].as_array().unwrap().len(), expected.len().min(100));
        let sql = r["sql"].as_array().unwrap();
        assert_eq!(sql.len(), 2, "the page's SQL and the histogram's: {r}");
        assert!(sql[0].as_str().unwrap().starts_with("SELECT * FROM \"shop\" WHERE \"timestamp\" >= "), "{r}");
    }

    // Two hours in 60-second buckets, stacked by level (the biggest series first).
    let (_, r) = search(&server, None, json!({"streams": ["shop"], "from": FROM, "to": TO, "histogram": true})).await;
    let histogram = &r["histogram"];
    assert_eq!(histogram["interval_seconds"], 60);
    assert_eq!(histogram["buckets"].as_array().unwrap().len(), 120);
    assert_eq!(histogram["series_by"], "level");
    assert_eq!(histogram["series"], json!(["error", "info", "warn"]), "120, 120 and 60 events");
    assert_eq!(histogram["buckets"][60]["time"], "2026-12-01T10:00:00.000000Z");
    assert_eq!(histogram["buckets"][60]["counts"], json!([72, 72, 36]), "10:00 holds 180 events: {histogram}");
}

#[tokio::test]
async fn bad_searches_and_hidden_streams_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (analyst, e1) = create_token("analyst", "query", Some("shop"));
    let (ops, e2) = create_token("ops", "admin,query,ingest", None);
    let tokens_file = dir.path().join("tokens.toml");
    std::fs::write(&tokens_file, format!("{e1}\n{e2}")).unwrap();
    let server = ServerSpec::local(dir.path()).env("LOGYARD_TOKENS_FILE", tokens_file.to_str().unwrap()).start();
    for stream in ["shop", "secret"] {
        let url = server.url(&format!("/api/v1/streams/{stream}/events?ack=commit"));
        let r = client().post(url).bearer_auth(&ops).body(shop_events()).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    }
    let all = json!({"streams": ["shop", "secret"], "from": FROM, "to": TO, "limit": 1000});
    let (status, r) = search(&server, Some(&ops), all.clone()).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["events"].as_array().unwrap().len(), 600, "both streams, merged");
    assert_eq!(r["events"][0]["_stream"], "secret", "at equal times, streams in name order");
    assert_eq!(r["events"][1]["_stream"], "secret");
    assert_eq!(r["events"][3]["_stream"], "shop");

    // A token limited to `shop` cannot tell `secret` from a stream that does not exist.
    let (status, r) = search(&server, Some(&analyst), all).await;
    assert_eq!(status, 404, "{r}");
    assert_eq!(r["error"]["code"], "no_such_stream");
    assert_eq!(r["error"]["message"], "no stream named secret (or this token may not read it)");
    let (status, r) = search(&server, Some(&analyst), json!({"streams": ["nothing"], "from": FROM, "to": TO})).await;
    assert_eq!(
        (status, &r["error"]["message"]),
        (404, &json!("no stream named nothing (or this token may not read it)"))
    );
    let (status, r) = search(&server, Some(&analyst), json!({"streams": ["shop"], "from": FROM, "to": TO})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["events"].as_array().unwrap().len(), 100);

    // A search that cannot be read names where; typed values must fit their column.
    let bad = |query: &str| json!({"streams": ["shop"], "query": query, "from": FROM, "to": TO});
    let (status, r) = search(&server, Some(&analyst), bad("status:>=")).await;
    assert_eq!(status, 400, "{r}");
    assert_eq!(r["error"]["code"], "bad_search");
    assert_eq!(r["error"]["message"], "search: expected a value after `status:>=` (at character 9)");
    let (status, r) = search(&server, Some(&analyst), bad("checkout status:high")).await;
    assert_eq!(
        (status, &r["error"]["message"]),
        (400, &json!("search: `status` holds numbers: `high` is not one (at character 9)"))
    );
    // What is typed stays data: an injection attempt is a value that matches nothing.
    let (status, r) = search(&server, Some(&analyst), bad("route:\"x' OR '1'='1\"")).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["events"], json!([]));
    let (status, r) = search(&server, Some(&analyst), bad(r#"x\"\ OR\ \"1:1"#)).await;
    assert_eq!((status, &r["events"]), (200, &json!([])), "a field name with quotes is a missing field");

    let (status, r) = search(&server, Some(&analyst), json!({"streams": ["shop"], "since": "soon"})).await;
    assert_eq!(status, 400, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().starts_with("`since` \"soon\" is not a duration"), "{r}");
    let (status, r) = search(&server, Some(&analyst), json!({"streams": ["shop"], "before": "yesterday"})).await;
    assert_eq!(status, 400, "{r}");
    let (status, _) = search(&server, None, json!({"streams": ["shop"]})).await;
    assert_eq!(status, 401);

    // The command line, against the server and against the storage.
    let cli_env = [("LOGYARD_TOKEN".to_owned(), analyst.clone())];
    let (code, out, err) = cli(
        &[
            "search",
            "shop",
            "status:>=500 checkout",
            "--from",
            FROM,
            "--to",
            TO,
            "--server",
            &server.url(""),
            "--format",
            "ndjson",
        ],
        &cli_env,
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 30, "{out}");
    assert!(lines.iter().all(|e| e["status"].as_i64().unwrap() >= 500 && e["route"] == "/checkout"));
    let (code, out, err) = cli(
        &["search", "shop", "id:e299", "--from", FROM, "--to", TO, "--storage", &server.storage, "--show-sql"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("2026-12-01T10:01:39"), "{out}");
    assert!(
        out.contains(" shop /products/1 503 ") && out.contains("id=e299") && out.contains("http.method=POST"),
        "{out}"
    );
    assert!(
        err.contains("WHERE \"timestamp\" >= '2026-12-01T09:00:00.000000Z'") && err.contains("(\"id\" = 'e299')"),
        "{err}"
    );
    let (code, _, err) = cli(&["search", "shop", "(", "--storage", &server.storage], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("expected a term at the end (at character 1)"), "{err}");
}
