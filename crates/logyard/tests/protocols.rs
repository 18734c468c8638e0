//! Ingest protocols other shippers speak, checked with their real clients where there is one:
//! the Elasticsearch bulk API through the official Python client's `helpers.bulk`, and the
//! Kinesis Data Firehose HTTP endpoint delivery with its documented request and response.
//! Rows are queried back field by field; malformed requests get the protocol's error form.

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};

/// A server with tokens: `ship` may ingest into `app-*` and `logstash`; `read` may query
/// (and flush, to see what was sent at once).
fn server(dir: &std::path::Path) -> (Server, String, String) {
    let (ship, ship_entry) = create_token("ship", "ingest", Some("logstash,app-*"));
    let (read, read_entry) = create_token("read", "query,admin", None);
    let tokens = dir.join("tokens.toml");
    std::fs::write(&tokens, format!("{ship_entry}\n{read_entry}")).unwrap();
    let server = ServerSpec::local(dir).env("LOGYARD_TOKENS_FILE", tokens.to_str().unwrap()).start();
    (server, ship, read)
}

/// POSTs a body of a content type with a token.
async fn post_as(
    server: &Server,
    token: &str,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let request = client().post(server.url(path)).bearer_auth(token).header("content-type", content_type);
    request.body(body).send().await.unwrap()
}

async fn flush_as(server: &Server, token: &str) {
    let r = client().post(server.url("/api/v1/flush")).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

async fn query_as(server: &Server, token: &str, sql: &str) -> Vec<Value> {
    let r = client().post(server.url("/api/v1/query")).bearer_auth(token).json(&json!({"sql": sql})).send().await;
    let v: Value = r.unwrap().json().await.unwrap();
    v["rows"].as_array().unwrap_or_else(|| panic!("{sql}: {v}")).clone()
}

const ES_CLIENT: &str = r#"
import json, sys
from elasticsearch import Elasticsearch, helpers
url, token, auth = sys.argv[1], sys.argv[2], sys.argv[3]
if auth == "basic":
    es = Elasticsearch(url, basic_auth=("fluent-bit", token), request_timeout=30)
else:
    es = Elasticsearch(url, api_key=token, request_timeout=30)
info = es.info()
docs = [{"_index": "logstash-2026.11.25", "_source": {"@timestamp": f"2026-11-25T10:00:{i % 60:02d}Z", "level": "info", "n": i, "msg": f"event {i}", "kubernetes": {"pod_name": f"web-{i % 3}"}}} for i in range(500)]
docs.append({"_index": "app-api", "_op_type": "create", "_source": {"@timestamp": "2026-11-25T11:00:00Z", "msg": "created", "n": 1000}})
docs.append({"_index": "secret-stream", "_source": {"msg": "not allowed"}})
docs.append({"_index": "app-api", "_op_type": "delete", "_id": "x"})
ok, errors = helpers.bulk(es, docs, raise_on_error=False, chunk_size=200)
print(json.dumps({"version": info["version"]["number"], "ok": ok, "errors": errors}))
"#;

fn run_es_client(server: &Server, token: &str, auth: &str) -> Value {
    let python = program("LOGYARD_TEST_PYTHON", "python3", "scripts/test.sh makes a venv with elasticsearch");
    let out = Command::new(python).args(["-c", ES_CLIENT, &server.base, token, auth]).output().unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), server.logs());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_elasticsearch_client_bulk_helper_indexes_into_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (server, ship, read) = server(dir.path());

    let result = run_es_client(&server, &ship, "api_key");
    assert_eq!(result["ok"], 501, "{result}");
    let errors = result["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{result}");
    assert_eq!(errors[0]["index"]["status"], 403, "a stream the token may not write: {result}");
    assert_eq!(errors[0]["index"]["error"]["type"], "security_exception");
    assert_eq!(errors[1]["delete"]["status"], 400, "logs are append-only: {result}");
    // Basic authentication with the token as the password, as Fluent Bit's es output sends.
    assert_eq!(run_es_client(&server, &ship, "basic")["ok"], 501);
    flush_as(&server, &read).await;

    // The daily index went to the `logstash` stream; every field came through.
    let rows = query_as(
        &server,
        &read,
        "SELECT timestamp, level, n, msg, \"kubernetes.pod_name\" AS pod FROM logstash WHERE n = 61 ORDER BY timestamp",
    )
    .await;
    assert_eq!(rows.len(), 2, "once per run: {rows:?}");
    assert_eq!(rows[0]["timestamp"], "2026-11-25T10:00:01Z");
    assert_eq!((rows[0]["level"].as_str(), rows[0]["msg"].as_str()), (Some("info"), Some("event 61")));
    assert_eq!(rows[0]["pod"], "web-1");
    assert_eq!(query_as(&server, &read, "SELECT count(*) AS n FROM logstash").await[0]["n"], 1000);
    assert_eq!(query_as(&server, &read, "SELECT count(*) AS n FROM \"app-api\"").await[0]["n"], 2);

    // What the clients read first, and the error forms they understand.
    let r = client().get(server.url("/")).bearer_auth(&ship).send().await.unwrap();
    assert_eq!(r.headers()["x-elastic-product"], "Elasticsearch");
    let r = client().post(server.url("/_bulk")).bearer_auth("wrong").body("{}").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-elastic-product"], "Elasticsearch");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "security_exception");
    let bad = "{\"index\":{\"_index\":\"app-api\"}}\n{\"msg\":\"fine\"}\n[not an action]\n{}\n";
    let r = client().post(server.url("/_bulk")).bearer_auth(&ship).body(bad).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "illegal_argument_exception");
    assert!(v["error"]["reason"].as_str().unwrap().contains("line [3]"), "{v}");
    // A document that is not an object fails alone.
    let mixed = "{\"index\":{}}\n{\"msg\":\"kept\"}\n{\"index\":{}}\n\"just a string\"\n";
    let r = client().post(server.url("/app-api/_bulk")).bearer_auth(&ship).body(mixed).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"], true);
    assert_eq!(
        (v["items"][0]["index"]["status"].as_u64(), v["items"][1]["index"]["status"].as_u64()),
        (Some(201), Some(400))
    );
    flush_as(&server, &read).await;
    assert_eq!(query_as(&server, &read, "SELECT count(*) AS n FROM \"app-api\"").await[0]["n"], 3);
}

