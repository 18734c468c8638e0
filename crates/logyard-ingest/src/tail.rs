//! Live tail: every record the write-ahead log made durable, handed to whoever listens, the
//! moment its fsync returned (before the 200 that acknowledges it).
//!
//! Listeners get records through a broadcast channel; one that falls behind loses the oldest
//! and is told how many ([`Missed`]). The last records (up to [`TailHub::RECENT_BYTES`]) are
//! kept so that a listener that reconnects can resume after the last record it saw, without
//! duplicates and, while they are still kept, without gaps.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::broadcast;

use logyard_core::StreamName;

/// One write-ahead-log record: a stream's events of one request.
#[derive(Debug)]
pub struct Durable {
    /// The record's position in the write-ahead log: increasing, never reused.
    pub position: u64,
    pub stream: StreamName,
    /// The events, encoded as in the record (`logyard_core::encoded`).
    pub events: Bytes,
}

/// Records a listener lost by falling behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed(pub u64);

/// Where durable records are published.
#[derive(Debug)]
pub struct TailHub {
    sender: broadcast::Sender<Arc<Durable>>,
    recent: Mutex<Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    records: VecDeque<Arc<Durable>>,
    bytes: usize,
}

/// A listener: records kept from before it subscribed, then new ones as they come.
#[derive(Debug)]
pub struct Subscription {
    /// Kept records after the position asked for, oldest first.
    pub replay: Vec<Arc<Durable>>,
    /// Whether records after that position were no longer kept (some are missing).
    pub gap: bool,
    receiver: broadcast::Receiver<Arc<Durable>>,
}

impl Subscription {
    /// The next record; `Err(Missed)` when the listener fell behind and lost some; `None` once
    /// the hub is gone.
    pub async fn next(&mut self) -> Option<Result<Arc<Durable>, Missed>> {
        match self.receiver.recv().await {
            Ok(r) => Some(Ok(r)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Err(Missed(n))),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Default for TailHub {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl TailHub {
    /// Bytes of recent records kept for listeners that reconnect.
    pub const RECENT_BYTES: usize = 16 << 20;

    /// A hub whose listeners may fall `capacity` records behind before they lose some.
    pub fn new(capacity: usize) -> Self {
        Self { sender: broadcast::channel(capacity).0, recent: Mutex::new(Recent::default()) }
    }

    /// Hands durable records to the listeners.
    pub fn publish(&self, records: impl IntoIterator<Item = Durable>) {
        let mut recent = self.recent.lock().expect("tail hub lock");
        for record in records {
            let record = Arc::new(record);
            recent.bytes += record.events.len();
            recent.records.push_back(record.clone());
            while recent.bytes > Self::RECENT_BYTES
                && let Some(old) = recent.records.pop_front()
            {
                recent.bytes -= old.events.len();
            }
            // No listener is not an error.
            let _ = self.sender.send(record);
        }
    }

    /// Listens from now on; with `after`, first the kept records after that position.
    pub fn subscribe(&self, after: Option<u64>) -> Subscription {
        let recent = self.recent.lock().expect("tail hub lock");
        // Subscribing under the lock: nothing published is both replayed and received.
        let receiver = self.sender.subscribe();
        let (replay, gap) = match after {
            None => (Vec::new(), false),
            Some(after) => {
                let replay: Vec<_> = recent.records.iter().filter(|r| r.position > after).cloned().collect();
                let oldest_kept = recent.records.front().map(|r| r.position);
                // A gap when the record right after `after` is no longer kept.
                let gap = oldest_kept.is_some_and(|oldest| oldest > after + 1);
                (replay, gap)
            }
        };
        Subscription { replay, gap, receiver }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(position: u64, bytes: usize) -> Durable {
        Durable { position, stream: StreamName::new("web").unwrap(), events: Bytes::from(vec![0; bytes]) }
    }

    #[tokio::test]
    async fn listeners_get_new_records_and_resume_after_the_last_they_saw() {
        let hub = TailHub::new(8);
        let mut live = hub.subscribe(None);
        hub.publish([record(1, 10), record(2, 10)]);
        assert_eq!(live.next().await.unwrap().unwrap().position, 1);
        assert_eq!(live.next().await.unwrap().unwrap().position, 2);

        let resumed = hub.subscribe(Some(1));
        assert_eq!(resumed.replay.iter().map(|r| r.position).collect::<Vec<_>>(), vec![2]);
        assert!(!resumed.gap);
        assert!(hub.subscribe(None).replay.is_empty());
    }

    #[tokio::test]
    async fn a_slow_listener_is_told_what_it_missed() {
        let hub = TailHub::new(2);
        let mut slow = hub.subscribe(None);
        hub.publish((1..=5).map(|p| record(p, 1)));
        assert_eq!(slow.next().await.unwrap().unwrap_err(), Missed(3));
        assert_eq!(slow.next().await.unwrap().unwrap().position, 4);
    }

    #[test]
    fn old_records_are_let_go_and_a_resume_past_them_has_a_gap() {
        let hub = TailHub::new(8);
        let big = TailHub::RECENT_BYTES / 2;
        hub.publish([record(1, big), record(2, big), record(3, big)]);
        let resumed = hub.subscribe(Some(0));
        assert_eq!(resumed.replay.iter().map(|r| r.position).collect::<Vec<_>>(), vec![2, 3]);
        assert!(resumed.gap);
    }
}
