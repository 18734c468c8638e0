//! Forgetting a customer everywhere (a data subject's erasure request): their rows in every
//! stream's table and their lines in the raw archive, until the bytes are gone from the
//! storage, with a record of what was found and removed that the shop can file.
//!
//! A request becomes a job whose record lives in the storage (`forget/<id>.json`) and is
//! written after each step, so a crash resumes it where it was and never leaves it half done
//! without saying so:
//!
//! 1. `finding`: what the buffers hold is committed first; then the customer's rows are
//!    found by the subject columns (`forget.subject_columns`, their id) and, in those rows,
//!    the values of the linked columns (`forget.linked_columns`: their sessions, their e-mail
//!    address), which mark their other rows too, in every stream (two rounds). Rows are also
//!    theirs when a text field holds one of those values. A dry run stops here.
//! 2. `erasing`: each table's rows are deleted ([`Tables::delete_subject`]) and each archive
//!    bundle holding a line of theirs is rewritten without it ([`Archive::erase_lines`]).
//! 3. `waiting`: until the vacuum window (`forget.vacuum_after`) has passed, for queries
//!    that were reading the old files.
//! 4. `purging`: the old files, log entries and bundles are deleted; the record keeps the
//!    time the bytes were gone and drops the values it held.
//!
//! The record names the customer by a keyed hash of their id (the masking key, or a plain
//! SHA-256 without one), never by the id itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use logyard_core::StreamName;
use logyard_core::event::{Scalar, TimeSource, flatten};
use logyard_storage::Tables;
use logyard_storage::archive::erase::{Erasure, Holds};
use logyard_storage::archive::{Archive, BundleRef, WriteOptions, part_bytes_for};
use logyard_storage::forget::{Purged, Subject, SubjectDeletion};

use crate::IngestError;

const JOBS_DIR: &str = "forget";
/// Where reports are (`logyard_report::store`).
const REPORTS_DIR: &str = "reports";

/// How customers are found and forgotten (`[forget]`).
#[derive(Clone)]
pub struct ForgetSettings {
    /// Columns holding a customer's id.
    pub subject_columns: Vec<String>,
    /// Columns whose values in a customer's rows mark their other rows.
    pub linked_columns: Vec<String>,
    /// Text columns searched for the customer's values, by stream.
    pub text_fields: logyard_core::TextFields,
    /// How long removed files and bundles stay for queries reading them.
    pub vacuum_after: Duration,
    /// zstd level and frame size of rewritten bundles.
    pub bundle_level: i32,
    pub bundle_frame_bytes: u64,
    /// Names the customer in the record: HMAC-SHA-256 under this key (the masking key).
    pub key: Option<Arc<[u8]>>,
}

/// What is asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForgetRequest {
    pub customer: String,
    /// The streams to look in; every stream when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<Vec<String>>,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Finding,
    Erasing,
    Waiting,
    Purging,
    Done,
}

/// One stream's part of a job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStep {
    pub rows_found: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<SubjectDeletion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged: Option<Purged>,
}

/// One bundle being rewritten, recorded before it is (so a crash in between still deletes
/// the old bundle's bytes at the end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleStep {
    pub old: BundleRef,
    /// What the rewrite did, once it is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erasure: Option<Erasure>,
    /// Whether the old bundle's bytes are deleted.
    pub deleted: bool,
}

/// A job's record: what was asked, found, removed, and when the bytes were gone. Once done,
/// the erasure receipt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForgetJob {
    pub id: String,
    pub requested_by: String,
    pub requested_at: String,
    /// The customer's id as a keyed hash (`hmac-sha256:...` or `sha256:...`).
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<Vec<String>>,
    pub dry_run: bool,
    pub phase: Phase,
    /// What marks the customer's rows (values in clear): kept until the bytes are gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marks: Option<Subject>,
    /// How many values of each column marked the customer's rows.
    pub values_by_column: BTreeMap<String, usize>,
    pub tables: BTreeMap<String, TableStep>,
    /// The streams whose archive bundles were examined.
    pub archive_streams_done: BTreeSet<String>,
    pub bundles: Vec<BundleStep>,
    /// The reports (their directories) deleted because they named the customer: they can be
    /// made again from the tables (`logyard report`).
    #[serde(default)]
    pub reports_deleted: Vec<String>,
    #[serde(default)]
    pub reports_done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Runs forget jobs against a storage.
