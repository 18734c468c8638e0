//! Identifier indexes kept beside a table's files.
//!
//! A query for one order or trace id must not open every file of a month to read its bloom
//! filters: on S3 each opened file costs a footer and one request per row group's filter. So for
//! each file compaction writes, an object `_logyard_ids/<file>.ids` under the table holds, for
//! each column the file has Parquet bloom filters on, one binary fuse filter per row group of the
//! column's values (xxHash64, as Parquet's filters hash; about 9 bits per distinct value and
//! 0.4 % false positives). A query asks the cached indexes which files may hold its `=`/`IN`
//! values and opens only those. A file without an index is always read: the index only ever
//! narrows, and a lost or late one costs time, never rows.
//!
//! Delta's vacuum leaves directories starting with `_` alone; retention removes
//! the indexes of files that left the table (`Tables::drop_before`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray};
use bytes::Bytes;
use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use xorf::{BinaryFuse8, BinaryFuse8Ref, DmaSerializable, Filter, FilterRef};

use logyard_core::StreamName;

use crate::StorageError;
use crate::files::{files_and_stats, read_footer};

/// The directory of a table's identifier indexes, relative to the table's root.
pub const IDS_DIR: &str = "_logyard_ids";

/// The first bytes of an index object (the format's version is its last byte).
const MAGIC: &[u8; 4] = b"LYI1";

/// The hash an index keeps of a value: xxHash64 with seed 0, as Parquet's bloom filters.
pub fn hash(value: &[u8]) -> u64 {
    twox_hash::XxHash64::oneshot(0, value)
}

/// One row group's filter of one column.
#[derive(Debug, Clone)]
enum Slot {
    /// The row group has no value in the column.
    Empty,
    /// No filter could be built: the row group may hold anything.
    Unknown,
    /// A binary fuse filter: its descriptor and fingerprints in the object's bytes.
    Filter { descriptor: Range<usize>, fingerprints: Range<usize> },
}

/// The index of one data file.
#[derive(Debug, Clone)]
pub struct FileIds {
    bytes: Bytes,
    columns: HashMap<String, Vec<Slot>>,
}

impl FileIds {
    /// Encodes the hashes of each column's values, per row group.
    pub fn encode(columns: &[(String, Vec<Vec<u64>>)]) -> Vec<u8> {
        let mut out = Vec::from(&MAGIC[..]);
        out.extend_from_slice(&(columns.len() as u32).to_le_bytes());
        for (name, row_groups) in columns {
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(row_groups.len() as u32).to_le_bytes());
            for hashes in row_groups {
                let mut keys = hashes.clone();
                keys.sort_unstable();
                keys.dedup();
                if keys.is_empty() {
                    out.push(0);
                    continue;
                }
                match BinaryFuse8::try_from(&keys) {
                    Ok(filter) => {
                        out.push(2);
                        let fingerprints = filter.dma_fingerprints();
                        out.extend_from_slice(&(fingerprints.len() as u32).to_le_bytes());
                        let mut descriptor = vec![0u8; BinaryFuse8::DESCRIPTOR_LEN];
                        filter.dma_copy_descriptor_to(&mut descriptor);
                        out.extend_from_slice(&descriptor);
                        out.extend_from_slice(fingerprints);
                    }
                    Err(_) => out.push(1),
                }
            }
        }
        out
    }

    /// Reads an index object.
    pub fn decode(bytes: Bytes) -> Result<Self, String> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<Range<usize>, String> {
            let range = at..at.checked_add(n).filter(|&end| end <= bytes.len()).ok_or("truncated")?;
            at = range.end;
            Ok(range)
        };
        if bytes.get(take(4)?) != Some(&MAGIC[..]) {
            return Err("not an identifier index of this version".into());
        }
        let u32_at = |r: Range<usize>| u32::from_le_bytes(bytes[r].try_into().expect("4 bytes")) as usize;
        let count = u32_at(take(4)?);
        let mut columns = HashMap::with_capacity(count.min(64));
        for _ in 0..count {
            let len = u16::from_le_bytes(bytes[take(2)?].try_into().expect("2 bytes")) as usize;
            let name = std::str::from_utf8(&bytes[take(len)?]).map_err(|_| "a column name is not UTF-8")?.to_owned();
            let row_groups = u32_at(take(4)?);
            let mut slots = Vec::with_capacity(row_groups.min(1 << 16));
            for _ in 0..row_groups {
                let kind = bytes[take(1)?.start];
                slots.push(match kind {
                    0 => Slot::Empty,
                    1 => Slot::Unknown,
                    2 => {
                        let len = u32_at(take(4)?);
                        Slot::Filter { descriptor: take(BinaryFuse8::DESCRIPTOR_LEN)?, fingerprints: take(len)? }
                    }
                    other => return Err(format!("unknown row group entry {other}")),
                });
            }
            columns.insert(name, slots);
        }
        Ok(Self { bytes, columns })
    }

    /// For each row group, whether it may have a row whose `column` is one of `values`;
    /// `None` when the file has no index of that column.
    pub fn row_groups(&self, column: &str, values: &[u64]) -> Option<Vec<bool>> {
        let slots = self.columns.get(column)?;
        Some(
            slots
                .iter()
                .map(|slot| match slot {
                    Slot::Empty => false,
                    Slot::Unknown => true,
                    Slot::Filter { descriptor, fingerprints } => {
                        let filter = BinaryFuse8Ref::from_dma(
                            &self.bytes[descriptor.clone()],
                            &self.bytes[fingerprints.clone()],
                        );
                        values.iter().any(|v| filter.contains(v))
                    }
                })
                .collect(),
        )
    }

    /// The object's size.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
}

