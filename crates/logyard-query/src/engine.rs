//! Read-only SQL over the stream tables, with a time limit and a memory limit per query.
//!
//! Each query gets its own DataFusion session whose memory pool is capped; the streams it
//! names are loaded at their latest committed version and registered under their names.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::SchemaProvider;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, MemoryCatalogProviderList, MemorySchemaProvider};
use datafusion::common::ParamValues;
use datafusion::common::TableReference;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::TaskContext;
use datafusion::execution::cache::cache_manager::{CacheManagerConfig, FileMetadataCache};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::RecordBatchStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::{Stream, StreamExt};
use tracing::Instrument;

use logyard_auth::Principal;
use logyard_core::StreamName;
use logyard_storage::Tables;

use crate::QueryError;

/// Limits and defaults of the query engine.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// A query (planning and streaming its results) ends with an error after this long.
    pub timeout: Duration,
    /// A query that needs more memory than this ends with an error.
    pub memory_limit: usize,
    /// Rows returned by the `json` format before it stops and says so.
    pub max_json_rows: usize,
    /// Threads a query may use (DataFusion target partitions); 0 = the number of cores.
    pub target_partitions: usize,
    /// The fields searches look for words in.
    pub text_fields: crate::TextFields,
    /// DataFusion settings every statement runs with, as `SET` would take them (e.g.
    /// `datafusion.execution.parquet.pushdown_filters`, `true`): checked by
    /// [`check_datafusion_settings`].
    pub datafusion: Vec<(String, String)>,
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            memory_limit: 1 << 30,
            max_json_rows: 10_000,
            target_partitions: 0,
            text_fields: crate::TextFields::default(),
            datafusion: Vec::new(),
        }
    }
}

/// Applies DataFusion settings (keys with or without their `datafusion.` prefix) to `config`;
/// an error names the setting that DataFusion refused and why.
fn apply_datafusion_settings(config: &mut SessionConfig, settings: &[(String, String)]) -> Result<(), String> {
    for (key, value) in settings {
        let full = if key.starts_with("datafusion.") { key.clone() } else { format!("datafusion.{key}") };
        config.options_mut().set(&full, value).map_err(|e| format!("{key} = {value:?}: {e}"))?;
    }
    Ok(())
}

/// Whether DataFusion takes every setting (unknown keys and values of the wrong type are
/// refused), so that a bad one stops the server at start, not each query.
pub fn check_datafusion_settings(settings: &[(String, String)]) -> Result<(), String> {
    apply_datafusion_settings(&mut SessionConfig::new(), settings)
}

/// Bytes of Parquet footers and page indexes kept between queries.
const METADATA_CACHE_BYTES: usize = 64 << 20;

/// Runs SQL over the stream tables (and other schemas, such as the orders database's).
#[derive(Clone)]
pub struct QueryEngine {
    tables: Arc<Tables>,
    options: QueryOptions,
    /// Schemas beside `public`, by name.
    schemas: Vec<(String, Arc<dyn SchemaProvider>)>,
    /// Parquet footers (schema, statistics, page indexes) of the files queries read, by path,
    /// shared by every query: the files of a Delta table never change, so a footer is read
    /// once, not once per query. It holds no rows, and a query only looks up the files of
    /// the streams it may see.
    metadata_cache: Arc<FileMetadataCache>,
    /// The sessions statements start from, one per [`Flavor`], each made on first use.
    ///
    /// What every session of a flavour shares, made once: DataFusion's functions and ours,
    /// the optimizer rules, the configuration, the object stores and the footer cache.
    /// Building that took longer than planning a small query. A statement's session is a copy
    /// with catalogs of its own (so no table one statement registers is seen by another) and
    /// runs with a memory pool of its own (so the memory limit is per statement).
    bases: Arc<[OnceLock<SessionState>; 2]>,
    /// How tables are seen by a reader with `deny_fields` or `mask_fields`.
    protector: crate::protect::Protector,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").field("tables", &self.tables).field("options", &self.options).finish()
    }
}

