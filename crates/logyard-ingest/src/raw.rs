//! Raw payload archiving: for streams that opt in, the body of every ingest request is kept
//! byte-exact (compressed as it came) in the archive, one tar member per request.
//!
//! The body travels in the request's write-ahead log record, beside its events (durable
//! together), and waits in memory until a bundle's worth is gathered or the oldest waited
//! `max_age`. Bundles are cut at day boundaries and named after the writer and the position
//! of their first record (`archive/<stream>/date=D/http-<writer>-<position>.tar.zst`); after
//! a bundle is stored, a checkpoint (`archive/_checkpoints/<writer>/<stream>.json`) records
//! the last position archived. A restart replays the log: records at or below the checkpoint
//! are skipped, and a bundle whose checkpoint was not written is written again under the same
//! key, with the same first member. So each body is archived once.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::{BufMut, Bytes, BytesMut};
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use logyard_core::{StreamName, time};
use logyard_storage::StorageError;
use logyard_storage::archive::{Archive, ArchiveError, BundleRef, BundleWriter, MemberInfo};
use logyard_storage::store::Storage;

use crate::IngestError;
use crate::uploads::bundler::BundleOptions;

const CHECKPOINTS_DIR: &str = "archive/_checkpoints";

/// What is known of a request besides its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawMeta {
    /// When the request was received, microseconds since the epoch.
    pub received: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// Events accepted and rejected from it.
    pub accepted: u64,
    pub rejected: u64,
}

/// A request body with what is known of it, as stored in the write-ahead log:
/// `u32 meta length | meta JSON | body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPayload {
    pub meta: RawMeta,
    pub body: Bytes,
}

impl RawPayload {
    pub fn encode(&self) -> Bytes {
        let meta = serde_json::to_vec(&self.meta).expect("meta serializes");
        let mut out = BytesMut::with_capacity(4 + meta.len() + self.body.len());
        out.put_u32_le(meta.len() as u32);
        out.put_slice(&meta);
        out.put_slice(&self.body);
        out.freeze()
    }

    pub fn decode(data: &Bytes) -> Result<Self, IngestError> {
        let corrupt = |why: String| IngestError::Corrupt(format!("a request body in the write-ahead log: {why}"));
        let len = data.get(..4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
        let len = len.filter(|l| 4 + l <= data.len()).ok_or_else(|| corrupt("shorter than its header".into()))?;
        let meta = serde_json::from_slice(&data[4..4 + len]).map_err(|e| corrupt(format!("metadata: {e}")))?;
        Ok(Self { meta, body: data.slice(4 + len..) })
    }

    /// The tar member name: when it came, its WAL position, and an extension from its
    /// content type and encoding, e.g. `20261126T101500.123456Z-p00000000000000000042.ndjson.gz`.
    pub fn member_name(&self, position: u64) -> String {
        let at = chrono::DateTime::from_timestamp_micros(self.meta.received).unwrap_or_default();
        let essence = self.meta.content_type.as_deref().and_then(|t| t.split(';').next()).map(str::trim);
        let ext = match essence.map(str::to_ascii_lowercase).as_deref() {
            Some("application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/json-seq") => {
                "ndjson"
            }
            Some("application/json") => "json",
            Some(t) if t.starts_with("text/") => "txt",
            _ => "bin",
        };
        let compression = match self.meta.content_encoding.as_deref().map(str::trim) {
            Some("gzip" | "x-gzip") => ".gz",
            Some("zstd") => ".zst",
            Some("deflate") => ".zz",
            _ => "",
        };
        format!("{}-p{position:020}.{ext}{compression}", at.format("%Y%m%dT%H%M%S%.6fZ"))
    }

    fn date(&self) -> String {
        time::date_string(self.meta.received)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    position: u64,
}

/// Writes raw payloads into the archive for one writer (one write-ahead log).
#[derive(Debug)]
pub struct RawArchiver {
    storage: Storage,
    writer_id: String,
    options: BundleOptions,
    /// The last position archived per stream, once read.
    checkpoints: Mutex<HashMap<StreamName, u64>>,
}

impl RawArchiver {
    pub fn new(storage: Storage, writer_id: &str, options: BundleOptions) -> Self {
        Self { storage, writer_id: writer_id.to_owned(), options, checkpoints: Mutex::new(HashMap::new()) }
    }

    pub fn options(&self) -> &BundleOptions {
        &self.options
    }

    fn checkpoint_key(&self, stream: &StreamName) -> String {
        format!("{CHECKPOINTS_DIR}/{}/{stream}.json", self.writer_id)
    }

    async fn checkpoint(&self, stream: &StreamName) -> Result<u64, IngestError> {
        if let Some(p) = self.checkpoints.lock().expect("checkpoints lock").get(stream) {
            return Ok(*p);
        }
        let key = self.checkpoint_key(stream);
        let position = match self.storage.root_store().get(&self.storage.path(&key)).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(StorageError::from_store("reading an archive checkpoint"))?;
                serde_json::from_slice::<Checkpoint>(&bytes)
                    .map_err(|e| StorageError::Config(format!("archive checkpoint {key} is not valid: {e}")))?
                    .position
            }
            Err(object_store::Error::NotFound { .. }) => 0,
            Err(e) => return Err(StorageError::from_store("reading an archive checkpoint")(e).into()),
        };
        self.checkpoints.lock().expect("checkpoints lock").insert(stream.clone(), position);
        Ok(position)
    }

