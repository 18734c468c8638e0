//! `logyard import alb`: the access-log files an Application Load Balancer writes to S3
//! (`.../AWSLogs/<account>/elasticloadbalancing/<region>/YYYY/MM/DD/*.log.gz`) into a stream
//! with typed columns ([`logyard_core::alb`]), the originals into the archive.
//!
//! Idempotent: per source and log day, a manifest (`imports/alb/<source-id>/<date>.json`)
//! remembers the files imported. Files are imported in groups; a group is first recorded in
//! the manifest as pending with its version, then committed with the Delta transaction
//! (`alb-<source-id>-<date>`, version), then archived under a key derived from the same
//! version, then marked done. A rerun after a crash repeats a pending group: the commit is
//! skipped (already in the table) and the bundle rewritten at the same key.

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use logyard_core::StreamName;
use logyard_core::alb;
use logyard_storage::archive::{Archive, BundleWriter, MemberInfo};
use logyard_storage::tables::BuildFn;
use logyard_storage::{AppendOutcome, Storage, StorageError, Tables};

use crate::IngestError;
use crate::uploads::FileLineReport;

/// How an import runs.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Log days before this one are left alone.
    pub since: Option<chrono::NaiveDate>,
    /// Compressed bytes of files per commit (and per bundle); ALB text is about 10 times
    /// its gzip size, and a group is parsed in memory.
    pub group_bytes: u64,
    /// The zstd level of the archive's bundles when they hold plain `.log` files (the bundle
    /// writer stores frames of gzip files, which do not compress again, at level 1).
    pub bundle_level: i32,
    pub frame_bytes: u64,
    /// What is masked in the stream's rows; a masked stream's original files are not
    /// archived (they stay in the ALB's own bucket) unless `keep_originals` names it.
    pub masking: Arc<logyard_core::mask::Masking>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self { since: None, group_bytes: 8 << 20, bundle_level: 3, frame_bytes: 1 << 20, masking: Arc::default() }
    }
}

/// What one pass imported.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ImportReport {
    /// Files imported by this pass.
    pub files: usize,
    /// Files found already imported.
    pub skipped: usize,
    pub rows: u64,
    pub rejected: u64,
    /// Bytes of log text (decompressed).
    pub bytes: u64,
    /// The first rejected lines, with their file.
    pub errors: Vec<FileLineReport>,
    /// Values masked (`[[masking.rules]]`).
    pub masked: u64,
}

/// Reported after each file.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    pub key: &'a str,
    /// Compressed bytes of this file.
    pub bytes: u64,
    /// Compressed bytes of every file this pass imports.
    pub total: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    done: Vec<String>,
    #[serde(default)]
    pending: Option<Group>,
    next_version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Group {
    version: i64,
    keys: Vec<String>,
}

/// An import from one source prefix into one stream.
#[derive(Debug)]
pub struct AlbImport {
    source: Storage,
    source_id: String,
    tables: Arc<Tables>,
    stream: StreamName,
    options: ImportOptions,
}

struct SourceFile {
    key: String,
    size: u64,
}

