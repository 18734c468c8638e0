#!/usr/bin/env bash
# Creates the sample orders table and loads generated orders into it.
#   scripts/orders/load.sh ORDERS.csv [psql connection arguments...]
# e.g. scripts/orders/load.sh /tmp/orders.csv "host=localhost dbname=shop user=shop sslmode=verify-full"
set -euo pipefail
csv=${1:?usage: load.sh ORDERS.csv [psql arguments]}
shift
here=$(dirname "$0")
psql -v ON_ERROR_STOP=1 "$@" -f "$here/schema.sql"
psql -v ON_ERROR_STOP=1 "$@" -c "\\copy orders (id, customer_id, status, amount, currency, created_at, updated_at) FROM '$csv' WITH (FORMAT csv, HEADER true)"
