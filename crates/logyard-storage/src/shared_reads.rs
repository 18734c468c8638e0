//! Reads that are made once where a reader would make them several times.
//!
//! - A Delta checkpoint (a Parquet file in `_delta_log/`) is read whole at its first ranged read
//!   and its ranges are answered from memory: delta-rs reads a checkpoint's footer, then its
//!   footer again for each column it projects, then the columns, which was 11 GETs for a
//!   checkpoint of 39 KB. Checkpoints never change once written, so the most recent ones are
//!   kept (up to [`CHECKPOINT_CACHE_BYTES`]); one larger than that is read whole once (delta-rs
//!   reads nearly all of it anyway), then by the ranges asked.
//! - Identical ranged reads in flight at the same time share one request: the partitions of a
//!   scan that split one Parquet file each read its footer when they open it, at the same
//!   moment, before either has put it in the footer cache.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Bytes of checkpoints kept in memory; the oldest go first.
pub const CHECKPOINT_CACHE_BYTES: usize = 64 << 20;

/// What a shared read gives every reader waiting for it.
type Fetched = std::result::Result<Arc<Whole>, Arc<object_store::Error>>;
type Flight = Shared<BoxFuture<'static, Fetched>>;
/// An object and a range of it (`None`: all of it).
type Read = (Path, Option<Range<u64>>);

/// Bytes read from an object, with what a `GetResult` says of them.
#[derive(Debug)]
struct Whole {
    bytes: Bytes,
    /// Where `bytes` start in the object.
    offset: u64,
    meta: ObjectMeta,
    attributes: Attributes,
}

impl Whole {
    fn slice(&self, range: &Range<u64>) -> Result<Bytes> {
        let end = self.offset + self.bytes.len() as u64;
        if range.start < self.offset || range.end > end || range.start > range.end {
            return Err(object_store::Error::Generic {
                store: "logyard",
                source: format!(
                    "range {}..{} is outside the {} bytes of {}",
                    range.start, range.end, self.meta.size, self.meta.location
                )
                .into(),
            });
        }
        Ok(self.bytes.slice((range.start - self.offset) as usize..(range.end - self.offset) as usize))
    }

    fn result(&self, range: Range<u64>) -> Result<GetResult> {
        let bytes = self.slice(&range)?;
        Ok(GetResult {
            payload: GetResultPayload::Stream(futures::StreamExt::boxed(futures::stream::once(
                async move { Ok(bytes) },
            ))),
            meta: self.meta.clone(),
            range,
            attributes: self.attributes.clone(),
        })
    }
}

/// Makes repeated reads of unchanging objects once (see the module's documentation).
pub struct SharedReads {
    inner: Arc<dyn ObjectStore>,
    /// Reads in flight, by object and range (`None`: the whole object).
    flights: Mutex<HashMap<Read, Flight>>,
    /// Whole checkpoints, oldest first.
    checkpoints: Mutex<VecDeque<(Path, Arc<Whole>)>>,
    /// Checkpoints too large to keep, read by ranges after their first read.
    large: Mutex<HashSet<Path>>,
    /// Bytes of checkpoints kept.
    keep_bytes: usize,
}

