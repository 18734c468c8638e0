#!/usr/bin/env bash
# Builds the release binaries and the benchmark venv, then runs one benchmark:
#   scripts/bench/run.sh ingest [--events N] [--rounds R]
#   scripts/bench/run.sh query  [--events N] [--days D]
#   scripts/bench/run.sh search [--events N] [--days D]
#   scripts/bench/run.sh protocols [--events N] [--rounds R]
#   scripts/bench/run.sh kinesis [--events N] [--rounds R]
#   scripts/bench/run.sh pgwire [--events N] [--runs R]
#   scripts/bench/run.sh needles [--events N] [--days D] [--latency-ms MS] [--baseline OLD_BINARY] [--cold C] [--no-s3]
#   scripts/bench/run.sh masking [--events N] [--rounds R]
#   scripts/bench/run.sh flamegraph --out docs/perf/F.svg [--events N]   (perf of the server during the ingest benchmark)
#   scripts/bench/run.sh textindex [--workdir DIR] [--day D] [--phrase TEXT]   (after needles)
#   scripts/bench/run.sh fargate [--events N] [--latency-ms MS]   (ack=commit beside ack=wal on S3 with latency)
#   scripts/bench/run.sh replicas [--events N] [--max-replicas R]   (1..R replicas on one bucket)
# Results are printed as JSON; BENCHMARKS.md records them.
set -euo pipefail
cd "$(dirname "$0")/../.."
cache=${LOGYARD_CACHE:-/var/cache/logyard}
mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ] || cache="${XDG_CACHE_HOME:-$HOME/.cache}/logyard"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
cargo build --release --locked -p logyard -p logyard-bench
venv="$cache/venv"
req=scripts/tests/requirements.txt
if ! [ -x "$venv/bin/python" ] || ! cmp -s "$req" "$venv/requirements.txt"; then
  rm -rf "$venv" && python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$venv/requirements.txt"
fi
which=$1; shift
exec "$venv/bin/python" "scripts/bench/$which.py" "$@"
