//! The Kinesis Data Streams consumer against kinesalite on loopback, with boto3 as the
//! producer: every record lands exactly once through a killed consumer, a restart, a
//! takeover and a reshard; throttled reads back off and lose nothing; `serve` runs the
//! consumers its configuration names, with checkpoints on S3 (s3s-fs).

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::kinesis::Kinesalite;
use common::proxy::Fault;
use common::*;
use serde_json::{Value, json};

/// Records of every kind a Kinesis stream carries, numbered from `from`; returns them (for
/// the producer) and the ids of the events they hold.
fn records(from: usize, n: usize) -> (Vec<Value>, Vec<String>) {
    let mut out = Vec::new();
    let mut ids = Vec::new();
    for i in from..from + n {
        let data: Vec<u8> = match i % 10 {
            // Three NDJSON events in one record.
            3 => {
                let lines: Vec<String> = ["a", "b", "c"]
                    .iter()
                    .map(|s| {
                        ids.push(format!("k-{i}-{s}"));
                        format!("{{\"id\":\"k-{i}-{s}\",\"n\":{i},\"kind\":\"ndjson\"}}")
                    })
                    .collect();
                lines.join("\n").into_bytes()
            }
            // One gzip-compressed document.
            5 => {
                ids.push(format!("k-{i}"));
                gzip(format!("{{\"id\":\"k-{i}\",\"n\":{i},\"kind\":\"gzip\"}}").as_bytes())
            }
            // A CloudWatch Logs subscription envelope (gzip) with two log events.
            7 => {
                ids.push(format!("k-{i}-0"));
                ids.push(format!("k-{i}-1"));
                let envelope = json!({
                    "messageType": "DATA_MESSAGE",
                    "owner": "123456789012",
                    "logGroup": "/aws/eks/shop/cluster",
                    "logStream": "kube-apiserver-1",
                    "subscriptionFilters": ["to-logyard"],
                    "logEvents": [
                        {"id": "1", "timestamp": 1764064800000i64, "message": format!("{{\"id\":\"k-{i}-0\",\"n\":{i},\"kind\":\"cloudwatch\"}}")},
                        {"id": "2", "timestamp": 1764064801000i64, "message": format!("{{\"id\":\"k-{i}-1\",\"n\":{i},\"kind\":\"cloudwatch\"}}")},
                    ]
                });
                gzip(envelope.to_string().as_bytes())
            }
            _ => {
                ids.push(format!("k-{i}"));
                format!("{{\"id\":\"k-{i}\",\"n\":{i},\"kind\":\"json\",\"timestamp\":\"2026-11-25T10:00:00Z\"}}")
                    .into_bytes()
            }
        };
        out.push(json!({"data_b64": base64::engine::general_purpose::STANDARD.encode(&data), "key": format!("pk-{}", i * 7919)}));
    }
    (out, ids)
}

/// A `logyard kinesis` process, its log in a file.
struct ConsumerProcess {
    child: Child,
    log: PathBuf,
}

