//! SQL over the PostgreSQL wire protocol, for psql, Grafana's PostgreSQL data source and every
//! PostgreSQL driver: the protocol is `pgwire`'s, results are encoded from Arrow by
//! `arrow-pg`, statements are read by `datafusion-pg-catalog`'s PostgreSQL-compatible parser
//! and run by the same [`QueryEngine`](logyard_query::QueryEngine) as `POST /api/v1/query`,
//! with a `pg_catalog` that lists the streams the token may read.
//!
//! - **Security as the HTTP API**: TLS with the server's certificate (answering SSLRequest);
//!   `require_tls` refuses plain connections. The password is a token (the user name is only
//!   shown); it is asked for in clear text, so only over TLS or from loopback. A token without
//!   the `query` scope is refused at login (42501); a stream it may not read does not exist
//!   (42P01). Read-only, the query time and memory limits, and `limits.max_concurrent_queries`
//!   (shared with HTTP) apply to every statement.
//! - **Sessions**: `SET`, `RESET`, `BEGIN`/`COMMIT`/`ROLLBACK` and `DISCARD` are accepted and
//!   change nothing (every statement reads the latest committed data); `SHOW` answers the
//!   settings clients ask for. Anything else that is not a query is refused with a SQLSTATE,
//!   never a dropped connection.

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::ParamValues;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use logyard_auth::{Principal, Scope};
use logyard_query::{QueryError, RunningQuery};

use crate::state::AppState;

mod rows;

/// How the listener treats connections.
#[derive(Debug, Clone, Default)]
pub struct PgSettings {
    /// Refuse connections that do not ask for TLS.
    pub require_tls: bool,
}

/// Serves PostgreSQL clients until `shutdown` resolves; connections open then are closed.
pub async fn run_pgwire(
    listener: TcpListener,
    state: AppState,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    settings: PgSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cancels = Arc::new(CancelKeys::default());
    let settings = Arc::new(settings);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a PostgreSQL connection");
                    continue;
                }
            },
            // Reap finished connections.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let _ = socket.set_nodelay(true);
        // The certificate as it is now (it is reloaded when its files change).
        let acceptor = tls.as_ref().map(|t| tokio_rustls::TlsAcceptor::from(t.get_inner()));
        let handlers = Handlers(Arc::new(Session {
            state: state.clone(),
            settings: settings.clone(),
            cancels: cancels.clone(),
            peer,
            login: Arc::new(OnceLock::new()),
        }));
        connections.spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, acceptor, handlers).await {
                tracing::debug!(%peer, error = %e, "PostgreSQL connection ended");
            }
        });
    }
    connections.shutdown().await;
    Ok(())
}

/// One client connection.
#[derive(Clone)]
struct Session {
    state: AppState,
    settings: Arc<PgSettings>,
    cancels: Arc<CancelKeys>,
    peer: SocketAddr,
    /// Who signed in, and their running statement (set once, at login).
    login: Arc<OnceLock<Login>>,
}

struct Login {
    principal: Principal,
    running: Arc<Running>,
}

/// The statement a connection runs now, to be stopped by a CancelRequest.
#[derive(Default)]
struct Running(Mutex<CancellationToken>);

impl Running {
    /// A new statement starts: the token that stops it.
    fn start(&self) -> CancellationToken {
        let token = CancellationToken::new();
        *self.0.lock().expect("cancel token") = token.clone();
        token
    }

    fn cancel(&self) {
        self.0.lock().expect("cancel token").cancel();
    }
}

/// The cancel keys (process id, secret) handed to the open connections.
///
/// pgwire's own registry only races a statement's planning against a cancel; logyard's
/// results are computed while they stream, so the token here also ends the row stream.
#[derive(Default)]
struct CancelKeys(Mutex<HashMap<(i32, bytes::Bytes), Arc<Running>>>);

/// Forgets a connection's cancel key when the connection ends.
struct CancelKeyGuard {
    keys: Arc<CancelKeys>,
    key: (i32, bytes::Bytes),
}

impl Drop for CancelKeyGuard {
    fn drop(&mut self) {
        self.keys.0.lock().expect("cancel keys").remove(&self.key);
    }
}

