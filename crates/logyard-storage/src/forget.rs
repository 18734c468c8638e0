//! Erasing a data subject (a customer) from a stream's table.
//!
//! A [`Subject`] is the values that mark its rows, by column (`customer_id`, the e-mail
//! address, the sessions found in its rows), and the text columns searched for those values
//! (an address written into a message). [`Tables::delete_subject`] removes its rows in one
//! Delta commit that rewrites each file holding some (copy-on-write: delta-rs writes no
//! deletion vectors, and a deletion vector would leave the bytes in the file until it is
//! rewritten anyway), with a predicate that names no value, so the log keeps none; then
//! writes a checkpoint. [`Tables::purge`] later deletes what a reader inside the vacuum window
//! could still need: the files the commit removed, the log entries before that checkpoint
//! (whose statistics may hold the values as a file's minimum or maximum) and the skipping
//! indexes of removed files.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::datatypes::{DataType, Schema};
use deltalake::datafusion::common::{Column, DataFusionError};
use deltalake::datafusion::logical_expr::{ColumnarValue, Expr, Volatility, cast, create_udf};
use deltalake::datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use logyard_core::StreamName;

use crate::StorageError;
use crate::tables::{Tables, writer_properties};

/// Values shorter than this are not looked for inside text (a session id `s-1` would match
/// `s-10`); they still mark rows by equality.
pub const MIN_TEXT_VALUE: usize = 6;

/// What marks a subject's rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// By column: a row whose column holds one of the values (ASCII case ignored) is theirs.
    pub values: BTreeMap<String, BTreeSet<String>>,
    /// Text columns: a row whose text holds one of the values (of at least
    /// [`MIN_TEXT_VALUE`] bytes, ASCII case ignored) is theirs.
    pub text_fields: Vec<String>,
}

/// What [`Tables::delete_subject`] did to a table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectDeletion {
    /// The table version of the commit (none when no row was theirs).
    pub version: Option<u64>,
    pub rows_removed: u64,
    pub files_rewritten: u64,
    pub files_added: u64,
}

/// What [`Tables::purge`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purged {
    pub files_deleted: u64,
    pub log_entries_deleted: u64,
    pub indexes_deleted: u64,
}

impl Subject {
    /// Searches for each value looked for inside text (at least [`MIN_TEXT_VALUE`] bytes,
    /// lower-cased): run them over lower-cased text.
    pub fn text_finders(&self) -> Vec<memchr::memmem::Finder<'static>> {
        let all = self.values.values().flatten().filter(|v| v.len() >= MIN_TEXT_VALUE);
        let set: BTreeSet<Vec<u8>> = all.map(|v| v.to_ascii_lowercase().into_bytes()).collect();
        set.iter().map(|t| memchr::memmem::Finder::new(t).into_owned()).collect()
    }

    /// `forget_subject(col, ...)` over the columns of `schema` that mark rows; `None` when
    /// the table has none of them. The function holds the values, so the expression written
    /// as SQL (as the Delta log records a delete's predicate) holds none.
    pub fn predicate(&self, schema: &Schema) -> Option<Expr> {
        let finders = self.text_finders();
        let mut args = Vec::new();
        let mut checks = Vec::new();
        for field in schema.fields() {
            let name = field.name();
            let equal = self.values.get(name).map(|v| v.iter().map(|s| s.to_ascii_lowercase()).collect());
            let text = self.text_fields.contains(name) && !finders.is_empty();
            if equal.is_none() && !text {
                continue;
            }
            args.push(cast(Expr::Column(Column::from_name(name)), DataType::Utf8));
            checks.push(Check { equal: equal.unwrap_or_default(), contains: text });
        }
        if args.is_empty() {
            return None;
        }
        let finders = Arc::new(finders);
        let checks = Arc::new(checks);
        let arity = args.len();
        let fun = move |values: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(values)?;
            let rows = arrays.first().map_or(0, |a| a.len());
            let mut out = vec![false; rows];
            for (array, check) in arrays.iter().zip(checks.iter()) {
                check.mark(array, &finders, &mut out)?;
            }
            Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(out)) as ArrayRef))
        };
        let udf = create_udf(
            "forget_subject",
            vec![DataType::Utf8; arity],
            DataType::Boolean,
            Volatility::Immutable,
            Arc::new(fun),
        );
        Some(udf.call(args))
    }
}

