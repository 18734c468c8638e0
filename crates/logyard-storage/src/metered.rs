//! An `ObjectStore` wrapper that counts requests and errors by operation.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpErrorLabels {
    pub operation: &'static str,
    pub kind: &'static str,
}

/// Object-store request counters, shared by every store of the process.
#[derive(Debug, Clone, Default)]
pub struct StoreMetrics {
    pub requests: Family<OpLabels, Counter>,
    pub errors: Family<OpErrorLabels, Counter>,
}

impl StoreMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("logyard_object_store_requests", "Object-store requests by operation", self.requests.clone());
        registry.register(
            "logyard_object_store_errors",
            "Object-store request errors by operation and kind",
            self.errors.clone(),
        );
    }

    fn count<T>(&self, operation: &'static str, result: &Result<T>) {
        self.requests.get_or_create(&OpLabels { operation }).inc();
        if let Err(e) = result {
            self.errors.get_or_create(&OpErrorLabels { operation, kind: error_kind(e) }).inc();
        }
    }
}

/// A short name for the kind of an object-store error.
pub fn error_kind(e: &object_store::Error) -> &'static str {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => "not_found",
        E::AlreadyExists { .. } => "already_exists",
        E::Precondition { .. } => "precondition",
        E::NotModified { .. } => "not_modified",
        E::PermissionDenied { .. } => "permission_denied",
        E::Unauthenticated { .. } => "unauthenticated",
        E::NotImplemented { .. } | E::NotSupported { .. } => "not_supported",
        E::InvalidPath { .. } => "invalid_path",
        _ => "other",
    }
}

/// Counts every request made through it.
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    metrics: StoreMetrics,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn ObjectStore>, metrics: StoreMetrics) -> Self {
        Self { inner, metrics }
    }
}

impl fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Metered({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for MeteredStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let r = self.inner.put_opts(location, payload, opts).await;
        self.metrics.count("put", &r);
        r
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        let r = self.inner.put_multipart_opts(location, opts).await;
        self.metrics.count("put_multipart", &r);
        r
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head { "head" } else { "get" };
        let r = self.inner.get_opts(location, options).await;
        self.metrics.count(op, &r);
        r
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let r = self.inner.get_ranges(location, ranges).await;
        self.metrics.count("get_ranges", &r);
        r
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let metrics = self.metrics.clone();
        self.inner
            .delete_stream(locations)
            .map(move |r| {
                metrics.count("delete", &r);
                r
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.metrics.requests.get_or_create(&OpLabels { operation: "list" }).inc();
        let metrics = self.metrics.clone();
        self.inner
            .list(prefix)
            .inspect(move |r| {
                if let Err(e) = r {
                    metrics.errors.get_or_create(&OpErrorLabels { operation: "list", kind: error_kind(e) }).inc();
                }
            })
            .boxed()
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.metrics.requests.get_or_create(&OpLabels { operation: "list" }).inc();
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let r = self.inner.list_with_delimiter(prefix).await;
        self.metrics.count("list", &r);
        r
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let r = self.inner.copy_opts(from, to, options).await;
        self.metrics.count("copy", &r);
        r
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let r = self.inner.rename_opts(from, to, options).await;
        self.metrics.count("rename", &r);
        r
    }
}