#[async_trait]
impl CancelHandler for CancelKeys {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes());
        let running = self.0.lock().expect("cancel keys").get(&key).cloned();
        if let Some(running) = running {
            running.cancel();
        }
    }
}

struct Handlers(Arc<Session>);

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.0.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.0.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.0.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.0.cancels.clone()
    }
}

fn error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), message.into())))
}

fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), code.into(), message.into())))
}

/// A query error as PostgreSQL would report it (its SQLSTATE).
fn query_error(e: QueryError) -> PgWireError {
    let message = e.to_string();
    let code = match &e {
        QueryError::NoStream(_) => "42P01",
        QueryError::InvalidSql(m) | QueryError::Execution(m)
            if m.contains("not found") && (m.contains("table") || m.contains("Table")) =>
        {
            "42P01"
        }
        QueryError::InvalidSql(m) if m.contains("sql parser error") || m.contains("SQL error") => "42601",
        QueryError::InvalidSql(_) => "42000",
        QueryError::ReadOnly(_) => "25006",
        QueryError::Timeout(_) => "57014",
        QueryError::MemoryLimit { .. } => "53200",
        QueryError::BadRequest(_) | QueryError::Search(_) => "22023",
        QueryError::Execution(_) | QueryError::Encode(_) => "XX000",
        QueryError::Storage(_) => "58030",
    };
    error(code, message)
}

impl Session {
    fn login(&self) -> PgWireResult<&Login> {
        self.login.get().ok_or_else(|| fatal("28000", "not signed in"))
    }

    fn signed_in<C>(&self, client: &mut C, principal: Principal) -> PgWireResult<()>
    where
        C: ClientInfo,
    {
        if !principal.has(Scope::Query) {
            return Err(fatal("42501", format!("token {:?} does not have the query scope", principal.name)));
        }
        static KEYS: std::sync::LazyLock<RandomPidSecretKeyGenerator> =
            std::sync::LazyLock::new(RandomPidSecretKeyGenerator::default);
        let (pid, secret) = KEYS.generate(&*client);
        client.set_pid_and_secret_key(pid, secret.clone());
        // Registered, so that a CancelRequest with this key stops the running statement.
        let running = Arc::new(Running::default());
        let key = (pid, secret.to_bytes());
        self.cancels.0.lock().expect("cancel keys").insert(key.clone(), running.clone());
        client.session_extensions().insert(CancelKeyGuard { keys: self.cancels.clone(), key });
        let _ = self.login.set(Login { principal, running });
        Ok(())
    }

    /// Runs one statement for this session's token.
    async fn run(
        &self,
        statement: SqlStatement,
        params: Option<ParamValues>,
        format: &Format,
    ) -> PgWireResult<Response> {
        if let Some(local) = local_command(&statement) {
            return Ok(local);
        }
        let (statement, copy) = copy_out(statement)?;
        let login = self.login()?;
        let slot = self.state.query_slot().map_err(|message| error("53300", message))?;
        let cancel = login.running.start();
        let span = tracing::info_span!(
            "pgwire.statement",
            otel.kind = "server",
            client.address = %self.peer,
            user.name = %login.principal.name,
        );
        let started = Instant::now();
        let principal = login.principal.clone();
        let planned = tokio::select! {
            result = self.state.query.execute_postgres(statement, params, &principal).instrument(span.clone()) => {
                result.map_err(query_error)
            }
            () = cancel.cancelled() => Err(canceled()),
        };
        let took = started.elapsed();
        self.state.http_metrics.observe_query(took, planned.is_ok());
        span.in_scope(|| {
            let sqlstate = planned.as_ref().err().map(|e| match e {
                PgWireError::UserError(info) => info.code.clone(),
                _ => "XX000".into(),
            });
            tracing::debug!(token = %login.principal.name, client = %self.peer, sqlstate, ms = took.as_millis() as u64, "statement");
        });
        let running = planned?;
        Ok(match copy {
            Some(copy) => Response::CopyOut(copy_rows(running, copy, slot, cancel)?),
            None => Response::Query(encode(running, format, slot, cancel)?),
        })
    }
}

fn canceled() -> PgWireError {
    error("57014", "canceling statement due to user request")
}

