//! The HTTP API end to end against a `logyard serve` process on the local filesystem, and
//! the same suite against S3 (s3s-fs with signature checks) in `s3.rs`.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn local_filesystem_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    suite::roundtrip(ServerSpec::local(dir.path())).await;
}

#[tokio::test]
async fn bad_input_is_rejected_alone_and_the_rest_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path()).env("LOGYARD_QUERY_TIMEOUT", "1s").start();

    // A malformed line among good ones: 200, the line reported, the good ones kept.
    let body = "{\"id\":\"ok-1\"}\n{\"id\": oops}\n[1,2]\n{\"id\":\"ok-2\"}\n\"text\"\n";
    let (status, r) = ingest(&server, "bad", body, "?ack=commit").await;
    assert_eq!(status, 200, "{r}");
    assert_eq!((r["accepted"].as_u64(), r["rejected"].as_u64()), (Some(2), Some(3)));
    let lines: Vec<_> = r["errors"].as_array().unwrap().iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [2, 3, 5]);
    assert!(r["errors"][1]["message"].as_str().unwrap().contains("must be a JSON object, got an array"));

    // Invalid UTF-8 and an oversized line are rejected alone too.
    let mut body = b"{\"id\":\"ok-3\"}\n{\"id\":\"\xff\xfe\"}\n".to_vec();
    body.extend_from_slice(format!("{{\"id\":\"{}\"}}\n", "x".repeat(1_100_000)).as_bytes());
    body.extend_from_slice(b"{\"id\":\"ok-4\"}\n");
    let (status, r) = ingest(&server, "bad", body, "?ack=commit").await;
    assert_eq!(status, 200, "{r}");
    assert_eq!((r["accepted"].as_u64(), r["rejected"].as_u64()), (Some(2), Some(2)));
    assert!(r["errors"][0]["message"].as_str().unwrap().contains("invalid UTF-8"), "{r}");
    assert!(r["errors"][1]["message"].as_str().unwrap().contains("longer than the limit"), "{r}");
    assert_eq!(r["errors"][1]["line"], 3);
    let ids = rows(&server, "SELECT id FROM bad ORDER BY id").await;
    assert_eq!(ids, vec![json!({"id": "ok-1"}), json!({"id": "ok-2"}), json!({"id": "ok-3"}), json!({"id": "ok-4"})]);

    // Every line bad: 400 with the same shape and an error member.
    let (status, r) = ingest(&server, "bad", "nope\n{\n", "").await;
    assert_eq!(status, 400);
    assert_eq!((r["accepted"].as_u64(), r["rejected"].as_u64()), (Some(0), Some(2)));
    assert_eq!(r["error"]["code"], "no_valid_events");

    // A bad time value names the field.
    let (status, r) = ingest(&server, "bad", "{\"timestamp\":\"yesterday\"}\n", "").await;
    assert_eq!(status, 400);
    assert!(r["errors"][0]["message"].as_str().unwrap().contains("field `timestamp`"), "{r}");

    // A gzip bomb: 413, and it stops early (the body is 250 KB, the output would be 256 MiB).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![b' '; 1 << 20];
    for _ in 0..256 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    let started = std::time::Instant::now();
    let r = client()
        .post(server.url("/api/v1/streams/bad/events"))
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["error"]["code"], "payload_too_large");
    assert!(r["error"]["message"].as_str().unwrap().contains("decompressed body"), "{r}");
    assert!(started.elapsed().as_secs() < 20);

    // A body over the limit as sent.
    let big = "a".repeat((16 << 20) + 1);
    let (status, r) = ingest(&server, "bad", big, "").await;
    assert_eq!(status, 413, "{r}");

    // Wrong content type and encoding: 415 naming what is accepted.
    let r = client()
        .post(server.url("/api/v1/streams/bad/events"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let r: Value = r.json().await.unwrap();
    assert!(r["error"]["message"].as_str().unwrap().contains("application/x-ndjson"), "{r}");
    let r = client()
        .post(server.url("/api/v1/streams/bad/events"))
        .header("content-encoding", "br")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);

    // A bad stream name.
    for name in ["Bad", "a.b", "-x", &"a".repeat(64)] {
        let (status, r) = ingest(&server, name, "{}\n", "").await;
        assert_eq!(status, 400, "{name}: {r}");
        assert_eq!(r["error"]["code"], "invalid_stream", "{name}");
    }

    // Writes in SQL.
    for sql in [
        "INSERT INTO bad VALUES (1)",
        "CREATE TABLE t AS SELECT 1",
        "DROP TABLE bad",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "SET datafusion.execution.batch_size = 1",
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
        "SELECT 1; DROP TABLE bad",
        "EXPLAIN INSERT INTO bad VALUES (1)",
    ] {
        let (status, r) = query(&server, sql).await;
        assert_eq!(status, 400, "{sql}: {r}");
        let code = r["error"]["code"].as_str().unwrap();
        assert!(code == "read_only" || code == "invalid_sql", "{sql}: {r}");
        if !sql.contains(';') {
            assert_eq!(code, "read_only", "{sql}: {r}");
            assert!(r["error"]["message"].as_str().unwrap().contains("only SELECT"), "{sql}: {r}");
        }
    }
    // Unknown tables and bad SQL are the client's error.
    let (status, r) = query(&server, "SELECT * FROM nosuchstream").await;
    assert_eq!((status, r["error"]["code"].as_str()), (400, Some("invalid_sql")), "{r}");
    let (status, r) = query(&server, "SELEC 1").await;
    assert_eq!(status, 400, "{r}");

    // A query over its time limit stops with a clear error; the server stays up.
    let started = std::time::Instant::now();
    let (status, r) = query(&server, "SELECT sum(v) FROM generate_series(1, 100000000000) AS t(v)").await;
    assert_eq!(status, 504, "the server gave up, not the client's mistake: {r}");
    assert_eq!(r["error"]["code"], "query_timeout");
    assert!(r["error"]["message"].as_str().unwrap().contains("time limit of 1s"), "{r}");
    assert!(started.elapsed().as_secs() < 10);
    assert_eq!(count(&server, "SELECT count(*) FROM bad").await, 4);

    // Unknown routes and malformed query requests are JSON errors too.
    let r = client().get(server.url("/api/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "not_found");
    let r = client().post(server.url("/api/v1/query")).body("{\"sq\": 1}").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "invalid_request");
}

#[tokio::test]
async fn the_memory_limit_stops_a_query_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path()).env("LOGYARD_QUERY_MEMORY_LIMIT", "20000000").start();
    let (status, r) = query(
        &server,
        "SELECT v % 3000000 AS k, count(*) FROM generate_series(1, 6000000) AS t(v) GROUP BY 1 ORDER BY 2 DESC",
    )
    .await;
    assert_eq!(status, 422, "{r}");
    assert_eq!(r["error"]["code"], "query_memory_limit", "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(message.contains("its limit of 20000000 bytes (query.memory_limit)"), "the limit is named: {r}");
    assert_eq!(count(&server, "SELECT count(*) FROM generate_series(1, 10)").await, 10);
}