impl SharedReads {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        let (flights, checkpoints, large) = Default::default();
        Self { inner, flights, checkpoints, large, keep_bytes: CHECKPOINT_CACHE_BYTES }
    }

    /// One read of `location` (`range`, or the whole object), shared with any identical read
    /// already in flight.
    async fn shared(&self, location: &Path, range: Option<Range<u64>>) -> Result<Arc<Whole>> {
        let key = (location.clone(), range.clone());
        let flight = {
            let mut flights = self.flights.lock().expect("flights lock");
            flights
                .entry(key.clone())
                .or_insert_with(|| {
                    let inner = self.inner.clone();
                    let location = location.clone();
                    async move {
                        let options = GetOptions { range: range.map(GetRange::Bounded), ..Default::default() };
                        let got = inner.get_opts(&location, options).await.map_err(Arc::new)?;
                        let (meta, attributes, offset) = (got.meta.clone(), got.attributes.clone(), got.range.start);
                        let bytes = got.bytes().await.map_err(Arc::new)?;
                        Ok(Arc::new(Whole { bytes, offset, meta, attributes }))
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        // Whichever reader ends first, or gives up (its query dropped), takes the read out of
        // the map: a later read is a new request, and nothing stays behind.
        let _landed = Landed { flights: &self.flights, key, flight: flight.clone() };
        let fetched = flight.await;
        fetched.map_err(|e| again(&e))
    }

    /// The whole checkpoint at `location`, from memory or read once; `None` for a checkpoint
    /// too large to keep that was read whole before (its ranges are then read as asked).
    async fn checkpoint(&self, location: &Path) -> Result<Option<Arc<Whole>>> {
        if self.large.lock().expect("large checkpoints lock").contains(location) {
            return Ok(None);
        }
        let kept = {
            let kept = self.checkpoints.lock().expect("checkpoints lock");
            kept.iter().find(|(path, _)| path == location).map(|(_, whole)| whole.clone())
        };
        if let Some(whole) = kept {
            return Ok(Some(whole));
        }
        let whole = self.shared(location, None).await?;
        if whole.bytes.len() > self.keep_bytes {
            self.large.lock().expect("large checkpoints lock").insert(location.clone());
            return Ok(Some(whole));
        }
        let mut kept = self.checkpoints.lock().expect("checkpoints lock");
        if !kept.iter().any(|(path, _)| path == location) {
            kept.push_back((location.clone(), whole.clone()));
            let mut total: usize = kept.iter().map(|(_, w)| w.bytes.len()).sum();
            while total > self.keep_bytes {
                let Some((_, oldest)) = kept.pop_front() else { break };
                total -= oldest.bytes.len();
            }
        }
        Ok(Some(whole))
    }
}

/// Takes a read out of the map of reads in flight when dropped, if it is still that read.
struct Landed<'a> {
    flights: &'a Mutex<HashMap<Read, Flight>>,
    key: Read,
    flight: Flight,
}

impl Drop for Landed<'_> {
    fn drop(&mut self) {
        let mut flights = self.flights.lock().expect("flights lock");
        if flights.get(&self.key).is_some_and(|f| f.ptr_eq(&self.flight)) {
            flights.remove(&self.key);
        }
    }
}

/// Whether `location` is a checkpoint of a Delta log (classic, multi-part or a v2 sidecar).
fn is_checkpoint(location: &Path) -> bool {
    let path = location.as_ref();
    path.ends_with(".parquet") && (path.contains("/_delta_log/") || path.starts_with("_delta_log/"))
}

/// A plain ranged read (no conditions, no version): what can be shared or answered from memory.
fn plain_range(options: &GetOptions) -> Option<Range<u64>> {
    let plain = options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none()
        && options.version.is_none()
        && !options.head;
    match &options.range {
        Some(GetRange::Bounded(range)) if plain => Some(range.clone()),
        _ => None,
    }
}

/// The error of a shared read, for one of its readers: a missing object stays `NotFound`.
fn again(e: &object_store::Error) -> object_store::Error {
    match e {
        object_store::Error::NotFound { path, .. } => {
            object_store::Error::NotFound { path: path.clone(), source: e.to_string().into() }
        }
        _ => object_store::Error::Generic { store: "logyard", source: e.to_string().into() },
    }
}

impl fmt::Debug for SharedReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedReads").field("inner", &self.inner).finish()
    }
}

