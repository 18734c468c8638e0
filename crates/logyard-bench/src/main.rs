//! `logyard-bench gen` writes generated storefront logs; `logyard-bench alb` ALB access-log
//! lines; `logyard-bench load` sends an NDJSON file to a logyard server with concurrent
//! clients and reports the rates; `logyard-bench mask` times the masking of an NDJSON file's
//! events in this process, for all built-in detectors and for each alone.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};

use logyard_bench::protocols::{self, Protocol};
use logyard_bench::storefront::{Generator, Spec};

#[derive(Debug, Parser)]
#[command(name = "logyard-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write generated storefront access logs as NDJSON.
    Gen {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 3)]
        days: u32,
        /// First day (UTC).
        #[arg(long, default_value = "2026-11-20")]
        start: chrono::NaiveDate,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write the orders these logs place, as CSV for `scripts/orders/schema.sql`.
        #[arg(long)]
        orders: Option<PathBuf>,
    },
    /// Write ALB access-log lines (the documented format, every kind of entry) to stdout.
    Alb {
        #[arg(long, default_value_t = 10_000)]
        lines: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Send an NDJSON file to a server and report events/s and MB/s until the last commit.
    Load {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        #[arg(long, default_value = "storefront")]
        stream: String,
        #[arg(long)]
        file: PathBuf,
        /// Concurrent requests.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Bytes per request (cut at line ends).
        #[arg(long, default_value_t = 1 << 20)]
        batch_bytes: usize,
        /// The protocol the events are sent with.
        #[arg(long, value_enum, default_value = "ndjson")]
        protocol: Protocol,
        /// What an answer waits for (`wal` or `commit`; NDJSON only).
        #[arg(long, default_value = "wal")]
        ack: String,
    },
    /// Time the masking of each event of an NDJSON file (one core, in this process): every
    /// built-in detector at once, then each alone. Prints nanoseconds per event (median of
    /// the rounds) and how many events changed.
    Mask {
        #[arg(long)]
        file: PathBuf,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Only this set: `default` or one detector's name.
        #[arg(long)]
        only: Option<String>,
    },
    /// Time, in this process on one core, what ingest and flush do to each event of an NDJSON
    /// file: the one-pass path (scan and encode the leaves at ingest; columns from the
    /// leaves at flush), rows built as the lines are read (what a request does once its
    /// table has a schema) and merged at flush, and the two-pass path (check at ingest;
    /// flatten the JSON again at flush). Prints nanoseconds per event (median of the rounds).
    Events {
        #[arg(long)]
        file: PathBuf,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Events per request body.
        #[arg(long, default_value_t = 2500)]
        per_request: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Gen { events, days, start, seed, out, orders } => {
            let spec = Spec { seed, events, start, days, ..Spec::default() };
            let mut generator = Generator::new(spec);
            match out {
                Some(path) => {
                    let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
                    let mut w = BufWriter::with_capacity(1 << 20, file);
                    generator.write_all(&mut w)?;
                    w.flush()?;
                }
                None => {
                    let mut w = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
                    generator.write_all(&mut w)?;
                    w.flush()?;
                }
            }
            if let Some(path) = orders {
                let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
                let mut w = BufWriter::new(file);
                writeln!(w, "{}", logyard_bench::storefront::Order::CSV_HEADER)?;
                for order in generator.placed_orders() {
                    writeln!(w, "{}", order.csv_line())?;
                }
                w.flush()?;
            }
            eprintln!("{events} events, {} orders", generator.orders());
            Ok(())
        }
        Command::Alb { lines, seed } => {
            let mut out = std::io::stdout().lock();
            out.write_all(logyard_bench::alb::lines(lines, seed).as_bytes())?;
            Ok(())
        }
        Command::Load { server, stream, file, concurrency, batch_bytes, protocol, ack } => {
            if ack != "wal" && !(ack == "commit" && matches!(protocol, Protocol::Ndjson)) {
                bail!("--ack {ack}: use wal, or commit with the ndjson protocol");
            }
            load(&server, &stream, &file, concurrency, batch_bytes, protocol, &ack).await
        }
        Command::Mask { file, rounds, only } => mask(&file, rounds, only.as_deref()),
        Command::Events { file, rounds, per_request } => events(&file, rounds, per_request),
    }
}