#[tokio::test]
async fn schema_evolves_and_conflicting_values_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path()).start();
    let first = "{\"id\":\"1\",\"status\":200,\"user\":{\"tier\":\"gold\"}}\n";
    assert_eq!(ingest(&server, "evo", first, "?ack=commit").await.0, 200);
    let second = "{\"id\":\"2\",\"status\":\"timeout\",\"region\":\"eu\",\"user\":{\"tier\":\"silver\",\"age\":30},\"tags\":[\"a\",\"b\"]}\n";
    assert_eq!(ingest(&server, "evo", second, "?ack=commit").await.0, 200);
    let third = "{\"id\":\"3\",\"status\":503}\n";
    assert_eq!(ingest(&server, "evo", third, "?ack=commit").await.0, 200);

    let got =
        rows(&server, "SELECT id, status, region, \"user.tier\", \"user.age\", tags, _conflicts FROM evo ORDER BY id")
            .await;
    assert_eq!(
        got,
        vec![
            json!({"id": "1", "status": 200, "region": null, "user.tier": "gold", "user.age": null, "tags": null, "_conflicts": null}),
            json!({"id": "2", "status": null, "region": "eu", "user.tier": "silver", "user.age": 30, "tags": "[\"a\",\"b\"]", "_conflicts": "{\"status\":\"timeout\"}"}),
            json!({"id": "3", "status": 503, "region": null, "user.tier": null, "user.age": null, "tags": null, "_conflicts": null}),
        ]
    );
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path()).start();
    let r = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = client().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["checks"]["storage"]["ok"], true);
    assert_eq!(body["checks"]["wal"]["ok"], true);
    // Transparent huge pages are off for the process (BENCHMARKS.md: they cost more in page
    // clearing than they save).
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    assert!(status.contains("THP_enabled:\t0"), "{status}");

    ingest(&server, "m", events("m", 10), "?ack=commit").await;
    ingest(&server, "m", "bad\n{}\n", "").await;
    query(&server, "SELECT count(*) FROM m").await;
    query(&server, "SELECT nope FROM m").await;
    let text = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for needle in [
        "logyard_ingested_events_total{stream=\"m\",protocol=\"ndjson\"} 11",
        "logyard_rejected_events_total{stream=\"m\",protocol=\"ndjson\"} 1",
        "logyard_wal_bytes ",
        "logyard_flush_duration_seconds_count",
        "logyard_query_duration_seconds_count 2",
        "logyard_queries_total{outcome=\"error\"} 1",
        "logyard_object_store_requests_total{operation=\"put\"}",
        "logyard_http_requests_total{route=\"/api/v1/streams/{stream}/events\",method=\"POST\",status=\"200\"} 2",
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }

    // A WAL directory that cannot be written makes the server not ready (a file in its
    // place fails even for root), and ready again once it is back.
    let wal = server.wal_dir.clone();
    let moved = wal.with_extension("moved");
    std::fs::rename(&wal, &moved).unwrap();
    std::fs::write(&wal, b"not a directory").unwrap();
    let r = client().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["checks"]["wal"]["ok"], false, "{body}");
    std::fs::remove_file(&wal).unwrap();
    std::fs::rename(&moved, &wal).unwrap();
    let r = client().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn json_results_stop_at_the_row_limit_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path()).env("LOGYARD_QUERY_MAX_JSON_ROWS", "50").start();
    let (status, body) = query(&server, "SELECT v FROM generate_series(1, 120) AS t(v) ORDER BY v").await;
    assert_eq!(status, 200);
    assert_eq!(body["rows"].as_array().unwrap().len(), 50);
    assert_eq!((body["truncated"].as_bool(), body["row_limit"].as_u64()), (Some(true), Some(50)));
    assert_eq!(body["rows"][49]["v"], 50);
    let (_, body) = query(&server, "SELECT v FROM generate_series(1, 50) AS t(v)").await;
    assert_eq!((body["rows"].as_array().unwrap().len(), body["truncated"].as_bool()), (50, Some(false)));
    // Other formats are not limited.
    let r = client()
        .post(server.url("/api/v1/query"))
        .json(&json!({"sql": "SELECT v FROM generate_series(1, 120) AS t(v)", "format": "ndjson"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap().lines().count(), 120);
}

#[tokio::test]
async fn the_cli_queries_a_server_and_prints_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path()).start();
    ingest(&server, "cli", events("t", 3), "?ack=commit").await;
    let (code, out, err) = cli(&["query", "--server", &server.base, "SELECT id, status FROM cli ORDER BY id"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("| id  | status |"), "{out}");
    assert!(out.contains("| t-0 | 500    |"), "{out}");
    assert!(out.trim_end().ends_with("(3 rows)"), "{out}");
    let (code, _, err) = cli(&["query", "--server", &server.base, "DROP TABLE cli"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("only SELECT"), "{err}");
}

#[tokio::test]
async fn memory_storage_serves_too() {
    let dir = tempfile::tempdir().unwrap();
    let spec =
        ServerSpec { listen: None, storage: "memory://".into(), wal_dir: dir.path().join("wal"), env: Vec::new() };
    let server = spec.start();
    assert_eq!(ingest(&server, "mem", events("m", 7), "?ack=commit").await.0, 200);
    assert_eq!(count(&server, "SELECT count(*) FROM mem").await, 7);
}

#[test]
fn an_invalid_setting_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data");
    let env = [("LOGYARD_INGEST_FLUSH_BYTES".to_owned(), "lots".to_owned())];
    let (code, _, err) = cli(&["serve", "--listen", "127.0.0.1:0", "--storage", storage.to_str().unwrap()], &env);
    assert_ne!(code, 0);
    assert!(err.contains("ingest.flush_bytes"), "{err}");
    let config = dir.path().join("logyard.toml");
    std::fs::write(&config, "[query]\ntimeout = \"soon\"\n").unwrap();
    let (code, _, err) =
        cli(&["serve", "--config", config.to_str().unwrap(), "--storage", storage.to_str().unwrap()], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("query.timeout"), "{err}");
}

