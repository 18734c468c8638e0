//! Connections to the orders database: TLS `verify-full`, a small pool, read-only sessions
//! with a statement timeout, retries on transient errors, and a span per statement.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use deadpool::managed::{self, Metrics, Pool, PoolError, RecycleError, RecycleResult};
use futures::StreamExt;
use futures::stream::BoxStream;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use tracing::Instrument;

use crate::PgError;
use crate::credentials::{CredentialSource, Login, PasswordSource};

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// TLS, the certificate checked against the configured roots and the host name.
    VerifyFull,
    /// Plain TCP (only when asked for by name; warned about at start).
    Disable,
}

impl std::str::FromStr for SslMode {
    type Err = PgError;

    fn from_str(s: &str) -> Result<Self, PgError> {
        match s {
            "verify-full" => Ok(Self::VerifyFull),
            "disable" => Ok(Self::Disable),
            other => Err(PgError::Config(format!(
                "sslmode {other:?} is not supported: use \"verify-full\" (the default) or \"disable\""
            ))),
        }
    }
}

/// Everything needed to reach the database.
#[derive(Debug, Clone)]
pub struct PgSettings {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: PasswordSource,
    pub ssl_mode: SslMode,
    /// PEM file of the CAs to trust (for RDS: `global-bundle.pem`).
    pub ca_file: Option<PathBuf>,
    /// Also trust the public web roots (Amazon Trust Services among them), which RDS Proxy's
    /// certificates chain to.
    pub trust_public_roots: bool,
    pub statement_timeout: Duration,
    pub connect_timeout: Duration,
    pub pool_size: usize,
    /// Further attempts after a transient error (connection lost, server restarting, ...).
    pub retries: u32,
}

impl PgSettings {
    pub fn new(host: &str, port: u16, database: &str, user: &str) -> Self {
        Self {
            host: host.into(),
            port,
            database: database.into(),
            user: user.into(),
            password: PasswordSource::None,
            ssl_mode: SslMode::VerifyFull,
            ca_file: None,
            trust_public_roots: false,
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            pool_size: 4,
            retries: 3,
        }
    }

    /// `host:port/database`, for messages.
    pub fn target(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }
}

/// A pool of read-only connections to the orders database. Cheap to clone; connects lazily.
#[derive(Clone)]
pub struct Pg {
    inner: Arc<Inner>,
}

struct Inner {
    settings: PgSettings,
    pool: Pool<Manager>,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg").field("target", &self.inner.settings.target()).finish()
    }
}

impl Pg {
    /// Checks the settings (and reads the CA file); connects on first use. `sdk` is needed
    /// for secrets and IAM tokens.
    pub fn new(settings: PgSettings, sdk: Option<SdkConfig>) -> Result<Self, PgError> {
        let tls = match settings.ssl_mode {
            SslMode::VerifyFull => Some(tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(&settings)?)),
            SslMode::Disable => {
                tracing::warn!(target = %settings.target(), "sslmode=disable: the orders database is reached over plain TCP, unencrypted and unauthenticated");
                None
            }
        };
        let credentials =
            CredentialSource::new(settings.password.clone(), &settings.user, &settings.host, settings.port, sdk);
        let manager = Manager { settings: settings.clone(), credentials, tls };
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .wait_timeout(Some(settings.connect_timeout * 2))
            .create_timeout(Some(settings.connect_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| PgError::Config(e.to_string()))?;
        Ok(Self { inner: Arc::new(Inner { settings, pool }) })
    }

    pub fn settings(&self) -> &PgSettings {
        &self.inner.settings
    }

    /// Runs a read-only statement with text parameters (cast in the statement, `$1::text`)
    /// and returns its rows.
    pub async fn query(&self, statement: &str, params: &[String]) -> Result<Vec<Row>, PgError> {
        let rows = self.query_stream(statement, params.to_vec()).await?;
        rows.collect::<Vec<_>>().await.into_iter().collect()
    }

