//! Searches in the search language (`logyard-search`) over one or more streams: the newest
//! matching events of a time range, a page at a time, and how many matched over time.
//!
//! Each stream gets its own SQL, because its columns decide how a term translates (a missing
//! field matches nothing; `status:>=500` compares numbers in an integer column). Results are
//! merged by time. Every statement that ran is returned, so a user can see and reuse it.
//!
//! Pages are keyset pages: the newest events first, ordered by time and then by every other
//! column, so that the order is the same each time; a [`Cursor`] names the time where a page
//! ended and how many events at exactly that time it had shown. No OFFSET: a page deep in a
//! month costs what the first one does.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, Schema, TimeUnit, TimestampMicrosecondType};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use logyard_auth::Principal;
use logyard_core::StreamName;
use logyard_core::batch::{DATE_COLUMN, TIMESTAMP_COLUMN};
use logyard_core::time::{Micros, date_string, rfc3339};
use logyard_search::{Expr, FieldKind, Fields, ident};

use crate::QueryError;
use crate::engine::QueryEngine;

/// Most events one page may hold.
pub const MAX_PAGE: usize = 1000;
/// Most series a histogram stacks; the rest are summed as `other`.
const MAX_SERIES: usize = 8;
/// Bucket widths a histogram picks from (seconds), the smallest that gives at most
/// [`MAX_BUCKETS`] buckets.
const BUCKET_SECONDS: [u64; 17] = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200];
const MAX_BUCKETS: u64 = 120;
const DAY_SECONDS: u64 = 86_400;
/// The range of a request that names neither `from` nor `since`.
const DEFAULT_SINCE: &str = "15m";

/// A search: streams, a time range `[from, to)`, the search text, a page.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub streams: Vec<StreamName>,
    pub query: String,
    pub from: Micros,
    pub to: Micros,
    /// Events per page (at most [`MAX_PAGE`]).
    pub limit: usize,
    /// Where the previous page ended; `None` for the newest events.
    pub before: Option<Cursor>,
    /// Also count the matching events over the range.
    pub histogram: bool,
}

/// The end of a page: the time of its oldest event, and how many events at exactly that time
/// the pages so far have shown. Written `<micros>.<shown>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub time: Micros,
    pub shown: usize,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.time, self.shown)
    }
}

impl FromStr for Cursor {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Self, QueryError> {
        let bad = || QueryError::BadRequest(format!("{s:?} is not a page cursor (one comes back as `next`)"));
        let (time, shown) = s.split_once('.').ok_or_else(bad)?;
        Ok(Cursor { time: time.parse().map_err(|_| bad())?, shown: shown.parse().map_err(|_| bad())? })
    }
}

/// What a search found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchResult {
    /// The range searched (RFC 3339): later pages name it to search the same one.
    pub from: String,
    pub to: String,
    /// Every statement that ran, one per stream and part.
    pub sql: Vec<String>,
    /// The page, newest first; each event has its stream in `_stream`.
    pub events: Vec<Map<String, Value>>,
    /// The cursor of the next (older) page, when there may be one.
    pub next: Option<String>,
    pub histogram: Option<Histogram>,
}

/// Matching events per time bucket, stacked by a column when the streams have one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Histogram {
    pub interval_seconds: u64,
    /// `level`, or `status` (as classes: `5xx`), or none.
    pub series_by: Option<String>,
    pub series: Vec<String>,
    /// Every bucket of the range, oldest first.
    pub buckets: Vec<Bucket>,
    pub total: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bucket {
    /// The bucket's start (RFC 3339).
    pub time: String,
    /// Events per series, in the order of `series`.
    pub counts: Vec<u64>,
}

