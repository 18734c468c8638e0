//! Fields hidden from tokens (`deny_fields`) or shown to them masked (`mask_fields`), through
//! every way a token reads: SQL (`SELECT *`, the column, an expression of it, joins,
//! subqueries, `EXPLAIN`, `information_schema`, `_conflicts`), the stream's description,
//! searches, downloads, the live tail, alert rules and reports. A token without limits reads
//! the same values in clear, which shows that each check would see them if they leaked.

mod common;

use std::time::Duration;

use common::tail::Tail;
use common::*;
use serde_json::{Value, json};

const EMAIL: &str = "li.wei@example.com";
const IP: &str = "203.0.113.77";
const PIN: &str = "PIN-SECRET-9";
const CUSTOMER: &str = "c-000123";
const OTHER_CUSTOMER: &str = "c-000456";

fn event(i: usize, customer: &str) -> String {
    json!({
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "id": format!("e{i}"),
        "customer_id": customer,
        "email": EMAIL,
        "client_ip": IP,
        "user": {"email": EMAIL, "tier": "gold"},
        "status": if i.is_multiple_of(2) { 200 } else { 500 },
        "message": format!("checkout {i}"),
        "pin": 4321,
    })
    .to_string()
}

async fn sql(server: &Server, token: &str, sql: &str) -> (u16, Value) {
    let r =
        client().post(server.url("/api/v1/query")).bearer_auth(token).json(&json!({"sql": sql})).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn post_json(server: &Server, token: &str, path: &str, body: Value) -> (u16, Value) {
    let r = client().post(server.url(path)).bearer_auth(token).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(server: &Server, token: &str, path: &str) -> (u16, String) {
    let r = client().get(server.url(path)).bearer_auth(token).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Fails naming `what` if `text` holds a planted value the support token may not read.
fn holds_nothing_denied(what: &str, text: &str) {
    for planted in [EMAIL, IP, PIN, CUSTOMER, OTHER_CUSTOMER] {
        assert!(!text.contains(planted), "{what} shows {planted}: {text:.600}");
    }
}

#[tokio::test]
async fn denied_fields_cannot_be_read_and_masked_ones_read_as_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("mask.key");
    std::fs::write(&key, "4c0d6e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5\n").unwrap();
    let config = dir.path().join("logyard.toml");
    std::fs::write(&config, format!("[masking]\nkey_file = \"{}\"\n", key.display())).unwrap();
    let (ops, e1) = create_token("ops", "admin,query,ingest", None);
    let (support, e2) = create_token_with(
        "support",
        "query",
        &["--deny-fields", "email,client_ip,user.email,pin", "--mask-fields", "customer_id"],
    );
    let tokens_file = dir.path().join("tokens.toml");
    std::fs::write(&tokens_file, format!("{e1}\n{e2}")).unwrap();
    let server = ServerSpec::local(dir.path())
        .env("LOGYARD_CONFIG", config.to_str().unwrap())
        .env("LOGYARD_TOKENS_FILE", tokens_file.to_str().unwrap())
        .start();

    let put = |body: String| {
        let url = server.url("/api/v1/streams/shop/events?ack=commit");
        let request = client().post(url).bearer_auth(&ops).body(body);
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        }
    };
    put((0..6).map(|i| event(i, [CUSTOMER, OTHER_CUSTOMER][i % 2]) + "\n").collect()).await;
    // `pin` is a number column now: a text value goes to `_conflicts`, under its name.
    let mut late: Value = serde_json::from_str(&event(6, CUSTOMER)).unwrap();
    late["pin"] = json!(PIN);
    late["status"] = json!("teapot");
    put(late.to_string()).await;
    put(json!({"timestamp": chrono::Utc::now().to_rfc3339(), "customer_id": CUSTOMER, "page": "/cart"}).to_string())
        .await;

    // The token without limits reads every value in clear.
    let (status, all) = sql(&server, &ops, "SELECT * FROM shop").await;
    assert_eq!(status, 200, "{all}");
    let clear = all.to_string();
    for planted in [EMAIL, IP, PIN, CUSTOMER, OTHER_CUSTOMER] {
        assert!(clear.contains(planted), "the clear rows hold {planted}: {clear:.600}");
    }

    // `SELECT *`: the denied columns are not there, the masked one is a hash, `_conflicts`
    // keeps only what the token may read.
    let (status, seen) = sql(&server, &support, "SELECT * FROM shop ORDER BY id").await;
    assert_eq!(status, 200, "{seen}");
    holds_nothing_denied("SELECT *", &seen.to_string());
    let rows = seen["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    for row in rows {
        for hidden in ["email", "client_ip", "user.email", "pin"] {
            assert!(row.get(hidden).is_none(), "{hidden} in {row}");
        }
        let masked = row["customer_id"].as_str().unwrap();
        assert!(masked.len() == 32 && masked.chars().all(|c| c.is_ascii_hexdigit()), "{row}");
        if row["id"] == "e0" {
            assert_eq!(row["user.tier"], "gold", "{row}");
        }
    }
    let conflicts: Vec<&Value> = rows.iter().map(|r| &r["_conflicts"]).filter(|c| !c.is_null()).collect();
    assert_eq!(conflicts, [&json!(r#"{"status":"teapot"}"#)], "{seen}");

    // The column, an expression of it, a filter on it, a join on it, a subquery, a CTE:
    // each is an error naming the column as unknown, and no value.
    for statement in [
        "SELECT email FROM shop",
        "SELECT upper(email) AS e FROM shop",
        "SELECT count(*) AS n FROM shop WHERE email = 'li.wei@example.com'",
        "SELECT a.id FROM shop a JOIN shop b ON a.client_ip = b.client_ip",
        "SELECT * FROM (SELECT email FROM shop) t",
        "SELECT count(*) AS n FROM shop WHERE id IN (SELECT id FROM shop WHERE pin > 0)",
        "WITH t AS (SELECT \"user.email\" AS e FROM shop) SELECT * FROM t",
        "SELECT shop.email FROM shop, shop AS other",
    ] {
        let (status, body) = sql(&server, &support, statement).await;
        assert_eq!(status, 400, "{statement}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("No field named"), "{statement}: {body}");
        holds_nothing_denied(statement, &body.to_string());
    }
    // The masked column's hash is stable: it groups and joins, and a filter on the clear value
    // finds nothing.
    let (status, groups) =
        sql(&server, &support, "SELECT customer_id, count(*) AS n FROM shop GROUP BY 1 ORDER BY n DESC").await;
    assert_eq!(status, 200, "{groups}");
    let groups = groups["rows"].as_array().unwrap().clone();
    assert_eq!(groups.iter().map(|g| g["n"].as_i64().unwrap()).collect::<Vec<_>>(), [5, 3], "{groups:?}");
    let hash = groups[0]["customer_id"].as_str().unwrap();
    let (_, joined) = sql(
        &server,
        &support,
        &format!(
            "SELECT count(*) AS n FROM shop a JOIN shop b ON a.customer_id = b.customer_id WHERE a.customer_id = '{hash}'"
        ),
    )
    .await;
    assert_eq!(joined["rows"][0]["n"], 25, "{joined}");
    let (_, probe) =
        sql(&server, &support, &format!("SELECT count(*) AS n FROM shop WHERE customer_id = '{CUSTOMER}'")).await;
    assert_eq!(probe["rows"][0]["n"], 0, "{probe}");
    // EXPLAIN and the catalog show no value, and no denied column.
    for statement in [
        "EXPLAIN SELECT * FROM shop WHERE customer_id = 'x'",
        "EXPLAIN VERBOSE SELECT * FROM shop",
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'shop'",
    ] {
        let (status, body) = sql(&server, &support, statement).await;
        assert_eq!(status, 200, "{statement}: {body}");
        holds_nothing_denied(statement, &body.to_string());
    }
    let (_, columns) = sql(
        &server,
        &support,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'shop' ORDER BY 1",
    )
    .await;
    let names: Vec<&str> =
        columns["rows"].as_array().unwrap().iter().map(|r| r["column_name"].as_str().unwrap()).collect();
    assert!(names.contains(&"customer_id") && names.contains(&"user.tier"), "{names:?}");
    assert!(!names.iter().any(|n| ["email", "client_ip", "user.email", "pin"].contains(n)), "{names:?}");
    let (status, text) = get(&server, &support, "/api/v1/streams/shop").await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("\"email\"") && !text.contains("client_ip") && text.contains("user.tier"), "{text}");
    let (_, session) = get(&server, &support, "/api/v1/session").await;
    let session: Value = serde_json::from_str(&session).unwrap();
    assert_eq!(session["mask_fields"], json!(["customer_id"]), "{session}");

    // Searches: events without the denied fields; a search on one finds nothing.
    let search = json!({"streams": ["shop"], "query": "status:500", "since": "1h"});
    let (status, found) = post_json(&server, &support, "/api/v1/search", search.clone()).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["events"].as_array().unwrap().len(), 3, "{found}");
    holds_nothing_denied("a search", &found["events"].to_string());
    let probe = json!({"streams": ["shop"], "query": format!("email:\"{EMAIL}\""), "since": "1h"});
    let (status, found) = post_json(&server, &support, "/api/v1/search", probe).await;
    assert!(status == 400 || found["events"].as_array().is_some_and(Vec::is_empty), "{status} {found}");
    // A download of a search.
    let (status, link) =
        post_json(&server, &support, "/api/v1/downloads", json!({"search": search, "format": "csv"})).await;
    assert_eq!(status, 200, "{link}");
    let csv = client().get(server.url(link["url"].as_str().unwrap())).send().await.unwrap().text().await.unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    holds_nothing_denied("a download", &csv);

    // Alert rules: a SQL rule (which may read anything) is neither shown nor previewed; a
    // search rule grouped by a masked field is not shown either.
    let rule = json!({"name": "by-email", "sql": "SELECT email AS grp, count(*) AS value FROM shop WHERE $__timeFilter(timestamp) GROUP BY 1", "group_by": "grp", "every": "1m", "condition": "value > 0"});
    let (status, body) = post_json(&server, &ops, "/api/v1/alerts", rule.clone()).await;
    assert!(status == 200 || status == 201, "{body}");
    let search_rule = json!({"name": "by-customer", "search": {"streams": ["shop"], "query": "status:500"}, "group_by": "customer_id", "every": "1m", "condition": "value > 0"});
    let (status, body) = post_json(&server, &ops, "/api/v1/alerts", search_rule).await;
    assert!(status == 200 || status == 201, "{body}");
    let (status, listed) = get(&server, &support, "/api/v1/alerts").await;
    assert_eq!(status, 200, "{listed}");
    assert!(!listed.contains("by-email") && !listed.contains("by-customer"), "{listed}");
    let (_, listed) = get(&server, &ops, "/api/v1/alerts").await;
    assert!(listed.contains("by-email") && listed.contains("by-customer"), "{listed}");
    let (status, body) = post_json(&server, &support, "/api/v1/alerts/preview", json!({"rule": rule})).await;
    assert_eq!(status, 403, "{body}");
    holds_nothing_denied("an alert preview", &body.to_string());
    // Reports are written with every field: refused.
    let (status, body) = get(&server, &support, "/api/v1/reports/daily/2026-11-25").await;
    assert_eq!(status, 403, "{body}");

    // The live tail: the denied fields are gone before the filter looks, the masked one is the
    // same hash as in SQL.
    let mut tail = Tail::open(&server, Some(&support), &[("streams", "shop")], None).await;
    let mut probe = Tail::open(&server, Some(&support), &[("streams", "shop"), ("q", "client_ip:*")], None).await;
    put(event(7, CUSTOMER)).await;
    let message = tail.next(Duration::from_secs(10)).await.expect("the event in the tail");
    assert_eq!(message.event, "event", "{message:?}");
    let seen = message.json();
    holds_nothing_denied("the live tail", &seen.to_string());
    assert_eq!(seen["customer_id"], hash, "{seen}");
    assert_eq!(seen["user.tier"], "gold", "{seen}");
    assert!(probe.next(Duration::from_secs(2)).await.is_none(), "a tail filtered on a denied field got an event");
}

#[test]
fn masked_fields_need_the_masking_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_, entry) = create_token_with("support", "query", &["--mask-fields", "customer_id"]);
    let tokens_file = dir.path().join("tokens.toml");
    std::fs::write(&tokens_file, entry).unwrap();
    let (code, _, err) = cli(
        &["serve", "--listen", "127.0.0.1:0", "--storage", dir.path().join("data").to_str().unwrap()],
        &[("LOGYARD_TOKENS_FILE".into(), tokens_file.display().to_string())],
    );
    assert_ne!(code, 0);
    assert!(err.contains("mask_fields") && err.contains("masking.key_file"), "{err}");
    let (code, _, err) = cli(&["token", "create", "--name", "x", "--scopes", "query", "--deny-fields", "a..b"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("deny_fields") && err.contains("a..b"), "{err}");
}
