//! Compaction while queries count rows (every count right), and retention removing exactly
//! the days and bundles older than the cutoff, vacuumed, with an audit entry.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// Events of one day, `days_ago` days before today (UTC).
fn day_events(prefix: &str, days_ago: i64, n: usize) -> String {
    let day = chrono::Utc::now().date_naive() - chrono::Days::new(days_ago as u64);
    (0..n)
        .map(|i| {
            format!("{{\"timestamp\":\"{day}T{:02}:{:02}:00Z\",\"id\":\"{prefix}-{i}\"}}\n", (i / 60) % 24, i % 60)
        })
        .collect()
}

async fn files(server: &Server, stream: &str) -> u64 {
    let v: Value =
        client().get(server.url(&format!("/api/v1/streams/{stream}"))).send().await.unwrap().json().await.unwrap();
    v["files"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_never_shows_a_missing_or_doubled_row() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ServerSpec::local(dir.path()).env("LOGYARD_COMPACTION_INTERVAL", "0s");
    let server = spec.start();
    // Many small commits over two days.
    for batch in 0..20 {
        let body = day_events(&format!("b{batch}"), batch % 2, 50);
        assert_eq!(ingest(&server, "compacted", body, "?ack=commit").await.0, 200);
    }
    let before = files(&server, "compacted").await;
    assert!(before >= 20, "{before} files");

    // Count in a loop while another process compacts.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let counter = {
        let stop = stop.clone();
        let url = server.url("/api/v1/query");
        tokio::spawn(async move {
            let mut counts = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client()
                    .post(&url)
                    .json(&serde_json::json!({"sql": "SELECT count(*) AS n, count(DISTINCT id) AS d FROM compacted"}))
                    .send()
                    .await
                    .unwrap();
                let v: Value = r.json().await.unwrap();
                counts.push((v["rows"][0]["n"].as_i64().unwrap(), v["rows"][0]["d"].as_i64().unwrap()));
            }
            counts
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let storage = spec.storage.clone();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || cli(&["compact", "--storage", &storage], &[])).await.unwrap();
    assert_eq!(code, 0, "{err}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let counts = counter.await.unwrap();
    assert!(counts.len() >= 3, "{} counts", counts.len());
    assert!(counts.iter().all(|c| *c == (1000, 1000)), "{counts:?}");

    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["compacted"][0]["stream"], "compacted", "{out}");
    assert_eq!(report["compacted"][0]["partitions"].as_array().unwrap().len(), 2, "{out}");
    assert_eq!(files(&server, "compacted").await, 2, "one file per day");
    assert_eq!(count(&server, "SELECT count(*) FROM compacted").await, 1000);
    // Each merged file is sorted by time (read by the deltalake and pyarrow packages).
    let python = program("LOGYARD_TEST_PYTHON", "python3", "scripts/test.sh makes a venv with deltalake and pyarrow");
    let table = std::path::Path::new(&spec.storage).join("tables/compacted");
    let script = "import sys, deltalake, pyarrow.parquet as pq, pyarrow.compute as pc\n\
                  files = deltalake.DeltaTable(sys.argv[1]).file_uris()\n\
                  for f in files:\n\
                  \tt = pq.read_table(f.removeprefix('file://'), columns=['timestamp'])['timestamp']\n\
                  \tassert pc.all(pc.less_equal(t[:-1], t[1:])).as_py(), f\n\
                  print(len(files))\n";
    let out = std::process::Command::new(python).arg("-c").arg(script).arg(&table).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
    // Nothing left to merge: a second run does nothing.
    let (code, out, _) = cli(&["compact", "--storage", &spec.storage], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("\"compacted\": []"), "{out}");
}

#[tokio::test]
async fn retention_drops_exactly_the_old_days_and_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ServerSpec::local(dir.path());
    let server = spec.start();
    for days_ago in [12, 8, 6, 0] {
        let body = day_events(&format!("d{days_ago}"), days_ago, 30);
        assert_eq!(ingest(&server, "kept", body, "?ack=commit").await.0, 200);
    }
    let mut server = server;
    server.terminate(Duration::from_secs(30));

    // Archive bundles for two log days, through an ALB import.
    let source = dir.path().join("alb");
    for days_ago in [9u64, 1] {
        let day = chrono::Utc::now().date_naive() - chrono::Days::new(days_ago);
        let path = source.join(day.format("%Y/%m/%d").to_string()).join(format!("x{days_ago}.log.gz"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, gzip(logyard_bench::alb::lines(10, days_ago).as_bytes())).unwrap();
    }
    let storage = spec.storage.clone();
    let (code, _, err) = cli(&["import", "alb", source.to_str().unwrap(), "--storage", &storage], &[]);
    assert_eq!(code, 0, "{err}");
    let (_, bundles, _) = cli(&["archive", "ls", "--storage", &storage], &[]);
    assert_eq!(bundles.lines().count(), 2, "{bundles}");

    let env = vec![
        ("LOGYARD_RETENTION_DAYS".to_owned(), "7".to_owned()),
        ("LOGYARD_RETENTION_VACUUM_KEEP".to_owned(), "0s".to_owned()),
    ];
    let (code, out, err) = cli(&["retention", "run", "--storage", &storage], &env);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let cutoff = (chrono::Utc::now().date_naive() - chrono::Days::new(7)).to_string();
    let kept = report["streams"].as_array().unwrap().iter().find(|s| s["stream"] == "kept").unwrap();
    assert_eq!(kept["cutoff"], cutoff.as_str());

    let dates = |sql: &str| {
        let (code, out, err) = cli(&["query", "--storage", &storage, "--format", "csv", sql], &[]);
        assert_eq!(code, 0, "{err}");
        out
    };
    let today = chrono::Utc::now().date_naive();
    let day = |n: u64| (today - chrono::Days::new(n)).to_string();
    assert_eq!(
        dates("SELECT DISTINCT CAST(date AS VARCHAR) AS d FROM kept ORDER BY d"),
        format!("d\n{}\n{}\n", day(6), day(0)),
        "the days of 12 and 8 days ago are gone, 6 and 0 are kept"
    );
    assert_eq!(dates("SELECT count(*) AS n FROM kept"), "n\n60\n");
    // Vacuumed: no file of the dropped days is left.
    for gone in [12, 8] {
        let partition = std::path::Path::new(&storage).join(format!("tables/kept/date={}", day(gone)));
        let parquet = std::fs::read_dir(&partition).map(|d| d.count()).unwrap_or(0);
        assert_eq!(parquet, 0, "{}", partition.display());
    }
    // The archive keeps the recent bundle only.
    let (_, bundles, _) = cli(&["archive", "ls", "--storage", &storage], &[]);
    assert_eq!(bundles.lines().count(), 1, "{bundles}");
    assert!(bundles.contains(&format!("date={}", day(1))), "{bundles}");
    // And the audit stream says who dropped what.
    let audit = dates(
        "SELECT actor, action, \"detail.stream\" AS stream, \"detail.cutoff\" AS cutoff FROM \"logyard-audit\" WHERE action = 'retention' ORDER BY stream",
    );
    assert!(audit.contains(&format!("retention,kept,{cutoff}")), "{audit}");
    assert!(audit.contains(&format!("retention,alb,{cutoff}")), "{audit}");
}