/// The range `[from, to)` a request names: `to` (RFC 3339, default `now`) and either `from`
/// (RFC 3339) or `since`, a duration before `to` ("15m", "24h", "7d"; default 15 minutes).
pub fn time_range(
    from: Option<&str>,
    since: Option<&str>,
    to: Option<&str>,
    now: Micros,
) -> Result<(Micros, Micros), QueryError> {
    let time = |text: &str, name: &str| {
        logyard_core::time::parse_time_str(text)
            .ok_or_else(|| QueryError::BadRequest(format!("`{name}` {text:?} is not a time like 2026-12-03T10:00:00Z")))
    };
    let to = to.map_or(Ok(now), |t| time(t, "to"))?;
    let from = match (from, since) {
        (Some(_), Some(_)) => return Err(QueryError::BadRequest("give `from` or `since`, not both".into())),
        (Some(f), None) => time(f, "from")?,
        (None, since) => {
            let since = since.unwrap_or(DEFAULT_SINCE);
            let span = humantime::parse_duration(since).map_err(|e| {
                QueryError::BadRequest(format!("`since` {since:?} is not a duration like \"15m\" or \"7d\": {e}"))
            })?;
            to.saturating_sub(i64::try_from(span.as_micros()).unwrap_or(i64::MAX))
        }
    };
    Ok((from, to))
}

/// One stream as a search sees it.
struct Target {
    stream: StreamName,
    schema: Schema,
    fields: Fields,
}

impl QueryEngine {
    /// The search's expression and its streams as it sees them. A stream that does not
    /// exist, or that `reader` may not read, is an error that does not say which of the two it is.
    async fn targets(&self, request: &SearchRequest, reader: &Principal) -> Result<(Expr, Vec<Target>), QueryError> {
        let expr = logyard_search::parse(&request.query)?;
        if request.from >= request.to {
            return Err(QueryError::BadRequest("the time range is empty: `from` must be before `to`".into()));
        }
        if request.streams.is_empty() {
            return Err(QueryError::BadRequest("name at least one stream to search".into()));
        }
        let mut targets = Vec::with_capacity(request.streams.len());
        for stream in &request.streams {
            let schema = match self.tables().latest(stream).await? {
                Some(table) if reader.may_see(stream.as_str()) => crate::protect::readable_schema(
                    &table.snapshot().map_err(|e| QueryError::Storage(e.to_string()))?.snapshot().arrow_schema(),
                    reader.fields(),
                ),
                _ => return Err(QueryError::NoStream(stream.to_string())),
            };
            let fields = fields_of(&schema, self.options().text_fields.of(stream));
            targets.push(Target { stream: stream.clone(), schema, fields });
        }
        Ok((expr, targets))
    }

    /// The statements that select every event a search matches (no page), newest first, one
    /// per stream, each row with its stream in `_stream`: what a download runs.
    pub async fn search_export_sql(
        &self,
        request: &SearchRequest,
        reader: &Principal,
    ) -> Result<Vec<String>, QueryError> {
        self.per_target(request, reader, |target, table, condition| {
            format!(
                "SELECT '{stream}' AS \"_stream\", * FROM {table} WHERE {condition} ORDER BY {ts} DESC",
                // Stream names are lower-case letters, digits, `-` and `_`: nothing to escape.
                stream = target.stream.as_str(),
                ts = ident(TIMESTAMP_COLUMN),
            )
        })
        .await
    }

    /// One statement per stream the search reads, made by `statement` from the stream's
    /// target, its table's quoted name and the search's condition over the request's range.
    async fn per_target(
        &self,
        request: &SearchRequest,
        reader: &Principal,
        statement: impl Fn(&Target, &str, &str) -> String,
    ) -> Result<Vec<String>, QueryError> {
        let (expr, targets) = self.targets(request, reader).await?;
        targets
            .iter()
            .map(|target| {
                let condition = where_sql(target, &expr, request.from, request.to, false)?;
                Ok(statement(target, &ident(target.stream.as_str()), &condition))
            })
            .collect()
    }

