//! `logyard report daily` (a one-shot job, a CronJob in production) and `logyard report ls`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;

use logyard_query::QueryEngine;
use logyard_report::daily::{DailyOptions, FunnelSpec, LogColumns, OrdersSpec};
use logyard_report::store::ReportStore;
use logyard_storage::{Location, Storage, StoreMetrics};

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Write the daily report of a UTC day (default: yesterday): traffic by hour, error rate
    /// and latency by route, top 5xx, the checkout funnel, pending orders and the pending
    /// orders whose session hit a 5xx at checkout. HTML, JSON and CSV under
    /// reports/daily/date=YYYY-MM-DD/, visible once complete.
    Daily {
        /// The day, YYYY-MM-DD.
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        /// Where to write (a storage URL; default: `report.out`, else the storage).
        #[arg(long)]
        out: Option<String>,
    },
    /// List finished reports.
    Ls {
        /// Where reports are (default: `report.out`, else the storage).
        #[arg(long)]
        out: Option<String>,
    },
}

/// The report settings of a configuration.
pub fn daily_options(config: &Config) -> DailyOptions {
    let r = &config.report;
    let orders = config.orders.enabled().then(|| {
        let o = &config.orders;
        OrdersSpec {
            schema: o.schema.clone(),
            table: o.orders_table.clone(),
            id: o.columns.id.clone(),
            status: o.columns.status.clone(),
            amount: o.columns.amount.clone(),
            currency: o.columns.currency.clone(),
            created_at: o.columns.created_at.clone(),
            customer_id: o.columns.customer_id.clone(),
            pending: o.pending_status.clone(),
        }
    });
    DailyOptions {
        stream: r.stream.clone(),
        columns: LogColumns {
            route: r.route_column.clone(),
            status: r.status_column.clone(),
            latency_ms: r.latency_column.clone(),
            session: r.session_column.clone(),
            order: r.order_column.clone(),
            message: r.message_column.clone(),
        },
        funnel: r
            .funnel
            .iter()
            .map(|f| FunnelSpec { step: f.step.clone(), routes: f.routes.clone(), ok_only: f.ok_only })
            .collect(),
        checkout_routes: r.checkout_routes.clone(),
        orders,
        max_routes: 50,
        max_errors: 10,
        max_at_risk: 100,
    }
}

/// Where reports are written and read: `out`, else `report.out`, else `storage` (the
/// storage root, already open).
pub async fn report_store(
    config: &Config,
    env: &BTreeMap<String, String>,
    out: Option<&str>,
    storage: &Storage,
) -> anyhow::Result<ReportStore> {
    let storage = match out.or(config.report.out.as_deref()) {
        Some(url) => {
            let location = Location::parse(url).with_context(|| format!("--out {url}"))?;
            Storage::open(location.clone(), &crate::s3_options(config, env), StoreMetrics::default())
                .await
                .with_context(|| format!("opening {location}"))?
        }
        None => storage.clone(),
    };
    Ok(ReportStore::new(storage))
}

pub async fn run(config: &Config, env: &BTreeMap<String, String>, command: ReportCommand) -> anyhow::Result<()> {
    match command {
        ReportCommand::Daily { date, out } => {
            let now = chrono::Utc::now();
            let date = date.unwrap_or_else(|| (now - chrono::Duration::days(1)).date_naive());
            let storage = crate::open_storage(config, env, StoreMetrics::default()).await?;
            let store = report_store(config, env, out.as_deref(), &storage).await?;
            let engine = crate::with_orders(
                QueryEngine::new(Arc::new(crate::stream_tables(config, storage)), crate::query_options(config)),
                config,
                env,
            )
            .await?;
            let report = logyard_report::daily::build(&engine, &daily_options(config), date, now).await?;
            let manifest = store.write_daily(&report).await?;
            println!(
                "daily report {} written: {} files, {} requests, {} pending orders",
                manifest.date,
                manifest.files.len(),
                report.summary.requests,
                report.pending.as_ref().map_or(0, |p| p.count)
            );
            Ok(())
        }
        ReportCommand::Ls { out } => {
            let storage = crate::open_storage(config, env, StoreMetrics::default()).await?;
            let store = report_store(config, env, out.as_deref(), &storage).await?;
            for m in store.list().await? {
                println!("{}\t{}\t{}\t{} files", m.kind, m.date, m.generated_at, m.files.len());
            }
            Ok(())
        }
    }
}