fn events(file: &PathBuf, rounds: usize, per_request: usize) -> anyhow::Result<()> {
    use logyard_core::batch::{
        BatchBuilder, Held, PendingEvent, base_schema, batches_from_held, batches_from_payloads,
    };
    use logyard_core::parse::{BodyFormat, parse_body, parse_body_into_rows};

    let data = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let lines: Vec<&str> = data.lines().filter(|l| !l.is_empty()).collect();
    let bodies: Vec<String> = lines.chunks(per_request.max(1)).map(|c| c.join("\n")).collect();
    let n = lines.len().max(1) as f64;
    let median = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    let time = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<f64> {
        let mut xs = Vec::new();
        for _ in 0..rounds.max(1) {
            let started = Instant::now();
            f()?;
            xs.push(started.elapsed().as_nanos() as f64 / n);
        }
        Ok(median(xs))
    };
    let schema = Arc::new(base_schema());

    // One pass: what the ingest path and the flusher do until a table has a schema.
    let payloads: Vec<Bytes> =
        bodies.iter().map(|b| parse_body(b.as_bytes(), BodyFormat::Ndjson, 0).events.finish()).collect();
    let ingest = time(&mut || {
        for b in &bodies {
            std::hint::black_box(parse_body(b.as_bytes(), BodyFormat::Ndjson, 0).events.finish());
        }
        Ok(())
    })?;
    // The table's schema after its first commit, as the flusher meets it.
    let first = batches_from_payloads(schema.clone(), payloads.iter().map(|p| (0, &p[..])), 1000, 64 * 1024)?;
    let schema = first.last().context("no events")?.schema();
    // As the flusher does: every payload at once, sorted by time, in batches of 64 Ki rows.
    let flush = time(&mut || {
        let inputs = payloads.iter().enumerate().map(|(i, p)| (i as u64, &p[..]));
        std::hint::black_box(batches_from_payloads(schema.clone(), inputs, 1000, 64 * 1024)?);
        Ok(())
    })?;
    // What NDJSON requests do once their table has a schema: rows built as the lines are
    // read, merged at the flush.
    let mut parts = Vec::with_capacity(bodies.len());
    let read = time(&mut || {
        parts.clear();
        for b in &bodies {
            let (parsed, rows) = parse_body_into_rows(b.as_bytes(), BodyFormat::Ndjson, 0, &schema, 1000);
            std::hint::black_box(parsed.events.finish());
            parts.push(rows.context("a request's rows were left to the flush")?);
        }
        Ok(())
    })?;
    let merge = time(&mut || {
        let held = parts.iter().enumerate().map(|(i, rows)| (i as u64, Held::Prepared(rows)));
        std::hint::black_box(batches_from_held(schema.clone(), held, 1000, 64 * 1024)?);
        Ok(())
    })?;
    // Two passes: check at ingest, flatten again at flush.
    let check = time(&mut || {
        for l in &lines {
            std::hint::black_box(logyard_core::event::check_line(l.as_bytes(), 0).map_err(anyhow::Error::msg)?);
        }
        Ok(())
    })?;
    let flatten = time(&mut || {
        for chunk in lines.chunks(64 * 1024) {
            let mut b = BatchBuilder::with_capacity(schema.clone(), 1000, chunk.len());
            for l in chunk {
                b.push(PendingEvent { time: 0, source: logyard_core::TimeSource::Field(0), text: l })?;
            }
            std::hint::black_box(b.finish()?);
        }
        Ok(())
    })?;
    let text: usize = lines.iter().map(|l| l.len()).sum();
    let encoded: usize = payloads.iter().map(|p| p.len()).sum();
    println!("{:>34}  {:>9}", "stage", "ns/event");
    println!("{:>34}  {ingest:>9.0}", "one pass: scan + encode leaves");
    println!("{:>34}  {flush:>9.0}", "one pass: columns from leaves");
    println!("{:>34}  {:>9.0}", "one pass: total", ingest + flush);
    println!("{:>34}  {read:>9.0}", "rows as read: scan + encode + rows");
    println!("{:>34}  {merge:>9.0}", "rows as read: merge at the flush");
    println!("{:>34}  {:>9.0}", "rows as read: total", read + merge);
    println!("{:>34}  {check:>9.0}", "two passes: check");
    println!("{:>34}  {flatten:>9.0}", "two passes: flatten + columns");
    println!("{:>34}  {:>9.0}", "two passes: total", check + flatten);
    println!("WAL payload bytes / event text bytes: {:.3}", encoded as f64 / text.max(1) as f64);
    Ok(())
}

