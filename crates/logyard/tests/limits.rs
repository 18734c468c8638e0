//! Limits and backpressure: 429 and 503 with Retry-After, the write-ahead log budget, and
//! object-store failures that nothing acknowledged survives lost or doubled.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::proxy::Fault;
use common::*;
use serde_json::Value;

/// Each row (id, status, latency_ms) holds the values [`events`] gave the event of its id.
fn assert_values_of_events(rows: &[Value]) {
    for row in rows {
        let i: u64 = row["id"].as_str().unwrap().rsplit('-').next().unwrap().parse().unwrap();
        assert_eq!(row["status"], if i.is_multiple_of(50) { 500 } else { 200 }, "{row}");
        assert_eq!(row["latency_ms"], (i % 300) as f64 + 0.5, "{row}");
    }
}

async fn post(server: &Server, body: String) -> (u16, Option<String>, Value) {
    let r = client()
        .post(server.url("/api/v1/streams/lim/events"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (status, retry, r.json().await.unwrap())
}

#[tokio::test]
async fn request_and_byte_rates_answer_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path()).env("LOGYARD_LIMITS_REQUESTS_PER_SECOND", "3").start();
    let mut limited = None;
    for i in 0..10 {
        let (status, retry, body) = post(&server, events(&format!("r{i}"), 1)).await;
        if status == 429 {
            limited = Some((retry, body));
            break;
        }
        assert_eq!(status, 200);
    }
    let (retry, body) = limited.expect("the fourth request in a second is refused");
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(body["error"]["code"], "rate_limited");
    let metrics = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("logyard_limited_requests_total{reason=\"request_rate\"}"), "{metrics}");

    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path())
        .env("LOGYARD_LIMITS_BYTES_PER_SECOND", "100000")
        .env("LOGYARD_SERVER_MAX_BODY_BYTES", "200000")
        .start();
    let big = events("b", 1500); // about 150 KB
    assert!(big.len() > 100_000 && big.len() < 200_000);
    assert_eq!(post(&server, big.clone()).await.0, 200);
    let (status, retry, body) = post(&server, big).await;
    assert_eq!(status, 429, "{body}");
    assert!(retry.is_some());
    assert!(body["error"]["message"].as_str().unwrap().contains("bytes per second"));
}

#[tokio::test]
async fn concurrent_queries_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path())
        .env("LOGYARD_LIMITS_MAX_CONCURRENT_QUERIES", "1")
        .env("LOGYARD_QUERY_TIMEOUT", "3s")
        .start();
    let slow = query(&server, "SELECT sum(v) FROM generate_series(1, 100000000000) AS t(v)");
    let second = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = client()
            .post(server.url("/api/v1/query"))
            .json(&serde_json::json!({"sql": "SELECT 1"}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.headers().get("retry-after").is_some(), r.json::<Value>().await.unwrap())
    };
    let ((slow_status, _), (status, has_retry, body)) = tokio::join!(slow, second);
    assert_eq!(slow_status, 504, "the slow query ends at its time limit");
    assert_eq!((status, has_retry), (503, true), "{body}");
    assert_eq!(body["error"]["code"], "too_many_queries");
    assert_eq!(count(&server, "SELECT count(*) FROM generate_series(1, 3)").await, 3, "the slot is free again");
}

