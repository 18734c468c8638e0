//! `GET /api/v1/tail?streams=a,b&q=...`: matching events as Server-Sent Events, the moment the
//! write-ahead log made them durable (this process's [`TailHub`](logyard_ingest::tail::TailHub),
//! not a poll of the tables), and those of every peer replica, merged.
//!
//! - **Events** (`event: event`): the event's flattened fields, its `timestamp` (RFC 3339)
//!   and `_stream`. Its `id` names, per replica (writer), the last record position and event
//!   index sent: `logyard-1a2b:812.3,logyard-9f8e:77.0`. A client that reconnects with it as
//!   `Last-Event-ID` gets what it missed while it is still kept, and no event twice.
//! - **Sampling**: past `max_events_per_second` (default 200) events are dropped, and a
//!   `dropped` event says how many, at most once a second. A listener too slow to take even
//!   that loses whole records, counted there as `records_missed`.
//! - **Heartbeats**: a comment every `heartbeat` (default 15 s), so that an idle tail outlives
//!   a load balancer's idle timeout (the ALB's is 60 s).
//! - **Peers**: unless the request is a peer's (`local=true`), the replicas named by `peers`
//!   (host:port names, resolved to every address, e.g. the chart's headless service) are
//!   tailed with the caller's own credentials and merged. A replica recognises itself by the
//!   writer id of the `hello` event each tail starts with.
//! - **Stopping**: every tail ends when the server begins to shut down.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use logyard_auth::{FieldAccess, Principal, Scope};
use logyard_core::StreamName;
use logyard_core::encoded::decode_events;
use logyard_core::event::{Scalar, TimeSource, flatten};
use logyard_core::time::{Micros, rfc3339};
use logyard_ingest::tail::{Durable, Subscription};
use logyard_search::{Leaves, Matcher};

use crate::error::ApiError;
use crate::intake::authorize;
use crate::state::{AppState, TailSettings};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TailParams {
    /// Comma-separated stream names; none: every stream the token may read.
    #[serde(default)]
    streams: String,
    /// The search (the search language).
    #[serde(default)]
    q: String,
    /// A peer's request: this replica's events only.
    #[serde(default)]
    local: bool,
}

/// Where a tail has got to: per writer, the last record position and event index sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Position(BTreeMap<String, (u64, u32)>);

impl Position {
    fn parse(text: &str) -> Self {
        let entries = text.split(',').filter_map(|entry| {
            let (writer, at) = entry.trim().split_once(':')?;
            let (position, index) = at.split_once('.')?;
            Some((writer.to_owned(), (position.parse().ok()?, index.parse().ok()?)))
        });
        Self(entries.collect())
    }

    fn advance(&mut self, writer: &str, position: u64, index: u32) {
        let entry = self.0.entry(writer.to_owned()).or_insert((position, index));
        if (position, index) > *entry {
            *entry = (position, index);
        }
    }

    fn render(&self) -> String {
        let entries: Vec<String> = self.0.iter().map(|(w, (p, i))| format!("{w}:{p}.{i}")).collect();
        entries.join(",")
    }
}

/// What the sources of one tail hand to its output.
enum Item {
    Event {
        writer: Arc<str>,
        position: u64,
        index: u32,
        data: String,
    },
    Dropped(u64),
    /// Whole records a source fell too far behind to get.
    Missed(u64),
    /// Events a source could no longer replay.
    Gap,
}

/// Which events a tail wants, and who asks.
struct Filter {
    /// None: every stream the principal may read.
    streams: Option<HashSet<StreamName>>,
    principal: Principal,
    matcher: HashMap<StreamName, Matcher>,
    expr: logyard_search::Expr,
    state: AppState,
}

impl Filter {
    fn wants(&self, stream: &StreamName) -> bool {
        self.streams.as_ref().is_none_or(|s| s.contains(stream)) && self.principal.may_see(stream.as_str())
    }

