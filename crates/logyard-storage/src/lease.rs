//! Work that one replica at a time should do, on a schedule shared by all of them: the
//! jobs that rewrite tables (compaction, retention, forget jobs) under one lease, the uploads
//! sweeper under another.
//!
//! A lease is an [`EntryLog`] under `leases/<lease>/`; its latest entry names the replica
//! holding it and until when, the job it runs, and when each job last finished anywhere. A
//! replica runs a job when the job is due (finished `every` ago or longer) and no other
//! replica holds the lease: it writes the next entry (the write fails if another replica
//! wrote it first), renews the lease while the job runs, and writes a last entry that
//! releases it and records the finish. So N replicas run each job about once per `every`
//! between them, and never two jobs of one lease at once while their clocks agree within the
//! lease's length.
//!
//! The table jobs share one lease because Delta's conflict check does not stop two of them
//! from both committing: delta-rs 1.1 lets a compaction (whose removes carry no data change)
//! and another rewrite of the same files both commit, which doubles their rows, or keeps a
//! deletion's rows in the compacted file (ARCHITECTURE.md, "Maintenance on several
//! replicas"). The commands (`logyard compact`, `logyard retention run`) take the same lease.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{EntryLog, Storage, StorageError};

/// The table jobs' lease.
pub const TABLES: &str = "tables";

/// One entry of a lease log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseEntry {
    /// The replica that wrote the entry (its writer id, or a command).
    pub owner: String,
    /// Until when `owner` holds the lease (milliseconds since the epoch); 0 = released.
    pub until_ms: i64,
    /// The job `owner` runs (or last ran).
    #[serde(default)]
    pub job: String,
    /// When each job last finished, on any replica (milliseconds since the epoch).
    #[serde(default)]
    pub done_ms: BTreeMap<String, i64>,
}

/// What [`JobLease::run_if_due`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn<T> {
    /// The job ran here, and returned this.
    Ran(T),
    /// It finished less than `every` ago.
    NotDue,
    /// Another replica holds the lease (or took it first): its name and job.
    Held { owner: String, job: String },
}

/// A lease, as one replica sees it.
#[derive(Debug, Clone)]
pub struct JobLease {
    log: EntryLog,
    lease: String,
    owner: String,
    hold: Duration,
}

impl JobLease {
    /// The lease named `lease` (a path segment: [`TABLES`], `uploads`) for the replica
    /// `owner`; a holder that stops renewing loses it after `hold`.
    pub fn new(storage: &Storage, lease: &str, owner: &str, hold: Duration) -> Self {
        Self {
            log: EntryLog::new(storage, &format!("leases/{lease}")),
            lease: lease.to_owned(),
            owner: owner.to_owned(),
            hold: hold.max(Duration::from_millis(100)),
        }
    }

    /// The replica this lease is for.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The latest entry (`None`: the job never ran).
    pub async fn latest(&self) -> Result<Option<LeaseEntry>, StorageError> {
        Ok(self.log.latest::<LeaseEntry>().await?.map(|(_, e)| e))
    }

    /// Runs `job` (named `name`) if it is due and no other replica holds the lease, renewing
    /// the lease every third of its length while it runs. A lease lost meanwhile (another
    /// replica wrote the log: this one stalled past its lease) stops the job: it is dropped at
    /// its next await, and the error says so. The finish is recorded only when the job
    /// returns `Ok`.
    pub async fn run_if_due<T, E, F>(&self, name: &str, every: Duration, job: F) -> Result<Turn<T>, E>
    where
        F: Future<Output = Result<T, E>>,
        E: From<StorageError>,
    {
        let now = now_ms();
        let (index, latest) = self.log.latest::<LeaseEntry>().await?.unwrap_or_default();
        if latest.owner != self.owner && latest.until_ms > now {
            return Ok(Turn::Held { owner: latest.owner, job: latest.job });
        }
        let done = latest.done_ms.get(name).copied().unwrap_or(0);
        if done > 0 && now - done < ms(every) {
            return Ok(Turn::NotDue);
        }
        let mut index = index + 1;
        let mut entry = LeaseEntry {
            owner: self.owner.clone(),
            until_ms: now + ms(self.hold),
            job: name.to_owned(),
            done_ms: latest.done_ms,
        };
        if !self.log.write(index, &entry).await? {
            let owner = "another replica".to_owned();
            return Ok(Turn::Held { owner, job: String::new() });
        }
        tracing::debug!(lease = %self.lease, job = name, owner = %self.owner, "lease taken");
        tokio::pin!(job);
        let mut renew = tokio::time::interval(self.hold / 3);
        renew.tick().await;
        let result = loop {
            tokio::select! {
                r = &mut job => break r,
                _ = renew.tick() => {
                    entry.until_ms = now_ms() + ms(self.hold);
                    index += 1;
                    if !self.log.write(index, &entry).await? {
                        let message = format!("the {} lease was taken by another replica while this one ran {name}; stopped", self.lease);
                        return Err(StorageError::Config(message).into());
                    }
                }
            }
        };
        // Released either way; the finish is recorded only for a job that succeeded, so a
        // failed one is due again at once (on whichever replica looks first).
        entry.until_ms = 0;
        if result.is_ok() {
            entry.done_ms.insert(name.to_owned(), now_ms());
        }
        if !self.log.write(index + 1, &entry).await? {
            tracing::warn!(lease = %self.lease, job = name, "the lease was taken while the job finished; its finish is not recorded");
        }
        Ok(Turn::Ran(result?))
    }