fn gzip_base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(gzip(data))
}

async fn deliver(server: &Server, key: &str, request_id: &str, body: &Value) -> (u16, Value) {
    let r = client()
        .post(server.url("/api/v1/firehose/app-firehose"))
        .header("x-amz-firehose-access-key", key)
        .header("x-amz-firehose-request-id", request_id)
        .header("x-amz-firehose-protocol-version", "1.0")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn firehose_deliveries_are_answered_once_durable_and_not_taken_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (server, ship, read) = server(dir.path());

    // The request of the Firehose HTTP endpoint delivery specification.
    let id = "ed4acda5-034f-9f42-bba1-f29aea6d7d8f";
    let documented = json!({"requestId": id, "timestamp": 1578090901599u64, "records": [{"data": "aGVsbG8="}, {"data": "aGVsbG8gd29ybGQ="}]});
    let (status, answer) = deliver(&server, &ship, id, &documented).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["requestId"], id);
    assert!(answer["timestamp"].as_u64().unwrap() > 1_700_000_000_000, "milliseconds: {answer}");
    assert!(answer.get("errorMessage").is_none());
    // Firehose retried: answered, not taken again.
    assert_eq!(deliver(&server, &ship, id, &documented).await.0, 200);

    // NDJSON and a CloudWatch Logs subscription's gzip envelope.
    let envelope = json!({"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/aws/eks/shop/app", "logStream": "pod-1",
        "subscriptionFilters": ["all"], "logEvents": [{"id": "1", "timestamp": 1764064800000u64, "message": "{\"level\":\"error\",\"msg\":\"boom\"}"}]});
    let records = json!({"requestId": "r2", "timestamp": 1, "records": [
        {"data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "{\"msg\":\"a\"}\n{\"msg\":\"b\"}\n")},
        {"data": gzip_base64(envelope.to_string().as_bytes())},
    ]});
    assert_eq!(deliver(&server, &ship, "r2", &records).await.0, 200);

    // Refusals in Firehose's form, losing nothing else.
    let (status, answer) = deliver(&server, "not-the-key", "r3", &records).await;
    assert_eq!(status, 401);
    assert_eq!(answer["requestId"], "r3");
    assert!(answer["errorMessage"].as_str().unwrap().contains("not valid"), "{answer}");
    let broken = json!({"requestId": "r4", "timestamp": 1, "records": [{"data": "%%%"}]});
    let (status, answer) = deliver(&server, &ship, "r4", &broken).await;
    assert_eq!(status, 400);
    assert!(answer["errorMessage"].as_str().unwrap().contains("base64"), "{answer}");

    flush_as(&server, &read).await;
    let rows =
        query_as(&server, &read, "SELECT message, msg, level, log_group FROM \"app-firehose\" ORDER BY message, msg")
            .await;
    let mut got: Vec<String> = rows
        .iter()
        .map(|r| {
            let f = |k: &str| r[k].as_str().unwrap_or("-").to_owned();
            [f("message"), f("msg"), f("level"), f("log_group")].join("|")
        })
        .collect();
    got.sort();
    let expected = ["-|a|-|-", "-|boom|error|/aws/eks/shop/app", "-|b|-|-", "hello world|-|-|-", "hello|-|-|-"];
    assert_eq!(got, expected, "each record once, field by field");

    // Counted once, in events and in bytes of events (the five texts are over 100 bytes).
    let text = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |name: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("logyard_ingested_events_total{stream=\"app-firehose\",protocol=\"firehose\"}"), 5);
    let bytes = value("logyard_ingested_bytes_total{stream=\"app-firehose\",protocol=\"firehose\"}");
    assert!((100..1000).contains(&bytes), "{bytes} bytes");
}

