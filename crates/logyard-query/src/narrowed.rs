//! A stream's table as queries scan it: the Delta table, whose files and row groups the
//! indexes beside it (`logyard_storage::ids`) narrow for `column = 'id'`, `column IN (...)` and
//! `column LIKE`/`ILIKE '%words%'` before any file is opened. Delta's statistics and Parquet's bloom filters then skip what they
//! can in what is left, as for any other query.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, ScalarValue, Statistics};
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::expr::{Cast, Like, ScalarFunction};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;

use logyard_core::StreamName;
use logyard_storage::Tables;
use logyard_storage::ids::{Needle, Term, Wanted};

#[derive(Debug)]
pub(crate) struct StreamTable {
    tables: Arc<Tables>,
    stream: StreamName,
    table: DeltaTable,
    inner: Arc<dyn TableProvider>,
}

impl StreamTable {
    pub(crate) async fn new(
        tables: Arc<Tables>,
        stream: StreamName,
        table: DeltaTable,
    ) -> Result<Self, DataFusionError> {
        let inner = table.table_provider().await?;
        Ok(Self { tables, stream, table, inner })
    }
}

#[async_trait]
impl TableProvider for StreamTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::common::Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.inner.statistics()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let footer_hint = state.config_options().execution.parquet.metadata_size_hint;
        let needles = needles(filters);
        if !needles.is_empty() {
            let admitted = self
                .tables
                .narrow(&self.stream, &self.table, &needles)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            if let Some(narrowed) = admitted {
                let plan = if narrowed.every_file {
                    self.inner.scan(state, projection, filters, limit).await?
                } else {
                    let files = self.table.table_provider().with_file_paths(narrowed.files).await?;
                    files.scan(state, projection, filters, limit).await?
                };
                return with_parquet_reads(plan, &narrowed.row_groups, footer_hint);
            }
        }
        with_parquet_reads(self.inner.scan(state, projection, filters, limit).await?, &HashMap::new(), footer_hint)
    }
}

/// `plan` with its Parquet scans reading, of the files in `row_groups` (paths relative to the
/// table), only the row groups marked `true` (DataFusion's `ParquetAccessPlan` of a file): their
/// bloom filters and data are not read either.
///
/// Each scan also reads a file's last `footer_hint` bytes (the session's
/// `execution.parquet.metadata_size_hint`) at its first read, which delta-rs's scan leaves
/// unset: the footer and the page indexes behind it then come in one request, where without
/// it the footer's length, the footer and the page index are three. Footers are read with
/// their page indexes, once per file ([`crate::footers`]).
fn with_parquet_reads(
    plan: Arc<dyn ExecutionPlan>,
    row_groups: &HashMap<String, Vec<bool>>,
    footer_hint: Option<usize>,
) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
    let access = |location: &str| {
        let (_, mask) = row_groups.iter().find(|(file, _)| {
            location.strip_suffix(file.as_str()).is_some_and(|dir| dir.is_empty() || dir.ends_with('/'))
        })?;
        let mut plan = ParquetAccessPlan::new_all(mask.len());
        mask.iter().enumerate().filter(|(_, keep)| !**keep).for_each(|(i, _)| plan.skip(i));
        Some(plan)
    };
    plan.transform_down(|node| {
        let Some(config) =
            node.downcast_ref::<DataSourceExec>().and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
        else {
            return Ok(Transformed::no(node));
        };
        let mut config = config.clone();
        if let Some(parquet) = config.file_source.downcast_ref::<ParquetSource>() {
            let mut parquet = parquet.clone();
            if let Some(hint) = footer_hint {
                parquet = parquet.with_metadata_size_hint(hint);
            }
            if let Some(readers) = parquet.parquet_file_reader_factory() {
                let readers = Arc::new(crate::footers::FootersOnce::new(readers.clone()));
                parquet = parquet.with_parquet_file_reader_factory(readers);
            }
            config.file_source = Arc::new(parquet);
        }
        config.file_groups = (config.file_groups.iter())
            .map(|group| {
                let files = group
                    .iter()
                    .cloned()
                    .map(|mut file| {
                        if let Some(plan) = access(file.object_meta.location.as_ref()) {
                            file.extensions.insert(plan);
                        }
                        file
                    })
                    .collect();
                match group.file_statistics(None) {
                    Some(statistics) => FileGroup::new(files).with_statistics(Arc::new(statistics.clone())),
                    None => FileGroup::new(files),
                }
            })
            .collect();
        Ok(Transformed::yes(DataSourceExec::from_data_source(config) as Arc<dyn ExecutionPlan>))
    })
    .map(|t| t.data)
}

