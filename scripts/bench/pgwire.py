"""Rows per second out of logyard's PostgreSQL listener, beside a real PostgreSQL.

    scripts/bench/run.sh pgwire [--events 1000000] [--runs 5]

One generated day of storefront events (1 M by default) is loaded into logyard (release
build, pinned to core 1, [pgwire] on loopback without TLS) and, with the same columns and
rows, into a throwaway PostgreSQL 15 cluster (also pinned to core 1, loopback, no TLS). The
same `SELECT` of nine columns over every row is then read, hot, `--runs` times each, by:

- asyncpg (binary rows, `fetch`) from logyard and from PostgreSQL;
- psql (text rows, output to /dev/null) from logyard and from PostgreSQL;
- POST /api/v1/query with format=arrow from logyard, decoded by pyarrow.

Then 200 small statements (`SELECT 1`, Grafana's version probe) one after another on one
connection, against each. Clients run on core 0. Prints JSON: medians of seconds and rows/s
(and asyncpg's own CPU seconds, which show when the client is the limit), and
logyard/PostgreSQL.
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import asyncpg
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import dataset, free_port, pinned, start_server  # noqa: E402
from query import load  # noqa: E402

COLUMNS = ["timestamp", "route", "status", "latency_ms", "bytes", "customer_id", "order_id", "session_id", "trace_id"]
SQL = "SELECT " + ", ".join(f'"{c}"' for c in COLUMNS) + " FROM storefront"
PG_TABLE = """CREATE TABLE storefront ("timestamp" timestamptz, route text, status int8, latency_ms float8,
  bytes int8, customer_id text, order_id text, session_id text, trace_id text)"""
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def as_postgres(cmd):
    """Runs PostgreSQL's programs as the postgres user when this is root (initdb refuses root)."""
    return ["runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd


def start_postgres(root):
    data = root / "pgdata"
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    subprocess.run(as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"]),
                   check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen(
        pinned(1, as_postgres([str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port), "-k", str(root),
                               "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "shared_buffers=512MB"])),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True).returncode == 0:
            return proc, port
        time.sleep(0.1)
    stop_postgres(proc, root)
    sys.exit("PostgreSQL did not start")


def stop_postgres(proc, root):
    """A fast shutdown through pg_ctl (a signal to runuser would not reach the server)."""
    subprocess.run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(root / "pgdata"), "-m", "fast", "-w", "stop"]),
                   capture_output=True)
    proc.wait(timeout=60)


def http_arrow(url):
    body = json.dumps({"sql": SQL, "format": "arrow"}).encode()
    req = urllib.request.Request(f"{url}/api/v1/query", data=body, headers={"content-type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        table = pa.ipc.open_stream(r).read_all()
    return time.perf_counter() - t, table


async def small_statements(port, password, n=200):
    """Milliseconds per `SELECT 1` and per Grafana's version probe (each a round trip)."""
    user, database = ("bench", "logyard") if password else ("postgres", "postgres")
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user=user, password=password, database=database, ssl=False)
    out = {}
    try:
        for name, sql in (("select_1", "SELECT 1"), ("version_probe", "SELECT current_setting('server_version_num')::int/100")):
            times = []
            for _ in range(n):
                t = time.perf_counter()
                await conn.fetchval(sql)
                times.append(time.perf_counter() - t)
            out[name + "_median_ms"] = round(statistics.median(times) * 1000, 3)
    finally:
        await conn.close()
    return out


async def asyncpg_runs(port, password, runs):
    # logyard without tokens on loopback takes any password; PostgreSQL trusts its superuser.
    user, database = ("bench", "logyard") if password else ("postgres", "postgres")
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user=user, password=password, database=database, ssl=False)
    times, cpu, n = [], [], 0
    try:
        for _ in range(runs + 1):
            t, c = time.perf_counter(), time.process_time()
            rows = await conn.fetch(SQL)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            n = len(rows)
            del rows
    finally:
        await conn.close()
    return times[1:], cpu[1:], n


def psql_runs(conninfo, password, runs):
    env = dict(os.environ, PGPASSWORD=password or "")
    times = []
    for _ in range(runs + 1):
        t = time.perf_counter()
        subprocess.run(pinned(0, ["psql", conninfo, "-X", "-w", "-At", "-c", SQL]), stdout=subprocess.DEVNULL, env=env, check=True)
        times.append(time.perf_counter() - t)
    return times[1:]


async def load_postgres(port, table):
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database="postgres", ssl=False)
    try:
        await conn.execute(PG_TABLE)
        records = zip(*(table.column(c).to_pylist() for c in COLUMNS))
        await conn.copy_records_to_table("storefront", records=records, columns=COLUMNS)
        await conn.execute("VACUUM ANALYZE storefront")
        return await conn.fetchval("SELECT count(*) FROM storefront")
    finally:
        await conn.close()


def summary(times, rows, client_cpu=None):
    median = statistics.median(times)
    out = {"median_s": round(median, 4), "rows_per_s": round(rows / median), "runs_s": [round(t, 4) for t in times]}
    if client_cpu:
        # The client's own CPU seconds per run: near median_s means the client was the limit.
        out["client_cpu_median_s"] = round(statistics.median(client_cpu), 4)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    os.sched_setaffinity(0, {0})
    workdir, ndjson = dataset(args.workdir, args.events, 1)

    pg_port = free_port()
    env = {"LOGYARD_QUERY_TIMEOUT": "10m", "LOGYARD_QUERY_MEMORY_LIMIT": str(8 << 30),
           "LOGYARD_PGWIRE_LISTEN": f"127.0.0.1:{pg_port}"}
    proc, url, _ = start_server(workdir, env)
    pg_root = Path(tempfile.mkdtemp(prefix="logyard-bench-pg-"))
    postgres = None
    try:
        load(url, ndjson)
        urllib.request.urlopen(urllib.request.Request(f"{url}/api/v1/flush", data=b"", method="POST"), timeout=600).read()
        _, table = http_arrow(url)
        rows = table.num_rows
        postgres, port = start_postgres(pg_root)
        loaded = asyncio.run(load_postgres(port, table))
        if loaded != rows:
            sys.exit(f"PostgreSQL holds {loaded} rows, logyard {rows}")
        del table

        http = []
        for _ in range(args.runs + 1):
            t, got = http_arrow(url)
            http.append(t)
            assert got.num_rows == rows
            del got
        logyard_asyncpg, logyard_client_cpu, n1 = asyncio.run(asyncpg_runs(pg_port, "unused", args.runs))
        postgres_asyncpg, postgres_client_cpu, n2 = asyncio.run(asyncpg_runs(port, None, args.runs))
        if not (n1 == n2 == rows):
            sys.exit(f"rows: logyard {n1}, PostgreSQL {n2}, expected {rows}")
        logyard_psql = psql_runs(f"host=127.0.0.1 port={pg_port} user=bench dbname=logyard sslmode=disable", "unused", args.runs)
        postgres_psql = psql_runs(f"host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=disable", None, args.runs)

        out = {
            "rows": rows,
            "columns": COLUMNS,
            "logyard_pgwire_asyncpg": summary(logyard_asyncpg, rows, logyard_client_cpu),
            "postgresql_asyncpg": summary(postgres_asyncpg, rows, postgres_client_cpu),
            "logyard_pgwire_psql": summary(logyard_psql, rows),
            "postgresql_psql": summary(postgres_psql, rows),
            "logyard_http_arrow": summary(http[1:], rows),
        }
        out["small_statements_logyard"] = asyncio.run(small_statements(pg_port, "unused"))
        out["small_statements_postgresql"] = asyncio.run(small_statements(port, None))
        out["ratio_asyncpg_logyard_over_postgresql"] = round(
            out["logyard_pgwire_asyncpg"]["rows_per_s"] / out["postgresql_asyncpg"]["rows_per_s"], 3)
        out["ratio_psql_logyard_over_postgresql"] = round(
            out["logyard_pgwire_psql"]["rows_per_s"] / out["postgresql_psql"]["rows_per_s"], 3)
        print(json.dumps(out, indent=2))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        if postgres is not None:
            stop_postgres(postgres, pg_root)
        shutil.rmtree(pg_root, ignore_errors=True)


if __name__ == "__main__":
    main()