    /// The statements that count the events a search matches over its range, one per
    /// stream: rows of `"group"` (the text of the `group_by` field, NULL where an event has
    /// none; one row without it) and `"value"` (the count). What an alert rule's search runs.
    pub async fn search_count_sql(
        &self,
        request: &SearchRequest,
        group_by: Option<&str>,
        reader: &Principal,
    ) -> Result<Vec<String>, QueryError> {
        self.per_target(request, reader, |target, table, condition| match group_by {
            // A stream without the field counts its events under no group.
            Some(field) if target.fields.columns.contains_key(field) => format!(
                "SELECT CAST({f} AS VARCHAR) AS \"group\", count(*) AS \"value\" FROM {table} WHERE {condition} GROUP BY 1",
                f = ident(field),
            ),
            Some(_) => format!(
                "SELECT CAST(NULL AS VARCHAR) AS \"group\", count(*) AS \"value\" FROM {table} WHERE {condition}"
            ),
            None => format!("SELECT count(*) AS \"value\" FROM {table} WHERE {condition}"),
        })
        .await
    }

    /// Runs a search. A stream that does not exist, or that `reader` may not read, is an error that
    /// does not say which of the two it is.
    pub async fn search(&self, request: &SearchRequest, reader: &Principal) -> Result<SearchResult, QueryError> {
        let (expr, targets) = self.targets(request, reader).await?;
        let limit = request.limit.clamp(1, MAX_PAGE);
        let mut sql = Vec::new();
        let mut rows = Vec::new();
        for target in &targets {
            let statement = events_sql(target, &expr, request, limit)?;
            let batches = self.collect_as(&statement, reader).await?;
            sql.push(statement);
            rows.extend(rows_of(&target.stream, &batches)?);
        }
        let (events, next) = page(rows, request.before, limit);

        let histogram = if request.histogram {
            let plan = HistogramPlan::new(request.from, request.to, &targets);
            let mut counts = BTreeMap::<(i64, String), u64>::new();
            for target in &targets {
                let statement = plan.sql(target, &expr, request)?;
                for batch in self.collect_as(&statement, reader).await? {
                    add_counts(&batch, &mut counts);
                }
                sql.push(statement);
            }
            Some(plan.finish(counts))
        } else {
            None
        };
        Ok(SearchResult {
            from: rfc3339(request.from),
            to: rfc3339(request.to),
            sql,
            events,
            next: next.map(|c| c.to_string()),
            histogram,
        })
    }

    async fn collect_as(&self, sql: &str, reader: &Principal) -> Result<Vec<RecordBatch>, QueryError> {
        let running = self.execute_as(sql, reader).await?;
        running.stream.try_collect().await.map_err(QueryError::from_datafusion)
    }
}

/// The search language's view of a table's columns.
fn fields_of(schema: &Schema, text: &[String]) -> Fields {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let kind = match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => FieldKind::Text,
                t if t.is_integer() => FieldKind::Integer,
                t if t.is_floating() => FieldKind::Float,
                DataType::Boolean => FieldKind::Boolean,
                DataType::Timestamp(..) => FieldKind::Timestamp,
                _ => FieldKind::Other,
            };
            (f.name().clone(), kind)
        })
        .collect();
    Fields { columns, text: text.to_vec() }
}

/// The time range's condition, with the `date` partitions it covers so that other days'
/// files are not opened.
fn range_sql(from: Micros, to: Micros, to_inclusive: bool) -> String {
    let last_day = if to_inclusive { to } else { to - 1 };
    format!(
        "{ts} >= '{}' AND {ts} {} '{}' AND {date} BETWEEN DATE '{}' AND DATE '{}'",
        rfc3339(from),
        if to_inclusive { "<=" } else { "<" },
        rfc3339(to),
        date_string(from),
        date_string(last_day),
        ts = ident(TIMESTAMP_COLUMN),
        date = ident(DATE_COLUMN),
    )
}

