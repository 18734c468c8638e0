//! Queries that skip what cannot hold their answer: a file outside a query's time range is not
//! opened, and a row group whose bloom filter says an id is absent is not read. Shown with
//! DataFusion's own scan metrics (`EXPLAIN ANALYZE` through the API) and the object-store
//! request counters of `/metrics`.

mod common;

use common::*;
use serde_json::Value;

/// Commits to one day, one per hour (the status is 200 or 202 in [`commit`]'s events, so that
/// 201 lies inside every file's range and in none).
const COMMITS: usize = 6;
/// Events per commit.
const EVENTS: usize = 200;

/// The events of commit `n`: hour `n` of 2026-11-22, order ids `o-0000-n` .. `o-0199-n` on
/// every other event. Every file's min and max `order_id` span nearly the same range, so only
/// a bloom filter tells the files apart.
fn commit(n: usize) -> String {
    (0..EVENTS)
        .map(|i| {
            let order = if i % 2 == 0 { format!("\"o-{i:04}-{n}\"") } else { "null".into() };
            format!(
                "{{\"timestamp\":\"2026-11-22T{n:02}:{:02}:{:02}Z\",\"order_id\":{order},\"route\":\"/checkout\",\"status\":{}}}\n",
                i / 60,
                i % 60,
                200 + i % 2 * 2
            )
        })
        .collect()
}

