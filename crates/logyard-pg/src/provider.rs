//! PostgreSQL tables as DataFusion tables (`pg.orders`): the schema is read from the
//! catalog on first use; a scan sends one parameterized `SELECT` with the columns it needs,
//! the filters PostgreSQL answers exactly ([`crate::sql`]) and the limit, and streams the
//! rows back as Arrow batches.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{
    Boundedness, ChildrenPropertiesMode, EmissionType, ReplaceChildrenOptions,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::{StreamExt, TryStreamExt};
use tokio_postgres::Row;

use crate::sql::{Kind, PgColumn, filter, quote_ident};
use crate::{Pg, PgError};

/// Rows per Arrow batch of a scan.
const BATCH_ROWS: usize = 8192;

/// The configured tables of the orders database, as one SQL schema (e.g. `pg`).
#[derive(Debug)]
pub struct PgSchema {
    pg: Pg,
    /// Name in SQL -> (PostgreSQL schema, table).
    tables: BTreeMap<String, (String, String)>,
    loaded: tokio::sync::Mutex<HashMap<String, Arc<PgTable>>>,
}

impl PgSchema {
    /// `tables` are `table` (in `public`) or `schema.table`; each is shown under its table name.
    pub fn new(pg: Pg, tables: &[String]) -> Result<Self, PgError> {
        let mut map = BTreeMap::new();
        for t in tables {
            let (schema, table) = t.split_once('.').unwrap_or(("public", t));
            if table.is_empty() || schema.is_empty() || table.contains('.') {
                return Err(PgError::Config(format!("{t:?} is not a table name (table or schema.table)")));
            }
            if map.insert(table.to_owned(), (schema.to_owned(), table.to_owned())).is_some() {
                return Err(PgError::Config(format!("two tables are named {table:?}")));
            }
        }
        Ok(Self { pg, tables: map, loaded: tokio::sync::Mutex::new(HashMap::new()) })
    }

    pub fn pg(&self) -> &Pg {
        &self.pg
    }

    /// The table named `name` in SQL, its columns read on first use.
    pub async fn get(&self, name: &str) -> Result<Option<Arc<PgTable>>, PgError> {
        let Some((schema, table)) = self.tables.get(name) else { return Ok(None) };
        let mut loaded = self.loaded.lock().await;
        if let Some(t) = loaded.get(name) {
            return Ok(Some(t.clone()));
        }
        let t = Arc::new(PgTable::load(self.pg.clone(), schema, table).await?);
        loaded.insert(name.to_owned(), t.clone());
        Ok(Some(t))
    }
}

#[async_trait]
impl SchemaProvider for PgSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let table = self.get(name).await.map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(table.map(|t| t as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }
}

/// One PostgreSQL table.
#[derive(Debug)]
pub struct PgTable {
    pg: Pg,
    /// `"schema"."table"`.
    qualified: String,
    columns: Vec<PgColumn>,
    schema: SchemaRef,
}

impl PgTable {
    /// Reads the table's columns from PostgreSQL's catalog.
    pub async fn load(pg: Pg, schema: &str, table: &str) -> Result<Self, PgError> {
        let rows = pg
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text, a.attnotnull \
                 FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_type t ON t.oid = a.atttypid \
                 WHERE n.nspname = $1::text AND c.relname = $2::text AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &[schema.to_owned(), table.to_owned()],
            )
            .await?;
        if rows.is_empty() {
            return Err(PgError::Query(format!("table {schema}.{table} does not exist (or has no columns)")));
        }
        let columns: Vec<PgColumn> = rows
            .iter()
            .map(|r| {
                let pg_type: String = r.get(1);
                let typname: String = r.get(2);
                let kind = kind_of(&typname, &pg_type);
                PgColumn { name: r.get(0), pg_type, kind, nullable: !r.get::<_, bool>(3) }
            })
            .collect();
        let fields: Vec<Field> = columns.iter().map(|c| Field::new(&c.name, arrow_type(c.kind), c.nullable)).collect();
        Ok(Self {
            pg,
            qualified: format!("{}.{}", quote_ident(schema), quote_ident(table)),
            columns,
            schema: Arc::new(Schema::new(fields)),
        })
    }

    pub fn columns(&self) -> &[PgColumn] {
        &self.columns
    }

    /// The statement and parameters of a scan.
    pub fn select(&self, projection: &[usize], filters: &[Expr], limit: Option<usize>) -> (String, Vec<String>) {
        let list: Vec<String> = projection.iter().map(|i| self.columns[*i].select_expr()).collect();
        let mut statement = format!("SELECT {} FROM {}", list.join(", "), self.qualified);
        let mut params = Vec::new();
        let clauses: Vec<String> = filters.iter().filter_map(|f| filter(f, &self.columns, &mut params)).collect();
        if !clauses.is_empty() {
            statement.push_str(" WHERE ");
            statement.push_str(&clauses.join(" AND "));
        }
        if let Some(limit) = limit {
            params.push(limit.to_string());
            statement.push_str(&format!(" LIMIT ${}::text::bigint", params.len()));
        }
        (statement, params)
    }
}