/// A flush is encoded into one file per core allowed (`tables.encode_threads`), at once,
/// each at least half a row group, all in one commit; every row lands once.
#[tokio::test]
async fn a_flush_is_encoded_into_files_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path())
        .env("LOGYARD_TABLES_ROW_GROUP_ROWS", "100")
        .env("LOGYARD_TABLES_ENCODE_THREADS", "2")
        .start();
    let all = events("busy", 1100);
    let lines: Vec<&str> = all.lines().collect();
    // The first commit creates the table (delta-rs's writer, one file); then 1,000 rows
    // (two files of 500) and 60 (under two half row groups: one file).
    for request in [&lines[..40], &lines[40..1040], &lines[1040..]] {
        let body = request.iter().map(|l| format!("{l}\n")).collect::<String>();
        assert_eq!(ingest(&server, "busy", body, "?ack=commit").await.0, 200);
    }
    assert_eq!(count(&server, "SELECT count(DISTINCT id) FROM busy").await, 1100);
    let log = dir.path().join("data/tables/busy/_delta_log");
    let mut rows_per_file = Vec::new();
    for version in 0.. {
        let Ok(commit) = std::fs::read_to_string(log.join(format!("{version:020}.json"))) else { break };
        let adds = commit.lines().filter_map(|l| serde_json::from_str::<Value>(l).unwrap().get("add").cloned());
        let rows = adds.map(|add| {
            let stats: Value = serde_json::from_str(add["stats"].as_str().unwrap()).unwrap();
            stats["numRecords"].as_i64().unwrap()
        });
        rows_per_file.push(rows.collect::<Vec<_>>());
    }
    assert_eq!(rows_per_file, vec![vec![40], vec![500, 500], vec![60]], "rows of each commit's files");
}

