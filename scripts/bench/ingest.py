"""Ingest benchmark: logyard beside DuckDB, gzip and zstd on the same generated NDJSON.

logyard: a release `logyard serve` pinned to one core (taskset), fed by `logyard-bench load`
(concurrent HTTP clients on loopback, ack=wal) pinned to the other core; the clock stops when
the final `POST /api/v1/flush` returns, i.e. at the last commit. Peak RSS is the server's
VmHWM; each round also gives the server's user and system CPU seconds and its minor page
faults (`server`), read from /proc before it stops. DuckDB: `COPY (SELECT * FROM
read_ndjson(...)) TO ... (FORMAT parquet, COMPRESSION zstd)` with `threads=1`, pinned to the
same core. Each measurement runs --rounds times; the report gives medians. Sizes are
compared with DuckDB's file in input order and, once, with DuckDB's file of the same events
in time order (logyard's order). The first round also runs
`logyard compact` on what it stored and reports the table's bytes after it (`compacted_bytes`):
the commits' files are replaced by each day's files sorted by time within minutes, and those
are what is stored for the retention period.

With --ack-commit, every round also sends the file with `ack=commit` (each answer waits for
the request's events to be committed to the table), for the ratio of the two rates.

With --baseline BIN, another logyard binary (an earlier build) runs in every round too, right
after this one, so a change is measured against what it changed in the same run (with
--ack-commit, both ways).

With --server-cores 0,1 the server may run on both cores (the load generator stays on core 0):
a flush then has a core of its own beside the requests.

Usage: python scripts/bench/ingest.py [--events N] [--rounds R] [--workdir DIR] [--baseline BIN]
(run through scripts/bench/run.sh, which builds the release binaries and the venv)
"""

import argparse
import atexit
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]


def release_bin(name):
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = target / "release" / name
    if not path.exists():
        sys.exit(f"{path} is missing: build with cargo build --release -p logyard -p logyard-bench")
    return str(path)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_CORES = "1"


def pinned(core, cmd):
    return ["taskset", "-c", str(core)] + cmd if (os.cpu_count() or 1) > 1 else cmd


