//! Load with a record of what was acknowledged, and the check that every acknowledged event
//! is in the table exactly once: the contract of the durability and replica tests.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Server, flush, rows};

/// Clients that send batches of events with unique ids and remember which were acknowledged.
pub struct Load {
    pub acked: Arc<Mutex<Vec<String>>>,
    pub stop: Arc<AtomicBool>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

static NEXT_BATCH: AtomicUsize = AtomicUsize::new(0);

impl Load {
    pub fn start(base: String, clients: usize, round: usize) -> Load {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|c| {
                let (acked, stop, base) = (acked.clone(), stop.clone(), base.clone());
                tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .pool_max_idle_per_host(0)
                        .build()
                        .unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        let batch = NEXT_BATCH.fetch_add(1, Ordering::Relaxed);
                        let ids: Vec<String> = (0..20).map(|i| format!("r{round}-c{c}-b{batch}-{i}")).collect();
                        let body: String = ids
                            .iter()
                            .map(|id| {
                                format!("{{\"id\":\"{id}\",\"status\":200,\"payload\":\"{}\"}}\n", "x".repeat(200))
                            })
                            .collect();
                        let r = http
                            .post(format!("{base}/api/v1/streams/crash/events"))
                            .header("content-type", "application/x-ndjson")
                            .body(body)
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status().as_u16() == 200 => acked.lock().unwrap().extend(ids),
                            // The process died mid-request: not acknowledged, may or may not be kept.
                            _ => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                })
            })
            .collect();
        Load { acked, stop, tasks }
    }

    pub async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

/// Every acknowledged id is in the table exactly once, and no id is there twice.
pub async fn check_exactly_once(server: &Server, acked: &[String]) {
    flush(server).await;
    let all = rows(server, "SELECT id FROM crash").await;
    let mut seen = HashSet::new();
    for r in &all {
        let id = r["id"].as_str().unwrap().to_owned();
        assert!(seen.insert(id.clone()), "{id} is in the table twice");
    }
    let missing: Vec<_> = acked.iter().filter(|id| !seen.contains(*id)).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events are missing, e.g. {missing:?}",
        acked.iter().filter(|id| !seen.contains(*id)).count()
    );
}
