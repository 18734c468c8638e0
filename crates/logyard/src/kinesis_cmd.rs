//! `logyard kinesis`: one Kinesis Data Streams consumer in the foreground; and the consumers
//! `serve` runs for `[[kinesis.streams]]`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use aws_sdk_kinesis::config::retry::RetryConfig;
use tokio::sync::watch;

use logyard_core::StreamName;
use logyard_ingest::IngestMetrics;
use logyard_ingest::kinesis::{Consumer, KinesisMetrics, KinesisOptions, StartPosition};
use logyard_storage::Tables;
use logyard_storage::aws::load_sdk_config;

use crate::config::{Config, KinesisConfig, KinesisStreamConfig};
use crate::services::{OnFailure, Services, Shutdown, Stage};

#[derive(Debug, clap::Args)]
pub struct KinesisArgs {
    /// The Kinesis stream (name or ARN).
    #[arg(long)]
    pub stream_name: String,
    /// The logyard stream its records go to.
    #[arg(long)]
    pub logyard_stream: String,
    /// Where shards without a checkpoint start.
    #[arg(long, value_enum, default_value_t = Start::TrimHorizon)]
    pub start: Start,
    /// This consumer's name in the shard leases (default `kinesis.worker_id`, else
    /// `<hostname>-<pid>`).
    #[arg(long)]
    pub worker_id: Option<String>,
    /// Storage holding the streams (default from the configuration: ./logyard-data).
    #[arg(long)]
    pub storage: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Start {
    TrimHorizon,
    Latest,
}

/// Runs one consumer until SIGTERM or SIGINT, then commits what it holds and releases its
/// leases.
pub async fn run(args: KinesisArgs, config: &Config, env: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let stream = KinesisStreamConfig {
        stream_name: args.stream_name,
        logyard_stream: args.logyard_stream,
        start: match args.start {
            Start::TrimHorizon => StartPosition::TrimHorizon,
            Start::Latest => StartPosition::Latest,
        },
    };
    let mut settings = config.kinesis.clone();
    if let Some(id) = args.worker_id {
        settings.worker_id = id;
    }
    let tables = Arc::new(crate::stream_tables(config, crate::open_storage(config, env, Default::default()).await?));
    let client = client(&settings).await;
    let consumer = consumer(&settings, &stream, config, client, tables, IngestMetrics::default(), Default::default())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        crate::wait_for_signal().await;
        let _ = stop_tx.send(true);
    });
    consumer.run(stop_rx).await.context("the Kinesis consumer stopped")
}

/// Adds a consumer per `[[kinesis.streams]]` to the server's components. A consumer that
/// cannot start (a stream not there yet, no permission, no network) is started again by
/// the supervisor, with a back-off; the server keeps serving meanwhile.
pub async fn add_consumers(
    services: &mut Services,
    config: &Config,
    tables: &Arc<Tables>,
    ingest: &IngestMetrics,
    metrics: &KinesisMetrics,
) -> anyhow::Result<()> {
    if config.kinesis.streams.is_empty() {
        return Ok(());
    }
    let client = client(&config.kinesis).await;
    for stream in &config.kinesis.streams {
        let consumer = Arc::new(consumer(
            &config.kinesis,
            stream,
            config,
            client.clone(),
            tables.clone(),
            ingest.clone(),
            metrics.clone(),
        )?);
        let name = format!("kinesis:{}", stream.stream_name);
        services.add(name, Stage::Consumers, OnFailure::Restart, move |shutdown: Shutdown| {
            let consumer = consumer.clone();
            async move { consumer.run(shutdown.receiver()).await.context("the Kinesis consumer stopped") }
        });
    }
    Ok(())
}

fn consumer(
    settings: &KinesisConfig,
    stream: &KinesisStreamConfig,
    config: &Config,
    client: aws_sdk_kinesis::Client,
    tables: Arc<Tables>,
    ingest: IngestMetrics,
    metrics: KinesisMetrics,
) -> anyhow::Result<Consumer> {
    let target = StreamName::new(&stream.logyard_stream)
        .with_context(|| format!("--logyard-stream {:?} is not a stream name", stream.logyard_stream))?;
    let mut options = KinesisOptions::new(&stream.stream_name, target, worker_id(settings));
    options.start = stream.start;
    options.lease = settings.lease;
    options.flush_bytes = settings.flush_bytes;
    options.flush_age = settings.flush_interval;
    options.idle_wait = settings.idle_wait;
    options.records_per_call = settings.records_per_call;
    options.max_columns = config.ingest.max_columns;
    let masker = config.masking.build()?.for_stream(options.target.as_str());
    options.masker = masker;
    Ok(Consumer::new(client, tables, options, ingest, metrics))
}

/// A Kinesis client from the SDK chain. Its own retries are off: the consumer retries every
/// call itself, backing off on throttling, and counts what it sees.
async fn client(settings: &KinesisConfig) -> aws_sdk_kinesis::Client {
    let sdk = load_sdk_config(settings.region.clone()).await;
    let mut builder = aws_sdk_kinesis::config::Builder::from(&sdk).retry_config(RetryConfig::disabled());
    if let Some(endpoint) = &settings.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_kinesis::Client::from_conf(builder.build())
}

fn worker_id(settings: &KinesisConfig) -> String {
    crate::worker_id(&settings.worker_id)
}
