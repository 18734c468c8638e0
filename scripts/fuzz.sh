#!/usr/bin/env bash
# Fuzzes the parsers that read what callers send, with cargo-fuzz (libFuzzer + AddressSanitizer):
#   event_body         a request body (NDJSON or JSON) through checking, WAL encoding and batch building
#   timestamp          event-time text and JSON values
#   auth_headers       Authorization, stream globs, X-Forwarded-For
#   elastic_bulk       Elasticsearch _bulk bodies (logyard-protocols, as are the four targets below)
#   otlp_logs          OTLP/HTTP logs bodies, JSON or protobuf
#   loki_push          Loki pushes, JSON or snappy protobuf, within a decompressed-size limit
#   kinesis_record     Kinesis/Firehose record bytes: NDJSON, text, gzip, CloudWatch Logs envelopes
#   firehose_delivery  Firehose HTTP endpoint delivery requests
#   body_decode        bounded gzip/zstd decompression of request bodies
#   search             the search language: reading, writing back, the SQL it becomes, the tail's matcher
#   mask_event         an event through the masking rules (detectors, actions, fields)
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 60 s, every target)
#        scripts/fuzz.sh --seeds                              (each target over fuzz/seeds once,
#                                                              unoptimized: the regression check
#                                                              test.sh runs)
#
# Installs cargo-fuzz into the cache when missing. cargo-fuzz passes flags only nightly
# compilers take (-Zsanitizer=address); RUSTC_BOOTSTRAP=1 lets the stable toolchain accept
# them. The corpus grows in $cache/fuzz-corpus/<target>, seeded from fuzz/seeds/<target>;
# a crash is saved under fuzz/artifacts/<target>/ and ends the run with a non-zero status.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/cache-dir.sh
seeds_only=false
if [ "${1:-}" = "--seeds" ]; then
  seeds_only=true
  shift
fi
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(event_body timestamp auth_headers elastic_bulk otlp_logs loki_push kinesis_record firehose_delivery body_decode search mask_event)
fi

fuzz="$cache/tools/bin/cargo-fuzz"
if ! [ -x "$fuzz" ]; then
  echo "==> installing cargo-fuzz 0.13.2 into $cache/tools"
  CARGO_TARGET_DIR="$cache/tools-target" cargo install cargo-fuzz@0.13.2 --locked --root "$cache/tools"
fi
export PATH="$cache/tools/bin:$PATH"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$cache/fuzz-target"

for target in "${targets[@]}"; do
  log="$cache/fuzz-$target.log"
  status=0
  if $seeds_only; then
    echo "==> $target over fuzz/seeds/$target"
    # Unoptimized (overflow checks on, AddressSanitizer as always): the seeds run once each,
    # and a fresh build of the targets took 3.7 min here against about 9 for the optimized
    # one that fuzzing needs.
    cargo fuzz run --dev --fuzz-dir fuzz "$target" fuzz/seeds/"$target" -- -runs=0 >"$log" 2>&1 || status=$?
  else
    corpus="$cache/fuzz-corpus/$target"
    mkdir -p "$corpus"
    echo "==> $target for ${seconds}s (corpus $corpus)"
    cargo fuzz run --fuzz-dir fuzz "$target" "$corpus" fuzz/seeds/"$target" -- \
      -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1 || status=$?
  fi
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb|stat::new_units_added)|^#[0-9]+ +DONE' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -60 "$log" >&2
    if grep -q '^Error: failed to build fuzz script' "$log"; then
      echo "==> $target did not build (exit $status): the errors are above" >&2
    else
      echo "==> $target failed (exit $status): a crash is saved under fuzz/artifacts/$target/" >&2
    fi
    exit 1
  fi
done
echo "==> no crash"
