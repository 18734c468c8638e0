//! Elasticsearch `_bulk` bodies: pairs of an action line and a document line, decoded into
//! checked events per stream, with one result per item in Elasticsearch's terms.
//!
//! `index` and `create` actions add their document; `delete` and `update` are refused per
//! item (logs are append-only). The index names the stream: a configured prefix and a date
//! suffix (`logstash-2026.11.25`) are cut off, dots become dashes. A document that is not a
//! JSON object is refused alone; an action line that cannot be read makes the whole request
//! fail, as it does in Elasticsearch, since what follows it cannot be told apart.

use std::sync::Arc;

use logyard_core::StreamName;
use logyard_core::time::Micros;

use crate::{Decoded, Decoder, Protocol, ProtocolError, RowBuilders, RowsSchema};

/// How index names become stream names.
#[derive(Debug, Clone, Default)]
pub struct IndexMapping {
    /// Cut from the start of index names (e.g. `logs-`).
    pub strip_prefix: String,
    /// Cut a date suffix: `-2026.11.25`, `-2026-11-25`, `-2026.11`, `_20261125`.
    pub strip_date_suffix: bool,
}

impl IndexMapping {
    /// The stream of an index.
    pub fn stream(&self, index: &str) -> Result<StreamName, InvalidIndex> {
        let mut name = index.strip_prefix(self.strip_prefix.as_str()).unwrap_or(index);
        if self.strip_date_suffix {
            name = strip_date(name);
        }
        let name = name.replace('.', "-");
        StreamName::new(&name).map_err(|_| InvalidIndex { index: index.to_owned(), name })
    }
}

/// An index whose name makes no stream name (the item's error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("index [{index}] does not name a stream: {name:?} must match ^[a-z0-9][a-z0-9_-]{{0,62}}$")]
pub struct InvalidIndex {
    index: String,
    name: String,
}

fn strip_date(name: &str) -> &str {
    let digits_or_sep = |c: char| c.is_ascii_digit() || matches!(c, '.' | '-' | '_');
    let Some((cut, last)) = name.char_indices().rfind(|&(_, c)| !digits_or_sep(c)) else { return name };
    let (head, tail) = name.split_at(cut + last.len_utf8());
    let Some(date) = tail.strip_prefix(['-', '_', '.']) else { return name };
    let digits: String = date.chars().filter(char::is_ascii_digit).collect();
    let plausible = matches!(digits.len(), 6 | 8) && digits.starts_with("20") && date.chars().all(digits_or_sep);
    if plausible && !head.is_empty() { head } else { name }
}

/// What happened to one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Checked and queued for its stream (durable once that stream's append succeeds).
    Accepted(StreamName),
    /// Refused: the HTTP status and Elasticsearch error type for the item, and why.
    Refused { status: u16, kind: &'static str, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// `index`, `create`, `update` or `delete`.
    pub action: &'static str,
    /// Shared by the items of a repeated action line.
    pub index: Arc<str>,
    pub id: Option<String>,
    pub outcome: Outcome,
}

/// A `_bulk` request: the index of its path (`POST /{index}/_bulk`), and how index names
/// become streams.
#[derive(Debug, Clone)]
pub struct Bulk {
    pub path_index: Option<String>,
    pub mapping: IndexMapping,
    /// The schemas the documents' rows are built against as they are read ([`RowBuilders`]).
    pub rows: Option<RowsSchema>,
}

/// The request cannot be read: Elasticsearch answers 400 for all of it.
fn malformed(message: String) -> ProtocolError {
    ProtocolError::Malformed { code: "illegal_argument_exception", message }
}

#[derive(serde::Deserialize, Default)]
struct Meta {
    #[serde(rename = "_index")]
    index: Option<String>,
    #[serde(rename = "_id")]
    id: Option<serde_json::Value>,
}

const APPEND_ONLY: &str = "logyard keeps logs append-only: use index or create";

/// An action line as read: the action, the index and the document id.
type Action = (&'static str, Arc<str>, Option<String>);

/// An action line: exactly one of these is set.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionLine {
    index: Option<Meta>,
    create: Option<Meta>,
    update: Option<Meta>,
    delete: Option<Meta>,
}

impl Bulk {
    /// An action line: the action, the index and the document id; why it cannot be read.
    fn action(&self, line: &[u8]) -> Result<Action, String> {
        let line: ActionLine =
            serde_json::from_slice(line).map_err(|e| format!("expected one of index, create, update, delete: {e}"))?;
        let given = [("index", line.index), ("create", line.create), ("update", line.update), ("delete", line.delete)];
        let mut given = given.into_iter().filter_map(|(a, m)| Some((a, m?)));
        let (action, meta) = match (given.next(), given.next()) {
            (Some(one), None) => one,
            _ => return Err("expected exactly one action".into()),
        };
        let id = meta.id.map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
        let index = match meta.index.or_else(|| self.path_index.clone()) {
            Some(i) => Arc::from(i),
            None => return Err("no _index, and none in the path".into()),
        };
        Ok((action, index, id))
    }
}

