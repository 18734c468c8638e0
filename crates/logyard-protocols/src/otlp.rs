//! OTLP logs (`ExportLogsServiceRequest`, protobuf or JSON) as events, one per log record:
//!
//! ```json
//! {"timestamp": <time_unix_nano, else observed_time_unix_nano>, "severity_text": "ERROR",
//!  "severity_number": 17, "body": <string, or the structured value>, "trace_id": "<hex>",
//!  "span_id": "<hex>", "event_name": "...", "attributes": {...},
//!  "resource": {"service.name": "...", "k8s.namespace.name": "...", ...},
//!  "scope": {"name": "...", "version": "..."}}
//! ```
//!
//! Nested objects become dotted columns (`resource.service.name`, `attributes.http.route`).
//! The stream is the first that applies of: the request's stream (a header, chosen by the
//! caller), the value of a configured attribute of the record or its resource (e.g.
//! `service.name` or `k8s.namespace.name`, made a valid stream name), and a default.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde_json::{Map, Value, json};

use logyard_core::StreamName;
use logyard_core::scan::write_json_string;
use logyard_core::time::Micros;

use logyard_core::batch::Given;

use crate::{Decoded, Decoder, Protocol, ProtocolError, RowBuilders, RowsSchema, given_columns};

/// How records find their stream.
#[derive(Debug, Clone)]
pub struct StreamChoice {
    /// An attribute (of the record, else of its resource) whose value names the stream.
    pub attribute: Option<String>,
    /// The stream when nothing else names one.
    pub default: StreamName,
}

/// Reads a request body: protobuf, or the OTLP JSON encoding.
pub fn parse_request(body: &[u8], json: bool) -> Result<ExportLogsServiceRequest, ProtocolError> {
    let malformed = |message| ProtocolError::Malformed { code: "bad_otlp_request", message };
    if json {
        serde_json::from_slice(body).map_err(|e| malformed(format!("not an OTLP/JSON logs request: {e}")))
    } else {
        ExportLogsServiceRequest::decode(body).map_err(|e| malformed(format!("not an OTLP/protobuf logs request: {e}")))
    }
}

fn value(v: &AnyValue) -> Value {
    use base64::Engine;
    match &v.value {
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(value).collect()),
        Some(any_value::Value::KvlistValue(l)) => Value::Object(object(&l.values)),
        Some(any_value::Value::BytesValue(b)) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        _ => Value::Null,
    }
}

fn object(attributes: &[KeyValue]) -> Map<String, Value> {
    attributes.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, value))).collect()
}

fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.as_str()),
        _ => None,
    })
}

fn to_json(map: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(map).expect("a map serializes")
}

/// A JSON object written field by field.
#[derive(Default)]
struct JsonObject {
    buf: Vec<u8>,
}

impl JsonObject {
    fn key(&mut self, key: &str) {
        self.buf.push(if self.buf.is_empty() { b'{' } else { b',' });
        write_json_string(&mut self.buf, key);
        self.buf.push(b':');
    }

    fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        write_json_string(&mut self.buf, value);
    }

    fn field<T: serde::Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        self.key(key);
        serde_json::to_writer(&mut self.buf, value).expect("a value serializes");
    }

    /// A field whose value is JSON already.
    fn raw(&mut self, key: &str, json: &[u8]) {
        self.key(key);
        self.buf.extend_from_slice(json);
    }

    /// Starts the next object in the same buffer.
    fn clear(&mut self) {
        self.buf.clear();
    }

    fn finish(&mut self) -> &[u8] {
        if self.buf.is_empty() {
            self.buf.push(b'{');
        }
        self.buf.push(b'}');
        &self.buf
    }
}

