//! `logyard import alb`: ALB access-log files (a local directory and an S3 prefix on s3s-fs)
//! into the `alb` stream with typed columns; bad lines reported with file and line; a second
//! run imports nothing twice; `--since`; the originals archived byte-exact.

mod common;

use std::path::Path;

use common::*;

const PREFIX: &str = "AWSLogs/123456789012/elasticloadbalancing/eu-west-1";

/// Writes ALB log files for two days under `root`; returns (files, good lines) per day.
fn write_logs(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for (day, seed, n) in [("2026/11/24", 1, 300), ("2026/11/25", 2, 500), ("2026/11/25", 3, 200)] {
        let mut text = logyard_bench::alb::lines(n, seed);
        if seed == 3 {
            // One line that is not an access-log entry, between good ones.
            let mut lines: Vec<&str> = text.lines().collect();
            lines.insert(10, "garbage that is not an ALB entry");
            text = lines.join("\n") + "\n";
        }
        let name = format!(
            "{PREFIX}/{day}/123456789012_elasticloadbalancing_eu-west-1_app.shop.50dc6c495c0c9188_{}T0005Z_10.0.1.{seed}_x{seed}.log.gz",
            day.replace('/', "")
        );
        let path = root.join(&name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let gz = gzip(text.as_bytes());
        std::fs::write(&path, &gz).unwrap();
        files.push((name, gz));
    }
    files
}

fn query_local(storage: &str, sql: &str) -> String {
    let (code, out, err) = cli(&["query", "--storage", storage, "--format", "csv", sql], &[]);
    assert_eq!(code, 0, "{sql}: {err}");
    out
}

#[test]
fn alb_logs_import_once_with_typed_columns_and_are_archived() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("bucket");
    let files = write_logs(&source);
    let storage = dir.path().join("data").display().to_string();
    let src = source.join(PREFIX).display().to_string();

    let (code, out, err) = cli(&["import", "alb", &src, "--storage", &storage], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("3 files imported (0 already imported before), 1000 rows, 1 lines rejected"), "{out}");
    assert!(out.contains("x3.log.gz line 11:"), "the bad line is named by file and line: {out}");
    assert_eq!(query_local(&storage, "SELECT count(*) AS n FROM alb"), "n\n1000\n");
    let types = query_local(
        &storage,
        "SELECT arrow_typeof(elb_status_code) AS s, arrow_typeof(received_bytes) AS b, arrow_typeof(target_processing_time) AS t, arrow_typeof(timestamp) AS ts FROM alb LIMIT 1",
    );
    assert_eq!(types, "s,b,t,ts\nInt32,Int64,Float64,\"Timestamp(µs, \"\"UTC\"\")\"\n");
    let by_type = query_local(&storage, "SELECT type, count(*) AS n FROM alb GROUP BY type ORDER BY type");
    for kind in ["h2", "ws", "grpcs", "https"] {
        assert!(by_type.contains(&format!("{kind},")), "{kind} lines: {by_type}");
    }
    let nulls = query_local(
        &storage,
        "SELECT count(*) FILTER (WHERE target_ip IS NULL) > 0 AS no_target, count(*) FILTER (WHERE request_processing_time IS NULL) > 0 AS no_timing FROM alb",
    );
    assert_eq!(nulls, "no_target,no_timing\ntrue,true\n");

    // Again: nothing twice.
    let (code, out, err) = cli(&["import", "alb", &src, "--storage", &storage], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("0 files imported (3 already imported before), 0 rows"), "{out}");
    assert_eq!(query_local(&storage, "SELECT count(*) AS n FROM alb"), "n\n1000\n");

    // The originals, byte-exact in the archive.
    let (code, out, _) = cli(&["archive", "ls", "--stream", "alb", "--storage", &storage], &[]);
    assert_eq!(code, 0);
    let bundles: Vec<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(bundles.len(), 2, "a bundle per log day: {out}");
    let (name, gz) = &files[2];
    // Members are named by their key under the source.
    let name = name.strip_prefix(&format!("{PREFIX}/")).unwrap();
    let bundle = bundles.iter().find(|b| b.contains("date=2026-11-25")).unwrap();
    let got = dir.path().join("got");
    let (code, _, err) =
        cli(&["archive", "get", bundle, name, "-o", got.to_str().unwrap(), "--storage", &storage], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(&std::fs::read(&got).unwrap(), gz);
}

#[test]
fn since_leaves_older_days_alone_and_s3_sources_work() {
    let s3 = S3::start();
    let bucket = s3.bucket("alb-logs");
    write_logs(&s3.root.path().join(&bucket));
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data").display().to_string();
    let src = format!("s3://{bucket}/{PREFIX}/");
    let (code, out, err) = cli(&["import", "alb", &src, "--since", "2026-11-25", "--storage", &storage], &s3.env());
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("2 files imported (0 already imported before), 700 rows, 1 lines rejected"), "{out}");
    assert_eq!(query_local(&storage, "SELECT count(*) AS n FROM alb"), "n\n700\n");
    let (code, out, err) = cli(&["import", "alb", &src, "--storage", &storage], &s3.env());
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("1 files imported (2 already imported before), 300 rows"), "{out}");
}

#[test]
fn follow_imports_files_as_they_arrive_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("bucket");
    let day = source.join("2026/11/25");
    std::fs::create_dir_all(&day).unwrap();
    std::fs::write(day.join("a.log.gz"), gzip(logyard_bench::alb::lines(100, 1).as_bytes())).unwrap();
    let storage = dir.path().join("data").display().to_string();
    let mut child = std::process::Command::new(BIN)
        .args(["import", "alb", source.to_str().unwrap(), "--follow", "--interval", "200ms", "--storage", &storage])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rows = || {
        let (code, out, _) =
            cli(&["query", "--storage", &storage, "--format", "csv", "SELECT count(*) AS n FROM alb"], &[]);
        if code == 0 { out.lines().nth(1).and_then(|l| l.parse::<u64>().ok()).unwrap_or(0) } else { 0 }
    };
    let wait_for = |n: u64| {
        let started = std::time::Instant::now();
        while rows() != n {
            assert!(started.elapsed() < std::time::Duration::from_secs(60), "never reached {n} rows");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait_for(100);
    // A file that arrives later is picked up by the next pass.
    std::fs::write(day.join("b.log.gz"), gzip(logyard_bench::alb::lines(50, 2).as_bytes())).unwrap();
    wait_for(150);
    signal(child.id() as i32, "INT");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
