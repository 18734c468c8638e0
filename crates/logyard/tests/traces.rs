//! Spans exported over OTLP, gRPC and HTTP, to an in-process receiver on loopback: names,
//! parent-child links, attributes, the caller's X-Ray or W3C trace continued, the trace id in
//! the JSON log lines, and no token anywhere in them.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// What the receiver got: every span, with its service name.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Span)>>>);

impl Received {
    fn add(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.0.lock().unwrap();
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
    }

    fn spans(&self) -> Vec<(String, Span)> {
        self.0.lock().unwrap().clone()
    }
}

fn text(v: Option<&AnyValue>) -> String {
    match v {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key == key).map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.add(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// An OTLP/gRPC receiver; returns its endpoint.
async fn grpc_receiver(received: Received) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(received))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    format!("http://{addr}")
}

/// An OTLP/HTTP (protobuf) receiver for `POST /v1/traces`; returns its endpoint.
async fn http_receiver(received: Received) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let received = received.clone();
            let service = service_fn(move |request: hyper::Request<Incoming>| {
                let received = received.clone();
                async move {
                    assert_eq!(request.uri().path(), "/v1/traces");
                    assert_eq!(request.headers()["content-type"], "application/x-protobuf");
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    received.add(ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body"));
                    let reply = ExportTraceServiceResponse { partial_success: None }.encode_to_vec();
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/x-protobuf")
                            .body(Full::new(bytes::Bytes::from(reply)))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

const XRAY_ROOT: &str = "5759e988bd862e3fe1be46a994272793";
const XRAY_PARENT: &str = "53995c3f42cd8ad8";
const W3C_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const W3C_PARENT: &str = "b7ad6b7169203331";

/// The receiver runs on the test runtime's other worker while `terminate` blocks this one.
async fn spans_reach_the_receiver(protocol: &str) {
    let received = Received::default();
    let endpoint = match protocol {
        "grpc" => grpc_receiver(received.clone()).await,
        _ => http_receiver(received.clone()).await,
    };
    let dir = tempfile::tempdir().unwrap();
    let (token, entry) = create_token("tracer", "ingest,query", None);
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, entry).unwrap();
    let pg = common::pg::PgServer::start();
    pg.load_orders(&common::pg::generated(2_000).1);
    let mut spec = ServerSpec::local(dir.path());
    spec.env.extend(pg.env());
    let mut server = spec
        .env("LOGYARD_TOKENS_FILE", tokens.to_str().unwrap())
        .env("LOGYARD_LOG_LEVEL", "info,logyard_server=debug")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        .env("OTEL_SERVICE_NAME", "logyard-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .start();

    let r = client()
        .post(server.url("/api/v1/streams/traced/events?ack=commit"))
        .bearer_auth(&token)
        .header("content-type", "application/x-ndjson")
        .header(
            "x-amzn-trace-id",
            format!("Root=1-{}-{};Parent={XRAY_PARENT};Sampled=1", &XRAY_ROOT[..8], &XRAY_ROOT[8..]),
        )
        .body(events("t", 50))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .post(server.url("/api/v1/query"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{W3C_TRACE}-{W3C_PARENT}-01"))
        .json(&serde_json::json!({"sql": "SELECT count(*) AS n FROM traced"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["rows"][0]["n"], 50);
    let r = client()
        .post(server.url("/api/v1/query"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"sql": "SELECT count(*) AS n FROM pg.orders WHERE status = 'pending'"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // The last spans are exported at shutdown.
    let (code, _) = server.terminate(std::time::Duration::from_secs(30));
    assert_eq!(code, Some(0), "{}", server.logs());

    let spans = received.spans();
    assert!(!spans.is_empty(), "no span reached the {protocol} receiver; logs:\n{}", server.logs());
    assert!(spans.iter().all(|(service, _)| service == "logyard-test"));
    let spans: Vec<Span> = spans.into_iter().map(|(_, s)| s).collect();
    let by_id: HashMap<Vec<u8>, &Span> = spans.iter().map(|s| (s.span_id.clone(), s)).collect();
    let named = |name: &str| -> Vec<&Span> { spans.iter().filter(|s| s.name == name).collect() };
    let one = |name: &str| -> &Span {
        let found = named(name);
        assert!(
            !found.is_empty(),
            "no span {name:?} among {:?}; logs:\n{}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>(),
            server.logs()
        );
        found[0]
    };
    let parent_of = |span: &Span| by_id.get(&span.parent_span_id).map(|p| p.name.clone()).unwrap_or_default();

    // The ingest request continues the ALB's X-Ray trace.
    let request = one("POST /api/v1/streams/{stream}/events");
    assert_eq!(hex(&request.trace_id), XRAY_ROOT);
    assert_eq!(hex(&request.parent_span_id), XRAY_PARENT);
    assert_eq!(request.kind, 2, "a server span");
    assert_eq!(attr(request, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr(request, "http.route").as_deref(), Some("/api/v1/streams/{stream}/events"));
    for child in ["wal.append", "wait_committed"] {
        let span = one(child);
        assert_eq!(span.parent_span_id, request.span_id, "{child} is a child of the request");
        assert_eq!(span.trace_id, request.trace_id);
    }
    assert_eq!(attr(one("wal.append"), "stream").as_deref(), Some("traced"));

    // Flushes are traces of their own: flush > delta.commit > object-store calls.
    let commit = named("delta.commit").into_iter().find(|s| parent_of(s) == "flush").expect("a commit within a flush");
    assert_eq!(attr(commit, "stream").as_deref(), Some("traced"));
    assert!(attr(commit, "table_version").is_some());
    let puts: Vec<_> = named("object_store.put").into_iter().filter(|s| s.parent_span_id == commit.span_id).collect();
    assert!(!puts.is_empty(), "the commit's object-store writes are its children");
    assert_eq!(puts[0].kind, 3, "a client span");
    assert!(attr(puts[0], "path").unwrap().contains("traced"));

    // The query continues the W3C trace; its span carries the statement.
    let request = one("POST /api/v1/query");
    assert_eq!(hex(&request.trace_id), W3C_TRACE);
    assert_eq!(hex(&request.parent_span_id), W3C_PARENT);
    let query = one("query");
    assert_eq!(query.parent_span_id, request.span_id);
    assert_eq!(attr(query, "db.query.text").as_deref(), Some("SELECT count(*) AS n FROM traced"));
    assert_eq!(attr(query, "rows").as_deref(), Some("1"));

    // A span per statement sent to PostgreSQL, as X-Ray shows SQL: named after the
    // operation and database, client kind, and the statement with its values as parameters.
    let statements = named("SELECT shop");
    assert_eq!(statements.len(), 2, "the catalog lookup and the scan");
    let sql = statements
        .into_iter()
        .find(|s| attr(s, "db.statement").unwrap_or_default().contains("\"orders\" WHERE"))
        .expect("the scan's statement");
    assert_eq!(sql.kind, 3, "a client span");
    assert_eq!(attr(sql, "db.system").as_deref(), Some("postgresql"));
    assert_eq!(attr(sql, "db.name").as_deref(), Some("shop"));
    let statement = attr(sql, "db.statement").unwrap();
    assert!(statement.contains("FROM \"public\".\"orders\" WHERE \"status\" = $1::text::text"), "{statement}");
    assert!(!statement.contains("pending"), "no literal in the statement: {statement}");
    let pg_query =
        named("query").into_iter().find(|q| attr(q, "db.query.text").unwrap_or_default().contains("pg.orders"));
    assert_eq!(sql.trace_id, pg_query.expect("the SQL query's span").trace_id, "in the query's trace");

    // The trace id is in the request's JSON log line; the token is nowhere.
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("\"message\":\"request\"") && l.contains("/events"))
        .unwrap_or_else(|| panic!("no request log line:\n{logs}"));
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["trace_id"], XRAY_ROOT);
    let everything = format!("{spans:?}{logs}");
    assert!(!everything.contains(&token), "the token leaked into spans or logs");
    assert!(!everything.contains(&token["lyt_".len()..]), "the token leaked into spans or logs");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_grpc() {
    spans_reach_the_receiver("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_http() {
    spans_reach_the_receiver("http/protobuf").await;
}