/// Turns every log record of a request into an event of its stream. `stream` is the
/// stream the caller named, if any.
fn records(
    request: &ExportLogsServiceRequest,
    stream: Option<&StreamName>,
    choice: &StreamChoice,
    received: Micros,
    rows: Option<RowsSchema>,
) -> Decoded<()> {
    // Event text is about the protobuf's size plus field names and escapes (JSON's is larger).
    let mut out = Decoded::with_room((), request.encoded_len() * 2);
    let records = request.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum();
    let mut rows = RowBuilders::new(rows, records);
    let mut e = JsonObject::default();
    for resource_logs in &request.resource_logs {
        let resource_attrs = resource_logs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        // Written once, copied into each record's event (and its columns into each row).
        let resource_map = object(resource_attrs);
        let resource = (!resource_map.is_empty()).then(|| to_json(&resource_map));
        let resource_columns = given_columns("resource", &resource_map);
        for scope_logs in &resource_logs.scope_logs {
            let mut scope_map = Map::new();
            if let Some(s) = &scope_logs.scope {
                if !s.name.is_empty() {
                    scope_map.insert("name".into(), Value::String(s.name.clone()));
                }
                if !s.version.is_empty() {
                    scope_map.insert("version".into(), Value::String(s.version.clone()));
                }
                scope_map.extend(object(&s.attributes));
            }
            let scope = (!scope_map.is_empty()).then(|| to_json(&scope_map));
            let scope_columns = given_columns("scope", &scope_map);
            for record in &scope_logs.log_records {
                let named = match (stream, choice.attribute.as_deref()) {
                    (None, Some(key)) => string_attribute(&record.attributes, key)
                        .or_else(|| string_attribute(resource_attrs, key))
                        .and_then(StreamName::from_foreign),
                    _ => None,
                };
                let target = stream.or(named.as_ref()).unwrap_or(&choice.default);
                e.clear();
                let time =
                    if record.time_unix_nano > 0 { record.time_unix_nano } else { record.observed_time_unix_nano };
                if time > 0 {
                    e.field("timestamp", &time);
                }
                if !record.severity_text.is_empty() {
                    e.string("severity_text", &record.severity_text);
                }
                if record.severity_number != 0 {
                    e.field("severity_number", &record.severity_number);
                }
                // The body when it is text (`Some(None)`: none).
                let mut body_text = Some(None);
                match record.body.as_ref().map(|b| &b.value) {
                    Some(Some(any_value::Value::StringValue(text))) => {
                        e.string("body", text);
                        body_text = Some(Some(text.as_str()));
                    }
                    Some(_) => {
                        e.field("body", &value(record.body.as_ref().expect("a body")));
                        body_text = None;
                    }
                    None => {}
                }
                let trace_id = (!record.trace_id.is_empty()).then(|| hex::encode(&record.trace_id));
                if let Some(id) = &trace_id {
                    e.string("trace_id", id);
                }
                let span_id = (!record.span_id.is_empty()).then(|| hex::encode(&record.span_id));
                if let Some(id) = &span_id {
                    e.string("span_id", id);
                }
                if !record.event_name.is_empty() {
                    e.string("event_name", &record.event_name);
                }
                let attributes = object(&record.attributes);
                if !record.attributes.is_empty() {
                    e.field("attributes", &attributes);
                }
                if let Some(resource) = &resource {
                    e.raw("resource", resource);
                }
                if let Some(scope) = &scope {
                    e.raw("scope", scope);
                }
                // The row from the record's values as they are (the body is escaped in the
                // event's text), unless a value is structured: then read from the text.
                out.push_building_row(target, e.finish(), received, &mut rows, |builder, time, text, leaves, paths| {
                    let columns =
                        (body_text, given_columns("attributes", &attributes), &resource_columns, &scope_columns);
                    let (Some(body), Some(attributes), Some(resource), Some(scope)) = columns else {
                        return builder.push_leaves_copied(time, text, leaves, paths);
                    };
                    let fields = [
                        (
                            "severity_text",
                            Some(record.severity_text.as_str()).filter(|t| !t.is_empty()).map(Given::Text),
                        ),
                        (
                            "severity_number",
                            (record.severity_number != 0).then(|| Given::Int(record.severity_number.into())),
                        ),
                        ("body", body.map(Given::Text)),
                        ("trace_id", trace_id.as_deref().map(Given::Text)),
                        ("span_id", span_id.as_deref().map(Given::Text)),
                        ("event_name", Some(record.event_name.as_str()).filter(|t| !t.is_empty()).map(Given::Text)),
                    ];
                    let fields = fields.into_iter().filter_map(|(name, value)| Some((name, value?)));
                    let nested =
                        attributes.iter().chain(resource).chain(scope).map(|(name, value)| (name.as_str(), *value));
                    builder.push_values_copied(time, fields.chain(nested))
                });
            }
        }
    }
    out.finish_rows(rows);
    out
}

