//! The server's components, supervised: each is started from the configuration, watched
//! while it runs, and stopped in a known order within the shutdown grace period.
//!
//! A component is an async function of a [`Shutdown`] signal (mini-redis's
//! `run(listener, shutdown)`). [`Services::run`] starts them all and waits for the stop
//! signal. A component that fails or panics is logged with its cause and then, by its
//! [`OnFailure`], restarted with a growing back-off or made to stop the whole process (the
//! listeners: a server that no longer serves must not look alive). At the stop signal the
//! [`Stage`]s are stopped in order, each given what is left of the grace period: first the
//! listeners (no new requests; those in flight finish), then the Kinesis consumers (their
//! batches commit), then background loops, then the flusher. The caller makes the final
//! commit after that.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

/// The stop signal a component watches.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once the component should stop.
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// The signal as a watch channel (for code that takes one).
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.0.clone()
    }
}

/// When a component is stopped, relative to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// HTTP and gRPC: stop accepting; requests in flight finish.
    Listeners,
    /// Kinesis consumers: commit what they hold and release their leases.
    Consumers,
    /// Upload sweeping and bundling, maintenance, file watchers.
    Background,
    /// The flusher, last: everything before it may still append.
    Flusher,
}

const STAGES: [Stage; 4] = [Stage::Listeners, Stage::Consumers, Stage::Background, Stage::Flusher];

/// What happens when a component fails, panics or (for `StopProcess`) ends on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Start it again after a back-off (1 s, doubling up to 30 s).
    Restart,
    /// Stop every component and exit with an error.
    StopProcess,
}

type BoxFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;
type Start = Arc<dyn Fn(Shutdown) -> BoxFuture + Send + Sync>;

struct Component {
    name: String,
    stage: Stage,
    on_failure: OnFailure,
    start: Start,
}

/// The components of a server.
pub struct Services {
    components: Vec<Component>,
    /// A component that panics once at its first start (debug builds: tests of supervision).
    fault: Option<String>,
}

/// How a component's task ended.
struct Ended {
    index: usize,
    result: Result<anyhow::Result<()>, String>,
}

impl Services {
    /// `fault` names a component made to panic at its first start (honoured in debug builds
    /// only, for tests).
    pub fn new(fault: Option<String>) -> Self {
        Self { components: Vec::new(), fault: fault.filter(|_| cfg!(debug_assertions)) }
    }

