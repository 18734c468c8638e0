//! A stream's table as queries scan it: the Delta table, whose files and row groups the
//! indexes beside it (`logyard_storage::ids`) narrow for `column = 'id'`, `column IN (...)` and
//! `column LIKE`/`ILIKE '%words%'` before any file is opened. Delta's statistics and Parquet's bloom filters then skip what they
//! can in what is left, as for any other query.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, ScalarValue, Statistics};
use datafusion::config::ConfigOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::physical_plan::{
    FileGroup, FileGroupPartitioner, FileScanConfig, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::expr::{Cast, Like, ScalarFunction};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt};

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
                return with_parquet_reads(plan, &narrowed.row_groups, state.config_options(), limit).await;
            }
        }
        let plan = self.inner.scan(state, projection, filters, limit).await?;
        with_parquet_reads(plan, &HashMap::new(), state.config_options(), limit).await
    }
}

/// `plan` with its Parquet scans reading, of the files in `row_groups` (paths relative to the
/// table), only the row groups marked `true` (DataFusion's `ParquetAccessPlan` of a file): their
/// bloom filters and data are not read either.
///
/// Each scan also reads a file's last `execution.parquet.metadata_size_hint` bytes at its first
/// read, which delta-rs's scan leaves unset: the footer and the page indexes behind it then come
/// in one request, where without it the footer's length, the footer and the page index are
/// three. Footers are read with their page indexes, once per file ([`crate::footers`]).
///
/// And the scan's work is spread over the session's partitions ([`spread`]): DataFusion's own
/// repartitioning is off in the engine's sessions, because it cuts the files into byte ranges
/// of equal size, which puts an hour of a day's file (its neighbouring row groups) or the few
/// row groups an index admits into one partition and leaves the other cores idle.
async fn with_parquet_reads(
    plan: Arc<dyn ExecutionPlan>,
    row_groups: &HashMap<String, Vec<bool>>,
    options: &ConfigOptions,
    limit: Option<usize>,
) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
    let mut scans = Vec::new();
    plan.apply(|node| {
        if let Some(config) = file_scan(node) {
            scans.push(config.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let mut rebuilt = Vec::with_capacity(scans.len());
    for config in scans {
        rebuilt.push(parquet_reads(config, row_groups, options, limit).await?);
    }
    let mut rebuilt = rebuilt.into_iter();
    plan.transform_down(|node| match file_scan(&node).and_then(|_| rebuilt.next()) {
        Some(config) => Ok(Transformed::yes(DataSourceExec::from_data_source(config) as Arc<dyn ExecutionPlan>)),
        None => Ok(Transformed::no(node)),
    })
    .map(|t| t.data)
}

fn file_scan(node: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    node.downcast_ref::<DataSourceExec>().and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
}

/// A scan spreads its row groups over the partitions one by one when it reads at most this many
/// files (their footers are read while planning, most often from the cache); a scan of more
/// files is spread by byte ranges, as DataFusion does.
const SPREAD_FILES_AT_MOST: usize = 64;

/// How many footers planning reads at once.
const FOOTERS_AT_ONCE: usize = 16;

async fn parquet_reads(
    mut config: FileScanConfig,
    row_groups: &HashMap<String, Vec<bool>>,
    options: &ConfigOptions,
    limit: Option<usize>,
) -> datafusion::common::Result<FileScanConfig> {
    let Some(parquet) = config.file_source.downcast_ref::<ParquetSource>() else {
        return Ok(config);
    };
    let mut parquet = parquet.clone();
    let footer_hint = options.execution.parquet.metadata_size_hint;
    if let Some(hint) = footer_hint {
        parquet = parquet.with_metadata_size_hint(hint);
    }
    let readers = match parquet.parquet_file_reader_factory() {
        Some(readers) => {
            let readers: Arc<dyn ParquetFileReaderFactory> =
                Arc::new(crate::footers::FootersOnce::new(readers.clone()));
            parquet = parquet.with_parquet_file_reader_factory(readers.clone());
            Some(readers)
        }
        None => None,
    };
    config.file_source = Arc::new(parquet);

    let mask = |file: &PartitionedFile| {
        let location = file.object_meta.location.as_ref();
        let (_, mask) = row_groups.iter().find(|(path, _)| {
            location.strip_suffix(path.as_str()).is_some_and(|dir| dir.is_empty() || dir.ends_with('/'))
        })?;
        Some(mask.clone())
    };
    let files: Vec<(PartitionedFile, Option<Vec<bool>>)> =
        config.file_groups.iter().flat_map(FileGroup::iter).map(|file| (file.clone(), mask(file))).collect();
    let partitions = options.execution.target_partitions.max(1);
    let whole_files = files.iter().all(|(file, _)| file.range.is_none());
    if let Some(readers) = readers.filter(|_| {
        partitions > 1 && limit.is_none() && whole_files && (1..=SPREAD_FILES_AT_MOST).contains(&files.len())
    }) {
        let wanted: Vec<PartitionedFile> = files.iter().map(|(file, _)| file.clone()).collect();
        let footers: Vec<Arc<ParquetMetaData>> = futures::stream::iter(wanted)
            .map(|file| footer(readers.clone(), file, footer_hint))
            .buffered(FOOTERS_AT_ONCE)
            .try_collect()
            .await?;
        let counts = footers.iter().map(|footer| footer.num_row_groups());
        config.file_groups = spread(files.into_iter().zip(counts), partitions);
        return Ok(config);
    }
    let groups: Vec<FileGroup> = (config.file_groups.iter())
        .map(|group| {
            let files = (group.iter().cloned())
                .map(|mut file| {
                    if let Some(mask) = mask(&file) {
                        file.extensions.insert(access_plan(&mask));
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
    config.file_groups = FileGroupPartitioner::new()
        .with_target_partitions(partitions)
        .with_repartition_file_min_size(options.optimizer.repartition_file_min_size)
        .repartition_file_groups(&groups)
        .unwrap_or(groups);
    Ok(config)
}

/// A file's footer, as the scan will read it (through the same readers, so from the cache or
/// into it).
async fn footer(
    readers: Arc<dyn ParquetFileReaderFactory>,
    file: PartitionedFile,
    footer_hint: Option<usize>,
) -> datafusion::common::Result<Arc<ParquetMetaData>> {
    let mut reader = readers.create_reader(0, file, footer_hint, &ExecutionPlanMetricsSet::new())?;
    Ok(reader.get_metadata(None).await?)
}

/// The row groups to read of each file (those its mask admits, or all; `usize` is how many the
/// file has), dealt to `partitions` groups in turn, one row group at a time and across files:
/// neighbouring row groups, which an hour of a day's file reads, fall to different partitions.
/// A file appears in each group that reads some of it, with an access plan of those row groups.
/// The shares are DataFusion's units of work: with its work stealing on (the default), a
/// partition that is idle also takes the shares of another that has not opened them yet.
fn spread(
    files: impl IntoIterator<Item = ((PartitionedFile, Option<Vec<bool>>), usize)>,
    partitions: usize,
) -> Vec<FileGroup> {
    let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); partitions];
    let mut next = 0;
    for ((file, mask), count) in files {
        let admitted = |i: usize| mask.as_ref().filter(|m| m.len() == count).is_none_or(|m| m[i]);
        let mut shares = vec![vec![false; count]; partitions];
        for i in (0..count).filter(|&i| admitted(i)) {
            shares[next % partitions][i] = true;
            next += 1;
        }
        for (group, share) in groups.iter_mut().zip(shares) {
            if share.contains(&true) {
                let mut file = file.clone();
                file.extensions.insert(access_plan(&share));
                group.push(file);
            }
        }
    }
    groups.into_iter().filter(|group| !group.is_empty()).map(FileGroup::new).collect()
}

fn access_plan(mask: &[bool]) -> ParquetAccessPlan {
    let mut plan = ParquetAccessPlan::new_all(mask.len());
    mask.iter().enumerate().filter(|(_, keep)| !**keep).for_each(|(i, _)| plan.skip(i));
    plan
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

    /// Which row groups of which file each partition reads.
    fn shares(groups: &[FileGroup]) -> Vec<Vec<(String, Vec<bool>)>> {
        let read = |file: &PartitionedFile| {
            let plan = file.extensions.get::<ParquetAccessPlan>().expect("an access plan");
            (file.object_meta.location.to_string(), plan.inner().iter().map(|rg| rg.should_scan()).collect())
        };
        groups.iter().map(|group| group.iter().map(read).collect()).collect()
    }

    #[test]
    fn row_groups_are_dealt_to_the_partitions_in_turn_across_files() {
        let file = |name: &str| PartitionedFile::new(name, 1000);
        let (t, f) = (true, false);
        let groups = spread(
            [
                ((file("a"), None), 3),
                ((file("b"), Some(vec![f, t, f, t, t])), 5),
                ((file("c"), Some(vec![f, f])), 2),
                // An index that does not fit the file is not used: all its row groups are read.
                ((file("d"), Some(vec![f])), 2),
            ],
            2,
        );
        let want = vec![
            vec![("a".to_owned(), vec![t, f, t]), ("b".to_owned(), vec![f, f, f, t, f]), ("d".to_owned(), vec![t, f])],
            vec![("a".to_owned(), vec![f, t, f]), ("b".to_owned(), vec![f, t, f, f, t]), ("d".to_owned(), vec![f, t])],
        ];
        assert_eq!(shares(&groups), want);

        // One row group: one partition; more partitions than row groups: no empty ones.
        assert_eq!(shares(&spread([((file("a"), None), 1)], 4)), vec![vec![("a".to_owned(), vec![t])]]);
        assert_eq!(spread([((file("a"), None), 3)], 8).len(), 3);
    }
}
