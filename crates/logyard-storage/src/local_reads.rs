//! Local files read by ranges without clearing each buffer first.
//!
//! object_store's `LocalFileSystem` answers `get_ranges` (how the Parquet reader fetches the
//! column chunks it needs) by filling a zeroed buffer per range with `pread`: the zeroing is a
//! pass over every byte read, 8-10% of the CPU of a needle query on local storage. Here each
//! range is read into a buffer's spare capacity by `Read::read_to_end`, which std does without
//! initializing it. Everything else is `LocalFileSystem`'s.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;

use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

const STORE: &str = "LocalFileSystem";

/// The local filesystem (object paths are absolute paths), with [`read_ranges`] for
/// `get_ranges`.
#[derive(Debug, Default)]
pub struct LocalReads {
    inner: LocalFileSystem,
}

impl fmt::Display for LocalReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalReads({})", self.inner)
    }
}

/// Reads `ranges` of the file at `path` (named `location` in errors), each into its own buffer.
pub fn read_ranges(path: &std::path::Path, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
    let failed = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => object_store::Error::NotFound { path: location.to_string(), source: e.into() },
        _ => object_store::Error::Generic { store: STORE, source: format!("reading {location}: {e}").into() },
    };
    let mut file = File::open(path).map_err(failed)?;
    ranges
        .iter()
        .map(|range| {
            let want = range.end.checked_sub(range.start).ok_or_else(|| object_store::Error::Generic {
                store: STORE,
                source: format!("range {}..{} of {location} ends before it starts", range.start, range.end).into(),
            })?;
            file.seek(SeekFrom::Start(range.start)).map_err(failed)?;
            let mut buf = Vec::with_capacity(want as usize);
            (&mut file).take(want).read_to_end(&mut buf).map_err(failed)?;
            if buf.len() as u64 != want {
                return Err(object_store::Error::Generic {
                    store: STORE,
                    source: format!(
                        "range {}..{} of {location}: the file ends after {} of its bytes",
                        range.start,
                        range.end,
                        buf.len()
                    )
                    .into(),
                });
            }
            Ok(Bytes::from(buf))
        })
        .collect()
}

#[async_trait::async_trait]
impl ObjectStore for LocalReads {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let path = self.inner.path_to_filesystem(location)?;
        let (location, ranges) = (location.clone(), ranges.to_vec());
        tokio::task::spawn_blocking(move || read_ranges(&path, &location, &ranges))
            .await
            .map_err(|e| object_store::Error::Generic { store: STORE, source: format!("reading ranges: {e}").into() })?
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
    use object_store::ObjectStoreExt;

    use super::*;

    #[tokio::test]
    async fn ranges_read_as_the_local_store_reads_them_and_errors_name_the_object() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data.bin");
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &content).unwrap();
        let location = Path::from_absolute_path(&file).unwrap();
        let ours = LocalReads::default();
        let theirs = LocalFileSystem::new();

        let ranges = [0..0, 0..1, 5..70_000, 99_999..100_000, 4096..8192, 10..20];
        let got = ours.get_ranges(&location, &ranges).await.unwrap();
        assert_eq!(got, theirs.get_ranges(&location, &ranges).await.unwrap());
        for (bytes, range) in got.iter().zip(&ranges) {
            assert_eq!(bytes[..], content[range.start as usize..range.end as usize]);
        }

        let past_end = std::slice::from_ref(&(99_990..100_010));
        let past = ours.get_ranges(&location, past_end).await.unwrap_err().to_string();
        assert!(past.contains("data.bin") && past.contains("after 10 of its bytes"), "{past}");
        assert!(theirs.get_ranges(&location, past_end).await.is_err(), "the local store refuses it too");
        let missing = Path::from_absolute_path(dir.path().join("nope.bin")).unwrap();
        let e = ours.get_ranges(&missing, std::slice::from_ref(&(0..1))).await.unwrap_err();
        assert!(matches!(e, object_store::Error::NotFound { .. }), "{e}");

        // The rest is the local store's.
        ours.put(&Path::from_absolute_path(dir.path().join("p.bin")).unwrap(), b"xyz".to_vec().into()).await.unwrap();
        let back = ours.get(&Path::from_absolute_path(dir.path().join("p.bin")).unwrap()).await.unwrap();
        assert_eq!(back.bytes().await.unwrap(), &b"xyz"[..]);
    }
}
