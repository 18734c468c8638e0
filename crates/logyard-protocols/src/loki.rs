//! Loki push requests (`POST /loki/api/v1/push`): JSON, or protobuf compressed with snappy
//! as Promtail, Grafana Alloy and Fluent Bit's `loki` output send them. Each entry becomes
//! `{"timestamp": <ns>, "message": <line>, "labels": {...}, "metadata": {...}}`: the stream's
//! labels and the entry's structured metadata become `labels.*` and `metadata.*` columns. The
//! logyard stream is the request's (a header), else a configured label's value, else a default.

use prost::Message;
use serde_json::{Map, Value};

use logyard_core::StreamName;
use logyard_core::time::Micros;

use logyard_core::batch::Given;

use crate::{Decoded, Decoder, Protocol, ProtocolError, RowBuilders, RowsSchema, given_columns};

fn malformed(message: String) -> ProtocolError {
    ProtocolError::Malformed { code: "bad_loki_push", message }
}

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StreamAdapter {
    /// Labels in Prometheus form: `{app="web", env="prod"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPair>,
}

#[derive(Clone, PartialEq, Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// How entries find their stream.
#[derive(Debug, Clone)]
pub struct LokiChoice {
    /// A label whose value names the stream.
    pub label: Option<String>,
    pub default: StreamName,
}

/// One stream of a push, whichever the encoding.
struct Entries {
    labels: Map<String, Value>,
    /// (nanoseconds since the epoch, line, structured metadata)
    entries: Vec<(i128, String, Map<String, Value>)>,
}

/// Parses `{a="b", c="d\"e"}`.
pub fn parse_labels(text: &str) -> Result<Map<String, Value>, ProtocolError> {
    let bad = || malformed(format!("labels {text:?} are not in the form {{name=\"value\", ...}}"));
    let inner = text.trim().strip_prefix('{').and_then(|t| t.strip_suffix('}')).ok_or_else(bad)?;
    let mut out = Map::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=').ok_or_else(bad)?;
        let after = after.trim_start().strip_prefix('"').ok_or_else(bad)?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().ok_or_else(bad)? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or_else(bad)?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.insert(name.trim().to_owned(), Value::String(value));
        rest = after[end + 1..].trim_start().trim_start_matches(',').trim_start();
    }
    Ok(out)
}