    /// An event's fields as the principal may see them: without the denied ones, the masked
    /// ones hashed (before any filter looks at them, so a filter cannot probe their values).
    fn leaves<'a>(&self, text: &'a str, source: TimeSource, time: Micros) -> Option<Leaves<'a>> {
        let rules = self.principal.fields();
        let mut leaves = Leaves::new();
        let timestamp = rfc3339(time);
        flatten(text, source, |path, scalar, _| {
            let scalar = match rules.access(path) {
                FieldAccess::Clear => scalar,
                FieldAccess::Denied => return,
                FieldAccess::Masked => {
                    let text = match scalar {
                        Scalar::Bool(b) => b.to_string(),
                        Scalar::Int(i) => i.to_string(),
                        Scalar::Float(f) => f.to_string(),
                        Scalar::Text(t) => t.into_owned(),
                        Scalar::Json(t) => t.to_owned(),
                    };
                    let Some(masked) = self.state.query.masked_value(&text) else { return };
                    Scalar::Text(masked.into())
                }
            };
            leaves.insert(path.to_owned(), scalar);
        })
        .ok()?;
        leaves.insert("timestamp".into(), Scalar::Text(timestamp.into()));
        Some(leaves)
    }

    fn matcher(&mut self, stream: &StreamName) -> &Matcher {
        self.matcher.entry(stream.clone()).or_insert_with(|| {
            let text = self.state.query.options().text_fields.of(stream).to_vec();
            Matcher::new(self.expr.clone(), text)
        })
    }
}

/// Events per second, with a second's burst.
struct Sampler {
    rate: f64,
    tokens: f64,
    last: Instant,
    dropped: u64,
}

impl Sampler {
    fn new(rate: u32) -> Self {
        Self { rate: rate.max(1) as f64, tokens: rate.max(1) as f64, last: Instant::now(), dropped: 0 }
    }

    /// Whether one more event may be sent now; counts it as dropped if not.
    fn admit(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

pub(crate) async fn tail(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    headers: HeaderMap,
    Query(params): Query<TailParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    authorize(&principal, Scope::Query, None)?;
    let streams = match params.streams.trim() {
        "" => None,
        list => {
            let mut set = HashSet::new();
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let stream = StreamName::new(name)?;
                authorize(&principal, Scope::Query, Some(&stream))?;
                set.insert(stream);
            }
            Some(set)
        }
    };
    let expr = logyard_search::parse(&params.q)?;
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(Position::parse).unwrap_or_default();
    let settings = state.tail.clone();
    let writer: Arc<str> = state.ingestor.writer_id().into();
    let sampler = Arc::new(Mutex::new(Sampler::new(settings.max_events_per_second)));
    let (tx, rx) = mpsc::channel::<Item>(256);

    let after = resume.0.get(&*writer).copied();
    let subscription = state.ingestor.tail().subscribe(after.map(|(p, _)| p.saturating_sub(1)));
    let filter = Filter { streams, principal, matcher: HashMap::new(), expr, state: state.clone() };
    tokio::spawn(local_source(subscription, after, filter, writer.clone(), sampler.clone(), tx.clone()));
    if !params.local && !settings.peers.is_empty() {
        let request = PeerRequest {
            streams: params.streams.clone(),
            q: params.q.clone(),
            authorization: headers.get(header::AUTHORIZATION).cloned(),
            writer: writer.clone(),
        };
        tokio::spawn(peer_sources(settings.clone(), request, resume.clone(), sampler, tx.clone()));
    }
    drop(tx);

    let hello = serde_json::json!({
        "writer": &*writer,
        "max_events_per_second": settings.max_events_per_second,
        "peers": !params.local && !settings.peers.is_empty(),
    });
    let first = Event::default().event("hello").data(hello.to_string());
    let stopping = state.stopping.clone();
    // A peer's request tells only its own writer's position; a user's, every replica's.
    let start = match params.local {
        true => Position(resume.0.into_iter().filter(|(w, _)| **w == *writer).collect()),
        false => resume,
    };
    let output = Output { rx, position: start, dropped: 0, missed: 0 };
    let events = futures::stream::unfold(output, move |mut out| {
        let stopping = stopping.clone();
        async move {
            let event = tokio::select! {
                _ = stopping.wait() => return None,
                event = out.next() => event?,
            };
            Some((Ok(event), out))
        }
    });
    let stream = futures::stream::once(async move { Ok(first) }).chain(events);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(settings.heartbeat).text("heartbeat")))
}

