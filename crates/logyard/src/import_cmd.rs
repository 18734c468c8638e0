//! `logyard import alb`: ALB access logs from their S3 prefix into the `alb` stream.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;

use logyard_core::StreamName;
use logyard_ingest::alb_import::{AlbImport, ImportOptions, ImportReport, Progress};
use logyard_storage::{Location, Storage};

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import ALB access-log files (s3://bucket/prefix/AWSLogs/<account>/elasticloadbalancing/<region>/);
    /// files already imported are skipped, so it can run again at any time.
    Alb {
        /// Where the load balancer writes its logs (an s3:// URL, or a local directory).
        source: String,
        /// Log days before this one (YYYY-MM-DD) are left alone.
        #[arg(long)]
        since: Option<chrono::NaiveDate>,
        /// Keep importing new files as they arrive, every `--interval`.
        #[arg(long)]
        follow: bool,
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// The stream to write to.
        #[arg(long, default_value = "alb")]
        stream: String,
        /// Storage to write to (default from the configuration: ./logyard-data).
        #[arg(long)]
        storage: Option<String>,
    },
}

pub async fn run(
    command: ImportCommand,
    config: &crate::config::Config,
    env: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let ImportCommand::Alb { source, since, follow, interval, stream, .. } = command;
    let location = Location::parse(&source).with_context(|| format!("the ALB log location {source:?}"))?;
    let source_store = Storage::open(location, &crate::s3_options(config, env), Default::default())
        .await
        .with_context(|| format!("opening {source}"))?;
    let target = crate::open_storage(config, env, Default::default()).await?;
    let stream = StreamName::new(&stream)?;
    let options = ImportOptions {
        since,
        bundle_level: config.archive.level,
        frame_bytes: config.archive.frame_bytes,
        masking: Arc::new(config.masking.build()?),
        ..ImportOptions::default()
    };
    let import = AlbImport::new(source_store, &source, Arc::new(crate::stream_tables(config, target)), stream, options);
    loop {
        let report = run_with_progress(&import).await?;
        print_report(&report);
        if !follow {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn run_with_progress(import: &AlbImport) -> anyhow::Result<ImportReport> {
    let terminal = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::hidden();
    if terminal {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {bytes}/{total_bytes} gzip read, {binary_bytes_per_sec}, ETA {eta} {wide_msg}",
            )
            .expect("a valid template"),
        );
    }
    let progress = |p: Progress<'_>| {
        if terminal {
            bar.set_length(p.total);
            bar.inc(p.bytes);
            bar.set_message(p.key.rsplit('/').next().unwrap_or(p.key).to_owned());
        } else {
            eprintln!("imported {} ({} bytes)", p.key, p.bytes);
        }
    };
    let report = import.run_once(&progress).await.context("importing ALB access logs")?;
    bar.finish_and_clear();
    Ok(report)
}

fn print_report(report: &ImportReport) {
    println!(
        "{} files imported ({} already imported before), {} rows, {} lines rejected, {} bytes of log text",
        report.files, report.skipped, report.rows, report.rejected, report.bytes
    );
    if report.masked > 0 {
        println!("{} values masked", report.masked);
    }
    for e in &report.errors {
        println!("rejected: {} line {}: {}", e.file.as_deref().unwrap_or("?"), e.line, e.message);
    }
}
