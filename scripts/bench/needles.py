"""Needle benchmark: one order id, one trace id, a rare and a common phrase and the four queries of
query.py over --events generated events spread over --days days, after compaction.

- logyard on local storage, through `POST /api/v1/query` (format arrow), timed at the
  client: cold = the first run after the server process starts (the median of --cold such
  processes), hot = the median of --hot runs after it. DuckDB runs the same question over the
  Parquet files the Delta log lists, cold in a new process (the median of --cold) and hot as
  the median of --hot runs. Both use every core.
- logyard on S3: the same table in s3s-fs, reached through a proxy that waits --latency-ms
  before each request (S3's time to first byte in the region), counts the requests by kind
  and answers the Parquet files' GETs itself from s3s-fs's directory (s3proxy.py says why);
  cold and hot as above, and the GET/HEAD/LIST requests of one hot run.
- The id and phrase questions again with the indexes (`_logyard_ids/`: identifiers' values and
  the text field's n-grams) set aside, locally and on S3: what the Parquet footers' bloom
  filters and a scan alone do.
- Sizes: the bytes of the table's files (those its Delta log lists), of their bloom filters
  (from the Parquet footers, read by DuckDB), per column, and of the indexes.

Usage: python scripts/bench/needles.py [--events N] [--days D] [--hot K] [--cold C] [--latency-ms MS]
       [--workdir DIR] [--baseline OLD_BINARY]   (an earlier build, timed locally beside this one)
       [--no-s3]   (the local questions alone)
(run through scripts/bench/run.sh needles; S3 needs s3s-fs from scripts/test.sh)
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import dataset, release_bin, serve, start_server  # noqa: E402
from query import DUCKDB_SCRIPT, DUCKDB_SQL, QUERIES, load, post_query  # noqa: E402
from s3proxy import Proxy, aws_env, start_s3s  # noqa: E402

PICK_SCRIPT = r"""
import duckdb, json, os, sys
from deltalake import DeltaTable
con = duckdb.connect()
con.execute("SET TimeZone='UTC'")
files = DeltaTable(sys.argv[1]).file_uris()
con.read_parquet(files, hive_partitioning=True, union_by_name=True).create_view("storefront")
# An order and a trace from the middle of the range, and a product page seen a few times on
# the day (its path, which the event's message carries, is the rare phrase).
orders = con.execute("SELECT order_id FROM storefront WHERE order_id IS NOT NULL AND date = '2026-11-23' "
                     "ORDER BY timestamp").fetchall()