/// Where one table's indexes are kept: `_logyard_ids/` under its root.
#[derive(Debug, Clone)]
pub struct IdsDir {
    store: Arc<dyn ObjectStore>,
    dir: Path,
}

impl IdsDir {
    /// The indexes of the table at `root` in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, root: &Path) -> Self {
        Self { store, dir: root.clone().join(IDS_DIR) }
    }

    /// The index object of a data file (its path relative to the table).
    fn path(&self, file: &str) -> Path {
        Path::from(format!("{}/{file}.ids", self.dir))
    }

    /// Every index: the data file it belongs to and the object. One listing.
    pub async fn list(&self) -> Result<Vec<(String, ObjectMeta)>, StorageError> {
        let root = format!("{}/", self.dir);
        let listed: Vec<ObjectMeta> = self
            .store
            .list(Some(&self.dir))
            .try_collect()
            .await
            .map_err(StorageError::from_store("listing identifier indexes"))?;
        Ok(listed
            .into_iter()
            .filter_map(|meta| {
                let file = meta.location.as_ref().strip_prefix(&root)?.strip_suffix(".ids")?.to_owned();
                Some((file, meta))
            })
            .collect())
    }

    /// Writes `bytes` as the index of `file`.
    pub async fn put(&self, file: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.store
            .put(&self.path(file), PutPayload::from(bytes))
            .await
            .map_err(StorageError::from_store("writing an identifier index"))?;
        Ok(())
    }
}

/// Reads the text columns of a data file that have bloom filters and encodes their index (of no
/// column when it has none, so that the file is not read again for it).
pub async fn build(store: Arc<dyn ObjectStore>, path: Path, size: u64) -> Result<Vec<u8>, StorageError> {
    let failed = |e: parquet::errors::ParquetError| StorageError::Build(format!("indexing {path}: {e}"));
    let footer = read_footer(store.as_ref(), &path, size)
        .await
        .map_err(|e| StorageError::Build(format!("reading the Parquet footer of {path}: {e}")))?;
    let metadata = ArrowReaderMetadata::try_new(Arc::new(footer), Default::default()).map_err(failed)?;
    let reader = Ranges { store, path: path.clone() };
    let parquet = metadata.metadata();
    let schema = parquet.file_metadata().schema_descr();
    // Top-level text columns with a bloom filter in any row group.
    let mut leaves = BTreeSet::new();
    for row_group in parquet.row_groups() {
        for (i, column) in row_group.columns().iter().enumerate() {
            if column.bloom_filter_offset().is_some() && column.column_path().parts().len() == 1 {
                leaves.insert(i);
            }
        }
    }
    let names: Vec<String> = leaves.iter().map(|&i| schema.column(i).name().to_owned()).collect();
    let names: Vec<String> = names
        .into_iter()
        .filter(|n| {
            metadata.schema().field_with_name(n).is_ok_and(|f| {
                matches!(
                    f.data_type(),
                    arrow::datatypes::DataType::Utf8
                        | arrow::datatypes::DataType::LargeUtf8
                        | arrow::datatypes::DataType::Utf8View
                )
            })
        })
        .collect();
    if names.is_empty() {
        return Ok(FileIds::encode(&[]));
    }
    let mask = ProjectionMask::columns(schema, names.iter().map(String::as_str));
    let mut columns: Vec<(String, Vec<Vec<u64>>)> = names.iter().map(|n| (n.clone(), Vec::new())).collect();
    for row_group in 0..parquet.num_row_groups() {
        let mut stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader.clone(), metadata.clone())
            .with_projection(mask.clone())
            .with_row_groups(vec![row_group])
            .build()
            .map_err(failed)?;
        let mut hashes: Vec<Vec<u64>> = vec![Vec::new(); names.len()];
        while let Some(batch) = stream.try_next().await.map_err(failed)? {
            for (i, name) in names.iter().enumerate() {
                let Some(column) = batch.column_by_name(name) else { continue };
                hash_strings(column.as_ref(), &mut hashes[i]);
            }
        }
        for (i, h) in hashes.into_iter().enumerate() {
            columns[i].1.push(h);
        }
    }
    tokio::task::spawn_blocking(move || FileIds::encode(&columns)).await.map_err(|e| StorageError::Build(e.to_string()))
}

