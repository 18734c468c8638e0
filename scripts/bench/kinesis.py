"""The Kinesis Data Streams consumer beside the NDJSON endpoint, on the same generated events.

Kinesis on loopback is kinesalite (Node.js), much slower than logyard, so wall-clock events/s
would measure kinesalite. The figure is therefore logyard's CPU time per event (user +
system, from /proc), for both paths:
- NDJSON: a release `logyard serve` pinned to one core, fed by `logyard-bench load` (4
  concurrent 1 MiB requests) on the other; CPU time of the server until the last commit.
- Kinesis: the events put into a 2-shard stream beforehand, one event per record (as Fluent
  Bit's kinesis_streams output sends them), with boto3; then a release `logyard kinesis`
  pinned to one core (kinesalite on the other) reads them all; CPU time of the consumer until
  every shard's checkpoint reaches the last record put. The rows are counted afterwards.
A fresh data directory per round; medians of --rounds.

Usage: python scripts/bench/kinesis.py [--events N] [--rounds R] [--workdir DIR]
(run through scripts/bench/run.sh kinesis, which builds the release binaries and the venv;
kinesalite comes from scripts/test.sh's install, LOGYARD_NODE_MODULES)
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import ROOT, dataset, free_port, pinned, release_bin, start_server, stop_server  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def ndjson_round(ndjson, workdir):
    proc, url, _ = start_server(workdir)
    try:
        cmd = [release_bin("logyard-bench"), "load", "--server", url, "--stream", "bench", "--file", str(ndjson),
               "--concurrency", "4"]
        out = json.loads(subprocess.run(pinned(0, cmd), check=True, capture_output=True, text=True).stdout)
        return {"events": out["events"], "cpu_seconds": cpu_seconds(proc.pid)}
    finally:
        stop_server(proc)


def start_kinesalite(modules):
    port = free_port()
    script = ROOT / "scripts/tests/node/kinesalite.js"
    env = dict(os.environ, NODE_PATH=modules)
    proc = subprocess.Popen(pinned(0, ["node", str(script), str(port)]), env=env, stdout=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("kinesalite did not start")


def put_all(client, lines):
    client.create_stream(StreamName="bench", ShardCount=2)
    while client.describe_stream_summary(StreamName="bench")["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
        time.sleep(0.05)
    last = {}
    todo = [{"Data": line, "PartitionKey": str(i)} for i, line in enumerate(lines)]
    while todo:
        chunk, todo = todo[:500], todo[500:]
        r = client.put_records(StreamName="bench", Records=chunk)
        for rec, res in zip(chunk, r["Records"]):
            if "ErrorCode" in res:
                todo.append(rec)
            else:
                seq = int(res["SequenceNumber"])
                last[res["ShardId"]] = max(last.get(res["ShardId"], 0), seq)
    return last


def caught_up(data, last):
    for shard, seq in last.items():
        entries = sorted((data / "checkpoints/kinesis/bench/bench" / shard).glob("*.json"))
        if not entries:
            return False
        try:
            entry = json.loads(entries[-1].read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        if int(entry.get("sequence") or 0) < seq:
            return False
    return True


def kinesis_round(ndjson, workdir, modules):
    lines = ndjson.read_bytes().splitlines()
    server, endpoint = start_kinesalite(modules)
    try:
        creds = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench-secret", "region_name": "us-east-1"}
        last = put_all(boto3.client("kinesis", endpoint_url=endpoint, **creds), lines)
        data = Path(workdir) / "kinesis-data"
        shutil.rmtree(data, ignore_errors=True)
        env = dict(os.environ, AWS_ENDPOINT_URL_KINESIS=endpoint, AWS_ACCESS_KEY_ID="bench",
                   AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
                   LOGYARD_LOG_LEVEL="warn")
        cmd = [release_bin("logyard"), "kinesis", "--stream-name", "bench", "--logyard-stream", "bench",
               "--storage", str(data), "--worker-id", "bench"]
        started = time.perf_counter()
        proc = subprocess.Popen(pinned(1, cmd), env=env, stdout=subprocess.DEVNULL)
        try:
            while not caught_up(data, last):
                if proc.poll() is not None:
                    sys.exit(f"logyard kinesis exited with {proc.returncode}")
                time.sleep(0.1)
            seconds = time.perf_counter() - started
            cpu = cpu_seconds(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    finally:
        server.kill()
        server.wait()
    count = subprocess.run([release_bin("logyard"), "query", "--storage", str(data), "--format", "csv",
                            "SELECT count(*) FROM bench"], check=True, capture_output=True, text=True).stdout
    return {"events": int(count.splitlines()[1]), "cpu_seconds": cpu, "seconds": seconds}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir")
    a = ap.parse_args()
    modules = os.environ.get("LOGYARD_NODE_MODULES", "/var/cache/logyard/node/node_modules")
    if not Path(modules, "kinesalite").is_dir():
        sys.exit(f"no kinesalite in {modules}: run scripts/test.sh once (it installs it), or set LOGYARD_NODE_MODULES")
    workdir, ndjson = dataset(a.workdir, a.events, 1)
    ndjson_rates, kinesis_rates, walls = [], [], []
    for _ in range(a.rounds):
        n = ndjson_round(ndjson, workdir)
        k = kinesis_round(ndjson, workdir, modules)
        for name, r in (("ndjson", n), ("kinesis", k)):
            if r["events"] != a.events:
                sys.exit(f"{name}: {r['events']} of {a.events} events in the table")
        ndjson_rates.append(a.events / n["cpu_seconds"])
        kinesis_rates.append(a.events / k["cpu_seconds"])
        walls.append(a.events / k["seconds"])
    base = statistics.median(ndjson_rates)
    print(json.dumps({
        "events": a.events,
        "bytes": ndjson.stat().st_size,
        "rounds": a.rounds,
        "events_per_cpu_second_median": {"ndjson": round(base), "kinesis": round(statistics.median(kinesis_rates))},
        "kinesis_ratio_to_ndjson": round(statistics.median(kinesis_rates) / base, 2),
        "kinesis_wall_events_per_second_median": round(statistics.median(walls)),
    }, indent=2))


if __name__ == "__main__":
    main()