impl ConsumerProcess {
    fn start(dir: &Path, storage: &str, stream: &str, target: &str, worker: &str, env: &[(String, String)]) -> Self {
        let log = dir.join(format!("consumer-{worker}.log"));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["kinesis", "--stream-name", stream, "--logyard-stream", target, "--worker-id", worker])
            .args(["--storage", storage])
            .env("LOGYARD_LOG_FORMAT", "json")
            .env("LOGYARD_KINESIS_LEASE", "3s")
            .env("LOGYARD_KINESIS_FLUSH_INTERVAL", "1s")
            .env("LOGYARD_KINESIS_IDLE_WAIT", "200ms")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        for (k, v) in env {
            cmd.env(k, v);
        }
        ConsumerProcess { child: cmd.spawn().expect("spawning logyard kinesis"), log }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; returns the exit code.
    fn terminate(&mut self) -> Option<i32> {
        signal(self.child.id() as i32, "TERM");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no exit after SIGTERM:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ConsumerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn csv_query(storage: &str, sql: &str, env: &[(String, String)]) -> Vec<Vec<String>> {
    let (code, out, err) = cli(&["query", "--storage", storage, "--format", "csv", sql], env);
    assert_eq!(code, 0, "{sql}: {err}");
    out.lines().skip(1).map(|l| l.split(',').map(str::to_owned).collect()).collect()
}

/// Rows of the table (0 while it does not exist).
fn table_rows(storage: &str, table: &str, env: &[(String, String)]) -> i64 {
    let (code, out, _) = cli(
        &["query", "--storage", storage, "--format", "csv", &format!("SELECT count(*) AS n FROM \"{table}\"")],
        env,
    );
    if code != 0 {
        return 0;
    }
    out.lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap_or(0)
}

fn wait_rows(
    storage: &str,
    table: &str,
    want: i64,
    limit: Duration,
    logs: &dyn Fn() -> String,
    env: &[(String, String)],
) {
    let started = Instant::now();
    loop {
        let n = table_rows(storage, table, env);
        assert!(n <= want, "{n} rows, more than the {want} put: a record landed twice\n{}", logs());
        if n == want {
            return;
        }
        assert!(started.elapsed() < limit, "{n} of {want} rows after {limit:?}\n{}", logs());
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The latest checkpoint entry of a shard (local storage).
fn checkpoint(storage: &str, stream: &str, target: &str, shard: &str) -> Value {
    let dir = Path::new(storage).join(format!("checkpoints/kinesis/{stream}/{target}/{shard}"));
    let latest = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    serde_json::from_slice(&std::fs::read(latest).unwrap()).unwrap()
}

#[test]
fn every_record_lands_once_through_a_kill_a_takeover_a_restart_and_a_reshard() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data").display().to_string();
    let kinesis = Kinesalite::start();
    let env = kinesis.env();
    let created = kinesis.call(json!({"op": "create", "stream": "shop", "shards": 4}));
    assert_eq!(created["shards"].as_array().unwrap().len(), 4);

    let mut expected = BTreeSet::new();
    let (first, ids) = records(0, 400);
    expected.extend(ids);
    let placed = kinesis.call(json!({"op": "put", "stream": "shop", "records": first}));
    assert_eq!(placed["placed"].as_object().unwrap().len(), 4, "records on every shard: {placed}");
    // A record that is not what it says (gzip magic, then garbage): logged and skipped.
    let bad = json!([{"data_b64": base64::engine::general_purpose::STANDARD.encode([0x1f, 0x8b, 0x08, 0, 0xde, 0xad]), "key": "bad"}]);
    kinesis.call(json!({"op": "put", "stream": "shop", "records": bad}));

    let mut a = ConsumerProcess::start(dir.path(), &storage, "shop", "shop-web", "A", &env);
    let mut b = ConsumerProcess::start(dir.path(), &storage, "shop", "shop-web", "B", &env);
    let logs = |procs: &[&ConsumerProcess]| procs.iter().map(|p| p.logs()).collect::<Vec<_>>().join("\n");
    // Both hold leases (the second takes its share from the first) and rows come in.
    let started = Instant::now();
    while !(a.logs().contains("lease taken")
        && b.logs().contains("lease taken")
        && table_rows(&storage, "shop-web", &[]) > 0)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "consumers did not share the shards:\n{}",
            logs(&[&a, &b])
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // More records while A is killed mid-stream: B takes A's shards when their leases lapse.
    let batches: Vec<_> = (0..6).map(|k| records(400 + k * 100, 100)).collect();
    let mut ops = Vec::new();
    for (recs, ids) in batches {
        expected.extend(ids);
        ops.push(json!({"op": "put", "stream": "shop", "records": recs}));
    }
    std::thread::scope(|s| {
        let producer = s.spawn(|| {
            for op in ops {
                kinesis.call(op);
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        std::thread::sleep(Duration::from_millis(600));
        a.kill9();
        producer.join().unwrap();
    });
    let before_reshard = expected.len() as i64;
    wait_rows(&storage, "shop-web", before_reshard, Duration::from_secs(60), &|| logs(&[&a, &b]), &[]);

    // Reshard: split a shard; records put afterwards go to its children.
    let shards = kinesis.call(json!({"op": "split", "stream": "shop", "shard": "shardId-000000000001"}));
    let children: Vec<String> = shards["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["ParentShardId"] == "shardId-000000000001")
        .map(|s| s["ShardId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(children.len(), 2, "{shards}");
    let (third, ids) = records(1000, 400);
    expected.extend(ids);
    kinesis.call(json!({"op": "put", "stream": "shop", "records": third}));

    // A comes back (a restart: it resumes from the checkpoints, without duplicates).
    let mut a = ConsumerProcess::start(dir.path(), &storage, "shop", "shop-web", "A", &env);
    wait_rows(&storage, "shop-web", expected.len() as i64, Duration::from_secs(90), &|| logs(&[&a, &b]), &[]);
    assert_eq!(a.terminate(), Some(0), "{}", a.logs());
    assert_eq!(b.terminate(), Some(0), "{}", b.logs());

    // Exactly once, field by field.
    let rows = csv_query(&storage, "SELECT count(*), count(DISTINCT id) FROM \"shop-web\"", &[]);
    assert_eq!(rows, vec![vec![expected.len().to_string(), expected.len().to_string()]]);
    let got: BTreeSet<String> =
        csv_query(&storage, "SELECT id FROM \"shop-web\"", &[]).into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(got, expected);
    let rows = csv_query(
        &storage,
        "SELECT id, n, kind, log_group, log_stream, CAST(\"timestamp\" AS VARCHAR) FROM \"shop-web\" \
         WHERE id IN ('k-7-1', 'k-13-b', 'k-15', 'k-1002') ORDER BY id",
        &[],
    );
    assert_eq!(
        rows,
        vec![
            vec!["k-1002", "1002", "json", "", "", "2026-11-25T10:00:00Z"],
            vec!["k-13-b", "13", "ndjson", "", "", rows[1][5].as_str()],
            vec!["k-15", "15", "gzip", "", "", rows[2][5].as_str()],
            vec!["k-7-1", "7", "cloudwatch", "/aws/eks/shop/cluster", "kube-apiserver-1", "2025-11-25T10:00:01Z"],
        ]
    );
    // The malformed record was named and skipped.
    let all = logs(&[&a, &b]);
    assert!(all.contains("record skipped") && all.contains("gzip"), "{all}");

    // The reshard was followed: the parent read to its end, then its children.
    let parent = checkpoint(&storage, "shop", "shop-web", "shardId-000000000001");
    assert_eq!(parent["finished"], true, "{parent}");
    for child in &children {
        let c = checkpoint(&storage, "shop", "shop-web", child);
        assert!(c["batch"].as_i64().unwrap() >= 1 && c["finished"] == false, "{child}: {c}");
        assert_eq!(c["lease_until_ms"], 0, "released at shutdown: {c}");
    }
    // The lease of a killed consumer moved to a live one.
    assert!(b.logs().matches("lease taken").count() >= 3, "{}", b.logs());
}

/// Whether the latest entry of a shard's checkpoint log (a directory of s3s-fs) has a batch
/// committed and none pending. An entry still being written reads as not settled.
fn settled(shard_log: &Path) -> bool {
    let Some(latest) = std::fs::read_dir(shard_log).ok().and_then(|entries| {
        entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).max()
    }) else {
        return false;
    };
    let Ok(entry) =
        std::fs::read(latest).map_err(|_| ()).and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|_| ()))
    else {
        return false;
    };
    entry["batch"].as_i64().is_some_and(|b| b >= 1) && entry.get("pending").is_none()
}

/// The consumer dies after a batch's commit landed and before the checkpoint that follows it
/// was stored (the proxy holds that write): its successor finds the batch pending in the
/// checkpoint and committed in the table, and reads on after it instead of again.
#[test]
fn a_batch_committed_before_its_checkpoint_was_stored_is_not_written_twice() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3::start();
    let storage = format!("s3://{}/prod", s3.bucket("logs"));
    let kinesis = Kinesalite::start();
    kinesis.call(json!({"op": "create", "stream": "clicks", "shards": 1}));
    let mut env = s3.env();
    env.push(("AWS_ENDPOINT_URL_KINESIS".into(), kinesis.proxied.clone()));
    // No lease renewal (held too) before the commit under test.
    env.push(("LOGYARD_KINESIS_LEASE".into(), "60s".into()));
    let put = |from, n| {
        let (recs, ids) = records(from, n);
        kinesis.call(json!({"op": "put", "stream": "clicks", "records": recs}));
        ids.len() as i64
    };
    let mut want = put(0, 50);
    let mut a = ConsumerProcess::start(dir.path(), &storage, "clicks", "clicks", "A", &env);
    wait_rows(&storage, "clicks", want, Duration::from_secs(30), &|| a.logs(), &env);
    // The first batch's settled checkpoint may still be on its way after its commit shows:
    // hold only the next batch's.
    let shard_log = s3.root.path().join("logs/prod/checkpoints/kinesis/clicks/clicks/shardId-000000000000");
    let started = Instant::now();
    while !settled(&shard_log) {
        assert!(started.elapsed() < Duration::from_secs(30), "the first batch never settled\n{}", a.logs());
        std::thread::sleep(Duration::from_millis(100));
    }

    s3.faults.set(Fault::HoldSettledCheckpoint);
    want += put(50, 50);
    let started = Instant::now();
    while !(s3.faults.held() >= 1 && table_rows(&storage, "clicks", &env) == want) {
        assert!(started.elapsed() < Duration::from_secs(30), "no commit with its checkpoint held\n{}", a.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    a.kill9();
    s3.faults.set(Fault::None);

    want += put(100, 50);
    let b = ConsumerProcess::start(dir.path(), &storage, "clicks", "clicks", "A", &env);
    wait_rows(&storage, "clicks", want, Duration::from_secs(30), &|| b.logs(), &env);
    std::thread::sleep(Duration::from_secs(3));
    let rows = csv_query(&storage, "SELECT count(*), count(DISTINCT id) FROM clicks", &env);
    assert_eq!(rows, vec![vec![want.to_string(), want.to_string()]], "{}", b.logs());
    assert!(b.logs().contains("committed before its checkpoint"), "{}", b.logs());
}

/// A shard's records are committed once they hold `flush_bytes` of events, long before
/// `flush_interval`.
#[test]
fn a_shard_commits_when_its_events_reach_flush_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data").display().to_string();
    let kinesis = Kinesalite::start();
    kinesis.call(json!({"op": "create", "stream": "clicks", "shards": 1}));
    let (recs, ids) = records(0, 120);
    kinesis.call(json!({"op": "put", "stream": "clicks", "records": recs}));
    let mut env = kinesis.env();
    env.push(("LOGYARD_KINESIS_FLUSH_INTERVAL".into(), "1h".into()));
    // Several times 4,096 bytes of events, and far fewer than 4,096 events.
    env.push(("LOGYARD_KINESIS_FLUSH_BYTES".into(), "4096".into()));
    let a = ConsumerProcess::start(dir.path(), &storage, "clicks", "clicks", "A", &env);
    wait_rows(&storage, "clicks", ids.len() as i64, Duration::from_secs(30), &|| a.logs(), &env);
}

#[tokio::test]
async fn serve_runs_configured_consumers_and_backs_off_when_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3::start();
    let bucket = s3.bucket("logs");
    let kinesis = Kinesalite::start();
    kinesis.call(json!({"op": "create", "stream": "orders-events", "shards": 2}));
    let (recs, ids) = records(0, 300);
    kinesis.call(json!({"op": "put", "stream": "orders-events", "records": recs}));

    let config = dir.path().join("logyard.toml");
    let mut f = std::fs::File::create(&config).unwrap();
    write!(
        f,
        "[kinesis]\nlease = \"3s\"\nflush_interval = \"1s\"\nidle_wait = \"200ms\"\n\n\
         [[kinesis.streams]]\nstream_name = \"orders-events\"\nlogyard_stream = \"orders\"\n"
    )
    .unwrap();
    kinesis.faults.set(Fault::ThrottleGetRecords);
    let mut spec = ServerSpec::local(dir.path());
    spec.storage = format!("s3://{bucket}/prod");
    spec.env = s3.env();
    // The Kinesis endpoint comes from its own variable; S3's from AWS_ENDPOINT_URL.
    spec.env.push(("AWS_ENDPOINT_URL_KINESIS".into(), kinesis.proxied.clone()));
    spec.env.push(("LOGYARD_CONFIG".into(), config.display().to_string()));
    let mut server = spec.start();

    let metric = |text: &str, name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let started = Instant::now();
    loop {
        let text = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if metric(&text, "logyard_kinesis_throttled_total") >= 3.0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no throttled reads seen:\n{text}\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(server.logs().contains("throughput exceeded; backing off"), "{}", server.logs());
    kinesis.faults.set(Fault::None);

    let started = Instant::now();
    loop {
        let (status, body) = query(&server, "SELECT count(*) AS n FROM orders").await;
        let n = if status == 200 { body["rows"][0]["n"].as_i64().unwrap_or(0) } else { 0 };
        assert!(n <= ids.len() as i64, "{n} rows, more than put\n{}", server.logs());
        if n == ids.len() as i64 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{n} of {} rows\n{}", ids.len(), server.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Records read after the consumer's first commit build their rows as they are decoded
    // (against the table's schema then), and land as the ones before them did.
    let (more, more_ids) = records(300, 100);
    kinesis.call(json!({"op": "put", "stream": "orders-events", "records": more}));
    let all = (ids.len() + more_ids.len()) as i64;
    let started = Instant::now();
    while count(&server, "SELECT count(*) FROM orders").await != all {
        assert!(started.elapsed() < Duration::from_secs(30), "the second records did not land\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let built = metric(&text, "logyard_committed_rows_built_at_request_total");
    assert!(built >= more_ids.len() as f64 && built <= all as f64, "{built} rows built as read\n{text}");
    // Each kind of record gave the columns the flush gives it.
    let right = "SELECT count(*) FROM orders WHERE n >= 300 AND starts_with(id, 'k-' || CAST(n AS VARCHAR)) AND \
                 ((kind = 'cloudwatch' AND log_group = '/aws/eks/shop/cluster' AND log_stream = 'kube-apiserver-1' \
                   AND to_unixtime(timestamp) IN (1764064800, 1764064801)) \
                  OR (kind = 'json' AND to_unixtime(timestamp) = 1795600800 AND log_group IS NULL) \
                  OR (kind IN ('ndjson', 'gzip') AND log_group IS NULL))";
    assert_eq!(count(&server, right).await, more_ids.len() as i64);

    // A record with no events (a CloudWatch Logs control message) moves the checkpoint alone;
    // the next record on that shard, one pretty-printed JSON document, is one more row.
    let b64 = |data: &[u8]| base64::engine::general_purpose::STANDARD.encode(data);
    let control = json!({"messageType": "CONTROL_MESSAGE", "logGroup": "", "logStream": "", "logEvents": [
        {"id": "", "timestamp": 1764064800000i64, "message": "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]});
    let one = |data: Vec<u8>| json!({"op": "put", "stream": "orders-events", "records": [{"data_b64": b64(&data), "key": "pk-control"}]});
    kinesis.call(one(gzip(control.to_string().as_bytes())));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    kinesis.call(one(b"{\n  \"id\": \"pretty\",\n  \"n\": 1\n}\n".to_vec()));
    let started = Instant::now();
    let want = all + 1;
    while count(&server, "SELECT count(*) FROM orders").await != want {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the record after a control message did not land\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count(&server, "SELECT n FROM orders WHERE id = 'pretty'").await, 1);

    let text = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&text, "logyard_kinesis_records_total{stream=\"orders-events\"}"), 402.0, "{text}");
    assert_eq!(metric(&text, "logyard_kinesis_leases{stream=\"orders-events\"}"), 2.0, "{text}");

    // Checkpoints live in the bucket, beside the table.
    let checkpoints = s3.root.path().join("logs/prod/checkpoints/kinesis/orders-events/orders");
    let shards: Vec<_> = std::fs::read_dir(&checkpoints).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(shards.len(), 2, "{shards:?}");
    let (code, _) = server.terminate(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{}", server.logs());
}