#[derive(Clone)]
pub struct Forgetter {
    tables: Arc<Tables>,
    settings: ForgetSettings,
    /// Jobs seen done (a done record never changes): not read again at each look.
    done: Arc<std::sync::Mutex<BTreeSet<String>>>,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn bad(message: String) -> IngestError {
    IngestError::Invalid(message)
}

impl std::fmt::Debug for Forgetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.settings;
        f.debug_struct("Forgetter")
            .field("subject_columns", &s.subject_columns)
            .field("linked_columns", &s.linked_columns)
            .field("vacuum_after", &s.vacuum_after)
            .finish_non_exhaustive()
    }
}

impl Forgetter {
    pub fn new(tables: Arc<Tables>, settings: ForgetSettings) -> Self {
        Self { tables, settings, done: Arc::default() }
    }

    fn archive(&self) -> Archive {
        Archive::new(self.tables.storage().clone())
    }

    /// The customer's id as the record names it.
    fn subject_ref(&self, customer: &str) -> String {
        match &self.settings.key {
            Some(key) => format!("hmac-sha256:{}", logyard_core::mask::keyed_hash(key, "subject", customer)),
            None => {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(customer.as_bytes());
                format!("sha256:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
            }
        }
    }

    /// Records a new job (phase `finding`) and returns it; [`Forgetter::advance`] runs it.
    pub async fn create(&self, request: &ForgetRequest, requested_by: &str) -> Result<ForgetJob, IngestError> {
        let customer = request.customer.trim();
        if customer.is_empty() || customer.len() > 256 || customer.chars().any(char::is_control) {
            return Err(bad("`customer`: give the customer's id (1 to 256 characters, no control characters)".into()));
        }
        if self.settings.subject_columns.is_empty() {
            return Err(bad("forget.subject_columns names no column to find a customer by".into()));
        }
        if let Some(streams) = &request.streams {
            for s in streams {
                StreamName::new(s).map_err(|e| bad(format!("`streams`: {e}")))?;
            }
        }
        let values = BTreeSet::from([customer.to_owned()]);
        let marks = Subject {
            values: self.settings.subject_columns.iter().map(|c| (c.clone(), values.clone())).collect(),
            text_fields: Vec::new(),
        };
        let job = ForgetJob {
            id: uuid::Uuid::now_v7().simple().to_string(),
            requested_by: requested_by.to_owned(),
            requested_at: now_rfc3339(),
            subject: self.subject_ref(customer),
            streams: request.streams.clone(),
            dry_run: request.dry_run,
            phase: Phase::Finding,
            marks: Some(marks),
            values_by_column: BTreeMap::new(),
            tables: BTreeMap::new(),
            archive_streams_done: BTreeSet::new(),
            bundles: Vec::new(),
            reports_deleted: Vec::new(),
            reports_done: false,
            purge_after: None,
            gone_at: None,
            last_error: None,
        };
        self.save(&job).await?;
        Ok(job)
    }

    async fn save(&self, job: &ForgetJob) -> Result<(), IngestError> {
        let bytes = serde_json::to_vec_pretty(job).expect("a job serializes");
        self.tables.storage().put(&format!("{JOBS_DIR}/{}.json", job.id), Bytes::from(bytes)).await?;
        Ok(())
    }

    /// A job's record; `None` when there is no such job.
    pub async fn get(&self, id: &str) -> Result<Option<ForgetJob>, IngestError> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        match self.tables.storage().get(&format!("{JOBS_DIR}/{id}.json")).await {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| bad(format!("forget job {id}: {e}")))?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The jobs not done yet (to resume them after a restart).
    pub async fn unfinished(&self) -> Result<Vec<ForgetJob>, IngestError> {
        let mut out = Vec::new();
        for name in self.tables.storage().list_names(JOBS_DIR).await? {
            let Some(id) = name.strip_suffix(".json") else { continue };
            if self.done.lock().expect("done lock").contains(id) {
                continue;
            }
            match self.get(id).await? {
                Some(job) if job.phase == Phase::Done => {
                    self.done.lock().expect("done lock").insert(job.id);
                }
                Some(job) => out.push(job),
                None => {}
            }
        }
        Ok(out)
    }

    /// Runs a job as far as it can go now: to `done`, or to `waiting` while its vacuum window
    /// lasts. `flush` commits what the buffers hold (called before anything is looked for).
    /// A step that fails leaves the job where it was, its error in `last_error` (the receipt
    /// shows it), for the next call to try again.
    pub async fn advance<F, Fut>(&self, job: ForgetJob, flush: F) -> Result<ForgetJob, IngestError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), IngestError>>,
    {
        let id = job.id.clone();
        match self.run(job, flush).await {
            Ok(job) => Ok(job),
            Err(e) => {
                if let Ok(Some(mut job)) = self.get(&id).await {
                    job.last_error = Some(logyard_core::error_chain(&e));
                    let _ = self.save(&job).await;
                }
                Err(e)
            }
        }
    }

