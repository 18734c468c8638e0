//! Reading `GET /api/v1/tail` (Server-Sent Events) as a client does.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use super::{Server, client};

/// One Server-Sent Event as a test sees it.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub event: String,
    pub data: String,
}

impl Message {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

/// A tail being read: its messages and the heartbeat comments between them.
pub struct Tail {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
    pub heartbeats: usize,
}

impl Tail {
    pub async fn open(server: &Server, token: Option<&str>, query: &[(&str, &str)], last: Option<&str>) -> Tail {
        let mut request = client().get(server.url("/api/v1/tail")).query(query).timeout(Duration::from_secs(600));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(l) = last {
            request = request.header("Last-Event-ID", l);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut tail = Tail { body: response.bytes_stream().boxed(), buffer: String::new(), heartbeats: 0 };
        let hello = tail.next(Duration::from_secs(10)).await.expect("a hello");
        assert_eq!(hello.event, "hello", "{hello:?}");
        tail
    }

    /// The next message within `wait`, or None.
    pub async fn next(&mut self, wait: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut message = Message { id: String::new(), event: String::new(), data: String::new() };
                let mut any = false;
                for line in block.lines().filter(|l| !l.is_empty()) {
                    if line.starts_with(':') {
                        self.heartbeats += 1;
                        continue;
                    }
                    let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                    any = true;
                    match field {
                        "id" => message.id = value.into(),
                        "event" => message.event = value.into(),
                        "data" => message.data.push_str(value),
                        _ => {}
                    }
                }
                if any {
                    return Some(message);
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return None,
                Ok(None) => panic!("the tail ended"),
                Ok(Some(chunk)) => self.buffer.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap()),
            }
        }
    }

    /// Events until none comes for `quiet`: (ids, dropped counts summed, last event id).
    pub async fn drain(&mut self, quiet: Duration) -> (Vec<String>, u64, String) {
        let (mut ids, mut dropped, mut last) = (Vec::new(), 0, String::new());
        while let Some(m) = self.next(quiet).await {
            match m.event.as_str() {
                "event" => {
                    ids.push(m.json()["id"].as_str().unwrap().to_owned());
                    last = m.id.clone();
                }
                "dropped" => dropped += m.json()["dropped"].as_u64().unwrap(),
                other => panic!("unexpected {other}: {m:?}"),
            }
        }
        (ids, dropped, last)
    }
}