    /// Adds a component: `start` is called with the stop signal at every (re)start.
    pub fn add<F, Fut>(&mut self, name: impl Into<String>, stage: Stage, on_failure: OnFailure, start: F)
    where
        F: Fn(Shutdown) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let name = name.into();
        let start: Start = if self.fault.as_deref() == Some(name.as_str()) {
            let fired = Arc::new(AtomicBool::new(false));
            let component = name.clone();
            Arc::new(move |shutdown| {
                let run = start(shutdown);
                let fire = !fired.swap(true, Ordering::SeqCst);
                let component = component.clone();
                Box::pin(async move {
                    if fire {
                        panic!("fault injected into component {component} (LOGYARD_FAULT_PANIC)");
                    }
                    run.await
                })
            })
        } else {
            Arc::new(move |shutdown| Box::pin(start(shutdown)))
        };
        self.components.push(Component { name, stage, on_failure, start });
    }

    /// The names of the components, in the order they were added.
    pub fn names(&self) -> Vec<&str> {
        self.components.iter().map(|c| c.name.as_str()).collect()
    }

    /// Runs every component until `stop` resolves or a `StopProcess` component fails; then
    /// stops the stages in order, each within what is left of `grace`. Returns the deadline
    /// (for the final commit), or the failure that stopped the process.
    pub async fn run(
        self,
        stop: impl Future<Output = ()>,
        grace: Duration,
    ) -> Result<Instant, (Instant, anyhow::Error)> {
        let signals: BTreeMap<Stage, watch::Sender<bool>> =
            STAGES.iter().map(|s| (*s, watch::channel(false).0)).collect();
        let mut tasks: BTreeMap<Stage, JoinSet<Ended>> = STAGES.iter().map(|s| (*s, JoinSet::new())).collect();
        let mut failures = vec![0u32; self.components.len()];
        let spawn = |tasks: &mut BTreeMap<Stage, JoinSet<Ended>>, index: usize, delay: Duration| {
            let component = &self.components[index];
            let shutdown = Shutdown(signals[&component.stage].subscribe());
            let start = component.start.clone();
            tasks.get_mut(&component.stage).expect("every stage").spawn(async move {
                if !delay.is_zero() {
                    tokio::select! {
                        _ = shutdown.clone().wait() => return Ended { index, result: Ok(Ok(())) },
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                // The component runs in a task of its own, so that a panic is caught and told.
                let result = tokio::spawn(start(shutdown)).await.map_err(panic_message);
                Ended { index, result }
            });
        };
        for index in 0..self.components.len() {
            spawn(&mut tasks, index, Duration::ZERO);
        }
        tracing::info!(components = ?self.names(), "started");

        tokio::pin!(stop);
        let failure = loop {
            let ended = tokio::select! {
                _ = &mut stop => break None,
                Some(ended) = next_ended(&mut tasks) => ended,
            };
            let component = &self.components[ended.index];
            let name = component.name.as_str();
            let problem = match ended.result {
                Ok(Ok(())) if component.on_failure == OnFailure::Restart => {
                    tracing::info!(component = name, "component finished");
                    continue;
                }
                Ok(Ok(())) => anyhow::anyhow!("it stopped without a shutdown signal"),
                Ok(Err(e)) => e,
                Err(panic) => anyhow::anyhow!("it panicked: {panic}"),
            };
            match component.on_failure {
                OnFailure::Restart => {
                    failures[ended.index] += 1;
                    let delay = Duration::from_secs(1 << failures[ended.index].min(5).saturating_sub(1))
                        .min(Duration::from_secs(30));
                    tracing::error!(component = name, error = %format!("{problem:#}"), restart_in_s = delay.as_secs(), "component failed; restarting it");
                    spawn(&mut tasks, ended.index, delay);
                }
                OnFailure::StopProcess => {
                    tracing::error!(component = name, error = %format!("{problem:#}"), "component failed; stopping the server");
                    break Some(problem.context(format!("component {name}")));
                }
            }
        };

        // tokio's clock (paused in tests) decides the deadline; callers get it as a std instant.
        let deadline = tokio::time::Instant::now() + grace;
        tracing::info!(grace_s = grace.as_secs_f64(), "shutting down: stopping components in order");
        for stage in STAGES {
            let _ = signals[&stage].send(true);
            let set = tasks.get_mut(&stage).expect("every stage");
            while !set.is_empty() {
                match tokio::time::timeout_at(deadline, set.join_next()).await {
                    Ok(Some(Ok(Ended { index, result }))) => {
                        let name = self.components[index].name.as_str();
                        match result {
                            Ok(Ok(())) => tracing::debug!(component = name, "component stopped"),
                            Ok(Err(e)) => {
                                tracing::error!(component = name, error = %format!("{e:#}"), "component failed while stopping")
                            }
                            Err(panic) => tracing::error!(component = name, panic, "component panicked while stopping"),
                        }
                    }
                    Ok(Some(Err(e))) => tracing::error!(error = %e, "a component's supervisor task failed"),
                    Ok(None) => break,
                    Err(_) => {
                        tracing::warn!(
                            ?stage,
                            still_running = set.len(),
                            "components still running at the end of the grace period; stopping them"
                        );
                        set.abort_all();
                        break;
                    }
                }
            }
        }
        let deadline = deadline.into_std();
        match failure {
            None => Ok(deadline),
            Some(e) => Err((deadline, e)),
        }
    }
}

/// The next component task to end, over every stage.
async fn next_ended(tasks: &mut BTreeMap<Stage, JoinSet<Ended>>) -> Option<Ended> {
    if tasks.values().all(JoinSet::is_empty) {
        return std::future::pending().await;
    }
    let next = futures::future::select_all(
        tasks.values_mut().filter(|set| !set.is_empty()).map(|set| Box::pin(set.join_next())),
    )
    .await
    .0;
    match next {
        Some(Ok(ended)) => Some(ended),
        Some(Err(e)) => {
            tracing::error!(error = %e, "a component's supervisor task failed");
            None
        }
        None => None,
    }
}

/// What a panicking task said.
fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into()),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(start_paused = true)]
    async fn a_failing_component_is_restarted_and_stages_stop_in_order() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let starts = Arc::new(AtomicUsize::new(0));
        let mut services = Services::new(None);
        for (name, stage) in [("flusher", Stage::Flusher), ("http", Stage::Listeners), ("loop", Stage::Background)] {
            let order = order.clone();
            services.add(name, stage, OnFailure::StopProcess, move |shutdown: Shutdown| {
                let order = order.clone();
                async move {
                    shutdown.wait().await;
                    order.lock().unwrap().push(name);
                    Ok(())
                }
            });
        }
        let counter = starts.clone();
        services.add("flaky", Stage::Background, OnFailure::Restart, move |shutdown: Shutdown| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    anyhow::bail!("failure number {n}");
                }
                shutdown.wait().await;
                Ok(())
            }
        });
        let stop = tokio::time::sleep(Duration::from_secs(10));
        services.run(stop, Duration::from_secs(5)).await.unwrap();
        assert_eq!(starts.load(Ordering::SeqCst), 3, "restarted after each failure");
        assert_eq!(*order.lock().unwrap(), ["http", "loop", "flusher"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_listener_that_stops_stops_the_process_and_a_panic_is_caught() {
        let mut services = Services::new(Some("http".into()));
        services.add("http", Stage::Listeners, OnFailure::StopProcess, |shutdown: Shutdown| async move {
            shutdown.wait().await;
            Ok(())
        });
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        services.add("flusher", Stage::Flusher, OnFailure::Restart, move |shutdown: Shutdown| {
            let flag = flag.clone();
            async move {
                shutdown.wait().await;
                flag.store(true, Ordering::SeqCst);
                Ok(())
            }
        });
        let (_, e) = services.run(std::future::pending(), Duration::from_secs(5)).await.unwrap_err();
        assert!(format!("{e:#}").contains("panicked: fault injected into component http"), "{e:#}");
        assert!(stopped.load(Ordering::SeqCst), "the other components were stopped");
    }
}