    /// Runs `job` as soon as no other replica holds the lease (a command run by hand or by a
    /// CronJob): waits, looking every `look`, and says once whom it waits for.
    pub async fn run_when_free<T, E, F>(&self, name: &str, look: Duration, job: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
        E: From<StorageError>,
    {
        tokio::pin!(job);
        let mut told = false;
        loop {
            match self.run_if_due(name, Duration::ZERO, &mut job).await? {
                Turn::Ran(value) => return Ok(value),
                Turn::NotDue => unreachable!("a job due at any time is always due"),
                Turn::Held { owner, job } => {
                    if !told {
                        tracing::info!(lease = %self.lease, %owner, running = %job, "waiting for the lease: another process is rewriting tables");
                        told = true;
                    }
                    tokio::time::sleep(look).await;
                }
            }
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::{Location, StoreMetrics};

    async fn storage(dir: &std::path::Path) -> Storage {
        Storage::open(Location::Local(dir.to_owned()), &Default::default(), StoreMetrics::default()).await.unwrap()
    }

    async fn ok<T>(value: T) -> Result<T, StorageError> {
        Ok(value)
    }

    fn held(owner: &str, job: &str) -> Turn<()> {
        Turn::Held { owner: owner.into(), job: job.into() }
    }

    #[tokio::test]
    async fn one_replica_runs_a_due_job_and_the_others_wait_for_the_next_period() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(dir.path()).await;
        let every = Duration::from_secs(3600);
        let leases: Vec<JobLease> =
            (0..3).map(|i| JobLease::new(&storage, TABLES, &format!("r{i}"), Duration::from_secs(30))).collect();
        let ran = Arc::new(AtomicUsize::new(0));
        let turns = futures::future::join_all(leases.iter().map(|lease| {
            let ran = ran.clone();
            lease.run_if_due("compaction", every, async move {
                ran.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok::<_, StorageError>(())
            })
        }))
        .await;
        let turns: Vec<Turn<()>> = turns.into_iter().map(Result::unwrap).collect();
        assert_eq!(ran.load(Ordering::SeqCst), 1, "{turns:?}");
        assert_eq!(turns.iter().filter(|t| matches!(t, Turn::Ran(()))).count(), 1, "{turns:?}");
        // Finished: not due again for an hour, on any replica; another job of the lease is.
        for lease in &leases {
            assert_eq!(lease.run_if_due("compaction", every, ok(())).await.unwrap(), Turn::NotDue);
        }
        assert_eq!(leases[1].run_if_due("retention", every, ok(5)).await.unwrap(), Turn::Ran(5));
        let latest = leases[0].latest().await.unwrap().unwrap();
        assert_eq!((latest.until_ms, latest.owner.as_str(), latest.job.as_str()), (0, "r1", "retention"), "released");
        assert_eq!(latest.done_ms.keys().collect::<Vec<_>>(), ["compaction", "retention"]);
        // Due again once the period has passed.
        assert_eq!(leases[2].run_if_due("compaction", Duration::ZERO, ok(7)).await.unwrap(), Turn::Ran(7));
    }

    #[tokio::test]
    async fn a_held_lease_is_renewed_while_a_job_runs_and_keeps_the_other_jobs_out() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(dir.path()).await;
        let hold = Duration::from_millis(300);
        let a = JobLease::new(&storage, TABLES, "a", hold);
        let b = JobLease::new(&storage, TABLES, "b", hold);
        // `a` compacts for four lease lengths; `b` keeps finding the lease held, whichever
        // table job it would run.
        let long = a.run_if_due("compaction", Duration::ZERO, async {
            tokio::time::sleep(hold * 4).await;
            Ok::<_, StorageError>("done")
        });
        let other = async {
            let mut turns = Vec::new();
            for job in ["compaction", "retention", "forget"].iter().cycle().take(8) {
                tokio::time::sleep(hold / 2).await;
                turns.push(b.run_if_due(job, Duration::ZERO, ok(())).await.unwrap());
            }
            turns
        };
        let (long, turns) = tokio::join!(long, other);
        assert_eq!(long.unwrap(), Turn::Ran("done"));
        let held_by_a = turns.iter().filter(|t| **t == held("a", "compaction")).count();
        assert!(held_by_a >= 6, "b found the lease held {held_by_a} times while a ran: {turns:?}");

        // A job that fails releases the lease and records no finish.
        let before = a.latest().await.unwrap().unwrap().done_ms;
        let failed = b
            .run_if_due("compaction", Duration::ZERO, async { Err::<(), _>(StorageError::Build("boom".into())) })
            .await
            .unwrap_err();
        assert!(failed.to_string().contains("boom"), "{failed}");
        let latest = b.latest().await.unwrap().unwrap();
        let released = LeaseEntry { owner: "b".into(), until_ms: 0, job: "compaction".into(), done_ms: before };
        assert_eq!(latest, released);
    }

    #[tokio::test]
    async fn an_expired_lease_moves_to_another_replica_and_the_stalled_holder_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(dir.path()).await;
        let a = JobLease::new(&storage, TABLES, "a", Duration::from_millis(300));
        // A holder that stalled: its lease was written and never renewed.
        let stale =
            LeaseEntry { owner: "a".into(), until_ms: now_ms() + 300, job: "forget".into(), ..Default::default() };
        a.log.write(1, &stale).await.unwrap();
        let b = JobLease::new(&storage, TABLES, "b", Duration::from_secs(30));
        assert_eq!(b.run_if_due("forget", Duration::ZERO, ok(())).await.unwrap(), held("a", "forget"));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(b.run_if_due("forget", Duration::ZERO, ok(())).await.unwrap(), Turn::Ran(()));

        // A holder overtaken while it runs (it stalled past its lease, another took over) is
        // stopped at its next renewal instead of running on beside the new holder.
        let stalled = a.run_if_due("compaction", Duration::ZERO, async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, StorageError>(())
        });
        let overtake = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let (index, _) = b.log.latest::<LeaseEntry>().await.unwrap().unwrap();
            let entry = LeaseEntry { owner: "b".into(), until_ms: now_ms() + 30_000, ..Default::default() };
            assert!(b.log.write(index + 1, &entry).await.unwrap());
        };
        let started = std::time::Instant::now();
        let (stalled, ()) = tokio::join!(stalled, overtake);
        let e = stalled.unwrap_err().to_string();
        assert!(e.contains("the tables lease was taken by another replica while this one ran compaction"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5), "stopped at the first renewal");
    }

    #[tokio::test]
    async fn a_command_waits_for_the_replica_that_holds_the_lease() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(dir.path()).await;
        let replica = JobLease::new(&storage, TABLES, "replica", Duration::from_secs(30));
        let command = JobLease::new(&storage, TABLES, "logyard compact", Duration::from_secs(30));
        let order = std::sync::Mutex::new(Vec::new());
        let replica_runs = replica.run_if_due("retention", Duration::ZERO, async {
            order.lock().unwrap().push("replica starts");
            tokio::time::sleep(Duration::from_millis(500)).await;
            order.lock().unwrap().push("replica ends");
            Ok::<_, StorageError>(())
        });
        let command_runs = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            command
                .run_when_free("compaction", Duration::from_millis(50), async {
                    order.lock().unwrap().push("command runs");
                    Ok::<_, StorageError>(())
                })
                .await
        };
        let (r, c) = tokio::join!(replica_runs, command_runs);
        assert_eq!(r.unwrap(), Turn::Ran(()));
        c.unwrap();
        assert_eq!(*order.lock().unwrap(), ["replica starts", "replica ends", "command runs"]);
    }
}