fn mask(file: &PathBuf, rounds: usize, only: Option<&str>) -> anyhow::Result<()> {
    use logyard_core::mask::{Detector, MaskRule, Masking};
    let data = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let events: Vec<&str> = data.lines().filter(|l| !l.is_empty()).collect();
    let mut sets = vec![("default".to_owned(), vec!["default".to_owned()])];
    sets.extend(Detector::ALL.iter().map(|d| (d.name().to_owned(), vec![d.name().to_owned()])));
    sets.retain(|(label, _)| only.is_none_or(|o| o == label));
    if sets.is_empty() {
        bail!("--only: no set named {only:?}; use default or a detector's name");
    }
    println!("{:>8}  {:>9}  {:>8}", "detector", "ns/event", "changed");
    for (label, detectors) in sets {
        let rule = MaskRule {
            streams: vec!["*".into()],
            detectors,
            regex: None,
            name: None,
            action: None,
            fields: Vec::new(),
        };
        let masking = Masking::new(vec![rule], None)?;
        let masker = masking.for_stream("storefront").context("the rule applies to every stream")?;
        let mut times = Vec::with_capacity(rounds);
        let mut changed = 0;
        for _ in 0..rounds.max(1) {
            changed = 0;
            let started = Instant::now();
            for e in &events {
                changed += usize::from(masker.mask(e, Some("timestamp")).text.is_some());
            }
            times.push(started.elapsed().as_nanos() as f64 / events.len().max(1) as f64);
        }
        times.sort_by(f64::total_cmp);
        println!("{label:>8}  {:>9.0}  {changed:>8}", times[times.len() / 2]);
    }
    Ok(())
}

fn chunks(data: &Bytes, size: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let mut end = (start + size).min(data.len());
        while end < data.len() && data[end - 1] != b'\n' {
            end += 1;
        }
        out.push(data.slice(start..end));
        start = end;
    }
    out
}

async fn load(
    server: &str,
    stream: &str,
    file: &PathBuf,
    concurrency: usize,
    batch_bytes: usize,
    protocol: Protocol,
    ack: &str,
) -> anyhow::Result<()> {
    let query = if ack == "commit" { "?ack=commit" } else { "" };
    let data = Bytes::from(std::fs::read(file).with_context(|| format!("reading {}", file.display()))?);
    let batches = Arc::new(chunks(&data, batch_bytes));
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let base = server.trim_end_matches('/').to_owned();
    // Requests are encoded before the clock starts: the server's rate is measured, not the client's.
    let requests: Arc<Vec<(usize, protocols::Request)>> = Arc::new(
        batches
            .iter()
            .map(|b| (b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).count(), protocol.request(stream, b)))
            .collect(),
    );
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (requests, next, accepted, client, base) =
            (requests.clone(), next.clone(), accepted.clone(), client.clone(), base.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((sent, request)) = requests.get(i) else { return Ok::<_, anyhow::Error>(latencies) };
                let sent = *sent;
                let mut post = client.post(format!("{base}{}{query}", request.path)).body(request.body.clone());
                for (name, value) in &request.headers {
                    post = post.header(*name, value);
                }
                let asked = Instant::now();
                let r = post.send().await?;
                let status = r.status().as_u16();
                let body = r.bytes().await?;
                latencies.push(asked.elapsed().as_secs_f64() * 1e3);
                accepted.fetch_add(protocol.accepted(status, &body, sent)?, Ordering::Relaxed);
            }
        });
    }
    let mut latencies = Vec::new();
    while let Some(r) = tasks.join_next().await {
        latencies.extend(r??);
    }
    let acked = started.elapsed();
    latencies.sort_by(f64::total_cmp);
    let percentile =
        |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    let r = client.post(format!("{}/api/v1/flush", server.trim_end_matches('/'))).send().await?;
    if !r.status().is_success() {
        bail!("flush: {}", r.text().await?);
    }
    let committed = started.elapsed();
    let events = accepted.load(Ordering::Relaxed);
    let mb = data.len() as f64 / 1e6;
    let report = serde_json::json!({
        "protocol": format!("{protocol:?}").to_lowercase(),
        "ack": ack,
        "events": events,
        "bytes": data.len(),
        "requests": batches.len(),
        "concurrency": concurrency,
        "seconds_to_last_ack": acked.as_secs_f64(),
        "seconds_to_last_commit": committed.as_secs_f64(),
        "events_per_second": events as f64 / committed.as_secs_f64(),
        "mb_per_second": mb / committed.as_secs_f64(),
        "request_ms": {"p50": percentile(0.5), "p90": percentile(0.9), "p99": percentile(0.99), "max": percentile(1.0)},
    });
    println!("{report}");
    Ok(())
}
