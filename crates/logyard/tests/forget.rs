//! Forgetting a customer, end to end against `logyard serve` on local storage: a customer
//! planted in three streams (by id, by a session of theirs, by their address in a message),
//! in the raw archive of request bodies and in an uploaded file's bundle; after `logyard
//! forget` and the vacuum window no stored object holds their id, address or phone number
//! (every byte, bundles and their members decompressed, every Parquet value), queries find
//! nothing of them, everyone else's rows are all there, and the receipt says what was removed
//! where. A server killed (-9) while a job waits resumes it after a restart.

mod common;

use std::path::Path;
use std::time::Duration;

use common::upload::*;
use common::*;
use serde_json::{Value, json};

const CUSTOMER: &str = "c-000123";
const EMAIL: &str = "li.wei@example.com";
const PHONE: &str = "+86 138 0013 8000";
const SESSION: &str = "sess-7f3a9c";

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

fn lines(events: &[Value]) -> String {
    events.iter().map(|e| e.to_string() + "\n").collect()
}

/// A server on local storage under `dir`, or on `s3` (s3s-fs, signatures checked).
fn start(dir: &Path, vacuum_after: &str, s3: Option<&S3>) -> (ServerSpec, Server) {
    let config = dir.join("logyard.toml");
    std::fs::write(
        &config,
        format!(
            "[archive]\nraw_streams = [\"shop-*\"]\nraw_max_age = \"1h\"\n\n[forget]\nvacuum_after = \"{vacuum_after}\"\ncheck_interval = \"300ms\"\n"
        ),
    )
    .unwrap();
    let mut spec = ServerSpec::local(dir);
    if let Some(s3) = s3 {
        spec.storage = format!("s3://{}/logs", s3.bucket("shop"));
        spec.env.extend(s3.env());
    }
    let spec = spec
        .env("LOGYARD_CONFIG", config.to_str().unwrap())
        .env("LOGYARD_UPLOADS_SWEEP_INTERVAL", "200ms")
        .env("LOGYARD_ARCHIVE_BUNDLE_MAX_AGE", "0s");
    let server = spec.start();
    (spec, server)
}

/// Plants the customer and two others; returns the rows of each stream.
async fn plant(server: &Server) {
    let web = lines(&[
        json!({"timestamp": now(), "customer_id": CUSTOMER, "email": EMAIL, "session_id": SESSION, "route": "/login"}),
        json!({"timestamp": now(), "customer_id": "c-000456", "email": "bo@example.org", "session_id": "sess-000456", "route": "/login"}),
        json!({"timestamp": now(), "session_id": SESSION, "route": "/cart"}),
        json!({"timestamp": now(), "customer_id": "c-000789", "session_id": "sess-000789", "route": "/cart"}),
    ]);
    let (status, body) = ingest(server, "shop-web", web, "?ack=commit").await;
    assert_eq!(status, 200, "{body}");
    let orders = lines(&[
        json!({"timestamp": now(), "customer_id": CUSTOMER, "phone": PHONE, "order_id": "o-1", "amount": 12.5}),
        json!({"timestamp": now(), "customer_id": "c-000456", "phone": "+1 415 555 2671", "order_id": "o-2", "amount": 3.0}),
    ]);
    let (status, body) = ingest(server, "shop-orders", orders, "?ack=commit").await;
    assert_eq!(status, 200, "{body}");
    let support = lines(&[
        json!({"timestamp": now(), "message": format!("customer wrote from {EMAIL}: refund please")}),
        json!({"timestamp": now(), "message": "customer wrote from bo@example.org: thanks"}),
    ]);
    let (status, body) = ingest(server, "support", support, "?ack=commit").await;
    assert_eq!(status, 200, "{body}");
    // An upload: its file is kept in an archive bundle.
    let file = lines(&[
        json!({"timestamp": now(), "customer_id": CUSTOMER, "email": EMAIL, "route": "/returns"}),
        json!({"timestamp": now(), "customer_id": "c-000789", "route": "/returns"}),
    ])
    .into_bytes();
    let plan = create(server, "uploads", "returns.ndjson", &file, "application/x-ndjson", "ndjson").await;
    assert_eq!(put(&plan, file).await, 200);
    let id = plan["upload_id"].as_str().unwrap();
    complete(server, id).await;
    let done = finished(server, id).await;
    assert_eq!(done["rows"], 2, "{done}");
    assert!(!archived(server, id).await.is_empty(), "the upload's file is archived");
    let r = client().post(server.url("/api/v1/flush")).send().await.unwrap();
    let flushed: Value = r.json().await.unwrap();
    assert!(flushed["archived_bundles"].as_u64().unwrap() >= 1, "{flushed}");
}