/// How one column marks rows.
struct Check {
    /// Lower-cased values it may equal.
    equal: BTreeSet<String>,
    /// Whether its text is searched for the values.
    contains: bool,
}

impl Check {
    fn mark(
        &self,
        array: &ArrayRef,
        finders: &[memchr::memmem::Finder<'static>],
        out: &mut [bool],
    ) -> Result<(), DataFusionError> {
        let strings = array.as_string_opt::<i32>().ok_or_else(|| DataFusionError::Internal("text expected".into()))?;
        let mut lower = Vec::new();
        for (row, value) in strings.iter().enumerate() {
            let Some(value) = value else { continue };
            if out[row] {
                continue;
            }
            lower.clear();
            lower.extend(value.bytes().map(|b| b.to_ascii_lowercase()));
            let text = std::str::from_utf8(&lower).unwrap_or_default();
            out[row] = self.equal.contains(text) || (self.contains && finders.iter().any(|f| f.find(&lower).is_some()));
        }
        Ok(())
    }
}

impl Tables {
    /// The values of `columns` in the rows of `stream` that `subject` marks: the sessions, the
    /// addresses a customer's rows carry, to mark their other rows by.
    pub async fn subject_values(
        &self,
        stream: &StreamName,
        subject: &Subject,
        columns: &[String],
    ) -> Result<BTreeMap<String, BTreeSet<String>>, StorageError> {
        let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let Some(table) = self.latest(stream).await? else { return Ok(found) };
        let Some((predicate, schema)) = predicate_over(&table, subject)? else { return Ok(found) };
        let present: Vec<&String> = columns.iter().filter(|c| schema.column_with_name(c).is_some()).collect();
        if present.is_empty() {
            return Ok(found);
        }
        let ctx = SessionContext::new();
        let provider = table.table_provider().await.map_err(query_error)?;
        let frame = ctx.read_table(provider).map_err(query_error)?;
        let select = present.iter().map(|c| cast(Expr::Column(Column::from_name(*c)), DataType::Utf8).alias(*c));
        let batches = frame
            .filter(predicate)
            .and_then(|f| f.select(select.collect::<Vec<_>>()))
            .and_then(|f| f.distinct())
            .map_err(query_error)?
            .collect()
            .await
            .map_err(query_error)?;
        for batch in batches {
            for (column, array) in present.iter().zip(batch.columns()) {
                let values = found.entry((*column).clone()).or_default();
                values.extend(array.as_string::<i32>().iter().flatten().map(str::to_owned));
            }
        }
        Ok(found)
    }

    /// How many rows of `stream` `subject` marks.
    pub async fn count_subject(&self, stream: &StreamName, subject: &Subject) -> Result<u64, StorageError> {
        let Some(table) = self.latest(stream).await? else { return Ok(0) };
        let Some((predicate, _)) = predicate_over(&table, subject)? else { return Ok(0) };
        let provider = table.table_provider().await.map_err(query_error)?;
        let frame = SessionContext::new().read_table(provider).map_err(query_error)?;
        let rows = frame.filter(predicate).map_err(query_error)?.count().await.map_err(query_error)?;
        Ok(rows as u64)
    }