def scratch_dir():
    """A temporary directory that is removed when the benchmark exits (its data is large)."""
    path = Path(tempfile.mkdtemp(prefix="logyard-bench-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def dataset(workdir, events, days):
    """The generated NDJSON file for (events, days) in workdir (a scratch directory when
    None), made when missing. Its name carries a digest of a small sample from the same
    generator, so that files of an earlier generator are not taken for this one's."""
    workdir = Path(workdir) if workdir else scratch_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    sample = subprocess.run([release_bin("logyard-bench"), "gen", "--events", "2000", "--days", str(days)], check=True, capture_output=True).stdout
    ndjson = workdir / f"storefront-{events}-{days}d-{hashlib.sha256(sample).hexdigest()[:12]}.ndjson"
    if not ndjson.exists():
        gen = [release_bin("logyard-bench"), "gen", "--events", str(events), "--days", str(days), "--out", str(ndjson)]
        subprocess.run(gen, check=True)
    return workdir, ndjson


def dir_bytes(path, suffix):
    return sum(p.stat().st_size for p in Path(path).rglob(f"*{suffix}"))


def peak_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_and_faults(pid):
    """The process's user and system CPU seconds and its minor page faults so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # After the command's name: state is field 3, minflt 10, utime 14, stime 15 (proc(5)).
    return {"user_s": int(fields[11]) / ticks, "system_s": int(fields[12]) / ticks, "minor_faults": int(fields[7])}


def start_server(workdir, env_extra=None, server=None):
    data = Path(workdir) / "data"
    shutil.rmtree(data, ignore_errors=True)
    env = dict(os.environ, LOGYARD_LOG_LEVEL="warn", LOGYARD_QUERY_MAX_JSON_ROWS="100000000")
    env.update(env_extra or {})
    cmd = pinned(SERVER_CORES, [server or release_bin("logyard"), "serve", "--listen", "127.0.0.1:0", "--storage", str(data), "--wal-dir", str(data / "wal")])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    line = proc.stdout.readline().strip()
    prefix = "logyard listening on "
    if not line.startswith(prefix):
        proc.kill()
        sys.exit(f"logyard did not start: {line!r}")
    return proc, line[len(prefix):], data


def serve(data, env, storage=None, server=None):
    """A new server process (the binary `server`, by default this build's) over loaded data
    (start_server would clear it): the local directory `data`, or `storage` (an S3 URL) with its
    WAL under `data`."""
    cmd = [server or release_bin("logyard"), "serve", "--listen", "127.0.0.1:0", "--storage", storage or str(data),
           "--wal-dir", str(data / "wal")]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=dict(os.environ, LOGYARD_LOG_LEVEL="warn", **env))
    line = p.stdout.readline().strip()
    if not line.startswith("logyard listening on "):
        p.kill()
        sys.exit(f"logyard did not start: {line!r}")
    return p, line.removeprefix("logyard listening on ")


def stop_server(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def compacted_bytes(data, server=None):
    """Bytes of the storefront table once `logyard compact` has merged each day's files into
    files sorted by time: what the data is stored as after the first compaction."""
    import pyarrow as pa
    from deltalake import DeltaTable
    subprocess.run([server or release_bin("logyard"), "compact", "--storage", str(data), "--stream", "storefront"],
                   check=True, capture_output=True)
    actions = pa.table(DeltaTable(str(data / "tables" / "storefront")).get_add_actions(flatten=True))
    return sum(actions.column("size_bytes").to_pylist())


def logyard_round(ndjson, workdir, concurrency, server=None, ack="wal", compact=False):
    proc, url, data = start_server(workdir, server=server)
    try:
        out = subprocess.run(
            pinned(0, [release_bin("logyard-bench"), "load", "--server", url, "--stream", "storefront", "--file", str(ndjson),
                       "--concurrency", str(concurrency), "--ack", ack]),
            check=True, capture_output=True, text=True,
        ).stdout
        report = json.loads(out)
        report["peak_rss_bytes"] = peak_rss(proc.pid)
        report["server"] = cpu_and_faults(proc.pid)
    finally:
        stop_server(proc)
    report["stored_bytes"] = dir_bytes(data / "tables", ".parquet")
    if compact:
        report["compacted_bytes"] = compacted_bytes(data, server)
    return report


def duckdb_round(ndjson, workdir):
    out = Path(workdir) / "duckdb.parquet"
    out.unlink(missing_ok=True)
    script = (
        "import duckdb, sys, time\n"
        "con = duckdb.connect(); con.execute('SET threads=1'); con.execute('SET enable_progress_bar=false')\n"
        "t = time.perf_counter()\n"
        f"con.execute(\"COPY (SELECT * FROM read_ndjson('{ndjson}')) TO '{out}' (FORMAT parquet, COMPRESSION zstd)\")\n"
        "print(time.perf_counter() - t)\n"
    )
    printed = subprocess.run(pinned(1, [sys.executable, "-c", script]), check=True, capture_output=True, text=True).stdout
    seconds = float(printed.strip().splitlines()[-1])
    return {"seconds": seconds, "stored_bytes": out.stat().st_size}


def duckdb_time_ordered_bytes(ndjson, workdir):
    """Bytes of DuckDB's Parquet of the same events in time order, the order logyard stores
    them in. The generator writes each session's events together, which DuckDB keeps in input
    order: columns that follow the session (session, customer, user agent) then compress much
    better than once events are interleaved by time, as they arrive from a real shop."""
    out = Path(workdir) / "duckdb-time-ordered.parquet"
    out.unlink(missing_ok=True)
    con = duckdb.connect()
    con.execute("SET threads=1")
    con.execute(f"COPY (SELECT * FROM read_ndjson('{ndjson}') ORDER BY timestamp) TO '{out}' "
                "(FORMAT parquet, COMPRESSION zstd)")
    size = out.stat().st_size
    out.unlink()
    return size


def compressor_round(ndjson, cmd):
    t = time.perf_counter()
    with open(ndjson, "rb") as src:
        p = subprocess.run(pinned(1, cmd), stdin=src, stdout=subprocess.PIPE, check=True)
    return {"seconds": time.perf_counter() - t, "stored_bytes": len(p.stdout)}


def entropy_floor_bytes(events):
    """The information in the generator's random fields, per event (bits):
    trace id 128; latency ~14 (log-normal, 0.1 ms steps); bytes ~12; the event's time after
    the one before in its session ~14 (about 20 s between pages, log-normal, in ms steps; under
    a second for a page's API calls); route/status/method/path/customer/agent choices ~30;
    a session id (64) shared by ~8 events ~8, and which of the ~300 sessions open at once a
    line belongs to ~8. About 214 bits = 26.75 bytes."""
    return int(events * 214 / 8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--baseline", default=None, help="an earlier logyard binary, measured in every round too")
    ap.add_argument("--ack-commit", action="store_true", help="also measure every request sent with ack=commit")
    ap.add_argument("--server-cores", default="1", help="the cores the server may run on (taskset -c)")
    args = ap.parse_args()
    global SERVER_CORES
    SERVER_CORES = args.server_cores
    workdir, ndjson = dataset(args.workdir, args.events, 3)
    print(json.dumps(measure(args, workdir, ndjson), indent=2))


def measure(args, workdir, ndjson):
    raw = ndjson.stat().st_size
    runs = {"logyard": [], "duckdb": [], "gzip -6": [], "zstd -3": []}
    if args.baseline:
        runs["baseline"] = []
    if args.ack_commit:
        runs["ack_commit"] = []
        if args.baseline:
            runs["baseline_ack_commit"] = []
    for i in range(args.rounds):
        if args.ack_commit:
            runs["ack_commit"].append(logyard_round(ndjson, workdir, args.concurrency, ack="commit"))
            print(f"round {i + 1}: ack=commit {runs['ack_commit'][-1]}", file=sys.stderr)
            if args.baseline:
                runs["baseline_ack_commit"].append(
                    logyard_round(ndjson, workdir, args.concurrency, server=args.baseline, ack="commit"))
                print(f"round {i + 1}: baseline ack=commit {runs['baseline_ack_commit'][-1]}", file=sys.stderr)
        runs["logyard"].append(logyard_round(ndjson, workdir, args.concurrency, compact=i == 0))
        print(f"round {i + 1}: logyard {runs['logyard'][-1]}", file=sys.stderr)
        if args.baseline:
            runs["baseline"].append(logyard_round(ndjson, workdir, args.concurrency, server=args.baseline, compact=i == 0))
            print(f"round {i + 1}: baseline {runs['baseline'][-1]}", file=sys.stderr)
        runs["duckdb"].append(duckdb_round(ndjson, workdir))
        runs["gzip -6"].append(compressor_round(ndjson, ["gzip", "-6", "-c"]))
        runs["zstd -3"].append(compressor_round(ndjson, ["zstd", "-3", "-c", "-T1"]))

    med = lambda xs: statistics.median(xs)  # noqa: E731
    ly_seconds = med([r["seconds_to_last_commit"] for r in runs["logyard"]])
    ly = runs["logyard"][0]
    result = {
        "events": args.events,
        "raw_bytes": raw,
        "rounds": args.rounds,
        "logyard": {
            "seconds": ly_seconds,
            "events_per_second_per_core": args.events / ly_seconds,
            "mb_per_second_per_core": raw / 1e6 / ly_seconds,
            "peak_rss_mib": med([r["peak_rss_bytes"] for r in runs["logyard"]]) / 2**20,
            "stored_bytes": ly["stored_bytes"],
            "compacted_bytes": ly["compacted_bytes"],
        },
    }
    for name in ["duckdb", "gzip -6", "zstd -3"]:
        s = med([r["seconds"] for r in runs[name]])
        result[name] = {"seconds": s, "mb_per_second": raw / 1e6 / s, "stored_bytes": runs[name][0]["stored_bytes"]}
    result["ratios"] = {
        "logyard_rate_over_duckdb_rate": result["duckdb"]["seconds"] / ly_seconds,
        "logyard_size_over_duckdb_size": ly["stored_bytes"] / result["duckdb"]["stored_bytes"],
        "logyard_compacted_size_over_duckdb_size": ly["compacted_bytes"] / result["duckdb"]["stored_bytes"],
        "logyard_size_over_gzip6": ly["stored_bytes"] / result["gzip -6"]["stored_bytes"],
        "logyard_size_over_zstd3": ly["stored_bytes"] / result["zstd -3"]["stored_bytes"],
        "logyard_size_over_entropy_floor": ly["stored_bytes"] / entropy_floor_bytes(args.events),
    }
    ordered = duckdb_time_ordered_bytes(ndjson, workdir)
    result["duckdb"]["stored_bytes_time_ordered"] = ordered
    result["ratios"]["logyard_size_over_duckdb_time_ordered_size"] = ly["stored_bytes"] / ordered
    result["ratios"]["logyard_compacted_size_over_duckdb_time_ordered_size"] = ly["compacted_bytes"] / ordered
    result["stored_bytes_per_gb_raw"] = {
        k: result[k]["stored_bytes"] / (raw / 1e9) for k in ["logyard", "duckdb", "gzip -6", "zstd -3"]
    }
    result["entropy_floor_bytes"] = entropy_floor_bytes(args.events)
    if args.baseline:
        base_seconds = med([r["seconds_to_last_commit"] for r in runs["baseline"]])
        result["baseline"] = {
            "binary": args.baseline,
            "seconds": base_seconds,
            "mb_per_second_per_core": raw / 1e6 / base_seconds,
            "peak_rss_mib": med([r["peak_rss_bytes"] for r in runs["baseline"]]) / 2**20,
            "stored_bytes": runs["baseline"][0]["stored_bytes"],
            "compacted_bytes": runs["baseline"][0]["compacted_bytes"],
        }
        result["ratios"]["logyard_rate_over_baseline_rate"] = base_seconds / ly_seconds
        result["ratios"]["baseline_rate_over_duckdb_rate"] = result["duckdb"]["seconds"] / base_seconds
    if args.ack_commit:
        commit_seconds = med([r["seconds_to_last_commit"] for r in runs["ack_commit"]])
        result["ack_commit"] = {"seconds": commit_seconds, "mb_per_second_per_core": raw / 1e6 / commit_seconds}
        result["ratios"]["ack_commit_rate_over_ack_wal_rate"] = ly_seconds / commit_seconds
        if args.baseline:
            base_commit = med([r["seconds_to_last_commit"] for r in runs["baseline_ack_commit"]])
            result["baseline"]["ack_commit_seconds"] = base_commit
            result["ratios"]["ack_commit_rate_over_baseline_ack_commit_rate"] = base_commit / commit_seconds
    for name in ["logyard", "baseline", "ack_commit", "baseline_ack_commit"]:
        if runs.get(name):
            result.setdefault("request_ms_median_of_rounds", {})[name] = {
                q: med([r["request_ms"][q] for r in runs[name]]) for q in ["p50", "p99", "max"]
            }
    result["all_runs"] = runs
    return result


if __name__ == "__main__":
    main()