fn forget_cli(server: &Server, extra: &[&str]) -> Value {
    let mut args = vec!["forget", "--customer", CUSTOMER, "--server", &server.base];
    args.extend(extra);
    let (code, out, err) = cli(&args, &[]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"))
}

async fn others(server: &Server) -> Vec<i64> {
    let mut counts = Vec::new();
    for sql in [
        "SELECT count(*) AS n FROM \"shop-web\" WHERE customer_id <> 'c-000123' OR customer_id IS NULL AND session_id <> 'sess-7f3a9c'",
        "SELECT count(*) AS n FROM \"shop-orders\" WHERE customer_id = 'c-000456'",
        "SELECT count(*) AS n FROM support WHERE message LIKE '%bo@example.org%'",
        "SELECT count(*) AS n FROM uploads WHERE customer_id = 'c-000789'",
    ] {
        counts.push(count(server, sql).await);
    }
    counts
}

#[tokio::test]
async fn a_forgotten_customer_is_gone_from_every_stored_byte_and_everyone_else_stays() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, server) = start(dir.path(), "1s", None);
    forget_everywhere(&server, Path::new(&spec.storage), Path::new(&spec.storage)).await;

    // Engines logyard does not control read the tables and find nothing of them either.
    let python = program("LOGYARD_TEST_PYTHON", "python3", "scripts/test.sh makes a venv with deltalake and duckdb");
    let script = r#"
import json, sys, duckdb
from deltalake import DeltaTable
out = {}
for table in sys.argv[1:]:
    dt = DeltaTable(table)
    rows = dt.to_pyarrow_table().to_pylist()
    duck = duckdb.sql("SELECT * FROM read_parquet(" + repr(dt.file_uris()) + ", union_by_name = true)").fetchall()
    out[table] = {"deltalake": json.dumps(rows, default=str), "duckdb": json.dumps(duck, default=str), "rows": len(rows)}
print(json.dumps(out))
"#;
    let tables: Vec<String> = ["shop-web", "shop-orders", "support", "uploads"]
        .iter()
        .map(|s| Path::new(&spec.storage).join("tables").join(s).display().to_string())
        .collect();
    let out = std::process::Command::new(python).arg("-c").arg(script).args(&tables).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (table, rows) in tables.iter().zip([2, 1, 1, 1]) {
        assert_eq!(seen[table]["rows"], rows, "{table}");
        for engine in ["deltalake", "duckdb"] {
            let text = seen[table][engine].as_str().unwrap();
            for planted in [CUSTOMER, EMAIL, PHONE, SESSION] {
                assert!(!text.contains(planted), "{engine} reads {planted} in {table}: {text}");
            }
        }
    }
}

#[tokio::test]
async fn forgetting_on_s3_leaves_no_object_holding_the_customer() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let (_spec, server) = start(dir.path(), "1s", Some(&s3));
    forget_everywhere(&server, s3.root.path(), &s3.root.path().join("shop/logs")).await;
}