/// `rows`, ended with "canceling statement" as soon as `cancel` fires (dropping the query's
/// stream stops its work); `slot` is held until then.
fn cancellable<T: Send + 'static>(
    rows: impl futures::Stream<Item = PgWireResult<T>> + Send + 'static,
    cancel: CancellationToken,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> impl futures::Stream<Item = PgWireResult<T>> + Send + 'static {
    let fired = cancel.clone();
    let tail = futures::stream::once(async move {
        drop(slot);
        fired.is_cancelled().then(|| Err(canceled()))
    })
    .filter_map(futures::future::ready);
    rows.take_until(cancel.cancelled_owned()).chain(tail)
}

/// A query's batches as PostgreSQL rows, streamed.
fn encode(
    running: RunningQuery,
    format: &Format,
    slot: tokio::sync::OwnedSemaphorePermit,
    cancel: CancellationToken,
) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(arrow_pg::datatypes::arrow_schema_to_pg_fields(&running.schema, format, None)?);
    let row_fields = fields.clone();
    let rows = running
        .stream
        .map(move |batch| {
            let rows = match batch {
                Ok(batch) => rows::encode_batch(&batch, &row_fields),
                Err(e) => Err(query_error(QueryError::from_datafusion(e))),
            };
            let (rows, error) = match rows {
                Ok(rows) => (rows, None),
                Err(e) => (Vec::new(), Some(Err(e))),
            };
            futures::stream::iter(rows.into_iter().map(Ok).chain(error))
        })
        .flatten();
    Ok(QueryResponse::new(fields, cancellable(rows, cancel, slot)))
}

/// How `COPY ... TO STDOUT` writes rows (PostgreSQL's options and defaults).
#[derive(Debug, Clone, PartialEq)]
enum CopyFormat {
    Text { delimiter: char, null: String },
    Csv { delimiter: char, null: String, quote: char, escape: Option<char>, header: bool },
    Binary,
}

/// Splits `COPY (query) TO STDOUT` and `COPY stream [(columns)] TO STDOUT` into the query
/// and its output format; any other statement is returned as it is. COPY to a file or a
/// program, and COPY FROM, are refused.
fn copy_out(statement: SqlStatement) -> PgWireResult<(SqlStatement, Option<CopyFormat>)> {
    use datafusion::sql::sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget};
    let SqlStatement::Copy { source, to, target, options, legacy_options, .. } = statement else {
        return Ok((statement, None));
    };
    if !to {
        return Err(error("25006", "cannot execute COPY FROM: logyard answers queries only"));
    }
    if target != CopyTarget::Stdout {
        return Err(error("0A000", "COPY writes only TO STDOUT here (psql's \\copy writes a client-side file)"));
    }
    let query = match source {
        CopySource::Query(query) => SqlStatement::Query(query),
        CopySource::Table { table_name, columns } => {
            let columns = if columns.is_empty() {
                "*".to_owned()
            } else {
                columns.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            };
            let mut parsed = parse(&format!("SELECT {columns} FROM {table_name}"))?;
            parsed.pop().ok_or_else(|| error("42601", "COPY names no table"))?
        }
    };
    let unsupported = |what: &dyn std::fmt::Display| error("0A000", format!("COPY option {what} is not supported"));
    let (mut kind, mut delimiter, mut null, mut quote, mut escape, mut header) =
        ("text".to_owned(), None, None, None, None, false);
    for option in &options {
        match option {
            CopyOption::Format(f) => kind = f.value.to_lowercase(),
            CopyOption::Delimiter(c) => delimiter = Some(*c),
            CopyOption::Null(n) => null = Some(n.clone()),
            CopyOption::Header(h) => header = *h,
            CopyOption::Quote(c) => quote = Some(*c),
            CopyOption::Escape(c) => escape = Some(*c),
            CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            other => return Err(unsupported(other)),
        }
    }
    for option in &legacy_options {
        match option {
            CopyLegacyOption::Binary => kind = "binary".into(),
            CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
            CopyLegacyOption::Null(n) => null = Some(n.clone()),
            CopyLegacyOption::Header => header = true,
            CopyLegacyOption::Csv(csv) => {
                kind = "csv".into();
                for option in csv {
                    match option {
                        CopyLegacyCsvOption::Header => header = true,
                        CopyLegacyCsvOption::Quote(c) => quote = Some(*c),
                        CopyLegacyCsvOption::Escape(c) => escape = Some(*c),
                        other => return Err(unsupported(other)),
                    }
                }
            }
            other => return Err(unsupported(other)),
        }
    }
    let format = match kind.as_str() {
        "text" => CopyFormat::Text { delimiter: delimiter.unwrap_or('\t'), null: null.unwrap_or_else(|| "\\N".into()) },
        "csv" => CopyFormat::Csv {
            delimiter: delimiter.unwrap_or(','),
            null: null.unwrap_or_default(),
            quote: quote.unwrap_or('"'),
            escape,
            header,
        },
        "binary" => CopyFormat::Binary,
        other => return Err(error("22023", format!("COPY format \"{other}\" not recognized"))),
    };
    Ok((query, Some(format)))
}