/// Ranges of one object, as the Parquet reader asks for them (its footer is read beforehand).
#[derive(Clone)]
struct Ranges {
    store: Arc<dyn ObjectStore>,
    path: Path,
}

impl AsyncFileReader for Ranges {
    fn get_bytes(&mut self, range: Range<u64>) -> futures::future::BoxFuture<'_, parquet::errors::Result<Bytes>> {
        Box::pin(async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        })
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        Box::pin(async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        _: Option<&'a parquet::arrow::arrow_reader::ArrowReaderOptions>,
    ) -> futures::future::BoxFuture<'a, parquet::errors::Result<Arc<parquet::file::metadata::ParquetMetaData>>> {
        Box::pin(std::future::ready(Err(parquet::errors::ParquetError::General(
            "the footer is read beforehand".into(),
        ))))
    }
}

fn hash_strings(column: &dyn Array, out: &mut Vec<u64>) {
    if let Some(a) = column.as_string_opt::<i32>() {
        out.extend(a.iter().flatten().map(|v| hash(v.as_bytes())));
    } else if let Some(a) = column.as_string_opt::<i64>() {
        out.extend(a.iter().flatten().map(|v| hash(v.as_bytes())));
    } else if let Some(a) = column.as_string_view_opt() {
        out.extend(a.iter().flatten().map(|v| hash(v.as_bytes())));
    }
}

/// Indexes loaded from storage, shared by every query, up to a number of bytes.
#[derive(Debug, Default)]
pub struct IdCache {
    inner: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    listed: HashMap<StreamName, Arc<Listed>>,
    files: HashMap<Path, Arc<FileIds>>,
    bytes: usize,
}

/// What the indexes left of a table's files for a query.
#[derive(Debug, Clone)]
pub struct Narrowed {
    /// The files that may hold a wanted value (paths relative to the table).
    pub files: Vec<String>,
    /// Whether that is every file of the table.
    pub every_file: bool,
    /// For the files of which only some row groups may, whether each row group may.
    pub row_groups: HashMap<String, Vec<bool>>,
}

/// A table version's data files (paths relative to the table), those with an index, and the
/// files' statistics (the add actions, row for row).
#[derive(Debug)]
struct Listed {
    version: Option<u64>,
    files: Vec<String>,
    indexed: HashSet<String>,
    stats: arrow::record_batch::RecordBatch,
}

impl Listed {
    /// For each file, whether its min and max (when the log has them as text) admit a value of
    /// every needle.
    fn in_range(&self, needles: &[(String, Vec<String>)]) -> Vec<bool> {
        let mut admitted = vec![true; self.files.len()];
        let text = |name: String| {
            let column = self.stats.column_by_name(&name)?;
            arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8).ok()
        };
        for (column, values) in needles {
            let (Some(min), Some(max)) = (text(format!("min.{column}")), text(format!("max.{column}"))) else {
                continue;
            };
            let (min, max) = (min.as_string::<i32>(), max.as_string::<i32>());
            for (i, admit) in admitted.iter_mut().enumerate().take(min.len()) {
                if min.is_valid(i) && max.is_valid(i) {
                    let (low, high) = (min.value(i), max.value(i));
                    *admit &= values.iter().any(|v| low <= v.as_str() && v.as_str() <= high);
                }
            }
        }
        admitted
    }
}