const OTEL_CLIENT: &str = r#"
import logging, sys
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
protocol, endpoint, token = sys.argv[1:4]
if protocol == "http":
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    exporter = OTLPLogExporter(endpoint=endpoint + "/v1/logs", headers={"authorization": "Bearer " + token})
else:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    exporter = OTLPLogExporter(endpoint=endpoint, insecure=True, headers=(("authorization", "Bearer " + token),))
resource = Resource.create({"service.name": "Checkout.API", "k8s.namespace.name": "shop", "k8s.pod.name": "checkout-7d9f"})
provider = LoggerProvider(resource=resource)
provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
log = logging.getLogger("shop.checkout")
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
log.setLevel(logging.INFO)
log.propagate = False
for i in range(20):
    log.warning("payment retry %d", i, extra={"order_id": f"o-{i:07d}", "attempt": i})
with TracerProvider().get_tracer("shop").start_as_current_span("pay"):
    log.error("payment failed", extra={"protocol": protocol})
provider.shutdown()
"#;

fn run_otel_client(protocol: &str, endpoint: &str, token: &str) {
    let python = program("LOGYARD_TEST_PYTHON", "python3", "scripts/test.sh makes a venv with the OpenTelemetry SDK");
    let out = Command::new(python).args(["-c", OTEL_CLIENT, protocol, endpoint, token]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Failed to export"), "{stderr}");
}

#[tokio::test]
async fn the_opentelemetry_sdk_exports_logs_over_http_and_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let (ship, ship_entry) = create_token("otel", "ingest", Some("checkout-*"));
    let (read, read_entry) = create_token("read", "query,admin", None);
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, format!("{ship_entry}\n{read_entry}")).unwrap();
    let grpc = free_port();
    let server = ServerSpec::local(dir.path())
        .env("LOGYARD_TOKENS_FILE", tokens.to_str().unwrap())
        .env("LOGYARD_OTLP_GRPC_LISTEN", &format!("127.0.0.1:{grpc}"))
        .start();

    run_otel_client("http", &server.base, &ship);
    run_otel_client("grpc", &format!("http://127.0.0.1:{grpc}"), &ship);
    flush_as(&server, &read).await;

    // service.name "Checkout.API" chose the stream; every part of a record is a column.
    let rows = query_as(
        &server,
        &read,
        "SELECT body, severity_text, severity_number, trace_id, span_id, \"attributes.protocol\" AS protocol, \
         \"resource.k8s.pod.name\" AS pod, \"resource.service.name\" AS service, \"scope.name\" AS scope \
         FROM \"checkout-api\" WHERE severity_text = 'ERROR' ORDER BY protocol",
    )
    .await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, protocol) in rows.iter().zip(["grpc", "http"]) {
        assert_eq!(row["body"], "payment failed");
        assert_eq!(row["protocol"], protocol);
        assert_eq!((row["severity_number"].as_i64(), row["pod"].as_str()), (Some(17), Some("checkout-7d9f")));
        assert_eq!((row["service"].as_str(), row["scope"].as_str()), (Some("Checkout.API"), Some("shop.checkout")));
        assert_eq!(row["trace_id"].as_str().unwrap().len(), 32, "the span's trace: {row}");
        assert_eq!(row["span_id"].as_str().unwrap().len(), 16);
    }
    let retries = query_as(
        &server,
        &read,
        "SELECT count(*) AS n, count(DISTINCT \"attributes.order_id\") AS orders FROM \"checkout-api\" WHERE severity_text = 'WARN'",
    )
    .await;
    assert_eq!((retries[0]["n"].as_i64(), retries[0]["orders"].as_i64()), (Some(40), Some(20)));

    // Malformed bodies: a google.rpc.Status in the request's encoding; nothing taken.
    let r = post_as(&server, &ship, "/v1/logs", "application/json", "{\"resourceLogs\": 7}").await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], 3, "INVALID_ARGUMENT: {v}");
    let r = post_as(&server, &ship, "/v1/logs", "application/x-protobuf", vec![0xff, 0xff, 0xff]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
}

