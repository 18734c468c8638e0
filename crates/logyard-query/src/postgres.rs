//! What PostgreSQL clients are told about the server they talk to: the version, and the
//! session settings that `SHOW x` and `current_setting('x')` answer (Grafana asks for
//! `server_version_num`, psql and drivers for the encodings, the time zone, the date style).
//! Settings are fixed: a `SET` is accepted and changes nothing. [`install_functions`] gives a
//! session these functions, [`install_catalog`] the `pg_catalog` of `datafusion-pg-catalog`.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{CatalogProviderList, TableFunctionImpl};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{PgCatalogSchemaProvider, PgCatalogStaticTables, setup_pg_catalog};

/// Adds PostgreSQL's functions to `ctx`, whose default catalog is `catalog`: done once, to the
/// session every PostgreSQL client's statement starts from.
pub fn install_functions(ctx: &SessionContext, catalog: &str) -> Result<(), DataFusionError> {
    let functions = pg_functions(catalog)?;
    for udf in &functions.scalar {
        ctx.register_udf(udf.as_ref().clone());
    }
    for (name, udtf) in &functions.table {
        ctx.register_udtf(name, udtf.clone());
    }
    if let Some(planner) = &functions.type_planner {
        let state = ctx.state_ref();
        let existing = state.read().clone();
        *state.write() = SessionStateBuilder::new_from_existing(existing).with_type_planner(planner.clone()).build();
    }
    ctx.register_udf(current_setting_udf());
    Ok(())
}

/// Adds `pg_catalog`, listing the tables of `ctx`'s own catalogs, to its catalog `catalog`.
pub fn install_catalog(ctx: &SessionContext, catalog: &str) -> Result<(), DataFusionError> {
    let functions = pg_functions(catalog)?;
    // Object ids are numbered in the order the catalog lists tables. Every statement has a
    // session of its own, so that order must not change between sessions (a client finds a
    // table's oid in pg_class with one statement and its columns in pg_attribute with the
    // next): list names sorted.
    let sorted = Sorted(ctx.state().catalog_list().clone());
    let provider = PgCatalogSchemaProvider::try_new(sorted, functions.static_tables.clone(), EmptyContextProvider)?;
    ctx.catalog(catalog)
        .ok_or_else(|| DataFusionError::Plan(format!("no catalog {catalog}")))?
        .register_schema("pg_catalog", Arc::new(provider))?;
    Ok(())
}

/// What `datafusion-pg-catalog`'s `setup_pg_catalog` adds to a session — PostgreSQL's
/// functions, table functions, type names and built-in catalog rows — made once: the rows are
/// decoded from Arrow IPC, which cost a few milliseconds on every statement when each session
/// was set up afresh.
struct PgFunctions {
    catalog: String,
    scalar: Vec<Arc<ScalarUDF>>,
    table: Vec<(String, Arc<dyn TableFunctionImpl>)>,
    type_planner: Option<Arc<dyn TypePlanner>>,
    static_tables: Arc<PgCatalogStaticTables>,
}

fn pg_functions(catalog: &str) -> Result<&'static PgFunctions, DataFusionError> {
    static FUNCTIONS: OnceLock<PgFunctions> = OnceLock::new();
    if let Some(f) = FUNCTIONS.get() {
        if f.catalog != catalog {
            return Err(DataFusionError::Internal(format!(
                "pg_catalog was set up for catalog {}, not {catalog}",
                f.catalog
            )));
        }
        return Ok(f);
    }
    // A session as the engine makes them, before and after setup_pg_catalog: what it added
    // or replaced is what every session gets.
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_default_catalog_and_schema(catalog, "public"));
    let before = ctx.state();
    setup_pg_catalog(&ctx, catalog, EmptyContextProvider).map_err(|e| *e)?;
    let after = ctx.state();
    let scalar = after
        .scalar_functions()
        .iter()
        .filter(|(name, f)| before.scalar_functions().get(*name).is_none_or(|old| !Arc::ptr_eq(old, f)))
        .map(|(_, f)| f.clone())
        .collect();
    let table = after
        .table_functions()
        .iter()
        .filter(|(name, f)| before.table_functions().get(*name).is_none_or(|old| !Arc::ptr_eq(old, f)))
        .map(|(name, f)| (name.clone(), f.function().clone()))
        .collect();
    let type_planner = SessionStateBuilder::new_from_existing(after).type_planner().clone();
    let functions = PgFunctions {
        catalog: catalog.to_owned(),
        scalar,
        table,
        type_planner,
        static_tables: Arc::new(PgCatalogStaticTables::try_new()?),
    };
    Ok(FUNCTIONS.get_or_init(|| functions))
}

