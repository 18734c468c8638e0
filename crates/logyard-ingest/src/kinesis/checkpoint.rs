//! The checkpoint and lease of one Kinesis shard: an [`EntryLog`] of small JSON entries in the
//! object store, `checkpoints/kinesis/<kinesis stream>/<logyard stream>/<shard>/<n>.json`. A
//! holder whose write fails has been overtaken (its lease taken, or it expired) and stops.

use serde::{Deserialize, Serialize};

use logyard_storage::{EntryLog, Storage, StorageError};

pub const CHECKPOINTS_DIR: &str = "checkpoints/kinesis";

/// One entry of a shard's log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The consumer holding the lease.
    pub owner: String,
    /// Until when the lease holds (milliseconds since the epoch); 0 = released.
    pub lease_until_ms: i64,
    /// The shard's Delta transaction version in the table: the last batch committed (0 = none).
    pub batch: i64,
    /// Sequence number of the last record committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
    /// Batches that may be being committed (each numbered above every earlier one); the
    /// table's transaction version tells which, if any, landed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Pending>,
    /// The shard is closed and all of its records are committed.
    #[serde(default)]
    pub finished: bool,
}

/// A batch on its way into the table: its transaction version and its last record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub batch: i64,
    pub sequence: String,
}

impl Checkpoint {
    pub fn held(&self, now_ms: i64) -> bool {
        self.lease_until_ms > now_ms
    }

    /// The transaction version the next batch's commit requires (`None`: no batch yet).
    pub fn base(&self) -> Option<i64> {
        (self.batch > 0).then_some(self.batch)
    }

    /// A number for the next batch, above every batch any holder may be committing.
    pub fn next_batch(&self) -> i64 {
        self.pending.iter().map(|p| p.batch).chain([self.batch]).max().unwrap_or(0) + 1
    }

    /// Brings the entry in line with the table's transaction version `committed`: a pending
    /// batch that landed becomes the checkpoint. Errors when the table holds a version this
    /// log knows nothing of (the checkpoints were removed or belong to another table).
    pub fn settle(&mut self, committed: Option<i64>) -> Result<(), UnknownBatch> {
        let committed = committed.unwrap_or(0);
        if committed == self.batch {
            return Ok(());
        }
        match self.pending.iter().find(|p| p.batch == committed) {
            Some(p) => {
                self.sequence = Some(p.sequence.clone());
                self.batch = committed;
                self.pending.clear();
                Ok(())
            }
            None => Err(UnknownBatch {
                committed,
                batch: self.batch,
                pending: self.pending.iter().map(|p| p.batch).collect(),
            }),
        }
    }
}

/// The table holds a batch of the shard its checkpoint log does not know.
#[derive(Debug, thiserror::Error)]
#[error(
    "the table holds batch {committed} of this shard, but its checkpoint knows batches {batch} and {pending:?}; \
     were the checkpoints removed or pointed at another table?"
)]
pub struct UnknownBatch {
    committed: i64,
    batch: i64,
    pending: Vec<i64>,
}

/// The log of one shard.
#[derive(Debug, Clone)]
pub struct ShardLog(EntryLog);

impl ShardLog {
    pub fn new(storage: &Storage, kinesis_stream: &str, logyard_stream: &str, shard: &str) -> Self {
        Self(EntryLog::new(
            storage,
            &format!("{CHECKPOINTS_DIR}/{}/{logyard_stream}/{shard}", short_name(kinesis_stream)),
        ))
    }

    /// The latest entry and its index, `None` when the shard has no entry yet.
    pub async fn latest(&self) -> Result<Option<(u64, Checkpoint)>, StorageError> {
        self.0.latest().await
    }

    /// Writes entry `index` unless it exists: `false` when another consumer wrote it first.
    pub async fn write(&self, index: u64, entry: &Checkpoint) -> Result<bool, StorageError> {
        self.0.write(index, entry).await
    }
}

/// The name of a Kinesis stream given by name or ARN (`arn:aws:kinesis:...:stream/NAME`).
pub fn short_name(stream: &str) -> &str {
    stream.rsplit('/').next().unwrap_or(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use logyard_storage::{Location, StoreMetrics};

    async fn storage(dir: &std::path::Path) -> Storage {
        Storage::open(Location::Local(dir.to_owned()), &Default::default(), StoreMetrics::default()).await.unwrap()
    }

    #[tokio::test]
    async fn entries_form_one_line_and_old_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(dir.path()).await;
        let log = ShardLog::new(&storage, "arn:aws:kinesis:us-east-1:1:stream/shop", "web", "shardId-000000000001");
        assert_eq!(log.latest().await.unwrap(), None);
        let a = Checkpoint { owner: "a".into(), lease_until_ms: 10, ..Default::default() };
        assert!(log.write(1, &a).await.unwrap());
        // A second consumer that also read "no entry" loses.
        let b = Checkpoint { owner: "b".into(), lease_until_ms: 10, ..Default::default() };
        assert!(!log.write(1, &b).await.unwrap());
        assert_eq!(log.latest().await.unwrap(), Some((1, a.clone())));
        for i in 2..=12 {
            let e = Checkpoint { batch: i, ..a.clone() };
            assert!(log.write(i as u64, &e).await.unwrap());
        }
        let (index, latest) = log.latest().await.unwrap().unwrap();
        assert_eq!((index, latest.batch), (12, 12));
        let kept =
            std::fs::read_dir(dir.path().join("checkpoints/kinesis/shop/web/shardId-000000000001")).unwrap().count();
        assert_eq!(kept, 5, "old entries are deleted (four kept behind the latest)");
    }

    #[test]
    fn settle_adopts_the_pending_batch_that_landed() {
        let mut c = Checkpoint {
            batch: 4,
            sequence: Some("40".into()),
            pending: vec![Pending { batch: 5, sequence: "52".into() }, Pending { batch: 6, sequence: "49".into() }],
            ..Default::default()
        };
        assert_eq!(c.next_batch(), 7);
        assert_eq!(c.base(), Some(4));
        let mut same = c.clone();
        same.settle(Some(4)).unwrap();
        assert_eq!(same, c, "nothing landed: the pending batches stay, they may still land");
        c.settle(Some(6)).unwrap();
        assert_eq!((c.batch, c.sequence.as_deref(), c.pending.len()), (6, Some("49"), 0));
        let err = c.clone().settle(Some(9)).unwrap_err().to_string();
        assert!(err.contains("holds batch 9"), "{err}");
        let fresh = Checkpoint::default();
        assert_eq!((fresh.base(), fresh.next_batch()), (None, 1));
    }
}
