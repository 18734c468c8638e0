//! SQL over the PostgreSQL wire protocol (`[pgwire] listen`), with clients no one on the
//! project wrote: Debian's psql, psycopg (libpq) and asyncpg (tests/pgwire/clients.py), and
//! node-postgres (tests/pgwire/node_pg.js), against a `logyard serve` with seeded data and
//! tokens. Their answers equal the HTTP API's.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

struct Pg {
    server: Server,
    port: u16,
    ops: String,
    analyst: String,
    ingestor: String,
    /// Reads every stream but not `session_id`.
    support: String,
}

async fn start() -> (tempfile::TempDir, Pg) {
    start_with(&[]).await
}

async fn start_with(env: &[(&str, &str)]) -> (tempfile::TempDir, Pg) {
    let dir = tempfile::tempdir().unwrap();
    let (ops, e1) = create_token("ops", "admin,query,ingest", None);
    let (analyst, e2) = create_token("analyst", "query", Some("storefront"));
    let (ingestor, e3) = create_token("shipper", "ingest", None);
    let (support, e4) = create_token_with("support", "query", &["--deny-fields", "session_id"]);
    let tokens_file = dir.path().join("tokens.toml");
    std::fs::write(&tokens_file, format!("{e1}\n{e2}\n{e3}\n{e4}")).unwrap();
    let port = free_port();
    let mut spec = ServerSpec::local(dir.path())
        .env("LOGYARD_TOKENS_FILE", tokens_file.to_str().unwrap())
        .env("LOGYARD_PGWIRE_LISTEN", &format!("127.0.0.1:{port}"));
    for (key, value) in env {
        spec = spec.env(key, value);
    }
    let server = spec.start();
    for (stream, body) in
        [("storefront", storefront_events(chrono::Utc::now())), ("payments", r#"{"id":"p1","amount":12.5}"#.to_owned())]
    {
        let url = server.url(&format!("/api/v1/streams/{stream}/events?ack=commit"));
        let r = client().post(url).bearer_auth(&ops).body(body).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    (dir, Pg { server, port, ops, analyst, ingestor, support })
}

/// psql with `args`, signed in with `password`: (exit code, stdout, stderr).
fn psql(pg: &Pg, password: &str, args: &[&str]) -> (i32, String, String) {
    let conninfo = format!("host=127.0.0.1 port={} user=someone dbname=logyard sslmode=disable", pg.port);
    output(psql_command(&conninfo, password, args).output().unwrap())
}

/// psql (without prompting) on `conninfo`.
fn psql_command(conninfo: &str, password: &str, args: &[&str]) -> Command {
    let psql = program("LOGYARD_PSQL", "psql", "Debian's postgresql-client (scripts/test.sh installs it)");
    let mut command = Command::new(psql);
    command
        .arg(conninfo)
        .args(["-X", "-w", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(std::process::Stdio::null());
    if password.is_empty() {
        command.env_remove("PGPASSWORD");
    } else {
        command.env("PGPASSWORD", password);
    }
    command
}

fn output(out: std::process::Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// tests/pgwire/clients.py with `args`: its JSON answer.
fn clients_py(args: &[&str]) -> Value {
    let python = program("LOGYARD_TEST_PYTHON", "python3", "scripts/test.sh makes a venv with psycopg and asyncpg");
    let out =
        Command::new(python).arg(common::crate_dir().join("tests/pgwire/clients.py")).args(args).output().unwrap();
    let (code, stdout, stderr) = output(out);
    assert_eq!(code, 0, "clients.py {:?}: {stderr}", args.first());
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

async fn http_rows(pg: &Pg, sql: &str) -> Vec<Value> {
    let r = client()
        .post(pg.server.url("/api/v1/query"))
        .bearer_auth(&pg.ops)
        .json(&serde_json::json!({"sql": sql}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    v["rows"].as_array().unwrap_or_else(|| panic!("{v}")).clone()
}

async fn http_count(pg: &Pg, sql: &str) -> i64 {
    http_rows(pg, sql).await[0]["n"].as_i64().unwrap()
}

#[tokio::test]
async fn psql_lists_describes_and_queries_streams() {
    let (_dir, pg) = start().await;
    let (code, out, err) = psql(&pg, &pg.ops, &["-At", "-c", "SELECT count(*), max(status) FROM storefront"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "600|503");

    let (code, out, err) = psql(&pg, &pg.ops, &["-c", "\\dt"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("storefront") && out.contains("payments"), "{out}");
    let (code, out, err) = psql(&pg, &pg.ops, &["-c", "\\d storefront"]);
    assert_eq!(code, 0, "{err}");
    for column in ["timestamp", "route", "status", "latency_ms", "http.method"] {
        assert!(out.contains(column), "{column} in:\n{out}");
    }

    // A token denied a column: psql's description and every statement go without it.
    let (code, out, err) = psql(&pg, &pg.support, &["-c", "\\d storefront"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("route") && !out.contains("session_id"), "{out}");
    for statement in ["SELECT session_id FROM storefront", "SELECT count(DISTINCT session_id) FROM storefront"] {
        let (code, _, err) = psql(&pg, &pg.support, &["-c", statement]);
        assert_ne!(code, 0, "{statement}");
        assert!(err.contains("No field named session_id"), "{statement}: {err}");
    }
    let (code, out, err) = psql(&pg, &pg.support, &["-c", "SELECT * FROM storefront WHERE id = 'e042'"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("e042") && !out.contains("session_id") && !out.contains("s-2"), "{out}");

    // A query in expanded form, and COPY ... TO STDOUT.
    let (code, out, err) =
        psql(&pg, &pg.ops, &["-x", "-c", "SELECT id, route, status FROM storefront WHERE id = 'e042'"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("id     | e042") && out.contains("status | 200"), "{out}");
    let http = http_rows(&pg, "SELECT route, count(*) AS n FROM storefront GROUP BY route ORDER BY route").await;
    let (code, out, err) = psql(
        &pg,
        &pg.ops,
        &["-At", "-F", ",", "-c", "SELECT route, count(*) AS n FROM storefront GROUP BY route ORDER BY route"],
    );
    assert_eq!(code, 0, "{err}");
    let expected: Vec<String> = http.iter().map(|r| format!("{},{}", r["route"].as_str().unwrap(), r["n"])).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);

    // COPY (query) TO STDOUT, as CSV with a header and as text; a stream's rows by name.
    let (code, out, err) = psql(
        &pg,
        &pg.ops,
        &[
            "-c",
            "COPY (SELECT id, route, status, message FROM storefront WHERE id IN ('e004', 'e005') ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "id,route,status,message\ne004,/products/{id},500,GET /products/{id} 500\ne005,/cart,503,GET /cart 503\n"
    );
    let (code, out, err) =
        psql(&pg, &pg.ops, &["-c", "COPY (SELECT id, order_id FROM storefront WHERE id = 'e004') TO STDOUT"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "e004\t\\N\n");
    let (code, out, err) = psql(&pg, &pg.ops, &["-c", "COPY storefront (id) TO STDOUT WITH CSV"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 600);
    let (code, _, err) = psql(&pg, &pg.ops, &["-c", "COPY storefront FROM STDIN"]);
    assert_ne!(code, 0);
    assert!(err.contains("COPY FROM"), "{err}");

    // Session statements clients send are accepted; SHOW answers what they ask.
    let (code, out, err) = psql(
        &pg,
        &pg.ops,
        &[
            "-At",
            "-c",
            "SET application_name = 'grafana'",
            "-c",
            "SHOW server_version_num",
            "-c",
            "BEGIN",
            "-c",
            "COMMIT",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("160000"), "{out}");

    // Refusals carry PostgreSQL's codes, and the connection stays usable.
    let (code, _, err) = psql(&pg, &pg.ops, &["-c", "DELETE FROM storefront"]);
    assert_ne!(code, 0);
    assert!(err.contains("only SELECT"), "{err}");
    let (code, _, err) = psql(&pg, &pg.ops, &["-c", "SELEC 1"]);
    assert_ne!(code, 0);
    assert!(err.contains("syntax error"), "{err}");
    let (code, out, err) = psql(&pg, &pg.ops, &["-At", "-c", "SELECT 1", "-c", "SELECT count(*) FROM storefront"]);
    assert_eq!((code, out.as_str()), (0, "1\n600\n"), "{err}");
}

#[tokio::test]
async fn ctrl_c_in_psql_cancels_the_running_query() {
    // One query at a time: the slot of the cancelled query must come back.
    let (_dir, pg) =
        start_with(&[("LOGYARD_LIMITS_MAX_CONCURRENT_QUERIES", "1"), ("LOGYARD_QUERY_TIMEOUT", "120s")]).await;
    let conninfo = format!("host=127.0.0.1 port={} user=someone dbname=logyard sslmode=disable", pg.port);
    // 10^11 rows: far longer than this test.
    let endless = "SELECT count(*) FROM generate_series(1, 100000000000)";
    let child = psql_command(&conninfo, &pg.ops, &["-c", endless])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let sent = std::time::Instant::now();
    signal(child.id() as i32, "INT");
    let (code, _, err) = output(child.wait_with_output().unwrap());
    let took = sent.elapsed();
    assert_ne!(code, 0);
    assert!(err.contains("canceling statement due to user request"), "{err}");
    assert!(took < std::time::Duration::from_secs(10), "psql ended {took:?} after Ctrl-C");
    let (code, out, err) = psql(&pg, &pg.ops, &["-At", "-c", "SELECT count(*) FROM storefront"]);
    assert_eq!((code, out.trim()), (0, "600"), "the slot is free again: {err}");
}

#[tokio::test]
async fn tokens_decide_who_may_connect_and_what_they_see() {
    let (_dir, pg) = start().await;
    // The SQLSTATEs as a driver sees them (asyncpg raises them as they come).
    let refused = clients_py(&["refusals", &pg.port.to_string(), &pg.ingestor, &pg.analyst]);
    assert_eq!(refused["empty password"]["sqlstate"], "28P01", "{refused}");
    assert_eq!(refused["wrong token"]["sqlstate"], "28P01", "{refused}");
    assert_eq!(refused["token without query"]["sqlstate"], "42501", "{refused}");
    assert_eq!(refused["other stream"]["sqlstate"], "42P01", "{refused}");
    assert!(!refused.to_string().contains(&pg.ingestor) && !refused.to_string().contains(&pg.analyst));
    // No password at all: the server asks for one and lets nobody in without it.
    let (code, _, err) = psql(&pg, "", &["-c", "SELECT 1"]);
    assert_ne!(code, 0);
    assert!(err.contains("no password supplied"), "{err}");

    // A token limited to one stream: the other does not exist, in queries and catalogs.
    let (code, out, err) = psql(&pg, &pg.analyst, &["-At", "-c", "SELECT count(*) FROM storefront"]);
    assert_eq!((code, out.trim()), (0, "600"), "{err}");
    let (code, _, err) = psql(&pg, &pg.analyst, &["-c", "SELECT * FROM payments"]);
    assert_ne!(code, 0);
    assert!(err.contains("payments"), "{err}");
    let (code, out, err) = psql(&pg, &pg.analyst, &["-c", "\\dt"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("storefront") && !out.contains("payments"), "{out}");
    let (code, out, err) = psql(
        &pg,
        &pg.analyst,
        &["-At", "-c", "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"],
    );
    assert_eq!((code, out.trim()), (0, "storefront"), "{err}");
}

#[tokio::test]
async fn tls_is_verified_and_can_be_required() {
    // The listener's own certificate: the HTTP port stays plain (as behind a load balancer).
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "ca");
    make_server_cert(dir.path(), "ca", "server", "DNS:localhost,IP:127.0.0.1");
    let (cert, key, ca) = (dir.path().join("server.crt"), dir.path().join("server.key"), dir.path().join("ca.crt"));
    let (_data, pg) = start_with(&[
        ("LOGYARD_PGWIRE_TLS_CERT_FILE", cert.to_str().unwrap()),
        ("LOGYARD_PGWIRE_TLS_KEY_FILE", key.to_str().unwrap()),
        ("LOGYARD_PGWIRE_REQUIRE_TLS", "true"),
    ])
    .await;
    let verified = format!(
        "host=localhost port={} user=someone dbname=logyard sslmode=verify-full sslrootcert={}",
        pg.port,
        ca.display()
    );
    let (code, out, err) = output(
        psql_command(&verified, &pg.ops, &["-At", "-c", "SELECT count(*) FROM storefront", "-c", "\\conninfo"])
            .output()
            .unwrap(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("600\n") && out.contains("SSL connection"), "{out}");
    // Plain TCP is refused.
    let plain = format!("host=127.0.0.1 port={} user=someone dbname=logyard sslmode=disable", pg.port);
    let (code, _, err) = output(psql_command(&plain, &pg.ops, &["-c", "SELECT 1"]).output().unwrap());
    assert_ne!(code, 0);
    assert!(err.contains("only TLS"), "{err}");
    // A certificate from another CA is not trusted by verify-full.
    make_ca(dir.path(), "other");
    let other = verified.replace(ca.to_str().unwrap(), dir.path().join("other.crt").to_str().unwrap());
    let (code, _, err) = output(psql_command(&other, &pg.ops, &["-c", "SELECT 1"]).output().unwrap());
    assert_ne!(code, 0);
    assert!(err.contains("certificate verify failed"), "{err}");
}

#[tokio::test]
async fn drivers_get_native_types_and_parameters() {
    let (_dir, pg) = start().await;
    let got = clients_py(&["basics", &pg.port.to_string(), &pg.ops]);
    let checkout_errors =
        http_count(&pg, "SELECT count(*) AS n FROM storefront WHERE status >= 500 AND route = '/checkout'").await;
    assert_eq!(got["psycopg_text"], checkout_errors);
    let e042 = &http_rows(&pg, "SELECT id, status, latency_ms, timestamp FROM storefront WHERE id = 'e042'").await[0];
    let e042_time = chrono::DateTime::parse_from_rfc3339(e042["timestamp"].as_str().unwrap()).unwrap();
    for key in ["psycopg_binary", "asyncpg_row"] {
        assert_eq!(got[key][0], "e042", "{got}");
        assert_eq!(got[key][1], e042["status"], "{key}: an integer, decoded natively");
        assert_eq!(got[key][2], e042["latency_ms"], "{key}: a float");
        let time = chrono::DateTime::parse_from_rfc3339(got[key][3].as_str().unwrap()).unwrap();
        assert_eq!(time, e042_time, "{key}: a timestamp with its zone");
    }
    assert_eq!(got["asyncpg_flattened"], "POST", "a nested field, flattened to its own column");
    let routes = http_rows(&pg, "SELECT route, count(*) AS n FROM storefront GROUP BY route ORDER BY route").await;
    let routes: Vec<Value> = routes.iter().map(|r| serde_json::json!([r["route"], r["n"]])).collect();
    assert_eq!(got["psycopg_routes"], Value::Array(routes.clone()));
    let mut prepared = Vec::new();
    for status in [200, 404, 500, 503] {
        prepared.push(http_count(&pg, &format!("SELECT count(*) AS n FROM storefront WHERE status = {status}")).await);
    }
    assert_eq!(got["asyncpg_prepared"], serde_json::json!(prepared));

    // node-postgres: parameters, and the OIDs it decodes by.
    let node = program("LOGYARD_NODE", "node", "scripts/test.sh installs Debian's nodejs");
    let out = Command::new(node)
        .arg(common::crate_dir().join("tests/pgwire/node_pg.js"))
        .args([&pg.port.to_string(), &pg.ops])
        .env("NODE_PATH", node_modules())
        .output()
        .unwrap();
    let (code, stdout, stderr) = output(out);
    assert_eq!(code, 0, "{stderr}");
    let node: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(node["count"], checkout_errors.to_string(), "bigint arrives as a string in node-postgres");
    assert_eq!(node["row"]["id"], "e042");
    assert_eq!(node["row"]["status"], e042["status"].to_string(), "bigint, as a string");
    assert_eq!(node["row"]["latency_ms"].as_f64(), e042["latency_ms"].as_f64(), "float8, a number");
    let time = chrono::DateTime::parse_from_rfc3339(node["row"]["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(time, e042_time);
    assert_eq!(node["row"]["method"], "POST");
    // text 25, int8 20, float8 701, timestamptz 1184
    assert_eq!(
        node["types"],
        serde_json::json!({"id": 25, "status": 20, "latency_ms": 701, "timestamp": 1184, "method": 25})
    );
    assert_eq!(node["routes"], Value::Array(routes));
}

/// The benchmark's four queries (scripts/bench/query.py), over one generated day.
fn benchmark_queries(order_id: &str) -> Value {
    serde_json::json!({
        "errors per minute, one hour": "SELECT date_trunc('minute', timestamp) AS minute, count(*) AS errors FROM storefront \
            WHERE status >= 500 AND timestamp >= '2026-11-22T13:00:00Z' AND timestamp < '2026-11-22T14:00:00Z' \
            GROUP BY 1 ORDER BY 1",
        "latency p50/p95/p99 by route, one day": "SELECT route, \
            approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50, \
            approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95, \
            approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99 \
            FROM storefront WHERE date = '2026-11-22' GROUP BY route ORDER BY route",
        "top customers by 5xx, one day": "SELECT customer_id, count(*) AS errors FROM storefront \
            WHERE date = '2026-11-22' AND status >= 500 AND customer_id IS NOT NULL \
            GROUP BY customer_id ORDER BY errors DESC, customer_id LIMIT 10",
        "all events of one order": format!("SELECT * FROM storefront WHERE order_id = '{order_id}' ORDER BY timestamp"),
    })
}

#[tokio::test]
async fn benchmark_queries_and_a_100k_row_cursor_equal_http() {
    use logyard_bench::storefront::{Generator, Spec};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // One partition: an approximate percentile (a t-digest) then merges its input in one order,
    // so that two runs of a query give the same numbers.
    let server = ServerSpec::local(dir.path())
        .env("LOGYARD_PGWIRE_LISTEN", &format!("127.0.0.1:{port}"))
        .env("LOGYARD_QUERY_THREADS", "1")
        .start();
    let start = chrono::NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
    let mut generator = Generator::new(Spec { events: 100_000, seed: 7, start, days: 1, ..Spec::default() });
    let mut logs = Vec::new();
    generator.write_all(&mut logs).unwrap();
    let order_id = generator.placed_orders()[0].id.clone();
    // In bodies below the request size limit.
    let text = String::from_utf8(logs).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for part in lines.chunks(25_000) {
        let (status, body) = ingest(&server, "storefront", part.join("\n"), "?ack=commit").await;
        assert_eq!(status, 200, "{body}");
    }

    let queries = benchmark_queries(&order_id);
    // No tokens: anyone on loopback may query (the password is not asked for).
    let got = clients_py(&["same-answers", &port.to_string(), "unused", &server.url(""), &queries.to_string()]);
    for driver in ["asyncpg", "psycopg"] {
        for name in queries.as_object().unwrap().keys() {
            let verdict = &got[driver][name];
            assert_eq!(verdict["problems"], serde_json::json!([]), "{driver}, {name}: {verdict}");
            assert!(verdict["rows"].as_u64().unwrap() > 0, "{driver}, {name}: no rows");
        }
    }
    let expected =
        rows(&server, "SELECT count(*) AS n, count(DISTINCT trace_id) AS ids, sum(status) AS s FROM storefront").await;
    assert_eq!(got["cursor"]["rows"], 100_000);
    assert_eq!(got["cursor"]["rows"], expected[0]["n"]);
    assert_eq!(got["cursor"]["distinct_ids"], expected[0]["ids"]);
    assert_eq!(got["cursor"]["status_sum"], expected[0]["s"]);
}

/// Grafana's PostgreSQL macros as its backend expands them before it sends a query
/// (grafana/grafana, pkg/tsdb/grafana-postgresql-datasource/macros.go, TimescaleDB off):
/// `$__timeFilter(c)` is `c BETWEEN 'from' AND 'to'` (RFC 3339 in UTC), `$__timeGroup(c, '1m')`
/// is `floor(extract(epoch from c)/60)*60` and `$__timeGroupAlias` adds `AS "time"`;
/// `$__timeFrom()`, `$__timeTo()` are the quoted bounds, `$__time(c)` is `c AS "time"`.
fn grafana_expand(sql: &str, from: &str, to: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(start) = rest.find("$__") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let name_len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
        let (name, tail) = after.split_at(name_len);
        let Some(args_end) = tail.strip_prefix('(').and_then(|t| t.find(')')) else {
            out.push('$');
            rest = after;
            continue;
        };
        let args: Vec<&str> = tail[1..=args_end].split(',').map(str::trim).collect();
        let seconds = |interval: &str| match interval.trim_matches('\'').split_at(interval.trim_matches('\'').len() - 1)
        {
            (n, "s") => n.parse::<u64>().unwrap(),
            (n, "m") => n.parse::<u64>().unwrap() * 60,
            (n, "h") => n.parse::<u64>().unwrap() * 3600,
            other => panic!("interval {other:?}"),
        };
        let expanded = match name {
            "__time" => format!("{} AS \"time\"", args[0]),
            "__timeFilter" => format!("{} BETWEEN '{from}' AND '{to}'", args[0]),
            "__timeFrom" => format!("'{from}'"),
            "__timeTo" => format!("'{to}'"),
            "__timeGroup" => {
                let s = seconds(args[1]);
                format!("floor(extract(epoch from {})/{s})*{s}", args[0])
            }
            "__timeGroupAlias" => {
                let s = seconds(args[1]);
                format!("floor(extract(epoch from {})/{s})*{s} AS \"time\"", args[0])
            }
            other => panic!("a macro Grafana does not have: {other}"),
        };
        out.push_str(&expanded);
        rest = &tail[args_end + 2..];
    }
    out.push_str(rest);
    out
}

#[test]
fn grafana_macros_expand_as_grafana_does() {
    let sql =
        "SELECT $__timeGroupAlias(\"timestamp\", '1m'), count(*) FROM s WHERE $__timeFilter(\"timestamp\") GROUP BY 1";
    assert_eq!(
        grafana_expand(sql, "2026-11-25T12:00:00Z", "2026-11-25T14:00:00Z"),
        "SELECT floor(extract(epoch from \"timestamp\")/60)*60 AS \"time\", count(*) FROM s \
         WHERE \"timestamp\" BETWEEN '2026-11-25T12:00:00Z' AND '2026-11-25T14:00:00Z' GROUP BY 1"
    );
}

#[tokio::test]
async fn grafana_probes_and_the_dashboard_panels_answer() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let shop = common::pg::shop_with(20_000, &[("LOGYARD_PGWIRE_LISTEN", &listen)]).await;
    let (from, to) = ("2026-11-25T12:00:00Z", "2026-11-25T14:00:00Z");
    let run = |statements: Vec<String>| {
        let got = clients_py(&["rows", &port.to_string(), "unused", &Value::from(statements.clone()).to_string()]);
        let results = got["results"].as_array().unwrap().clone();
        for (sql, result) in statements.iter().zip(&results) {
            assert!(result.get("error").is_none(), "{sql}\n{result}");
        }
        results
    };

    // What the data source sends: its health check, the version and TimescaleDB probes, and
    // the query builder's schema, table and column lists
    // (public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts).
    let probes = run(vec![
        "SELECT 1".into(),
        "SELECT current_setting('server_version_num')::int/100 as version".into(),
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'".into(),
        "SELECT schema_name AS \"name\" FROM information_schema.schemata \
         WHERE schema_name NOT IN ('information_schema', 'pg_catalog', 'pg_toast') ORDER BY schema_name"
            .into(),
        "SELECT CASE WHEN quote_ident(table_schema) IN ( SELECT CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END \
         FROM generate_series(array_lower(string_to_array(current_setting('search_path'),','),1), \
         array_upper(string_to_array(current_setting('search_path'),','),1)) as i, \
         string_to_array(current_setting('search_path'),',') s ) THEN quote_ident(table_name) \
         ELSE quote_ident(table_schema) || '.' || quote_ident(table_name) END AS \"table\" \
         FROM information_schema.tables WHERE quote_ident(table_schema) NOT IN ('information_schema', 'pg_catalog') \
         ORDER BY 1"
            .into(),
        "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\" FROM information_schema.columns \
         WHERE CASE WHEN array_length(parse_ident('storefront'),1) = 2 \
         THEN quote_ident(table_schema) = (parse_ident('storefront'))[1] AND quote_ident(table_name) = (parse_ident('storefront'))[2] \
         ELSE quote_ident(table_name) = 'storefront' END"
            .into(),
    ]);
    assert_eq!(probes[0]["rows"], serde_json::json!([[1]]));
    assert_eq!(probes[1]["rows"], serde_json::json!([[1600]]));
    assert_eq!(probes[2]["rows"], serde_json::json!([]));
    assert!(probes[3]["rows"].as_array().unwrap().contains(&serde_json::json!(["public"])), "{}", probes[3]);
    let tables = probes[4]["rows"].to_string();
    assert!(tables.contains("storefront"), "{tables}");
    let columns: Vec<&str> =
        probes[5]["rows"].as_array().unwrap().iter().map(|r| r[0].as_str().unwrap().trim_matches('"')).collect();
    for column in ["timestamp", "route", "status", "latency_ms", "session_id", "order_id"] {
        assert!(columns.contains(&column), "{column} in {columns:?}");
    }

    // The dashboard's panels, expanded as Grafana expands them, over 12:00-14:00.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(common::crate_dir().join("../../deploy/grafana/dashboards/storefront.json")).unwrap(),
    )
    .unwrap();
    let panels: Vec<(String, String)> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["title"].as_str().unwrap().to_owned(), p["targets"][0]["rawSql"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(panels.len(), 6);
    let results = run(panels.iter().map(|(_, sql)| grafana_expand(sql, from, to)).collect());
    let panel = |title: &str| &results[panels.iter().position(|(t, _)| t == title).unwrap()];
    let in_range = format!("\"timestamp\" >= '{from}' AND \"timestamp\" <= '{to}'");

    // Requests per second: minutes of the range, adding up to every request in it.
    let requests = panel("Requests per second")["rows"].as_array().unwrap().clone();
    assert_eq!(requests.len(), 120, "the minutes 12:00 to 13:59 (no request at 14:00:00.000)");
    let total: f64 = requests.iter().map(|r| r[1].as_f64().unwrap() * 60.0).sum();
    assert_eq!(
        total.round() as i64,
        count(&shop.server, &format!("SELECT count(*) AS n FROM storefront WHERE {in_range}")).await
    );
    assert_eq!(requests[0][0].as_f64().unwrap(), 1_795_608_000.0, "time is epoch seconds of 12:00");

    // 5xx rate by route: the same as the HTTP API computes without macros.
    let expected = rows(
        &shop.server,
        &format!(
            "SELECT date_trunc('minute', \"timestamp\") AS t, route, \
             avg(CASE WHEN status >= 500 THEN 1.0 ELSE 0.0 END) AS rate \
             FROM storefront WHERE {in_range} GROUP BY 1, 2 ORDER BY 1, 2"
        ),
    )
    .await;
    let rates = panel("5xx rate by route")["rows"].as_array().unwrap().clone();
    assert_eq!(rates.len(), expected.len());
    for (got, want) in rates.iter().zip(&expected) {
        let minute = chrono::DateTime::parse_from_rfc3339(want["t"].as_str().unwrap()).unwrap().timestamp() as f64;
        assert_eq!((got[0].as_f64().unwrap(), &got[1]), (minute, &want["route"]));
        assert!((got[2].as_f64().unwrap() - want["rate"].as_f64().unwrap()).abs() < 1e-12, "{got:?} {want}");
    }
    // The payment incident (13:00-13:20) shows.
    assert!(rates.iter().any(|r| r[1] == "/api/payments" && r[2].as_f64().unwrap() > 0.3), "{rates:?}");

    // p95 latency: one value per route and five minutes, within that group's latencies.
    let p95 = panel("p95 latency by route")["rows"].as_array().unwrap().clone();
    let bounds = rows(
        &shop.server,
        &format!(
            "SELECT date_bin(INTERVAL '5 minutes', \"timestamp\", TIMESTAMP '1970-01-01T00:00:00Z') AS t, route, \
             min(latency_ms) AS lo, max(latency_ms) AS hi FROM storefront WHERE {in_range} GROUP BY 1, 2 ORDER BY 1, 2"
        ),
    )
    .await;
    assert_eq!(p95.len(), bounds.len());
    for (got, b) in p95.iter().zip(&bounds) {
        let v = got[2].as_f64().unwrap();
        assert!(b["lo"].as_f64().unwrap() <= v && v <= b["hi"].as_f64().unwrap(), "{got:?} {b}");
    }

    // Top error messages: as counted over HTTP.
    let top = rows(
        &shop.server,
        &format!(
            "SELECT message, route, count(*) AS errors FROM storefront \
             WHERE {in_range} AND status >= 500 AND message IS NOT NULL \
             GROUP BY message, route ORDER BY errors DESC, message, route LIMIT 10"
        ),
    )
    .await;
    let got: Vec<Value> = panel("Top error messages")["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| serde_json::json!([r[0], r[1], r[2]]))
        .collect();
    let want: Vec<Value> = top.iter().map(|r| serde_json::json!([r["message"], r["route"], r["errors"]])).collect();
    assert_eq!(got, want);

    // Orders at risk: each pending in PostgreSQL now, each of a session that failed.
    let at_risk = panel("Orders at risk")["rows"].as_array().unwrap().clone();
    assert!(!at_risk.is_empty(), "the incident leaves pending orders");
    for order in &at_risk {
        let id = order[0].as_str().unwrap();
        assert_eq!(shop.pg.psql(&format!("SELECT status FROM orders WHERE id = '{id}'")).trim(), "pending", "{id}");
        assert!(order[2].as_f64().unwrap() > 0.0, "amount, a numeric: {order:?}");
    }

    // The log panel: newest first, errors and warnings only.
    let logs = panel("Errors and warnings")["rows"].as_array().unwrap().clone();
    let expected_logs = count(
        &shop.server,
        &format!("SELECT count(*) AS n FROM storefront WHERE {in_range} AND level IN ('error', 'warn')"),
    )
    .await;
    assert_eq!(logs.len() as i64, expected_logs.min(1000));
    assert!(logs.windows(2).all(|w| w[0][0].as_str() >= w[1][0].as_str()));
    assert!(logs.iter().all(|r| r[2] == "error" || r[2] == "warn"));
}
