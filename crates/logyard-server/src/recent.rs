//! Request ids seen lately, so that a retried request is not taken twice (Firehose retries a
//! delivery with the same request id). In memory: ids are forgotten after an hour, past a
//! count, and at a restart.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Ids lately seen: delivered (true) or being delivered (false), and when each came.
#[derive(Debug, Default)]
struct Known {
    ids: HashMap<String, bool>,
    order: VecDeque<(Instant, String)>,
}

#[derive(Debug)]
pub struct RecentIds {
    state: Mutex<Known>,
    ttl: Duration,
    capacity: usize,
}

impl Default for RecentIds {
    fn default() -> Self {
        Self { state: Mutex::new(Known::default()), ttl: Duration::from_secs(3600), capacity: 200_000 }
    }
}

/// What is known of an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not seen: it is now being delivered.
    New,
    Delivered,
    InFlight,
}

impl RecentIds {
    /// Looks an id up; a new one is marked in flight.
    pub fn begin(&self, id: &str) -> Seen {
        let mut guard = self.state.lock().expect("recent ids lock");
        let Known { ids, order } = &mut *guard;
        while let Some((at, _)) = order.front() {
            if at.elapsed() < self.ttl && order.len() <= self.capacity {
                break;
            }
            let (_, old) = order.pop_front().expect("non-empty");
            ids.remove(&old);
        }
        match ids.get(id) {
            Some(true) => Seen::Delivered,
            Some(false) => Seen::InFlight,
            None => {
                ids.insert(id.to_owned(), false);
                order.push_back((Instant::now(), id.to_owned()));
                Seen::New
            }
        }
    }

    /// Ends a delivery: remembered as delivered, or forgotten so that a retry is taken.
    pub fn finish(&self, id: &str, delivered: bool) {
        let mut guard = self.state.lock().expect("recent ids lock");
        if delivered {
            guard.ids.insert(id.to_owned(), true);
        } else {
            guard.ids.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_taken_once_and_again_after_a_failure() {
        let recent = RecentIds::default();
        assert_eq!(recent.begin("a"), Seen::New);
        assert_eq!(recent.begin("a"), Seen::InFlight);
        recent.finish("a", false);
        assert_eq!(recent.begin("a"), Seen::New, "a failed delivery is taken again");
        recent.finish("a", true);
        assert_eq!(recent.begin("a"), Seen::Delivered);
    }
}