/// The filters a row can meet only by holding one of some values in a text column, or some
/// words: `column = 'text'`, `column IN ('text', ...)`, `column LIKE`/`ILIKE 'pattern'` (its
/// literal parts), `icontains(column, 'words')`, and disjunctions of those.
fn needles(filters: &[Expr]) -> Vec<Needle> {
    filters.iter().filter_map(needle).collect()
}

fn needle(filter: &Expr) -> Option<Needle> {
    let term = |column: String, wanted: Wanted| Some(vec![Term { column, wanted }]);
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
            let (c, v) = match (column(left), text(right)) {
                (Some(c), Some(v)) => (c, v),
                _ => (column(right)?, text(left)?),
            };
            term(c, Wanted::Equals(v.to_owned()))
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            let mut terms = needle(left)?;
            terms.extend(needle(right)?);
            Some(terms)
        }
        Expr::InList(list) if !list.negated => {
            let c = column(&list.expr)?;
            (list.list.iter())
                .map(|v| Some(Term { column: c.clone(), wanted: Wanted::Equals(text(v)?.to_owned()) }))
                .collect()
        }
        Expr::Like(Like { negated: false, expr, pattern, escape_char, .. }) => {
            term(column(expr)?, Wanted::Contains(literal_parts(text(pattern)?, escape_char.unwrap_or('\\'))))
        }
        Expr::ScalarFunction(ScalarFunction { func, args }) if func.name() == "icontains" && args.len() == 2 => {
            term(column(&args[0])?, Wanted::Contains(vec![text(&args[1])?.to_owned()]))
        }
        _ => None,
    }
}

/// The literal parts of a `LIKE` pattern, between its wildcards (an escaped `%`, `_` or
/// escape character stands for itself, as in Arrow's `LIKE`).
fn literal_parts(pattern: &str, escape: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let literal = match c {
            c if c == escape => chars.next(),
            '%' | '_' => None,
            c => Some(c),
        };
        match literal {
            Some(c) => parts.last_mut().expect("one part").push(c),
            None => parts.push(String::new()),
        }
    }
    parts.retain(|p| !p.is_empty());
    parts
}

/// The column an expression reads, also through a cast (indexes are of text columns only, whose
/// casts to text keep their values).
fn column(e: &Expr) -> Option<String> {
    match e {
        Expr::Column(c) => Some(c.name.clone()),
        Expr::Cast(Cast { expr, field }) if field.data_type().is_string() => column(expr),
        _ => None,
    }
}

fn text(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(v)) | ScalarValue::Utf8View(Some(v)) | ScalarValue::LargeUtf8(Some(v)),
            _,
        ) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    fn equals(column: &str, value: &str) -> Term {
        Term { column: column.into(), wanted: Wanted::Equals(value.into()) }
    }

    fn contains(column: &str, parts: &[&str]) -> Term {
        Term { column: column.into(), wanted: Wanted::Contains(parts.iter().map(|p| p.to_string()).collect()) }
    }

    #[test]
    fn equalities_lists_and_substrings_of_text_are_needles() {
        let got = needles(&[
            col("order_id").eq(lit("o-1")),
            lit("t-1").eq(col("trace_id")),
            col("customer_id").in_list(vec![lit("c-1"), lit("c-2")], false),
            col("session_id").in_list(vec![lit("s-1")], true),
            col("status").eq(lit(500)),
            col("path").not_eq(lit("/")),
            col("route").in_list(vec![lit("/a"), col("path")], false),
            col("request_id").eq(lit("r-1")).or(col("request_id").eq(lit("r-2"))),
            col("request_id").eq(lit("r-1")).or(col("path").ilike(lit("%/cart%"))),
            col("message").ilike(lit("%payment declined%")),
            col("message").like(lit("GET /products/_%\\%off%")),
            col("message").not_like(lit("%payment%")),
            col("message").ilike(col("path")),
            col("message").eq(lit("x")).or(col("status").gt(lit(499))),
        ]);
        let want = vec![
            vec![equals("order_id", "o-1")],
            vec![equals("trace_id", "t-1")],
            vec![equals("customer_id", "c-1"), equals("customer_id", "c-2")],
            vec![equals("request_id", "r-1"), equals("request_id", "r-2")],
            vec![equals("request_id", "r-1"), contains("path", &["/cart"])],
            vec![contains("message", &["payment declined"])],
            vec![contains("message", &["GET /products/", "%off"])],
        ];
        assert_eq!(got, want);
    }
}
