//! Tables as a token with `deny_fields` or `mask_fields` sees them (`logyard_auth::fields`).
//!
//! Such a token's statements read each table through a view: a projection of the table
//! without its denied columns, with each masked column replaced by a keyed hash of its text
//! (`masked(CAST(col AS VARCHAR)) AS col`), and with `_conflicts` (the values that did not fit
//! their column, by column name) stripped of the columns the token may not read in clear.
//! Everything the statement does (`SELECT *`, expressions, joins, subqueries, `EXPLAIN`,
//! `information_schema`) starts from the view, so no path reaches the stored values; filters
//! on a masked column compare the hash, and are pushed into the scan as such.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{Column, DataFusionError, TableReference};
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::logical_expr::{ColumnarValue, Expr, LogicalPlanBuilder, ScalarUDF, Volatility, cast, create_udf};

use logyard_auth::{FieldAccess, FieldRules};
use logyard_core::batch::CONFLICTS_COLUMN;

/// `schema` as a reader with `rules` sees it: denied columns gone, masked ones text.
pub(crate) fn readable_schema(schema: &Schema, rules: &FieldRules) -> Schema {
    let fields: Vec<Field> = (schema.fields().iter())
        .filter_map(|f| match rules.access(f.name()) {
            FieldAccess::Denied => None,
            FieldAccess::Masked => Some(Field::new(f.name(), DataType::Utf8, true)),
            FieldAccess::Clear => Some(f.as_ref().clone()),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// What reads the protected columns' values for a reader: the masking key, if the server has
/// one (a masked column without it is an error, never the clear value).
#[derive(Clone)]
pub(crate) struct Protector {
    key: Option<Arc<[u8]>>,
    masked: Option<Arc<ScalarUDF>>,
}

impl std::fmt::Debug for Protector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protector").field("key", &self.masked.is_some()).finish()
    }
}

impl Protector {
    pub(crate) fn new(key: Option<Arc<[u8]>>) -> Self {
        let masked = key.clone().map(|key| Arc::new(text_udf("masked", move |v| Some(hash(&key, v)))));
        Self { key, masked }
    }

    /// What a masked column shows for the value whose text is `text`; `None` without a key.
    pub(crate) fn mask(&self, text: &str) -> Option<String> {
        self.key.as_deref().map(|key| hash(key, text))
    }

    /// `provider` (the table `name`) as `rules` let a reader see it: itself when they hide
    /// nothing, else a view over it.
    pub(crate) fn table(
        &self,
        name: &str,
        provider: Arc<dyn TableProvider>,
        rules: &FieldRules,
    ) -> Result<Arc<dyn TableProvider>, DataFusionError> {
        if rules.is_empty() {
            return Ok(provider);
        }
        let schema = provider.schema();
        let table = TableReference::bare(name);
        let builder = LogicalPlanBuilder::scan(table.clone(), provider_as_source(provider), None)?;
        let mut columns = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let name = field.name();
            let column = Expr::Column(Column::new(Some(table.clone()), name));
            let expr = match rules.access(name) {
                FieldAccess::Denied => continue,
                FieldAccess::Masked => {
                    let masked = self.masked.as_ref().ok_or_else(|| {
                        DataFusionError::Plan(format!(
                            "this token reads {name:?} masked, and the server has no masking key (masking.key_file)"
                        ))
                    })?;
                    masked.call(vec![cast(column, DataType::Utf8)]).alias(name)
                }
                FieldAccess::Clear if name == CONFLICTS_COLUMN => {
                    conflicts_udf(rules).call(vec![cast(column, DataType::Utf8)]).alias(name)
                }
                FieldAccess::Clear => column,
            };
            columns.push(expr);
        }
        let plan = builder.project(columns)?.build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }

    /// `schema` (a catalog schema, such as the orders database's) with its tables seen through
    /// [`Protector::table`].
    pub(crate) fn schema(&self, schema: Arc<dyn SchemaProvider>, rules: &FieldRules) -> Arc<dyn SchemaProvider> {
        if rules.is_empty() {
            return schema;
        }
        Arc::new(ProtectedSchema { inner: schema, rules: rules.clone(), protector: self.clone() })
    }
}

fn hash(key: &[u8], text: &str) -> String {
    logyard_core::mask::keyed_hash(key, "field", text)
}

/// `_conflicts` without the columns `rules` do not show in clear; NULL where nothing is left.
fn conflicts_udf(rules: &FieldRules) -> ScalarUDF {
    let rules = rules.clone();
    text_udf("visible_conflicts", move |v| {
        // Written by the flusher as one JSON object; anything else is not shown.
        let serde_json::Value::Object(mut map) = serde_json::from_str(v).ok()? else { return None };
        map.retain(|column, _| rules.access(column) == FieldAccess::Clear);
        (!map.is_empty()).then(|| serde_json::Value::Object(map).to_string())
    })
}

