//! Tables written by logyard read by engines it does not control: the `deltalake` and
//! `pyarrow` Python packages and DuckDB (over the Parquet files the Delta log lists).

mod common;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn other_engines_read_the_same_rows() {
    let python =
        program("LOGYARD_TEST_PYTHON", "python3", "scripts/test.sh makes a venv with deltalake, pyarrow and duckdb");
    let dir = tempfile::tempdir().unwrap();
    let spec = ServerSpec::local(dir.path());
    let mut server = spec.start();
    // Three days, a schema change between commits, and nested fields.
    let mut body = String::new();
    for i in 0..300 {
        body.push_str(&format!(
            "{{\"timestamp\":\"2026-11-{:02}T12:00:{:02}Z\",\"id\":\"e{i:04}\",\"status\":{},\"http\":{{\"method\":\"GET\"}}}}\n",
            23 + i % 3,
            i % 60,
            200 + i % 7
        ));
    }
    assert_eq!(ingest(&server, "readers", body, "?ack=commit").await.0, 200);
    assert_eq!(
        ingest(&server, "readers", "{\"id\":\"late\",\"status\":503,\"region\":\"eu\"}\n", "?ack=commit").await.0,
        200
    );
    let expected_status: i64 = count(&server, "SELECT sum(status) FROM readers").await;
    let expected_ids: Vec<String> = rows(&server, "SELECT id FROM readers ORDER BY id")
        .await
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let (code, _) = server.terminate(std::time::Duration::from_secs(30));
    assert_eq!(code, Some(0), "logs:\n{}", server.logs());

    let table = std::path::Path::new(&spec.storage).join("tables/readers");
    let script = common::crate_dir().join("../../scripts/tests/read_table.py");
    let out = std::process::Command::new(python).arg(script).arg(&table).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    for engine in ["deltalake", "pyarrow", "duckdb"] {
        let s = &seen[engine];
        assert_eq!(s["rows"], 301, "{engine}");
        assert_eq!(s["status_sum"], expected_status, "{engine}");
        let ids: Vec<String> = s["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        assert_eq!(ids, expected_ids, "{engine}");
        let columns = s["columns"].to_string();
        for c in ["timestamp", "id", "status", "http.method", "region"] {
            assert!(columns.contains(&format!("\"{c}\"")), "{engine} lacks {c}: {columns}");
        }
    }
    assert!(seen["deltalake"]["columns"].to_string().contains("\"date\""), "the partition column");
    assert_eq!(seen["parquet"]["compression"], "ZSTD");
    assert_eq!(seen["parquet"]["has_statistics"], true);
    // The ids look like identifiers: each commit of at least 64 rows gave them a bloom filter,
    // which DuckDB reads: it keeps the row group of an id the file holds, skips it for another.
    let bloom = seen["bloom"].as_array().unwrap();
    assert_eq!(bloom.len(), 4, "{bloom:?}");
    for file in bloom {
        if file["rows"].as_i64().unwrap() >= 64 {
            assert_eq!(file["columns"], serde_json::json!(["id"]), "{file}");
            assert_eq!(file["smallest_id_excluded"], false, "{file}");
            assert_eq!(file["absent_id_excluded"], true, "{file}");
        } else {
            assert_eq!(file["columns"], serde_json::json!([]), "too few rows to tell: {file}");
        }
    }
}
