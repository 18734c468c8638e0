//! Masking at ingest: what the rules find never stays on the disk — not in the write-ahead
//! log, the table's Parquet files or the raw archive, whether it came by NDJSON, the bulk API
//! or an upload — while streams without rules keep their values (which also shows that the
//! byte scan below finds what is there).

mod common;

use std::path::Path;

use common::upload::*;
use common::*;
use serde_json::Value;

const EMAIL: &str = "li.wei@example.com";
const PHONE: &str = "+86 138 0013 8000";
const CARD: &str = "4111 1111 1111 1111";
const CLIENT_IP: &str = "203.0.113.77";
const OTHER_EMAIL: &str = "kept.as.is@example.org";

fn event(i: usize, email: &str) -> String {
    serde_json::json!({
        "timestamp": format!("2026-11-25T10:00:{:02}Z", i % 60),
        "message": format!("payment declined for {email}, call {PHONE}, card {CARD}"),
        "client_ip": CLIENT_IP,
        "customer_email": email.to_uppercase(),
        "order_id": format!("o-{i:07}"),
    })
    .to_string()
}

#[tokio::test]
async fn masked_values_never_reach_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("mask.key");
    std::fs::write(&key, "6f1c2a9e0b7d4e3f8a5c6b7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b\n").unwrap();
    let config = dir.path().join("logyard.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[archive]
raw_streams = ["shop-*", "other"]
raw_max_age = "1h"

[masking]
key_file = "{}"

[[masking.rules]]
streams = ["shop-*"]
detectors = ["default"]

[[masking.rules]]
streams = ["shop-*"]
detectors = ["email"]
action = "hash"
fields = ["customer_email"]
"#,
            key.display()
        ),
    )
    .unwrap();
    let spec = ServerSpec::local(dir.path())
        .env("LOGYARD_CONFIG", config.to_str().unwrap())
        .env("LOGYARD_UPLOADS_SWEEP_INTERVAL", "200ms")
        .env("LOGYARD_ARCHIVE_BUNDLE_MAX_AGE", "0s");
    let server = spec.start();

    let shop: String = (0..20).map(|i| event(i, EMAIL) + "\n").collect();
    let (status, body) = ingest(&server, "shop-web", shop, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 20, "{body}");
    // The same request through another protocol (Elasticsearch bulk) is masked the same way.
    let bulk = format!("{{\"create\":{{\"_index\":\"shop-bulk\"}}}}\n{}\n", event(0, EMAIL));
    let r = client()
        .post(server.url("/_bulk"))
        .header("content-type", "application/x-ndjson")
        .body(bulk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let other_event =
        serde_json::json!({"timestamp": "2026-11-25T10:00:00Z", "message": format!("from {OTHER_EMAIL}")});
    let (status, _) = ingest(&server, "other", other_event.to_string() + "\n", "").await;
    assert_eq!(status, 200);

    // An upload: its rows are masked, and its file, as sent, is deleted instead of archived.
    let file: Vec<u8> = (20..30).map(|i| event(i, EMAIL) + "\n").collect::<String>().into_bytes();
    let plan = create(&server, "shop-upload", "orders.ndjson", &file, "application/x-ndjson", "ndjson").await;
    assert_eq!(put(&plan, file).await, 200);
    let id = plan["upload_id"].as_str().unwrap();
    complete(&server, id).await;
    let done = finished(&server, id).await;
    assert_eq!((done["state"].as_str(), done["rows"].as_u64()), (Some("done"), Some(10)), "{done}");
    assert_eq!(archived(&server, id).await, "", "nothing of a masked stream's upload is archived");

    // Durable in the write-ahead log: nothing planted in a masked stream is in it.
    for planted in [EMAIL, PHONE, CARD, CLIENT_IP, &EMAIL.to_uppercase()] {
        assert_eq!(files_holding(&spec.wal_dir, planted), Vec::<String>::new(), "{planted} in the WAL");
    }
    assert!(!files_holding(&spec.wal_dir, OTHER_EMAIL).is_empty(), "the unmasked stream's value is in the WAL");

    let r = client().post(server.url("/api/v1/flush")).send().await.unwrap();
    let flushed: Value = r.json().await.unwrap();
    assert!(flushed["archived_bundles"].as_u64().unwrap() >= 1, "{flushed}");

    let shop_rows =
        rows(&server, "SELECT message, client_ip, customer_email FROM \"shop-web\" ORDER BY order_id").await;
    assert_eq!(shop_rows.len(), 20);
    assert_eq!(
        shop_rows[0]["message"], "payment declined for [email], call [phone], card **** **** **** 1111",
        "{shop_rows:?}"
    );
    assert_eq!(shop_rows[0]["client_ip"], "203.0.113.0");
    let hashed = shop_rows[0]["customer_email"].as_str().unwrap();
    assert!(hashed.len() == 32 && hashed.bytes().all(|b| b.is_ascii_hexdigit()), "{hashed}");
    assert!(shop_rows.iter().all(|r| r["customer_email"] == hashed), "one customer, one hash: they still group");
    let uploaded = rows(&server, "SELECT message FROM \"shop-upload\" LIMIT 1").await;
    assert_eq!(uploaded[0]["message"], shop_rows[0]["message"]);
    let bulk_rows = rows(&server, "SELECT message FROM \"shop-bulk\"").await;
    assert_eq!(bulk_rows[0]["message"], shop_rows[0]["message"]);
    let other = rows(&server, "SELECT message FROM other").await;
    assert!(other[0]["message"].as_str().unwrap().contains(OTHER_EMAIL), "streams without rules are not masked");

    // Committed and archived: the table files and the raw archive hold none of it either.
    let storage = Path::new(&spec.storage);
    for planted in [EMAIL, PHONE, CARD, CLIENT_IP, &EMAIL.to_uppercase()] {
        assert_eq!(files_holding(storage, planted), Vec::<String>::new(), "{planted} in the storage");
    }
    let holding_other = files_holding(storage, OTHER_EMAIL);
    assert!(holding_other.iter().any(|f| f.ends_with(".parquet")), "{holding_other:?}");
    assert!(holding_other.iter().any(|f| f.contains("archive")), "{holding_other:?}");
    assert!(!files_holding(storage, "[email]").is_empty(), "the masked archive holds the masked events");

    let text = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let masked =
        |kind: &str| metric_value(&text, "logyard_masked_values_total", &[("stream", "shop-web"), ("kind", kind)]);
    assert_eq!(masked("email"), Some(40.0), "20 in messages, 20 hashed");
    assert_eq!(masked("card"), Some(20.0));
    assert_eq!(masked("phone"), Some(20.0));
    assert_eq!(masked("ip"), Some(20.0));
}