/// The plan text of `EXPLAIN ANALYZE sql`.
async fn analyze(server: &Server, sql: &str) -> String {
    let plan = rows(server, &format!("EXPLAIN ANALYZE {sql}")).await;
    plan.iter().map(|r| r["plan"].as_str().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// The value of a scan metric in a plan, e.g. `row_groups_pruned_bloom_filter=6 total → 1 matched`
/// gives `(6, 1)` for "row_groups_pruned_bloom_filter".
fn pruning(plan: &str, metric: &str) -> (u64, u64) {
    let at = plan.find(&format!("{metric}=")).unwrap_or_else(|| panic!("no {metric} in\n{plan}"));
    let text = &plan[at + metric.len() + 1..];
    let number = |s: &str| s.trim_start().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse::<u64>().unwrap();
    let total = number(text);
    let matched = number(&text[text.find('→').unwrap_or_else(|| panic!("{metric}: {text}")) + '→'.len_utf8()..]);
    (total, matched)
}

/// Object-store reads (`get`, `get_ranges`) the server made so far.
async fn reads(server: &Server) -> f64 {
    let mut n = 0.0;
    for op in ["get", "get_ranges"] {
        n += metric(server, "logyard_object_store_requests_total", &[("operation", op)]).await.unwrap_or(0.0);
    }
    n
}

#[tokio::test]
async fn a_needle_reads_one_row_group_and_a_time_range_opens_only_its_files() {
    let dir = tempfile::tempdir().unwrap();
    // Reads are counted below: no background job (the uploads sweeper looks at its lease
    // every quarter of its interval) may read the storage meanwhile.
    let server = ServerSpec::local(dir.path()).env("LOGYARD_UPLOADS_SWEEP_INTERVAL", "1h").start();
    for n in 0..COMMITS {
        let (status, body) = ingest(&server, "shop", commit(n), "?ack=commit").await;
        assert_eq!(status, 200, "{body}");
    }
    let files: Value =
        client().get(format!("{}/api/v1/streams/shop", server.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(files["files"], COMMITS as u64, "{files}");

    // One order id: every file's statistics admit it, only one file's bloom filter does.
    let needle = "SELECT timestamp, order_id, status FROM shop WHERE order_id = 'o-0042-3'";
    let plan = analyze(&server, needle).await;
    assert_eq!(pruning(&plan, "row_groups_pruned_statistics"), (COMMITS as u64, COMMITS as u64), "{plan}");
    assert_eq!(pruning(&plan, "row_groups_pruned_bloom_filter"), (COMMITS as u64, 1), "{plan}");
    // The same rows as a scan that nothing can prune (the id hidden in an expression).
    let found = rows(&server, &format!("{needle} ORDER BY timestamp")).await;
    let scanned = rows(
        &server,
        "SELECT timestamp, order_id, status FROM shop WHERE concat(order_id, '') = 'o-0042-3' ORDER BY timestamp",
    )
    .await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found, scanned);
    // `IN` too: two files' filters admit one of the ids each.
    let plan = analyze(&server, "SELECT count(*) FROM shop WHERE order_id IN ('o-0010-1', 'o-0010-4')").await;
    assert_eq!(pruning(&plan, "row_groups_pruned_bloom_filter"), (COMMITS as u64, 2), "{plan}");
    // An id beyond every file's range opens no file at all: the Delta log's statistics say so.
    let plan = analyze(&server, "SELECT * FROM shop WHERE order_id = 'o-9999-9'").await;
    assert!(plan.contains("count_files_scanned=0"), "{plan}");

    // One hour: the other files are skipped by their statistics in the Delta log and never
    // opened; the hour's file is read.
    let hour = "SELECT sum(status) AS n FROM shop WHERE timestamp >= '2026-11-22T02:00:00Z' AND timestamp < '2026-11-22T03:00:00Z'";
    let plan = analyze(&server, hour).await;
    assert!(plan.contains("count_files_scanned=1") && plan.contains("files_opened=1,"), "{plan}");
    // The object store agrees: the hour reads the Delta log and one file (its filter column,
    // then the rest), a scan of every file reads each. Each query runs once before, so that
    // the footers are cached and only data is counted.
    let all = "SELECT sum(status) AS n FROM shop";
    let mut counted = Vec::new();
    for sql in [hour, all] {
        let expected: i64 = (0..EVENTS).map(|i| 200 + i as i64 % 2 * 2).sum();
        let times = if sql == all { COMMITS as i64 } else { 1 };
        assert_eq!(count(&server, sql).await, expected * times);
        let before = reads(&server).await;
        assert_eq!(count(&server, sql).await, expected * times);
        counted.push(reads(&server).await - before);
    }
    let (hour_reads, all_reads) = (counted[0], counted[1]);
    assert!((1.0..=3.0).contains(&hour_reads), "the hour's file is read: {hour_reads}");
    assert!(all_reads > hour_reads && all_reads >= COMMITS as f64, "every file is read: {all_reads}");
}

#[tokio::test]
async fn compaction_keeps_the_detected_and_the_configured_bloom_filters() {
    let dir = tempfile::tempdir().unwrap();
    // `status` is not an identifier, so only configuration gives it a filter.
    let spec = ServerSpec::local(dir.path())
        .env("LOGYARD_COMPACTION_INTERVAL", "0s")
        .env("LOGYARD_TABLES_BLOOM_FILTER_COLUMNS", "status");
    let server = spec.start();
    for n in 0..COMMITS {
        assert_eq!(ingest(&server, "shop", commit(n), "?ack=commit").await.0, 200);
    }
    let env = [("LOGYARD_TABLES_BLOOM_FILTER_COLUMNS".to_owned(), "status".to_owned())];
    let (code, out, err) = cli(&["compact", "--storage", &spec.storage], &env);
    assert_eq!(code, 0, "{out}{err}");
    let info: Value = client().get(server.url("/api/v1/streams/shop")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["files"], 1, "{info}");
    // Compaction leaves a checkpoint, so a cold reader reads one file of the log.
    let log = std::path::Path::new(&spec.storage).join("tables/shop/_delta_log");
    let names: Vec<String> =
        std::fs::read_dir(&log).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().any(|n| n.ends_with(".checkpoint.parquet")), "{names:?}");

    // One file, one row group: its statistics admit every id and status of the day, its
    // filters only those present. An absent order id is ruled out before the file is opened,
    // by the identifier index compaction wrote beside it (`an_identifier_index_...` below).
    let plan = analyze(&server, "SELECT * FROM shop WHERE order_id = 'o-0043-3'").await;
    assert!(plan.contains("EmptyExec") && !plan.contains("files_opened"), "{plan}");
    for (sql, matched) in [
        ("SELECT * FROM shop WHERE order_id = 'o-0042-3'", 1),
        ("SELECT * FROM shop WHERE status = 201", 0),
        ("SELECT * FROM shop WHERE status = 202 LIMIT 1", 1),
    ] {
        let plan = analyze(&server, sql).await;
        assert_eq!(pruning(&plan, "row_groups_pruned_statistics"), (1, 1), "{sql}\n{plan}");
        assert_eq!(pruning(&plan, "row_groups_pruned_bloom_filter"), (1, matched), "{sql}\n{plan}");
    }
    assert_eq!(rows(&server, "SELECT * FROM shop WHERE order_id = 'o-0042-3'").await.len(), 1);
}

#[tokio::test]
async fn free_text_runs_as_a_substring_search_with_ilike_s_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path()).start();
    let messages = [
        "POST /Checkout 502",
        "post /checkout 200",
        "GET /cart 200",
        "upstream timeout: CHECKOUT-service",
        "\u{212A}elvin sign before checkout",
        "straße",
    ];
    let body: String = messages.iter().map(|m| format!("{}\n", serde_json::json!({"message": m}))).collect();
    assert_eq!(ingest(&server, "app", body, "?ack=commit").await.0, 200);
    for (words, regex) in [("checkout", "(?i)checkout"), ("ELVIN", "(?i)elvin"), ("t /c", "(?i)t /c")] {
        let ilike = format!("SELECT message FROM app WHERE message ILIKE '%{words}%' ORDER BY message");
        let plan = rows(&server, &format!("EXPLAIN {ilike}")).await;
        assert!(serde_json::to_string(&plan).unwrap().contains("icontains"), "{plan:?}");
        // The same rows as a regular expression, which the rewrite does not touch.
        let expected =
            rows(&server, &format!("SELECT message FROM app WHERE message ~ '{regex}' ORDER BY message")).await;
        assert!(!expected.is_empty(), "{words}");
        assert_eq!(rows(&server, &ilike).await, expected, "{words}");
        let negated =
            rows(&server, &format!("SELECT count(*) AS n FROM app WHERE message NOT ILIKE '%{words}%'")).await;
        assert_eq!(negated[0]["n"], (messages.len() - expected.len()) as i64, "{words}");
    }
    // The search language's free text takes the same path.
    let search: Value = client()
        .post(server.url("/api/v1/search"))
        .json(&serde_json::json!({"streams": ["app"], "query": "CHECKOUT", "limit": 10}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(search["events"].as_array().map(Vec::len), Some(4), "{search}");
}

/// The Parquet scan tests each condition of a query once (delta-rs gives the scan the filters
/// and DataFusion's pushdown adds them again), and answers what the conditions ask.
#[tokio::test]
async fn a_scan_tests_each_condition_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path()).start();
    assert_eq!(ingest(&server, "shop", commit(0), "?ack=commit").await.0, 200);
    let sql = "SELECT count(*) AS n FROM shop WHERE status >= 200 AND order_id IS NOT NULL";
    let plan = rows(&server, &format!("EXPLAIN {sql}")).await;
    let plan = serde_json::to_string(&plan).unwrap();
    let at = plan.find(", predicate=").unwrap_or_else(|| panic!("no predicate in {plan}"));
    let predicate = plan[at..].split(", pruning_predicate=").next().unwrap();
    assert_eq!(predicate.matches(">= 200").count(), 1, "{predicate}");
    assert_eq!(predicate.matches("IS NOT NULL").count(), 1, "{predicate}");
    // Odd events have status 202 and no order id; even ones an order id and status 200.
    assert_eq!(count(&server, sql).await, 100);
    assert_eq!(count(&server, "SELECT count(*) AS n FROM shop WHERE status >= 202 AND order_id IS NOT NULL").await, 0);
    assert_eq!(count(&server, "SELECT count(*) AS n FROM shop WHERE status >= 202 OR order_id IS NOT NULL").await, 200);
}