fn where_sql(target: &Target, expr: &Expr, from: Micros, to: Micros, to_inclusive: bool) -> Result<String, QueryError> {
    let condition = logyard_search::to_sql(expr, &target.fields)?;
    let range = range_sql(from, to, to_inclusive);
    Ok(if condition == "TRUE" { range } else { format!("{range} AND ({condition})") })
}

/// The newest `limit` events of one stream, plus those already shown at the cursor's time, plus
/// one that tells whether there is a next page.
fn events_sql(target: &Target, expr: &Expr, request: &SearchRequest, limit: usize) -> Result<String, QueryError> {
    let (to, inclusive, shown) = match request.before {
        Some(c) => (c.time, true, c.shown),
        None => (request.to, false, 0),
    };
    let condition = where_sql(target, expr, request.from, to, inclusive)?;
    // Then every other plain column, so that events at the same time always come in the same
    // order (lists and structs cannot be ordered).
    let mut order = vec![format!("{} DESC", ident(TIMESTAMP_COLUMN))];
    order.extend(
        target
            .schema
            .fields()
            .iter()
            .filter(|f| f.name() != TIMESTAMP_COLUMN && !f.data_type().is_nested())
            .map(|f| ident(f.name())),
    );
    Ok(format!(
        "SELECT * FROM {} WHERE {condition} ORDER BY {} LIMIT {}",
        ident(target.stream.as_str()),
        order.join(", "),
        limit + shown + 1
    ))
}

/// One event of one stream, in the order of its stream's results.
struct Row {
    time: Micros,
    stream: StreamName,
    index: usize,
    event: Map<String, Value>,
}

/// The events of a stream's results, each with `_stream`, nulls left out.
fn rows_of(stream: &StreamName, batches: &[RecordBatch]) -> Result<Vec<Row>, QueryError> {
    let mut rows = Vec::new();
    for batch in batches {
        let times = batch
            .column_by_name(TIMESTAMP_COLUMN)
            .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
            .ok_or_else(|| QueryError::Execution(format!("stream {stream} has no microsecond `timestamp` column")))?
            .clone();
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(false)
            .build::<_, arrow::json::writer::LineDelimited>(Vec::new());
        writer.write(batch).map_err(|e| QueryError::Encode(e.to_string()))?;
        writer.finish().map_err(|e| QueryError::Encode(e.to_string()))?;
        let text = writer.into_inner();
        for (i, line) in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
            let mut event: Map<String, Value> =
                serde_json::from_slice(line).map_err(|e| QueryError::Encode(e.to_string()))?;
            event.insert("_stream".into(), Value::String(stream.to_string()));
            rows.push(Row { time: times.value(i), stream: stream.clone(), index: rows.len(), event });
        }
    }
    Ok(rows)
}

/// Merges the streams' rows into one page after the cursor, and the cursor after it.
fn page(mut rows: Vec<Row>, before: Option<Cursor>, limit: usize) -> (Vec<Map<String, Value>>, Option<Cursor>) {
    rows.sort_by(|a, b| match b.time.cmp(&a.time) {
        Ordering::Equal => (&a.stream, a.index).cmp(&(&b.stream, b.index)),
        other => other,
    });
    let skip = before.map_or(0, |c| rows.iter().take(c.shown).take_while(|r| r.time == c.time).count());
    let more = rows.len() > skip + limit;
    let page: Vec<Row> = rows.into_iter().skip(skip).take(limit).collect();
    let next = match page.last() {
        Some(last) if more => {
            let at_last = page.iter().rev().take_while(|r| r.time == last.time).count();
            let earlier = match before {
                Some(c) if c.time == last.time => c.shown,
                _ => 0,
            };
            Some(Cursor { time: last.time, shown: earlier + at_last })
        }
        _ => None,
    };
    (page.into_iter().map(|r| r.event).collect(), next)
}

/// The buckets of a histogram and what it stacks by.
struct HistogramPlan {
    from: Micros,
    to: Micros,
    seconds: u64,
    series_by: Option<&'static str>,
}