/// Bytes of indexes kept in memory (at about 1.1 bytes per distinct id and row group, a month of
/// a busy shop's trace ids).
const CACHE_BYTES: usize = 256 << 20;

/// Indexes loaded at once.
const LOAD_CONCURRENCY: usize = 16;

impl IdCache {
    /// The data files of `table` (paths relative to its root) and their row groups that may hold
    /// a row whose column is one of the values, for every `(column, value hashes)`; `None` when
    /// nothing is ruled out.
    pub async fn admitted(
        &self,
        dir: &IdsDir,
        stream: &StreamName,
        table: &DeltaTable,
        needles: &[(String, Vec<String>)],
    ) -> Result<Option<Narrowed>, StorageError> {
        let listed = self.listed(dir, stream, table).await?;
        // A file whose statistics in the Delta log leave out every value is not read by the
        // scan anyway: its index is not loaded.
        let in_range = listed.in_range(needles);
        let needles: Vec<(&str, Vec<u64>)> = (needles.iter())
            .map(|(column, values)| (column.as_str(), values.iter().map(|v| hash(v.as_bytes())).collect()))
            .collect();
        let wanted: Vec<(usize, Path)> = (listed.files.iter().enumerate())
            .filter(|(i, file)| in_range[*i] && listed.indexed.contains(*file))
            .map(|(i, file)| (i, dir.path(file)))
            .collect();
        let loads = wanted
            .into_iter()
            .map(|(i, path)| async move { self.load(dir.store.as_ref(), path).await.map(|ids| (i, ids)) });
        let loaded: Vec<(usize, Option<Arc<FileIds>>)> =
            futures::stream::iter(loads).buffer_unordered(LOAD_CONCURRENCY).try_collect().await?;
        let mut masks: Vec<Option<Vec<bool>>> = vec![None; listed.files.len()];
        for (i, ids) in loaded {
            let Some(ids) = ids else { continue };
            for (column, values) in &needles {
                let Some(mask) = ids.row_groups(column, values) else { continue };
                masks[i] = Some(match masks[i].take() {
                    Some(before) => before.iter().zip(&mask).map(|(a, b)| *a && *b).collect(),
                    None => mask,
                });
            }
        }
        let rules_out = |mask: &Option<Vec<bool>>| mask.as_ref().is_some_and(|m| m.iter().any(|keep| !keep));
        if !masks.iter().any(rules_out) {
            return Ok(None);
        }
        let mut narrowed = Narrowed { files: Vec::new(), row_groups: HashMap::new(), every_file: true };
        for (file, mask) in listed.files.iter().zip(masks) {
            match mask {
                Some(mask) if !mask.iter().any(|keep| *keep) => narrowed.every_file = false,
                Some(mask) => {
                    if mask.iter().any(|keep| !keep) {
                        narrowed.row_groups.insert(file.clone(), mask);
                    }
                    narrowed.files.push(file.clone());
                }
                None => narrowed.files.push(file.clone()),
            }
        }
        Ok(Some(narrowed))
    }

    /// The data files of `table`'s version and which of them have an index: listed once per
    /// version of the table.
    async fn listed(&self, dir: &IdsDir, stream: &StreamName, table: &DeltaTable) -> Result<Arc<Listed>, StorageError> {
        let version = table.version();
        if let Some(listed) = self.inner.lock().expect("id cache").listed.get(stream)
            && listed.version == version
        {
            return Ok(listed.clone());
        }
        let (files, stats) = files_and_stats(table)?;
        let files = files.into_iter().map(|f| f.path).collect();
        let indexed = dir.list().await?.into_iter().map(|(file, _)| file).collect();
        let listed = Arc::new(Listed { version, files, indexed, stats });
        self.inner.lock().expect("id cache").listed.insert(stream.clone(), listed.clone());
        Ok(listed)
    }

    /// Lists the stream's indexes again at the next query.
    pub fn forget_listing(&self, stream: &StreamName) {
        self.inner.lock().expect("id cache").listed.remove(stream);
    }