order = orders[len(orders) // 2][0]
day = con.execute("SELECT count(*) FROM storefront WHERE date = '2026-11-23'").fetchone()[0]
trace = con.execute("SELECT trace_id FROM storefront WHERE date = '2026-11-23' ORDER BY timestamp LIMIT 1 OFFSET ?",
                    [day // 2]).fetchone()[0]
phrase = con.execute("SELECT path FROM storefront WHERE date = '2026-11-22' AND path LIKE '/products/%' "
                     "GROUP BY path HAVING count(*) BETWEEN 3 AND 10 ORDER BY path LIMIT 1").fetchone()[0]
blooms = con.execute("SELECT path_in_schema, sum(bloom_filter_length) FROM parquet_metadata($f) "
                     "WHERE bloom_filter_length IS NOT NULL GROUP BY 1 ORDER BY 1", {"f": files}).fetchall()
row_groups = con.execute("SELECT count(DISTINCT (file_name, row_group_id)) FROM parquet_metadata($f)", {"f": files}).fetchone()[0]
table_bytes = sum(os.path.getsize(f.removeprefix("file://")) for f in files)
print(json.dumps({"order": order, "trace": trace, "phrase": phrase, "bloom_bytes": dict(blooms),
                  "files": len(files), "row_groups": row_groups, "table_bytes": table_bytes}))
"""


def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)


def duckdb(table, sql, hot):
    done = subprocess.run([sys.executable, "-c", DUCKDB_SCRIPT, str(table), sql, str(hot)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"duckdb failed on {sql!r}:\n{done.stderr}")
    return json.loads(done.stdout)


def loaded(workdir, ndjson, env):
    """The compacted table of `ndjson` (loaded once per work directory)."""
    data = Path(workdir) / "needles-data"
    marker = data / f"loaded-{ndjson.name}"
    if marker.exists():
        return data, json.loads(marker.read_text())
    proc, url, fresh = start_server(workdir, env)
    report = load(url, ndjson)
    stop(proc)
    shutil.rmtree(data, ignore_errors=True)
    fresh.rename(data)
    t = time.perf_counter()
    subprocess.run([release_bin("logyard"), "compact", "--storage", str(data)], check=True, capture_output=True,
                   env=dict(os.environ, **env))
    report["compact_s"] = time.perf_counter() - t
    marker.write_text(json.dumps(report))
    return data, report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--hot", type=int, default=5)
    ap.add_argument("--cold", type=int, default=1, help="new processes per question; the median cold time is reported")
    ap.add_argument("--no-s3", action="store_true", help="skip the questions on S3")
    ap.add_argument("--latency-ms", type=float, default=30.0)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--baseline", default=None, help="an earlier logyard binary, timed beside this build locally")
    args = ap.parse_args()
    workdir, ndjson = dataset(args.workdir, args.events, args.days)

    env = {"LOGYARD_QUERY_TIMEOUT": "10m", "LOGYARD_QUERY_MEMORY_LIMIT": str(8 << 30)}
    data, load_report = loaded(workdir, ndjson, env)
    table = data / "tables" / "storefront"
    # Compaction writes the identifier index of each file it leaves (and of any without one).
    t = time.perf_counter()
    compacted = subprocess.run([release_bin("logyard"), "compact", "--storage", str(data)], check=True,
                               capture_output=True, text=True, env=dict(os.environ, **env))
    index_s = time.perf_counter() - t
    indexed = sum(c.get("files_indexed", 0) for c in json.loads(compacted.stdout)["compacted"])
    ids_dir = table / "_logyard_ids"
    index_bytes = sum(p.stat().st_size for p in ids_dir.rglob("*.ids"))
    picked = json.loads(subprocess.run([sys.executable, "-c", PICK_SCRIPT, str(table)], check=True, capture_output=True,
                                       text=True).stdout)
    table_bytes = picked["table_bytes"]

    questions = {
        "one order id, 7 days": f"SELECT * FROM storefront WHERE order_id = '{picked['order']}' ORDER BY timestamp",
        "one trace id, 7 days": f"SELECT * FROM storefront WHERE trace_id = '{picked['trace']}'",
        "a rare phrase, one day": (
            f"SELECT * FROM storefront WHERE date = '2026-11-22' AND message ILIKE '%{picked['phrase']}%' ORDER BY timestamp"
        ),
        # In nearly every row group: what the text index costs when it rules out nothing.
        "a common phrase, one day": (
            "SELECT count(*) FROM storefront WHERE date = '2026-11-22' AND message ILIKE '%/api/recommendations%'"
        ),
    }
    questions.update(QUERIES)
    # What a query costs when no file can hold its answer: the fixed part (the session, the
    # table's freshness check, planning, the HTTP round trip).
    questions["nothing to read (a day with no file)"] = "SELECT count(*) FROM storefront WHERE date = '1999-01-01'"
    duck_sql = dict(questions)
    duck_sql.update(DUCKDB_SQL)

    def local(sql, server=None):
        colds, hot = [], []
        for _ in range(args.cold):
            p, url = serve(data, env, server=server)
            try:
                cold, nbytes = post_query(url, sql)
                colds.append(cold)
                hot = hot or [post_query(url, sql)[0] for _ in range(args.hot)]
            finally:
                stop(p)
        return statistics.median(colds), hot, nbytes

    def duck_median(sql):
        runs = [duckdb(table, sql, args.hot) for _ in range(args.cold)]
        return {"cold": statistics.median(r["cold"] for r in runs), "hot": runs[0]["hot"], "rows": runs[0]["rows"]}

    results = {}
    for name, sql in questions.items():
        cold, hot, nbytes = local(sql)
        duck = duck_median(duck_sql[name])
        results[name] = {
            "logyard_cold_ms": round(cold * 1000, 1),
            "logyard_hot_median_ms": round(statistics.median(hot) * 1000, 1),
            "duckdb_cold_ms": round(duck["cold"] * 1000, 1),
            "duckdb_hot_median_ms": round(statistics.median(duck["hot"]) * 1000, 1),
            "hot_ratio": round(statistics.median(hot) / statistics.median(duck["hot"]), 2),
            "cold_ratio": round(cold / duck["cold"], 2),
            "duckdb_rows": duck["rows"],
            "logyard_arrow_bytes": nbytes,
        }
        if args.baseline:
            cold, hot, _ = local(sql, server=args.baseline)
            results[name]["baseline_cold_ms"] = round(cold * 1000, 1)
            results[name]["baseline_hot_median_ms"] = round(statistics.median(hot) * 1000, 1)
    # The needles again with the indexes set aside: the footers' bloom filters and a scan alone.
    needles = [n for n in questions if n.startswith(("one order id", "one trace id", "a rare", "a common"))]
    aside = data / "ids-aside"
    ids_dir.rename(aside)
    try:
        for name in needles:
            cold, hot, _ = local(questions[name])
            results[name]["logyard_no_index_cold_ms"] = round(cold * 1000, 1)
            results[name]["logyard_no_index_hot_median_ms"] = round(statistics.median(hot) * 1000, 1)
    finally:
        aside.rename(ids_dir)

    if not args.no_s3:
        # The same table in S3 (s3s-fs), behind the latency proxy.
        s3, s3_port, root = start_s3s(workdir)
        try:
            shutil.copytree(table, root / "bench" / "logs" / "tables" / "storefront")
            proxy = Proxy(s3_port, latency=args.latency_ms / 1000, root=root)
            s3_env = dict(env, **aws_env(f"http://127.0.0.1:{proxy.port}"))
            wal = Path(workdir) / "needles-s3-wal"
            shutil.rmtree(wal, ignore_errors=True)
            wal.mkdir()
            def on_s3(sql):
                p, url = serve(wal, s3_env, storage="s3://bench/logs")
                try:
                    before = proxy.snapshot()
                    cold, _ = post_query(url, sql)
                    cold_requests = proxy.since(before)
                    hot, hot_requests = [], []
                    for _ in range(args.hot):
                        before = proxy.snapshot()
                        hot.append(post_query(url, sql)[0])
                        hot_requests.append(proxy.since(before))
                finally:
                    stop(p)
                return {"s3_cold_ms": round(cold * 1000, 1), "s3_hot_median_ms": round(statistics.median(hot) * 1000, 1),
                        "s3_cold_requests": cold_requests, "s3_hot_requests": hot_requests[len(hot_requests) // 2]}

            for name, sql in questions.items():
                results[name].update(on_s3(sql))
            shutil.rmtree(root / "bench" / "logs" / "tables" / "storefront" / "_logyard_ids")
            for name in needles:
                results[name].update({f"{k}_no_index": v for k, v in on_s3(questions[name]).items()})
        finally:
            s3.terminate()
            shutil.rmtree(root, ignore_errors=True)

    bloom_bytes = sum(picked["bloom_bytes"].values())
    print(json.dumps({
        "events": args.events, "days": args.days, "cold_runs": args.cold, "latency_ms": args.latency_ms, "load": load_report,
        "files": picked["files"], "row_groups": picked["row_groups"], "table_bytes": table_bytes,
        "bloom_bytes": picked["bloom_bytes"], "bloom_share": round(bloom_bytes / table_bytes, 4),
        "index_files": indexed, "index_s": round(index_s, 1), "index_bytes": index_bytes,
        "index_share": round(index_bytes / table_bytes, 4),
        "picked": {k: picked[k] for k in ("order", "trace", "phrase")}, "queries": results,
    }, indent=2))


if __name__ == "__main__":
    main()
