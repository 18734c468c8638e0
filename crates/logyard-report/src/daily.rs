//! Builds the daily report with SQL: the day's traffic from a stream of HTTP access logs,
//! and, when an orders database is configured, its pending orders and the orders whose
//! session hit a 5xx at checkout (a join of logs and orders).
//!
//! Names (stream, columns, routes) come from the configuration and are quoted as SQL
//! identifiers and string literals; the day is a validated date.

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use datafusion::scalar::ScalarValue;

use logyard_query::QueryEngine;

use crate::model::*;

/// Columns of the access-log stream.
#[derive(Debug, Clone)]
pub struct LogColumns {
    pub route: String,
    pub status: String,
    pub latency_ms: String,
    pub session: String,
    pub order: String,
    pub message: String,
}

/// A funnel step: sessions that called one of `routes` (successfully, with `ok_only`).
#[derive(Debug, Clone)]
pub struct FunnelSpec {
    pub step: String,
    pub routes: Vec<String>,
    pub ok_only: bool,
}

/// The orders table as SQL sees it (e.g. `pg.orders`) and its columns.
#[derive(Debug, Clone)]
pub struct OrdersSpec {
    pub schema: String,
    pub table: String,
    pub id: String,
    pub status: String,
    pub amount: String,
    pub currency: String,
    pub created_at: String,
    pub customer_id: String,
    pub pending: String,
}

#[derive(Debug, Clone)]
pub struct DailyOptions {
    pub stream: String,
    pub columns: LogColumns,
    pub funnel: Vec<FunnelSpec>,
    pub checkout_routes: Vec<String>,
    pub orders: Option<OrdersSpec>,
    /// Rows of the routes table, the top errors and the orders at risk.
    pub max_routes: usize,
    pub max_errors: usize,
    pub max_at_risk: usize,
}

/// Errors building a report: the step and what the query engine said.
#[derive(Debug, thiserror::Error)]
#[error("report: {step}: {message}")]
pub struct ReportError {
    pub step: &'static str,
    pub message: String,
}

impl logyard_core::ServiceError for ReportError {
    fn kind(&self) -> logyard_core::ErrorKind {
        logyard_core::ErrorKind::Internal
    }

    fn code(&self) -> &'static str {
        "report_failed"
    }
}

/// `"name"`, quotes doubled.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, quotes doubled.
fn text(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn list(values: &[String]) -> String {
    values.iter().map(|v| text(v)).collect::<Vec<_>>().join(", ")
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

struct Query<'a> {
    engine: &'a QueryEngine,
}

impl Query<'_> {
    /// The rows of a query, each a list of values.
    async fn rows(&self, step: &'static str, sql: &str) -> Result<Vec<Vec<ScalarValue>>, ReportError> {
        let failed = |message: String| ReportError { step, message };
        tracing::debug!(step, sql, "report query");
        let (_, batches) = self.engine.collect(sql).await.map_err(|e| failed(e.to_string()))?;
        batches
            .iter()
            .map(|b| values(b).map_err(|e| failed(e.to_string())))
            .collect::<Result<Vec<_>, _>>()
            .map(|parts| parts.into_iter().flatten().collect())
    }
}

fn values(batch: &RecordBatch) -> datafusion::error::Result<Vec<Vec<ScalarValue>>> {
    (0..batch.num_rows())
        .map(|row| batch.columns().iter().map(|c| ScalarValue::try_from_array(c, row)).collect())
        .collect()
}

fn as_u64(v: &ScalarValue) -> u64 {
    match v {
        ScalarValue::Int64(Some(n)) => (*n).max(0) as u64,
        ScalarValue::UInt64(Some(n)) => *n,
        ScalarValue::Int32(Some(n)) => (*n).max(0) as u64,
        ScalarValue::Int16(Some(n)) => (*n).max(0) as u64,
        ScalarValue::UInt32(Some(n)) => u64::from(*n),
        ScalarValue::Float64(Some(f)) if *f >= 0.0 => *f as u64,
        _ => 0,
    }
}

