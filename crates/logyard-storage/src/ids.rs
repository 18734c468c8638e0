//! Skipping indexes kept beside a table's files.
//!
//! A query for one order or trace id must not open every file of a month to read its bloom
//! filters: on S3 each opened file costs a footer and one request per row group's filter. So for
//! each file compaction writes, an object `_logyard_ids/v2/<file>.ids` under the table holds, per
//! row group, binary fuse filters (about 9 bits per entry and 0.4 % false positives):
//!
//! - of each column the file has Parquet bloom filters on, its values (xxHash64, as Parquet's
//!   filters hash), asked by `column = 'id'` and `IN`;
//! - of each of the stream's text fields, the 4-byte n-grams of its values, lower-cased, asked by
//!   `LIKE`/`ILIKE '%words%'` (a row group may hold the words only if it has each of their
//!   n-grams).
//!
//! A query asks the cached indexes which files and row groups may hold what it wants and reads
//! only those. A file without an index is always read: the index only ever narrows, and a lost
//! or late one costs time, never rows.
//!
//! Delta's vacuum leaves directories starting with `_` alone; retention removes the indexes of
//! files that left the table (`Tables::drop_before`), and those of an older format.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
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

/// The directory of a table's indexes, relative to the table's root.
pub const IDS_DIR: &str = "_logyard_ids";

/// The directory of the indexes of the current format, inside [`IDS_DIR`]; indexes of an older
/// format are rebuilt by compaction and deleted by retention.
const VERSION_DIR: &str = "v2";

/// The first bytes of an index object.
const MAGIC: &[u8; 4] = b"LYI2";

/// The hash an index keeps of a value: xxHash64 with seed 0, as Parquet's bloom filters.
pub fn hash(value: &[u8]) -> u64 {
    twox_hash::XxHash64::oneshot(0, value)
}

/// What a query wants of a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// The value is this text.
    Equals(String),
    /// The value holds each of these texts, ignoring case (the literal parts of a `LIKE` or
    /// `ILIKE` pattern).
    Contains(Vec<String>),
}

/// A column and what a query wants of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub column: String,
    pub wanted: Wanted,
}

/// A condition of a query that a row meets only by meeting one of its terms.
pub type Needle = Vec<Term>;

/// What an index holds of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// Hashes of its values.
    Values = 0,
    /// Its values' n-grams.
    Grams = 1,
}

/// The bytes of a text index's n-grams.
const GRAM: usize = 4;