#[tokio::test]
async fn loki_pushes_in_snappy_protobuf_and_json_land_with_their_labels() {
    use logyard_protocols::loki::{EntryAdapter, LabelPair, PushRequest, StreamAdapter, Timestamp};
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let (server, ship, read) = server(dir.path());

    // As Promtail and Alloy send it: protobuf, snappy block compression.
    let entries = (0..50)
        .map(|i| EntryAdapter {
            timestamp: Some(Timestamp { seconds: 1_764_064_800 + i, nanos: 500 }),
            line: format!("GET /products/{i} 200"),
            structured_metadata: vec![LabelPair { name: "trace_id".into(), value: format!("t{i}") }],
        })
        .collect();
    let push = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{app="app-web", namespace="shop", pod="web-1"}"#.into(),
            entries,
            hash: 0,
        }],
    };
    let body = snap::raw::Encoder::new().compress_vec(&push.encode_to_vec()).unwrap();
    let r = post_as(&server, &ship, "/loki/api/v1/push", "application/x-protobuf", body).await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    // JSON, with structured metadata; a header names the stream.
    let json_push = json!({"streams": [{"stream": {"app": "ignored", "level": "error"},
        "values": [["1764064900000000000", "payment failed", {"order_id": "o-0000042"}]]}]});
    let r = client()
        .post(server.url("/loki/api/v1/push"))
        .bearer_auth(&ship)
        .header("x-logyard-stream", "app-payments")
        .json(&json_push)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Malformed: 400 with Loki's plain text, nothing taken.
    let r = post_as(&server, &ship, "/loki/api/v1/push", "application/x-protobuf", "not snappy").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("snappy"));
    flush_as(&server, &read).await;

    let rows = query_as(
        &server,
        &read,
        "SELECT timestamp, message, \"labels.namespace\" AS ns, \"labels.pod\" AS pod, \"metadata.trace_id\" AS t \
         FROM \"app-web\" ORDER BY timestamp",
    )
    .await;
    assert_eq!(rows.len(), 50);
    assert_eq!(rows[7]["message"], "GET /products/7 200");
    assert_eq!(rows[7]["timestamp"], "2025-11-25T10:00:07Z", "the entry's time (to the microsecond)");
    assert_eq!(
        (rows[7]["ns"].as_str(), rows[7]["pod"].as_str(), rows[7]["t"].as_str()),
        (Some("shop"), Some("web-1"), Some("t7"))
    );
    let rows = query_as(
        &server,
        &read,
        "SELECT message, \"labels.level\" AS level, \"metadata.order_id\" AS o FROM \"app-payments\"",
    )
    .await;
    assert_eq!(
        (rows[0]["message"].as_str(), rows[0]["level"].as_str(), rows[0]["o"].as_str()),
        (Some("payment failed"), Some("error"), Some("o-0000042"))
    );
}