/// A query's rows as `COPY ... TO STDOUT` data, one CopyData message a row.
fn copy_rows(
    running: RunningQuery,
    format: CopyFormat,
    slot: tokio::sync::OwnedSemaphorePermit,
    cancel: CancellationToken,
) -> PgWireResult<pgwire::api::results::CopyResponse> {
    use pgwire::api::results::{CopyCsvOptions, CopyEncoder, CopyTextOptions};
    let schema = running.schema.clone();
    let binary = format == CopyFormat::Binary;
    let wire = if binary { Format::UnifiedBinary } else { Format::UnifiedText };
    let fields = Arc::new(arrow_pg::datatypes::arrow_schema_to_pg_fields(&schema, &wire, None)?);
    let columns = fields.len();
    let mut header = None;
    let mut encoder = match &format {
        CopyFormat::Binary => CopyEncoder::new_binary(fields.clone()),
        CopyFormat::Text { delimiter, null } => CopyEncoder::new_text(
            fields.clone(),
            CopyTextOptions { delimiter: delimiter.to_string().into(), null_string: null.as_str().into() },
        ),
        CopyFormat::Csv { delimiter, null, quote, escape, header: with_header } => {
            if *with_header {
                let names: Vec<String> = schema
                    .fields()
                    .iter()
                    .map(|f| csv_quote(f.name(), *delimiter, *quote, escape.unwrap_or(*quote)))
                    .collect();
                header = Some(format!("{}\n", names.join(&delimiter.to_string())));
            }
            CopyEncoder::new_csv(
                fields.clone(),
                CopyCsvOptions {
                    delimiter: delimiter.to_string().into(),
                    quote: quote.to_string().into(),
                    escape: escape.unwrap_or(*quote).to_string().into(),
                    null_string: null.as_str().into(),
                    force_quote: Vec::new(),
                },
            )
        }
    };
    let header =
        futures::stream::iter(header.map(|h| Ok(pgwire::messages::copy::CopyData::new(bytes::Bytes::from(h)))));
    let rows = running
        .stream
        .map(move |batch| {
            let batch = batch.map_err(|e| query_error(QueryError::from_datafusion(e)))?;
            let mut out = Vec::with_capacity(batch.num_rows());
            for row in 0..batch.num_rows() {
                for (column, field) in fields.iter().enumerate() {
                    arrow_pg::encoder::encode_value(
                        &mut encoder,
                        batch.column(column),
                        row,
                        schema.field(column),
                        field,
                    )?;
                }
                out.push(Ok(encoder.take_copy()));
            }
            Ok(futures::stream::iter(out))
        })
        .map(|rows: PgWireResult<_>| match rows {
            Ok(rows) => rows.left_stream(),
            Err(e) => futures::stream::iter([Err(e)]).right_stream(),
        })
        .flatten();
    let stream = header.chain(cancellable(rows, cancel, slot));
    Ok(pgwire::api::results::CopyResponse::new(i8::from(binary), columns, stream))
}

/// One CSV value, quoted when it must be (as PostgreSQL writes a header).
fn csv_quote(value: &str, delimiter: char, quote: char, escape: char) -> String {
    if value.is_empty() || value.contains([delimiter, quote, '\r', '\n']) {
        let escaped = value.replace(quote, &format!("{escape}{quote}"));
        format!("{quote}{escaped}{quote}")
    } else {
        value.to_owned()
    }
}

