"""Search page benchmark: the console's search (histogram + first page) beside DuckDB.

Loads --events generated storefront events spread over --days days into a logyard table
(release server, concurrent HTTP clients; the same way as scripts/bench/query.py), then runs
three searches over one full day inside the generated range, each as the console sends it
(`histogram: true`, `limit: 100`):
- the landing search: an empty query;
- `status:>=500 checkout`: words are looked for in `message` and `route` (the server runs with
  `LOGYARD_QUERY_TEXT_FIELDS`; by default only `message`, and no 5xx message of the generated
  logs says "checkout": the search would find nothing);
- a needle: `order_id:<an order id of that day>` (the first order placed after noon).
Each is timed:
- logyard: through `POST /api/v1/search`, timed at the client up to the last byte of the
  answer. Cold = the first run after the server process starts (no table snapshot cached; the
  OS page cache is warm); hot = the median of --hot runs after it. After them, the two
  statements the search ran (its `sql`: the page query and the histogram query) are timed
  apart through `POST /api/v1/query` (format arrow, median of --hot), to show which dominates.
- DuckDB: the same two statements (in DuckDB's dialect: `date_bin` -> `time_bucket`, integer
  division `//`), run back to back and timed together, over the Parquet files the Delta log
  lists (hive partitioning gives it the `date` column), in a new process (cold, first run) and
  the median of --hot runs.
Both use every core of the machine.

Usage: python scripts/bench/search.py [--events N] [--days D] [--hot K] [--workdir DIR]
(run through scripts/bench/run.sh, which builds the release binaries and the venv)
"""

import datetime
import json
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import serve, start_server  # noqa: E402
from query import arguments, load, post_query  # noqa: E402

# The generator's first day (`logyard-bench gen --start`, default 2026-11-20).
FIRST_DAY = datetime.date(2026, 11, 20)


def post_search(url, body):
    data = json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/api/v1/search", data=data, headers={"content-type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        raw = r.read()
    return time.perf_counter() - t, raw


def duckdb_sql(sql):
    """A statement of logyard's search in DuckDB's dialect."""
    if "\\" in sql:
        # logyard's LIKE escapes with a backslash by default, DuckDB's needs `ESCAPE '\'`.
        sys.exit(f"no DuckDB translation for LIKE escapes: {sql}")
    sql = sql.replace("date_bin(INTERVAL", "time_bucket(INTERVAL")
    return re.sub(r'"status" / 100', '"status" // 100', sql)


DUCKDB_SCRIPT = r"""
import duckdb, json, sys, time
from deltalake import DeltaTable
files = DeltaTable(sys.argv[1]).file_uris()
statements, hot = json.loads(sys.argv[2]), int(sys.argv[3])
con = duckdb.connect()
con.execute("SET enable_progress_bar=false")
con.execute("SET TimeZone='UTC'")
con.read_parquet(files, hive_partitioning=True, union_by_name=True).create_view("storefront")
runs = []
for _ in range(hot + 1):
    parts, rows, counted = [], [], None
    for sql in statements:
        t = time.perf_counter()
        result = con.execute(sql).fetchall()
        parts.append(time.perf_counter() - t)
        rows.append(len(result))
        if "count(*) AS events" in sql:
            counted = sum(r[-1] for r in result)
    runs.append({"total": sum(parts), "parts": parts, "rows": rows, "counted": counted})
print(json.dumps(runs))
"""


def duckdb_runs(table, statements, hot):
    done = subprocess.run([sys.executable, "-c", DUCKDB_SCRIPT, str(table), json.dumps(statements), str(hot)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"duckdb failed on {statements!r}:\n{done.stderr}")
    return json.loads(done.stdout)


NEEDLE_SCRIPT = r"""
import duckdb, sys
from deltalake import DeltaTable
con = duckdb.connect()
con.execute("SET TimeZone='UTC'")
con.read_parquet(DeltaTable(sys.argv[1]).file_uris(), hive_partitioning=True, union_by_name=True).create_view("storefront")
row = con.execute(
    "SELECT order_id FROM storefront WHERE order_id IS NOT NULL AND timestamp >= ? AND timestamp < ? "
    "ORDER BY timestamp LIMIT 1", [sys.argv[2], sys.argv[3]]).fetchone()
print(row[0] if row else "")
"""


def main():
    args, workdir, ndjson = arguments()

    env = {"LOGYARD_QUERY_TIMEOUT": "10m", "LOGYARD_QUERY_MEMORY_LIMIT": str(8 << 30),
           "LOGYARD_QUERY_TEXT_FIELDS": '["message", "route"]'}
    proc, url, data = start_server(workdir, env)
    load_report = load(url, ndjson)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    table = data / "tables" / "storefront"
    files = len(list(table.rglob("*.parquet")))

    # One full day inside the generated range (the third, as query.py's `2026-11-22`).
    day = FIRST_DAY + datetime.timedelta(days=min(2, args.days - 1))
    start = datetime.datetime.combine(day, datetime.time(), datetime.timezone.utc)
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    frm, to = iso(start), iso(start + datetime.timedelta(days=1))
    needle = subprocess.run([sys.executable, "-c", NEEDLE_SCRIPT, str(table), iso(start + datetime.timedelta(hours=12)), to],
                            check=True, capture_output=True, text=True).stdout.strip()
    if not needle:
        sys.exit(f"no order id on {day} to search for")
    searches = {
        "landing: empty query": "",
        "status:>=500 checkout": "status:>=500 checkout",
        f"needle: order_id:{needle}": f"order_id:{needle}",
    }

    results = {}
    for name, query in searches.items():
        body = {"streams": ["storefront"], "query": query, "from": frm, "to": to, "limit": 100, "histogram": True}
        p, u = serve(data, env)
        try:
            cold, raw = post_search(u, body)
            hot = [post_search(u, body)[0] for _ in range(args.hot)]
            answer = json.loads(raw)
            statements = answer["sql"]
            # Which part dominates: each statement apart, hot, through the SQL endpoint.
            apart = [statistics.median(post_query(u, sql)[0] for _ in range(args.hot)) for sql in statements]
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)
        if not answer["events"]:
            sys.exit(f"search {name!r} found nothing: {answer['sql']}")
        duck_sql = [duckdb_sql(s) for s in statements]
        duck = duckdb_runs(table, duck_sql, args.hot)
        duck_hot = statistics.median(r["total"] for r in duck[1:])
        ly_hot = statistics.median(hot)
        results[name] = {
            "query": query,
            "logyard_cold_s": cold,
            "logyard_hot_median_s": ly_hot,
            "duckdb_cold_s": duck[0]["total"],
            "duckdb_hot_median_s": duck_hot,
            "hot_ratio_logyard_over_duckdb": ly_hot / duck_hot,
            "cold_ratio_logyard_over_duckdb": cold / duck[0]["total"],
            "logyard_hot_s": hot,
            "logyard_statements_apart_hot_median_s": apart,
            "duckdb_statements_apart_hot_median_s": [statistics.median(r["parts"][i] for r in duck[1:]) for i in range(len(statements))],
            "events_returned": len(answer["events"]),
            "histogram_total": (answer.get("histogram") or {}).get("total"),
            "histogram_interval_seconds": (answer.get("histogram") or {}).get("interval_seconds"),
            "duckdb_rows": duck[0]["rows"],
            "duckdb_histogram_total": duck[0]["counted"],
            "logyard_sql": statements,
            "duckdb_sql": duck_sql,
        }
    print(json.dumps({"events": args.events, "days": args.days, "files": files, "range": [frm, to],
                      "load": load_report, "searches": results}, indent=2))


if __name__ == "__main__":
    main()