/// `column IS NOT NULL` on a column the query reads, which few rows have null, is tested after
/// the scan, not as one of its row filters (which decoded the column for every row); on a
/// column mostly null, or one the query does not read, it stays in the scan. The answers are
/// those the conditions ask for either way.
#[tokio::test]
async fn a_null_test_that_keeps_most_rows_runs_after_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path()).start();
    // Every fourth event a 5xx; a customer on four events in five; an order on one in ten.
    let events: String = (0..200)
        .map(|i| {
            let customer = if i % 5 == 0 { "null".to_owned() } else { format!("\"c-{}\"", i % 7) };
            let order = if i % 10 == 0 { format!("\"o-{i}\"") } else { "null".to_owned() };
            let status = if i % 4 == 0 { 503 } else { 200 };
            format!(
                "{{\"timestamp\":\"2026-11-22T10:{:02}:{:02}Z\",\"customer_id\":{customer},\"order_id\":{order},\"status\":{status}}}\n",
                i / 60,
                i % 60
            )
        })
        .collect();
    assert_eq!(ingest(&server, "shop", events, "?ack=commit").await.0, 200);
    let scan_predicate = |plan: &str| {
        let at = plan.find(", predicate=").unwrap_or_else(|| panic!("no predicate in {plan}"));
        plan[at..].split(", pruning_predicate=").next().unwrap().to_owned()
    };

    let top = "SELECT customer_id, count(*) AS n FROM shop WHERE status >= 500 AND customer_id IS NOT NULL \
               GROUP BY customer_id ORDER BY n DESC, customer_id";
    let plan = serde_json::to_string(&rows(&server, &format!("EXPLAIN {top}")).await).unwrap();
    assert!(plan.contains("FilterExec: customer_id@1 IS NOT NULL"), "{plan}");
    assert!(!scan_predicate(&plan).contains("IS NOT NULL"), "{plan}");
    // 5xx events are i = 0, 4, ..., 196; those of i % 20 == 0 have no customer: 40 remain, of
    // customers i % 7 (i = 4k: c-0..c-6).
    let got = rows(&server, top).await;
    let mut expected = std::collections::BTreeMap::<String, u64>::new();
    for i in (0..200).step_by(4).filter(|i| i % 5 != 0) {
        *expected.entry(format!("c-{}", i % 7)).or_default() += 1;
    }
    let got: std::collections::BTreeMap<String, u64> =
        got.iter().map(|r| (r["customer_id"].as_str().unwrap().to_owned(), r["n"].as_u64().unwrap())).collect();
    assert_eq!(got, expected);
    assert_eq!(got.values().sum::<u64>(), 40);

    // An order id is null on nine events in ten: its test stays a row filter of the scan.
    let orders = "SELECT order_id, status FROM shop WHERE status >= 200 AND order_id IS NOT NULL";
    let plan = serde_json::to_string(&rows(&server, &format!("EXPLAIN {orders}")).await).unwrap();
    assert!(scan_predicate(&plan).contains("order_id@"), "{plan}");
    assert!(!plan.contains("FilterExec"), "{plan}");
    assert_eq!(rows(&server, orders).await.len(), 20);
    // A limit pushed into the scan counts rows after every condition: the test stays there.
    let limited = "SELECT customer_id FROM shop WHERE status >= 500 AND customer_id IS NOT NULL LIMIT 5";
    let got = rows(&server, limited).await;
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|r| r["customer_id"].is_string()), "{got:?}");
}