/// A stream this process has not committed is committed once a sixteenth of a flush step is
/// held, without waiting for the step or the interval: its schema is then known, and the
/// requests after it build their rows as they are read (none of them parsed again at the
/// flush). Later requests wait for the whole step as before.
#[tokio::test]
async fn a_new_stream_is_committed_early_and_later_requests_bring_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path())
        .env("LOGYARD_INGEST_FLUSH_BYTES", "320000")
        .env("LOGYARD_INGEST_FLUSH_INTERVAL", "1h")
        .start();
    let built = || metric(&server, "logyard_committed_rows_built_at_request_total", &[]);
    // Rows of a stream's table; 0 while it has none.
    let committed = async |stream: &str| match query(&server, &format!("SELECT count(*) AS n FROM {stream}")).await {
        (200, body) => body["rows"][0]["n"].as_i64().unwrap(),
        (_, body) => {
            assert!(body.to_string().contains("not found"), "{body}");
            0
        }
    };
    // 200 events, about 27 KB: over a sixteenth of the step (20 KB).
    assert_eq!(ingest(&server, "early", events("a", 200), "").await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while committed("early").await < 200 {
        assert!(Instant::now() < deadline, "the first 200 events were not committed without a flush");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(built().await, Some(0.0), "the first request came before the stream's schema was known");
    // A small stream stays buffered.
    assert_eq!(ingest(&server, "small", events("s", 10), "").await.0, 200);
    // The next 200 stay buffered until the step is full or a flush is asked for.
    assert_eq!(ingest(&server, "early", events("b", 200), "").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(committed("early").await, 200);
    assert_eq!(committed("small").await, 0, "the small stream is not committed before its step");
    flush(&server).await;
    assert_eq!(count(&server, "SELECT count(DISTINCT id) FROM early").await, 400);
    assert_eq!(built().await, Some(200.0), "the second request's rows were built as it was read");
}