/// A running query: its schema and a stream of batches that ends with an error at the deadline.
pub struct RunningQuery {
    pub schema: SchemaRef,
    pub stream: SendableRecordBatchStream,
    pub started: Instant,
}

impl std::fmt::Debug for RunningQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningQuery").field("schema", &self.schema).finish()
    }
}

impl QueryEngine {
    pub fn new(tables: Arc<Tables>, options: QueryOptions) -> Self {
        let metadata_cache = Arc::new(DefaultCache::new(METADATA_CACHE_BYTES));
        let protector = crate::protect::Protector::new(None);
        Self { tables, options, schemas: Vec::new(), metadata_cache, bases: Arc::default(), protector }
    }

    /// Sets the key masked columns are hashed with for tokens with `mask_fields` (the
    /// masking key, so equal values hash alike on every replica).
    pub fn with_mask_key(mut self, key: Option<Arc<[u8]>>) -> Self {
        self.protector = crate::protect::Protector::new(key);
        self
    }

    /// Adds a schema of tables beside the streams, e.g. `pg` for the orders database.
    pub fn with_schema(mut self, name: &str, schema: Arc<dyn SchemaProvider>) -> Self {
        self.schemas.push((name.to_owned(), schema));
        self
    }

    /// What a column a token reads masked shows for the value whose text is `text` (as a
    /// query casts it to text); `None` when the server has no masking key.
    pub fn masked_value(&self, text: &str) -> Option<String> {
        self.protector.mask(text)
    }

    pub fn options(&self) -> &QueryOptions {
        &self.options
    }

    pub fn tables(&self) -> &Arc<Tables> {
        &self.tables
    }

    /// Builds what a first query would otherwise build while it waits: the sessions queries
    /// start from, and the latest snapshot of every stream's table (`at_once` loaded at a
    /// time). Returns how many tables were loaded; a table that fails to load is left to the
    /// first query that reads it, which reports the error.
    pub async fn warm(&self, at_once: usize) -> Result<usize, QueryError> {
        for flavor in [Flavor::Generic, Flavor::Postgres] {
            self.base_session(flavor)?;
        }
        let streams = self.tables.storage().list_streams().await?;
        let loaded = futures::stream::iter(streams)
            .map(|stream| async move {
                let loaded = self.tables.latest(&stream).await;
                if let Err(e) = &loaded {
                    tracing::warn!(%stream, error = %e, "loading the table ahead of queries failed");
                }
                matches!(loaded, Ok(Some(_)))
            })
            .buffer_unordered(at_once.max(1))
            .filter(|loaded| std::future::ready(*loaded))
            .count()
            .await;
        Ok(loaded)
    }

    /// Plans and starts a query. Fails at once on SQL that is not read-only.
    pub async fn execute(&self, sql: &str) -> Result<RunningQuery, QueryError> {
        self.execute_as(sql, &Principal::anonymous()).await
    }

    /// Like [`QueryEngine::execute`], as `reader` sees the tables: a stream it may not read is
    /// as absent as one that does not exist, and the columns it may not read are not there
    /// (or, masked, are keyed hashes).
    pub async fn execute_as(&self, sql: &str, reader: &Principal) -> Result<RunningQuery, QueryError> {
        let statement = parse_generic(sql)?;
        self.run(sql, statement, None, reader, Flavor::Generic).await
    }

    /// Runs one statement of a PostgreSQL client (the pgwire listener): the PostgreSQL
    /// dialect, a `pg_catalog` that lists the visible streams as tables, and `$n` parameters
    /// bound to `params`. Otherwise as [`QueryEngine::execute_as`].
    pub async fn execute_postgres(
        &self,
        statement: SqlStatement,
        params: Option<ParamValues>,
        reader: &Principal,
    ) -> Result<RunningQuery, QueryError> {
        let text = statement.to_string();
        self.run(&text, DfStatement::Statement(Box::new(statement)), params, reader, Flavor::Postgres).await
    }

    /// The plan of a PostgreSQL client's statement, without running it: its result columns
    /// and the types of its `$n` parameters (what `Describe` answers).
    pub async fn describe_postgres(
        &self,
        statement: SqlStatement,
        reader: &Principal,
    ) -> Result<LogicalPlan, QueryError> {
        let (_, plan) = self.prepare(DfStatement::Statement(Box::new(statement)), reader, Flavor::Postgres).await?;
        Ok(plan)
    }

