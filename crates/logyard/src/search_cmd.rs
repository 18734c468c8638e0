//! `logyard search STREAMS QUERY`: the search language from the command line, against the
//! storage directly or a running server (`POST /api/v1/search`). Prints the newest events
//! first: one line each (time, stream, message, other fields), or NDJSON, or the whole answer.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use clap::ValueEnum;
use serde_json::{Map, Value};

use logyard_core::StreamName;
use logyard_core::time::now_micros;
use logyard_query::search::time_range;
use logyard_query::{QueryEngine, SearchRequest, SearchResult};
use logyard_storage::StoreMetrics;

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SearchFormat {
    /// One line per event: time, stream, message, then the other fields.
    Text,
    /// One JSON event per line.
    Ndjson,
    /// The whole answer: events, next page cursor, SQL, histogram.
    Json,
}

#[derive(Debug, clap::Args)]
pub(crate) struct SearchArgs {
    /// Streams, separated by commas.
    streams: String,
    /// The search, e.g. 'status:>=500 checkout' (empty: every event).
    #[arg(default_value = "")]
    query: String,
    /// How far back from --to ("15m", "24h", "7d").
    #[arg(long, conflicts_with = "from")]
    since: Option<String>,
    /// Start of the range (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// End of the range (RFC 3339; default now).
    #[arg(long)]
    to: Option<String>,
    /// Events to print.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// The page after this cursor (printed as `next` by --format json).
    #[arg(long)]
    before: Option<String>,
    #[arg(long, value_enum, default_value_t = SearchFormat::Text)]
    format: SearchFormat,
    /// Print the SQL that ran to standard error.
    #[arg(long)]
    show_sql: bool,
    /// Search a running server instead of reading the storage.
    #[arg(long)]
    server: Option<String>,
    /// Bearer token with the query scope, for --server.
    #[arg(long, env = "LOGYARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Storage to read (default from the configuration: ./logyard-data).
    #[arg(long, conflicts_with = "server")]
    pub(crate) storage: Option<String>,
}

pub(crate) async fn run(args: SearchArgs, config: &Config, env: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let streams: Vec<String> = args.streams.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    let result = match &args.server {
        Some(server) => remote(&args, &streams, server).await?,
        None => {
            let (from, to) = time_range(args.from.as_deref(), args.since.as_deref(), args.to.as_deref(), now_micros())?;
            let request = SearchRequest {
                streams: streams.iter().map(|s| StreamName::new(s)).collect::<Result<_, _>>()?,
                query: args.query.clone(),
                from,
                to,
                limit: args.limit,
                before: args.before.as_deref().map(str::parse).transpose()?,
                histogram: false,
            };
            let storage = crate::open_storage(config, env, StoreMetrics::default()).await?;
            let engine =
                QueryEngine::new(Arc::new(crate::stream_tables(config, storage)), crate::query_options(config));
            engine.search(&request, &logyard_auth::Principal::anonymous()).await?
        }
    };
    if args.show_sql {
        for sql in &result.sql {
            eprintln!("{sql};");
        }
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        SearchFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&result)?)?,
        SearchFormat::Ndjson => {
            for event in &result.events {
                writeln!(out, "{}", serde_json::to_string(event)?)?;
            }
        }
        SearchFormat::Text => {
            for event in &result.events {
                writeln!(out, "{}", line(event))?;
            }
        }
    }
    Ok(())
}

async fn remote(args: &SearchArgs, streams: &[String], server: &str) -> anyhow::Result<SearchResult> {
    let url = format!("{}/api/v1/search", server.trim_end_matches('/'));
    let body = serde_json::json!({
        "streams": streams, "query": args.query, "since": args.since, "from": args.from, "to": args.to,
        "limit": args.limit, "before": args.before,
    });
    let mut request = reqwest::Client::new().post(&url).json(&body);
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    crate::server_client::answer(request).await.with_context(|| format!("POST {url}"))
}

/// `time stream message key=value ...`, values as JSON where they are not plain text.
fn line(event: &Map<String, Value>) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = String::new();
    for key in ["timestamp", "_stream", "message"] {
        if let Some(v) = event.get(key) {
            out.push_str(&text(v));
            out.push(' ');
        }
    }
    for (key, value) in event {
        if matches!(key.as_str(), "timestamp" | "_stream" | "message" | "date") {
            continue;
        }
        let value = match value {
            Value::String(s) if !s.is_empty() && !s.contains(char::is_whitespace) && !s.contains('"') => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!("{key}={value} "));
    }
    out.pop();
    out
}
