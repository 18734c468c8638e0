//! The stream tables in the AWS Glue Data Catalog, for Amazon Athena (its native Delta Lake
//! support) and Spark on EMR: one Glue table per stream, created, updated when the table's
//! columns change, and removed once the stream's table is gone.
//!
//! A table is defined as Athena documents for Delta Lake tables registered outside Athena
//! (<https://docs.aws.amazon.com/athena/latest/ug/delta-lake-tables-getting-started.html>:
//! an external table whose `Location` is the table's directory and whose parameter
//! `table_type` is `DELTA`; Athena reads the schema and the files from the Delta log). The
//! columns are written too, in Athena's types, with `date` as the partition key, because Lake
//! Formation, views and row and column filters need the catalog's schema to match the log's
//! (<https://docs.aws.amazon.com/athena/latest/ug/delta-lake-tables-syncing-metadata.html>),
//! and Spark finds the table through `spark.sql.sources.provider = delta` and the SerDe's
//! `path`. Tables logyard made carry `logyard.stream`; no other table is touched.
//!
//! The Glue API is called directly (JSON over HTTPS, SigV4 from [`crate::aws::signed_post`]):
//! six operations, where the SDK's Glue crate is half a million lines of generated code.

use std::collections::BTreeMap;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use aws_config::SdkConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use serde::Serialize;
use serde_json::{Value, json};

use logyard_core::StreamName;
use logyard_core::batch::DATE_COLUMN;

use crate::store::TABLES_DIR;
use crate::{Location, StorageError, Tables};

/// The parameter naming the stream a Glue table was made for.
pub const STREAM_PARAMETER: &str = "logyard.stream";

/// What a sync did, by Glue table name.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct CatalogReport {
    pub database: String,
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    pub removed: Vec<String>,
}

/// A Glue Data Catalog database, reached through the Glue API.
#[derive(Debug, Clone)]
pub struct GlueCatalog {
    client: reqwest::Client,
    credentials: SharedCredentialsProvider,
    region: String,
    endpoint: String,
    database: String,
}

/// A Glue API error: its code (`EntityNotFoundException`, `AccessDeniedException`, ...) and
/// message.
#[derive(Debug)]
struct GlueError {
    code: String,
    message: String,
}