fn from_json(body: &[u8]) -> Result<Vec<Entries>, ProtocolError> {
    #[derive(serde::Deserialize)]
    struct Push {
        streams: Vec<JsonStream>,
    }
    #[derive(serde::Deserialize)]
    struct JsonStream {
        #[serde(default)]
        stream: Map<String, Value>,
        values: Vec<Vec<Value>>,
    }
    let not_a_push = |e: serde_json::Error| malformed(format!("not a Loki push request: {e}"));
    // Read as a value first: serde would also take a struct written as an array (`[[]]`), which
    // Loki refuses. A push is an object whose `streams` are objects.
    let push: Value = serde_json::from_slice(body).map_err(not_a_push)?;
    let streams = push.get("streams").and_then(Value::as_array);
    if !streams.is_some_and(|streams| streams.iter().all(Value::is_object)) {
        return Err(malformed(
            "a Loki push is an object {\"streams\": [{\"stream\": {...}, \"values\": [...]}, ...]}".into(),
        ));
    }
    let push: Push = serde_json::from_value(push).map_err(not_a_push)?;
    push.streams
        .into_iter()
        .map(|s| {
            let entries = s
                .values
                .into_iter()
                .map(|v| {
                    let ns = v.first().and_then(Value::as_str).and_then(|t| t.parse::<i128>().ok());
                    let line = v.get(1).and_then(Value::as_str);
                    let metadata = v.get(2).and_then(Value::as_object).cloned().unwrap_or_default();
                    match (ns, line) {
                        (Some(ns), Some(line)) => Ok((ns, line.to_owned(), metadata)),
                        _ => Err(malformed(format!(
                            "an entry must be [\"<unix ns>\", \"<line>\"(, {{metadata}})]: got {}",
                            Value::Array(v)
                        ))),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Entries { labels: s.stream, entries })
        })
        .collect()
}

fn from_protobuf(body: &[u8], max_bytes: usize) -> Result<Vec<Entries>, ProtocolError> {
    let len = snap::raw::decompress_len(body).map_err(|e| malformed(format!("snappy: {e}")))?;
    if len > max_bytes {
        return Err(ProtocolError::TooLarge(format!(
            "the push decompresses to {len} bytes, over the limit of {max_bytes} bytes"
        )));
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| malformed(format!("snappy: {e}")))?;
    let push = PushRequest::decode(&raw[..]).map_err(|e| malformed(format!("not a Loki push request: {e}")))?;
    push.streams
        .into_iter()
        .map(|s| {
            let entries = s
                .entries
                .into_iter()
                .map(|e| {
                    let ts = e.timestamp.unwrap_or_default();
                    let ns = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
                    let metadata =
                        e.structured_metadata.into_iter().map(|p| (p.name, Value::String(p.value))).collect();
                    (ns, e.line, metadata)
                })
                .collect();
            Ok(Entries { labels: parse_labels(&s.labels)?, entries })
        })
        .collect()
}

/// A push (`POST /loki/api/v1/push`): snappy-compressed protobuf unless `json`.
#[derive(Debug, Clone)]
pub struct LokiPush {
    pub json: bool,
    /// The stream the caller named (a header), if any.
    pub stream: Option<StreamName>,
    pub choice: LokiChoice,
    /// The largest snappy-decompressed push.
    pub max_bytes: usize,
    /// The table schemas the entries' rows are built against as they are read.
    pub rows: Option<RowsSchema>,
}

impl Decoder for LokiPush {
    type Items = ();
    const PROTOCOL: Protocol = Protocol::Loki;

    fn decode(self, body: &[u8], received: Micros) -> Result<Decoded<()>, ProtocolError> {
        let streams = if self.json { from_json(body)? } else { from_protobuf(body, self.max_bytes)? };
        // Event text is each line escaped, with the labels, metadata and timestamp.
        let room = streams.iter().flat_map(|s| &s.entries).map(|(_, line, _)| line.len() * 3 / 2 + 64).sum();
        let mut out = Decoded::with_room((), room);
        let mut rows = RowBuilders::new(self.rows, streams.iter().map(|s| s.entries.len()).sum());
        for s in streams {
            let target = self
                .stream
                .clone()
                .or_else(|| {
                    let label = self.choice.label.as_deref()?;
                    s.labels.get(label)?.as_str().and_then(StreamName::from_foreign)
                })
                .unwrap_or_else(|| self.choice.default.clone());
            // The stream's labels are the same in each of its entries: written once.
            let labels = (!s.labels.is_empty()).then(|| serde_json::to_vec(&s.labels).expect("serializes"));
            // An entry's row is built from its line and labels as they are, not read back from
            // the event's text (where the line is escaped), when no value is an object or array.
            let label_columns = given_columns("labels", &s.labels);
            let mut text = Vec::new();
            for (ns, line, metadata) in s.entries {
                event_text(&mut text, ns, &line, labels.as_deref(), &metadata);
                out.push_building_row(&target, &text, received, &mut rows, |builder, time, text, leaves, paths| {
                    let (Some(labels), Some(metadata)) = (&label_columns, given_columns("metadata", &metadata)) else {
                        return builder.push_leaves_copied(time, text, leaves, paths);
                    };
                    let message = ("message", Given::Text(&line));
                    let values = labels.iter().chain(&metadata).map(|(name, value)| (name.as_str(), *value));
                    builder.push_values_copied(time, values.chain([message]))
                });
            }
        }
        out.finish_rows(rows);
        Ok(out)
    }
}

/// Writes an entry's event into `text`: the object serde_json writes for the map of
/// `labels` (already JSON), `message`, `metadata` and `timestamp` (keys in its order), without
/// building that map (and a copy of the stream's labels) for each entry.
fn event_text(text: &mut Vec<u8>, ns: i128, line: &str, labels: Option<&[u8]>, metadata: &Map<String, Value>) {
    text.clear();
    text.push(b'{');
    if let Some(labels) = labels {
        text.extend_from_slice(b"\"labels\":");
        text.extend_from_slice(labels);
        text.push(b',');
    }
    text.extend_from_slice(b"\"message\":");
    logyard_core::scan::write_json_string(text, line);
    if !metadata.is_empty() {
        text.extend_from_slice(b",\"metadata\":");
        serde_json::to_writer(&mut *text, metadata).expect("serializes");
    }
    text.extend_from_slice(b",\"timestamp\":");
    text.extend_from_slice(itoa::Buffer::new().format(ns.clamp(0, i128::from(i64::MAX)) as i64).as_bytes());
    text.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_entry_reads_as_the_object_of_its_fields() {
        let labels = parse_labels(r#"{app="web", env="a\"b"}"#).unwrap();
        let metadata: Map<String, Value> =
            [("trace_id".to_owned(), json!("t-1")), ("b".to_owned(), json!("x\ny"))].into_iter().collect();
        for (labels, metadata) in [(labels.clone(), metadata.clone()), (Map::new(), Map::new()), (labels, Map::new())] {
            for (ns, line) in
                [(1_764_064_800_000_000_001i128, "GET / 200"), (-5, r#"{"a":"\u00e9\"", "b":"é	c"}"#), (i128::MAX, "")]
            {
                let mut want = Map::new();
                want.insert("timestamp".into(), json!(ns.clamp(0, i128::from(i64::MAX)) as i64));
                want.insert("message".into(), json!(line));
                if !labels.is_empty() {
                    want.insert("labels".into(), Value::Object(labels.clone()));
                }
                if !metadata.is_empty() {
                    want.insert("metadata".into(), Value::Object(metadata.clone()));
                }
                let encoded = (!labels.is_empty()).then(|| serde_json::to_vec(&labels).unwrap());
                let mut text = Vec::new();
                event_text(&mut text, ns, line, encoded.as_deref(), &metadata);
                assert_eq!(
                    String::from_utf8(text).unwrap(),
                    serde_json::to_string(&Value::Object(want)).unwrap(),
                    "the same text as the map's"
                );
            }
        }
    }

    #[test]
    fn entries_build_their_rows_as_the_flush_would() {
        let choice = LokiChoice { label: Some("app".into()), default: StreamName::new("loki").unwrap() };
        let mut values = Vec::new();
        for i in 0..50 {
            let metadata = if i % 2 == 0 { json!({"trace_id": format!("t-{i}")}) } else { json!({}) };
            values.push(json!([format!("17640648000000{i:05}"), format!("GET /p{i} \"é\" 200"), metadata]));
        }
        // Label names that are not column names as they are; labels that are not text: a
        // number is given as it is, a fraction sends the row to the event's text.
        let push = json!({"streams": [
            {"stream": {"app": "web", "env": "prod", "k8s pod,name": "web-1", "": "x"}, "values": values},
            {"stream": {"app": "api"}, "values": [["1764064800000000000", "up"]]},
            {"stream": {"app": "cart", "replicas": 3, "load": 0.5}, "values": [["1764064800000000000", "up", {"n": "1"}]]},
        ]});
        let body = serde_json::to_vec(&push).unwrap();
        let decode = |rows| {
            LokiPush { json: true, stream: None, choice: choice.clone(), max_bytes: 1 << 20, rows }
                .decode(&body, 0)
                .unwrap()
        };
        let built = crate::rows_as_the_flush_builds(decode);
        assert_eq!(built.iter().map(StreamName::as_str).collect::<Vec<_>>(), ["api", "cart", "web"]);
    }

    #[test]
    fn labels_are_parsed_with_escapes() {
        let l = parse_labels(r#"{app="web", env="prod",msg="say \"hi\"\n"}"#).unwrap();
        assert_eq!(l["app"], "web");
        assert_eq!(l["env"], "prod");
        assert_eq!(l["msg"], "say \"hi\"\n");
        assert!(parse_labels("{}").unwrap().is_empty());
        assert!(parse_labels("app=web").is_err());
        assert!(parse_labels(r#"{app="web}"#).is_err());
    }

    #[test]
    fn json_pushes_and_snappy_protobuf_pushes_give_the_same_events() {
        let choice = LokiChoice { label: Some("app".into()), default: StreamName::new("loki").unwrap() };
        let decode = |body: &[u8], json| {
            LokiPush { json, stream: None, choice: choice.clone(), max_bytes: 1 << 20, rows: None }.decode(body, 0)
        };
        let json_body = br#"{"streams":[{"stream":{"app":"Web.Shop","env":"prod"},"values":[["1764064800000000001","GET / 200",{"trace_id":"abc"}]]}]}"#;
        let a = decode(json_body, true).unwrap();
        let push = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{app="Web.Shop", env="prod"}"#.into(),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp { seconds: 1_764_064_800, nanos: 1 }),
                    line: "GET / 200".into(),
                    structured_metadata: vec![LabelPair { name: "trace_id".into(), value: "abc".into() }],
                }],
                hash: 0,
            }],
        };
        let compressed = snap::raw::Encoder::new().compress_vec(&push.encode_to_vec()).unwrap();
        let b = decode(&compressed, false).unwrap();
        let key = StreamName::new("web-shop").unwrap();
        assert_eq!(a.streams[&key].as_bytes(), b.streams[&key].as_bytes());
        assert!(decode(b"not snappy", false).unwrap_err().to_string().contains("snappy"));
        assert!(decode(br#"{"streams":[{"values":[[1,2]]}]}"#, true).is_err());
        // Found by the loki_push fuzz target: serde reads a struct from an array, Loki does not;
        // and a push is text, also where logyard does not look.
        for body in [&b"[[]]"[..], br#"{"streams":[[{}, []]]}"#, b"{\"streams\": [], \"x\": {\"\xa1\": 1}}"] {
            let err = decode(body, true).unwrap_err().to_string();
            assert!(err.contains("Loki push"), "{err}");
        }
        // A push that claims to decompress to more than the limit is refused before it is.
        let big = snap::raw::Encoder::new().compress_vec(&vec![b'x'; (1 << 20) + 1]).unwrap();
        assert!(matches!(decode(&big, false), Err(ProtocolError::TooLarge(_))));
    }
}
