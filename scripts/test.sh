#!/usr/bin/env bash
# Runs every check of the project: formatting, lints, and all tests.
#
# Installs what the tests need when it is missing, into a cache directory outside the
# clone (default /var/cache/logyard, or ~/.cache/logyard when that is not writable):
#   - s3s-fs 0.14.1 (an S3 server that checks signatures), by cargo install;
#   - a Python venv with the pinned readers of scripts/tests/requirements.txt;
#   - cargo-fuzz (scripts/fuzz.sh), to run the fuzz targets over their seed inputs;
#   - kinesalite (Kinesis Data Streams on loopback) and node-postgres (pg), pinned by
#     scripts/tests/node, by npm;
#   - the Debian packages zstd, g++, chromium, openssl, postgresql-15, its client (psql, libpq)
#     and nodejs/npm when missing.
# The build directory lives there too (CARGO_TARGET_DIR), so repeated runs are incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/cache-dir.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }

# Programs the tests call: zstd (GNU tar --zstd reads archive bundles), a C++ compiler
# (cargo-fuzz builds libFuzzer), Chromium (takes a screenshot of the HTML report),
# PostgreSQL 15 with openssl (a throwaway orders database with its own CA per test), and psql
# and libpq (clients of the pgwire listener).
missing=()
command -v zstd >/dev/null || missing+=(zstd)
command -v c++ >/dev/null || missing+=(g++)
command -v chromium >/dev/null || missing+=(chromium)
command -v openssl >/dev/null || missing+=(openssl)
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
command -v psql >/dev/null || missing+=(postgresql-client-15)
ldconfig -p | grep -q 'libpq\.so\.5 ' || missing+=(libpq5)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

s3s="$cache/tools/bin/s3s-fs"
if ! [ -x "$s3s" ]; then
  step "installing s3s-fs 0.14.1 into $cache/tools"
  CARGO_TARGET_DIR="$cache/tools-target" cargo install s3s-fs@0.14.1 --features binary --locked --root "$cache/tools"
fi

venv="$cache/venv"
req=scripts/tests/requirements.txt
if ! [ -x "$venv/bin/python" ] || ! cmp -s "$req" "$venv/requirements.txt"; then
  step "creating the Python venv $venv"
  if ! python3 -m venv --help >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$venv/requirements.txt"
fi

node="$cache/node"
lock=scripts/tests/node/package-lock.json
if ! [ -d "$node/node_modules/pg" ] || ! cmp -s "$lock" "$node/package-lock.json"; then
  step "installing kinesalite and pg into $node"
  rm -rf "$node" && mkdir -p "$node"
  cp scripts/tests/node/package.json "$lock" "$node/"
  (cd "$node" && npm ci --no-audit --no-fund --loglevel=error)
fi

export LOGYARD_S3S_FS="$s3s"
export LOGYARD_NODE_MODULES="$node/node_modules"
export LOGYARD_TEST_PYTHON="$venv/bin/python"
export LOGYARD_MOTO_SERVER="$venv/bin/moto_server"

step "cargo fmt --check"
cargo fmt --all --check
cargo fmt --check --manifest-path fuzz/Cargo.toml
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo test"
cargo test --workspace --locked
step "fuzz targets over their seeds (the inputs of past findings included)"
scripts/fuzz.sh --seeds
scripts/tests/deploy/check.sh "$cache"
step "all checks passed"