/// The kind of a column from its type's name (`typname`) and full name (`format_type`).
fn kind_of(typname: &str, pg_type: &str) -> Kind {
    match typname {
        "bool" => Kind::Bool,
        "int2" => Kind::Int16,
        "int4" => Kind::Int32,
        "int8" => Kind::Int64,
        "float4" => Kind::Float32,
        "float8" => Kind::Float64,
        "text" | "varchar" | "bpchar" => Kind::Text,
        "timestamp" => Kind::Timestamp,
        "timestamptz" => Kind::TimestampTz,
        "date" => Kind::Date,
        "numeric" => numeric(pg_type).unwrap_or(Kind::Other),
        _ => Kind::Other,
    }
}

/// `numeric(p,s)` with p <= 38 as a decimal; unconstrained numeric has no fixed scale.
fn numeric(pg_type: &str) -> Option<Kind> {
    let inner = pg_type.strip_prefix("numeric(")?.strip_suffix(')')?;
    let (p, s) = inner.split_once(',').unwrap_or((inner, "0"));
    let precision: u8 = p.trim().parse().ok()?;
    let scale: i8 = s.trim().parse().ok()?;
    (precision <= 38 && scale >= 0).then_some(Kind::Decimal { precision, scale })
}

fn arrow_type(kind: Kind) -> DataType {
    match kind {
        Kind::Bool => DataType::Boolean,
        Kind::Int16 => DataType::Int16,
        Kind::Int32 => DataType::Int32,
        Kind::Int64 => DataType::Int64,
        Kind::Float32 => DataType::Float32,
        Kind::Float64 => DataType::Float64,
        Kind::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
        Kind::Text | Kind::Other => DataType::Utf8,
        Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        Kind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Kind::Date => DataType::Date32,
    }
}

#[async_trait]
impl TableProvider for PgTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match filter(f, &self.columns, &mut Vec::new()) {
                Some(_) => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.columns.len()).collect(),
        };
        let (statement, params) = self.select(&projection, filters, limit);
        let columns: Vec<PgColumn> = projection.iter().map(|i| self.columns[*i].clone()).collect();
        let schema = Arc::new(self.schema.project(&projection)?);
        Ok(Arc::new(PgScan::new(self.pg.clone(), statement, params, columns, schema)))
    }
}

/// Runs one `SELECT` and streams its rows as batches.
#[derive(Debug)]
pub struct PgScan {
    pg: Pg,
    statement: String,
    params: Vec<String>,
    columns: Vec<PgColumn>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    /// The span the plan was made in (the query's): DataFusion may run the scan on another
    /// task, and its statement belongs in the query's trace.
    parent: tracing::Span,
}

impl PgScan {
    fn new(pg: Pg, statement: String, params: Vec<String>, columns: Vec<PgColumn>, schema: SchemaRef) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self { pg, statement, params, columns, schema, properties, parent: tracing::Span::current() }
    }

    pub fn statement(&self) -> &str {
        &self.statement
    }
}

impl DisplayAs for PgScan {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "PgScan: {} ({} parameters)", self.statement, self.params.len())
    }
}

