"""Ingest with ack=commit (the chart's Fargate profile) beside ack=wal, on S3 as it really is:
s3s-fs (signatures checked) behind a proxy that adds a delay before every request, as S3's
time to first byte in the same region, and counts the requests by kind.

Each mode gets a fresh bucket and a release `logyard serve` on it, configured as the chart
configures it (`ingest.ack`, and for commit the Fargate profile's 2 s flush interval), and
receives the same generated storefront NDJSON from `logyard-bench load` (4 clients, 1 MiB
requests, as shippers batch). Reported per mode: seconds to the last commit, MB/s, the
latency of each request (p50, p90, p99), and the S3 requests per GB of NDJSON: PUT (what S3
bills per 1,000 as PUT-class, with LIST and POST) and GET/HEAD (billed per 10,000 at a
tenth of the price).

Usage: python scripts/bench/fargate.py [--events N] [--latency-ms MS] [--concurrency C] [--workdir DIR]
(run through scripts/bench/run.sh fargate; needs s3s-fs from scripts/test.sh)
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import dataset, release_bin, scratch_dir  # noqa: E402
from s3proxy import Proxy, aws_env, start_s3s  # noqa: E402


def run_mode(mode, ndjson, workdir, latency, concurrency, batch_bytes):
    root = workdir / f"s3-{mode}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    s3, s3_port, _ = start_s3s(root)
    proxy = Proxy(s3_port, latency=latency)
    env = dict(os.environ, **aws_env(f"http://127.0.0.1:{proxy.port}"), LOGYARD_LOG_LEVEL="warn", LOGYARD_INGEST_ACK=mode)
    if mode == "commit":
        env["LOGYARD_INGEST_FLUSH_INTERVAL"] = "2s"
    wal = Path(tempfile.mkdtemp(prefix="wal-", dir=workdir))
    server = subprocess.Popen(
        [release_bin("logyard"), "serve", "--listen", "127.0.0.1:0", "--storage", "s3://bench/logs", "--wal-dir", str(wal)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline().strip()
        if not line.startswith("logyard listening on "):
            sys.exit(f"logyard did not start: {line!r}")
        url = line.removeprefix("logyard listening on ")
        before = proxy.snapshot()
        # No ?ack= on the requests: the server's default (ingest.ack) decides, as for shippers.
        out = subprocess.run(
            [release_bin("logyard-bench"), "load", "--server", url, "--stream", "storefront", "--file", str(ndjson),
             "--concurrency", str(concurrency), "--batch-bytes", str(batch_bytes)],
            check=True, capture_output=True, text=True, env=env).stdout
        report = json.loads(out)
        counts = proxy.since(before)
    finally:
        server.terminate()
        server.wait()
        s3.terminate()
        shutil.rmtree(root, ignore_errors=True)
    gb = report["bytes"] / 1e9
    put_class = sum(counts.get(k, 0) for k in ("PUT", "POST", "LIST"))
    reads = sum(counts.get(k, 0) for k in ("GET", "HEAD"))
    return {
        "ack": mode,
        "seconds_to_last_commit": round(report["seconds_to_last_commit"], 2),
        "mb_per_second": round(report["mb_per_second"], 1),
        "request_ms": {k: round(v, 1) for k, v in report["request_ms"].items()},
        "requests": report["requests"],
        "s3": dict(counts),
        "put_per_gb": round(counts.get("PUT", 0) / gb, 1),
        "put_class_per_gb": round(put_class / gb, 1),
        "get_head_per_gb": round(reads / gb, 1),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--latency-ms", type=float, default=30.0)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--batch-bytes", type=int, default=1 << 20)
    ap.add_argument("--workdir")
    a = ap.parse_args()
    workdir = Path(a.workdir) if a.workdir else scratch_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    _, ndjson = dataset(workdir, a.events, 1)
    results = [run_mode(mode, ndjson, workdir, a.latency_ms / 1000, a.concurrency, a.batch_bytes) for mode in ("wal", "commit")]
    wal, commit = results
    print(json.dumps({
        "events": a.events,
        "ndjson_bytes": ndjson.stat().st_size,
        "latency_ms": a.latency_ms,
        "concurrency": a.concurrency,
        "batch_bytes": a.batch_bytes,
        "modes": results,
        "commit_over_wal": {
            "rate": round(commit["mb_per_second"] / wal["mb_per_second"], 2),
            "put_per_gb": round(commit["put_per_gb"] / max(wal["put_per_gb"], 1e-9), 1),
        },
    }, indent=2))


if __name__ == "__main__":
    main()