/// `text` as the text index sees it: ASCII letters lower-cased, and the two letters that
/// Unicode's simple case folding maps onto ASCII ones (the Kelvin sign, the long s) replaced by
/// those, so that where `ILIKE` matches ASCII words in a value, their bytes are here as they are
/// in the words folded the same way.
fn fold(text: &str, out: &mut Vec<u8>) {
    out.clear();
    if text.is_ascii() {
        out.extend(text.bytes().map(|b| b.to_ascii_lowercase()));
        return;
    }
    for c in text.chars() {
        match c {
            '\u{212A}' => out.push(b'k'),
            '\u{017F}' => out.push(b's'),
            c => out.extend_from_slice(c.to_ascii_lowercase().encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
}

/// The n-grams of folded bytes that are all ASCII, as index keys.
fn grams(folded: &[u8]) -> impl Iterator<Item = u32> + '_ {
    folded
        .windows(GRAM)
        .map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")))
        .filter(|gram| gram & 0x8080_8080 == 0)
}

/// The keys a row group's text filter must all have for a value to hold every text; none when
/// the texts are too short to tell.
fn wanted_grams(texts: &[String]) -> Vec<u64> {
    let mut folded = Vec::new();
    let mut keys = BTreeSet::new();
    for text in texts {
        fold(text, &mut folded);
        keys.extend(grams(&folded).map(u64::from));
    }
    keys.into_iter().collect()
}

/// One question to an index: whether a row group may have a row whose column holds one of
/// `keys` (values), or all of them (n-grams).
#[derive(Debug)]
struct Ask<'a> {
    kind: Kind,
    column: &'a str,
    keys: Vec<u64>,
}

impl<'a> Ask<'a> {
    /// The question a term asks; `None` when no index can answer it.
    fn of(term: &'a Term) -> Option<Self> {
        let column = term.column.as_str();
        match &term.wanted {
            Wanted::Equals(value) => Some(Self { kind: Kind::Values, column, keys: vec![hash(value.as_bytes())] }),
            Wanted::Contains(texts) => {
                let keys = wanted_grams(texts);
                (!keys.is_empty()).then_some(Self { kind: Kind::Grams, column, keys })
            }
        }
    }
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

/// The keys of one column of a file, per row group.
#[derive(Debug, Clone)]
struct Keys {
    kind: Kind,
    column: String,
    row_groups: Vec<Vec<u64>>,
}

/// The index of one data file.
#[derive(Debug, Clone)]
pub struct FileIds {
    bytes: Bytes,
    columns: HashMap<(Kind, String), Vec<Slot>>,
}

impl FileIds {
    /// Encodes the keys of each column, per row group.
    fn encode(columns: &[Keys]) -> Vec<u8> {
        let mut out = Vec::from(&MAGIC[..]);
        out.extend_from_slice(&(columns.len() as u32).to_le_bytes());
        for Keys { kind, column, row_groups } in columns {
            out.push(*kind as u8);
            out.extend_from_slice(&(column.len() as u16).to_le_bytes());
            out.extend_from_slice(column.as_bytes());
            out.extend_from_slice(&(row_groups.len() as u32).to_le_bytes());
            for keys in row_groups {
                let mut keys = keys.clone();
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
            return Err("not an index of this version".into());
        }
        let u32_at = |r: Range<usize>| u32::from_le_bytes(bytes[r].try_into().expect("4 bytes")) as usize;
        let count = u32_at(take(4)?);
        let mut columns = HashMap::with_capacity(count.min(64));
        for _ in 0..count {
            let kind = match bytes[take(1)?.start] {
                0 => Kind::Values,
                1 => Kind::Grams,
                other => return Err(format!("unknown kind of column {other}")),
            };
            let len = u16::from_le_bytes(bytes[take(2)?].try_into().expect("2 bytes")) as usize;
            let name = std::str::from_utf8(&bytes[take(len)?]).map_err(|_| "a column name is not UTF-8")?.to_owned();
            let row_groups = u32_at(take(4)?);
            let mut slots = Vec::with_capacity(row_groups.min(1 << 16));
            for _ in 0..row_groups {
                slots.push(match bytes[take(1)?.start] {
                    0 => Slot::Empty,
                    1 => Slot::Unknown,
                    2 => {
                        let len = u32_at(take(4)?);
                        Slot::Filter { descriptor: take(BinaryFuse8::DESCRIPTOR_LEN)?, fingerprints: take(len)? }
                    }
                    other => return Err(format!("unknown row group entry {other}")),
                });
            }
            columns.insert((kind, name), slots);
        }
        Ok(Self { bytes, columns })
    }

    /// For each row group, whether it may have a row that `ask` wants; `None` when the file has
    /// no index of the column.
    fn row_groups(&self, ask: &Ask) -> Option<Vec<bool>> {
        let slots = self.columns.get(&(ask.kind, ask.column.to_owned()))?;
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
                        match ask.kind {
                            Kind::Values => ask.keys.iter().any(|k| filter.contains(k)),
                            Kind::Grams => ask.keys.iter().all(|k| filter.contains(k)),
                        }
                    }
                })
                .collect(),
        )
    }

    /// For each row group, whether it may have a row that meets one of `asks`; `None` when one
    /// of them cannot be answered (the row groups may then hold anything).
    fn any_of(&self, asks: &[Ask]) -> Option<Vec<bool>> {
        let mut admitted: Option<Vec<bool>> = None;
        for ask in asks {
            let mask = self.row_groups(ask)?;
            admitted = Some(match admitted {
                Some(before) => before.iter().zip(&mask).map(|(a, b)| *a || *b).collect(),
                None => mask,
            });
        }
        admitted
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
        Path::from(format!("{}/{VERSION_DIR}/{file}.ids", self.dir))
    }

    /// Every index of the current format: the data file it belongs to and the object. One
    /// listing, of the current format's directory only.
    pub async fn list(&self) -> Result<Vec<(String, ObjectMeta)>, StorageError> {
        let listed = self.listing(&self.dir.clone().join(VERSION_DIR)).await?;
        Ok(self.by_format(listed).0)
    }

    /// Every index object: those of the current format with their data file, and those of an
    /// older format. One listing.
    pub async fn list_every(&self) -> Result<(Vec<(String, ObjectMeta)>, Vec<ObjectMeta>), StorageError> {
        Ok(self.by_format(self.listing(&self.dir).await?))
    }

    /// Objects of the current format with their data file, and the others.
    fn by_format(&self, listed: Vec<ObjectMeta>) -> (Vec<(String, ObjectMeta)>, Vec<ObjectMeta>) {
        let root = format!("{}/{VERSION_DIR}/", self.dir);
        let mut current = Vec::new();
        let mut outdated = Vec::new();
        for meta in listed {
            match meta.location.as_ref().strip_prefix(&root).and_then(|f| f.strip_suffix(".ids")) {
                Some(file) => current.push((file.to_owned(), meta)),
                None => outdated.push(meta),
            }
        }
        (current, outdated)
    }

    async fn listing(&self, prefix: &Path) -> Result<Vec<ObjectMeta>, StorageError> {
        self.store.list(Some(prefix)).try_collect().await.map_err(StorageError::from_store("listing indexes"))
    }

    /// Writes `bytes` as the index of `file`.
    pub async fn put(&self, file: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.store
            .put(&self.path(file), PutPayload::from(bytes))
            .await
            .map_err(StorageError::from_store("writing an index"))?;
        Ok(())
    }
}