impl HistogramPlan {
    fn new(from: Micros, to: Micros, targets: &[Target]) -> Self {
        let span = ((to - from).max(1) as u64).div_ceil(1_000_000);
        let seconds = BUCKET_SECONDS
            .into_iter()
            .find(|s| span.div_ceil(*s) <= MAX_BUCKETS)
            .unwrap_or_else(|| span.div_ceil(MAX_BUCKETS).div_ceil(DAY_SECONDS) * DAY_SECONDS);
        let has = |name: &str, kind: FieldKind| targets.iter().any(|t| t.fields.columns.get(name) == Some(&kind));
        let series_by = if has("level", FieldKind::Text) {
            Some("level")
        } else if has("status", FieldKind::Integer) {
            Some("status")
        } else {
            None
        };
        Self { from, to, seconds, series_by }
    }

    fn sql(&self, target: &Target, expr: &Expr, request: &SearchRequest) -> Result<String, QueryError> {
        let condition = where_sql(target, expr, request.from, request.to, false)?;
        let kind = |name: &str| target.fields.columns.get(name).copied();
        let series = match self.series_by {
            Some("level") if kind("level") == Some(FieldKind::Text) => "lower(\"level\")".to_owned(),
            Some("status") if kind("status") == Some(FieldKind::Integer) => {
                "CAST(\"status\" / 100 AS VARCHAR) || 'xx'".to_owned()
            }
            _ => "NULL".to_owned(),
        };
        Ok(format!(
            "SELECT date_bin(INTERVAL '{} seconds', {ts}) AS bucket, {series} AS series, count(*) AS events \
             FROM {} WHERE {condition} GROUP BY 1, 2",
            self.seconds,
            ident(target.stream.as_str()),
            ts = ident(TIMESTAMP_COLUMN),
        ))
    }

    /// Every bucket of the range with its counts per series (the biggest series first).
    fn finish(self, counts: BTreeMap<(i64, String), u64>) -> Histogram {
        let step = self.seconds as i64 * 1_000_000;
        let mut per_series = BTreeMap::<&str, u64>::new();
        for ((_, series), n) in &counts {
            *per_series.entry(series).or_default() += n;
        }
        let mut series: Vec<(&str, u64)> = per_series.into_iter().collect();
        series.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut names: Vec<String> = series.iter().take(MAX_SERIES).map(|(s, _)| s.to_string()).collect();
        let overflow = series.len() > MAX_SERIES;
        if overflow {
            names.push("other".into());
        }
        let column = |s: &str| names.iter().position(|n| n == s).unwrap_or(names.len() - 1);
        let first = self.from.div_euclid(step) * step;
        let mut buckets: Vec<Bucket> = (0..)
            .map(|i| first + i * step)
            .take_while(|t| *t < self.to)
            .map(|t| Bucket { time: rfc3339(t), counts: vec![0; names.len()] })
            .collect();
        let mut total = 0;
        for ((start, series), n) in counts {
            let i = ((start - first) / step) as usize;
            if let Some(bucket) = buckets.get_mut(i) {
                bucket.counts[column(&series)] += n;
                total += n;
            }
        }
        Histogram {
            interval_seconds: self.seconds,
            series_by: self.series_by.map(str::to_owned),
            series: names,
            buckets,
            total,
        }
    }
}

