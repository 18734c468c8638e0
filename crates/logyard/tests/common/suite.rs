//! The suite every storage backend runs (local filesystem in `api.rs`, S3 in `s3.rs`).

use std::io::Write;

use serde_json::{Value, json};

use super::*;

/// The suite every storage backend runs.
pub async fn roundtrip(spec: ServerSpec) {
    let server = spec.start();

    // NDJSON with ack=commit is visible to the next query.
    let (status, body) = ingest(&server, "storefront", events("a", 100), "?ack=commit").await;
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(100)), "{body}");
    assert_eq!(count(&server, "SELECT count(*) FROM storefront").await, 100);

    // A JSON array, gzip and zstd bodies.
    let array = json!([{"id": "j-1", "status": 201}, {"id": "j-2", "status": 202}]);
    let r = client()
        .post(server.url("/api/v1/streams/storefront/events?ack=commit"))
        .header("content-type", "application/json")
        .body(array.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(events("g", 10).as_bytes()).unwrap();
    for (encoding, body) in
        [("gzip", gz.finish().unwrap()), ("zstd", zstd::encode_all(events("z", 10).as_bytes(), 3).unwrap())]
    {
        let r = client()
            .post(server.url("/api/v1/streams/storefront/events?ack=commit"))
            .header("content-type", "application/x-ndjson")
            .header("content-encoding", encoding)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{encoding}");
        assert_eq!(r.json::<Value>().await.unwrap()["accepted"], 10);
    }
    assert_eq!(count(&server, "SELECT count(*) FROM storefront").await, 122);
    let got = rows(&server, "SELECT id, status FROM storefront WHERE id LIKE 'j-%' ORDER BY id").await;
    assert_eq!(got, vec![json!({"id": "j-1", "status": 201}), json!({"id": "j-2", "status": 202})]);

    // ack=wal + flush.
    let (status, _) = ingest(&server, "checkout", events("c", 5), "").await;
    assert_eq!(status, 200);
    flush(&server).await;
    assert_eq!(count(&server, "SELECT count(*) FROM checkout").await, 5);

    // Every output format.
    for (format, check) in [
        (
            "ndjson",
            Box::new(|t: &str| t.lines().count() == 2 && t.contains("\"status\":500")) as Box<dyn Fn(&str) -> bool>,
        ),
        ("csv", Box::new(|t: &str| t.starts_with("id,status\n") && t.lines().count() == 3)),
    ] {
        let r = client()
            .post(server.url("/api/v1/query"))
            .json(&json!({"sql": "SELECT id, status FROM storefront WHERE id IN ('a-0', 'a-50') ORDER BY id", "format": format}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let text = r.text().await.unwrap();
        assert!(check(&text), "{format}: {text}");
    }
    let r = client()
        .post(server.url("/api/v1/query"))
        .json(&json!({"sql": "SELECT id FROM storefront ORDER BY id", "format": "arrow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/vnd.apache.arrow.stream");
    let bytes = r.bytes().await.unwrap();
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let n: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(n, 122);
    // A small result is small: plain Utf8, not views onto whole scan buffers.
    let r = client()
        .post(server.url("/api/v1/query"))
        .json(&json!({"sql": "SELECT id, route FROM storefront WHERE id = 'a-1'", "format": "arrow"}))
        .send()
        .await
        .unwrap();
    let bytes = r.bytes().await.unwrap();
    assert!(bytes.len() < 4096, "{} bytes for one row", bytes.len());
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    assert_eq!(reader.schema().field(0).data_type(), &arrow::datatypes::DataType::Utf8);

    // Streams listing.
    let r: Value = client().get(server.url("/api/v1/streams")).send().await.unwrap().json().await.unwrap();
    let streams = r["streams"].as_array().unwrap();
    let names: Vec<_> = streams.iter().map(|s| s["name"].as_str().unwrap()).collect();
    // The flush above was recorded in the audit stream.
    assert_eq!(names, ["checkout", "logyard-audit", "storefront"]);
    let s = &streams[2];
    assert_eq!(s["rows"], 122);
    assert!(s["bytes"].as_u64().unwrap() > 0 && s["files"].as_u64().unwrap() >= 4, "{s}");
    assert_eq!(s["earliest"], "2026-11-25T10:00:00.000000Z");
    let columns: Vec<_> = s["schema"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    for c in ["timestamp", "date", "id", "route", "status", "latency_ms"] {
        assert!(columns.contains(&c), "{c} in {columns:?}");
    }

    // The CLI reads the same storage directly.
    let mut env = server.env.clone();
    env.push(("LOGYARD_LOG_LEVEL".into(), "error".into()));
    let (code, out, err) =
        cli(&["query", "--storage", &server.storage, "--format", "csv", "SELECT count(*) AS n FROM storefront"], &env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "n\n122\n");
}