    async fn set_checkpoint(&self, stream: &StreamName, position: u64) -> Result<(), IngestError> {
        let body = serde_json::to_vec(&Checkpoint { position }).expect("checkpoint serializes");
        self.storage
            .root_store()
            .put(&self.storage.path(&self.checkpoint_key(stream)), PutPayload::from(body))
            .await
            .map_err(StorageError::from_store("writing an archive checkpoint"))?;
        self.checkpoints.lock().expect("checkpoints lock").insert(stream.clone(), position);
        Ok(())
    }

    /// Archives `records` (position, encoded [`RawPayload`]; in position order): one bundle per
    /// run of records of the same day. Returns the bundles written.
    pub async fn archive(&self, stream: &StreamName, records: &[(u64, Bytes)]) -> Result<Vec<BundleRef>, IngestError> {
        let floor = self.checkpoint(stream).await?;
        let mut runs: Vec<(String, Vec<(u64, RawPayload)>)> = Vec::new();
        for (position, data) in records.iter().filter(|(p, _)| *p > floor) {
            let payload = RawPayload::decode(data)?;
            let date = payload.date();
            match runs.last_mut() {
                Some((d, run)) if *d == date => run.push((*position, payload)),
                _ => runs.push((date, vec![(*position, payload)])),
            }
        }
        let archive = Archive::new(self.storage.clone());
        let mut written = Vec::new();
        for (date, run) in runs {
            let first = run[0].0;
            let last = run[run.len() - 1].0;
            let key = Archive::bundle_key(stream, &date, &format!("http-{}-{first:020}", self.writer_id));
            let (level, frame_bytes) = (self.options.level, self.options.frame_bytes);
            let (bundle, index) = tokio::task::spawn_blocking(move || {
                let mut writer = BundleWriter::new(Vec::new(), level, frame_bytes);
                for (position, payload) in &run {
                    let info = MemberInfo {
                        name: payload.member_name(*position),
                        mtime: (payload.meta.received / 1_000_000).max(0) as u64,
                        rows: Some(payload.meta.accepted),
                        rejected: Some(payload.meta.rejected),
                        upload_id: None,
                    };
                    writer.append(info, payload.body.len() as u64, &payload.body[..])?;
                }
                writer.finish()
            })
            .await
            .map_err(|e| StorageError::Config(format!("bundling raw payloads: {e}")))?
            .map_err(|e| StorageError::Config(format!("bundling raw payloads: {e}")))?;
            let stored = archive.store(&key, Bytes::from(bundle), &index).await.map_err(|e| match e {
                ArchiveError::Storage(s) => s,
                other => StorageError::Config(other.to_string()),
            })?;
            self.set_checkpoint(stream, last).await?;
            tracing::info!(%stream, bundle = %stored.key, members = index.members.len(), "raw payloads archived");
            written.push(stored);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(received: i64, content_type: Option<&str>, encoding: Option<&str>) -> RawPayload {
        RawPayload {
            meta: RawMeta {
                received,
                content_type: content_type.map(Into::into),
                content_encoding: encoding.map(Into::into),
                accepted: 2,
                rejected: 1,
            },
            body: Bytes::from_static(b"{\"a\":1}\n{\"a\":2}\nnot json\n"),
        }
    }

    #[test]
    fn payloads_round_trip_and_are_named_by_time_position_and_type() {
        let p = payload(1_764_151_200_123_456, Some("application/x-ndjson; charset=utf-8"), Some("gzip"));
        assert_eq!(RawPayload::decode(&p.encode()).unwrap(), p);
        assert_eq!(p.member_name(42), "20251126T100000.123456Z-p00000000000000000042.ndjson.gz");
        assert!(payload(0, Some("text/plain"), None).member_name(1).ends_with(".txt"));
        assert!(payload(0, None, Some("zstd")).member_name(1).ends_with(".bin.zst"));
        assert!(RawPayload::decode(&Bytes::from_static(b"\x09\0\0\0{}")).is_err());
    }

    #[tokio::test]
    async fn each_body_is_archived_once_even_when_a_checkpoint_was_lost() {
        use logyard_storage::{Location, StoreMetrics};
        let storage = Storage::open(Location::Memory, &Default::default(), StoreMetrics::default()).await.unwrap();
        let stream = StreamName::new("web").unwrap();
        let day = 1_764_151_200_000_000;
        let records: Vec<(u64, Bytes)> =
            (1..=4).map(|p| (p, payload(day + p as i64, Some("application/x-ndjson"), None).encode())).collect();
        let names = |index: &logyard_storage::archive::BundleIndex| -> Vec<String> {
            index.members.iter().map(|m| m.name.clone()).collect()
        };
        let archive = Archive::new(storage.clone());

        let archiver = RawArchiver::new(storage.clone(), "w1", BundleOptions::default());
        let first = archiver.archive(&stream, &records[..2]).await.unwrap();
        assert_eq!(first.len(), 1);

        // A crash after the bundle but before its checkpoint: the replay holds the same first
        // record and more, and writes the same key again.
        storage.root_store().delete(&storage.path(&archiver.checkpoint_key(&stream))).await.unwrap();
        let fresh = RawArchiver::new(storage.clone(), "w1", BundleOptions::default());
        let rewritten = fresh.archive(&stream, &records[..3]).await.unwrap();
        assert_eq!(rewritten[0].key, first[0].key, "same first record, same bundle");
        let index = archive.index(&rewritten[0].key).await.unwrap();
        let expected: Vec<String> =
            records[..3].iter().map(|(p, r)| RawPayload::decode(r).unwrap().member_name(*p)).collect();
        assert_eq!(names(&index), expected);

        // Replayed records at or below the checkpoint are skipped.
        let again = fresh.archive(&stream, &records).await.unwrap();
        assert_eq!(names(&archive.index(&again[0].key).await.unwrap()).len(), 1, "only position 4");
        assert_eq!(archive.list(Some(&stream)).await.unwrap().len(), 2);

        // Bodies of two days go to two bundles, one per day.
        let next_day = payload(day + 86_400_000_000, None, None).encode();
        let split = fresh.archive(&stream, &[(5, records[0].1.clone()), (6, next_day)]).await.unwrap();
        assert_eq!(split.iter().map(|b| b.date.as_str()).collect::<Vec<_>>(), ["2025-11-26", "2025-11-27"]);
    }
}