impl Decoder for Bulk {
    /// Every item in order, with its outcome.
    type Items = Vec<Item>;
    const PROTOCOL: Protocol = Protocol::Elasticsearch;

    fn decode(self, body: &[u8], received: Micros) -> Result<Decoded<Vec<Item>>, ProtocolError> {
        let mut out = Decoded::with_room(Vec::new(), body.len() + body.len() / 4);
        let mut rows = RowBuilders::new(self.rows.clone(), body.len() / 400);
        let mut last: Option<(Arc<str>, Result<StreamName, InvalidIndex>)> = None;
        let mut lines = logyard_core::parse::lines(body)
            .enumerate()
            .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace));
        // Shippers repeat one action line (`{"index":{"_index":"logs"}}`): read it once.
        let mut previous: Option<(&[u8], Action)> = None;
        while let Some((n, line)) = lines.next() {
            let bad_line = |why: &str| malformed(format!("Malformed action/metadata line [{n}]: {why}"));
            let (action, index, id) = match &previous {
                Some((text, read)) if *text == line => read.clone(),
                _ => {
                    let read = self.action(line).map_err(|why| bad_line(&why))?;
                    previous = Some((line, read.clone()));
                    read
                }
            };
            // Requests name few indexes: map each once.
            let stream = match &last {
                Some((i, s)) if *i == index => s.clone(),
                _ => {
                    let s = self.mapping.stream(&index);
                    last = Some((index.clone(), s.clone()));
                    s
                }
            };
            let refused = |status, kind, reason: String| Outcome::Refused { status, kind, reason };
            let outcome = match action {
                "index" | "create" => {
                    let Some((_, doc)) = lines.next() else {
                        return Err(malformed(format!("the {action} action of line [{n}] has no document after it")));
                    };
                    match &stream {
                        Err(invalid) => refused(400, "invalid_index_name_exception", invalid.to_string()),
                        Ok(stream) => match out.try_push_rows(stream, doc, received, &mut rows) {
                            Ok(()) => Outcome::Accepted(stream.clone()),
                            Err(e) => refused(400, "document_parsing_exception", format!("line [{}]: {e}", n + 1)),
                        },
                    }
                }
                "update" => {
                    lines.next();
                    refused(400, "action_request_validation_exception", APPEND_ONLY.into())
                }
                _ => refused(400, "action_request_validation_exception", APPEND_ONLY.into()),
            };
            if let Outcome::Refused { reason, .. } = &outcome {
                out.rejected.add(stream.as_ref().ok(), 1, || reason.clone());
            }
            out.items.push(Item { action, index, id, outcome });
        }
        out.finish_rows(rows);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use logyard_core::encoded::{leaves_left_out, times_and_texts};

    use super::*;

    fn mapping() -> IndexMapping {
        IndexMapping { strip_prefix: "logs-".into(), strip_date_suffix: true }
    }

    fn decode(body: &[u8], path_index: Option<&str>) -> Result<Decoded<Vec<Item>>, ProtocolError> {
        Bulk { path_index: path_index.map(str::to_owned), mapping: mapping(), rows: None }.decode(body, 0)
    }

    /// Documents of a stream with a schema get their rows as they are read, the rows the flush
    /// builds from their events; a stream whose documents bring a column its table lacks, or
    /// that has no schema, gets none, and the events are the same either way.
    #[test]
    fn documents_build_their_rows_as_the_flush_would() {
        use logyard_core::batch::{DEFAULT_MAX_COLUMNS, Held, base_schema, batches_from_held};
        let mut body = String::new();
        for i in 0..60 {
            let (index, extra) = match i % 3 {
                0 | 1 => ("web", String::new()),
                _ => ("api", if i == 59 { ",\"new\":1".to_owned() } else { String::new() }),
            };
            body.push_str(&format!("{{\"index\":{{\"_index\":\"{index}\"}}}}\n"));
            body.push_str(&format!(
                "{{\"timestamp\":\"2026-11-25T10:00:{:02}.{i:03}Z\",\"status\":{},\"req\":{{\"path\":\"/p{i}\"}},\"msg\":\"m \\\"{i}\\\"\"{extra}}}\n",
                59 - i,
                200 + i
            ));
        }
        body.push_str("{\"index\":{\"_index\":\"web\"}}\nnope\n{\"index\":{\"_index\":\"other\"}}\n{\"a\":1}\n");
        let name = |s: &str| StreamName::new(s).unwrap();
        let build =
            |held: Held<'_>, schema| batches_from_held(schema, [(1, held)], DEFAULT_MAX_COLUMNS, 1 << 20).unwrap();
        // The schema web's table has after a commit of these events.
        let plain = decode(body.as_bytes(), None).unwrap();
        let web_events = plain.streams[&name("web")].as_bytes();
        let schema = build(Held::Encoded(web_events), Arc::new(base_schema())).last().unwrap().schema();

        let known = schema.clone();
        let rows = RowsSchema(Arc::new(move |s: &StreamName| {
            (s.as_str() != "other").then(|| (known.clone(), DEFAULT_MAX_COLUMNS))
        }));
        let read = Bulk { path_index: None, mapping: mapping(), rows: Some(rows) }.decode(body.as_bytes(), 0).unwrap();
        assert_eq!(read.rows.keys().map(StreamName::as_str).collect::<Vec<_>>(), ["web"]);
        assert_eq!(read.rejected, plain.rejected);
        for stream in ["web", "api", "other"] {
            let (got, want) = (read.streams[&name(stream)].as_bytes(), plain.streams[&name(stream)].as_bytes());
            assert_eq!(times_and_texts(got), times_and_texts(want), "the events of {stream}");
            // Read again as a replay would (leaves left out where rows were built): the same rows.
            let replayed = build(Held::Encoded(got), schema.clone());
            assert_eq!(replayed, build(Held::Encoded(want), schema.clone()), "the rows of {stream}");
            // Streams with a schema leave their events' values to the rows: web's are kept,
            // api's given up at the end (a new column), and the flush reads api's texts.
            let all = times_and_texts(got).unwrap().len();
            assert_eq!(leaves_left_out(got).unwrap(), if stream == "other" { 0 } else { all }, "{stream}");
        }
        let from_rows = build(Held::Prepared(&read.rows[&name("web")]), schema.clone());
        assert_eq!(from_rows, build(Held::Encoded(web_events), schema));
        assert_eq!(from_rows.iter().map(|b| b.num_rows()).sum::<usize>(), 40);
    }

    #[test]
    fn index_names_become_stream_names() {
        let m = mapping();
        let s = |i: &str| m.stream(i).map(|s| s.to_string());
        assert_eq!(s("logstash-2026.11.25").unwrap(), "logstash");
        assert_eq!(s("logs-app-2026-11-25").unwrap(), "app");
        assert_eq!(s("nginx_20261125").unwrap(), "nginx");
        assert_eq!(s("kube.containers-2026.11").unwrap(), "kube-containers");
        assert_eq!(s("app-v2").unwrap(), "app-v2", "not a date");
        assert_eq!(s("2026.11.25").unwrap(), "2026-11-25", "nothing left without the date: kept");
        assert!(s("Upper").is_err());
        // A multi-byte character just before the digits (found by the elastic_bulk fuzz target:
        // the name was cut inside it and the decoder panicked).
        assert!(s("logs-nginx-50\u{75e}1").is_err());
        assert!(s("logs-nginx-\u{75e}-20261125").is_err());
        assert_eq!(IndexMapping::default().stream("logstash-2026.11.25").unwrap().as_str(), "logstash-2026-11-25");
    }

    #[test]
    fn items_are_decoded_in_order_with_their_outcome() {
        let body = br#"{"index":{"_index":"logstash-2026.11.25","_id":"a1"}}
{"@timestamp":"2026-11-25T10:00:00Z","message":"one"}
{"create":{}}
{"message":"two"}
{"index":{"_index":"app"}}
not json
{"delete":{"_index":"app","_id":"x"}}
{"update":{"_index":"app","_id":"y"}}
{"doc":{"a":1}}
{"index":{"_index":"Bad Index"}}
{"message":"three"}
"#;
        let bulk = decode(body, Some("web")).unwrap();
        let outcomes: Vec<(&str, &str, bool)> =
            bulk.items.iter().map(|i| (i.action, &*i.index, matches!(i.outcome, Outcome::Accepted(_)))).collect();
        assert_eq!(
            outcomes,
            [
                ("index", "logstash-2026.11.25", true),
                ("create", "web", true),
                ("index", "app", false),
                ("delete", "app", false),
                ("update", "app", false),
                ("index", "Bad Index", false),
            ]
        );
        assert_eq!(bulk.items[0].id.as_deref(), Some("a1"));
        let Outcome::Refused { status, kind, reason } = &bulk.items[2].outcome else { panic!() };
        assert_eq!((*status, *kind), (400, "document_parsing_exception"));
        assert!(reason.contains("line [6]"), "{reason}");
        assert_eq!(bulk.streams.keys().map(|s| s.as_str()).collect::<Vec<_>>(), ["logstash", "web"]);
        assert_eq!(bulk.streams[&StreamName::new("logstash").unwrap()].len(), 1);
        // Refused items count against their stream, or none when the index names none.
        assert_eq!(bulk.rejected.by_stream[&Some(StreamName::new("app").unwrap())], 3);
        assert_eq!(bulk.rejected.by_stream[&None], 1);
    }

    #[test]
    fn an_unreadable_action_line_fails_the_request() {
        let e = decode(b"{\"index\":{}}\n{}\n[1,2]\n{}\n", Some("web")).unwrap_err();
        assert!(e.to_string().contains("line [3]"), "{e}");
        assert!(decode(b"{\"index\":{}}\n{}\n", None).is_err(), "no index anywhere");
        assert!(decode(b"{\"index\":{}}\n", Some("web")).is_err(), "no document");
        assert!(decode(b"{\"index\":{},\"create\":{}}\n{}\n", Some("web")).is_err());
        assert!(decode(b"{\"upsert\":{}}\n{}\n", Some("web")).is_err(), "an unknown action");
    }
}