/// What a session statement (not a query) answers, if `statement` is one.
fn local_command(statement: &SqlStatement) -> Option<Response> {
    Some(match statement {
        SqlStatement::Set(_) => Response::Execution(Tag::new("SET")),
        SqlStatement::StartTransaction { .. } => Response::TransactionStart(Tag::new("BEGIN")),
        SqlStatement::Commit { .. } => Response::TransactionEnd(Tag::new("COMMIT")),
        SqlStatement::Rollback { .. } => Response::TransactionEnd(Tag::new("ROLLBACK")),
        SqlStatement::Discard { .. } => Response::Execution(Tag::new("DISCARD ALL")),
        SqlStatement::ShowVariable { variable } => {
            let name = variable.iter().map(|i| i.value.to_lowercase()).collect::<Vec<_>>().join(".");
            show(&name)
        }
        _ => return None,
    })
}

fn show(name: &str) -> Response {
    let Some(value) = logyard_query::postgres::setting(name) else {
        return Response::Error(Box::new(ErrorInfo::new(
            "ERROR".into(),
            "42704".into(),
            format!("unrecognized configuration parameter \"{name}\""),
        )));
    };
    let fields = Arc::new(vec![FieldInfo::new(name.into(), None, None, Type::TEXT, FieldFormat::Text)]);
    let mut encoder = DataRowEncoder::new(fields.clone());
    let row = encoder.encode_field(&Some(value)).map(|()| encoder.take_row());
    Response::Query(QueryResponse::new(fields, futures::stream::iter([row])))
}

/// Reads statements as PostgreSQL writes them (with rewrites for what clients send to
/// `pg_catalog`).
fn parse(sql: &str) -> PgWireResult<Vec<SqlStatement>> {
    static PARSER: OnceLock<datafusion_pg_catalog::sql::PostgresCompatibilityParser> = OnceLock::new();
    PARSER
        .get_or_init(datafusion_pg_catalog::sql::PostgresCompatibilityParser::new)
        .parse(sql)
        .map_err(|e| error("42601", format!("syntax error: {e}")))
}

