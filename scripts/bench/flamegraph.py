"""Flame graph of the server during the NDJSON ingest benchmark.

The setup of `ingest.py` (server pinned to one core, the load generator to the other, 4
clients, `ack=wal` unless `--ack commit`, until the last commit), with `perf record` sampling
the server (DWARF call graphs) from the first request to the last commit; `inferno` folds the
stacks and draws the SVG. Installs inferno into the cache (`cargo install`) when missing;
needs `perf` (Debian: linux-perf).

Usage: python scripts/bench/flamegraph.py --out docs/perf/ingest.svg [--events N] [--workdir DIR]
       [--folded FILE] (also keep the folded stacks, one line a stack, to count shares from)
       [--faults] (sample every page fault instead of CPU time: where fresh memory is touched)
       [--user] (sample user time alone: in a VM the kernel's samples may carry the host's work)
       [--ack commit] (every request answered once committed)
(run through scripts/bench/run.sh, which builds the release binaries and the venv)
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import dataset, pinned, release_bin, start_server, stop_server  # noqa: E402

INFERNO = "0.12.2"


def inferno(tool):
    """The path of an inferno tool, installed into the cache when missing."""
    cache = Path(os.environ.get("LOGYARD_CACHE", "/var/cache/logyard"))
    root = cache / "tools"
    path = root / "bin" / tool
    if not path.exists():
        subprocess.run(["cargo", "install", "--locked", "--root", str(root), "inferno", "--version", INFERNO], check=True)
    return str(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--frequency", type=int, default=499)
    ap.add_argument("--folded", default=None)
    ap.add_argument("--faults", action="store_true")
    ap.add_argument("--user", action="store_true")
    ap.add_argument("--ack", choices=["wal", "commit"], default="wal")
    a = ap.parse_args()
    if shutil.which("perf") is None:
        sys.exit("perf is missing: apt-get install linux-perf")
    collapse, draw = inferno("inferno-collapse-perf"), inferno("inferno-flamegraph")
    workdir, ndjson = dataset(a.workdir, a.events, 3)
    proc, url, _ = start_server(workdir)
    data = Path(tempfile.mkdtemp(prefix="flamegraph-", dir=workdir)) / "perf.data"
    if a.faults:
        sampling = ["-e", "page-faults", "-c", "1"]
    else:
        sampling = (["-e", "cpu-clock:u"] if a.user else []) + ["-F", str(a.frequency)]
    perf = subprocess.Popen(["perf", "record", *sampling, "--call-graph", "dwarf,16384", "-p", str(proc.pid),
                             "-o", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        report = subprocess.run(
            pinned(0, [release_bin("logyard-bench"), "load", "--server", url, "--stream", "storefront", "--file", str(ndjson),
                       "--concurrency", "4", "--ack", a.ack]),
            check=True, capture_output=True, text=True,
        ).stdout
    finally:
        perf.send_signal(signal.SIGINT)
        perf.wait()
        stop_server(proc)
    script = subprocess.run(["perf", "script", "-i", str(data)], check=True, capture_output=True).stdout
    folded = subprocess.run([collapse], input=script, check=True, capture_output=True).stdout
    what = "page faults" if a.faults else "server, one core, user time" if a.user else "server, one core"
    what += ", ack=commit" if a.ack == "commit" else ""
    svg = subprocess.run([draw, "--title", f"logyard NDJSON ingest, {a.events:,} events ({what})"],
                         input=folded, check=True, capture_output=True).stdout
    if a.folded:
        Path(a.folded).write_bytes(folded)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_bytes(svg)
    shutil.rmtree(data.parent)
    print(report.strip())
    print(f"{a.out}: {len(svg):,} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
