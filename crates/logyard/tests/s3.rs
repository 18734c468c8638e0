//! Against a real S3-protocol server on loopback that checks SigV4 signatures (s3s-fs).

mod common;

use common::*;

fn s3_spec(s3: &S3, dir: &std::path::Path, bucket: &str, prefix: &str, wal: &str) -> ServerSpec {
    let mut spec = ServerSpec {
        listen: None,
        storage: format!("s3://{bucket}/{prefix}"),
        wal_dir: dir.join(wal),
        env: Vec::new(),
    };
    spec.env = s3.env();
    spec
}

#[tokio::test]
async fn s3_roundtrip_with_signatures_checked() {
    let s3 = S3::start();
    let bucket = s3.bucket("logyard-test");
    let dir = tempfile::tempdir().unwrap();
    suite::roundtrip(s3_spec(&s3, dir.path(), &bucket, "prod/eu", "wal")).await;
    // The layout under the prefix.
    let table = s3.root.path().join("logyard-test/prod/eu/tables/storefront/_delta_log");
    assert!(table.join("00000000000000000000.json").exists(), "{}", table.display());
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_server_and_reported() {
    let s3 = S3::start();
    let bucket = s3.bucket("logyard-test");
    let dir = tempfile::tempdir().unwrap();
    let mut spec = s3_spec(&s3, dir.path(), &bucket, "p", "wal");
    for (k, v) in spec.env.iter_mut() {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = "not-the-secret".into();
        }
    }
    let server = spec.start();
    let r = client().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    let error = body["checks"]["storage"]["error"].as_str().unwrap();
    assert!(error.contains("403") || error.contains("Forbidden") || error.contains("Signature"), "{body}");
    // Ingest is still acknowledged (the events wait in the WAL), and nothing reaches S3.
    let (status, _) = ingest(&server, "s", events("x", 3), "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn two_writers_on_one_prefix_add_up() {
    let s3 = S3::start();
    let bucket = s3.bucket("shared");
    let dir = tempfile::tempdir().unwrap();
    let a = s3_spec(&s3, dir.path(), &bucket, "logs", "wal-a").start();
    let b = s3_spec(&s3, dir.path(), &bucket, "logs", "wal-b").start();
    let (per_writer, batch) = (20, 50);
    tokio::join!(write_batches(&a, "a", per_writer, batch), write_batches(&b, "b", per_writer, batch));
    let total = (2 * per_writer * batch) as i64;
    assert_eq!(count(&a, "SELECT count(*) FROM shared").await, total);
    assert_eq!(count(&b, "SELECT count(DISTINCT id) FROM shared").await, total);
    // Whichever writer fixed the type of `code` first, no value was lost: as text, every
    // value fits; as a number, the text values are kept in `_conflicts`.
    let info: serde_json::Value =
        client().get(a.url("/api/v1/streams/shared")).send().await.unwrap().json().await.unwrap();
    let code_type = info["schema"].as_array().unwrap().iter().find(|c| c["name"] == "code").unwrap()["type"].clone();
    let sql = if code_type == "Utf8" {
        "SELECT count(*) FROM shared WHERE code IS NOT NULL"
    } else {
        "SELECT count(*) FROM shared WHERE code IS NOT NULL OR _conflicts LIKE '%\"code\"%'"
    };
    assert_eq!(count(&a, sql).await, total, "{code_type}");
}

/// Commits `batches` requests of `batch` events; writer `a` sends `code` as a number and
/// writer `b` as text, so their schema changes race each other too.
async fn write_batches(server: &Server, name: &str, batches: usize, batch: usize) {
    for i in 0..batches {
        let mut body = String::new();
        for j in 0..batch {
            let code = if name == "a" { format!("{j}") } else { format!("\"c{j}\"") };
            body.push_str(&format!("{{\"id\":\"{name}-{i}-{j}\",\"code\":{code}}}\n"));
        }
        let (status, r) = ingest(server, "shared", body, "?ack=commit").await;
        assert_eq!(status, 200, "{r}");
    }
}

/// With `ack=commit` every request is a commit; before each one the flusher needs its writer's
/// transaction version, which delta-rs finds by reading every commit since the last
/// checkpoint. logyard keeps it and reads only the commits since its last look, so on S3 a
/// commit costs the same reads at the 30th as at the 5th.
#[tokio::test]
async fn a_commit_reads_the_same_on_s3_however_long_the_log() {
    let s3 = S3::start();
    let bucket = s3.bucket("grow");
    let dir = tempfile::tempdir().unwrap();
    let server = s3_spec(&s3, dir.path(), &bucket, "p", "wal").start();
    let mut log_reads = Vec::new();
    for i in 0..30 {
        let before = s3.faults.requests().len();
        let (status, _) = ingest(&server, "grow", events(&format!("g{i}"), 2), "?ack=commit").await;
        assert_eq!(status, 200);
        let reads = s3.faults.requests()[before..]
            .iter()
            .filter(|r| r.starts_with("GET ") && r.contains("/tables/grow/_delta_log/") && r.ends_with(".json"))
            .count();
        log_reads.push(reads);
    }
    assert_eq!(count(&server, "SELECT count(*) FROM grow").await, 60);
    assert!(log_reads[29] <= log_reads[4] && log_reads[29] <= 4, "commit-log GETs per commit: {log_reads:?}");
}