    async fn run(
        &self,
        sql: &str,
        statement: DfStatement,
        params: Option<ParamValues>,
        reader: &Principal,
        flavor: Flavor,
    ) -> Result<RunningQuery, QueryError> {
        let started = Instant::now();
        let deadline = started + self.options.timeout;
        // The span lasts until the last batch is read; the statement text is capped.
        let span = tracing::info_span!(
            "query",
            db.system.name = "datafusion",
            db.query.text = truncate(sql, 2048),
            rows = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let planning = async {
            let (ctx, plan) = self.prepare(statement, reader, flavor).await?;
            let plan = match params {
                Some(values) => plan.with_param_values(values).map_err(QueryError::from_datafusion)?,
                None => plan,
            };
            let df = ctx.execute_logical_plan(plan).await.map_err(QueryError::from_datafusion)?;
            let physical = df.create_physical_plan().await.map_err(QueryError::from_datafusion)?;
            let task = TaskContext::from(&ctx.state()).with_runtime(self.statement_runtime(&ctx)?);
            datafusion::physical_plan::execute_stream(physical, Arc::new(task)).map_err(QueryError::from_datafusion)
        }
        .instrument(span.clone());
        let stream = match tokio::time::timeout(self.options.timeout, planning).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                span.record("otel.status_code", "ERROR");
                return Err(e);
            }
            Err(_) => {
                span.record("otel.status_code", "ERROR");
                return Err(QueryError::Timeout(self.options.timeout));
            }
        };
        let schema = stream.schema();
        let stream: SendableRecordBatchStream = Box::pin(Deadline {
            inner: stream,
            sleep: Box::pin(tokio::time::sleep_until(deadline.into())),
            limit: self.options.timeout,
            memory_limit: self.options.memory_limit,
            span,
            rows: 0,
        });
        Ok(RunningQuery { schema, stream, started })
    }

    /// Runs a query to the end, collecting every batch.
    pub async fn collect(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        use futures::TryStreamExt;
        let q = self.execute(sql).await?;
        let batches = q.stream.try_collect::<Vec<_>>().await.map_err(QueryError::from_datafusion)?;
        Ok((q.schema, batches))
    }

    /// A session for one statement, with the visible streams it names registered, and the
    /// statement's checked read-only plan.
    async fn prepare(
        &self,
        statement: DfStatement,
        reader: &Principal,
        flavor: Flavor,
    ) -> Result<(SessionContext, LogicalPlan), QueryError> {
        let mut state = self.base_session(flavor)?.clone();
        state.register_catalog_list(Arc::new(MemoryCatalogProviderList::new()));
        let catalog = Arc::new(MemoryCatalogProvider::new());
        catalog
            .register_schema("public", Arc::new(MemorySchemaProvider::new()))
            .map_err(QueryError::from_datafusion)?;
        for (name, schema) in &self.schemas {
            let schema = self.protector.schema(schema.clone(), reader.fields());
            catalog.register_schema(name, schema).map_err(QueryError::from_datafusion)?;
        }
        state.catalog_list().register_catalog(CATALOG.to_owned(), catalog);
        let ctx = SessionContext::new_with_state(state);
        if flavor == Flavor::Postgres {
            crate::postgres::install_catalog(&ctx, CATALOG).map_err(QueryError::from_datafusion)?;
        }
        let state = ctx.state();
        check_read_only(&statement)?;

        let references = state.resolve_table_references(&statement).map_err(QueryError::from_datafusion)?;
        // A statement that reads a catalog sees every visible stream there.
        let wants_catalog = matches!(&statement, DfStatement::Statement(s) if matches!(s.as_ref(), SqlStatement::ShowTables { .. }))
            || references.iter().any(|r| matches!(r.schema(), Some("information_schema" | "pg_catalog")))
            || (flavor == Flavor::Postgres && references.iter().any(|r| r.table().starts_with("pg_")));
        let streams: Vec<StreamName> = if wants_catalog {
            self.tables.storage().list_streams().await?
        } else {
            references.iter().filter_map(stream_of).collect()
        };
        for stream in streams.into_iter().filter(|s| reader.may_see(s.as_str())) {
            if let Some(table) = self.tables.latest(&stream).await? {
                // The table's own (metered) store, also where DataFusion has a default one
                // (`file://`), so that every read is counted.
                let log_store = table.log_store();
                ctx.runtime_env().register_object_store(log_store.root_url(), log_store.root_object_store(None));
                let provider = crate::narrowed::StreamTable::new(self.tables.clone(), stream.clone(), table)
                    .await
                    .map_err(|e| QueryError::Storage(e.to_string()))?;
                let provider = (self.protector.table(stream.as_str(), Arc::new(provider), reader.fields()))
                    .map_err(QueryError::from_datafusion)?;
                ctx.register_table(stream.as_str(), provider).map_err(QueryError::from_datafusion)?;
            }
        }
        if flavor == Flavor::Postgres && wants_catalog {
            crate::postgres::number_objects(&ctx).await.map_err(QueryError::from_datafusion)?;
        }

        let plan = ctx.state().statement_to_plan(statement).await.map_err(QueryError::from_datafusion)?;
        datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| QueryError::ReadOnly(e.strip_backtrace()))?;
        Ok((ctx, plan))
    }
}