    /// Removes `subject`'s rows from `stream`'s table: each file holding some is rewritten
    /// without them, in one commit; then a checkpoint of that version, so that the log before it
    /// can go ([`Tables::purge`]).
    pub async fn delete_subject(
        &self,
        stream: &StreamName,
        subject: &Subject,
    ) -> Result<SubjectDeletion, StorageError> {
        let slot = self.slot(stream);
        let mut guard = slot.lock().await;
        self.refresh(stream, &mut guard).await?;
        let Some(table) = guard.clone() else { return Ok(SubjectDeletion::default()) };
        let Some((predicate, _)) = predicate_over(&table, subject)? else { return Ok(SubjectDeletion::default()) };
        let choices = self.rewrite_choices(stream, &table, None).await?;
        let properties = writer_properties(&choices, self.bloom_filters().fpp, self.row_group_rows(), usize::MAX);
        let (table, metrics) = table
            .delete()
            .with_predicate(predicate)
            .with_writer_properties(properties)
            .with_commit_properties(crate::maintenance::commit_by("forget"))
            .await
            .map_err(StorageError::delta("deleting a subject's rows"))?;
        let deletion = SubjectDeletion {
            version: (metrics.num_removed_files > 0).then(|| table.version().unwrap_or_default()),
            rows_removed: metrics.num_deleted_rows.unwrap_or_default() as u64,
            files_rewritten: metrics.num_removed_files as u64,
            files_added: metrics.num_added_files as u64,
        };
        if deletion.version.is_some() {
            deltalake::checkpoints::create_checkpoint(&table, None)
                .await
                .map_err(StorageError::delta("writing a checkpoint after a deletion"))?;
        }
        *guard = Some(table);
        Ok(deletion)
    }

