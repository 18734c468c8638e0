//! A stream's table as queries scan it: the Delta table, whose files and row groups the
//! identifier indexes (`logyard_storage::ids`) narrow for `column = 'id'` and `column IN (...)`
//! before any file is opened. Delta's statistics and Parquet's bloom filters then skip what they
//! can in what is left, as for any other query.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, ScalarValue, Statistics};
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;

use logyard_core::StreamName;
use logyard_storage::Tables;

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
                return with_row_groups(plan, &narrowed.row_groups);
            }
        }
        self.inner.scan(state, projection, filters, limit).await
    }
}

/// `plan` with its Parquet scans reading, of the files in `row_groups` (paths relative to the
/// table), only the row groups marked `true` (DataFusion's `ParquetAccessPlan` of a file): their
/// bloom filters and data are not read either.
fn with_row_groups(
    plan: Arc<dyn ExecutionPlan>,
    row_groups: &HashMap<String, Vec<bool>>,
) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
    if row_groups.is_empty() {
        return Ok(plan);
    }
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

/// The `(column, wanted values)` of the filters that are `column = 'text'`,
/// `column IN ('text', ...)` or a disjunction of those on one column: a row can match only
/// with one of those values.
fn needles(filters: &[Expr]) -> Vec<(String, Vec<String>)> {
    filters.iter().filter_map(needle).collect()
}

fn needle(filter: &Expr) -> Option<(String, Vec<String>)> {
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
            let (c, v) = match (column(left), text(right)) {
                (Some(c), Some(v)) => (c, v),
                _ => (column(right)?, text(left)?),
            };
            Some((c, vec![v.to_owned()]))
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            let ((a, mut x), (b, y)) = (needle(left)?, needle(right)?);
            (a == b).then(|| {
                x.extend(y);
                (a, x)
            })
        }
        Expr::InList(list) if !list.negated => {
            let values: Option<Vec<String>> = list.list.iter().map(|v| text(v).map(str::to_owned)).collect();
            Some((column(&list.expr)?, values?))
        }
        _ => None,
    }
}

fn column(e: &Expr) -> Option<String> {
    match e {
        Expr::Column(c) => Some(c.name.clone()),
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

    #[test]
    fn equalities_and_lists_of_text_are_needles() {
        let got = needles(&[
            col("order_id").eq(lit("o-1")),
            lit("t-1").eq(col("trace_id")),
            col("customer_id").in_list(vec![lit("c-1"), lit("c-2")], false),
            col("session_id").in_list(vec![lit("s-1")], true),
            col("status").eq(lit(500)),
            col("path").not_eq(lit("/")),
            col("route").in_list(vec![lit("/a"), col("path")], false),
            col("request_id").eq(lit("r-1")).or(col("request_id").eq(lit("r-2"))),
            col("request_id").eq(lit("r-1")).or(col("path").eq(lit("/"))),
        ]);
        let want = vec![
            ("order_id".to_owned(), vec!["o-1".to_owned()]),
            ("trace_id".to_owned(), vec!["t-1".to_owned()]),
            ("customer_id".to_owned(), vec!["c-1".to_owned(), "c-2".to_owned()]),
            ("request_id".to_owned(), vec!["r-1".to_owned(), "r-2".to_owned()]),
        ];
        assert_eq!(got, want);
    }
}
