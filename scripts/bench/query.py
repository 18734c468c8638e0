"""Query benchmark: logyard's SQL beside DuckDB over the same Parquet files.

Loads --events generated storefront events spread over --days days into a logyard table
(release server, concurrent HTTP clients), then runs each query:
- logyard: through `POST /api/v1/query` (format arrow), timed at the client. Cold = the first
  run after the server process starts (no table snapshot cached; the OS page cache is warm);
  hot = the median of --hot runs after it.
- DuckDB: the same question over the Parquet files the Delta log lists (hive partitioning gives
  it the `date` column), in a new process (cold, first run) and the median of --hot runs.
Both use every core of the machine.

Usage: python scripts/bench/query.py [--events N] [--days D] [--hot K] [--workdir DIR]
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import dataset, release_bin, start_server  # noqa: E402

QUERIES = {
    "errors per minute, one hour": (
        "SELECT date_trunc('minute', timestamp) AS minute, count(*) AS errors FROM storefront "
        "WHERE status >= 500 AND timestamp >= '2026-11-22T13:00:00Z' AND timestamp < '2026-11-22T14:00:00Z' "
        "GROUP BY 1 ORDER BY 1"
    ),
    "latency p50/p95/p99 by route, one day": (
        "SELECT route, approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50, "
        "approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95, "
        "approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99 "
        "FROM storefront WHERE date = '2026-11-22' GROUP BY route ORDER BY route"
    ),
    "top customers by 5xx, one day": (
        "SELECT customer_id, count(*) AS errors FROM storefront "
        "WHERE date = '2026-11-22' AND status >= 500 AND customer_id IS NOT NULL "
        "GROUP BY customer_id ORDER BY errors DESC, customer_id LIMIT 10"
    ),
    "all events of one order": "SELECT * FROM storefront WHERE order_id = 'o-0012345' ORDER BY timestamp",
}

# DuckDB spells the approximate percentile differently; the question is the same.
DUCKDB_SQL = dict(QUERIES)
DUCKDB_SQL["latency p50/p95/p99 by route, one day"] = (
    "SELECT route, approx_quantile(latency_ms, 0.5) AS p50, approx_quantile(latency_ms, 0.95) AS p95, "
    "approx_quantile(latency_ms, 0.99) AS p99 FROM storefront WHERE date = '2026-11-22' GROUP BY route ORDER BY route"
)


def post_query(url, sql):
    body = json.dumps({"sql": sql, "format": "arrow"}).encode()
    req = urllib.request.Request(f"{url}/api/v1/query", data=body, headers={"content-type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        data = r.read()
    return time.perf_counter() - t, len(data)


def load(url, ndjson):
    out = subprocess.run(
        [release_bin("logyard-bench"), "load", "--server", url, "--stream", "storefront", "--file", str(ndjson), "--concurrency", "4"],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


DUCKDB_SCRIPT = r"""
import duckdb, json, sys, time
from deltalake import DeltaTable
files = DeltaTable(sys.argv[1]).file_uris()
sql, hot = sys.argv[2], int(sys.argv[3])
con = duckdb.connect()
con.execute("SET enable_progress_bar=false")
con.read_parquet(files, hive_partitioning=True, union_by_name=True).create_view("storefront")
times = []
for _ in range(hot + 1):
    t = time.perf_counter()
    rows = con.execute(sql).fetchall()
    times.append(time.perf_counter() - t)
print(json.dumps({"cold": times[0], "hot": times[1:], "rows": len(rows)}))
"""


def arguments():
    """The options the query and search benchmarks take, and the generated data they name."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--hot", type=int, default=5)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    workdir, ndjson = dataset(args.workdir, args.events, args.days)
    return args, workdir, ndjson


def main():
    args, workdir, ndjson = arguments()

    env = {"LOGYARD_QUERY_TIMEOUT": "10m", "LOGYARD_QUERY_MEMORY_LIMIT": str(8 << 30)}
    proc, url, data = start_server(workdir, env)
    load_report = load(url, ndjson)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    table = data / "tables" / "storefront"
    files = len(list(table.rglob("*.parquet")))

    results = {}
    for name, sql in QUERIES.items():
        # A new server process for the cold run, then the hot runs in it. The data directory
        # is reused as it is (start_server would clear it), so start it directly.
        cmd = [release_bin("logyard"), "serve", "--listen", "127.0.0.1:0", "--storage", str(data), "--wal-dir", str(data / "wal")]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env=dict(os.environ, LOGYARD_LOG_LEVEL="warn", **env))
        u = p.stdout.readline().strip().removeprefix("logyard listening on ")
        cold, nbytes = post_query(u, sql)
        hot = [post_query(u, sql)[0] for _ in range(args.hot)]
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        done = subprocess.run([sys.executable, "-c", DUCKDB_SCRIPT, str(table), DUCKDB_SQL[name], str(args.hot)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"duckdb failed on {name!r}:\n{done.stderr}")
        duck = json.loads(done.stdout)
        results[name] = {
            "logyard_cold_s": cold,
            "logyard_hot_median_s": statistics.median(hot),
            "duckdb_cold_s": duck["cold"],
            "duckdb_hot_median_s": statistics.median(duck["hot"]),
            "hot_ratio_logyard_over_duckdb": statistics.median(hot) / statistics.median(duck["hot"]),
            "cold_ratio_logyard_over_duckdb": cold / duck["cold"],
            "duckdb_rows": duck["rows"],
            "logyard_arrow_bytes": nbytes,
        }
    print(json.dumps({"events": args.events, "days": args.days, "files": files, "load": load_report, "queries": results}, indent=2))


if __name__ == "__main__":
    main()