/// `n` events on the day `days_ago` days before today, each with an id that looks random (so
/// that every file's min and max span nearly all ids, and only a filter tells files apart).
fn random_ids(days_ago: u64, part: u64, n: u64) -> String {
    let day = chrono::Utc::now().date_naive() - chrono::Days::new(days_ago);
    (0..n)
        .map(|i| {
            let id = trace_id(days_ago, part * n + i);
            format!(
                "{{\"timestamp\":\"{day}T{:02}:{:02}:00Z\",\"trace_id\":\"{id}\",\"message\":\"hop {i}\"}}\n",
                part,
                i % 60
            )
        })
        .collect()
}

/// The trace id of event `i` of the day `days_ago` (splitmix64 of both).
fn trace_id(days_ago: u64, i: u64) -> String {
    let mut z = (days_ago << 32 | i).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("{:016x}", z ^ (z >> 31))
}

/// The plan of `EXPLAIN ANALYZE VERBOSE sql` with its metrics per partition (and per file).
async fn full_metrics(server: &Server, sql: &str) -> String {
    let plan = rows(server, &format!("EXPLAIN ANALYZE VERBOSE {sql}")).await;
    let full = plan.iter().find(|r| r["plan_type"] == "Plan with Full Metrics").expect("full metrics");
    full["plan"].as_str().unwrap().to_owned()
}

/// The files whose row groups a query's Parquet scans looked at (the partitions of a scan may
/// share a file, each reading some of its row groups).
async fn files_read(server: &Server, sql: &str) -> usize {
    let plan = full_metrics(server, sql).await;
    let mut files = std::collections::BTreeSet::new();
    for (at, m) in plan.match_indices("row_groups_pruned_statistics{partition=") {
        let labels = &plan[at + m.len()..];
        let (labels, value) = labels.split_once("}=").unwrap();
        let file = labels.split_once("filename=").map(|(_, f)| f).unwrap_or_else(|| panic!("{labels}"));
        let total: u64 = value.split(' ').next().unwrap().parse().unwrap();
        if total > 0 {
            files.insert(file.to_owned());
        }
    }
    files.len()
}

