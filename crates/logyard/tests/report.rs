//! `logyard report daily` on seeded data (generated storefront logs and the orders they
//! place, in a throwaway PostgreSQL): the report matches its snapshot and PostgreSQL's own
//! counts, is served by the API, and a job killed before its manifest leaves no report
//! visible.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pg::{Shop, generated, shop};
use common::proxy::Fault;
use common::*;
use serde_json::Value;

const DATE: &str = "2026-11-25";

fn snapshot_path() -> std::path::PathBuf {
    common::crate_dir().join("tests/snapshots/daily-report-2026-11-25.json")
}

#[tokio::test]
async fn the_daily_report_of_seeded_data_matches_its_snapshot_and_postgres() {
    let Shop { pg, spec, server, dir: _dir, .. } = shop(30_000).await;
    let (code, out, err) = cli(&["report", "daily", "--date", DATE, "--storage", &spec.storage], &pg.env());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("daily report {DATE} written")), "{out}");

    // Served by the API: the listing, the HTML page, the JSON and a CSV.
    let list: Value = client().get(server.url("/api/v1/reports")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["reports"][0]["date"], DATE, "{list}");
    assert_eq!(list["reports"][0]["url"], format!("/api/v1/reports/daily/{DATE}"));
    let html = client().get(server.url(&format!("/api/v1/reports/daily/{DATE}"))).send().await.unwrap();
    assert_eq!(html.status(), 200);
    assert!(html.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = html.text().await.unwrap();
    assert!(html.contains("Daily report") && html.matches("class=\"datum\"").count() > 24, "charts with data");
    let csv = client().get(server.url(&format!("/api/v1/reports/daily/{DATE}/routes.csv"))).send().await.unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.text().await.unwrap().lines().count() > 5);
    let report: Value = client()
        .get(server.url(&format!("/api/v1/reports/daily/{DATE}/report.json")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // The numbers agree with the data they come from.
    let requests = report["summary"]["requests"].as_u64().unwrap();
    assert_eq!(requests, 30_000);
    let by_hour: u64 =
        report["traffic_by_hour"].as_array().unwrap().iter().map(|h| h["requests"].as_u64().unwrap()).sum();
    assert_eq!(by_hour, requests);
    let pending = pg.psql("SELECT count(*) FROM orders WHERE status = 'pending'");
    assert_eq!(report["pending"]["count"].to_string(), pending);
    let eur = pg.psql("SELECT sum(amount) FROM orders WHERE status = 'pending' AND currency = 'EUR'");
    let eur_row =
        report["pending"]["value_by_currency"].as_array().unwrap().iter().find(|c| c["currency"] == "EUR").unwrap();
    assert_eq!(eur_row["amount"], eur.as_str());
    let at_risk = report["orders_at_risk"].as_array().unwrap();
    assert!(!at_risk.is_empty(), "the seeded day has failed checkouts with pending orders");
    for r in at_risk {
        let id = r["order"]["id"].as_str().unwrap();
        assert_eq!(pg.psql(&format!("SELECT status FROM orders WHERE id = '{id}'")), "pending");
        assert!(r["status"].as_u64().unwrap() >= 500);
    }

    // The snapshot (everything but the time it was made). LOGYARD_UPDATE_SNAPSHOTS=1 rewrites it.
    let mut stable = report.clone();
    stable["generated_at"] = Value::Null;
    let path = snapshot_path();
    if std::env::var_os("LOGYARD_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(&stable).unwrap() + "\n").unwrap();
    }
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with LOGYARD_UPDATE_SNAPSHOTS=1 to write it", path.display())),
    )
    .unwrap();
    assert_eq!(stable, expected, "the report differs from {}", path.display());
}

/// Waits until `path` exists.
fn wait_for(path: &std::path::Path, what: &str) {
    let started = Instant::now();
    while !path.exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "{what} never appeared at {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_report_job_killed_before_its_manifest_leaves_no_report_visible() {
    let s3 = S3::start();
    let bucket = s3.bucket("shop-logs");
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ServerSpec::local(dir.path());
    spec.storage = format!("s3://{bucket}/data");
    spec.env.extend(s3.env());
    let mut server = spec.start();
    let (logs, _) = generated(2_000);
    let (status, body) = ingest(&server, "storefront", logs, "?ack=commit").await;
    assert_eq!(status, 200, "{body}");
    let report_dir = s3.root.path().join(&bucket).join(format!("data/reports/daily/date={DATE}"));
    let listed = || {
        let (code, out, err) = cli(&["report", "ls", "--storage", &spec.storage], &s3.env());
        assert_eq!(code, 0, "{err}");
        out
    };
    let job = || {
        let mut cmd = Command::new(BIN);
        cmd.args(["report", "daily", "--date", DATE, "--storage", &spec.storage]).stdin(Stdio::null());
        cmd.stdout(Stdio::null()).stderr(Stdio::null()).envs(s3.env());
        cmd
    };

    // Killed while its manifest is on the way: the files are there, the report is not.
    s3.faults.set(Fault::HoldManifest);
    let mut child = job().spawn().unwrap();
    wait_for(&report_dir.join("orders_at_risk.csv"), "the report's last file");
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(report_dir.join("report.html").exists());
    assert_eq!(listed(), "", "no manifest, no report");
    let r = client().get(server.url(&format!("/api/v1/reports/daily/{DATE}"))).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Run again: complete, listed.
    s3.faults.set(Fault::None);
    let status = job().status().unwrap();
    assert!(status.success());
    assert!(listed().starts_with(&format!("daily\t{DATE}\t")), "{}", listed());

    // A rerun killed midway hides the old report too: it is never half old, half new.
    s3.faults.set(Fault::HoldManifest);
    let mut child = job().spawn().unwrap();
    let started = Instant::now();
    while report_dir.join("manifest.json").exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "the rerun never removed the old manifest");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    s3.faults.set(Fault::None);
    assert_eq!(listed(), "");
    server.terminate(Duration::from_secs(30));
}
