"""Ingest throughput with 1, 2 and 3 `logyard serve` replicas sharing one bucket (s3s-fs,
signatures checked), as a StatefulSet behind the ALB: the same generated storefront NDJSON is
split into as many parts as there are replicas, and each part is sent to its own replica by a
`logyard-bench load` (6 clients in all, 1 MiB requests), all at once; the clock stops when the
last replica has committed its part. Every replica, client and s3s-fs share this machine's
cores, so this shows what replicas cost and that they add up correctly, not how a cluster of
nodes scales (BENCHMARKS.md gives the arithmetic for that).

Usage: python scripts/bench/replicas.py [--events N] [--max-replicas R] [--workdir DIR]
(run through scripts/bench/run.sh replicas; needs s3s-fs from scripts/test.sh)
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import dataset, release_bin, scratch_dir  # noqa: E402
from s3proxy import Proxy, aws_env, start_s3s  # noqa: E402


def split(ndjson, parts, workdir):
    lines = ndjson.read_bytes().splitlines(keepends=True)
    per = -(-len(lines) // parts)
    out = []
    for i in range(parts):
        path = workdir / f"{ndjson.stem}-part{i}-of{parts}.ndjson"
        path.write_bytes(b"".join(lines[i * per:(i + 1) * per]))
        out.append(path)
    return out


def run(replicas, ndjson, workdir, clients):
    root = Path(tempfile.mkdtemp(prefix=f"s3-{replicas}-", dir=workdir))
    s3, s3_port, _ = start_s3s(root)
    proxy = Proxy(s3_port)
    env = dict(os.environ, **aws_env(f"http://127.0.0.1:{proxy.port}"), LOGYARD_LOG_LEVEL="warn",
               LOGYARD_QUERY_MAX_JSON_ROWS="100000000")
    servers, urls = [], []
    try:
        for i in range(replicas):
            wal = Path(tempfile.mkdtemp(prefix=f"wal-{i}-", dir=root))
            p = subprocess.Popen([release_bin("logyard"), "serve", "--listen", "127.0.0.1:0", "--storage", "s3://bench/logs",
                                  "--wal-dir", str(wal)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            servers.append(p)
            line = p.stdout.readline().strip()
            if not line.startswith("logyard listening on "):
                sys.exit(f"logyard did not start: {line!r}")
            urls.append(line.removeprefix("logyard listening on "))
        parts = split(ndjson, replicas, root)
        per = max(1, clients // replicas)
        started = time.monotonic()
        loads = [subprocess.Popen([release_bin("logyard-bench"), "load", "--server", url, "--stream", "storefront",
                                   "--file", str(part), "--concurrency", str(per)],
                                  stdout=subprocess.PIPE, text=True, env=env) for url, part in zip(urls, parts)]
        reports = [json.loads(p.communicate()[0]) for p in loads]
        seconds = time.monotonic() - started
        if any(p.returncode for p in loads):
            sys.exit("a load failed")
        sql = json.dumps({"sql": "SELECT count(*) AS n FROM storefront"}).encode()
        request = urllib.request.Request(f"{urls[0]}/api/v1/query", data=sql, headers={"content-type": "application/json"})
        rows = json.load(urllib.request.urlopen(request))["rows"][0]["n"]
    finally:
        for p in servers:
            p.terminate()
            p.wait()
        s3.terminate()
        shutil.rmtree(root, ignore_errors=True)
    total = sum(r["bytes"] for r in reports)
    events = sum(r["events"] for r in reports)
    return {"replicas": replicas, "seconds": round(seconds, 2), "mb_per_second": round(total / 1e6 / seconds, 1),
            "events": events, "rows_in_table": rows, "s3_requests": proxy.snapshot()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--max-replicas", type=int, default=3)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--workdir")
    a = ap.parse_args()
    workdir = Path(a.workdir) if a.workdir else scratch_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    _, ndjson = dataset(workdir, a.events, 1)
    results = [run(n, ndjson, workdir, a.clients) for n in range(1, a.max_replicas + 1)]
    for r in results:
        if r["rows_in_table"] != r["events"]:
            sys.exit(f"{r['replicas']} replicas: {r['events']} events acknowledged, {r['rows_in_table']} rows in the table")
    print(json.dumps({"events": a.events, "ndjson_bytes": ndjson.stat().st_size, "cores": os.cpu_count(),
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