/// Plants the customer, forgets them, and checks every stored byte (`storage`: the
/// directory the objects are files of; `root`: where the storage root's objects are), the
/// receipt, the queries and the audit stream.
async fn forget_everywhere(server: &Server, storage: &Path, root: &Path) {
    plant(server).await;
    // Two daily reports (as `logyard report` writes them), one naming the customer.
    for (date, customer) in [("2026-12-04", CUSTOMER), ("2026-12-03", "c-000456")] {
        let dir = root.join(format!("reports/daily/date={date}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("top_5xx_customers.csv"), format!("customer_id,errors\n{customer},5\n")).unwrap();
        std::fs::write(dir.join("manifest.json"), "{}").unwrap();
    }
    for planted in [CUSTOMER, EMAIL, PHONE, SESSION] {
        let holding = files_holding(storage, planted);
        assert!(holding.iter().any(|f| f.contains("archive")), "{planted} is archived: {holding:?}");
        assert!(holding.iter().any(|f| f.ends_with(".parquet")), "{planted} is in a table: {holding:?}");
    }
    let before = others(server).await;
    assert_eq!(before, [2, 1, 1, 1]);

    // A dry run counts and removes nothing.
    let dry = forget_cli(server, &["--dry-run"]);
    assert_eq!(dry["phase"], "done", "{dry}");
    assert_eq!(dry["tables"]["shop-web"]["rows_found"], 2, "{dry}");
    assert!(dry.get("marks").is_none(), "the receipt holds no value: {dry}");
    assert_eq!(count(server, "SELECT count(*) AS n FROM \"shop-web\"").await, 4);

    let receipt = forget_cli(server, &["--wait"]);
    assert_eq!(receipt["phase"], "done", "{receipt}");
    let text = receipt.to_string();
    for planted in [CUSTOMER, EMAIL, PHONE, SESSION] {
        assert!(!text.contains(planted), "the receipt names {planted}: {text}");
    }
    assert!(receipt["subject"].as_str().unwrap().starts_with("sha256:"), "{receipt}");
    let removed = |stream: &str| receipt["tables"][stream]["deleted"]["rows_removed"].as_u64().unwrap();
    assert_eq!(
        (removed("shop-web"), removed("shop-orders"), removed("support"), removed("uploads")),
        (2, 1, 1, 1),
        "{receipt}"
    );
    let bundles = receipt["bundles"].as_array().unwrap();
    assert!(bundles.len() >= 2 && bundles.iter().all(|b| b["deleted"] == true), "{receipt}");
    assert!(receipt["gone_at"].is_string(), "{receipt}");
    assert_eq!(receipt["reports_deleted"], json!(["reports/daily/date=2026-12-04"]), "{receipt}");
    assert!(root.join("reports/daily/date=2026-12-03/top_5xx_customers.csv").exists(), "another day's report stays");

    for planted in [CUSTOMER, EMAIL, PHONE, SESSION] {
        assert_eq!(files_holding(storage, planted), Vec::<String>::new(), "{planted} is still stored");
    }
    assert_eq!(others(server).await, before, "everyone else's rows are all there");
    let kept = files_holding(storage, "c-000456");
    assert!(kept.iter().any(|f| f.contains("archive")), "others' lines stay in the archive: {kept:?}");
    for stream in ["shop-web", "shop-orders", "uploads"] {
        let n =
            count(server, &format!("SELECT count(*) AS n FROM \"{stream}\" WHERE customer_id = '{CUSTOMER}'")).await;
        assert_eq!(n, 0, "{stream}");
    }
    let audit =
        rows(server, "SELECT action FROM \"logyard-audit\" WHERE action LIKE 'forget%' ORDER BY timestamp").await;
    let actions: Vec<&str> = audit.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"forget_requested") && actions.contains(&"forget_completed"), "{actions:?}");
}

#[tokio::test]
async fn a_job_interrupted_by_kill_9_finishes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, mut server) = start(dir.path(), "4s", None);
    plant(&server).await;
    let before = others(&server).await;
    // The job removes the rows, then waits for its vacuum window: killed meanwhile.
    let waiting = forget_cli(&server, &[]);
    assert_eq!(waiting["phase"], "waiting", "{waiting}");
    server.kill9();
    let storage = Path::new(&spec.storage);
    assert!(!files_holding(storage, CUSTOMER).is_empty(), "the old files wait for the window");

    let server = spec.start();
    let url = server.url(&format!("/api/v1/forget/{}", waiting["id"].as_str().unwrap()));
    let started = std::time::Instant::now();
    let job = loop {
        let job: Value = client().get(&url).send().await.unwrap().json().await.unwrap();
        if job["phase"] == "done" {
            break job;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the job did not finish after the restart: {job}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(job["tables"]["shop-web"]["deleted"]["rows_removed"], 2, "{job}");
    for planted in [CUSTOMER, EMAIL, PHONE, SESSION] {
        assert_eq!(files_holding(storage, planted), Vec::<String>::new(), "{planted} is still stored");
    }
    assert_eq!(others(&server).await, before);
}