/// The bytes the intake counts for a stream: the JSON text of its events, as the protocol's
/// decoder makes them from the body.
fn text_bytes<D: logyard_protocols::Decoder>(decoder: D, body: &[u8], stream: &str) -> f64 {
    let decoded = decoder.decode(body, 0).unwrap();
    decoded.streams[&logyard_core::StreamName::new(stream).unwrap()].text_bytes() as f64
}

#[tokio::test]
async fn a_refused_stream_is_answered_per_protocol_and_counted_alike() {
    use logyard_protocols::elastic::{Bulk, IndexMapping};
    use logyard_protocols::firehose::Firehose;
    use logyard_protocols::loki::{LokiChoice, LokiPush};
    use logyard_protocols::ndjson::Ndjson;
    use logyard_protocols::otlp::{OtlpHttp, StreamChoice};
    let dir = tempfile::tempdir().unwrap();
    let (server, ship, read) = server(dir.path());
    let stream = |name: &str| logyard_core::StreamName::new(name).unwrap();
    let doc = |i: usize| format!("{{\"n\":{i},\"msg\":\"event {i}\"}}");
    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);

    // The same request through each protocol: three events for `secret` (which `ship` may not
    // write) and two for a stream of its own; NDJSON and Firehose name one stream per request.
    let ndjson_refused: String = (0..3).map(|i| doc(i) + "\n").collect();
    let ndjson_taken: String = (3..5).map(|i| doc(i) + "\n").collect();
    let r = post_as(&server, &ship, "/api/v1/streams/secret/events", "application/x-ndjson", ndjson_refused).await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "forbidden", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("secret"), "{v}");
    let r = post_as(&server, &ship, "/api/v1/streams/app-ndjson/events", "application/x-ndjson", ndjson_taken.clone())
        .await;
    assert_eq!(r.status(), 200);

    let firehose = |ids: std::ops::Range<usize>| json!({"requestId": "r", "timestamp": 1, "records": ids.map(|i| json!({"data": b64(&doc(i))})).collect::<Vec<_>>()});
    let deliver_to = |target: &'static str, body: Value, id: &'static str| {
        let (server, ship) = (&server, &ship);
        async move {
            client()
                .post(server.url(&format!("/api/v1/firehose/{target}")))
                .header("x-amz-firehose-access-key", ship)
                .header("x-amz-firehose-request-id", id)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
        }
    };
    let r = deliver_to("secret", firehose(0..3), "refused").await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["requestId"], "refused");
    assert!(v["errorMessage"].as_str().unwrap().contains("secret"), "{v}");
    let firehose_taken = firehose(3..5).to_string();
    assert_eq!(deliver_to("app-firehose", firehose(3..5), "taken").await.status(), 200);

    let bulk: String = (0..5)
        .map(|i| {
            format!("{{\"index\":{{\"_index\":\"{}\"}}}}\n{}\n", if i < 3 { "secret" } else { "app-bulk" }, doc(i))
        })
        .collect();
    let r = post_as(&server, &ship, "/_bulk", "application/x-ndjson", bulk.clone()).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"], true);
    let items: Vec<(u64, &str)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["index"]["status"].as_u64().unwrap(), i["index"]["error"]["type"].as_str().unwrap_or("")))
        .collect();
    let refused = (403, "security_exception");
    assert_eq!(items, [refused, refused, refused, (201, ""), (201, "")], "{v}");

    let attribute = |service: &str| json!([{"key": "service.name", "value": {"stringValue": service}}]);
    let record = |i: usize, service: &str| json!({"timeUnixNano": "1764064800000000000", "body": {"stringValue": format!("event {i}")}, "attributes": attribute(service)});
    let otlp = json!({"resourceLogs": [{"scopeLogs": [{"logRecords":
        (0..5).map(|i| record(i, if i < 3 { "secret" } else { "app-otlp" })).collect::<Vec<_>>()}]}]})
    .to_string();
    let r = post_as(&server, &ship, "/v1/logs", "application/json", otlp.clone()).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    // OTLP/JSON writes 64-bit integers as strings.
    assert_eq!(v["partialSuccess"]["rejectedLogRecords"].to_string().trim_matches('"'), "3", "{v}");
    assert!(v["partialSuccess"]["errorMessage"].as_str().unwrap().contains("secret"), "{v}");

    let values = |ids: std::ops::Range<usize>| {
        ids.map(|i| json!(["1764064800000000000", format!("event {i}")])).collect::<Vec<_>>()
    };
    let loki = json!({"streams": [
        {"stream": {"app": "secret"}, "values": values(0..3)},
        {"stream": {"app": "app-loki"}, "values": values(3..5)},
    ]})
    .to_string();
    let r = post_as(&server, &ship, "/loki/api/v1/push", "application/json", loki.clone()).await;
    assert_eq!(r.status(), 403);
    let text = r.text().await.unwrap();
    assert!(text.contains("secret") && text.contains("2 events of other streams were taken"), "{text}");

    // The same counts under every protocol: three rejected for `secret`, two accepted for its
    // own stream, in bytes of the events' JSON text as the decoder made them.
    flush_as(&server, &read).await;
    let ndjson_bytes = text_bytes(
        Ndjson { stream: stream("app-ndjson"), format: logyard_core::parse::BodyFormat::Ndjson, rows: None },
        ndjson_taken.as_bytes(),
        "app-ndjson",
    );
    let documents: f64 = (3..5).map(|i| doc(i).len() as f64).sum();
    assert_eq!(ndjson_bytes, documents, "NDJSON events are the documents sent");
    let otel = StreamChoice { attribute: Some("service.name".into()), default: stream("otel") };
    let loki_choice = LokiChoice { label: Some("app".into()), default: stream("loki") };
    let bulk_mapping = IndexMapping { strip_prefix: String::new(), strip_date_suffix: true };
    let expected = [
        ("ndjson", "app-ndjson", ndjson_bytes),
        (
            "firehose",
            "app-firehose",
            text_bytes(
                Firehose { stream: stream("app-firehose"), rows: None },
                firehose_taken.as_bytes(),
                "app-firehose",
            ),
        ),
        (
            "elasticsearch",
            "app-bulk",
            text_bytes(Bulk { path_index: None, mapping: bulk_mapping, rows: None }, bulk.as_bytes(), "app-bulk"),
        ),
        (
            "otlp",
            "app-otlp",
            text_bytes(OtlpHttp { json: true, stream: None, choice: otel, rows: None }, otlp.as_bytes(), "app-otlp"),
        ),
        (
            "loki",
            "app-loki",
            text_bytes(
                LokiPush { json: true, stream: None, choice: loki_choice, max_bytes: 1 << 20, rows: None },
                loki.as_bytes(),
                "app-loki",
            ),
        ),
    ];
    assert_eq!(expected[1].2, documents, "Firehose events are the documents sent");
    assert_eq!(expected[2].2, documents, "bulk events are the documents sent");
    for (protocol, taken, bytes) in expected {
        let labels = |stream: &'static str| [("stream", stream), ("protocol", protocol)];
        assert_eq!(metric(&server, "logyard_rejected_events_total", &labels("secret")).await, Some(3.0), "{protocol}");
        assert_eq!(
            metric(&server, "logyard_ingested_events_total", &[("stream", taken), ("protocol", protocol)]).await,
            Some(2.0),
            "{protocol}"
        );
        assert_eq!(
            metric(&server, "logyard_ingested_bytes_total", &[("stream", taken), ("protocol", protocol)]).await,
            Some(bytes),
            "{protocol}"
        );
        assert_eq!(
            query_as(&server, &read, &format!("SELECT count(*) AS n FROM \"{taken}\"")).await[0]["n"],
            2,
            "{protocol}"
        );
    }
    assert_eq!(
        metric(&server, "logyard_ingested_events_total", &[("stream", "secret"), ("protocol", "loki")]).await,
        None
    );
}