#[test]
fn a_wrong_rule_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("logyard.toml");
    std::fs::write(
        &config,
        "[[masking.rules]]\ndetectors = [\"default\"]\n\n[[masking.rules]]\ndetectors = [\"mail\"]\n",
    )
    .unwrap();
    let env = [("LOGYARD_CONFIG".to_owned(), config.display().to_string())];
    let data = dir.path().join("data");
    let (code, _, err) = cli(&["serve", "--listen", "127.0.0.1:0", "--storage", data.to_str().unwrap()], &env);
    assert_ne!(code, 0);
    assert!(err.contains("masking.rules[1]") && err.contains("unknown detector \"mail\""), "{err}");

    std::fs::write(&config, "[[masking.rules]]\ndetectors = [\"email\"]\naction = \"hash\"\n").unwrap();
    let (code, _, err) = cli(&["serve", "--listen", "127.0.0.1:0", "--storage", data.to_str().unwrap()], &env);
    assert_ne!(code, 0);
    assert!(err.contains("needs a key"), "{err}");
}

#[test]
fn alb_imports_keep_only_the_masked_client_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let text = logyard_bench::alb::lines(200, 7);
    let clients: std::collections::BTreeSet<String> =
        text.lines().map(|l| l.split(' ').nth(3).unwrap().rsplit_once(':').unwrap().0.to_owned()).collect();
    assert!(clients.len() > 1, "{clients:?}");
    let source = dir.path().join("bucket/AWSLogs/123456789012/elasticloadbalancing/eu-west-1/2026/11/25");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("app.shop_20261125T0005Z_10.0.1.7_x7.log.gz"), gzip(text.as_bytes())).unwrap();
    let config = dir.path().join("logyard.toml");
    std::fs::write(&config, "[[masking.rules]]\nstreams = [\"alb\"]\ndetectors = [\"ip\"]\nfields = [\"client_ip\"]\n")
        .unwrap();
    let env = [("LOGYARD_CONFIG".to_owned(), config.display().to_string())];
    let storage = dir.path().join("data");
    let src = dir.path().join("bucket/AWSLogs/123456789012/elasticloadbalancing/eu-west-1");
    let (code, out, err) = cli(&["import", "alb", src.to_str().unwrap(), "--storage", storage.to_str().unwrap()], &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("200 rows") && out.contains("200 values masked"), "{out}");

    let (code, csv, err) = cli(
        &["query", "--storage", storage.to_str().unwrap(), "--format", "csv", "SELECT DISTINCT client_ip FROM alb"],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(csv.lines().skip(1).all(|ip| ip.ends_with(".0") || ip.ends_with("::")), "{csv}");
    for ip in &clients {
        assert_eq!(files_holding(&storage, ip), Vec::<String>::new(), "{ip} in the storage");
    }
}
