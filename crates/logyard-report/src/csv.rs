//! The report's tables as CSV files: one file per table, each with a header row, UTF-8 and
//! `\n` line ends. Numbers are written as they are in the report (rates as fractions, not
//! percentages), and a missing value (a latency of a route without timings, a message that
//! was not logged) is an empty field.

use crate::model::{DailyReport, PendingOrders};

/// The CSV files of `report`, as (file name, contents), in the order of the HTML page.
///
/// `pending_by_currency.csv` and `pending_age.csv` are left out when the report has no
/// pending orders section (no orders database configured).
pub fn tables(report: &DailyReport) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        (
            "traffic_by_hour.csv",
            table(
                ["hour", "requests", "errors_4xx", "errors_5xx"],
                report.traffic_by_hour.iter().map(|h| {
                    [h.hour.to_string(), h.requests.to_string(), h.errors_4xx.to_string(), h.errors_5xx.to_string()]
                }),
            ),
        ),
        (
            "routes.csv",
            table(
                ["route", "requests", "errors_5xx", "error_rate", "p50_ms", "p95_ms", "p99_ms"],
                report.routes.iter().map(|r| {
                    [
                        r.route.clone(),
                        r.requests.to_string(),
                        r.errors_5xx.to_string(),
                        r.error_rate.to_string(),
                        optional(r.p50_ms),
                        optional(r.p95_ms),
                        optional(r.p99_ms),
                    ]
                }),
            ),
        ),
        (
            "top_errors.csv",
            table(
                ["route", "status", "message", "count"],
                report.top_errors.iter().map(|e| {
                    [e.route.clone(), e.status.to_string(), e.message.clone().unwrap_or_default(), e.count.to_string()]
                }),
            ),
        ),
        (
            "funnel.csv",
            table(["step", "sessions"], report.funnel.iter().map(|s| [s.step.clone(), s.sessions.to_string()])),
        ),
    ];
    if let Some(pending) = &report.pending {
        files.extend(pending_tables(pending));
    }
    files.push((
        "orders_at_risk.csv",
        table(
            [
                "order_id",
                "customer_id",
                "amount",
                "currency",
                "order_status",
                "created_at",
                "age_hours",
                "session_id",
                "error_at",
                "route",
                "http_status",
            ],
            report.orders_at_risk.iter().map(|r| {
                [
                    r.order.id.clone(),
                    r.order.customer_id.clone().unwrap_or_default(),
                    r.order.amount.clone(),
                    r.order.currency.clone(),
                    r.order.status.clone(),
                    r.order.created_at.clone(),
                    r.order.age_hours.to_string(),
                    r.session_id.clone(),
                    r.error_at.clone(),
                    r.route.clone(),
                    r.status.to_string(),
                ]
            }),
        ),
    ));
    files.into_iter().map(|(name, bytes)| (name.to_owned(), bytes)).collect()
}

