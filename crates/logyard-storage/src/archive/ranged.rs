//! Reading a large object, or a range of it, on a blocking thread, in bounded requests.
//!
//! The S3 client's timeout covers a whole request, body included, so one GET of a
//! multi-gigabyte object read at the pace of its consumer (an ingest, a bundler, a verifier)
//! fails part way. [`ObjectReader`] fetches windows of [`WINDOW_BYTES`], a few at once (one
//! S3 connection is slower than a reader), each a request of its own that is read to its end
//! as fast as it comes; so memory holds a few windows whatever the object's size. With the
//! object's ETag every request carries `If-Match`, so an object replaced in between is an
//! error rather than a splice of two versions. A local file is read directly, at once: it has
//! no timeout, and the store's own stream of a file reads it 8 KiB at a time through the
//! runtime. Knows nothing of what the bytes hold.

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore};
use tokio::task::JoinHandle;

/// Bytes per request.
pub const WINDOW_BYTES: u64 = 16 << 20;
/// Requests under way at once.
const WINDOWS_AHEAD: usize = 3;

/// What one request gave: a local file (read directly from there on), or a window's bytes.
enum Fetched {
    File(std::fs::File),
    Window(VecDeque<Bytes>),
}

/// A blocking reader of a range of an object. Made on the runtime; read on a blocking thread
/// (it waits for the runtime to fetch the windows).
pub struct ObjectReader {
    runtime: tokio::runtime::Handle,
    store: Arc<dyn ObjectStore>,
    path: Path,
    e_tag: Option<String>,
    window: u64,
    /// Where reading is, the next byte to ask for, and the end of the range.
    position: u64,
    next: u64,
    end: u64,
    /// Requests under way, oldest first, with the range each asked for.
    ahead: VecDeque<(Range<u64>, JoinHandle<object_store::Result<Fetched>>)>,
    /// The window being read.
    current: VecDeque<Bytes>,
    /// A local file, once the store turned out to be one (with the bytes still due from it).
    file: Option<io::Take<std::fs::File>>,
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("path", &self.path)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl ObjectReader {
    /// The bytes `range` of the object at `path`; with `e_tag`, every request requires the
    /// object to still have it.
    pub fn new(store: Arc<dyn ObjectStore>, path: Path, range: Range<u64>, e_tag: Option<String>) -> Self {
        Self::with_window(store, path, range, e_tag, WINDOW_BYTES)
    }

    fn with_window(
        store: Arc<dyn ObjectStore>,
        path: Path,
        range: Range<u64>,
        e_tag: Option<String>,
        window: u64,
    ) -> Self {
        Self {
            runtime: tokio::runtime::Handle::current(),
            store,
            path,
            e_tag,
            window: window.max(1),
            position: range.start,
            next: range.start,
            end: range.end,
            ahead: VecDeque::new(),
            current: VecDeque::new(),
            file: None,
        }
    }

    /// Keeps `WINDOWS_AHEAD` requests under way.
    fn ask_ahead(&mut self) {
        while self.ahead.len() < WINDOWS_AHEAD && self.next < self.end {
            let window = self.next..(self.next + self.window).min(self.end);
            self.next = window.end;
            let (store, path) = (self.store.clone(), self.path.clone());
            let options = GetOptions {
                range: Some(GetRange::Bounded(window.clone())),
                if_match: self.e_tag.clone(),
                ..Default::default()
            };
            let fetch = self.runtime.spawn(async move {
                let result = store.get_opts(&path, options).await?;
                Ok(match result.payload {
                    GetResultPayload::File(file, _) => Fetched::File(file),
                    GetResultPayload::Stream(stream) => Fetched::Window(stream.try_collect().await?),
                })
            });
            self.ahead.push_back((window, fetch));
        }
    }

    /// Takes the oldest request's answer as the window to read.
    fn take_window(&mut self) -> io::Result<()> {
        self.ask_ahead();
        let Some((window, fetch)) = self.ahead.pop_front() else { return Ok(()) };
        let fetched = self.runtime.block_on(fetch).map_err(io::Error::other)?.map_err(io::Error::other)?;
        match fetched {
            Fetched::File(mut file) => {
                // A local file: the rest of the range from it, and no more requests.
                for (_, fetch) in self.ahead.drain(..) {
                    fetch.abort();
                }
                self.next = self.end;
                file.seek(SeekFrom::Start(self.position))?;
                self.file = Some(file.take(self.end - self.position));
            }
            Fetched::Window(chunks) => {
                let got: u64 = chunks.iter().map(|c| c.len() as u64).sum();
                if got != window.end - window.start {
                    return Err(self.short(window.start + got));
                }
                self.current = chunks;
                self.ask_ahead();
            }
        }
        Ok(())
    }

    fn short(&self, at: u64) -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{} ended at byte {at}, before byte {}", self.path, self.end),
        )
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if buf.is_empty() || self.position >= self.end {
                return Ok(0);
            }
            if let Some(file) = self.file.as_mut() {
                let n = file.read(buf)?;
                if n == 0 {
                    return Err(self.short(self.position));
                }
                self.position += n as u64;
                return Ok(n);
            }
            if let Some(chunk) = self.current.front_mut() {
                let n = chunk.len().min(buf.len());
                buf[..n].copy_from_slice(&chunk[..n]);
                chunk.advance(n);
                if chunk.is_empty() {
                    self.current.pop_front();
                }
                self.position += n as u64;
                return Ok(n);
            }
            self.take_window()?;
        }
    }
}

impl Drop for ObjectReader {
    fn drop(&mut self) {
        for (_, fetch) in self.ahead.drain(..) {
            fetch.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::local::LocalFileSystem;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    async fn read(reader: ObjectReader) -> io::Result<Vec<u8>> {
        tokio::task::spawn_blocking(move || {
            let mut reader = reader;
            let mut out = Vec::new();
            reader.read_to_end(&mut out).map(|_| out)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn windows_join_into_the_range_and_a_replaced_object_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let stores: [Arc<dyn ObjectStore>; 2] =
            [Arc::new(InMemory::new()), Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap())];
        for store in stores {
            let path = Path::from("big");
            let data: Vec<u8> = (0..25_000u32).map(|i| (i % 251) as u8).collect();
            store.put(&path, PutPayload::from(data.clone())).await.unwrap();
            let meta = store.head(&path).await.unwrap();
            for range in [0..data.len() as u64, 5..10_007, 10..10, 0..1000, 24_000..25_000] {
                let reader =
                    ObjectReader::with_window(store.clone(), path.clone(), range.clone(), meta.e_tag.clone(), 1000);
                assert_eq!(
                    read(reader).await.unwrap(),
                    &data[range.start as usize..range.end as usize],
                    "{store} {range:?}"
                );
            }
            // A range past the end of the object is an error, not a short read.
            let past = ObjectReader::with_window(store.clone(), path.clone(), 20_000..30_000, None, 1000);
            assert!(read(past).await.is_err(), "{store}");
            store.put(&path, PutPayload::from(vec![1u8; 30_000])).await.unwrap();
            let replaced = ObjectReader::with_window(store.clone(), path, 0..30_000, meta.e_tag, 1000);
            let err = read(replaced).await.unwrap_err();
            assert!(err.to_string().contains("recondition"), "{store}: {err}");
        }
    }
}
