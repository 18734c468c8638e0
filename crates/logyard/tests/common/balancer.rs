//! A round-robin TCP balancer on loopback in front of several `logyard serve` replicas, as an
//! ALB target group is: each new connection goes to the next replica in the set, and a
//! replica that refuses the connection is skipped. The set can change while it runs (a
//! replica restarted on a new port, one taken out).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The running balancer.
#[derive(Debug, Clone)]
pub struct Balancer {
    pub addr: SocketAddr,
    targets: Arc<Mutex<Vec<SocketAddr>>>,
    /// Connections sent to each target, by address.
    sent: Arc<Mutex<std::collections::HashMap<SocketAddr, usize>>>,
}

impl Balancer {
    /// Starts it on a free loopback port, in a thread of its own.
    pub fn start(targets: Vec<SocketAddr>) -> Balancer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let balancer = Balancer {
            addr: listener.local_addr().unwrap(),
            targets: Arc::new(Mutex::new(targets)),
            sent: Arc::default(),
        };
        let this = balancer.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let next = Arc::new(AtomicUsize::new(0));
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else { continue };
                    let (this, next) = (this.clone(), next.clone());
                    tokio::spawn(async move {
                        let targets = this.targets.lock().unwrap().clone();
                        for _ in 0..targets.len() {
                            let target = targets[next.fetch_add(1, Ordering::Relaxed) % targets.len()];
                            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                                *this.sent.lock().unwrap().entry(target).or_default() += 1;
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                                return;
                            }
                        }
                    });
                }
            });
        });
        balancer
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces target `old` with `new` (a replica restarted on another port).
    pub fn replace(&self, old: SocketAddr, new: SocketAddr) {
        let mut targets = self.targets.lock().unwrap();
        for t in targets.iter_mut().filter(|t| **t == old) {
            *t = new;
        }
    }

    /// Takes a target out (deregistered: its readiness went off).
    pub fn remove(&self, target: SocketAddr) {
        self.targets.lock().unwrap().retain(|t| *t != target);
    }

    /// Connections sent to `target` so far.
    pub fn sent_to(&self, target: SocketAddr) -> usize {
        self.sent.lock().unwrap().get(&target).copied().unwrap_or(0)
    }
}
