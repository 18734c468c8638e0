//! A physical optimizer rule that lets a Parquet scan test each condition of its predicate
//! once.
//!
//! delta-rs gives its Parquet scan the query's filters as the scan's predicate, and
//! DataFusion's filter pushdown then adds the same filters again from the `FilterExec` above
//! it (`ParquetSource::try_pushdown_filters` joins them to the predicate it has). Each
//! condition became two row filters, evaluated one after the other over every row group:
//! `status >= 500 AND customer_id IS NOT NULL AND status >= 500 AND customer_id IS NOT NULL`.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::datasource::physical_plan::{FileScanConfig, FileSource, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_expr::{PhysicalExpr, conjunction, split_conjunction};
use datafusion::physical_expr_common::physical_expr::is_volatile;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

/// Removes the conditions a Parquet scan's predicate repeats (runs last, after the filter
/// pushdown).
#[derive(Debug, Default)]
pub(crate) struct OnceEachCondition;

impl PhysicalOptimizerRule for OnceEachCondition {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| match without_repeats(&node) {
            Some(scan) => Ok(Transformed::yes(scan)),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "once_each_condition"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `node` as a Parquet scan whose predicate holds each condition once, if it is one whose
/// predicate repeats some.
fn without_repeats(node: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    let (config, parquet, predicate) = parquet_scan(node)?;
    let conditions = split_conjunction(&predicate);
    let count = conditions.len();
    let unique = distinct(conditions);
    if unique.len() == count {
        return None;
    }
    let mut config = config.clone();
    config.file_source = Arc::new(parquet.with_predicate(conjunction(unique)));
    Some(DataSourceExec::from_data_source(config))
}

/// `node`'s file scan configuration, Parquet source and predicate, if it is a Parquet scan
/// with a predicate.
pub(crate) fn parquet_scan(
    node: &Arc<dyn ExecutionPlan>,
) -> Option<(&FileScanConfig, &ParquetSource, Arc<dyn PhysicalExpr>)> {
    let exec = node.downcast_ref::<DataSourceExec>()?;
    let config = exec.data_source().downcast_ref::<FileScanConfig>()?;
    let parquet = config.file_source.downcast_ref::<ParquetSource>()?;
    let predicate = parquet.filter()?;
    Some((config, parquet, predicate))
}

/// The conditions, each once, in their first order; a volatile one (`random() < 0.5`) is kept
/// each time, since each evaluation may answer differently.
fn distinct(conditions: Vec<&Arc<dyn PhysicalExpr>>) -> Vec<Arc<dyn PhysicalExpr>> {
    let mut unique: Vec<Arc<dyn PhysicalExpr>> = Vec::with_capacity(conditions.len());
    for condition in conditions {
        if is_volatile(condition) || !unique.iter().any(|seen| seen == condition) {
            unique.push(condition.clone());
        }
    }
    unique
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::ScalarFunctionExpr;
    use datafusion::physical_expr::expressions::{binary, col, is_not_null, lit};

    use super::*;

    #[test]
    fn a_repeated_condition_is_kept_once_in_its_first_place() {
        let schema = Schema::new(vec![
            Field::new("status", DataType::Int64, true),
            Field::new("customer_id", DataType::Utf8, true),
        ]);
        let status = binary(col("status", &schema).unwrap(), Operator::GtEq, lit(500i64), &schema).unwrap();
        let customer = is_not_null(col("customer_id", &schema).unwrap()).unwrap();
        let other = binary(col("status", &schema).unwrap(), Operator::Lt, lit(600i64), &schema).unwrap();
        let predicate =
            conjunction([status.clone(), customer.clone(), status.clone(), other.clone(), customer.clone()]);
        let got = distinct(split_conjunction(&predicate));
        assert_eq!(got, vec![status, customer, other]);
    }

    #[test]
    fn a_volatile_condition_is_kept_each_time() {
        let schema = Schema::new(vec![Field::new("latency", DataType::Float64, true)]);
        let config = Arc::new(ConfigOptions::default());
        let random =
            ScalarFunctionExpr::try_new(datafusion::functions::math::random(), vec![], &schema, config).unwrap();
        let below = binary(Arc::new(random), Operator::Lt, lit(0.5f64), &schema).unwrap();
        let predicate = conjunction([below.clone(), below.clone()]);
        assert_eq!(distinct(split_conjunction(&predicate)), vec![below.clone(), below]);
    }
}
