#!/usr/bin/env bash
# Platform log query benchmark (issue 20, seed 002's "< 1 s for the last hour with 10 million
# entries"): on SQLite and on PostgreSQL, `platform_logs` bulk-loaded with SQL
# (benches/logs_seed.py: ENTRIES entries over ~1,000 merchants, each level spread over its
# retention — error 30 days, warn 14, info 7, debug 1) and the FTS index filled. The API is
# checked against the store, then each `GET /api/platform/logs` read is timed warm (WARMUP
# requests, then REQUESTS sequential requests over one keep-alive connection, one JSON line
# per read and backend), and the full-text reads' SQL is run straight on the store with its
# index and with a `LIKE '%word%'` scan (the peer). Loopback only; each store is deleted
# after its run. AUTOHEAL_BENCH_BIN runs another build (no cargo build then);
# AUTOHEAL_BENCH_SERVE_ARGS adds `serve` flags; AUTOHEAL_BENCH_POSTGRES_URL is the
# PostgreSQL admin URL (a throwaway database autoheal_logs_bench is made beside it);
# BACKENDS="sqlite" (or "postgres") runs one.
#   bash benches/platform_logs.sh [ENTRIES=10000000]     (env REQUESTS=200 WARMUP=3 BUDGET=60: seconds per read, after 10)
set -euo pipefail
entries=${1:-10000000}
requests=${REQUESTS:-200}
warmup=${WARMUP:-3}
backends=${BACKENDS:-sqlite postgres}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pg_admin=${AUTOHEAL_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
pg_db=autoheal_logs_bench
pg_url=${pg_admin%/*}/$pg_db
if [ -n "${AUTOHEAL_BENCH_BIN:-}" ]; then
  bin=$AUTOHEAL_BENCH_BIN
else
  cargo build --release -q -p autoheal --bin autoheal
  bin=target/release/autoheal
fi
seed=benches/logs_seed.py
work=$(mktemp -d)
server=
pg_made=
cleanup() {
  if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  if [ -n "$pg_made" ]; then psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db" >/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }

run() { # name database_url seed_target
  local name=$1 url=$2 target=$3 ops token summary port
  DATABASE_URL=$url $bin migrate >/dev/null
  ops=$(DATABASE_URL=$url $bin ops-agent create --email ops-bench@example.com --role operator)
  token=$(json_field token <<<"$ops")
  summary=$work/$name.json
  python3 $seed load "$name" "$target" --entries "$entries" >"$summary"
  cat "$summary"

  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  RUST_LOG=${RUST_LOG:-warn} DATABASE_URL=$url $bin serve --listen 127.0.0.1:$port ${AUTOHEAL_BENCH_SERVE_ARGS:-} &
  server=$!
  for _ in $(seq 1 300); do
    curl -sf http://127.0.0.1:$port/healthz >/dev/null && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  curl -sf http://127.0.0.1:$port/healthz >/dev/null || { echo "FAIL: $name server did not come up" >&2; exit 1; }
  python3 $seed reads "http://127.0.0.1:$port" "$token" "$summary" --backend "$name" --target "$target" \
    --requests "$requests" --warmup "$warmup" --budget-seconds "${BUDGET:-60}"
  kill -TERM "$server"
  wait "$server" || true
  server=
}

for backend in $backends; do
  case $backend in
    sqlite)
      run sqlite "sqlite://$work/logs.db" "$work/logs.db"
      rm -f "$work"/logs.db* ;;
    postgres)
      PGOPTIONS=--client-min-messages=warning psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db" -c "CREATE DATABASE $pg_db"
      pg_made=1
      run postgres "$pg_url" "$pg_url"
      psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db" >/dev/null
      pg_made= ;;
    *) echo "unknown backend $backend" >&2; exit 2 ;;
  esac
done