/// The merged output of a tail's sources.
struct Output {
    rx: mpsc::Receiver<Item>,
    position: Position,
    dropped: u64,
    missed: u64,
}

impl Output {
    /// The next event to send; `None` when every source has ended.
    async fn next(&mut self) -> Option<Event> {
        loop {
            // Drops are told at most once a second, before the next event or on their own.
            let item = if self.dropped > 0 || self.missed > 0 {
                match tokio::time::timeout(Duration::from_secs(1), self.rx.recv()).await {
                    Ok(item) => item,
                    Err(_) => return Some(self.take_dropped()),
                }
            } else {
                self.rx.recv().await
            };
            match item? {
                Item::Event { writer, position, index, data } => {
                    self.position.advance(&writer, position, index);
                    return Some(Event::default().event("event").id(self.position.render()).data(data));
                }
                Item::Dropped(n) => self.dropped += n,
                Item::Missed(n) => self.missed += n,
                Item::Gap => return Some(Event::default().event("gap").data("{}")),
            }
        }
    }

    fn take_dropped(&mut self) -> Event {
        let dropped = std::mem::take(&mut self.dropped);
        let missed = std::mem::take(&mut self.missed);
        let data = serde_json::json!({ "dropped": dropped, "records_missed": missed });
        Event::default().event("dropped").data(data.to_string())
    }
}