/// Adds a histogram query's rows (`bucket`, a time; `series`; `events`) to `counts`, by the
/// bucket's start in microseconds.
fn add_counts(batch: &RecordBatch, counts: &mut BTreeMap<(i64, String), u64>) {
    let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
    let bucket = batch.column_by_name("bucket").and_then(|c| arrow::compute::cast(c, &micros).ok());
    let (Some(bucket), Some(events)) = (
        bucket.as_ref().and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>()),
        batch.column_by_name("events").and_then(|c| c.as_primitive_opt::<Int64Type>()),
    ) else {
        return;
    };
    let series = batch.column_by_name("series").and_then(|c| arrow::compute::cast(c, &DataType::Utf8).ok());
    let series = series.as_ref().map(|s| s.as_string::<i32>());
    for i in 0..batch.num_rows() {
        if bucket.is_null(i) {
            continue;
        }
        let name = match series {
            Some(s) if s.is_valid(i) => s.value(i).to_owned(),
            _ => String::new(),
        };
        *counts.entry((bucket.value(i), name)).or_default() += events.value(i).max(0) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(time: Micros, stream: &str, index: usize) -> Row {
        let mut event = Map::new();
        event.insert("id".into(), Value::String(format!("{stream}{index}")));
        Row { time, stream: StreamName::new(stream).unwrap(), index, event }
    }

    fn ids(events: &[Map<String, Value>]) -> Vec<&str> {
        events.iter().map(|e| e["id"].as_str().unwrap()).collect()
    }

    #[test]
    fn pages_follow_each_other_without_gaps_or_repeats_across_equal_times() {
        // Two streams; five events at time 5, ordered by stream and then by their index.
        let all = || {
            vec![
                row(9, "b", 0),
                row(5, "b", 1),
                row(5, "b", 2),
                row(9, "a", 0),
                row(5, "a", 1),
                row(5, "a", 2),
                row(5, "a", 3),
                row(1, "a", 4),
            ]
        };
        let (first, next) = page(all(), None, 3);
        assert_eq!(ids(&first), ["a0", "b0", "a1"]);
        assert_eq!(next, Some(Cursor { time: 5, shown: 1 }));
        // The next query returns everything at or before time 5 (here: the same rows).
        let (second, next) = page(all().into_iter().filter(|r| r.time <= 5).collect(), next, 3);
        assert_eq!(ids(&second), ["a2", "a3", "b1"]);
        assert_eq!(next, Some(Cursor { time: 5, shown: 4 }));
        let (third, next) = page(all().into_iter().filter(|r| r.time <= 5).collect(), next, 3);
        assert_eq!(ids(&third), ["b2", "a4"]);
        assert_eq!(next, None);
    }

    #[test]
    fn histograms_pick_a_bucket_width_for_the_range() {
        let plan = |seconds: i64| HistogramPlan::new(0, seconds * 1_000_000, &[]).seconds;
        assert_eq!(plan(15 * 60), 10);
        assert_eq!(plan(3600), 30);
        assert_eq!(plan(86_400), 900);
        assert_eq!(plan(7 * 86_400), 7200);
        assert_eq!(plan(90 * 86_400), 86_400);
    }

    #[test]
    fn time_ranges_from_times_or_durations() {
        let now = 1_764_756_000_000_000; // 2025-12-03T10:00:00Z
        assert_eq!(time_range(None, None, None, now).unwrap(), (now - 900_000_000, now));
        assert_eq!(time_range(None, Some("1h"), None, now).unwrap(), (now - 3_600_000_000, now));
        let (from, to) = time_range(Some("2025-12-03T09:00:00Z"), None, Some("2025-12-03T09:30:00Z"), now).unwrap();
        assert_eq!((now - from, now - to), (3_600_000_000, 1_800_000_000));
        let err = |f, s, t| time_range(f, s, t, now).unwrap_err().to_string();
        assert_eq!(err(Some("x"), None, None), "`from` \"x\" is not a time like 2026-12-03T10:00:00Z");
        assert!(err(None, Some("soon"), None).starts_with("`since` \"soon\" is not a duration"));
        assert_eq!(err(Some("2025-12-03T09:00:00Z"), Some("1h"), None), "give `from` or `since`, not both");
    }

    #[test]
    fn cursors_read_back() {
        let c = Cursor { time: 1_764_000_000_000_000, shown: 3 };
        assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
        assert!("x".parse::<Cursor>().is_err());
    }
}