/// Reads a data file and encodes its index: the values of its text columns that have bloom
/// filters, and the n-grams of those of `text_fields` it has (of no column when it has none, so
/// that the file is not read again for it).
pub async fn build(
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    text_fields: &[String],
) -> Result<Vec<u8>, StorageError> {
    let failed = |e: parquet::errors::ParquetError| StorageError::Build(format!("indexing {path}: {e}"));
    let footer = read_footer(store.as_ref(), &path, size)
        .await
        .map_err(|e| StorageError::Build(format!("reading the Parquet footer of {path}: {e}")))?;
    let metadata = ArrowReaderMetadata::try_new(Arc::new(footer), Default::default()).map_err(failed)?;
    let reader = Ranges { store, path: path.clone() };
    let parquet = metadata.metadata();
    let schema = parquet.file_metadata().schema_descr();
    let is_text = |name: &str| {
        (metadata.schema().field_with_name(name))
            .is_ok_and(|f| matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View))
    };
    // Top-level text columns with a bloom filter in any row group.
    let mut leaves = BTreeSet::new();
    for row_group in parquet.row_groups() {
        for (i, column) in row_group.columns().iter().enumerate() {
            if column.bloom_filter_offset().is_some() && column.column_path().parts().len() == 1 {
                leaves.insert(i);
            }
        }
    }
    let mut columns: Vec<Keys> = (leaves.iter().map(|&i| schema.column(i).name().to_owned()))
        .filter(|name| is_text(name))
        .map(|column| Keys { kind: Kind::Values, column, row_groups: Vec::new() })
        .chain((text_fields.iter().filter(|name| is_text(name))).map(|column| Keys {
            kind: Kind::Grams,
            column: column.clone(),
            row_groups: Vec::new(),
        }))
        .collect();
    if columns.is_empty() {
        return Ok(FileIds::encode(&[]));
    }
    let names: BTreeSet<&str> = columns.iter().map(|c| c.column.as_str()).collect();
    let mask = ProjectionMask::columns(schema, names.iter().copied());
    for row_group in 0..parquet.num_row_groups() {
        let mut stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader.clone(), metadata.clone())
            .with_projection(mask.clone())
            .with_row_groups(vec![row_group])
            .build()
            .map_err(failed)?;
        let mut values: Vec<Vec<u64>> = vec![Vec::new(); columns.len()];
        let mut grams: Vec<foldhash::HashSet<u32>> = vec![Default::default(); columns.len()];
        while let Some(batch) = stream.try_next().await.map_err(failed)? {
            for (i, keys) in columns.iter().enumerate() {
                let Some(column) = batch.column_by_name(&keys.column) else { continue };
                match keys.kind {
                    Kind::Values => for_each_text(column.as_ref(), |v| values[i].push(hash(v.as_bytes()))),
                    Kind::Grams => add_grams(column.as_ref(), &mut grams[i]),
                }
            }
        }
        for (i, keys) in columns.iter_mut().enumerate() {
            keys.row_groups.push(match keys.kind {
                Kind::Values => std::mem::take(&mut values[i]),
                Kind::Grams => grams[i].drain().map(u64::from).collect(),
            });
        }
    }
    tokio::task::spawn_blocking(move || FileIds::encode(&columns)).await.map_err(|e| StorageError::Build(e.to_string()))
}

