//! Acknowledged means durable: SIGKILL at random moments under load, and SIGTERM under load
//! on the HTTP and the OTLP/gRPC ports at once.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::load::{Load, check_exactly_once};
use common::*;
use rand::Rng;

/// OTLP/gRPC clients that export batches of log records with unique ids (an attribute) to the
/// `crash-grpc` stream and remember which were acknowledged.
fn start_grpc_load(endpoint: String, clients: usize) -> Load {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = (0..clients)
        .map(|c| {
            let (acked, stop, endpoint) = (acked.clone(), stop.clone(), endpoint.clone());
            tokio::spawn(async move {
                let mut client = LogsServiceClient::connect(endpoint).await.expect("the gRPC port answers");
                let mut batch = 0;
                while !stop.load(Ordering::Relaxed) {
                    batch += 1;
                    let ids: Vec<String> = (0..20).map(|i| format!("g-c{c}-b{batch}-{i}")).collect();
                    let records = ids
                        .iter()
                        .map(|id| LogRecord {
                            time_unix_nano: 1_764_064_800_000_000_000,
                            body: Some(AnyValue { value: Some(any_value::Value::StringValue("x".repeat(200))) }),
                            attributes: vec![KeyValue {
                                key: "id".into(),
                                value: Some(AnyValue { value: Some(any_value::Value::StringValue(id.clone())) }),
                                ..Default::default()
                            }],
                            ..Default::default()
                        })
                        .collect();
                    let request = ExportLogsServiceRequest {
                        resource_logs: vec![ResourceLogs {
                            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
                            ..Default::default()
                        }],
                    };
                    let mut request = tonic::Request::new(request);
                    request.metadata_mut().insert("x-logyard-stream", "crash-grpc".parse().unwrap());
                    match client.export(request).await {
                        Ok(answer) if answer.get_ref().partial_success.is_none() => acked.lock().unwrap().extend(ids),
                        // Refused or cut off by the shutdown: not acknowledged.
                        _ => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            })
        })
        .collect();
    Load { acked, stop, tasks }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Small buffers and frequent commits, so kills land between commit and WAL release too;
    // small segments, so segment deletion is exercised.
    let spec = ServerSpec::local(dir.path())
        .env("LOGYARD_INGEST_FLUSH_INTERVAL", "100ms")
        .env("LOGYARD_INGEST_FLUSH_BYTES", "200000")
        .env("LOGYARD_INGEST_WAL_SEGMENT_BYTES", "300000")
        .env("LOGYARD_QUERY_MAX_JSON_ROWS", "10000000");
    let mut acked = Vec::new();
    let mut built_at_request = 0.0;
    let mut rng = rand::rng();
    for round in 0..6 {
        let mut server = spec.start();
        let load = Load::start(server.base.clone(), 4, round);
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        // Requests after a round's first flush has built its rows build theirs as they are read, and those
        // rows die with the process: the replay must bring them back from the WAL.
        built_at_request += metric(&server, "logyard_committed_rows_built_at_request_total", &[]).await.unwrap_or(0.0);
        server.kill9();
        acked.extend(load.stop().await);
    }
    assert!(acked.len() > 1000, "the load sent too little to test anything: {}", acked.len());
    assert!(built_at_request > 0.0, "no request built its rows as it was read: the kills missed that path");
    let server = spec.start();
    check_exactly_once(&server, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_on_http_and_grpc_commits_everything_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let grpc = free_port();
    // A long flush interval: only the shutdown commits.
    let spec = ServerSpec::local(dir.path())
        .env("LOGYARD_INGEST_FLUSH_INTERVAL", "1h")
        .env("LOGYARD_SERVER_SHUTDOWN_GRACE", "20s")
        .env("LOGYARD_OTLP_GRPC_LISTEN", &format!("127.0.0.1:{grpc}"))
        .env("LOGYARD_QUERY_MAX_JSON_ROWS", "10000000");
    let mut server = spec.start();
    let load = Load::start(server.base.clone(), 4, 0);
    let grpc_load = start_grpc_load(format!("http://127.0.0.1:{grpc}"), 2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, took) = server.terminate(Duration::from_secs(30));
    let acked = load.stop().await;
    let grpc_acked = grpc_load.stop().await;
    assert_eq!(code, Some(0), "exit code; logs:\n{}", server.logs());
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(acked.len() > 100 && grpc_acked.len() > 100, "{} over HTTP, {} over gRPC", acked.len(), grpc_acked.len());

    // Read the storage directly: everything acknowledged is committed, once.
    let mut env = spec.env.clone();
    env.push(("LOGYARD_LOG_LEVEL".into(), "error".into()));
    for (table, column, acked) in [("crash", "id", acked), ("\"crash-grpc\"", "\"attributes.id\"", grpc_acked)] {
        let sql = format!("SELECT {column} AS id FROM {table}");
        let (status, out, err) = cli(&["query", "--storage", &spec.storage, "--format", "ndjson", &sql], &env);
        assert_eq!(status, 0, "{err}");
        let ids: Vec<String> = out
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_owned())
            .collect();
        let set: HashSet<_> = ids.iter().cloned().collect();
        assert_eq!(set.len(), ids.len(), "duplicates in {table}");
        let missing = acked.iter().filter(|id| !set.contains(*id)).count();
        assert_eq!(missing, 0, "{missing} of {} acknowledged events were not committed to {table}", acked.len());
    }
}

/// A segment as the write-ahead log wrote it before events carried their flattened values:
/// `u32 length | u32 crc32 | u64 position | u8 name length | name | events`, each event
/// `i64 time | u8 time source | u32 length | JSON`.
fn old_format_segment(stream: &str, records: &[&[(i64, u8, &str)]]) -> Vec<u8> {
    let mut segment = Vec::new();
    for (i, events) in records.iter().enumerate() {
        let mut body = Vec::new();
        body.extend_from_slice(&(i as u64 + 1).to_le_bytes());
        body.push(stream.len() as u8);
        body.extend_from_slice(stream.as_bytes());
        for (time, source, text) in events.iter() {
            body.extend_from_slice(&time.to_le_bytes());
            body.push(*source);
            body.extend_from_slice(&(text.len() as u32).to_le_bytes());
            body.extend_from_slice(text.as_bytes());
        }
        segment.extend_from_slice(&(body.len() as u32).to_le_bytes());
        segment.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        segment.extend_from_slice(&body);
    }
    segment
}

#[tokio::test]
async fn a_write_ahead_log_of_the_previous_format_is_replayed_after_an_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    std::fs::create_dir_all(&wal).unwrap();
    let time = 1_764_583_200_000_000; // 2025-12-01T10:00:00Z
    let segment = old_format_segment(
        "legacy",
        &[
            &[
                // Source 3 is the field "time" (the third time field, plus one).
                (
                    time,
                    3,
                    r#"{"time": "2025-12-01T10:00:00Z", "order_id": "o-1", "status": 200, "http": {"route": "/cart"}}"#,
                ),
                (time + 1, 0, r#"{"order_id": "o-2", "status": "n/a", "tags": ["a", 1], "note": "tab\there"}"#),
            ],
            &[(time + 2, 3, r#"{"time": "2025-12-01T10:00:00.000002Z", "order_id": "o-3", "status": 503}"#)],
        ],
    );
    std::fs::write(wal.join(format!("{:020}.wal", 1)), segment).unwrap();
    let server = ServerSpec::local(dir.path()).start();
    flush(&server).await;
    let got = rows(
        &server,
        r#"SELECT order_id, status, "http.route" AS route, tags, note, CAST(timestamp AS VARCHAR) AS t
           FROM legacy ORDER BY order_id"#,
    )
    .await;
    let got = serde_json::to_string(&got).unwrap();
    assert_eq!(
        got,
        serde_json::json!([
            // A text among the statuses makes the new column text (the schema rule).
            {"order_id": "o-1", "status": "200", "route": "/cart", "tags": null, "note": null, "t": "2025-12-01T10:00:00Z"},
            {"order_id": "o-2", "status": "n/a", "route": null, "tags": "[\"a\", 1]", "note": "tab\there", "t": "2025-12-01T10:00:00.000001Z"},
            {"order_id": "o-3", "status": "503", "route": null, "tags": null, "note": null, "t": "2025-12-01T10:00:00.000002Z"},
        ])
        .to_string()
    );
    // New requests go on after the replayed positions.
    let (status, _) = ingest(&server, "legacy", "{\"order_id\": \"o-4\"}\n", "").await;
    assert_eq!(status, 200);
    flush(&server).await;
    assert_eq!(count(&server, "SELECT count(*) FROM legacy").await, 4);
}

/// A request whose rows were built as it was read (its stream's schema known from a commit)
/// has a record that leaves the values to those rows; the rows die with the process, and the
/// replay reads the events' texts again.
#[tokio::test]
async fn a_request_whose_rows_died_with_the_process_comes_back_whole_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    // Only the explicit flushes commit.
    let spec = ServerSpec::local(dir.path()).env("LOGYARD_INGEST_FLUSH_INTERVAL", "1h");
    let mut server = spec.start();
    let first = r#"{"order_id": "o-1", "status": 200, "note": "plain", "http": {"route": "/cart"}, "ok": true}"#;
    assert_eq!(ingest(&server, "built", format!("{first}\n"), "").await.0, 200);
    flush(&server).await;
    let second =
        r#"{"order_id": "o-2", "status": 503, "note": "tab\there \"quoted\"", "http": {"route": "/pay"}, "ok": false}"#;
    let third = r#"{"order_id": "o-3", "status": 201, "http": {"route": "/cart"}}"#;
    assert_eq!(ingest(&server, "built", format!("{second}\n{third}\n"), "").await.0, 200);
    // The record holds the texts, each after a leaves length of u32::MAX: left out.
    let mut log = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("wal")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wal") {
            log.extend(std::fs::read(path).unwrap());
        }
    }
    for text in [second, third] {
        let mut left_out = vec![0xff; 4];
        left_out.extend_from_slice(text.as_bytes());
        assert!(log.windows(left_out.len()).any(|w| w == left_out), "{text} without its leaves in the log");
    }
    server.kill9();

    let server = spec.start();
    flush(&server).await;
    let got =
        rows(&server, r#"SELECT order_id, status, note, "http.route" AS route, ok FROM built ORDER BY order_id"#).await;
    assert_eq!(
        serde_json::to_string(&got).unwrap(),
        serde_json::json!([
            {"order_id": "o-1", "status": 200, "note": "plain", "route": "/cart", "ok": true},
            {"order_id": "o-2", "status": 503, "note": "tab\there \"quoted\"", "route": "/pay", "ok": false},
            {"order_id": "o-3", "status": 201, "note": null, "route": "/cart", "ok": null},
        ])
        .to_string()
    );
}