    /// Deletes from `stream`'s table what no version younger than `keep` needs: files removed
    /// from the table, log entries before the latest checkpoint (and the checkpoints before it),
    /// and the skipping indexes of removed files.
    pub async fn purge(&self, stream: &StreamName, keep: Duration) -> Result<Purged, StorageError> {
        let slot = self.slot(stream);
        let mut guard = slot.lock().await;
        self.refresh(stream, &mut guard).await?;
        let Some(table) = guard.clone() else { return Ok(Purged::default()) };
        let keep_delta = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
        let (table, vacuum) = table
            .vacuum()
            .with_retention_period(keep_delta)
            .with_enforce_retention_duration(false)
            .await
            .map_err(StorageError::delta("vacuuming"))?;
        let cutoff = (chrono::Utc::now() - keep_delta).timestamp_millis();
        let version = table.version().unwrap_or_default();
        let log_entries_deleted =
            deltalake::checkpoints::cleanup_expired_logs_for(version, table.log_store().as_ref(), cutoff, None)
                .await
                .map_err(StorageError::delta("deleting old log entries"))?;
        *guard = Some(table.clone());
        drop(guard);
        let indexes_deleted = self.forget_ids(stream, &table, keep).await?;
        Ok(Purged {
            files_deleted: vacuum.files_deleted.len() as u64,
            log_entries_deleted: log_entries_deleted as u64,
            indexes_deleted,
        })
    }
}

/// `subject`'s predicate over `table`'s schema (and the schema); `None` when no column of the
/// table marks rows.
fn predicate_over(
    table: &deltalake::DeltaTable,
    subject: &Subject,
) -> Result<Option<(Expr, arrow::datatypes::SchemaRef)>, StorageError> {
    let schema = table.snapshot().map_err(StorageError::delta("reading table state"))?.snapshot().arrow_schema();
    Ok(subject.predicate(&schema).map(|p| (p, schema)))
}

fn query_error(e: DataFusionError) -> StorageError {
    StorageError::Build(format!("finding a subject's rows: {e}"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::tables::BuildFn;

    const SUBJECT: &str = "c-000001";
    const EMAIL: &str = "li.wei@example.com";
    const SESSION: &str = "sess-000001";

    /// A commit of these events (JSON objects).
    fn events(lines: &[serde_json::Value]) -> BuildFn {
        use logyard_core::batch::{BatchBuilder, PendingEvent};
        let texts: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        Arc::new(move |schema, _| {
            let mut b = BatchBuilder::new(schema, 100);
            for text in &texts {
                let source = logyard_core::event::TimeSource::Received;
                b.push(PendingEvent { time: 1_764_064_800_000_000, source, text })?;
            }
            Ok(Some(vec![b.finish()?]))
        })
    }

    /// The files under `dir` whose bytes, or (Parquet) whose values, hold `needle` in any ASCII
    /// case.
    fn holding(dir: &Path, needle: &str) -> Vec<String> {
        let needle = needle.to_ascii_lowercase();
        let mut hits = Vec::new();
        for path in crate::files_under(dir) {
            let mut text = std::fs::read(&path).unwrap();
            if path.extension().is_some_and(|e| e == "parquet") {
                let file = std::fs::File::open(&path).unwrap();
                let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap();
                let batches: Vec<_> = reader.map(Result::unwrap).collect();
                text.extend(arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string().bytes());
            }
            if text.to_ascii_lowercase().windows(needle.len()).any(|w| w == needle.as_bytes()) {
                hits.push(path.display().to_string());
            }
        }
        hits
    }

    #[tokio::test]
    async fn a_subjects_rows_and_their_bytes_are_gone_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let tables = Tables::open_local(dir.path()).await;
        let stream = StreamName::new("shop").unwrap();
        let commits = [
            vec![
                serde_json::json!({"customer_id": SUBJECT, "email": EMAIL, "session_id": SESSION, "message": "login"}),
                serde_json::json!({"customer_id": "c-000002", "email": "bo@example.org", "session_id": "sess-000002", "message": "login"}),
            ],
            vec![
                // Theirs through the session their rows carry.
                serde_json::json!({"session_id": SESSION, "message": "cart viewed"}),
                serde_json::json!({"customer_id": "c-000002", "session_id": "sess-000002", "message": "cart viewed"}),
            ],
            vec![
                // Theirs through their address, written into a message.
                serde_json::json!({"message": "payment declined for LI.WEI@example.com"}),
                serde_json::json!({"customer_id": "c-000003", "session_id": "s-1", "message": "ok s-1 c-00000"}),
            ],
        ];
        for (n, lines) in commits.iter().enumerate() {
            tables.append(&stream, "test", n as i64 + 1, events(lines)).await.unwrap();
        }

        let mut subject = Subject {
            values: BTreeMap::from([("customer_id".to_owned(), BTreeSet::from([SUBJECT.to_owned()]))]),
            text_fields: vec!["message".into()],
        };
        let linked = ["session_id".to_owned(), "email".to_owned()];
        let found = tables.subject_values(&stream, &subject, &linked).await.unwrap();
        assert_eq!(found["session_id"], BTreeSet::from([SESSION.to_owned()]));
        assert_eq!(found["email"], BTreeSet::from([EMAIL.to_owned()]));
        for (column, values) in found {
            subject.values.entry(column).or_default().extend(values);
        }

        let deletion = tables.delete_subject(&stream, &subject).await.unwrap();
        assert_eq!((deletion.rows_removed, deletion.files_rewritten), (3, 3), "{deletion:?}");
        let again = tables.delete_subject(&stream, &subject).await.unwrap();
        assert_eq!(again, SubjectDeletion::default(), "deleting twice removes nothing more");
        assert_eq!(tables.info(&stream).await.unwrap().unwrap().rows, 3);
        let log = dir.path().join("tables/shop/_delta_log");
        // The removed files are still there for readers inside the window, and the log's
        // statistics name the subject; the deletion's commit does not.
        assert!(!holding(&log, SUBJECT).is_empty());
        let commit = log.join(format!("{:020}.json", deletion.version.unwrap()));
        let text = std::fs::read_to_string(&commit).unwrap();
        assert!(text.contains("forget_subject(") && !text.contains(SUBJECT) && !text.contains(SESSION), "{text}");

        let purged = tables.purge(&stream, Duration::ZERO).await.unwrap();
        assert_eq!(purged.files_deleted, 3, "{purged:?}");
        assert!(purged.log_entries_deleted >= 3, "{purged:?}");
        for value in [SUBJECT, EMAIL, SESSION] {
            assert_eq!(holding(dir.path(), value), Vec::<String>::new(), "{value} is still stored");
        }
        // Everyone else's rows are whole (the scan finds what is there).
        for value in ["c-000002", "bo@example.org", "sess-000002", "c-000003"] {
            assert!(!holding(&dir.path().join("tables/shop"), value).is_empty(), "{value} was lost");
        }
        let table = tables.latest(&stream).await.unwrap().unwrap();
        let ctx = SessionContext::new();
        let frame = ctx.read_table(table.table_provider().await.unwrap()).unwrap();
        assert_eq!(frame.count().await.unwrap(), 3);
    }
}