impl AlbImport {
    /// `source_url` names the source (for the manifest); `source` is opened on it.
    pub fn new(
        source: Storage,
        source_url: &str,
        tables: Arc<Tables>,
        stream: StreamName,
        options: ImportOptions,
    ) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(source_url.trim_end_matches('/').as_bytes());
        let source_id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Self { source, source_id, tables, stream, options }
    }

    /// Imports every file not imported yet; returns what it did.
    pub async fn run_once(&self, progress: &(dyn Fn(Progress<'_>) + Sync)) -> Result<ImportReport, IngestError> {
        let mut by_day: std::collections::BTreeMap<String, Vec<SourceFile>> = Default::default();
        let listing: Vec<_> = self
            .source
            .root_store()
            .list(Some(&self.source.path("")))
            .try_collect()
            .await
            .map_err(StorageError::from_store("listing the ALB log files"))?;
        let root = self.source.path("");
        for o in listing {
            let full = o.location.as_ref();
            let key = full.strip_prefix(root.as_ref()).unwrap_or(full).trim_start_matches('/').to_owned();
            if !(key.ends_with(".log.gz") || key.ends_with(".log")) {
                continue;
            }
            let Some(day) = log_day(&key) else { continue };
            if self.options.since.is_some_and(|since| day < since) {
                continue;
            }
            by_day.entry(day.to_string()).or_default().push(SourceFile { key, size: o.size });
        }
        let mut report = ImportReport::default();
        let mut todo = Vec::new();
        for (day, mut files) in by_day {
            files.sort_by(|a, b| a.key.cmp(&b.key));
            let manifest = self.manifest(&day).await?;
            let done: std::collections::HashSet<&str> = manifest.done.iter().map(String::as_str).collect();
            let pending: std::collections::HashSet<&str> =
                manifest.pending.iter().flat_map(|g| g.keys.iter().map(String::as_str)).collect();
            let (old, new): (Vec<_>, Vec<_>) = files.into_iter().partition(|f| done.contains(f.key.as_str()));
            report.skipped += old.len();
            let new: Vec<_> = new.into_iter().filter(|f| !pending.contains(f.key.as_str())).collect();
            todo.push((day, manifest, new));
        }
        let total: u64 = todo.iter().map(|(_, _, files)| files.iter().map(|f| f.size).sum::<u64>()).sum();
        for (day, mut manifest, files) in todo {
            // A group a crash left pending is finished first, as it was.
            if let Some(group) = manifest.pending.clone() {
                self.import_group(&day, &group, &mut report, total, progress).await?;
                self.finish_group(&day, &mut manifest, group).await?;
            }
            let mut group_files: Vec<String> = Vec::new();
            let mut bytes = 0;
            let count = files.len();
            for (i, f) in files.into_iter().enumerate() {
                bytes += f.size;
                group_files.push(f.key);
                if bytes >= self.options.group_bytes || i + 1 == count {
                    let group = Group { version: manifest.next_version.max(1), keys: std::mem::take(&mut group_files) };
                    manifest.pending = Some(group.clone());
                    self.save_manifest(&day, &manifest).await?;
                    self.import_group(&day, &group, &mut report, total, progress).await?;
                    self.finish_group(&day, &mut manifest, group).await?;
                    bytes = 0;
                }
            }
        }
        Ok(report)
    }

    async fn finish_group(&self, day: &str, manifest: &mut Manifest, group: Group) -> Result<(), IngestError> {
        manifest.next_version = manifest.next_version.max(group.version + 1);
        manifest.done.extend(group.keys);
        manifest.pending = None;
        self.save_manifest(day, manifest).await
    }

    /// Reads, parses and commits one group, then archives its files.
    async fn import_group(
        &self,
        day: &str,
        group: &Group,
        report: &mut ImportReport,
        total: u64,
        progress: &(dyn Fn(Progress<'_>) + Sync),
    ) -> Result<(), IngestError> {
        let mut originals: Vec<(String, Bytes, u64)> = Vec::new();
        let mut batches = Vec::new();
        let mut rows = 0u64;
        // Files are read, inflated and parsed on every core, a few at a time (so that memory
        // holds only that many inflated files), and taken in their order.
        let parallel = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut files = futures::stream::iter(&group.keys).map(|key| self.read_file(key)).buffered(parallel);
        while let Some(file) = files.next().await {
            let ParsedFile { key, data, mtime, parsed, text_bytes, masked } = file?;
            report.masked += masked;
            rows += parsed.rows as u64;
            report.rejected += parsed.rejected as u64;
            report.bytes += text_bytes;
            for e in parsed.errors {
                if report.errors.len() < logyard_core::parse::MAX_REPORTED_ERRORS {
                    report.errors.push(FileLineReport { file: Some(key.clone()), line: e.line, message: e.message });
                }
            }
            if parsed.rows > 0 {
                batches.push(parsed.batch);
            }
            progress(Progress { key: &key, bytes: data.len() as u64, total });
            originals.push((key, data, mtime));
        }
        let app_id = format!("alb-{}-{day}", self.source_id);
        if !batches.is_empty() {
            let build: BuildFn = Arc::new(move |_, _| Ok(Some(batches.clone())));
            match self.tables.append(&self.stream, &app_id, group.version, build).await? {
                AppendOutcome::Committed { .. } => report.rows += rows,
                AppendOutcome::AlreadyCommitted => {
                    tracing::info!(day, version = group.version, "ALB files committed before a restart; not again");
                }
            }
        }
        report.files += group.keys.len();

        if !self.options.masking.archives_originals(self.stream.as_str()) {
            return Ok(());
        }
        // The originals, byte-exact, under a key the group's version decides.
        let level = self.options.bundle_level;
        let frame_bytes = self.options.frame_bytes;
        let (bundle, index) = tokio::task::spawn_blocking(move || {
            let mut writer = BundleWriter::new(Vec::new(), level, frame_bytes);
            for (key, data, mtime) in &originals {
                let info = MemberInfo { name: key.clone(), mtime: *mtime, ..Default::default() };
                writer.append(info, data.len() as u64, &data[..])?;
            }
            writer.finish()
        })
        .await
        .map_err(|e| IngestError::stopped("bundling ALB log files", e))?
        .map_err(|e| StorageError::Io("bundling ALB log files".into(), e))?;
        let key = Archive::bundle_key(&self.stream, day, &format!("alb-{}-{}", self.source_id, group.version));
        Archive::new(self.tables.storage().clone()).store(&key, Bytes::from(bundle), &index).await?;
        Ok(())
    }

    /// Reads one file, inflates and parses it (masking its rows), off the async threads.
    async fn read_file(&self, key: &str) -> Result<ParsedFile, IngestError> {
        let object = self
            .source
            .root_store()
            .get(&self.source.path(key))
            .await
            .map_err(StorageError::from_store("reading an ALB log file"))?;
        let mtime = object.meta.last_modified.timestamp().max(0) as u64;
        let data = object.bytes().await.map_err(StorageError::from_store("reading an ALB log file"))?;
        let compressed = data.clone();
        let name = key.to_owned();
        let masker = self.options.masking.for_stream(self.stream.as_str());
        let (parsed, text_bytes, masked) = tokio::task::spawn_blocking(move || {
            let text = decompress(&compressed).map_err(|e| IngestError::Invalid(format!("{name}: {e}")))?;
            let mut parsed = alb::parse(&text);
            let mut masked = 0;
            if let Some(masker) = masker {
                let (batch, counts) = crate::mask_batch(&masker, parsed.batch)?;
                parsed.batch = batch;
                masked = counts.iter().map(|&n| n as u64).sum();
            }
            Ok::<_, IngestError>((parsed, text.len() as u64, masked))
        })
        .await
        .map_err(|e| IngestError::stopped("parsing ALB log files", e))??;
        Ok(ParsedFile { key: key.to_owned(), data, mtime, parsed, text_bytes, masked })
    }

    fn manifest_key(&self, day: &str) -> String {
        format!("imports/alb/{}/{day}.json", self.source_id)
    }

    async fn manifest(&self, day: &str) -> Result<Manifest, IngestError> {
        match self.tables.storage().get(&self.manifest_key(day)).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| IngestError::Corrupt(format!("the import manifest for {day}: {e}"))),
            Err(StorageError::ObjectStore { source: object_store::Error::NotFound { .. }, .. }) => {
                Ok(Manifest { next_version: 1, ..Default::default() })
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn save_manifest(&self, day: &str, manifest: &Manifest) -> Result<(), IngestError> {
        let storage = self.tables.storage();
        storage
            .root_store()
            .put(
                &storage.path(&self.manifest_key(day)),
                PutPayload::from(serde_json::to_vec(manifest).expect("serializes")),
            )
            .await
            .map_err(StorageError::from_store("writing an import manifest"))?;
        Ok(())
    }
}

/// The log day of a key in ALB's layout (`.../YYYY/MM/DD/file`).
fn log_day(key: &str) -> Option<chrono::NaiveDate> {
    let parts: Vec<&str> = key.split('/').collect();
    parts.windows(4).rev().find_map(|w| {
        let (y, m, d) = (w[0], w[1], w[2]);
        if y.len() == 4 && m.len() == 2 && d.len() == 2 {
            chrono::NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
        } else {
            None
        }
    })
}

/// One ALB log file, read and parsed.
struct ParsedFile {
    key: String,
    /// As stored (gzip), for the archive.
    data: Bytes,
    mtime: u64,
    parsed: alb::Parsed,
    /// Bytes of log text.
    text_bytes: u64,
    masked: u64,
}

/// The first two bytes of every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// gzip (possibly several members) or plain text.
fn decompress(data: &[u8]) -> std::io::Result<Vec<u8>> {
    if data.starts_with(&GZIP_MAGIC) { crate::gunzip::gunzip(data) } else { Ok(data.to_vec()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_days_come_from_the_alb_layout() {
        let key = "AWSLogs/123456789012/elasticloadbalancing/eu-west-1/2026/11/25/123456789012_elasticloadbalancing_eu-west-1_app.shop.50dc6c495c0c9188_20261125T0005Z_10.0.1.5_abc.log.gz";
        assert_eq!(log_day(key), chrono::NaiveDate::from_ymd_opt(2026, 11, 25));
        assert_eq!(log_day("2026/13/01/x.log.gz"), None);
        assert_eq!(log_day("x.log.gz"), None);
    }
}
