//! The object store behind a [`Location`], and the key layout under its root.
//!
//! Layout under the root (see ARCHITECTURE.md):
//! - `tables/<stream>/` — the stream's Delta table (`_delta_log/`, `date=YYYY-MM-DD/*.parquet`)

use std::sync::{Arc, Once};

use deltalake::DeltaResult;
use deltalake::logstore::{LogStore, LogStoreFactory, StorageConfig, default_logstore, logstore_factories};
use object_store::aws::AmazonS3Builder;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use url::Url;

use logyard_core::StreamName;

use crate::StorageError;
use crate::aws::{S3Options, SdkCredentialProvider, load_sdk_config, s3_credentials};
use crate::local_reads::LocalReads;
use crate::location::Location;
use crate::metered::{MeteredHttpConnector, MeteredStore, StoreMetrics};
use crate::presign::Presigner;

pub const TABLES_DIR: &str = "tables";

/// An opened storage root.
#[derive(Debug, Clone)]
pub struct Storage {
    location: Location,
    /// The store at the root of the filesystem or bucket (what Delta calls the root store).
    root: Arc<dyn ObjectStore>,
    /// URL of the storage root, e.g. `s3://bucket/prefix` or `file:///var/lib/logyard`.
    url: Url,
    /// Path of the storage root inside `root`.
    prefix: Path,
    /// Presigns requests on S3; `None` for other stores.
    presigner: Option<Presigner>,
}