/// A server (of `spec`) whose table files have row groups of 100 rows, `commits` ingested into
/// `shop` and `logyard compact` run over its storage, which must report `indexed` files
/// indexed. Its queries run on two threads (partitions), whatever the machine's cores.
async fn compacted(spec: ServerSpec, commits: Vec<String>, indexed: u64) -> (ServerSpec, Server) {
    let spec = spec
        .env("LOGYARD_COMPACTION_INTERVAL", "0s")
        .env("LOGYARD_TABLES_ROW_GROUP_ROWS", "100")
        .env("LOGYARD_QUERY_THREADS", "2");
    let server = spec.start();
    for commit in commits {
        assert_eq!(ingest(&server, "shop", commit, "?ack=commit").await.0, 200);
    }
    let rows_per_group = [("LOGYARD_TABLES_ROW_GROUP_ROWS".to_owned(), "100".to_owned())];
    let (code, out, err) = cli(&["compact", "--storage", &spec.storage], &rows_per_group);
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["compacted"][0]["files_indexed"], indexed, "{report}");
    (spec, server)
}

/// Compaction writes an identifier index beside each file it writes; a query for one id opens
/// only the files whose index may hold it, and reads only the row groups it may be in (Delta
/// statistics and bloom filters alone would open every file: the ids are random), returns the
/// rows a full scan returns, and retention deletes the indexes of the files it drops.
#[tokio::test]
async fn an_identifier_index_opens_only_the_files_that_may_hold_an_id() {
    let dir = tempfile::tempdir().unwrap();
    // Two commits a day; each day's file has 3 row groups.
    let days = [10u64, 2, 1];
    let commits = days.iter().flat_map(|&days_ago| (0..2).map(move |part| random_ids(days_ago, part, 150))).collect();
    let (spec, server) = compacted(ServerSpec::local(dir.path()), commits, 3).await;
    let ids = std::path::Path::new(&spec.storage).join("tables/shop/_logyard_ids/v2");
    let indexes = |day: u64| {
        let day = chrono::Utc::now().date_naive() - chrono::Days::new(day);
        std::fs::read_dir(ids.join(format!("date={day}"))).map(|d| d.count()).unwrap_or(0)
    };
    assert_eq!(days.map(indexes), [1, 1, 1]);

    let needle = format!("SELECT trace_id, message FROM shop WHERE trace_id = '{}'", trace_id(2, 42));
    let unnarrowed = format!("{needle} AND concat(trace_id, '') = '{}'", trace_id(2, 42));
    // Without the index every file is opened (statistics admit the id everywhere).
    let unindexed = format!("SELECT * FROM shop WHERE concat(trace_id, '') = '{}'", trace_id(2, 42));
    assert_eq!(files_read(&server, &unindexed).await, 3);
    assert_eq!(files_read(&server, &needle).await, 1);
    let plan = analyze(&server, &needle).await;
    // And of that file's 3 row groups only those the index admits (the one holding the id, and
    // here one false positive in 256): only their bloom filters are read, one of which admits it.
    let (read, matched) = pruning(&plan, "row_groups_pruned_bloom_filter");
    assert!(read < 3 && matched == 1, "{plan}");
    let found = rows(&server, &needle).await;
    assert_eq!(found, rows(&server, &unnarrowed).await);
    assert_eq!(found, vec![serde_json::json!({"trace_id": trace_id(2, 42), "message": "hop 42"})]);
    let both =
        format!("SELECT count(*) AS n FROM shop WHERE trace_id IN ('{}', '{}')", trace_id(10, 7), trace_id(1, 299));
    assert_eq!(files_read(&server, &both).await, 2);
    assert_eq!(count(&server, &both).await, 2);
    let absent = "SELECT count(*) AS n FROM shop WHERE trace_id = 'not-an-id'";
    assert_eq!(files_read(&server, absent).await, 0);
    assert_eq!(count(&server, absent).await, 0);
    // Once read, the indexes and the footers are cached: the needle reads one file's filter
    // and data, in a few requests (a bloom filter, the id column, the other columns).
    let before = reads(&server).await;
    assert_eq!(rows(&server, &needle).await, found);
    let needle_reads = reads(&server).await - before;
    assert!((1.0..=5.0).contains(&needle_reads), "{needle_reads}");

    // Retention drops the oldest day's file, and its index with it, and indexes of an older
    // format (compaction wrote this version's beside them).
    let outdated = ids.parent().unwrap().join("date=2026-11-22/part-0.parquet.ids");
    std::fs::create_dir_all(outdated.parent().unwrap()).unwrap();
    std::fs::write(&outdated, b"LYI1\0\0\0\0").unwrap();
    let env = [
        ("LOGYARD_RETENTION_DAYS".to_owned(), "7".to_owned()),
        ("LOGYARD_RETENTION_VACUUM_KEEP".to_owned(), "0s".to_owned()),
    ];
    let (code, out, err) = cli(&["retention", "run", "--storage", &spec.storage], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(days.map(indexes), [0, 1, 1]);
    assert!(!outdated.exists());
    assert_eq!(rows(&server, &needle).await, found);
}

/// The first query after a start reads each object it needs once: the Delta checkpoint whole
/// in one request (delta-rs asks for its footer, its footer again and each column, 11 requests
/// for the benchmark's checkpoint), and a file's footer with its page indexes in one (the
/// footer's length, the footer and the page index were three, and the page index was read
/// again by every query). A query after it reads only row groups.
#[tokio::test]
async fn a_first_query_reads_the_checkpoint_and_each_footer_once() {
    let dir = tempfile::tempdir().unwrap();
    let commits = (0..4).map(|part| random_ids(1, part, 150)).collect();
    let (spec, server) = compacted(ServerSpec::local(dir.path()), commits, 1).await;
    drop(server);
    let log = std::path::Path::new(&spec.storage).join("tables/shop/_delta_log");
    let checkpoints = std::fs::read_dir(&log).unwrap().flatten();
    let checkpoints: Vec<_> =
        checkpoints.filter(|e| e.file_name().to_string_lossy().ends_with(".checkpoint.parquet")).collect();
    assert_eq!(checkpoints.len(), 1, "compaction checkpoints the log");

    let server = spec.start();
    let needle = format!("SELECT trace_id, message FROM shop WHERE trace_id = '{}'", trace_id(1, 321));
    let before = reads(&server).await;
    let found = rows(&server, &needle).await;
    let first = reads(&server).await - before;
    assert_eq!(found, vec![serde_json::json!({"trace_id": trace_id(1, 321), "message": "hop 21"})]);
    let before = reads(&server).await;
    assert_eq!(rows(&server, &needle).await, found);
    let again = reads(&server).await - before;
    // The first query's own reads: `_last_checkpoint`, the checkpoint, the file's index and
    // its footer; no commit follows the checkpoint.
    assert!(first - again <= 4.0, "first query {first} reads, the same query after it {again}");
    assert!((1.0..=3.0).contains(&again), "the row group alone: {again}");
}

/// A start loads the streams' tables before it listens: the first query after a restart reads
/// nothing of the Delta log (it asks for the next commit by name, a HEAD), where loading the
/// table would read the log's commits.
#[tokio::test]
async fn a_restarted_server_answers_its_first_query_from_tables_it_loaded_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ServerSpec::local(dir.path()).env("LOGYARD_UPLOADS_SWEEP_INTERVAL", "1h");
    let server = spec.start();
    for n in 0..3 {
        assert_eq!(ingest(&server, "shop", commit(n), "?ack=commit").await.0, 200);
    }
    drop(server);
    // Restarted with a new write-ahead log (every event is committed), so that nothing at the
    // start but the loading ahead of queries touches the table; the start's own jobs
    // (leases, alerts) read a little once it listens: let them settle.
    let spec = ServerSpec { wal_dir: dir.path().join("wal-2"), ..spec };
    let server = spec.start();
    let mut before = reads(&server).await;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let now = reads(&server).await;
        if now == before {
            break;
        }
        before = now;
    }
    // A day with no file: the table's snapshot is all the query needs.
    assert_eq!(count(&server, "SELECT count(*) AS n FROM shop WHERE date = '1999-01-01'").await, 0);
    assert_eq!(reads(&server).await - before, 0.0, "the first query read the table's log");
    assert_eq!(count(&server, "SELECT count(*) AS n FROM shop WHERE status = 202").await, 3 * EVENTS as i64 / 2);
}