#[tokio::test]
async fn backpressure_refuses_ingest_until_the_flusher_catches_up_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path())
        .env("LOGYARD_INGEST_WAL_BUDGET_BYTES", "400000")
        .env("LOGYARD_INGEST_WAL_SEGMENT_BYTES", "100000")
        .env("LOGYARD_INGEST_FLUSH_INTERVAL", "3s")
        .env("LOGYARD_INGEST_FLUSH_BYTES", "100000000")
        .env("LOGYARD_QUERY_MAX_JSON_ROWS", "1000000")
        .start();
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..100 {
        let (status, retry, body) = post(&server, events(&format!("p{i}"), 200)).await;
        match status {
            200 => acked.push(i),
            503 => {
                refused = Some((retry, body));
                break;
            }
            other => panic!("{other}: {body}"),
        }
    }
    let (retry, body) = refused.expect("ingest is refused once the WAL passes its budget");
    assert_eq!(body["error"]["code"], "backpressure", "{body}");
    assert!(retry.is_some());
    let ready = client().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["backlog"]["ok"], false, "{ready}");
    let gauge = async || -> String {
        let metrics = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
        metrics.lines().find(|l| l.starts_with("logyard_backpressure ")).unwrap_or_default().to_owned()
    };
    assert_eq!(gauge().await, "logyard_backpressure 1");

    // The flusher commits, the WAL shrinks, and the server is ready again by itself.
    let started = Instant::now();
    while client().get(server.url("/readyz")).send().await.unwrap().status().as_u16() != 200 {
        assert!(started.elapsed() < Duration::from_secs(30), "not ready again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(gauge().await, "logyard_backpressure 0");
    let (status, _, _) = post(&server, events("after", 200)).await;
    assert_eq!(status, 200);
    flush(&server).await;
    let expected: usize = acked.len() * 200 + 200;
    assert_eq!(count(&server, "SELECT count(*) FROM lim").await as usize, expected);
    assert_eq!(count(&server, "SELECT count(DISTINCT id) FROM lim").await as usize, expected);
}

#[tokio::test]
async fn object_store_failures_are_retried_and_nothing_is_lost_or_doubled() {
    let s3 = S3::start();
    let bucket = s3.bucket("faults");
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ServerSpec::on_s3(&s3, format!("s3://{bucket}/p"), dir.path().join("wal"));
    spec.env.push(("LOGYARD_QUERY_MAX_JSON_ROWS".into(), "1000000".into()));
    let server = spec.start();
    let mut acked = HashSet::new();
    let mut batch = 0;
    let mut send = async |n: usize, acked: &mut HashSet<String>| {
        for _ in 0..n {
            batch += 1;
            let body = events(&format!("f{batch}"), 20);
            let (status, _, r) = post(&server, body).await;
            assert_eq!(status, 200, "ingest keeps acknowledging into the WAL: {r}");
            for i in 0..20 {
                acked.insert(format!("f{batch}-{i}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    send(5, &mut acked).await;
    // A first commit while the store answers: the requests after it build their rows as they
    // are read, so the failures below meet rows held in memory, not only events.
    assert_eq!(client().post(server.url("/api/v1/flush")).send().await.unwrap().status().as_u16(), 200);
    for fault in [Fault::SlowDown, Fault::InternalError, Fault::Delay, Fault::Reset] {
        s3.faults.set(fault);
        send(20, &mut acked).await;
        // A forced flush reaches the store during each failure, whatever the flusher's backoff.
        if fault != Fault::Delay {
            let _ = client().post(server.url("/api/v1/flush")).send().await.unwrap();
        }
    }
    s3.faults.set(Fault::None);
    send(5, &mut acked).await;

    // Everything acknowledged gets committed once the store answers again.
    let started = Instant::now();
    loop {
        let r = client().post(server.url("/api/v1/flush")).send().await.unwrap();
        if r.status().as_u16() == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "flush never succeeded: {}", r.text().await.unwrap());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let found = rows(&server, "SELECT id, status, latency_ms FROM lim").await;
    let ids: Vec<String> = found.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    let unique: HashSet<_> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "duplicates");
    assert_eq!(unique, acked);
    // Every value of every event, whether its rows were built at its request or at the flush.
    assert_values_of_events(&found);
    let built = metric(&server, "logyard_committed_rows_built_at_request_total", &[]).await.unwrap_or(0.0);
    assert_eq!(built as usize, acked.len() - 5 * 20, "every request after the first commit brought its rows");
    let metrics = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("logyard_flush_errors_total"), "{metrics}");
    let flush_errors: f64 = metrics
        .lines()
        .find(|l| l.starts_with("logyard_flush_errors_total"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .parse()
        .unwrap();
    assert!(flush_errors > 0.0, "the failures were seen and retried");
    assert!(server.logs().contains("flush failed"), "and logged");
    // Each failed S3 attempt is counted by kind: 503 SlowDown, 500, and reset connections.
    let failures = |kind: &str| -> f64 {
        let prefix = format!("logyard_object_store_http_failures_total{{kind=\"{kind}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map_or(0.0, |v| v.parse().unwrap())
    };
    assert!(failures("throttled") > 0.0, "{metrics}");
    assert!(failures("server_error") > 0.0, "{metrics}");
    assert!(failures("request") + failures("connect") + failures("interrupted") > 0.0, "{metrics}");
}

/// A stream's first flush publishes the schema it built before it commits: the requests that
/// come while a slow store takes the commit build their rows as they are read.
#[tokio::test]
async fn requests_during_a_slow_first_commit_build_their_rows_as_they_are_read() {
    let s3 = S3::start();
    let bucket = s3.bucket("slow");
    let dir = tempfile::tempdir().unwrap();
    let spec = ServerSpec::on_s3(&s3, format!("s3://{bucket}/p"), dir.path().join("wal"));
    let server = spec.start();
    assert_eq!(post(&server, events("first", 20)).await.0, 200);
    // Every request to the store now answers after 3 s.
    s3.faults.set(Fault::Delay);
    let url = server.url("/api/v1/flush");
    let flush = tokio::spawn(async move { client().post(url).send().await.unwrap().status().as_u16() });
    let started = Instant::now();
    while metric(&server, "logyard_flush_build_duration_seconds_count", &[]).await.unwrap_or(0.0) < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(60), "the first flush never built its rows");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..5 {
        assert_eq!(post(&server, events(&format!("during{i}"), 20)).await.0, 200);
    }
    assert!(!flush.is_finished(), "the first commit was not slow enough to send requests during it");
    s3.faults.set(Fault::None);
    assert_eq!(flush.await.unwrap(), 200);
    assert_eq!(client().post(server.url("/api/v1/flush")).send().await.unwrap().status().as_u16(), 200);

    let found = rows(&server, "SELECT id, status, latency_ms FROM lim ORDER BY id").await;
    assert_eq!(found.len(), 120);
    assert_values_of_events(&found);
    // The first request's rows were built at the flush (no schema yet); the five after its
    // build, as they were read.
    let built = metric(&server, "logyard_committed_rows_built_at_request_total", &[]).await;
    assert_eq!(built, Some(100.0));
}