/// This replica's events: kept ones after `after`, then new ones.
async fn local_source(
    mut subscription: Subscription,
    after: Option<(u64, u32)>,
    mut filter: Filter,
    writer: Arc<str>,
    sampler: Arc<Mutex<Sampler>>,
    tx: mpsc::Sender<Item>,
) {
    if subscription.gap && tx.send(Item::Gap).await.is_err() {
        return;
    }
    let replay = std::mem::take(&mut subscription.replay);
    for record in replay {
        let skip = after.filter(|(p, _)| *p == record.position).map(|(_, i)| i);
        if !send_record(&record, skip, &mut filter, &writer, &sampler, &tx).await {
            return;
        }
    }
    loop {
        let next = tokio::select! {
            _ = tx.closed() => return,
            next = subscription.next() => next,
        };
        let sent = match next {
            None => return,
            Some(Ok(record)) => send_record(&record, None, &mut filter, &writer, &sampler, &tx).await,
            Some(Err(missed)) => tx.send(Item::Missed(missed.0)).await.is_ok(),
        };
        if !sent {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// Sends a record's matching events (those after index `skip`); false once the tail is gone.
async fn send_record(
    record: &Durable,
    skip: Option<u32>,
    filter: &mut Filter,
    writer: &Arc<str>,
    sampler: &Mutex<Sampler>,
    tx: &mpsc::Sender<Item>,
) -> bool {
    if !filter.wants(&record.stream) {
        return true;
    }
    for (index, event) in decode_events(&record.events).enumerate() {
        let index = index as u32;
        if skip.is_some_and(|s| index <= s) {
            continue;
        }
        let Ok(event) = event else { break };
        let Some(leaves) = filter.leaves(event.text, event.source, event.time) else { continue };
        if !filter.matcher(&record.stream).matches(&leaves) || !sampler.lock().expect("sampler lock").admit() {
            continue;
        }
        let data = to_json(&record.stream, leaves).to_string();
        let item = Item::Event { writer: writer.clone(), position: record.position, index, data };
        if tx.send(item).await.is_err() {
            return false;
        }
    }
    let dropped = std::mem::take(&mut sampler.lock().expect("sampler lock").dropped);
    dropped == 0 || tx.send(Item::Dropped(dropped)).await.is_ok()
}

/// An event as the search API returns one: flattened fields, `timestamp`, `_stream`.
fn to_json(stream: &StreamName, leaves: Leaves<'_>) -> Value {
    let mut out = Map::with_capacity(leaves.len() + 1);
    for (name, leaf) in leaves {
        let value = match leaf {
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Int(i) => Value::from(i),
            Scalar::Float(f) => Value::from(f),
            Scalar::Text(t) => Value::String(t.into_owned()),
            Scalar::Json(t) => serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_owned())),
        };
        out.insert(name, value);
    }
    out.insert("_stream".into(), Value::String(stream.to_string()));
    Value::Object(out)
}

/// What a tail asks its peers for.
#[derive(Clone)]
struct PeerRequest {
    streams: String,
    q: String,
    authorization: Option<HeaderValue>,
    /// This replica's writer id: a peer that answers with it is this replica.
    writer: Arc<str>,
}

/// Tails every peer until the tail ends: resolves their names now and every `peer_refresh`,
/// and (re)connects to each address not connected yet and not found to be this replica.
async fn peer_sources(
    settings: TailSettings,
    request: PeerRequest,
    resume: Position,
    sampler: Arc<Mutex<Sampler>>,
    tx: mpsc::Sender<Item>,
) {
    let position = Arc::new(Mutex::new(resume));
    let connected = Arc::new(Mutex::new(HashSet::<String>::new()));
    let myself = Arc::new(Mutex::new(HashSet::<String>::new()));
    loop {
        for base in resolve(&settings.peers).await {
            if myself.lock().expect("lock").contains(&base) || !connected.lock().expect("lock").insert(base.clone()) {
                continue;
            }
            let peer = Peer {
                base: base.clone(),
                client: settings.client.clone(),
                request: request.clone(),
                position: position.clone(),
                sampler: sampler.clone(),
                tx: tx.clone(),
            };
            let (connected, myself) = (connected.clone(), myself.clone());
            tokio::spawn(async move {
                let is_me = peer.run().await;
                connected.lock().expect("lock").remove(&peer.base);
                if is_me {
                    myself.lock().expect("lock").insert(peer.base);
                }
            });
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(settings.peer_refresh) => {}
        }
    }
}

/// The base URLs of the peers: each `host:port` resolved to all its addresses.
async fn resolve(peers: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for peer in peers {
        if peer.starts_with("https://") {
            out.push(peer.trim_end_matches('/').to_owned());
            continue;
        }
        let host = peer.trim_start_matches("http://").trim_end_matches('/');
        match tokio::net::lookup_host(host).await {
            Ok(addrs) => out.extend(addrs.map(|a| format!("http://{a}"))),
            Err(e) => tracing::warn!(peer = %peer, error = %e, "cannot resolve a tail peer"),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// One peer's tail.
struct Peer {
    base: String,
    client: reqwest::Client,
    request: PeerRequest,
    position: Arc<Mutex<Position>>,
    sampler: Arc<Mutex<Sampler>>,
    tx: mpsc::Sender<Item>,
}

/// What one connection to a peer has learnt.
#[derive(Default)]
struct PeerState {
    /// The peer's writer id, from its `hello`.
    writer: Option<String>,
}

impl Peer {
    /// Forwards the peer's events until its tail ends or fails; true when the peer is this
    /// replica.
    async fn run(&self) -> bool {
        let last = self.position.lock().expect("lock").render();
        let mut get = self
            .client
            .get(format!("{}/api/v1/tail", self.base))
            .query(&[("streams", self.request.streams.as_str()), ("q", self.request.q.as_str()), ("local", "true")])
            .header("last-event-id", last);
        if let Some(auth) = &self.request.authorization {
            get = get.header(header::AUTHORIZATION, auth.clone());
        }
        let response = tokio::select! {
            _ = self.tx.closed() => return false,
            r = get.send() => r,
        };
        let response = match response.and_then(reqwest::Response::error_for_status) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(peer = %self.base, error = %e, "cannot tail a peer");
                return false;
            }
        };
        let mut body = response.bytes_stream();
        let mut parser = SseParser::default();
        let mut peer = PeerState::default();
        loop {
            let chunk = tokio::select! {
                _ = self.tx.closed() => return false,
                chunk = body.next() => chunk,
            };
            let chunk = match chunk {
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    tracing::warn!(peer = %self.base, error = %e, "a peer's tail broke off");
                    return false;
                }
                None => return false,
            };
            for message in parser.feed(&chunk) {
                match self.forward(message, &mut peer).await {
                    Forwarded::Ok => {}
                    Forwarded::Myself => return true,
                    Forwarded::Gone => return false,
                }
            }
        }
    }

    async fn forward(&self, message: SseMessage, peer: &mut PeerState) -> Forwarded {
        let item = match message.event.as_str() {
            "hello" => {
                let writer = serde_json::from_str::<Value>(&message.data)
                    .ok()
                    .and_then(|v| v.get("writer").and_then(Value::as_str).map(str::to_owned));
                if writer.as_deref() == Some(&*self.request.writer) {
                    return Forwarded::Myself;
                }
                peer.writer = writer;
                return Forwarded::Ok;
            }
            "event" => {
                let Some(writer) = peer.writer.clone() else { return Forwarded::Ok };
                let Some(&(position, index)) = Position::parse(&message.id).0.get(&writer) else {
                    return Forwarded::Ok;
                };
                self.position.lock().expect("lock").advance(&writer, position, index);
                if !self.sampler.lock().expect("sampler lock").admit() {
                    let dropped = std::mem::take(&mut self.sampler.lock().expect("sampler lock").dropped);
                    Item::Dropped(dropped)
                } else {
                    Item::Event { writer: writer.into(), position, index, data: message.data }
                }
            }
            "dropped" => {
                let counts = serde_json::from_str::<Value>(&message.data).unwrap_or_default();
                let count = |name: &str| counts.get(name).and_then(Value::as_u64).unwrap_or(0);
                if count("dropped") > 0 && self.tx.send(Item::Dropped(count("dropped"))).await.is_err() {
                    return Forwarded::Gone;
                }
                Item::Missed(count("records_missed"))
            }
            "gap" => Item::Gap,
            _ => return Forwarded::Ok,
        };
        if self.tx.send(item).await.is_err() { Forwarded::Gone } else { Forwarded::Ok }
    }
}

enum Forwarded {
    Ok,
    Myself,
    Gone,
}

/// One Server-Sent Event as received.
#[derive(Debug, Default, PartialEq, Eq)]
struct SseMessage {
    id: String,
    event: String,
    data: String,
}

/// Reads the event stream format (as the HTML standard defines it) from chunks.
#[derive(Debug, Default)]
struct SseParser {
    buffer: Vec<u8>,
    current: SseMessage,
}

impl SseParser {
    fn feed(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        self.buffer.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.current.data.is_empty() || !self.current.event.is_empty() {
                    let mut message = std::mem::take(&mut self.current);
                    if message.event.is_empty() {
                        message.event = "message".into();
                    }
                    out.push(message);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.current.id = value.to_owned(),
                "event" => self.current.event = value.to_owned(),
                "data" => {
                    if !self.current.data.is_empty() {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_only_move_forward() {
        let mut p = Position::parse("logyard-b:77.0,logyard-a:812.3, junk");
        assert_eq!(p.render(), "logyard-a:812.3,logyard-b:77.0");
        p.advance("logyard-a", 812, 1);
        p.advance("logyard-b", 78, 0);
        p.advance("logyard-c", 1, 0);
        assert_eq!(p.render(), "logyard-a:812.3,logyard-b:78.0,logyard-c:1.0");
    }

    #[test]
    fn event_streams_are_read_across_chunks() {
        let mut parser = SseParser::default();
        assert!(parser.feed(b": heartbeat\n\nevent: hello\ndata: {\"wri").is_empty());
        let got = parser.feed(b"ter\":\"w\"}\n\nid: w:1.0\r\nevent: event\ndata: a\ndata: b\n\n");
        assert_eq!(
            got,
            vec![
                SseMessage { id: String::new(), event: "hello".into(), data: "{\"writer\":\"w\"}".into() },
                SseMessage { id: "w:1.0".into(), event: "event".into(), data: "a\nb".into() },
            ]
        );
    }

    #[test]
    fn the_sampler_lets_a_second_of_events_through_then_counts_drops() {
        let mut s = Sampler::new(5);
        let admitted = (0..20).filter(|_| s.admit()).count();
        assert_eq!(admitted, 5);
        assert_eq!(s.dropped, 15);
    }
}