    /// Runs a read-only statement and streams its rows. Transient errors before the first
    /// row are retried with backoff.
    pub async fn query_stream(
        &self,
        statement: &str,
        params: Vec<String>,
    ) -> Result<BoxStream<'static, Result<Row, PgError>>, PgError> {
        let settings = &self.inner.settings;
        let span = tracing::info_span!(
            "pg.query",
            otel.name = %statement_name(statement, &settings.database),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            db.system = "postgresql",
            db.name = %settings.database,
            db.user = %settings.user,
            db.statement = %statement,
            net.peer.name = %settings.host,
            net.peer.port = settings.port,
            rows = tracing::field::Empty,
        );
        let mut attempt = 0;
        let (client, rows) = loop {
            let result = self.start(statement, &params).instrument(span.clone()).await;
            match result {
                Ok(started) => break started,
                Err((e, transient)) if transient && attempt < settings.retries => {
                    attempt += 1;
                    let delay = Duration::from_millis(100 * 2u64.pow(attempt.min(6)));
                    tracing::warn!(parent: &span, error = %e, attempt, ?delay, "orders database: transient error; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err((e, _)) => {
                    span.record("otel.status_code", "ERROR");
                    return Err(e);
                }
            }
        };
        // The connection stays out of the pool until the last row is read.
        let state = (client, Box::pin(rows), span, 0usize);
        let rows = futures::stream::unfold(Some(state), |state| async move {
            let (client, mut rows, span, count) = state?;
            match rows.next().await {
                Some(Ok(row)) => Some((Ok(row), Some((client, rows, span, count + 1)))),
                Some(Err(e)) => {
                    span.record("otel.status_code", "ERROR");
                    Some((Err(PgError::Query(describe(&e))), None))
                }
                None => {
                    span.record("rows", count);
                    None
                }
            }
        });
        Ok(rows.boxed())
    }

    /// Takes a connection and starts the statement; the error says whether to retry.
    async fn start(
        &self,
        statement: &str,
        params: &[String],
    ) -> Result<(managed::Object<Manager>, tokio_postgres::RowStream), (PgError, bool)> {
        let settings = &self.inner.settings;
        let client = self.inner.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => {
                let transient = matches!(e, PgError::Connect { .. });
                (e, transient)
            }
            PoolError::Timeout(_) => (PgError::Timeout(settings.connect_timeout), true),
            other => (PgError::Connect { target: settings.target(), message: other.to_string() }, false),
        })?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        match client.query_raw(statement, params).await {
            Ok(rows) => Ok((client, rows)),
            Err(e) => {
                let transient = is_transient(&e);
                if transient {
                    // Do not hand this connection out again.
                    let _ = managed::Object::take(client);
                }
                Err((PgError::Query(describe(&e)), transient))
            }
        }
    }
}

/// `SELECT shop`: the span name X-Ray shows for a statement.
fn statement_name(statement: &str, database: &str) -> String {
    let verb = statement.split_whitespace().next().unwrap_or("SQL").to_ascii_uppercase();
    format!("{verb} {database}")
}

/// The database's own message (with its SQLSTATE), or the error chain.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => logyard_core::error_chain(e),
    }
}

/// Errors worth another attempt: a lost connection, a server shutting down or starting,
/// serialization failures, too many connections.
fn is_transient(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "53300")
        }
        None => e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

