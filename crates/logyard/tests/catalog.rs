//! `logyard catalog glue` against moto's Glue and S3: one Glue table per stream as Athena
//! reads Delta Lake tables, updated when a column appears, removed when its stream is gone,
//! and no table logyard did not make is touched.

mod common;

use common::*;
use serde_json::{Value, json};

/// A Glue call straight to moto: it checks no signature, but finds the service, region and
/// account in the Authorization header's credential scope.
async fn glue(moto: &Moto, operation: &str, body: Value) -> Value {
    let scope = "Credential=AKIAGLUETEST00000001/20261205/us-east-1/glue/aws4_request";
    let r = client()
        .post(format!("{}/", moto.endpoint))
        .header("authorization", format!("AWS4-HMAC-SHA256 {scope}, SignedHeaders=host, Signature=0"))
        .header("x-amz-target", format!("AWSGlue.{operation}"))
        .header("content-type", "application/x-amz-json-1.1")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{operation}: {e}: {text}"));
    assert!(status.is_success(), "{operation}: {status} {answer}");
    answer
}

fn sync(env: &[(String, String)], storage: &str, extra: &[&str]) -> Value {
    let mut args = vec!["catalog", "glue", "--database", "shop_logs", "--storage", storage];
    args.extend_from_slice(extra);
    let (code, out, err) = cli(&args, env);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect()
}

#[tokio::test]
async fn stream_tables_are_registered_in_glue_as_athena_reads_delta_lake_tables() {
    let moto = Moto::start();
    let bucket = moto.bucket("lake");
    let dir = tempfile::tempdir().unwrap();
    let env = aws_env("AWS_ENDPOINT_URL", &moto.proxied, "AKIAGLUETEST00000001", "glue-secret");
    let storage = format!("s3://{bucket}/shop");
    let spec = ServerSpec { listen: None, storage: storage.clone(), wal_dir: dir.path().join("wal"), env: env.clone() };
    let server = spec.start();
    assert_eq!(ingest(&server, "shop-web", events("w", 5), "?ack=commit").await.0, 200);
    assert_eq!(ingest(&server, "payments", events("p", 3), "?ack=commit").await.0, 200);

    // Without the database, it says so; with --create-database it makes it.
    let (code, _, err) = cli(&["catalog", "glue", "--database", "shop_logs", "--storage", &storage], &env);
    assert_ne!(code, 0);
    assert!(err.contains("Glue database shop_logs does not exist"), "{err}");
    let report = sync(&env, &storage, &["--create-database"]);
    assert_eq!(names(&report["created"]), ["payments", "shop_web"], "{report}");

    let table =
        glue(&moto, "GetTable", json!({"DatabaseName": "shop_logs", "Name": "shop_web"})).await["Table"].clone();
    let location = format!("s3://{bucket}/shop/tables/shop-web/");
    assert_eq!(table["TableType"], "EXTERNAL_TABLE", "{table}");
    assert_eq!(table["Parameters"]["table_type"], "DELTA", "{table}");
    assert_eq!(table["Parameters"]["logyard.stream"], "shop-web");
    assert_eq!(table["StorageDescriptor"]["Location"], location);
    assert_eq!(table["PartitionKeys"], json!([{"Name": "date", "Type": "date"}]));
    let columns: Vec<(String, String)> = table["StorageDescriptor"]["Columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["Name"].as_str().unwrap().to_owned(), c["Type"].as_str().unwrap().to_owned()))
        .collect();
    for expected in [("timestamp", "timestamp"), ("id", "string"), ("status", "bigint"), ("latency_ms", "double")] {
        assert!(columns.contains(&(expected.0.into(), expected.1.into())), "{expected:?} in {columns:?}");
    }

    // A table someone else made, and one logyard made for a stream that is gone.
    let other = json!({"Name": "other", "TableType": "EXTERNAL_TABLE", "StorageDescriptor": {"Location": "s3://x/y/"}});
    glue(&moto, "CreateTable", json!({"DatabaseName": "shop_logs", "TableInput": other})).await;
    let gone = json!({"Name": "gone", "Parameters": {"logyard.stream": "gone"}, "StorageDescriptor": {"Location": "s3://x/z/"}});
    glue(&moto, "CreateTable", json!({"DatabaseName": "shop_logs", "TableInput": gone})).await;

    // A new column: the table is updated; the other stream's is left as it is.
    let coupon = "{\"id\":\"c-1\",\"status\":200,\"coupon\":\"WINTER\"}\n";
    assert_eq!(ingest(&server, "shop-web", coupon, "?ack=commit").await.0, 200);
    let report = sync(&env, &storage, &[]);
    assert_eq!(names(&report["updated"]), ["shop_web"], "{report}");
    assert_eq!(names(&report["unchanged"]), ["payments"], "{report}");
    assert_eq!(names(&report["removed"]), ["gone"], "{report}");
    let table =
        glue(&moto, "GetTable", json!({"DatabaseName": "shop_logs", "Name": "shop_web"})).await["Table"].clone();
    let coupon_column = json!({"Name": "coupon", "Type": "string"});
    assert!(table["StorageDescriptor"]["Columns"].as_array().unwrap().contains(&coupon_column), "{table}");
    let left = glue(&moto, "GetTables", json!({"DatabaseName": "shop_logs"})).await;
    let mut left: Vec<&str> =
        left["TableList"].as_array().unwrap().iter().map(|t| t["Name"].as_str().unwrap()).collect();
    left.sort();
    assert_eq!(left, ["other", "payments", "shop_web"]);

    // Named streams only: nothing else is removed, nothing changes twice.
    let report = sync(&env, &storage, &["--stream", "payments"]);
    assert_eq!(names(&report["unchanged"]), ["payments"], "{report}");
    assert!(names(&report["removed"]).is_empty() && names(&report["created"]).is_empty(), "{report}");

    // The requests carried SigV4 signatures of the configured credentials.
    assert!(moto.faults.requests().iter().any(|r| r.starts_with("POST /")), "Glue calls went through the proxy");
    assert!(moto.faults.signers().iter().all(|s| s.access_key_id == "AKIAGLUETEST00000001"));
}