/// The messages of commit `part` of a day: `n` requests for products, and one rare phrase in
/// the middle of the first commit.
fn product_views(part: u64, n: u64) -> String {
    let day = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    (0..n)
        .map(|i| {
            let message = if part == 0 && i == n / 2 {
                "Payment DECLINED by issuer for o-42".to_owned()
            } else {
                format!("GET /products/{} 200", (part * n + i) * 7919 % 10_000)
            };
            format!("{{\"timestamp\":\"{day}T{part:02}:{:02}:{:02}Z\",\"message\":\"{message}\"}}\n", i / 60, i % 60)
        })
        .collect()
}

/// Compaction indexes the n-grams of each text field, per row group: `ILIKE '%words%'` (and
/// the search language's words, and `LIKE`) read only the row groups that may hold the words,
/// and answer what a full scan answers.
#[tokio::test]
async fn a_text_index_reads_only_the_row_groups_that_may_hold_the_words() {
    let dir = tempfile::tempdir().unwrap();
    let (_spec, server) =
        compacted(ServerSpec::local(dir.path()), (0..3).map(|part| product_views(part, 150)).collect(), 1).await;

    // The day's file has 5 row groups; without the index every one is read.
    let row_groups_read = |plan: &str| pruning(plan, "row_groups_pruned_statistics").0;
    let unnarrowed = "SELECT message FROM shop WHERE concat(message, '') ILIKE '%payment declined%'";
    assert_eq!(row_groups_read(&analyze(&server, unnarrowed).await), 5);
    let want = vec![serde_json::json!({"message": "Payment DECLINED by issuer for o-42"})];
    for sql in [
        "SELECT message FROM shop WHERE message ILIKE '%payment declined%'",
        "SELECT message FROM shop WHERE message LIKE '%Payment DECLINED%'",
        "SELECT message FROM shop WHERE message ILIKE '%PAYMENT%issuer%'",
        "SELECT message FROM shop WHERE message ILIKE '%declined%' OR message ILIKE '%refund issued%'",
    ] {
        let plan = analyze(&server, sql).await;
        assert_eq!(row_groups_read(&plan), 1, "{sql}\n{plan}");
        assert_eq!(rows(&server, sql).await, want, "{sql}");
    }
    assert_eq!(rows(&server, unnarrowed).await, want);
    // Words in no row group: the file is not opened.
    let absent = "SELECT count(*) AS n FROM shop WHERE message ILIKE '%refund issued%'";
    assert_eq!(files_read(&server, absent).await, 0);
    assert_eq!(count(&server, absent).await, 0);
    // Words in every row group, and words too short to ask the index about: all are read.
    for (sql, n) in [
        ("SELECT count(*) AS n FROM shop WHERE message ILIKE '%/products/%'", 449),
        ("SELECT count(*) AS n FROM shop WHERE message ILIKE '%o-4%'", 1),
    ] {
        assert_eq!(row_groups_read(&analyze(&server, sql).await), 5, "{sql}");
        assert_eq!(count(&server, sql).await, n, "{sql}");
    }
    // The search language's words run the same way.
    let body = serde_json::json!({"streams": ["shop"], "query": "\"payment declined\"", "since": "3d"});
    let response = client().post(server.url("/api/v1/search")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let found: Value = response.json().await.unwrap();
    assert_eq!(found["events"].as_array().map(Vec::len), Some(1), "{found}");
}

/// The rows each partition of a plan's Parquet scan gave (`output_rows{partition=N}` of its
/// `DataSourceExec` in `EXPLAIN ANALYZE VERBOSE`), by partition.
async fn rows_per_partition(server: &Server, sql: &str) -> Vec<u64> {
    let full = full_metrics(server, sql).await;
    let scan = full.lines().find(|line| line.contains("DataSourceExec")).unwrap_or_else(|| panic!("{full}"));
    let mut counts = Vec::new();
    for (at, m) in scan.match_indices("output_rows{partition=") {
        let text = &scan[at + m.len()..];
        let partition: usize = text.split('}').next().unwrap().parse().unwrap();
        let value: u64 =
            text.split_once("}=").unwrap().1.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
        counts.resize(counts.len().max(partition + 1), 0);
        counts[partition] += value;
    }
    counts
}

/// A time range of a day's file is a few neighbouring row groups (the file is in time order):
/// they are dealt to different partitions, so both cores work on an hour, and together the
/// partitions read each row group once.
///
/// DataFusion lets a partition that is idle take the files (here: a file's share of row
/// groups) dealt to another that has not opened them yet; that is what a busy machine wants,
/// but it makes who reads what depend on timing. The server here has it off, so that each
/// partition reads what it was dealt.
#[tokio::test]
async fn the_row_groups_of_a_time_range_are_read_by_every_partition() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("logyard.toml");
    std::fs::write(&config, "[query.datafusion]\n\"execution.enable_file_stream_work_stealing\" = false\n").unwrap();
    let spec = ServerSpec::local(dir.path()).env("LOGYARD_CONFIG", config.to_str().unwrap());
    // One file of 450 events over three hours, row groups of 100 rows: the second hour is the
    // last 50 rows of the second row group and the whole third one.
    let (_spec, server) = compacted(spec, (0..3).map(|part| product_views(part, 150)).collect(), 1).await;
    let day = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    let hour = format!(
        "SELECT count(*) AS n FROM shop WHERE timestamp >= '{day}T01:00:00Z' AND timestamp < '{day}T02:00:00Z'"
    );
    assert_eq!(count(&server, &hour).await, 150);
    let mut per_partition = rows_per_partition(&server, &hour).await;
    per_partition.sort();
    assert_eq!(per_partition, vec![50, 100], "the hour's two row groups, one per partition");
    // The whole file: each row group once.
    assert_eq!(count(&server, "SELECT count(*) AS n FROM shop WHERE message LIKE '%'").await, 450);
    let all = rows_per_partition(&server, "SELECT message FROM shop WHERE message LIKE '%'").await;
    assert_eq!(all.iter().sum::<u64>(), 450, "{all:?}");
    assert_eq!(all.len(), 2, "{all:?}");
}