impl ExecutionPlan for PgScan {
    fn name(&self) -> &'static str {
        "PgScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn execute(&self, _partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let (pg, statement, params) = (self.pg.clone(), self.statement.clone(), self.params.clone());
        let (columns, schema) = (Arc::new(self.columns.clone()), self.schema.clone());
        let batch_schema = schema.clone();
        let start = async move { pg.query_stream(&statement, params).await };
        let batches = futures::stream::once(tracing::Instrument::instrument(start, self.parent.clone()))
            .map_ok(move |rows| {
                let (columns, schema) = (columns.clone(), batch_schema.clone());
                rows.chunks(BATCH_ROWS).map(move |chunk| {
                    let rows = chunk.into_iter().collect::<Result<Vec<Row>, PgError>>()?;
                    to_batch(&rows, &columns, &schema)
                })
            })
            .try_flatten()
            .map_err(|e| DataFusionError::External(Box::new(e)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}

/// Rows (as selected by [`PgColumn::select_expr`]) into one batch.
fn to_batch(rows: &[Row], columns: &[PgColumn], schema: &SchemaRef) -> Result<RecordBatch, PgError> {
    let arrays = columns
        .iter()
        .enumerate()
        .map(|(i, c)| column_array(rows, i, c))
        .collect::<Result<Vec<ArrayRef>, PgError>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    RecordBatch::try_new_with_options(schema.clone(), arrays, &options).map_err(|e| PgError::Query(e.to_string()))
}

fn column_array(rows: &[Row], i: usize, column: &PgColumn) -> Result<ArrayRef, PgError> {
    let bad = |e: tokio_postgres::Error| PgError::Query(format!("column {:?}: {e}", column.name));
    macro_rules! build {
        ($builder:expr, $t:ty, $convert:expr) => {{
            let mut b = $builder;
            for row in rows {
                let v: Option<$t> = row.try_get(i).map_err(bad)?;
                b.append_option(v.map($convert));
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match column.kind {
        Kind::Bool => build!(BooleanBuilder::with_capacity(rows.len()), bool, |v| v),
        Kind::Int16 => build!(Int16Builder::with_capacity(rows.len()), i16, |v| v),
        Kind::Int32 => build!(Int32Builder::with_capacity(rows.len()), i32, |v| v),
        Kind::Int64 => build!(Int64Builder::with_capacity(rows.len()), i64, |v| v),
        Kind::Float32 => build!(Float32Builder::with_capacity(rows.len()), f32, |v| v),
        Kind::Float64 => build!(Float64Builder::with_capacity(rows.len()), f64, |v| v),
        Kind::Text | Kind::Other => build!(StringBuilder::new(), String, |v| v),
        Kind::Decimal { precision, scale } => {
            let text = build!(StringBuilder::new(), String, |v| v);
            let options = arrow::compute::CastOptions {
                safe: false,
                format_options: arrow::util::display::FormatOptions::default(),
            };
            arrow::compute::cast_with_options(&text, &DataType::Decimal128(precision, scale), &options)
                .map_err(|e| PgError::Query(format!("column {:?}: {e}", column.name)))?
        }
        Kind::TimestampTz => {
            let b = TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
            build!(b, chrono::DateTime<chrono::Utc>, |v| v.timestamp_micros())
        }
        Kind::Timestamp => {
            build!(TimestampMicrosecondBuilder::with_capacity(rows.len()), chrono::NaiveDateTime, |v| v
                .and_utc()
                .timestamp_micros())
        }
        Kind::Date => {
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
            build!(Date32Builder::with_capacity(rows.len()), chrono::NaiveDate, |v| (v - epoch).num_days() as i32)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_kinds_come_from_the_catalog_types() {
        assert_eq!(kind_of("numeric", "numeric(12,2)"), Kind::Decimal { precision: 12, scale: 2 });
        assert_eq!(kind_of("numeric", "numeric(10)"), Kind::Decimal { precision: 10, scale: 0 });
        assert_eq!(kind_of("numeric", "numeric"), Kind::Other, "no fixed scale: kept as text");
        assert_eq!(kind_of("numeric", "numeric(60,2)"), Kind::Other, "too wide for Decimal128");
        assert_eq!(kind_of("timestamptz", "timestamp with time zone"), Kind::TimestampTz);
        assert_eq!(kind_of("uuid", "uuid"), Kind::Other);
        assert_eq!(kind_of("varchar", "character varying(3)"), Kind::Text);
    }

    #[test]
    fn table_names_are_checked() {
        let pg = Pg::new(
            crate::PgSettings {
                ssl_mode: crate::SslMode::Disable,
                ..crate::PgSettings::new("localhost", 5432, "shop", "u")
            },
            None,
        )
        .unwrap();
        let schema = PgSchema::new(pg.clone(), &["orders".into(), "sales.customers".into()]).unwrap();
        assert_eq!(schema.table_names(), ["customers", "orders"]);
        assert!(PgSchema::new(pg.clone(), &["a.orders".into(), "orders".into()]).is_err());
        assert!(PgSchema::new(pg, &["a.b.c".into()]).is_err());
    }
}