impl GlueCatalog {
    /// The database `database` of the catalog in the SDK configuration's region, with its
    /// credentials; `endpoint` overrides `https://glue.<region>.amazonaws.com`.
    pub fn new(sdk: &SdkConfig, endpoint: Option<String>, database: &str) -> Result<Self, StorageError> {
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| StorageError::Config("no AWS region: set AWS_REGION".into()))?;
        let credentials = sdk
            .credentials_provider()
            .ok_or_else(|| StorageError::Config("no AWS credential provider could be configured".into()))?;
        let endpoint = endpoint.unwrap_or_else(|| format!("https://glue.{region}.amazonaws.com"));
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| StorageError::Config(format!("HTTP client: {e}")))?;
        Ok(Self { client, credentials, region, endpoint, database: database.to_owned() })
    }

    async fn call(&self, operation: &str, body: Value) -> Result<Value, GlueError> {
        let target = format!("AWSGlue.{operation}");
        let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target.as_str())];
        let url = format!("{}/", self.endpoint.trim_end_matches('/'));
        let body = serde_json::to_vec(&body).expect("JSON serializes");
        let (status, answer) =
            crate::aws::signed_post(&self.client, &self.credentials, (&self.region, "glue"), &url, &headers, body)
                .await
                .map_err(|message| GlueError { code: "RequestFailed".into(), message })?;
        let value: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let code = value["__type"].as_str().unwrap_or("").rsplit('#').next().unwrap_or("").to_owned();
        let message = value["message"].as_str().or(value["Message"].as_str()).unwrap_or("").to_owned();
        let code = if code.is_empty() { format!("HTTP {status}") } else { code };
        Err(GlueError { code, message })
    }

    fn error(&self, what: &str) -> impl FnOnce(GlueError) -> StorageError {
        let what = format!("Glue {what} in database {}", self.database);
        move |e| StorageError::Config(format!("{what}: {}: {}", e.code, e.message))
    }

    /// Creates or updates the table of each stream (all of them, or `only`), and, when
    /// syncing all, removes the tables logyard made for streams whose table is gone. With
    /// `create_database`, a missing database is created first.
    pub async fn sync(
        &self,
        tables: &Tables,
        only: Option<Vec<StreamName>>,
        create_database: bool,
    ) -> Result<CatalogReport, StorageError> {
        let Location::S3 { bucket, prefix } = tables.storage().location() else {
            return Err(StorageError::Config(
                "the Glue Data Catalog describes tables on S3: storage.url must be s3://BUCKET/PREFIX".into(),
            ));
        };
        self.ensure_database(create_database).await?;
        let existing = self.tables().await?;
        let all = only.is_none();
        let streams = match only {
            Some(s) => s,
            None => tables.storage().list_streams().await?,
        };
        let mut report = CatalogReport { database: self.database.clone(), ..Default::default() };
        let mut wanted: BTreeMap<String, StreamName> = BTreeMap::new();
        for stream in streams {
            let name = glue_name(&stream);
            if let Some(other) = wanted.insert(name.clone(), stream.clone()) {
                return Err(StorageError::Config(format!(
                    "streams {other} and {stream} would both be Glue table {name}: rename one"
                )));
            }
            let Some(table) = tables.latest(&stream).await? else { continue };
            let state = table.snapshot().map_err(StorageError::delta("reading table state"))?;
            let schema = state.snapshot().arrow_schema();
            let location = format!("s3://{bucket}/{}{TABLES_DIR}/{stream}/", with_slash(prefix));
            let input = table_input(&name, &stream, &location, &schema)?;
            match existing.get(&name) {
                None => {
                    let body = json!({"DatabaseName": self.database, "TableInput": input});
                    self.call("CreateTable", body).await.map_err(self.error(&format!("creating table {name}")))?;
                    report.created.push(name);
                }
                Some(current) if same_definition(current, &input) => report.unchanged.push(name),
                Some(current) if current["Parameters"][STREAM_PARAMETER].as_str() != Some(stream.as_str()) => {
                    return Err(StorageError::Config(format!(
                        "Glue table {}.{name} exists and was not made by logyard for stream {stream}: drop it or rename the stream",
                        self.database
                    )));
                }
                Some(_) => {
                    let body = json!({"DatabaseName": self.database, "TableInput": input});
                    self.call("UpdateTable", body).await.map_err(self.error(&format!("updating table {name}")))?;
                    report.updated.push(name);
                }
            }
        }
        if all {
            for (name, table) in &existing {
                let made_for = table["Parameters"][STREAM_PARAMETER].as_str();
                if made_for.is_some() && !wanted.contains_key(name) {
                    let body = json!({"DatabaseName": self.database, "Name": name});
                    self.call("DeleteTable", body).await.map_err(self.error(&format!("removing table {name}")))?;
                    report.removed.push(name.clone());
                }
            }
        }
        Ok(report)
    }

    async fn ensure_database(&self, create: bool) -> Result<(), StorageError> {
        match self.call("GetDatabase", json!({"Name": self.database})).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == "EntityNotFoundException" && create => {
                let input = json!({"Name": self.database, "Description": "logyard stream tables (Delta Lake)"});
                self.call("CreateDatabase", json!({"DatabaseInput": input}))
                    .await
                    .map_err(self.error("creating the database"))?;
                Ok(())
            }
            Err(e) if e.code == "EntityNotFoundException" => Err(StorageError::Config(format!(
                "Glue database {} does not exist: deploy/terraform creates it (glue_database), or pass --create-database",
                self.database
            ))),
            Err(e) => Err(self.error("reading the database")(e)),
        }
    }

    /// The database's tables by name.
    async fn tables(&self) -> Result<BTreeMap<String, Value>, StorageError> {
        let mut out = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"DatabaseName": self.database});
            if let Some(t) = &token {
                body["NextToken"] = json!(t);
            }
            let page = self.call("GetTables", body).await.map_err(self.error("listing tables"))?;
            for table in page["TableList"].as_array().into_iter().flatten() {
                if let Some(name) = table["Name"].as_str() {
                    out.insert(name.to_owned(), table.clone());
                }
            }
            match page["NextToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }
}

fn with_slash(prefix: &str) -> String {
    let p = prefix.trim_matches('/');
    if p.is_empty() { String::new() } else { format!("{p}/") }
}

/// A stream's Glue table name: lower case, `_` for anything but letters, digits and `_`
/// (Athena's advice for table names).
pub fn glue_name(stream: &StreamName) -> String {
    stream.as_str().chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

/// The `TableInput` of a stream's table.
pub fn table_input(name: &str, stream: &StreamName, location: &str, schema: &Schema) -> Result<Value, StorageError> {
    let mut columns = Vec::new();
    for field in schema.fields().iter().filter(|f| f.name() != DATE_COLUMN) {
        let kind = athena_type(field.data_type())
            .map_err(|e| StorageError::Config(format!("column {} of stream {stream}: {e}", field.name())))?;
        columns.push(json!({"Name": field.name(), "Type": kind}));
    }
    Ok(json!({
        "Name": name,
        "Description": format!("logyard stream {stream} (Delta Lake)"),
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            "table_type": "DELTA",
            "EXTERNAL": "TRUE",
            "spark.sql.sources.provider": "delta",
            STREAM_PARAMETER: stream.as_str(),
        },
        "PartitionKeys": [{"Name": DATE_COLUMN, "Type": "date"}],
        "StorageDescriptor": {
            "Columns": columns,
            "Location": location,
            "SerdeInfo": {"Parameters": {"path": location}},
        },
    }))
}