/// An OTLP/HTTP request body (`POST /v1/logs`): protobuf, or JSON.
#[derive(Debug, Clone)]
pub struct OtlpHttp {
    pub json: bool,
    /// The stream the caller named (a header), if any.
    pub stream: Option<StreamName>,
    pub choice: StreamChoice,
    /// The table schemas the records' rows are built against as they are read.
    pub rows: Option<RowsSchema>,
}

impl Decoder for OtlpHttp {
    type Items = ();
    const PROTOCOL: Protocol = Protocol::Otlp;

    fn decode(self, body: &[u8], received: Micros) -> Result<Decoded<()>, ProtocolError> {
        let request = parse_request(body, self.json)?;
        Ok(records(&request, self.stream.as_ref(), &self.choice, received, self.rows))
    }
}

/// An OTLP/gRPC `Export` call: the request arrives decoded (by the gRPC server), so there is
/// no body to read.
#[derive(Debug, Clone)]
pub struct OtlpExport {
    pub request: ExportLogsServiceRequest,
    pub stream: Option<StreamName>,
    pub choice: StreamChoice,
    /// The table schemas the records' rows are built against as they are read.
    pub rows: Option<RowsSchema>,
}

impl Decoder for OtlpExport {
    type Items = ();
    const PROTOCOL: Protocol = Protocol::Otlp;

