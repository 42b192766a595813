#!/usr/bin/env bash
# The read-path comparison: Lockstep, PostGraphile and plain SQL (pgbench)
# on one PostgreSQL database, under the same load from `lockstep
# bench-reads` (same rows checked first), then the dashboard mix.
#
#   bench/compare.sh 'postgres://postgres@127.0.0.1:5432/lockstep_bench1m?sslmode=disable'
#
# The database must exist; it is seeded with LEADS leads when it has none
# (`lockstep seed`, ~10 min for 1,000,000). Settings (environment):
#   LEADS (1000000)  CLIENTS (8,32)  SECS (20)  ROUNDS (3)
#   LOCKSTEP_PORT (18431)  POSTGRAPHILE_PORT (18432)  LOCKSTEP_BIN (built here)
# Both servers reach PostgreSQL with the URL as given: give both the same
# sslmode (TLS costs throughput; see README).
set -euo pipefail

DB=${1:?usage: bench/compare.sh DATABASE_URL}
LEADS=${LEADS:-1000000}
CLIENTS=${CLIENTS:-8,32}
SECS=${SECS:-20}
ROUNDS=${ROUNDS:-3}
LOCKSTEP_PORT=${LOCKSTEP_PORT:-18431}
POSTGRAPHILE_PORT=${POSTGRAPHILE_PORT:-18432}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# LOCKSTEP_BIN: a lockstep binary built apart (another build, say);
# otherwise this checkout's, built now.
bin=${LOCKSTEP_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --bin lockstep
  bin="${CARGO_TARGET_DIR:-$root/target}/release/lockstep"
fi

leads=$(psql "$DB" -Atc "SELECT count(*) FROM leads" 2>/dev/null || echo 0)
if [ "$leads" = "0" ]; then
  echo "seeding $LEADS leads…" >&2
  "$bin" seed --leads "$LEADS" --database-url "$DB"
fi

# PostGraphile, the version pinned in bench/postgraphile/package-lock.json.
if [ ! -x bench/postgraphile/node_modules/.bin/postgraphile ]; then
  npm ci --prefix bench/postgraphile --no-audit --no-fund
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

NODE_ENV=production bench/postgraphile/node_modules/.bin/postgraphile \
  --connection "$DB" --host 127.0.0.1 --port "$POSTGRAPHILE_PORT" \
  --disable-query-log --disable-default-mutations \
  > /tmp/lockstep-compare-postgraphile.log 2>&1 &
pids+=($!)
postgraphile_pid=$!

secret=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
LOCKSTEP_DATABASE_URL="$DB" LOCKSTEP_JWT_SECRET="$secret" \
  LOCKSTEP_BIND="127.0.0.1:$LOCKSTEP_PORT" LOCKSTEP_METRICS_CACHE_SECS=0 \
  LOCKSTEP_RATE_LIMITS__ENABLED=false LOCKSTEP_LOG=warn \
  "$bin" serve --no-jobs > /tmp/lockstep-compare-server.log 2>&1 &
pids+=($!)
lockstep_pid=$!

wait_for() { # url, body
  for _ in $(seq 1 120); do
    if curl -sf -o /dev/null -H 'content-type: application/json' -d "$2" "$1"; then return 0; fi
    sleep 1
  done
  echo "no answer from $1" >&2
  return 1
}
wait_for "http://127.0.0.1:$POSTGRAPHILE_PORT/graphql" '{"query":"{ __typename }"}'
for _ in $(seq 1 120); do
  curl -sf -o /dev/null "http://127.0.0.1:$LOCKSTEP_PORT/readyz" && break
  sleep 1
done

"$bin" bench-reads \
  --url "http://127.0.0.1:$LOCKSTEP_PORT/graphql" --jwt-secret "$secret" \
  --postgraphile "http://127.0.0.1:$POSTGRAPHILE_PORT/graphql" --pgbench "$DB" \
  --dashboard --clients "$CLIENTS" --secs "$SECS" --rounds "$ROUNDS"

for name in lockstep postgraphile; do
  pid_var="${name}_pid"
  echo "$name peak RSS: $(grep VmHWM "/proc/${!pid_var}/status" | awk '{print $2, $3}')"
done