/// Whether a table as Glue returns it already has `input`'s definition (the parts logyard
/// writes; Glue adds its own fields).
fn same_definition(current: &Value, input: &Value) -> bool {
    let sd = |v: &Value, k: &str| v["StorageDescriptor"][k].clone();
    sd(current, "Columns") == sd(input, "Columns")
        && sd(current, "Location") == sd(input, "Location")
        && current["PartitionKeys"] == input["PartitionKeys"]
        && input["Parameters"].as_object().is_some_and(|p| p.iter().all(|(k, v)| current["Parameters"][k] == *v))
}

/// An Arrow type as Athena (Trino) and Hive write it in a table definition.
pub fn athena_type(kind: &DataType) -> Result<String, String> {
    Ok(match kind {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 | DataType::UInt8 | DataType::UInt16 => "int".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => "decimal(20,0)".into(),
        DataType::Float16 | DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("decimal({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            "binary".into()
        }
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(
            TimeUnit::Second | TimeUnit::Millisecond | TimeUnit::Microsecond | TimeUnit::Nanosecond,
            _,
        ) => "timestamp".into(),
        DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f) | DataType::FixedSizeList(f, _) => {
            format!("array<{}>", athena_type(f.data_type())?)
        }
        DataType::Struct(fields) => {
            let inner: Result<Vec<String>, String> = fields
                .iter()
                .map(|f: &std::sync::Arc<Field>| Ok(format!("{}:{}", f.name(), athena_type(f.data_type())?)))
                .collect();
            format!("struct<{}>", inner?.join(","))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                format!("map<{},{}>", athena_type(kv[0].data_type())?, athena_type(kv[1].data_type())?)
            }
            other => return Err(format!("a map whose entries are {other}")),
        },
        DataType::Dictionary(_, value) => athena_type(value)?,
        other => return Err(format!("no Athena type for {other}")),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::Fields;

    use super::*;

    #[test]
    fn athena_types_for_the_columns_logyard_writes_and_nested_ones() {
        let utc = Some("UTC".into());
        assert_eq!(athena_type(&DataType::Timestamp(TimeUnit::Microsecond, utc)).unwrap(), "timestamp");
        assert_eq!(athena_type(&DataType::Int64).unwrap(), "bigint");
        assert_eq!(athena_type(&DataType::Float64).unwrap(), "double");
        assert_eq!(athena_type(&DataType::Utf8View).unwrap(), "string");
        let item = Arc::new(Field::new("item", DataType::Int64, true));
        assert_eq!(athena_type(&DataType::List(item)).unwrap(), "array<bigint>");
        let fields =
            Fields::from(vec![Field::new("ip", DataType::Utf8, true), Field::new("port", DataType::Int32, true)]);
        assert_eq!(athena_type(&DataType::Struct(fields)).unwrap(), "struct<ip:string,port:int>");
        assert!(athena_type(&DataType::Null).unwrap_err().contains("no Athena type"));
    }

    #[test]
    fn a_stream_becomes_an_external_delta_table_partitioned_by_date() {
        let stream = StreamName::new("shop-web").unwrap();
        assert_eq!(glue_name(&stream), "shop_web");
        let schema = Schema::new(vec![
            Field::new("timestamp", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
            Field::new(DATE_COLUMN, DataType::Date32, false),
            Field::new("status", DataType::Int64, true),
        ]);
        let location = "s3://b/p/tables/shop-web/";
        let input = table_input("shop_web", &stream, location, &schema).unwrap();
        assert_eq!(input["TableType"], "EXTERNAL_TABLE");
        assert_eq!(input["Parameters"]["table_type"], "DELTA");
        assert_eq!(input["StorageDescriptor"]["Location"], location);
        assert_eq!(input["PartitionKeys"], json!([{"Name": "date", "Type": "date"}]));
        let columns = &input["StorageDescriptor"]["Columns"];
        assert_eq!(*columns, json!([{"Name": "timestamp", "Type": "timestamp"}, {"Name": "status", "Type": "bigint"}]));
        // Glue adds fields of its own; the definition is the same while logyard's parts are.
        let mut stored = input.clone();
        stored["CreateTime"] = json!(1);
        stored["Parameters"]["transient_lastDdlTime"] = json!("1");
        assert!(same_definition(&stored, &input));
        stored["StorageDescriptor"]["Columns"] = json!([]);
        assert!(!same_definition(&stored, &input));
    }
}