impl QueryEngine {
    fn base_session(&self, flavor: Flavor) -> Result<&SessionState, QueryError> {
        let slot = &self.bases[flavor as usize];
        if let Some(base) = slot.get() {
            return Ok(base);
        }
        let base = self.new_base_session(flavor)?;
        Ok(slot.get_or_init(|| base))
    }

    fn new_base_session(&self, flavor: Flavor) -> Result<SessionState, QueryError> {
        let mut config =
            SessionConfig::new().with_information_schema(true).with_default_catalog_and_schema(CATALOG, "public");
        if self.options.target_partitions > 0 {
            config = config.with_target_partitions(self.options.target_partitions);
        }
        // The streams' scans spread their files' row groups over the partitions themselves
        // (`narrowed::with_parquet_reads`).
        config.options_mut().optimizer.repartition_file_scans = false;
        if flavor == Flavor::Postgres {
            config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
        }
        apply_datafusion_settings(&mut config, &self.options.datafusion).map_err(QueryError::Execution)?;
        let runtime = RuntimeEnvBuilder::new()
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
            .with_cache_manager(self.cache_manager_config())
            .build_arc()
            .map_err(QueryError::from_datafusion)?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.register_udf(crate::icontains::IContains::udf().as_ref().clone());
        ctx.add_optimizer_rule(Arc::new(crate::icontains::ILikeAsContains));
        if flavor == Flavor::Postgres {
            crate::postgres::install_functions(&ctx, CATALOG).map_err(QueryError::from_datafusion)?;
        }
        Ok(SessionStateBuilder::new_from_existing(ctx.state())
            .with_physical_optimizer_rule(Arc::new(crate::repeated::OnceEachCondition))
            .with_physical_optimizer_rule(Arc::new(crate::null_checks::NullChecksAfterTheScan))
            .build())
    }

    fn cache_manager_config(&self) -> CacheManagerConfig {
        CacheManagerConfig::default()
            .with_file_metadata_cache(Some(self.metadata_cache.clone()))
            .with_metadata_cache_limit(METADATA_CACHE_BYTES)
    }

    /// What a statement runs with: a memory pool of its own, no spilling (a statement that
    /// needs more memory than its limit fails), and the object stores and caches every
    /// statement shares.
    fn statement_runtime(&self, ctx: &SessionContext) -> Result<Arc<RuntimeEnv>, QueryError> {
        RuntimeEnvBuilder::new()
            .with_memory_limit(self.options.memory_limit, 1.0)
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
            .with_cache_manager(self.cache_manager_config())
            .with_object_store_registry(ctx.runtime_env().object_store_registry.clone())
            .build_arc()
            .map_err(QueryError::from_datafusion)
    }
}