    async fn run<F, Fut>(&self, mut job: ForgetJob, flush: F) -> Result<ForgetJob, IngestError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), IngestError>>,
    {
        let mut flush = Some(flush);
        loop {
            let next = match job.phase {
                Phase::Finding => {
                    if let Some(flush) = flush.take() {
                        flush().await?;
                    }
                    self.find(&mut job).await?;
                    if job.dry_run { Phase::Done } else { Phase::Erasing }
                }
                Phase::Erasing => {
                    self.erase(&mut job).await?;
                    let due =
                        chrono::Utc::now() + chrono::Duration::from_std(self.settings.vacuum_after).unwrap_or_default();
                    job.purge_after = Some(due.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                    Phase::Waiting
                }
                Phase::Waiting => {
                    let due = job.purge_after.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
                    if due.is_some_and(|d| d > chrono::Utc::now()) {
                        return Ok(job);
                    }
                    Phase::Purging
                }
                Phase::Purging => {
                    self.purge(&mut job).await?;
                    job.gone_at = Some(now_rfc3339());
                    Phase::Done
                }
                Phase::Done => return Ok(job),
            };
            job.phase = next;
            if next == Phase::Done {
                job.marks = None;
            }
            job.last_error = None;
            self.save(&job).await?;
        }
    }

    /// `marks` with `stream`'s text fields to search for their values.
    fn in_stream(&self, marks: &Subject, stream: &StreamName) -> Subject {
        Subject { values: marks.values.clone(), text_fields: self.settings.text_fields.of(stream).to_vec() }
    }

    async fn streams(&self, job: &ForgetJob) -> Result<Vec<StreamName>, IngestError> {
        Ok(match &job.streams {
            Some(list) => list.iter().filter_map(|s| StreamName::new(s).ok()).collect(),
            None => self.tables.storage().list_streams().await?,
        })
    }

    /// Finds the values that mark the customer's rows, and counts those rows per stream.
    async fn find(&self, job: &mut ForgetJob) -> Result<(), IngestError> {
        let streams = self.streams(job).await?;
        let mut marks = job.marks.clone().unwrap_or_default();
        for _ in 0..2 {
            for stream in &streams {
                let subject = self.in_stream(&marks, stream);
                let found = self.tables.subject_values(stream, &subject, &self.settings.linked_columns).await?;
                for (column, values) in found {
                    marks.values.entry(column).or_default().extend(values);
                }
            }
        }
        job.tables.clear();
        for stream in &streams {
            let subject = self.in_stream(&marks, stream);
            let rows = self.tables.count_subject(stream, &subject).await?;
            job.tables.insert(stream.to_string(), TableStep { rows_found: rows, ..Default::default() });
        }
        job.values_by_column = marks.values.iter().map(|(c, v)| (c.clone(), v.len())).collect();
        job.marks = Some(marks);
        Ok(())
    }

    async fn erase(&self, job: &mut ForgetJob) -> Result<(), IngestError> {
        let marks = job.marks.clone().ok_or_else(|| bad(format!("forget job {}: its marks are gone", job.id)))?;
        let names: Vec<String> = job.tables.keys().cloned().collect();
        for name in names {
            let stream = StreamName::new(&name)?;
            if job.tables[&name].deleted.is_some() {
                continue;
            }
            let subject = self.in_stream(&marks, &stream);
            let deleted = self.tables.delete_subject(&stream, &subject).await?;
            job.tables.get_mut(&name).expect("listed").deleted = Some(deleted);
            self.save(job).await?;
        }
        let archive = self.archive();
        let holds = line_test(&marks);
        let streams = self.streams(job).await?;
        for stream in streams {
            if job.archive_streams_done.contains(stream.as_str()) {
                continue;
            }
            let listed = archive.list(Some(&stream)).await?;
            for bundle in &listed {
                let attempt = format!("{}-", bundle.id);
                if let Some(at) = job.bundles.iter().position(|b| b.old.key == bundle.key) {
                    // A rewrite a crash interrupted before the old bundle left the listing:
                    // what it wrote goes, and it starts again.
                    for leftover in listed.iter().filter(|b| b.date == bundle.date && b.id.starts_with(&attempt)) {
                        archive.delete(leftover).await?;
                    }
                    job.bundles.remove(at);
                }
                job.bundles.push(BundleStep { old: bundle.clone(), erasure: None, deleted: false });
                self.save(job).await?;
                let options = WriteOptions {
                    level: self.settings.bundle_level,
                    frame_bytes: self.settings.bundle_frame_bytes,
                    part_bytes: part_bytes_for(bundle.bytes.saturating_mul(4)),
                };
                match archive.erase_lines(bundle, holds.clone(), options).await? {
                    Some(erasure) => job.bundles.last_mut().expect("pushed").erasure = Some(erasure),
                    None => drop(job.bundles.pop()),
                }
                self.save(job).await?;
            }
            job.archive_streams_done.insert(stream.to_string());
            self.save(job).await?;
        }
        if !job.reports_done {
            job.reports_deleted = self.erase_reports(&holds).await?;
            job.reports_done = true;
            self.save(job).await?;
        }
        Ok(())
    }

    /// Deletes the reports with a line of the customer's (a report is a day's summary; it is
    /// made again from the tables, which no longer hold them). Returns their directories.
    async fn erase_reports(&self, holds: &Holds) -> Result<Vec<String>, IngestError> {
        use futures::TryStreamExt;
        use object_store::ObjectStoreExt;
        let storage = self.tables.storage();
        let store = storage.root_store();
        let objects: Vec<_> = store
            .list(Some(&storage.path(REPORTS_DIR)))
            .try_collect()
            .await
            .map_err(logyard_storage::StorageError::from_store("listing reports"))?;
        let root = storage.path("");
        let mut by_dir: BTreeMap<String, Vec<object_store::path::Path>> = BTreeMap::new();
        for object in objects {
            let location = object.location.as_ref();
            let relative = location.strip_prefix(root.as_ref()).unwrap_or(location).trim_start_matches('/');
            let dir = relative.rsplit_once('/').map_or(relative, |(dir, _)| dir).to_owned();
            by_dir.entry(dir).or_default().push(object.location);
        }
        let mut deleted = Vec::new();
        for (dir, mut files) in by_dir {
            let mut found = false;
            for file in &files {
                let bytes =
                    store.get(file).await.map_err(logyard_storage::StorageError::from_store("reading a report"))?;
                let bytes =
                    bytes.bytes().await.map_err(logyard_storage::StorageError::from_store("reading a report"))?;
                if bytes.split(|b| *b == b'\n').any(|line| holds(line)) {
                    found = true;
                    break;
                }
            }
            if !found {
                continue;
            }
            // The manifest first: without it the report is not listed or served.
            files.sort_by_key(|f| !f.as_ref().ends_with("/manifest.json"));
            for file in &files {
                match store.delete(file).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(logyard_storage::StorageError::from_store("deleting a report")(e).into()),
                }
            }
            deleted.push(dir);
        }
        Ok(deleted)
    }

    async fn purge(&self, job: &mut ForgetJob) -> Result<(), IngestError> {
        let names: Vec<String> = job.tables.keys().cloned().collect();
        for name in names {
            let stream = StreamName::new(&name)?;
            let purged = self.tables.purge(&stream, self.settings.vacuum_after).await?;
            job.tables.get_mut(&name).expect("listed").purged = Some(purged);
        }
        let archive = self.archive();
        for step in job.bundles.iter_mut().filter(|b| !b.deleted) {
            archive.delete(&step.old).await?;
            step.deleted = true;
        }
        Ok(())
    }
}