fn tls_config(settings: &PgSettings) -> Result<rustls::ClientConfig, PgError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| PgError::Config(format!("reading the CA bundle {}: {e}", path.display())))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| PgError::Config(format!("the CA bundle {}: {e}", path.display())))?;
            roots.add(cert).map_err(|e| PgError::Config(format!("the CA bundle {}: {e}", path.display())))?;
        }
        if roots.is_empty() {
            return Err(PgError::Config(format!("the CA bundle {} holds no certificate", path.display())));
        }
    }
    if settings.trust_public_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if roots.is_empty() {
        return Err(PgError::Config(
            "sslmode=verify-full needs ca_file (for RDS, global-bundle.pem) or trust_public_roots = true (RDS Proxy)"
                .into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Makes and checks the pool's connections.
struct Manager {
    settings: PgSettings,
    credentials: CredentialSource,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl managed::Manager for Manager {
    type Type = tokio_postgres::Client;
    type Error = PgError;

    async fn create(&self) -> Result<tokio_postgres::Client, PgError> {
        let login = self.credentials.login().await?;
        match self.connect(&login).await {
            // A rotated secret, or an expired token: read it again, once.
            Err(PgError::Auth { .. })
                if matches!(self.credentials.source(), PasswordSource::Secret(_) | PasswordSource::IamToken { .. }) =>
            {
                tracing::warn!(target = %self.settings.target(), "the orders database refused the cached credentials; reading them again");
                self.credentials.invalidate().await;
                let login = self.credentials.login().await?;
                self.connect(&login).await
            }
            other => other,
        }
    }

    async fn recycle(&self, client: &mut tokio_postgres::Client, _: &Metrics) -> RecycleResult<PgError> {
        if client.is_closed() { Err(RecycleError::message("the connection is closed")) } else { Ok(()) }
    }
}

impl Manager {
    async fn connect(&self, login: &Login) -> Result<tokio_postgres::Client, PgError> {
        let s = &self.settings;
        let host = login.host.as_deref().unwrap_or(&s.host);
        let port = login.port.unwrap_or(s.port);
        let dbname = login.dbname.as_deref().unwrap_or(&s.database);
        let target = format!("{host}:{port}/{dbname}");
        let mut config = tokio_postgres::Config::new();
        config
            .host(host)
            .port(port)
            .dbname(dbname)
            .user(&login.user)
            .application_name("logyard")
            .connect_timeout(s.connect_timeout)
            .keepalives(true)
            .options(format!(
                "-c default_transaction_read_only=on -c statement_timeout={} -c TimeZone=UTC",
                s.statement_timeout.as_millis()
            ));
        if let Some(password) = &login.password {
            config.password(password);
        }
        let failed = |e: tokio_postgres::Error| match (e.as_db_error(), tls_error(&e)) {
            (Some(db), _) if db.code().code().starts_with("28") => {
                PgError::Auth { target: target.clone(), user: login.user.clone(), message: db.message().to_owned() }
            }
            (_, Some(tls)) => PgError::Tls { target: target.clone(), message: explain_tls(tls, host) },
            _ => PgError::Connect { target: target.clone(), message: describe(&e) },
        };
        let client = match &self.tls {
            Some(tls) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                let (client, connection) = config.connect(tls.clone()).await.map_err(failed)?;
                tokio::spawn(watch(connection, target.clone()));
                client
            }
            None => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(failed)?;
                tokio::spawn(watch(connection, target.clone()));
                client
            }
        };
        tracing::debug!(%target, "connected to the orders database");
        Ok(client)
    }
}

async fn watch<F: std::future::Future<Output = Result<(), tokio_postgres::Error>>>(connection: F, target: String) {
    if let Err(e) = connection.await {
        tracing::warn!(%target, error = %describe(&e), "an orders database connection ended");
    }
}

/// The rustls error behind a failed connection, if that is what it was.
fn tls_error(e: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // An io::Error's source skips the error it wraps: look inside.
        if let Some(tls) =
            s.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()?.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        source = s.source();
    }
    None
}

/// A TLS failure, with what to check.
fn explain_tls(e: &rustls::Error, host: &str) -> String {
    use rustls::CertificateError as C;
    let hint = match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            " (the server's certificate is not signed by a trusted CA: is ca_file the CA bundle of this server? For RDS, global-bundle.pem)".to_owned()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            format!(" (the server's certificate is not for the host name {host:?}: connect by the name the certificate carries)")
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            " (the server's certificate has expired)".to_owned()
        }
        _ => String::new(),
    };
    format!("{e}{hint}")
}