    fn decode(self, _body: &[u8], received: Micros) -> Result<Decoded<()>, ProtocolError> {
        Ok(records(&self.request, self.stream.as_ref(), &self.choice, received, self.rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logyard_core::encoded::decode_events;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::common::v1::KeyValueList;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn kv(key: &str, v: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    fn request() -> ExportLogsServiceRequest {
        let record = |body: &str, attrs: Vec<KeyValue>| LogRecord {
            time_unix_nano: 1_764_064_800_123_456_789,
            severity_number: 17,
            severity_text: "ERROR".into(),
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(body.into())) }),
            attributes: attrs,
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            ..Default::default()
        };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "Checkout.API"), kv("k8s.namespace.name", "shop")],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app".into(),
                        version: "1.2".into(),
                        ..Default::default()
                    }),
                    log_records: vec![
                        record("payment failed", vec![kv("http.route", "/api/payments")]),
                        record("moved", vec![kv("service.name", "cart")]),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn texts(d: &Decoded<()>, stream: &str) -> Vec<Value> {
        let events = d.streams[&StreamName::new(stream).unwrap()].as_bytes().to_vec();
        decode_events(&events).map(|e| serde_json::from_str(e.unwrap().text).unwrap()).collect()
    }

    #[test]
    fn records_become_events_in_the_stream_their_attribute_names() {
        let choice = StreamChoice { attribute: Some("service.name".into()), default: StreamName::new("otel").unwrap() };
        let bytes = request().encode_to_vec();
        let d = OtlpHttp { json: false, stream: None, choice: choice.clone(), rows: None }.decode(&bytes, 0).unwrap();
        assert_eq!(d.streams.keys().map(|s| s.as_str()).collect::<Vec<_>>(), ["cart", "checkout-api"]);
        let e = &texts(&d, "checkout-api")[0];
        assert_eq!(e["body"], "payment failed");
        assert_eq!(e["severity_text"], "ERROR");
        assert_eq!(e["severity_number"], 17);
        assert_eq!(e["trace_id"], "ab".repeat(16));
        assert_eq!(e["span_id"], "cd".repeat(8));
        assert_eq!(e["attributes"]["http.route"], "/api/payments");
        assert_eq!(e["resource"]["k8s.namespace.name"], "shop");
        assert_eq!(e["scope"]["version"], "1.2");
        // A stream named by the caller wins; without an attribute, the default.
        let named = records(&request(), Some(&StreamName::new("mine").unwrap()), &choice, 0, None);
        assert_eq!(named.streams.len(), 1);
        let none = StreamChoice { attribute: None, default: StreamName::new("otel").unwrap() };
        assert_eq!(records(&request(), None, &none, 0, None).streams.keys().next().unwrap().as_str(), "otel");
    }

    #[test]
    fn records_build_their_rows_as_the_flush_would() {
        let choice = StreamChoice { attribute: Some("service.name".into()), default: StreamName::new("otel").unwrap() };
        let mut request = request();
        let any = |value| Some(AnyValue { value: Some(value) });
        let attribute = |key: &str, value| KeyValue { key: key.into(), value: any(value), ..Default::default() };
        let records = &mut request.resource_logs[0].scope_logs[0].log_records;
        // Attributes of each kind, names that are not column names as they are, a record
        // without a time or severity.
        records[0].attributes.extend([
            attribute("retries", any_value::Value::IntValue(-3)),
            attribute("cached", any_value::Value::BoolValue(true)),
            attribute("k8s pod,name", any_value::Value::StringValue("web-1".into())),
            attribute("", any_value::Value::StringValue("x".into())),
            KeyValue { key: "unset".into(), value: None, ..Default::default() },
        ]);
        records[1].time_unix_nano = 0;
        records[1].severity_number = 0;
        records[1].severity_text.clear();
        // Structured values: their rows are read from the events' text (a third stream).
        let structured = |value, body| LogRecord {
            time_unix_nano: 1_764_064_800_000_000_007,
            body,
            attributes: vec![kv("service.name", "search"), attribute("v", value)],
            ..Default::default()
        };
        let kvlist = any_value::Value::KvlistValue(KeyValueList { values: vec![kv("a", "b")] });
        records.extend([
            structured(any_value::Value::DoubleValue(1.5), None),
            structured(any_value::Value::StringValue("s".into()), any(kvlist.clone())),
            structured(kvlist, None),
        ]);
        let bytes = request.encode_to_vec();
        let decode =
            |rows| OtlpHttp { json: false, stream: None, choice: choice.clone(), rows }.decode(&bytes, 0).unwrap();
        let built = crate::rows_as_the_flush_builds(decode);
        assert_eq!(built.iter().map(StreamName::as_str).collect::<Vec<_>>(), ["cart", "checkout-api", "search"]);
    }

    #[test]
    fn the_json_encoding_is_read_too() {
        let body =
            br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},
            "scopeLogs":[{"scope":{"name":"s"},"logRecords":[{"timeUnixNano":"1764064800000000000","severityNumber":9,
            "severityText":"INFO","body":{"kvlistValue":{"values":[{"key":"msg","value":{"stringValue":"hi"}}]}},
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}]}"#;
        let choice = StreamChoice { attribute: Some("service.name".into()), default: StreamName::new("otel").unwrap() };
        let d = OtlpHttp { json: true, stream: None, choice, rows: None }.decode(body, 0).unwrap();
        let e = &texts(&d, "web")[0];
        assert_eq!(e["body"]["msg"], "hi");
        assert_eq!(e["trace_id"], "5b8efff798038103d269b633813fc60c");
        assert!(parse_request(b"{\"resourceLogs\": 3}", true).is_err());
        assert!(parse_request(b"\xff\xff\xff", false).is_err());
    }
}