impl Storage {
    /// Opens the storage at `location`. For S3, credentials come from the AWS SDK default chain.
    pub async fn open(location: Location, s3: &S3Options, metrics: StoreMetrics) -> Result<Self, StorageError> {
        register_s3_logstore();
        let mut presigner = None;
        let (root, url, prefix): (Arc<dyn ObjectStore>, Url, Path) = match &location {
            Location::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| StorageError::Io(format!("creating {}", dir.display()), e))?;
                let dir =
                    dir.canonicalize().map_err(|e| StorageError::Io(format!("resolving {}", dir.display()), e))?;
                let url = Url::from_directory_path(&dir)
                    .map_err(|_| StorageError::InvalidLocation(dir.display().to_string(), "not absolute".into()))?;
                let prefix = Path::from_url_path(url.path())
                    .map_err(|e| StorageError::InvalidLocation(url.to_string(), e.to_string()))?;
                (Arc::new(LocalReads::default()), url, prefix)
            }
            Location::Memory => {
                (Arc::new(InMemory::new()), Url::parse("memory:///").expect("static url"), Path::default())
            }
            Location::S3 { bucket, prefix } => {
                let sdk = load_sdk_config(s3.region.clone()).await;
                let region = sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
                let provider = s3_credentials(&sdk, s3.role.as_ref()).await.map_err(StorageError::Config)?;
                // Client options first: they replace what `with_allow_http` sets.
                // A few quick retries of each request (5xx, throttling, resets); the flusher
                // retries whole commits with its own backoff after that.
                let retry = RetryConfig {
                    max_retries: 4,
                    retry_timeout: std::time::Duration::from_secs(20),
                    ..RetryConfig::default()
                };
                let credentials = Arc::new(SdkCredentialProvider::new(provider));
                let mut builder = AmazonS3Builder::new()
                    .with_client_options(ClientOptions::new().with_timeout(std::time::Duration::from_secs(60)))
                    .with_retry(retry)
                    .with_http_connector(MeteredHttpConnector { metrics: metrics.clone() })
                    .with_bucket_name(bucket)
                    .with_region(&region)
                    .with_credentials(credentials.clone());
                // An S3-compatible endpoint defaults to path-style requests; AWS to virtual hosts.
                let path_style = s3.force_path_style.unwrap_or(s3.endpoint.is_some());
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
                }
                builder = builder.with_virtual_hosted_style_request(!path_style);
                presigner = Some(Presigner::new(
                    credentials,
                    region.clone(),
                    bucket.clone(),
                    s3.endpoint.as_deref(),
                    path_style,
                )?);
                let store = builder.build().map_err(|e| StorageError::Config(format!("S3: {e}")))?;
                let url = Url::parse(&format!("s3://{bucket}/{prefix}"))
                    .map_err(|e| StorageError::InvalidLocation(location.to_string(), e.to_string()))?;
                (Arc::new(store), url, Path::from(prefix.as_str()))
            }
        };
        // Requests are counted as they go out, after the reads that are made once.
        let root: Arc<dyn ObjectStore> =
            Arc::new(crate::shared_reads::SharedReads::new(Arc::new(MeteredStore::new(root, metrics))));
        Ok(Self { location, root, url, prefix, presigner })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The store at the filesystem or bucket root.
    pub fn root_store(&self) -> Arc<dyn ObjectStore> {
        self.root.clone()
    }

    /// The object path of `relative` (a `/`-separated key) under the storage root.
    pub fn path(&self, relative: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in relative.split('/').filter(|s| !s.is_empty()) {
            p = p.join(part);
        }
        p
    }

    /// Presigns requests when the storage is S3.
    pub fn presigner(&self) -> Option<&Presigner> {
        self.presigner.as_ref()
    }

    /// The full key in the bucket (or path in the filesystem) of `relative`.
    pub fn full_key(&self, relative: &str) -> String {
        self.path(relative).to_string()
    }

    /// URL of a stream's Delta table.
    pub fn table_url(&self, stream: &StreamName) -> Url {
        let mut url = self.url.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}/{TABLES_DIR}/{stream}/"));
        url
    }

    /// Streams that have a table (a `_delta_log` directory), sorted by name.
    pub async fn list_streams(&self) -> Result<Vec<StreamName>, StorageError> {
        let listing = self
            .root
            .list_with_delimiter(Some(&self.path(TABLES_DIR)))
            .await
            .map_err(StorageError::from_store("listing tables"))?;
        let mut out: Vec<StreamName> =
            listing.common_prefixes.iter().filter_map(|p| p.filename().and_then(|n| StreamName::new(n).ok())).collect();
        out.sort();
        Ok(out)
    }

    /// A cheap request that fails when the storage is unreachable or access is denied.
    pub async fn probe(&self) -> Result<(), StorageError> {
        self.root
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map(|_| ())
            .map_err(StorageError::from_store("listing the storage root"))
    }

    /// Lists, writes, reads back and deletes a probe object at `relative` (for `doctor`).
    pub async fn round_trip(&self, relative: &str) -> Result<(), StorageError> {
        let path = self.path(relative);
        self.probe().await?;
        let body = bytes::Bytes::from_static(b"logyard doctor probe");
        self.root.put(&path, body.clone().into()).await.map_err(StorageError::from_store("writing a probe object"))?;
        let read = self.get(relative).await?;
        if read != body {
            return Err(StorageError::Config("the probe object read back differs from what was written".into()));
        }
        self.root.delete(&path).await.map_err(StorageError::from_store("deleting the probe object"))
    }

    /// Reads a whole object.
    pub async fn get(&self, relative: &str) -> Result<bytes::Bytes, StorageError> {
        let result = self.root.get(&self.path(relative)).await.map_err(StorageError::from_store("reading"))?;
        result.bytes().await.map_err(StorageError::from_store("reading"))
    }

    /// Writes a whole object (replacing it).
    pub async fn put(&self, relative: &str, data: bytes::Bytes) -> Result<(), StorageError> {
        self.root.put(&self.path(relative), data.into()).await.map(|_| ()).map_err(StorageError::from_store("writing"))
    }

    /// Deletes an object; one that is not there is no error.
    pub async fn delete(&self, relative: &str) -> Result<(), StorageError> {
        match self.root.delete(&self.path(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StorageError::from_store("deleting")(e)),
        }
    }

    /// The names of the objects directly in the directory `relative`, sorted.
    pub async fn list_names(&self, relative: &str) -> Result<Vec<String>, StorageError> {
        let listing = self
            .root
            .list_with_delimiter(Some(&self.path(relative)))
            .await
            .map_err(StorageError::from_store("listing"))?;
        let mut names: Vec<String> =
            listing.objects.iter().filter_map(|o| o.location.filename().map(str::to_owned)).collect();
        names.sort();
        Ok(names)
    }
}

/// delta-rs knows `file://` and `memory://`; S3 tables use its default log store too (commits
/// are conditional puts with `If-None-Match: *`), over the store built here.
fn register_s3_logstore() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        logstore_factories().insert(Url::parse("s3://").expect("static url"), Arc::new(DefaultFactory));
    });
}

struct DefaultFactory;

impl LogStoreFactory for DefaultFactory {
    fn with_options(
        &self,
        prefixed_store: Arc<dyn ObjectStore>,
        root_store: Arc<dyn ObjectStore>,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(prefixed_store, root_store, location, options))
    }
}