/// A function of one text argument, `f` applied to each value (NULL stays NULL, and so does a
/// value `f` gives `None` for).
fn text_udf(name: &str, f: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> ScalarUDF {
    let fun = move |args: &[ColumnarValue]| {
        let [values] = &ColumnarValue::values_to_arrays(args)?[..] else {
            return Err(DataFusionError::Internal("a function of one argument".into()));
        };
        let out: StringArray = values.as_string::<i32>().iter().map(|v| v.and_then(&f)).collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    };
    create_udf(name, vec![DataType::Utf8], DataType::Utf8, Volatility::Immutable, Arc::new(fun))
}

/// A catalog schema whose tables a reader sees through [`Protector::table`].
#[derive(Debug)]
struct ProtectedSchema {
    inner: Arc<dyn SchemaProvider>,
    rules: FieldRules,
    protector: Protector,
}

#[async_trait::async_trait]
impl SchemaProvider for ProtectedSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        match self.inner.table(name).await? {
            Some(provider) => Ok(Some(self.protector.table(name, provider, &self.rules)?)),
            None => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Array;

    use super::*;

    /// A table `orders` (id, email, customer_id) in schema `pg`, as a reader denied `email` and
    /// given `customer_id` masked sees it, in a session of its own.
    async fn orders_as_seen(sql: &str) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>, DataFusionError> {
        use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider};
        use datafusion::datasource::MemTable;
        use datafusion::prelude::SessionContext;
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("email", DataType::Utf8, true),
            Field::new("customer_id", DataType::Int64, true),
        ]));
        let batch = datafusion::arrow::record_batch::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(datafusion::arrow::array::Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec!["a@example.com", "b@example.com", "a@example.com"])),
                Arc::new(datafusion::arrow::array::Int64Array::from(vec![Some(7), Some(8), Some(7)])),
            ],
        )?;
        let tables = Arc::new(MemorySchemaProvider::new());
        tables.register_table("orders".into(), Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))?;
        let rules = FieldRules::new(&["email".into()], &["customer_id".into()]).unwrap();
        let protector = Protector::new(Some(Arc::from(&b"0123456789abcdef0123456789abcdef"[..])));
        let ctx = SessionContext::new();
        let catalog = MemoryCatalogProvider::new();
        catalog.register_schema("pg", protector.schema(tables, &rules))?;
        ctx.register_catalog("shop", Arc::new(catalog));
        ctx.sql(sql).await?.collect().await
    }

    #[tokio::test]
    async fn tables_of_other_schemas_are_seen_through_the_same_rules() {
        let batches = orders_as_seen("SELECT * FROM shop.pg.orders ORDER BY id").await.unwrap();
        let schema = batches[0].schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "customer_id"]);
        let masked = batches[0].column(1).as_string::<i32>();
        assert_eq!(masked.value(0), masked.value(2), "equal values hash alike");
        assert_ne!(masked.value(0), masked.value(1));
        assert_eq!(masked.value(0).len(), 32);
        for sql in [
            "SELECT email FROM shop.pg.orders",
            "SELECT o.id FROM shop.pg.orders o JOIN shop.pg.orders p ON o.email = p.email",
        ] {
            let e = orders_as_seen(sql).await.unwrap_err().to_string();
            assert!(e.contains("No field named"), "{sql}: {e}");
        }
        let n = orders_as_seen("SELECT count(*) FROM shop.pg.orders WHERE customer_id = '7'").await.unwrap();
        assert_eq!(n[0].column(0).as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(0), 0);
    }

    #[test]
    fn conflicts_keep_only_the_clear_columns() {
        let rules = FieldRules::new(&["email".into()], &["customer_id".into()]).unwrap();
        let udf = conflicts_udf(&rules);
        let input: ArrayRef = Arc::new(StringArray::from(vec![
            Some(r#"{"email":5,"status":"x"}"#),
            Some(r#"{"email":5,"customer_id":7}"#),
            None,
            Some("not json"),
        ]));
        let fun = udf.inner().clone();
        let args = datafusion::logical_expr::ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(input)],
            arg_fields: vec![Arc::new(Field::new("c", DataType::Utf8, true))],
            number_rows: 4,
            return_field: Arc::new(Field::new("c", DataType::Utf8, true)),
            config_options: Arc::new(Default::default()),
        };
        let ColumnarValue::Array(out) = fun.invoke_with_args(args).unwrap() else { panic!("an array") };
        let out = out.as_string::<i32>();
        assert_eq!(out.value(0), r#"{"status":"x"}"#);
        assert!(out.is_null(1) && out.is_null(2) && out.is_null(3));
    }
}