    async fn load(&self, store: &dyn ObjectStore, path: Path) -> Result<Option<Arc<FileIds>>, StorageError> {
        if let Some(ids) = self.inner.lock().expect("id cache").files.get(&path) {
            return Ok(Some(ids.clone()));
        }
        let bytes = match store.get(&path).await {
            Ok(got) => got.bytes().await.map_err(StorageError::from_store("reading an identifier index"))?,
            // Removed since it was listed (its file left the table): the file is read.
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(StorageError::from_store("reading an identifier index")(e)),
        };
        let ids = match FileIds::decode(bytes) {
            Ok(ids) => Arc::new(ids),
            Err(e) => {
                tracing::warn!(%path, error = %e, "ignoring an unreadable identifier index");
                return Ok(None);
            }
        };
        let mut state = self.inner.lock().expect("id cache");
        if state.bytes + ids.size() > CACHE_BYTES {
            state.files.clear();
            state.bytes = 0;
        }
        state.bytes += ids.size();
        state.files.insert(path, ids.clone());
        Ok(Some(ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl FileIds {
        /// Whether the file may have a row whose `column` is one of `values`.
        fn may_contain(&self, column: &str, values: &[u64]) -> Option<bool> {
            Some(self.row_groups(column, values)?.into_iter().any(|may| may))
        }

        fn columns(&self) -> BTreeSet<&str> {
            self.columns.keys().map(String::as_str).collect()
        }
    }

    #[test]
    fn an_index_admits_its_values_and_rules_out_others() {
        let ids = |r: Range<u32>| r.map(|i| hash(format!("o-{i:07}").as_bytes())).collect::<Vec<_>>();
        let encoded = FileIds::encode(&[
            ("order_id".into(), vec![ids(0..50_000), ids(50_000..100_000), vec![]]),
            ("one".into(), vec![vec![hash(b"only")]]),
        ]);
        let index = FileIds::decode(Bytes::from(encoded)).expect("decodes");
        assert_eq!(index.columns(), BTreeSet::from(["one", "order_id"]));
        assert_eq!(index.may_contain("order_id", &[hash(b"o-0000042")]), Some(true));
        assert_eq!(index.may_contain("order_id", &[hash(b"o-0099999")]), Some(true));
        assert_eq!(index.may_contain("one", &[hash(b"only")]), Some(true));
        assert_eq!(index.may_contain("one", &[hash(b"other")]), Some(false));
        assert_eq!(index.may_contain("trace_id", &[hash(b"o-0000042")]), None);
        // About 0.4 % false positives per row group, two row groups: well under 2 % of absent ids.
        let absent = ids(100_000..110_000);
        let admitted = absent.iter().filter(|h| index.may_contain("order_id", &[**h]) == Some(true)).count();
        assert!(admitted < 200, "{admitted} of 10,000 absent ids admitted");
        // About 9 bits per distinct value.
        assert!(index.size() < 100_000 * 10 / 8 + 1_000, "{} bytes", index.size());
    }

    #[test]
    fn only_files_whose_range_admits_a_value_have_their_index_loaded() {
        use arrow::array::{ArrayRef, StringArray};
        let text = |v: Vec<Option<&str>>| Arc::new(StringArray::from(v)) as ArrayRef;
        let stats = arrow::record_batch::RecordBatch::try_from_iter([
            ("min.order_id", text(vec![Some("o-1"), Some("o-5"), None])),
            ("max.order_id", text(vec![Some("o-4"), Some("o-9"), None])),
        ])
        .unwrap();
        let files = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let listed = Listed { version: Some(1), files, indexed: HashSet::new(), stats };
        let needles =
            |column: &str, values: &[&str]| vec![(column.to_owned(), values.iter().map(|v| v.to_string()).collect())];
        assert_eq!(listed.in_range(&needles("order_id", &["o-2"])), [true, false, true]);
        assert_eq!(listed.in_range(&needles("order_id", &["o-2", "o-9"])), [true, true, true]);
        assert_eq!(listed.in_range(&needles("order_id", &["o-0"])), [false, false, true]);
        // No statistics of the column: every file may.
        assert_eq!(listed.in_range(&needles("trace_id", &["t"])), [true, true, true]);
    }

    #[test]
    fn a_damaged_index_is_refused() {
        let encoded = FileIds::encode(&[("order_id".into(), vec![vec![1, 2, 3]])]);
        for cut in [0, 3, 8, encoded.len() - 1] {
            assert!(FileIds::decode(Bytes::copy_from_slice(&encoded[..cut])).is_err(), "cut at {cut}");
        }
        assert!(FileIds::decode(Bytes::from_static(b"LYI0\0\0\0\0")).is_err());
    }
}