/// Gives the session's tables their object ids, in pg_class's order: catalogs, schemas, tables,
/// each sorted. `pg_attribute` alone numbers only tables, so a statement reading it (psql's
/// `\d` reads the columns of an oid found by the statement before) would otherwise see other
/// ids than one reading `pg_class`. Call after the session's tables are registered.
pub async fn number_objects(ctx: &SessionContext) -> Result<(), DataFusionError> {
    ctx.sql("SELECT count(*) FROM pg_catalog.pg_class").await?.collect().await?;
    Ok(())
}

/// A session's catalogs with their names in order.
#[derive(Debug, Clone)]
struct Sorted(Arc<dyn CatalogProviderList>);

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort_unstable();
    names
}

#[async_trait]
impl CatalogInfo for Sorted {
    async fn catalog_names(&self) -> Result<Vec<String>, DataFusionError> {
        CatalogInfo::catalog_names(&self.0).await.map(sorted)
    }

    async fn schema_names(&self, catalog: &str) -> Result<Option<Vec<String>>, DataFusionError> {
        Ok(CatalogInfo::schema_names(&self.0, catalog).await?.map(sorted))
    }

    async fn table_names(&self, catalog: &str, schema: &str) -> Result<Option<Vec<String>>, DataFusionError> {
        Ok(CatalogInfo::table_names(&self.0, catalog, schema).await?.map(sorted))
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<SchemaRef>, DataFusionError> {
        CatalogInfo::table_schema(&self.0, catalog, schema, table).await
    }

    async fn table_type(&self, catalog: &str, schema: &str, table: &str) -> Result<Option<TableType>, DataFusionError> {
        CatalogInfo::table_type(&self.0, catalog, schema, table).await
    }
}

/// The version clients are told (the PostgreSQL whose SQL logyard's resembles most).
pub const SERVER_VERSION: &str = "16.0 (logyard)";

/// A session setting's value, or None when there is no such setting.
pub fn setting(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "server_version" => SERVER_VERSION,
        "server_version_num" => "160000",
        "server_encoding" | "client_encoding" => "UTF8",
        "timezone" | "time zone" | "log_timezone" => "UTC",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "standard_conforming_strings" | "integer_datetimes" => "on",
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "search_path" => "public",
        "max_identifier_length" => "63",
        "application_name" => "",
        "lc_collate" | "lc_ctype" | "lc_messages" | "lc_monetary" | "lc_numeric" | "lc_time" => "C",
        "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => "0",
        _ => return None,
    })
}

/// `current_setting(name)`: [`setting`] as SQL; an unknown name is an error, as in PostgreSQL.
pub fn current_setting_udf() -> ScalarUDF {
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let lookup = |name: Option<&str>| -> Result<Option<String>, DataFusionError> {
                let Some(name) = name else { return Ok(None) };
                setting(name).map(|v| Some(v.to_owned())).ok_or_else(|| {
                    DataFusionError::Execution(format!("unrecognized configuration parameter \"{name}\""))
                })
            };
            match &args[0] {
                ColumnarValue::Scalar(ScalarValue::Utf8(name)) => {
                    Ok(ColumnarValue::Scalar(ScalarValue::Utf8(lookup(name.as_deref())?)))
                }
                ColumnarValue::Array(names) => {
                    let names = names
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .ok_or_else(|| DataFusionError::Execution("current_setting takes a text argument".into()))?;
                    let values = names.iter().map(lookup).collect::<Result<StringArray, _>>()?;
                    Ok(ColumnarValue::Array(Arc::new(values)))
                }
                other => Err(DataFusionError::Execution(format!(
                    "current_setting takes a text argument, not {}",
                    other.data_type()
                ))),
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_found_by_any_case() {
        assert_eq!(setting("server_version_num"), Some("160000"));
        assert_eq!(setting("TimeZone"), Some("UTC"));
        assert_eq!(setting("no_such_thing"), None);
    }
}
