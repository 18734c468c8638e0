//! The orders database: a throwaway PostgreSQL 15 with TLS (see `common::pg`). verify-full
//! connects; a wrong CA, a wrong host name and plain TCP fail with clear errors; filters,
//! columns and limits reach PostgreSQL as parameterized SQL; a join of logs and orders equals
//! the same join computed by PostgreSQL alone; a rotated Secrets Manager password is read
//! again after one refusal, without a restart.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::pg::{PASSWORD, PgServer, Shop, generated, shop};
use common::*;
use serde_json::{Value, json};

fn query_cli(storage: &Path, sql: &str, env: &[(String, String)]) -> (i32, String, String) {
    cli(&["query", "--storage", storage.to_str().unwrap(), "--format", "json", sql], env)
}

fn with(env: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    let mut out: Vec<_> = env.iter().filter(|(k, _)| k != key).cloned().collect();
    out.push((key.into(), value.into()));
    out
}

#[test]
fn verify_full_connects_and_tls_mistakes_fail_clearly() {
    let pg = PgServer::start();
    let (_, orders) = generated(3_000);
    pg.load_orders(&orders);
    let storage = tempfile::tempdir().unwrap();
    let env = pg.env();
    let count = "SELECT count(*) AS n FROM pg.orders";

    let (code, out, err) = query_cli(storage.path(), count, &env);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rows"][0]["n"], orders.len(), "{out}");

    let target = format!("localhost:{}/shop", pg.port);
    let (code, _, err) =
        query_cli(storage.path(), count, &with(&env, "LOGYARD_ORDERS_CA_FILE", pg.other_ca_file.to_str().unwrap()));
    assert_ne!(code, 0);
    assert!(err.contains(&format!("TLS to the orders database at {target} failed")), "{err}");
    assert!(err.contains("not signed by a trusted CA"), "{err}");

    let (code, _, err) = query_cli(storage.path(), count, &with(&env, "LOGYARD_ORDERS_HOST", "127.0.0.1"));
    assert_ne!(code, 0);
    assert!(err.contains("not for the host name \"127.0.0.1\""), "{err}");

    let (code, _, err) = query_cli(storage.path(), count, &with(&env, "LOGYARD_ORDERS_SSLMODE", "disable"));
    assert_ne!(code, 0);
    assert!(err.contains("refused user \"shop\"") && err.contains("no encryption"), "{err}");
    assert!(err.contains("sslmode=disable"), "plain TCP is warned about: {err}");

    let (code, _, err) = query_cli(storage.path(), count, &with(&env, "SHOP_DB_PASSWORD", "wrong-password"));
    assert_ne!(code, 0);
    assert!(err.contains("password authentication failed for user \"shop\""), "{err}");
    assert!(!err.contains("wrong-password") && !err.contains(PASSWORD), "no password in errors: {err}");

    let (code, _, err) = query_cli(storage.path(), count, &with(&env, "LOGYARD_ORDERS_SSLMODE", "prefer"));
    assert_ne!(code, 0);
    assert!(err.contains("orders.sslmode"), "{err}");
}

