//! A physical optimizer rule that tests `column IS NOT NULL` after a Parquet scan rather than
//! inside it, when the column is read anyway and the test keeps most rows.
//!
//! Inside the scan a condition is a row filter: arrow-rs decodes the column's values to test
//! them (a null test too), and decodes them again for the rows the scan returns. Top customers
//! by 5xx (`status >= 500 AND customer_id IS NOT NULL`, one day) decoded every customer id of
//! the day that way. After the scan, only the rows the other conditions kept are decoded, once.
//! A null test that drops most rows (a column mostly null) stays in the scan, where it spares
//! the other columns' decoding; so does any test of a scan with a row limit, which must count
//! rows after every condition.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::Result;
use datafusion::common::Statistics;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_expr::expressions::{Column, IsNotNullExpr};
use datafusion::physical_expr::utils::reassign_expr_columns;
use datafusion::physical_expr::{PhysicalExpr, conjunction, split_conjunction};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;

use crate::repeated::parquet_scan;

/// Moves the null tests of read columns out of a Parquet scan's predicate into a filter above
/// it (runs after [`crate::repeated::OnceEachCondition`]).
#[derive(Debug, Default)]
pub(crate) struct NullChecksAfterTheScan;

impl PhysicalOptimizerRule for NullChecksAfterTheScan {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| match with_null_checks_above(&node)? {
            Some(filtered) => Ok(Transformed::yes(filtered)),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "null_checks_after_the_scan"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `node` (a Parquet scan) as a filter of its null tests over the scan of its other
/// conditions, if it has null tests to move and other conditions to keep.
fn with_null_checks_above(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some((config, parquet, predicate)) = parquet_scan(node) else { return Ok(None) };
    if config.limit.is_some() {
        return Ok(None);
    }
    let output = node.schema();
    let statistics = config.statistics();
    let (moved, kept): (Vec<_>, Vec<_>) = split_conjunction(&predicate).into_iter().partition(|condition| {
        tested_column(condition).is_some_and(|c| keeps_most_rows(config, &statistics, c, &output))
    });
    if moved.is_empty() || kept.is_empty() {
        return Ok(None);
    }
    let mut config = config.clone();
    config.file_source = Arc::new(parquet.with_predicate(conjunction(kept.into_iter().cloned())));
    let scan = DataSourceExec::from_data_source(config);
    let checks = reassign_expr_columns(conjunction(moved.into_iter().cloned()), &output)?;
    Ok(Some(Arc::new(FilterExec::try_new(checks, scan)?)))
}

/// The column of `condition` when it is `column IS NOT NULL`.
fn tested_column(condition: &Arc<dyn PhysicalExpr>) -> Option<&Column> {
    condition.downcast_ref::<IsNotNullExpr>()?.arg().downcast_ref::<Column>()
}

/// Whether the scan returns `column` and, by the statistics of its files, fewer than half of
/// their rows have it null. Unknown counts keep the test in the scan.
fn keeps_most_rows(config: &FileScanConfig, statistics: &Statistics, column: &Column, output: &Schema) -> bool {
    if output.column_with_name(column.name()).is_none() {
        return false;
    }
    let Ok(index) = config.file_source.table_schema().table_schema().index_of(column.name()) else { return false };
    let nulls = statistics.column_statistics.get(index).map(|c| c.null_count);
    match (nulls, statistics.num_rows) {
        (
            Some(Precision::Exact(nulls) | Precision::Inexact(nulls)),
            Precision::Exact(rows) | Precision::Inexact(rows),
        ) => nulls * 2 < rows,
        _ => false,
    }
}