/// `ingest.ack = "commit"` (the Fargate profile): every ingest path answers only once the
/// events are committed to the table, so they are queryable at once even with a flush
/// interval of an hour; `?ack=wal` still asks for the write-ahead log alone.
#[tokio::test]
async fn with_ingest_ack_commit_every_protocol_answers_once_committed() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerSpec::local(dir.path())
        .env("LOGYARD_INGEST_ACK", "commit")
        .env("LOGYARD_INGEST_FLUSH_INTERVAL", "1h")
        .start();
    let post = |path: &str, content_type: &str, body: String| {
        client().post(server.url(path)).header("content-type", content_type).body(body)
    };
    let rows = |stream: &str| {
        let sql = format!("SELECT count(*) FROM {stream}");
        let server = &server;
        async move { count(server, &sql).await }
    };

    let r = post("/api/v1/streams/acknd/events", "application/x-ndjson", events("n", 3)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(rows("acknd").await, 3, "NDJSON");

    let bulk = "{\"index\":{\"_index\":\"ackbulk\"}}\n{\"msg\":\"a\"}\n{\"create\":{\"_index\":\"ackbulk\"}}\n{\"msg\":\"b\"}\n";
    let r = post("/_bulk", "application/x-ndjson", bulk.into()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(rows("ackbulk").await, 2, "Elasticsearch bulk");

    let loki = json!({"streams": [{"stream": {"app": "web"}, "values": [["1764064900000000000", "payment failed"]]}]});
    let r = client()
        .post(server.url("/loki/api/v1/push"))
        .header("x-logyard-stream", "ackloki")
        .json(&loki)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(rows("ackloki").await, 1, "Loki");

    let otlp = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"timeUnixNano": "1764064800000000000", "body": {"stringValue": "checkout"}}]}]}]});
    let r =
        client().post(server.url("/v1/logs")).header("x-logyard-stream", "ackotlp").json(&otlp).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(rows("ackotlp").await, 1, "OTLP/HTTP");

    let id = "0b2c7f0e-1111-4a4a-9d9d-000000000001";
    let firehose = json!({"requestId": id, "timestamp": 1578090901599u64, "records": [{"data": "aGVsbG8="}]});
    let r = client()
        .post(server.url("/api/v1/firehose/ackfirehose"))
        .header("x-amz-firehose-request-id", id)
        .header("content-type", "application/json")
        .body(firehose.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(rows("ackfirehose").await, 1, "Firehose");

    // Asked for explicitly, the write-ahead log alone: durable, not yet in the table.
    let r = post("/api/v1/streams/ackwal/events?ack=wal", "application/x-ndjson", events("w", 2)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = query(&server, "SELECT count(*) FROM ackwal").await;
    assert_ne!(status, 200, "no table before the flush interval");
    flush(&server).await;
    assert_eq!(rows("ackwal").await, 2);
}