#[tokio::test]
async fn filters_reach_postgres_as_parameters_and_joins_match_postgres() {
    let Shop { pg, server, logs, dir: _dir, .. } = shop(30_000).await;

    // Columns, filters and the limit are in the statement PostgreSQL receives; the values
    // are parameters.
    let sql = "SELECT id, amount FROM pg.orders WHERE status = 'pending' AND currency = 'USD' \
               AND created_at >= '2026-11-25T12:00:00Z' LIMIT 3";
    let got = rows(&server, sql).await;
    assert_eq!(got.len(), 3, "{got:?}");
    let log = pg.log();
    let statement = log
        .lines()
        .find(|l| l.contains("FROM \"public\".\"orders\" WHERE"))
        .unwrap_or_else(|| panic!("no pushed-down statement in the server log:\n{log}"));
    assert!(statement.contains("SELECT \"id\"::text, \"amount\"::text FROM \"public\".\"orders\""), "{statement}");
    assert!(statement.contains("\"status\" = $1::text::text"), "{statement}");
    assert!(statement.contains("\"created_at\" >= $3::text::timestamp with time zone"), "{statement}");
    assert!(statement.contains("LIMIT $4::text::bigint"), "{statement}");
    assert!(!statement.contains("pending"), "values travel as parameters: {statement}");
    assert!(log.contains("$1 = 'pending'") && log.contains("$2 = 'USD'"), "{log}");

    // A join of logs and orders: the same answer as PostgreSQL's own join of the same data.
    let facts = pg.dir.path().join("facts.csv");
    let mut f = std::fs::File::create(&facts).unwrap();
    for line in logs.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let e: Value = serde_json::from_slice(line).unwrap();
        if let Some(order) = e["order_id"].as_str() {
            writeln!(f, "{},{},{}", order, e["status"], e["timestamp"].as_str().unwrap()).unwrap();
        }
    }
    drop(f);
    std::fs::set_permissions(&facts, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let script = pg.dir.path().join("facts.sql");
    std::fs::write(
        &script,
        format!(
            "CREATE TABLE facts (order_id text, status int, ts timestamptz);\n\\copy facts FROM '{}' WITH (FORMAT csv)\n",
            facts.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    pg.psql_file(&script);
    let join = "SELECT o.status, o.currency, count(*) AS n, sum(o.amount) AS total \
                FROM storefront s JOIN pg.orders o ON s.order_id = o.id \
                WHERE s.status >= 500 AND s.timestamp >= '2026-11-25T06:00:00Z' \
                GROUP BY 1, 2 ORDER BY 1, 2";
    let ours: Vec<String> = rows(&server, join)
        .await
        .iter()
        .map(|r| {
            format!(
                "{}|{}|{}|{}",
                r["status"].as_str().unwrap(),
                r["currency"].as_str().unwrap(),
                r["n"],
                // numeric(12,2): a JSON number here, read back as a float, so its two places
                // are written again as psql prints them.
                r["total"].as_str().map_or_else(|| format!("{:.2}", r["total"].as_f64().unwrap()), str::to_owned)
            )
        })
        .collect();
    let theirs = pg.psql(
        "SELECT o.status, o.currency, count(*), sum(o.amount) FROM facts s JOIN orders o ON s.order_id = o.id \
         WHERE s.status >= 500 AND s.ts >= '2026-11-25T06:00:00Z' GROUP BY 1, 2 ORDER BY 1, 2",
    );
    let theirs: Vec<String> = theirs.lines().map(str::to_owned).collect();
    assert!(!theirs.is_empty(), "the data has failed checkouts");
    assert_eq!(ours, theirs);
}

#[test]
fn sessions_are_read_only_with_a_statement_timeout_and_a_password_file() {
    let pg = PgServer::start();
    // Views whose reading would write, or take 3 seconds.
    pg.psql(
        "CREATE TABLE touched (n int); \
         CREATE FUNCTION touch() RETURNS int LANGUAGE sql AS 'INSERT INTO touched VALUES (1) RETURNING n'; \
         CREATE VIEW writes AS SELECT touch() AS n; \
         CREATE VIEW slow AS SELECT pg_sleep(3)::text AS s; \
         GRANT ALL ON touched, writes, slow TO shop",
    );
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let mut env: Vec<(String, String)> =
        pg.env().into_iter().filter(|(k, _)| k != "LOGYARD_ORDERS_PASSWORD_ENV" && k != "SHOP_DB_PASSWORD").collect();
    env.push(("LOGYARD_ORDERS_PASSWORD_FILE".into(), password_file.display().to_string()));
    env.push(("LOGYARD_ORDERS_TABLES".into(), "[\"writes\", \"slow\"]".into()));
    env.push(("LOGYARD_ORDERS_STATEMENT_TIMEOUT".into(), "500ms".into()));

    let (code, _, err) = query_cli(dir.path(), "SELECT n FROM pg.writes", &env);
    assert_ne!(code, 0);
    assert!(err.contains("cannot execute INSERT in a read-only transaction"), "{err}");
    assert_eq!(pg.psql("SELECT count(*) FROM touched"), "0");

    let started = std::time::Instant::now();
    let (code, _, err) = query_cli(dir.path(), "SELECT s FROM pg.slow", &env);
    assert_ne!(code, 0);
    assert!(err.contains("canceling statement due to statement timeout"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "stopped by the timeout, not by the end of the sleep");
}

/// Sends one Secrets Manager call to moto (which checks no signature).
async fn secrets_manager(moto: &Moto, target: &str, body: Value) -> Value {
    let r = client()
        .post(&moto.endpoint)
        .header("x-amz-target", format!("secretsmanager.{target}"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=test/20261126/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{target}: {status} {v}");
    v
}

#[tokio::test]
async fn a_rotated_secret_is_read_again_without_a_restart() {
    let pg = PgServer::start();
    let (_, orders) = generated(2_000);
    pg.load_orders(&orders);
    let moto = Moto::start();
    let secret = |password: &str| {
        json!({"username": "shop", "password": password, "engine": "postgres", "host": "localhost", "port": pg.port, "dbname": "shop"}).to_string()
    };
    secrets_manager(&moto, "CreateSecret", json!({"Name": "shop/db", "SecretString": secret(PASSWORD)})).await;

    let dir = tempfile::tempdir().unwrap();
    let mut spec = ServerSpec::local(dir.path());
    spec.env
        .extend(pg.env().into_iter().filter(|(k, _)| k != "LOGYARD_ORDERS_PASSWORD_ENV" && k != "SHOP_DB_PASSWORD"));
    spec.env.push(("LOGYARD_ORDERS_SECRET_ID".to_owned(), "shop/db".to_owned()));
    spec.env.extend(aws_env("AWS_ENDPOINT_URL", &moto.endpoint, "test", "test"));
    let server = spec.start();
    let pending = orders.iter().filter(|o| o.status == "pending").count() as i64;
    let sql = "SELECT count(*) FROM pg.orders WHERE status = 'pending'";
    assert_eq!(count(&server, sql).await, pending);

    // Rotation: a new password in the database and in the secret; the pooled connection is
    // gone (as after a failover), so the next query logs in again.
    let new_password = "rotated-password-2";
    pg.psql(&format!("ALTER ROLE shop PASSWORD '{new_password}'"));
    secrets_manager(&moto, "PutSecretValue", json!({"SecretId": "shop/db", "SecretString": secret(new_password)}))
        .await;
    pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'shop'");
    tokio::time::sleep(Duration::from_millis(100)).await;

    assert_eq!(count(&server, sql).await, pending, "{}", server.logs());
    let logs = server.logs();
    assert!(logs.contains("refused the cached credentials; reading them again"), "{logs}");
    assert_eq!(pg.log().matches("password authentication failed for user \"shop\"").count(), 1, "one refusal");
    assert!(!logs.contains(new_password) && !logs.contains(PASSWORD), "no password in the logs");
}