/// `sql` run with `token`: the status and the body.
async fn query_as(server: &Server, token: &str, sql: &str) -> (u16, Value) {
    let r = client()
        .post(server.url("/api/v1/query"))
        .bearer_auth(token)
        .json(&serde_json::json!({"sql": sql}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// What the engine keeps between queries (table snapshots, Parquet footers) never lets one
/// token see another's stream: two tokens alternate the same statements.
#[tokio::test]
async fn two_tokens_alternating_see_only_their_own_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (shop, e1) = create_token("shop", "query", Some("shop"));
    let (pay, e2) = create_token("pay", "query", Some("payments"));
    let (admin, e3) = create_token("ops", "admin,query,ingest", None);
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, format!("{e1}\n{e2}\n{e3}")).unwrap();
    let server = ServerSpec::local(dir.path()).env("LOGYARD_TOKENS_FILE", tokens.to_str().unwrap()).start();
    for (stream, n) in [("shop", 3), ("payments", 5)] {
        let r = client()
            .post(server.url(&format!("/api/v1/streams/{stream}/events?ack=commit")))
            .bearer_auth(&admin)
            .header("content-type", "application/x-ndjson")
            .body(commit(n))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let own = [(shop.as_str(), "shop", "payments", "o-0042-3"), (pay.as_str(), "payments", "shop", "o-0042-5")];
    for _ in 0..3 {
        for (token, mine, other, id) in own {
            // Its own stream, through the cached snapshot and footers.
            let (status, body) =
                query_as(&server, token, &format!("SELECT order_id FROM {mine} WHERE order_id = '{id}'")).await;
            assert_eq!((status, body["rows"].as_array().map(Vec::len)), (200, Some(1)), "{mine}: {body}");
            // The other's, which the previous query (the other token's) just loaded and cached.
            let (status, body) = query_as(&server, token, &format!("SELECT count(*) FROM {other}")).await;
            assert_eq!(status, 400, "{body}");
            assert!(body["error"]["message"].as_str().unwrap().contains(other), "{body}");
            let (status, body) = query_as(
                &server,
                token,
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["rows"], serde_json::json!([{"table_name": mine}]), "{body}");
        }
    }
}

/// `[query.datafusion]` settings apply to every query's session.
#[tokio::test]
async fn datafusion_settings_from_the_configuration_apply_to_queries() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("logyard.toml");
    std::fs::write(&config, "[query.datafusion]\n\"execution.batch_size\" = 1234\n").unwrap();
    let server = ServerSpec::local(&dir.path().join("data")).env("LOGYARD_CONFIG", config.to_str().unwrap()).start();
    let sql = "SELECT value FROM information_schema.df_settings WHERE name = 'datafusion.execution.batch_size'";
    assert_eq!(rows(&server, sql).await, vec![serde_json::json!({"value": "1234"})]);
}