#[async_trait]
impl StartupHandler for Session {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.settings.require_tls && !client.is_secure() {
                    return Err(fatal("28000", "this server takes only TLS connections (sslmode=require or stronger)"));
                }
                if !self.state.auth.required() {
                    self.signed_in(client, Principal::anonymous())?;
                    return self.ready(client).await;
                }
                if !client.is_secure() && !self.peer.ip().is_loopback() {
                    return Err(fatal(
                        "28000",
                        "the password (a token) is only taken over TLS: connect with sslmode=require or stronger",
                    ));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client.send(PgWireBackendMessage::Authentication(Authentication::CleartextPassword)).await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let password = password.into_password()?;
                let user = client.metadata().get("user").cloned().unwrap_or_default();
                let tokens = self.state.auth.tokens.current();
                let Some(principal) = tokens.check_secret(password.password.as_bytes()) else {
                    self.state.http_metrics.auth_failure("unknown");
                    return Err(PgWireError::InvalidPassword(user));
                };
                self.signed_in(client, principal)?;
                self.ready(client).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

impl Session {
    async fn ready<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // The application and user names are the client's own.
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = logyard_query::postgres::SERVER_VERSION.into();
        parameters.is_superuser = false;
        parameters.default_transaction_read_only = true;
        // AuthenticationOk, the parameters, the cancel key, ReadyForQuery.
        finish_authentication(client, &parameters).await
    }
}

#[async_trait]
impl SimpleQueryHandler for Session {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = parse(query)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut out = Vec::with_capacity(statements.len());
        for statement in statements {
            match self.run(statement, None, &Format::UnifiedText).await {
                Ok(r) => out.push(r),
                Err(PgWireError::UserError(e)) => {
                    out.push(Response::Error(e));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// A statement parsed and planned for `Describe`: its result columns and parameter types.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    statement: SqlStatement,
    /// None for a session command (`SET`, ...), which has no columns.
    schema: Option<Arc<Schema>>,
    /// The types of `$1`, `$2`, ... as the plan infers them (None: unknown).
    parameters: Vec<Option<DataType>>,
}

#[async_trait]
impl QueryParser for Session {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, _client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = parse(sql)?;
        if statements.len() > 1 {
            return Err(error("42601", "cannot insert multiple commands into a prepared statement"));
        }
        let Some(statement) = statements.pop() else { return Ok(None) };
        if local_command(&statement).is_some() {
            let schema = matches!(statement, SqlStatement::ShowVariable { .. }).then(|| {
                Arc::new(Schema::new(vec![datafusion::arrow::datatypes::Field::new("setting", DataType::Utf8, true)]))
            });
            return Ok(Some(Prepared { statement, schema, parameters: Vec::new() }));
        }
        if matches!(statement, SqlStatement::Copy { .. }) {
            // COPY's rows are described by its CopyOutResponse.
            return Ok(Some(Prepared { statement, schema: None, parameters: Vec::new() }));
        }
        let principal = self.login()?.principal.clone();
        let plan = self.state.query.describe_postgres(statement.clone(), &principal).await.map_err(query_error)?;
        let types = plan.get_parameter_types().map_err(|e| query_error(QueryError::from_datafusion(e)))?;
        let mut numbered: Vec<(usize, Option<DataType>)> = types
            .into_iter()
            .filter_map(|(name, t)| name.trim_start_matches('$').parse::<usize>().ok().map(|n| (n, t)))
            .collect();
        numbered.sort_by_key(|(n, _)| *n);
        let count = numbered.last().map_or(0, |(n, _)| *n);
        let mut parameters = vec![None; count];
        for (n, t) in numbered {
            parameters[n - 1] = t;
        }
        let schema = Arc::new(plan.schema().as_arrow().clone());
        Ok(Some(Prepared { statement, schema: Some(schema), parameters }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        stmt.parameters
            .iter()
            .map(|t| match t {
                Some(t) => arrow_pg::datatypes::into_pg_type(t),
                None => Ok(Type::UNKNOWN),
            })
            .collect()
    }

    fn get_result_schema(&self, stmt: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.schema {
            Some(schema) => {
                arrow_pg::datatypes::arrow_schema_to_pg_fields(schema, format.unwrap_or(&Format::UnifiedText), None)
            }
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Session {
    type Statement = Prepared;
    type QueryParser = Session;

    fn query_parser(&self) -> Arc<Session> {
        // The session parses its own statements (it knows who is signed in).
        Arc::new(self.clone())
    }

    async fn do_query<C>(&self, _client: &mut C, portal: &Portal<Prepared>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let params = if prepared.parameters.is_empty() {
            None
        } else {
            let types: Vec<Option<&DataType>> = prepared.parameters.iter().map(Option::as_ref).collect();
            Some(arrow_pg::datatypes::df::deserialize_parameters(portal, &types)?)
        };
        self.run(prepared.statement.clone(), params, &portal.result_column_format).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_statements_are_answered_without_the_engine() {
        let one = |sql: &str| parse(sql).unwrap().remove(0);
        for (sql, tag) in [
            ("SET extra_float_digits = 3", "SET"),
            ("SET application_name = 'psql'", "SET"),
            ("BEGIN", "BEGIN"),
            ("COMMIT", "COMMIT"),
            ("ROLLBACK", "ROLLBACK"),
        ] {
            match local_command(&one(sql)) {
                Some(Response::Execution(t) | Response::TransactionStart(t) | Response::TransactionEnd(t)) => {
                    assert!(format!("{t:?}").contains(tag), "{sql}: {t:?}")
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
        assert!(matches!(local_command(&one("SHOW server_version_num")), Some(Response::Query(_))));
        assert!(matches!(local_command(&one("SHOW nonsense")), Some(Response::Error(e)) if e.code == "42704"));
        assert!(local_command(&one("SELECT 1")).is_none());
    }

    #[test]
    fn errors_carry_postgresql_codes() {
        let code = |e: QueryError| match query_error(e) {
            PgWireError::UserError(info) => info.code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(QueryError::NoStream("x".into())), "42P01");
        assert_eq!(code(QueryError::ReadOnly("no".into())), "25006");
        assert_eq!(code(QueryError::Timeout(std::time::Duration::from_secs(1))), "57014");
    }
}
