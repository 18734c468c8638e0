//! Where the database password comes from, and how it is kept fresh.
//!
//! - a file (read at every new connection, so a rotated Kubernetes secret is picked up);
//! - a password given by the program (the binary reads `orders.password_env` at start);
//! - an AWS Secrets Manager secret in the RDS format (`username`, `password`, and optionally
//!   `host`, `port`, `dbname`): cached, and read again when the database refuses the
//!   password, which is what a rotation looks like from here;
//! - an RDS IAM authentication token: a SigV4-presigned `connect` action for the user,
//!   valid 15 minutes, made with the AWS SDK's credentials and renewed after 10.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use std::time::Instant;
use tokio::sync::Mutex;

use crate::PgError;

/// How long an IAM token is valid (fixed by RDS).
pub const IAM_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// A token is replaced once it is this old, well before it expires.
pub const IAM_TOKEN_RENEW_AFTER: Duration = Duration::from_secs(10 * 60);

/// Where the password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// No password (trust or certificate authentication).
    None,
    File(PathBuf),
    /// A password the program was given (read from an environment variable by the binary:
    /// only the binary reads the process environment).
    Given(Password),
    /// A Secrets Manager secret id or ARN.
    Secret(String),
    /// RDS IAM database authentication, in this region.
    IamToken {
        region: String,
    },
}

/// A password, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What a connection logs in with.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub password: Option<String>,
    /// Set by a secret that names them.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub dbname: Option<String>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .finish()
    }
}

/// Gives the current login, caching what is costly to get.
#[derive(Debug)]
pub struct CredentialSource {
    source: PasswordSource,
    user: String,
    host: String,
    port: u16,
    sdk: Option<SdkConfig>,
    cache: Mutex<Option<(Login, Instant)>>,
}

impl CredentialSource {
    /// `sdk` is needed for secrets and IAM tokens.
    pub fn new(source: PasswordSource, user: &str, host: &str, port: u16, sdk: Option<SdkConfig>) -> Self {
        Self { source, user: user.into(), host: host.into(), port, sdk, cache: Mutex::new(None) }
    }

    pub fn source(&self) -> &PasswordSource {
        &self.source
    }

    /// The login to use now.
    pub async fn login(&self) -> Result<Login, PgError> {
        self.login_at(Instant::now()).await
    }

    /// The login to use at `now` (a parameter so that tests can move the clock).
    async fn login_at(&self, now: Instant) -> Result<Login, PgError> {
        let plain = |password: Option<String>| Login {
            user: self.user.clone(),
            password,
            host: None,
            port: None,
            dbname: None,
        };
        match &self.source {
            PasswordSource::None => Ok(plain(None)),
            PasswordSource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| PgError::Config(format!("reading the password file {}: {e}", path.display())))?;
                Ok(plain(Some(text.trim_end_matches(['\r', '\n']).to_owned())))
            }
            PasswordSource::Given(password) => Ok(plain(Some(password.0.clone()))),
            PasswordSource::Secret(id) => {
                let mut cache = self.cache.lock().await;
                if let Some((login, _)) = cache.as_ref() {
                    return Ok(login.clone());
                }
                let login = self.read_secret(id).await?;
                *cache = Some((login.clone(), now));
                Ok(login)
            }
            PasswordSource::IamToken { region } => {
                let mut cache = self.cache.lock().await;
                if let Some((login, made)) = cache.as_ref()
                    && now.saturating_duration_since(*made) < IAM_TOKEN_RENEW_AFTER
                {
                    return Ok(login.clone());
                }
                let credentials = self.aws_credentials().await?;
                let token = iam_token(&self.host, self.port, &self.user, region, &credentials, SystemTime::now())?;
                tracing::debug!(host = %self.host, user = %self.user, "made an RDS IAM authentication token");
                let login = plain(Some(token));
                *cache = Some((login.clone(), now));
                Ok(login)
            }
        }
    }

    /// Forgets a cached secret or token: the database refused it.
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    fn sdk(&self) -> Result<&SdkConfig, PgError> {
        self.sdk.as_ref().ok_or_else(|| PgError::Config("AWS settings are needed for secrets and IAM tokens".into()))
    }

    async fn aws_credentials(&self) -> Result<Credentials, PgError> {
        let provider = self
            .sdk()?
            .credentials_provider()
            .ok_or_else(|| PgError::IamToken("no AWS credentials are configured".into()))?;
        provider.provide_credentials().await.map_err(|e| PgError::IamToken(format!("getting AWS credentials: {e}")))
    }

    async fn read_secret(&self, id: &str) -> Result<Login, PgError> {
        let failed = |message: String| PgError::Secret { secret_id: id.into(), message };
        let client = aws_sdk_secretsmanager::Client::new(self.sdk()?);
        let out =
            client.get_secret_value().secret_id(id).send().await.map_err(|e| failed(logyard_core::error_chain(&e)))?;
        let text = out.secret_string().ok_or_else(|| failed("the secret has no string value".into()))?;
        let secret: RdsSecret = serde_json::from_str(text)
            .map_err(|e| failed(format!("not the RDS secret format (username, password, ...): {e}")))?;
        tracing::info!(secret_id = id, "read the database secret");
        Ok(Login {
            user: secret.username.unwrap_or_else(|| self.user.clone()),
            password: Some(secret.password),
            host: secret.host,
            port: secret.port.and_then(|p| p.as_port()),
            dbname: secret.dbname,
        })
    }
}

