"""Masking benchmark: NDJSON ingest with and without `[[masking.rules]]` (every built-in
detector on every field), the same server binary, rounds alternating.

Two inputs: the storefront generator's events as they are (no personal data: the common case,
which costs the scan only), and the same events with a client IP in every event, an e-mail
address in one message in 20 and a phone number in one in 50 (each of those events
rewritten). The server is pinned to one core and the load generator to the other
(`ingest.py`'s setup); the clock stops at the last commit.

Usage: python scripts/bench/masking.py [--events N] [--rounds R] [--workdir DIR]
(run through scripts/bench/run.sh, which builds the release binaries and the venv)
"""

import argparse
import json
import statistics
import subprocess
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import dataset, pinned, release_bin, start_server, stop_server  # noqa: E402

RULES = """
[[masking.rules]]
detectors = ["default"]
"""


def with_personal_data(src, dst):
    """`src` with a client IP in every event, an e-mail in 1 message in 20, a phone in 1 in 50."""
    if dst.exists():
        return dst
    with open(src, "rb") as f, open(dst, "wb") as out:
        for i, line in enumerate(f):
            event = json.loads(line)
            event["client_ip"] = f"203.0.{i % 256}.{(i * 7) % 256}"
            if i % 20 == 0:
                event["message"] += f" for customer{i}@example.com"
            if i % 50 == 0:
                event["message"] += f" call +86 138 {i % 10000:04d} {(i * 3) % 10000:04d}"
            out.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")
    return dst


def masked_values(url):
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith("logyard_masked_values_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def one_round(ndjson, workdir, config):
    env = {"LOGYARD_CONFIG": str(config)} if config else {}
    proc, url, _ = start_server(workdir, env)
    try:
        out = subprocess.run(
            pinned(0, [release_bin("logyard-bench"), "load", "--server", url, "--stream", "storefront",
                       "--file", str(ndjson), "--concurrency", "4"]),
            check=True, capture_output=True, text=True,
        ).stdout
        report = json.loads(out)
        report["masked_values"] = masked_values(url)
    finally:
        stop_server(proc)
    return report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    workdir, plain = dataset(args.workdir, args.events, 3)
    personal = with_personal_data(plain, workdir / f"{plain.stem}-pii.ndjson")
    config = workdir / "masking.toml"
    config.write_text(RULES)

    runs = {(name, mode): [] for name in ["plain", "personal data"] for mode in ["off", "on"]}
    for i in range(args.rounds):
        for (name, mode), results in runs.items():
            ndjson = plain if name == "plain" else personal
            r = one_round(ndjson, workdir, config if mode == "on" else None)
            results.append(r)
            print(f"round {i + 1} {name} masking {mode}: {r['seconds_to_last_commit']:.2f} s, "
                  f"{r['masked_values']} masked", file=sys.stderr)

    out = {"events": args.events, "rounds": args.rounds, "inputs": {}}
    for name in ["plain", "personal data"]:
        off = statistics.median(r["seconds_to_last_commit"] for r in runs[(name, "off")])
        on = statistics.median(r["seconds_to_last_commit"] for r in runs[(name, "on")])
        out["inputs"][name] = {
            "events_per_second_masking_off": args.events / off,
            "events_per_second_masking_on": args.events / on,
            "rate_on_over_off": off / on,
            "masked_values": runs[(name, "on")][0]["masked_values"],
            "seconds_off": [r["seconds_to_last_commit"] for r in runs[(name, "off")]],
            "seconds_on": [r["seconds_to_last_commit"] for r in runs[(name, "on")]],
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