/// Whether an archived line is the customer's: a JSON object with a marked value in a
/// marked column (nested fields by their dotted names) or a long enough value anywhere in its
/// text; any other line when a long enough value is in it.
fn line_test(marks: &Subject) -> Holds {
    let values: BTreeMap<String, BTreeSet<String>> =
        (marks.values.iter()).map(|(c, v)| (c.clone(), v.iter().map(|s| s.to_ascii_lowercase()).collect())).collect();
    let finders = marks.text_finders();
    Arc::new(move |line: &[u8]| {
        let lower = line.to_ascii_lowercase();
        if finders.iter().any(|f| f.find(&lower).is_some()) {
            return true;
        }
        let Ok(text) = std::str::from_utf8(line) else { return false };
        let text = text.trim();
        if !text.starts_with('{') {
            return false;
        }
        let mut found = false;
        let _ = flatten(text, TimeSource::Received, |path, scalar, _| {
            if found {
                return;
            }
            let Some(marked) = values.get(path) else { return };
            let value = match scalar {
                Scalar::Text(t) => t.to_ascii_lowercase(),
                Scalar::Int(i) => i.to_string(),
                _ => return,
            };
            found = marked.contains(&value);
        });
        found
    })
}

/// A job's receipt as JSON (what `POST /api/v1/forget` and `logyard forget` show): its
/// record without the values that mark the customer's rows.
pub fn receipt(job: &ForgetJob) -> Value {
    let mut job = job.clone();
    job.marks = None;
    serde_json::to_value(job).expect("a job serializes")
}