/// The JSON of an RDS-managed secret.
#[derive(serde::Deserialize)]
struct RdsSecret {
    username: Option<String>,
    password: String,
    host: Option<String>,
    port: Option<PortValue>,
    dbname: Option<String>,
}

/// RDS writes the port as a number; hand-made secrets often as a string.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum PortValue {
    Number(u16),
    Text(String),
}

impl PortValue {
    fn as_port(&self) -> Option<u16> {
        match self {
            PortValue::Number(n) => Some(*n),
            PortValue::Text(t) => t.parse().ok(),
        }
    }
}

/// An RDS IAM authentication token: `host:port/?Action=connect&DBUser=user&X-Amz-...`,
/// presigned with SigV4 for the `rds-db` service, valid 15 minutes from `now`.
pub fn iam_token(
    host: &str,
    port: u16,
    user: &str,
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
) -> Result<String, PgError> {
    let fail = |e: &dyn std::fmt::Display| PgError::IamToken(e.to_string());
    let mut url = url::Url::parse(&format!("https://{host}:{port}/")).map_err(|e| fail(&e))?;
    url.query_pairs_mut().append_pair("Action", "connect").append_pair("DBUser", user);
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(IAM_TOKEN_LIFETIME);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("rds-db")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| fail(&e))?
        .into();
    let authority = format!("{host}:{port}");
    let request = SignableRequest::new(
        "GET",
        url.as_str(),
        std::iter::once(("host", authority.as_str())),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| fail(&e))?;
    let (instructions, _) = sign(request, &params).map_err(|e| fail(&e))?.into_parts();
    for (k, v) in instructions.params() {
        url.query_pairs_mut().append_pair(k, v);
    }
    Ok(url.as_str().trim_start_matches("https://").to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None, None, "test")
    }

    #[test]
    fn iam_tokens_have_the_documented_form() {
        // 2026-11-25T10:00:00Z
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_600_800);
        let token =
            iam_token("db.abc.eu-west-1.rds.amazonaws.com", 5432, "logyard", "eu-west-1", &creds(), now).unwrap();
        let (authority, query) = token.split_once("/?").unwrap();
        assert_eq!(authority, "db.abc.eu-west-1.rds.amazonaws.com:5432");
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(pairs[0], ("Action".into(), "connect".into()));
        assert_eq!(pairs[1], ("DBUser".into(), "logyard".into()));
        assert_eq!(get("X-Amz-Algorithm"), Some("AWS4-HMAC-SHA256"));
        assert_eq!(get("X-Amz-Credential"), Some("AKIDEXAMPLE/20261125/eu-west-1/rds-db/aws4_request"));
        assert_eq!(get("X-Amz-Date"), Some("20261125T100000Z"));
        assert_eq!(get("X-Amz-Expires"), Some("900"));
        assert_eq!(get("X-Amz-SignedHeaders"), Some("host"));
        let signature = get("X-Amz-Signature").unwrap();
        assert!(signature.len() == 64 && signature.chars().all(|c| c.is_ascii_hexdigit()), "{signature}");
        // Deterministic for the same inputs; another user or minute signs differently.
        let again = iam_token("db.abc.eu-west-1.rds.amazonaws.com", 5432, "logyard", "eu-west-1", &creds(), now);
        assert_eq!(again.unwrap(), token);
        let other = iam_token("db.abc.eu-west-1.rds.amazonaws.com", 5432, "report", "eu-west-1", &creds(), now);
        assert_ne!(other.unwrap(), token);
    }

    #[tokio::test]
    async fn iam_tokens_are_renewed_before_they_expire() {
        let sdk = SdkConfig::builder()
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(creds()))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let source = CredentialSource::new(
            PasswordSource::IamToken { region: "eu-west-1".into() },
            "logyard",
            "db.example",
            5432,
            Some(sdk),
        );
        let made_at = || async { source.cache.lock().await.as_ref().unwrap().1 };
        let t0 = Instant::now();
        let first = source.login_at(t0).await.unwrap();
        assert!(first.password.as_deref().unwrap().starts_with("db.example:5432/?Action=connect&DBUser=logyard&"));
        source.login_at(t0 + Duration::from_secs(9 * 60)).await.unwrap();
        assert_eq!(made_at().await, t0, "the same token after 9 minutes");
        let later = t0 + IAM_TOKEN_RENEW_AFTER + Duration::from_secs(1);
        source.login_at(later).await.unwrap();
        assert_eq!(made_at().await, later, "a new token after 10 minutes, 5 before the first expires");
    }

    #[test]
    fn logins_never_print_their_password() {
        let login = Login { user: "u".into(), password: Some("hunter2".into()), host: None, port: None, dbname: None };
        assert!(!format!("{login:?}").contains("hunter2"));
    }
}
