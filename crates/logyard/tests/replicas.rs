//! Several `logyard serve` replicas sharing one bucket (s3s-fs, signatures checked) behind a
//! round-robin balancer, as a StatefulSet behind the ALB: every acknowledged event is
//! committed once whatever happens to one replica (kill -9 and a restart with its write-ahead
//! log; SIGTERM, as at a SPOT interruption), and compaction runs on one replica at a time.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::balancer::Balancer;
use common::load::{Load, check_exactly_once};
use common::*;
use serde_json::Value;

fn replica_spec(s3: &S3, bucket: &str, dir: &Path, replica: usize) -> ServerSpec {
    let mut spec = ServerSpec::on_s3(
        s3,
        format!("s3://{bucket}/shop"),
        // A directory per replica: its write-ahead log (and writer id) and its server log.
        dir.join(format!("replica-{replica}/wal")),
    );
    spec.env.extend(
        [
            ("LOGYARD_INGEST_FLUSH_INTERVAL", "200ms"),
            ("LOGYARD_COMPACTION_INTERVAL", "3s"),
            ("LOGYARD_SERVER_JOB_LEASE", "10s"),
            ("LOGYARD_SERVER_DRAIN_DELAY", "2s"),
            ("LOGYARD_QUERY_MAX_JSON_ROWS", "10000000"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    spec
}

fn writer_id(server: &Server) -> String {
    std::fs::read_to_string(server.wal_dir.join("writer-id")).unwrap().trim().to_owned()
}

/// The table's commits of an operation: (commit info, file name).
fn commits(s3: &S3, bucket: &str, stream: &str, operation: &str) -> Vec<Value> {
    let log = s3.root.path().join(bucket).join("shop/tables").join(stream).join("_delta_log");
    let mut names: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
        .iter()
        .filter_map(|n| {
            let text = std::fs::read_to_string(log.join(n)).ok()?;
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find_map(|a| a.get("commitInfo").cloned())
                .filter(|info| info["operation"] == operation)
        })
        .collect()
}

async fn ready(addr: SocketAddr) -> (u16, Value) {
    let r = client().get(format!("http://{addr}/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_commit_every_acknowledged_event_once_through_a_crash_and_a_spot_interruption() {
    let s3 = S3::start();
    let bucket = s3.bucket("logs");
    let dir = tempfile::tempdir().unwrap();
    let specs: Vec<ServerSpec> = (0..3).map(|i| replica_spec(&s3, &bucket, dir.path(), i)).collect();
    let mut replicas: Vec<Server> = specs.iter().map(ServerSpec::start).collect();
    let ids: Vec<String> = replicas.iter().map(writer_id).collect();
    assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), 3, "a writer id per replica: {ids:?}");
    let balancer = Balancer::start(replicas.iter().map(|r| r.addr).collect());

    let load = Load::start(balancer.base(), 6, 0);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // kill -9 replica 1 under load, and bring it back on its write-ahead log: what it had
    // acknowledged and not committed is replayed under the same writer id, once.
    replicas[1].kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let old = replicas[1].addr;
    replicas[1] = specs[1].start();
    assert_eq!(writer_id(&replicas[1]), ids[1], "the writer id survives the restart");
    balancer.replace(old, replicas[1].addr);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A SPOT interruption of replica 2: SIGTERM. Readiness goes off at once, while the
    // listener still takes requests for the drain delay; then it commits and exits 0.
    let spot = replicas[2].addr;
    signal(replicas[2].pid(), "TERM");
    let started = Instant::now();
    let (status, body) = loop {
        let (status, body) = ready(spot).await;
        if status == 503 || started.elapsed() > Duration::from_secs(1) {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((status, body["status"].as_str()), (503, Some("draining")), "{body}");
    let (code, answer) = ingest(&replicas[2], "crash", events("drain", 5), "").await;
    assert_eq!(code, 200, "still taking requests while draining: {answer}");
    // The balancer deregisters it, as the ALB does once its health check fails.
    balancer.remove(spot);
    let (exit, took) = replicas[2].terminate(Duration::from_secs(30));
    assert_eq!(exit, Some(0), "exit code; logs:\n{}", replicas[2].logs());
    assert!(took >= Duration::from_millis(1500), "the listener stayed open for the drain delay ({took:?})");
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The load goes on until compaction has committed twice (checked below): three debug
    // replicas share the machine, and a compaction under load may take several seconds.
    let deadline = Instant::now() + Duration::from_secs(90);
    while commits(&s3, &bucket, "crash", "OPTIMIZE").len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let acked = load.stop().await;
    assert!(acked.len() > 1000, "the load sent too little to test anything: {}", acked.len());
    for replica in [&replicas[0], &replicas[1]] {
        assert!(balancer.sent_to(replica.addr) > 10, "the balancer spread the load");
        flush(replica).await;
    }
    check_exactly_once(&replicas[0], &acked).await;
    let drained = count(&replicas[0], "SELECT count(*) FROM crash WHERE id LIKE 'drain-%'").await;
    assert_eq!(drained, 5, "the events taken while draining are committed");

    // Compaction ran while the replicas took load, one replica at a time: a day's OPTIMIZE
    // commits are at least the compaction interval apart (three replicas each compacting on
    // their own would commit about three times as often, and race each other), and each
    // names the replica that made it.
    let optimize = commits(&s3, &bucket, "crash", "OPTIMIZE");
    assert!(optimize.len() >= 2, "compaction ran: {optimize:?}");
    let mut by_day: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for info in &optimize {
        let by = info["logyard.by"].as_str().unwrap_or_default();
        assert!(ids.iter().any(|id| id == by), "an OPTIMIZE commit names its replica: {info}");
        let day = info["operationParameters"]["predicate"].to_string();
        by_day.entry(day).or_default().push(info["timestamp"].as_i64().unwrap());
    }
    for (day, times) in by_day {
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= 2_700, "{day}: two compactions {gap} ms apart: {optimize:#?}");
        }
    }
    let holders: Vec<&str> = optimize.iter().filter_map(|i| i["logyard.by"].as_str()).collect();
    eprintln!("OPTIMIZE commits by replica: {holders:?}");
}