/// The catalog the streams are tables of (in its schema `public`).
const CATALOG: &str = "logyard";

/// Which SQL a statement is written in, and which catalogs it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// The HTTP API's: DataFusion's generic dialect.
    Generic = 0,
    /// A PostgreSQL client's: its dialect, `pg_catalog`, parameters.
    Postgres = 1,
}

/// One statement in DataFusion's generic dialect, with the errors DataFusion gives (its
/// default recursion limit bounds deeply nested input).
fn parse_generic(sql: &str) -> Result<DfStatement, QueryError> {
    let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
    let mut statements = datafusion::sql::parser::DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(QueryError::from_datafusion)?;
    if statements.len() > 1 {
        return Err(QueryError::from_datafusion(DataFusionError::NotImplemented(
            "The context currently only supports a single SQL statement".into(),
        )));
    }
    statements.pop_front().ok_or_else(|| {
        QueryError::from_datafusion(DataFusionError::Plan("No SQL statements were provided in the query string".into()))
    })
}

/// A table reference that names a stream of the default schema.
fn stream_of(r: &TableReference) -> Option<StreamName> {
    match r {
        TableReference::Bare { table } => StreamName::new(table).ok(),
        TableReference::Partial { schema, table } if schema.as_ref() == "public" => StreamName::new(table).ok(),
        TableReference::Full { catalog, schema, table }
            if catalog.as_ref() == "logyard" && schema.as_ref() == "public" =>
        {
            StreamName::new(table).ok()
        }
        _ => None,
    }
}

/// Only SELECT, WITH, EXPLAIN (of those), SHOW and DESCRIBE may run.
fn check_read_only(statement: &DfStatement) -> Result<(), QueryError> {
    match statement {
        DfStatement::Statement(s) => match s.as_ref() {
            SqlStatement::Query(_)
            | SqlStatement::ShowTables { .. }
            | SqlStatement::ShowColumns { .. }
            | SqlStatement::ShowFunctions { .. }
            | SqlStatement::ExplainTable { .. } => Ok(()),
            SqlStatement::Explain { statement, .. } => {
                check_read_only(&DfStatement::Statement(Box::new(statement.as_ref().clone())))
            }
            other => Err(not_read_only(&other.to_string())),
        },
        DfStatement::Explain(e) => check_read_only(&e.statement),
        DfStatement::CreateExternalTable(_) => Err(not_read_only("CREATE EXTERNAL TABLE")),
        DfStatement::CopyTo(_) => Err(not_read_only("COPY")),
        DfStatement::Reset(_) => Err(not_read_only("RESET")),
    }
}

fn not_read_only(statement: &str) -> QueryError {
    let verb: String = statement.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    QueryError::ReadOnly(format!("only SELECT, WITH, EXPLAIN, SHOW and DESCRIBE statements are allowed; got {verb}"))
}

/// Ends a stream with a timeout error at its deadline, and names the memory limit in the
/// error of a query that needs more.
struct Deadline {
    inner: SendableRecordBatchStream,
    sleep: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    memory_limit: usize,
    /// The query's span: entered while batches are computed, closed when the stream is dropped.
    span: tracing::Span,
    rows: usize,
}

impl Stream for Deadline {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.span.record("otel.status_code", "ERROR");
            return Poll::Ready(Some(Err(DataFusionError::External(Box::new(QueryError::Timeout(this.limit))))));
        }
        let mut next = this.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Err(e))) = &mut next
            && let DataFusionError::ResourcesExhausted(detail) = e.find_root()
        {
            let limit = QueryError::MemoryLimit { limit: Some(this.memory_limit), detail: detail.clone() };
            *e = DataFusionError::External(Box::new(limit));
        }
        match &next {
            Poll::Ready(Some(Ok(batch))) => this.rows += batch.num_rows(),
            Poll::Ready(Some(Err(_))) => {
                this.span.record("otel.status_code", "ERROR");
            }
            Poll::Ready(None) => {
                this.span.record("rows", this.rows);
            }
            Poll::Pending => {}
        }
        next
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl RecordBatchStream for Deadline {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

use std::future::Future;
