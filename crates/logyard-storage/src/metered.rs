//! An `ObjectStore` wrapper that counts requests and errors by operation.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use object_store::path::Path;
use object_store::{
    ClientOptions, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tracing::Instrument;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpErrorLabels {
    pub operation: &'static str,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// Object-store request counters, shared by every store of the process.
#[derive(Debug, Clone, Default)]
pub struct StoreMetrics {
    pub requests: Family<OpLabels, Counter>,
    pub errors: Family<OpErrorLabels, Counter>,
    /// Failed HTTP attempts to S3, which the client retries with backoff.
    pub http_failures: Family<KindLabels, Counter>,
}

impl StoreMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("logyard_object_store_requests", "Object-store requests by operation", self.requests.clone());
        registry.register(
            "logyard_object_store_errors",
            "Object-store request errors by operation and kind",
            self.errors.clone(),
        );
        registry.register(
            "logyard_object_store_http_failures",
            "Failed HTTP attempts to S3 by kind (throttled, server_error, connect, timeout, ...); retried with backoff",
            self.http_failures.clone(),
        );
    }

    /// Runs one request in an `object_store.<operation>` span, and counts it.
    async fn call<T>(
        &self,
        operation: &'static str,
        path: impl AsRef<str>,
        request: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let span = request_span(operation, path.as_ref());
        let r = request.instrument(span.clone()).await;
        self.requests.get_or_create(&OpLabels { operation }).inc();
        if let Err(e) = &r {
            self.failed(&span, operation, e);
        }
        r
    }

    fn failed(&self, span: &tracing::Span, operation: &'static str, e: &object_store::Error) {
        let kind = error_kind(e);
        self.errors.get_or_create(&OpErrorLabels { operation, kind }).inc();
        span.record("error.kind", kind);
        if !matches!(e, object_store::Error::NotFound { .. } | object_store::Error::AlreadyExists { .. }) {
            span.record("otel.status_code", "ERROR");
        }
    }
}

fn request_span(operation: &'static str, path: &str) -> tracing::Span {
    tracing::info_span!(
        "object_store",
        otel.name = format!("object_store.{operation}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        operation,
        path,
        error.kind = tracing::field::Empty,
    )
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

impl MeteredStore {
    /// Counts a listing, in a span that lasts as long as the listing is read.
    fn metered_list(
        &self,
        prefix: Option<&Path>,
        listing: BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.metrics.requests.get_or_create(&OpLabels { operation: "list" }).inc();
        let metrics = self.metrics.clone();
        let span = request_span("list", prefix.map(Path::as_ref).unwrap_or(""));
        listing
            .inspect(move |r| {
                if let Err(e) = r {
                    metrics.failed(&span, "list", e);
                }
            })
            .boxed()
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
        self.metrics.call("put", location, self.inner.put_opts(location, payload, opts)).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.metrics.call("put_multipart", location, self.inner.put_multipart_opts(location, opts)).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head { "head" } else { "get" };
        self.metrics.call(op, location, self.inner.get_opts(location, options)).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.metrics.call("get_ranges", location, self.inner.get_ranges(location, ranges)).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let metrics = self.metrics.clone();
        let span = request_span("delete", "");
        self.inner
            .delete_stream(locations)
            .inspect(move |r| {
                metrics.requests.get_or_create(&OpLabels { operation: "delete" }).inc();
                if let Err(e) = r {
                    metrics.failed(&span, "delete", e);
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.metered_list(prefix, self.inner.list(prefix))
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.metered_list(prefix, self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.metrics.call("list", prefix.map(Path::as_ref).unwrap_or(""), self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.metrics.call("copy", from, self.inner.copy_opts(from, to, options)).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.metrics.call("rename", from, self.inner.rename_opts(from, to, options)).await
    }
}

/// Builds S3's HTTP clients so that every attempt is a span and every failed attempt is
/// counted: object_store retries throttling, 5xx and connection errors by itself, and this is
/// where those retries become visible.
#[derive(Debug)]
pub struct MeteredHttpConnector {
    pub metrics: StoreMetrics,
}

impl HttpConnector for MeteredHttpConnector {
    fn connect(&self, options: &ClientOptions) -> Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(MeteredHttp { inner, metrics: self.metrics.clone() }))
    }
}

#[derive(Debug)]
struct MeteredHttp {
    inner: HttpClient,
    metrics: StoreMetrics,
}

#[async_trait::async_trait]
impl HttpService for MeteredHttp {
    async fn call(&self, request: HttpRequest) -> std::result::Result<HttpResponse, HttpError> {
        let method = request.method().clone();
        let span = tracing::info_span!(
            "s3.http",
            otel.name = format!("S3 {method}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = %method,
            server.address = request.uri().host().unwrap_or_default(),
            http.response.status_code = tracing::field::Empty,
            error.kind = tracing::field::Empty,
        );
        let response = self.inner.execute(request).instrument(span.clone()).await;
        let failure = match &response {
            Ok(r) => {
                let status = r.status().as_u16();
                span.record("http.response.status_code", status);
                match status {
                    429 | 503 => Some("throttled"),
                    500..=599 => Some("server_error"),
                    _ => None,
                }
            }
            Err(e) => Some(match e.kind() {
                HttpErrorKind::Connect => "connect",
                HttpErrorKind::Timeout => "timeout",
                HttpErrorKind::Interrupted => "interrupted",
                HttpErrorKind::Request => "request",
                HttpErrorKind::Decode => "decode",
                _ => "other",
            }),
        };
        if let Some(kind) = failure {
            self.metrics.http_failures.get_or_create(&KindLabels { kind }).inc();
            span.record("error.kind", kind);
            span.record("otel.status_code", "ERROR");
            tracing::debug!(kind, %method, "an S3 request failed; the client retries it");
        }
        response
    }
}
