//! AWS access: the SDK's default credential chain, handed to `object_store`.
//!
//! Every S3 request of the program signs with credentials from one
//! `aws_config` chain (environment, profile, IRSA web identity, EKS Pod Identity, IMDS).
//! Credentials are cached and refreshed a margin before they expire, so a long-running
//! process never signs with credentials that are about to lapse.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use object_store::CredentialProvider;
use object_store::aws::AwsCredential;
use tokio::sync::Mutex;

use logyard_core::error_chain;

/// Refresh credentials this long before they expire.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// S3 settings that do not come from the credential chain.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Region override (otherwise the SDK's: `AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint of an S3-compatible server (`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Path-style requests (`http://host/bucket/key`); the default for custom endpoints.
    pub force_path_style: Option<bool>,
    /// A role to assume for the bucket (another account's), from the default chain's
    /// credentials.
    pub role: Option<AssumeRole>,
}

/// A role assumed for S3 access, chained after the default credentials (role chaining).
#[derive(Debug, Clone)]
pub struct AssumeRole {
    pub arn: String,
    pub external_id: Option<String>,
    /// How long each set of credentials lasts.
    pub session: Duration,
    /// Names the sessions in the bucket account's CloudTrail.
    pub session_name: String,
}

/// The credentials S3 requests are signed with: the default chain's, or `role` assumed with
/// them. The SDK's provider asks STS for a new set whenever it is called; the
/// [`SdkCredentialProvider`] above it calls it only near expiry.
pub async fn s3_credentials(sdk: &SdkConfig, role: Option<&AssumeRole>) -> Result<SharedCredentialsProvider, String> {
    let base = sdk.credentials_provider().ok_or("no AWS credential provider could be configured")?;
    let Some(role) = role else { return Ok(base) };
    let mut builder = aws_config::sts::AssumeRoleProvider::builder(&role.arn)
        .session_name(&role.session_name)
        .session_length(role.session)
        .configure(sdk);
    if let Some(id) = &role.external_id {
        builder = builder.external_id(id);
    }
    Ok(SharedCredentialsProvider::new(builder.build().await))
}

/// Loads the SDK configuration from the default chain, with an optional region override.
pub async fn load_sdk_config(region: Option<String>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    loader.load().await
}

/// An AWS API call the SDK has no crate here for (Glue, SNS): a POST of `body` to `url`,
/// signed with SigV4 for `service` in `region` with credentials from `credentials`. Returns
/// the HTTP status code and the body; an error only when no answer came.
pub async fn signed_post(
    client: &reqwest::Client,
    credentials: &SharedCredentialsProvider,
    (region, service): (&str, &str),
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(u16, bytes::Bytes), String> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let credentials =
        credentials.provide_credentials().await.map_err(|e| format!("getting AWS credentials: {}", error_chain(&e)))?;
    let identity = credentials.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("signing: {e}"))?
        .into();
    let signable = SignableRequest::new("POST", url, headers.iter().copied(), SignableBody::Bytes(&body))
        .map_err(|e| format!("signing: {e}"))?;
    let (instructions, _) = sign(signable, &params).map_err(|e| format!("signing: {e}"))?.into_parts();
    let mut request = client.post(url);
    for (name, value) in headers.iter().copied().chain(instructions.headers()) {
        request = request.header(name, value);
    }
    let response = request.body(body).send().await.map_err(|e| e.without_url().to_string())?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| e.without_url().to_string())?;
    Ok((status, body))
}

/// Bridges the SDK's credential provider to `object_store`.
#[derive(Debug)]
pub struct SdkCredentialProvider {
    provider: SharedCredentialsProvider,
    cache: Mutex<Option<Cached>>,
    margin: Duration,
}

#[derive(Debug)]
struct Cached {
    credential: Arc<AwsCredential>,
    expiry: Option<SystemTime>,
}

impl SdkCredentialProvider {
    pub fn new(provider: SharedCredentialsProvider) -> Self {
        Self::with_margin(provider, REFRESH_MARGIN)
    }

    pub fn with_margin(provider: SharedCredentialsProvider, margin: Duration) -> Self {
        Self { provider, cache: Mutex::new(None), margin }
    }
}

#[async_trait::async_trait]
impl CredentialProvider for SdkCredentialProvider {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cache = self.cache.lock().await;
        let now = SystemTime::now();
        if let Some(c) = cache.as_ref() {
            let fresh = match c.expiry {
                None => true,
                Some(exp) => exp.duration_since(now).map(|left| left > self.margin).unwrap_or(false),
            };
            if fresh {
                return Ok(c.credential.clone());
            }
        }
        match self.provider.provide_credentials().await {
            Ok(creds) => {
                let credential = Arc::new(AwsCredential {
                    key_id: creds.access_key_id().to_owned(),
                    secret_key: creds.secret_access_key().to_owned(),
                    token: creds.session_token().map(str::to_owned),
                });
                tracing::debug!(expiry = ?creds.expiry(), "aws credentials loaded");
                *cache = Some(Cached { credential: credential.clone(), expiry: creds.expiry() });
                Ok(credential)
            }
            Err(e) => {
                // Within the margin the old credentials still work: use them and retry later.
                if let Some(c) = cache.as_ref()
                    && c.expiry.is_some_and(|exp| exp > now)
                {
                    tracing::warn!(error = %e, "refreshing aws credentials failed; using the current ones until they expire");
                    return Ok(c.credential.clone());
                }
                Err(object_store::Error::Generic {
                    store: "S3",
                    source: format!("no AWS credentials: {}", error_chain(&e)).into(),
                })
            }
        }
    }
}