fn as_f64(v: &ScalarValue) -> Option<f64> {
    match v {
        ScalarValue::Float64(Some(f)) => Some(*f),
        ScalarValue::Float32(Some(f)) => Some(f64::from(*f)),
        ScalarValue::Int64(Some(n)) => Some(*n as f64),
        ScalarValue::Int32(Some(n)) => Some(f64::from(*n)),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

fn as_string(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => s.clone(),
        ScalarValue::Dictionary(_, inner) => as_string(inner),
        other if other.is_null() => None,
        // Decimals and numbers print exactly.
        other => Some(other.to_string()),
    }
}

fn as_time(v: &ScalarValue) -> Option<DateTime<Utc>> {
    match v {
        ScalarValue::TimestampMicrosecond(Some(t), _) => DateTime::from_timestamp_micros(*t),
        ScalarValue::TimestampNanosecond(Some(t), _) => Some(DateTime::from_timestamp_nanos(*t)),
        ScalarValue::TimestampMillisecond(Some(t), _) => DateTime::from_timestamp_millis(*t),
        ScalarValue::TimestampSecond(Some(t), _) => DateTime::from_timestamp(*t, 0),
        _ => None,
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// Builds the report of `date` (UTC); `now` bounds the age of pending orders.
pub async fn build(
    engine: &QueryEngine,
    o: &DailyOptions,
    date: NaiveDate,
    now: DateTime<Utc>,
) -> Result<DailyReport, ReportError> {
    let q = Query { engine };
    let c = &o.columns;
    let (route, status, latency) = (ident(&c.route), ident(&c.status), ident(&c.latency_ms));
    let (session, message) = (ident(&c.session), ident(&c.message));
    let stream = ident(&o.stream);
    let start = date.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    let end = start + Duration::days(1);
    let day = format!("\"timestamp\" >= {} AND \"timestamp\" < {}", text(&rfc3339(start)), text(&rfc3339(end)));
    let percentiles =
        format!("percentile_cont({latency}, 0.5), percentile_cont({latency}, 0.95), percentile_cont({latency}, 0.99)");

    let row = q
        .rows(
            "summary",
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE {status} >= 500), \
                 count(*) FILTER (WHERE {status} >= 400 AND {status} < 500), {percentiles}, \
                 count(DISTINCT {session}) FROM {stream} WHERE {day}"
            ),
        )
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let get = |i: usize| row.get(i).cloned().unwrap_or(ScalarValue::Null);
    let requests = as_u64(&get(0));
    let summary = Summary {
        requests,
        errors_5xx: as_u64(&get(1)),
        errors_4xx: as_u64(&get(2)),
        error_rate: ratio(as_u64(&get(1)), requests),
        p50_ms: as_f64(&get(3)),
        p95_ms: as_f64(&get(4)),
        p99_ms: as_f64(&get(5)),
        sessions: as_u64(&get(6)),
    };

    let mut hours: BTreeMap<u8, HourTraffic> =
        (0..24).map(|h| (h, HourTraffic { hour: h, requests: 0, errors_4xx: 0, errors_5xx: 0 })).collect();
    let by_hour = q
        .rows(
            "traffic by hour",
            &format!(
                "SELECT CAST(date_part('hour', \"timestamp\") AS BIGINT), count(*), \
                 count(*) FILTER (WHERE {status} >= 400 AND {status} < 500), count(*) FILTER (WHERE {status} >= 500) \
                 FROM {stream} WHERE {day} GROUP BY 1"
            ),
        )
        .await?;
    for r in by_hour {
        let hour = as_u64(&r[0]).min(23) as u8;
        hours.insert(
            hour,
            HourTraffic { hour, requests: as_u64(&r[1]), errors_4xx: as_u64(&r[2]), errors_5xx: as_u64(&r[3]) },
        );
    }

    let routes = q
        .rows(
            "routes",
            &format!(
                "SELECT {route}, count(*), count(*) FILTER (WHERE {status} >= 500), {percentiles} \
                 FROM {stream} WHERE {day} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {}",
                o.max_routes
            ),
        )
        .await?
        .iter()
        .map(|r| RouteStats {
            route: as_string(&r[0]).unwrap_or_else(|| "(none)".into()),
            requests: as_u64(&r[1]),
            errors_5xx: as_u64(&r[2]),
            error_rate: ratio(as_u64(&r[2]), as_u64(&r[1])),
            p50_ms: as_f64(&r[3]),
            p95_ms: as_f64(&r[4]),
            p99_ms: as_f64(&r[5]),
        })
        .collect();

    let top_errors = q
        .rows(
            "top errors",
            &format!(
                "SELECT {route}, {status}, {message}, count(*) FROM {stream} WHERE {day} AND {status} >= 500 \
                 GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3 LIMIT {}",
                o.max_errors
            ),
        )
        .await?
        .iter()
        .map(|r| ErrorGroup {
            route: as_string(&r[0]).unwrap_or_else(|| "(none)".into()),
            status: as_u64(&r[1]).min(u64::from(u16::MAX)) as u16,
            message: as_string(&r[2]),
            count: as_u64(&r[3]),
        })
        .collect();

    let mut funnel = Vec::new();
    for step in &o.funnel {
        let ok = if step.ok_only { format!(" AND {status} < 400") } else { String::new() };
        let r = q
            .rows(
                "funnel",
                &format!(
                    "SELECT count(DISTINCT {session}) FROM {stream} WHERE {day} AND {route} IN ({}){ok}",
                    list(&step.routes)
                ),
            )
            .await?;
        funnel.push(FunnelStep { step: step.step.clone(), sessions: r.first().map_or(0, |r| as_u64(&r[0])) });
    }

    let (pending, orders_at_risk) = match &o.orders {
        Some(orders) => {
            let as_of = now.min(end);
            let pending = pending_orders(&q, orders, as_of).await?;
            let at_risk = at_risk(&q, o, orders, &day, as_of).await?;
            (Some(pending), at_risk)
        }
        None => (None, Vec::new()),
    };

    Ok(DailyReport {
        date: date.format("%Y-%m-%d").to_string(),
        generated_at: rfc3339(now),
        stream: o.stream.clone(),
        summary,
        traffic_by_hour: hours.into_values().collect(),
        routes,
        top_errors,
        funnel,
        pending,
        orders_at_risk,
    })
}

/// The order columns selected for an [`Order`], in this order.
fn order_columns(o: &OrdersSpec, alias: &str) -> String {
    [&o.id, &o.customer_id, &o.amount, &o.currency, &o.status, &o.created_at]
        .iter()
        .map(|c| format!("{alias}.{}", ident(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn order(r: &[ScalarValue], as_of: DateTime<Utc>) -> Order {
    let created = as_time(&r[5]);
    Order {
        id: as_string(&r[0]).unwrap_or_default(),
        customer_id: as_string(&r[1]),
        amount: as_string(&r[2]).unwrap_or_default(),
        currency: as_string(&r[3]).unwrap_or_default().trim().to_owned(),
        status: as_string(&r[4]).unwrap_or_default(),
        created_at: created.map(rfc3339).unwrap_or_default(),
        age_hours: created.map_or(0.0, |t| (as_of - t).num_seconds().max(0) as f64 / 3600.0),
    }
}

fn orders_table(o: &OrdersSpec) -> String {
    format!("{}.{}", ident(&o.schema), ident(&o.table))
}

/// Orders pending now that were placed before `as_of`.
async fn pending_orders(q: &Query<'_>, o: &OrdersSpec, as_of: DateTime<Utc>) -> Result<PendingOrders, ReportError> {
    let table = orders_table(o);
    let pending =
        format!("{} = {} AND {} < {}", ident(&o.status), text(&o.pending), ident(&o.created_at), text(&rfc3339(as_of)));
    let by_currency = q
        .rows(
            "pending orders by currency",
            &format!(
                "SELECT {cur}, count(*), sum({amount}) FROM {table} WHERE {pending} GROUP BY 1 ORDER BY 2 DESC, 1",
                cur = ident(&o.currency),
                amount = ident(&o.amount)
            ),
        )
        .await?;
    let value_by_currency: Vec<CurrencyTotal> = by_currency
        .iter()
        .map(|r| CurrencyTotal {
            currency: as_string(&r[0]).unwrap_or_default().trim().to_owned(),
            orders: as_u64(&r[1]),
            amount: as_string(&r[2]).unwrap_or_default(),
        })
        .collect();
    let count = value_by_currency.iter().map(|c| c.orders).sum();
    let bounds = [("< 1h", 1), ("1-6h", 6), ("6-24h", 24), ("1-3d", 72)];
    let mut case = String::from("CASE");
    for (i, (_, hours)) in bounds.iter().enumerate() {
        let since = rfc3339(as_of - Duration::hours(*hours));
        case.push_str(&format!(" WHEN {} > {} THEN {i}", ident(&o.created_at), text(&since)));
    }
    case.push_str(&format!(" ELSE {} END", bounds.len()));
    let ages = q
        .rows("pending orders by age", &format!("SELECT {case}, count(*) FROM {table} WHERE {pending} GROUP BY 1"))
        .await?;
    let mut age_buckets: Vec<AgeBucket> = bounds
        .iter()
        .map(|(label, _)| *label)
        .chain(["> 3d"])
        .map(|label| AgeBucket { label: label.into(), orders: 0 })
        .collect();
    for r in ages {
        if let Some(bucket) = age_buckets.get_mut(as_u64(&r[0]) as usize) {
            bucket.orders = as_u64(&r[1]);
        }
    }
    let oldest = q
        .rows(
            "oldest pending order",
            &format!(
                "SELECT {} FROM {table} o WHERE {pending} ORDER BY o.{}, o.{} LIMIT 1",
                order_columns(o, "o"),
                ident(&o.created_at),
                ident(&o.id)
            ),
        )
        .await?
        .first()
        .map(|r| order(r, as_of));
    Ok(PendingOrders { count, value_by_currency, age_buckets, oldest })
}

/// Pending orders of sessions whose first 5xx at a checkout route fell on the day.
async fn at_risk(
    q: &Query<'_>,
    o: &DailyOptions,
    orders: &OrdersSpec,
    day: &str,
    as_of: DateTime<Utc>,
) -> Result<Vec<OrderAtRisk>, ReportError> {
    let c = &o.columns;
    let (route, status, session, order_col) = (ident(&c.route), ident(&c.status), ident(&c.session), ident(&c.order));
    let stream = ident(&o.stream);
    let checkout = list(&o.checkout_routes);
    let sql = format!(
        "WITH failures AS ( \
           SELECT {session} AS session, \"timestamp\" AS at, {route} AS route, {status} AS status, \
                  row_number() OVER (PARTITION BY {session} ORDER BY \"timestamp\", {route}) AS n \
           FROM {stream} WHERE {day} AND {status} >= 500 AND {route} IN ({checkout}) AND {session} IS NOT NULL), \
         session_orders AS ( \
           SELECT DISTINCT {session} AS session, {order_col} AS order_id FROM {stream} \
           WHERE {day} AND {order_col} IS NOT NULL AND {session} IS NOT NULL) \
         SELECT {cols}, f.session, f.at, f.route, f.status \
         FROM failures f JOIN session_orders so ON so.session = f.session \
         JOIN {table} o ON o.{id} = so.order_id \
         WHERE f.n = 1 AND o.{ostatus} = {pending} \
         ORDER BY o.{created}, o.{id} LIMIT {limit}",
        cols = order_columns(orders, "o"),
        table = orders_table(orders),
        id = ident(&orders.id),
        ostatus = ident(&orders.status),
        pending = text(&orders.pending),
        created = ident(&orders.created_at),
        limit = o.max_at_risk,
    );
    Ok(q.rows("orders at risk", &sql)
        .await?
        .iter()
        .map(|r| OrderAtRisk {
            order: order(r, as_of),
            session_id: as_string(&r[6]).unwrap_or_default(),
            error_at: as_time(&r[7]).map(rfc3339).unwrap_or_default(),
            route: as_string(&r[8]).unwrap_or_default(),
            status: as_u64(&r[9]).min(u64::from(u16::MAX)) as u16,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_quoted() {
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(text("it's"), "'it''s'");
        assert_eq!(list(&["/a".into(), "/b'c".into()]), "'/a', '/b''c'");
    }
}
