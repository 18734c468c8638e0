"""Ingest protocols beside the NDJSON endpoint, on the same generated events.

A release `logyard serve` pinned to one core (taskset) is fed by `logyard-bench load
--protocol P` on the other core: the same storefront NDJSON file sent as NDJSON, as
Elasticsearch bulk create actions, as OTLP/protobuf log records, as a Loki snappy-protobuf
push, and as Firehose records (one record per event), about 1 MB of events per request, 4
requests at a time. The figure is events per second until the last event is committed
(`POST /api/v1/flush` answered), with a fresh data directory per round; medians of --rounds.

Usage: python scripts/bench/protocols.py [--events N] [--rounds R] [--workdir DIR]
(run through scripts/bench/run.sh protocols, which builds the release binaries and the venv)
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import dataset, pinned, release_bin, start_server, stop_server  # noqa: E402

PROTOCOLS = ["ndjson", "elasticsearch", "otlp", "loki", "firehose"]


def round_of(protocol, ndjson, workdir):
    proc, url, _ = start_server(workdir)
    try:
        cmd = [release_bin("logyard-bench"), "load", "--server", url, "--stream", "bench", "--file", str(ndjson),
               "--concurrency", "4", "--protocol", protocol]
        out = subprocess.run(pinned(0, cmd), check=True, capture_output=True, text=True).stdout
        return json.loads(out)
    finally:
        stop_server(proc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir")
    a = ap.parse_args()
    workdir, ndjson = dataset(a.workdir, a.events, 1)
    results = {p: [] for p in PROTOCOLS}
    for _ in range(a.rounds):
        for p in PROTOCOLS:
            r = round_of(p, ndjson, workdir)
            if r["events"] != a.events:
                sys.exit(f"{p}: {r['events']} of {a.events} events accepted")
            results[p].append(r["events_per_second"])
    base = statistics.median(results["ndjson"])
    report = {
        "events": a.events,
        "bytes": ndjson.stat().st_size,
        "rounds": a.rounds,
        "events_per_second_median": {p: round(statistics.median(v)) for p, v in results.items()},
        "ratio_to_ndjson": {p: round(statistics.median(v) / base, 2) for p, v in results.items()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