/// Adds the n-grams of a text column's distinct values to `out`.
fn add_grams(column: &dyn Array, out: &mut foldhash::HashSet<u32>) {
    let mut seen = foldhash::HashSet::<&str>::default();
    let mut folded = Vec::new();
    for_each_text(column, |value| {
        if seen.insert(value) {
            fold(value, &mut folded);
            out.extend(grams(&folded));
        }
    });
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

/// Calls `f` with each value of a text column.
fn for_each_text<'a>(column: &'a dyn Array, f: impl FnMut(&'a str)) {
    if let Some(a) = column.as_string_opt::<i32>() {
        a.iter().flatten().for_each(f);
    } else if let Some(a) = column.as_string_opt::<i64>() {
        a.iter().flatten().for_each(f);
    } else if let Some(a) = column.as_string_view_opt() {
        a.iter().flatten().for_each(f);
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
    /// Each index with when it was last used (a count of uses).
    files: HashMap<Path, (Arc<FileIds>, u64)>,
    bytes: usize,
    uses: u64,
}

impl CacheState {
    fn get(&mut self, path: &Path) -> Option<Arc<FileIds>> {
        self.uses += 1;
        let (ids, used) = self.files.get_mut(path)?;
        *used = self.uses;
        Some(ids.clone())
    }

    /// Keeps `ids`, making room by dropping the indexes used longest ago until it fits in
    /// `capacity` bytes (one larger than that is kept alone).
    fn insert(&mut self, path: Path, ids: Arc<FileIds>, capacity: usize) {
        self.uses += 1;
        if self.bytes + ids.size() > capacity {
            let mut by_use: Vec<(u64, Path)> = self.files.iter().map(|(p, (_, used))| (*used, p.clone())).collect();
            by_use.sort_unstable();
            for (_, old) in by_use {
                if self.bytes + ids.size() <= capacity {
                    break;
                }
                if let Some((dropped, _)) = self.files.remove(&old) {
                    self.bytes -= dropped.size();
                }
            }
        }
        self.bytes += ids.size();
        if let Some((replaced, _)) = self.files.insert(path, (ids, self.uses)) {
            self.bytes -= replaced.size();
        }
    }
}

/// What the indexes left of a table's files for a query.
#[derive(Debug, Clone)]
pub struct Narrowed {
    /// The files that may hold a wanted row (paths relative to the table).
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
    /// For each file, whether its min and max (when the log has them as text) admit a row that
    /// meets every needle.
    fn in_range(&self, needles: &[Needle]) -> Vec<bool> {
        let mut admitted = vec![true; self.files.len()];
        for needle in needles {
            let mut any = vec![false; self.files.len()];
            for term in needle {
                let mask = self.term_in_range(term);
                any.iter_mut().zip(mask).for_each(|(a, m)| *a |= m);
            }
            admitted.iter_mut().zip(any).for_each(|(a, m)| *a &= m);
        }
        admitted
    }

    fn term_in_range(&self, term: &Term) -> Vec<bool> {
        let every = vec![true; self.files.len()];
        let Wanted::Equals(value) = &term.wanted else { return every };
        let text = |name: String| {
            let column = self.stats.column_by_name(&name)?;
            arrow::compute::cast(column, &DataType::Utf8).ok()
        };
        let column = &term.column;
        let (Some(min), Some(max)) = (text(format!("min.{column}")), text(format!("max.{column}"))) else {
            return every;
        };
        let (min, max) = (min.as_string::<i32>(), max.as_string::<i32>());
        let value = value.as_str();
        (0..self.files.len())
            .map(|i| {
                i >= min.len()
                    || !min.is_valid(i)
                    || !max.is_valid(i)
                    || (min.value(i) <= value && value <= max.value(i))
            })
            .collect()
    }
}

/// Bytes of indexes kept in memory (at about 1.1 bytes per distinct id and row group, a month of
/// a busy shop's trace ids).
const CACHE_BYTES: usize = 256 << 20;

/// Indexes loaded at once.
const LOAD_CONCURRENCY: usize = 16;

impl IdCache {
    /// The data files of `table` (paths relative to its root) and their row groups that may hold
    /// a row meeting every needle; `None` when nothing is ruled out.
    pub async fn admitted(
        &self,
        dir: &IdsDir,
        stream: &StreamName,
        table: &DeltaTable,
        needles: &[Needle],
    ) -> Result<Option<Narrowed>, StorageError> {
        // The questions of each needle an index can answer every term of.
        let asks: Vec<Vec<Ask>> =
            needles.iter().filter_map(|needle| needle.iter().map(Ask::of).collect::<Option<Vec<_>>>()).collect();
        if asks.is_empty() {
            return Ok(None);
        }
        let listed = self.listed(dir, stream, table).await?;
        // A file whose statistics in the Delta log leave out every value is not read by the
        // scan anyway: its index is not loaded.
        let in_range = listed.in_range(needles);
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
            for needle in &asks {
                let Some(mask) = ids.any_of(needle) else { continue };
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
        if let Some(ids) = self.inner.lock().expect("id cache").get(&path) {
            return Ok(Some(ids));
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
        self.inner.lock().expect("id cache").insert(path, ids.clone(), CACHE_BYTES);
        Ok(Some(ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn equals(column: &str, value: &str) -> Term {
        Term { column: column.into(), wanted: Wanted::Equals(value.into()) }
    }

    fn contains(column: &str, texts: &[&str]) -> Term {
        Term { column: column.into(), wanted: Wanted::Contains(texts.iter().map(|t| t.to_string()).collect()) }
    }

    fn values(column: &str, row_groups: Vec<Vec<u64>>) -> Keys {
        Keys { kind: Kind::Values, column: column.into(), row_groups }
    }

    impl FileIds {
        /// Whether the file may have a row that meets `term`.
        fn may_contain(&self, term: &Term) -> Option<bool> {
            Some(self.row_groups(&Ask::of(term)?)?.into_iter().any(|may| may))
        }
    }

    #[test]
    fn an_index_admits_its_values_and_rules_out_others() {
        let ids = |r: Range<u32>| r.map(|i| hash(format!("o-{i:07}").as_bytes())).collect::<Vec<_>>();
        let encoded = FileIds::encode(&[
            values("order_id", vec![ids(0..50_000), ids(50_000..100_000), vec![]]),
            values("one", vec![vec![hash(b"only")]]),
        ]);
        let index = FileIds::decode(Bytes::from(encoded)).expect("decodes");
        assert_eq!(index.may_contain(&equals("order_id", "o-0000042")), Some(true));
        assert_eq!(index.may_contain(&equals("order_id", "o-0099999")), Some(true));
        assert_eq!(index.may_contain(&equals("one", "only")), Some(true));
        assert_eq!(index.may_contain(&equals("one", "other")), Some(false));
        assert_eq!(index.may_contain(&equals("trace_id", "o-0000042")), None);
        // Values are not n-grams.
        assert_eq!(index.may_contain(&contains("one", &["only"])), None);
        // About 0.4 % false positives per row group, two row groups: well under 2 % of absent ids.
        let absent = (100_000..110_000).map(|i| format!("o-{i:07}"));
        let admitted = absent.filter(|id| index.may_contain(&equals("order_id", id)) == Some(true)).count();
        assert!(admitted < 200, "{admitted} of 10,000 absent ids admitted");
        // About 9 bits per distinct value.
        assert!(index.size() < 100_000 * 10 / 8 + 1_000, "{} bytes", index.size());
    }

    /// The text index of a column admits a row group for words when it may hold them in any
    /// case, as `ILIKE` finds them, and rules it out when one of their n-grams is missing.
    #[test]
    fn a_text_index_admits_the_row_groups_that_may_hold_the_words() {
        let row_group = |messages: &[&str]| {
            let mut keys = foldhash::HashSet::default();
            add_grams(&arrow::array::StringArray::from(messages.to_vec()), &mut keys);
            keys.into_iter().map(u64::from).collect::<Vec<_>>()
        };
        let encoded = FileIds::encode(&[Keys {
            kind: Kind::Grams,
            column: "message".into(),
            row_groups: vec![
                row_group(&["GET /products/4523 200", "payment accepted"]),
                row_group(&["Payment DECLINED for o-1", "200 \u{212A}elvin ſession"]),
                row_group(&[]),
            ],
        }])
        .expect_decoded();
        let admitted = |texts: &[&str]| index_rows(&encoded, &contains("message", texts));
        assert_eq!(admitted(&["/products/4523"]), [true, false, false]);
        assert_eq!(admitted(&["PRODUCTS/45"]), [true, false, false]);
        assert_eq!(admitted(&["payment declined"]), [false, true, false]);
        assert_eq!(admitted(&["payment", "declined"]), [false, true, false]);
        assert_eq!(admitted(&["payment"]), [true, true, false]);
        // The Kelvin sign and the long s are `k` and `s` to ILIKE.
        assert_eq!(admitted(&["kelvin session"]), [false, true, false]);
        assert_eq!(admitted(&["refund"]), [false, false, false]);
        // Words of fewer than 4 ASCII bytes cannot be asked.
        assert_eq!(Ask::of(&contains("message", &["200", "é€ab"])).map(|a| a.keys), None);
        assert_eq!(index_rows(&encoded, &contains("path", &["/products"])), Vec::<bool>::new());
    }

    /// The row groups an index admits for a term (none when it has no filter of it).
    fn index_rows(index: &FileIds, term: &Term) -> Vec<bool> {
        Ask::of(term).and_then(|ask| index.row_groups(&ask)).unwrap_or_default()
    }

    trait Decoded {
        fn expect_decoded(self) -> FileIds;
    }

    impl Decoded for Vec<u8> {
        fn expect_decoded(self) -> FileIds {
            FileIds::decode(Bytes::from(self)).expect("decodes")
        }
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
        let orders = |values: &[&str]| vec![values.iter().map(|v| equals("order_id", v)).collect::<Needle>()];
        assert_eq!(listed.in_range(&orders(&["o-2"])), [true, false, true]);
        assert_eq!(listed.in_range(&orders(&["o-2", "o-9"])), [true, true, true]);
        assert_eq!(listed.in_range(&orders(&["o-0"])), [false, false, true]);
        // No statistics of the column: every file may.
        assert_eq!(listed.in_range(&[vec![equals("trace_id", "t")]]), [true, true, true]);
        // Statistics say nothing of substrings.
        let either = vec![equals("order_id", "o-0"), contains("order_id", &["o-00"])];
        assert_eq!(listed.in_range(&[either]), [true, true, true]);
        // Every needle must be in range.
        assert_eq!(listed.in_range(&[orders(&["o-2"])[0].clone(), orders(&["o-6"])[0].clone()]), [false, false, true]);
    }

    /// A full cache drops the indexes used longest ago, not every index.
    #[test]
    fn a_full_cache_drops_the_indexes_used_longest_ago() {
        let index =
            |n: u32| Arc::new(FileIds::encode(&[values("id", vec![(0..n).map(u64::from).collect()])]).expect_decoded());
        let (a, b, c) = (index(1_000), index(1_000), index(1_000));
        let capacity = a.size() * 2;
        let mut state = CacheState::default();
        state.insert(Path::from("a"), a, capacity);
        state.insert(Path::from("b"), b, capacity);
        assert!(state.get(&Path::from("a")).is_some());
        // Room for two: `b` was used longest ago.
        state.insert(Path::from("c"), c.clone(), capacity);
        assert!(state.get(&Path::from("a")).is_some() && state.get(&Path::from("c")).is_some());
        assert!(state.get(&Path::from("b")).is_none());
        assert_eq!(state.bytes, c.size() * 2);
    }

    #[test]
    fn a_damaged_index_is_refused() {
        let encoded = FileIds::encode(&[values("order_id", vec![vec![1, 2, 3]])]);
        for cut in [0, 3, 8, encoded.len() - 1] {
            assert!(FileIds::decode(Bytes::copy_from_slice(&encoded[..cut])).is_err(), "cut at {cut}");
        }
        assert!(FileIds::decode(Bytes::from_static(b"LYI1\0\0\0\0")).is_err());
    }
}