/// The two tables of the pending orders section.
fn pending_tables(pending: &PendingOrders) -> [(&'static str, Vec<u8>); 2] {
    [
        (
            "pending_by_currency.csv",
            table(
                ["currency", "orders", "amount"],
                pending.value_by_currency.iter().map(|c| [c.currency.clone(), c.orders.to_string(), c.amount.clone()]),
            ),
        ),
        (
            "pending_age.csv",
            table(["age", "orders"], pending.age_buckets.iter().map(|b| [b.label.clone(), b.orders.to_string()])),
        ),
    ]
}

/// A CSV file of a header and rows. Every row has as many fields as the header (the array
/// length says so), so the writer's only possible error would be one of writing into memory.
fn table<const N: usize>(header: [&str; N], rows: impl Iterator<Item = [String; N]>) -> Vec<u8> {
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    writer.write_record(header).expect("writing CSV into memory cannot fail");
    for row in rows {
        writer.write_record(&row).expect("writing CSV into memory cannot fail");
    }
    writer.into_inner().expect("writing CSV into memory cannot fail")
}

/// An optional number as a CSV field: empty when absent.
fn optional(value: Option<f64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AgeBucket, CurrencyTotal, ErrorGroup, FunnelStep, HourTraffic, RouteStats, Summary};

    fn report() -> DailyReport {
        DailyReport {
            date: "2025-03-14".into(),
            generated_at: "2025-03-15T00:10:00Z".into(),
            stream: "storefront".into(),
            summary: Summary {
                requests: 10,
                errors_5xx: 1,
                errors_4xx: 2,
                error_rate: 0.1,
                p50_ms: Some(12.0),
                p95_ms: None,
                p99_ms: None,
                sessions: 3,
            },
            traffic_by_hour: (0..24)
                .map(|hour| HourTraffic { hour, requests: u64::from(hour), errors_4xx: 0, errors_5xx: 0 })
                .collect(),
            routes: vec![RouteStats {
                route: "/search?q=a,b".into(),
                requests: 10,
                errors_5xx: 1,
                error_rate: 0.1,
                p50_ms: Some(12.5),
                p95_ms: None,
                p99_ms: None,
            }],
            top_errors: vec![ErrorGroup {
                route: "/api/payment".into(),
                status: 502,
                message: Some("upstream said \"no\", then\nclosed".into()),
                count: 1,
            }],
            funnel: vec![FunnelStep { step: "view".into(), sessions: 3 }],
            pending: None,
            orders_at_risk: Vec::new(),
        }
    }

    fn read(bytes: &[u8]) -> Vec<Vec<String>> {
        let mut reader = ::csv::ReaderBuilder::new().has_headers(false).from_reader(bytes);
        reader.records().map(|r| r.expect("valid CSV").iter().map(str::to_owned).collect()).collect()
    }

    fn file<'a>(files: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
        files.iter().find(|(n, _)| n == name).map(|(_, b)| b.as_slice()).unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn field_with_comma_quote_and_newline_reads_back_unchanged() {
        let files = tables(&report());
        let rows = read(file(&files, "top_errors.csv"));
        assert_eq!(rows[0], ["route", "status", "message", "count"]);
        assert_eq!(rows[1], ["/api/payment", "502", "upstream said \"no\", then\nclosed", "1"]);
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn files_are_named_in_order_and_pending_ones_only_with_an_orders_database() {
        let names = |r: &DailyReport| tables(r).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        let mut report = report();
        assert_eq!(
            names(&report),
            ["traffic_by_hour.csv", "routes.csv", "top_errors.csv", "funnel.csv", "orders_at_risk.csv"]
        );
        report.pending = Some(PendingOrders {
            count: 2,
            value_by_currency: vec![CurrencyTotal { currency: "EUR".into(), orders: 2, amount: "1234.50".into() }],
            age_buckets: vec![AgeBucket { label: "< 1h".into(), orders: 2 }],
            oldest: None,
        });
        assert_eq!(
            names(&report),
            [
                "traffic_by_hour.csv",
                "routes.csv",
                "top_errors.csv",
                "funnel.csv",
                "pending_by_currency.csv",
                "pending_age.csv",
                "orders_at_risk.csv"
            ]
        );
        let files = tables(&report);
        assert_eq!(
            read(file(&files, "pending_by_currency.csv")),
            [["currency", "orders", "amount"], ["EUR", "2", "1234.50"]]
        );
        assert_eq!(read(file(&files, "pending_age.csv")), [["age", "orders"], ["< 1h", "2"]]);
    }

    #[test]
    fn every_table_has_a_header_and_unix_line_ends() {
        for (name, bytes) in tables(&report()) {
            let text = String::from_utf8(bytes).unwrap_or_else(|_| panic!("{name} is not UTF-8"));
            assert!(!text.contains('\r'), "{name} has a CR");
            assert!(text.ends_with('\n'), "{name} does not end with a line end");
            assert!(!read(text.as_bytes()).is_empty(), "{name} has no header");
        }
    }

    #[test]
    fn missing_values_are_empty_fields() {
        let files = tables(&report());
        let rows = read(file(&files, "routes.csv"));
        assert_eq!(rows[1], ["/search?q=a,b", "10", "1", "0.1", "12.5", "", ""]);
        let hours = read(file(&files, "traffic_by_hour.csv"));
        assert_eq!(hours.len(), 25);
        assert_eq!(hours[24], ["23", "23", "0", "0"]);
    }
}