impl fmt::Display for SharedReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedReads({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for SharedReads {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let Some(range) = plain_range(&options) else {
            return self.inner.get_opts(location, options).await;
        };
        if is_checkpoint(location)
            && let Some(whole) = self.checkpoint(location).await?
        {
            return whole.result(range);
        }
        self.shared(location, Some(range.clone())).await?.result(range)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        if is_checkpoint(location)
            && let Some(whole) = self.checkpoint(location).await?
        {
            return ranges.iter().map(|range| whole.slice(range)).collect();
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    use super::*;

    /// Counts the reads that reach the store under it, and makes each take a while.
    #[derive(Debug)]
    struct Counted {
        inner: InMemory,
        gets: AtomicUsize,
    }

    impl fmt::Display for Counted {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Counted")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Counted {
        async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
            self.inner.delete_stream(locations)
        }
        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    async fn store_with(objects: &[(&str, Bytes)]) -> (Arc<Counted>, SharedReads) {
        let counted = Arc::new(Counted { inner: InMemory::new(), gets: AtomicUsize::new(0) });
        for (path, bytes) in objects {
            counted.inner.put(&Path::from(*path), bytes.clone().into()).await.unwrap();
        }
        (counted.clone(), SharedReads::new(counted))
    }

    #[tokio::test]
    async fn a_checkpoint_is_read_once_whatever_ranges_are_asked() {
        let data: Bytes = (0..40_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
        let path = "t/s/_delta_log/00000000000000000154.checkpoint.parquet";
        let (counted, store) = store_with(&[(path, data.clone())]).await;
        let path = Path::from(path);
        // delta-rs's order: the footer's length, the footer, a column, the footer again.
        for range in [39_992..40_000, 30_000..39_992, 25_110..26_884, 39_992..40_000, 4..9_005] {
            assert_eq!(
                store.get_range(&path, range.clone()).await.unwrap(),
                data.slice(range.start as usize..range.end as usize)
            );
        }
        let ranges = store.get_ranges(&path, &[0..10, 100..200]).await.unwrap();
        assert_eq!(ranges, vec![data.slice(0..10), data.slice(100..200)]);
        assert_eq!(counted.gets.load(Ordering::SeqCst), 1, "one read of the whole checkpoint");

        let outside = store.get_range(&path, 39_990..40_010).await.unwrap_err().to_string();
        assert!(outside.contains("outside the 40000 bytes"), "{outside}");
    }

    #[tokio::test]
    async fn a_checkpoint_too_large_to_keep_is_read_by_ranges_after_its_first_read() {
        let data: Bytes = (0..40_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
        let path = "t/s/_delta_log/00000000000000000154.checkpoint.parquet";
        let (counted, mut store) = store_with(&[(path, data.clone())]).await;
        store.keep_bytes = 10_000;
        let path = Path::from(path);
        for range in [39_992..40_000, 30_000..39_992, 25_110..26_884] {
            let got = store.get_range(&path, range.clone()).await.unwrap();
            assert_eq!(got, data.slice(range.start as usize..range.end as usize));
        }
        assert_eq!(counted.gets.load(Ordering::SeqCst), 3, "read whole once, then the ranges asked");
    }

    #[tokio::test]
    async fn identical_reads_at_once_share_one_request_and_later_ones_do_not() {
        let data: Bytes = vec![7u8; 1 << 20].into();
        let (counted, store) = store_with(&[("t/s/date=x/part-1.parquet", data.clone())]).await;
        let store = Arc::new(store);
        let path = Path::from("t/s/date=x/part-1.parquet");
        let tail = (1 << 20) - 65_536..1 << 20;
        let reads = (0..4).map(|_| {
            let (store, path, tail) = (store.clone(), path.clone(), tail.clone());
            tokio::spawn(async move { store.get_range(&path, tail).await })
        });
        for read in futures::future::join_all(reads).await {
            assert_eq!(read.unwrap().unwrap().len(), 65_536);
        }
        assert_eq!(counted.gets.load(Ordering::SeqCst), 1, "four readers at once, one request");

        // A read made after the others ended is a request of its own (nothing is kept), and
        // another range is another request.
        store.get_range(&path, tail.clone()).await.unwrap();
        store.get_range(&path, 0..10).await.unwrap();
        assert_eq!(counted.gets.load(Ordering::SeqCst), 3);

        // A reader that gives up (its query dropped) leaves nothing in flight behind it.
        let given_up = {
            let (store, path) = (store.clone(), path.clone());
            tokio::spawn(async move { store.get_range(&path, 0..100).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert_eq!(store.flights.lock().unwrap().len(), 1);
        given_up.abort();
        assert!(given_up.await.unwrap_err().is_cancelled());
        assert!(store.flights.lock().unwrap().is_empty());
        assert_eq!(store.get_range(&path, 0..100).await.unwrap().len(), 100);

        // A missing object is `NotFound` for every reader of the shared read.
        let missing = Path::from("t/s/date=x/none.parquet");
        let (a, b) = tokio::join!(store.get_range(&missing, 0..8), store.get_range(&missing, 0..8));
        for e in [a.unwrap_err(), b.unwrap_err()] {
            assert!(matches!(e, object_store::Error::NotFound { .. }), "{e}");
        }
    }
}
