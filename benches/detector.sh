#!/usr/bin/env bash
# Built-in detector benchmark (issue 20): on SQLite and on PostgreSQL, a server with
# `--detector-interval-secs INTERVAL` (and `--detector-max-per-hour 1000000`, so the
# fleet-wide rate limit does not hold back the burst) and no Sira:
#   latency  LATENCY_INSTALLS installs, one after another, each heartbeats with a state and
#            posts 3 out-of-memory `error` events; the time from the third event's 2xx to
#            its `source=detector` detection in GET /api/v1/plugins/autoheal/logs (polled
#            every 20 ms) — bounded by the interval, as the detector is a job run every
#            interval;
#   burst    on a fresh store, BURST_INSTALLS installs post their 3 events at once; the time
#            from the last event's 2xx to the last detection listed.
# After each, the detector job's runs (scheduled_job_runs) against the seconds the server ran.
# Loopback only; each store is deleted after its run. AUTOHEAL_BENCH_BIN runs another build
# (no cargo build then); AUTOHEAL_BENCH_POSTGRES_URL is the PostgreSQL admin URL (a throwaway
# database autoheal_detector_bench is made beside it); BACKENDS="sqlite" runs one.
#   bash benches/detector.sh [INTERVAL=1]    (env LATENCY_INSTALLS=30 BURST_INSTALLS=1000)
set -euo pipefail
interval=${1:-1}
latency_installs=${LATENCY_INSTALLS:-30}
burst_installs=${BURST_INSTALLS:-1000}
backends=${BACKENDS:-sqlite postgres}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pg_admin=${AUTOHEAL_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
pg_db=autoheal_detector_bench
if [ -n "${AUTOHEAL_BENCH_BIN:-}" ]; then
  bin=$AUTOHEAL_BENCH_BIN
else
  cargo build --release -q -p autoheal --bin autoheal
  bin=target/release/autoheal
fi
load=benches/detector_load.py
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

# fresh_store BACKEND: sets `url` and `sql` (a command that runs SQL on it) for a new store.
fresh_store() {
  case $1 in
    sqlite)
      rm -f "$work"/detector.db*
      url="sqlite://$work/detector.db"
      sql() { sqlite3 "$work/detector.db" "$1"; } ;;
    postgres)
      PGOPTIONS=--client-min-messages=warning psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db" -c "CREATE DATABASE $pg_db"
      pg_made=1
      url=${pg_admin%/*}/$pg_db
      sql() { psql -XAtq "$url" -c "$1"; } ;;
    *) echo "unknown backend $1" >&2; exit 2 ;;
  esac
  DATABASE_URL=$url $bin migrate >/dev/null
}

run() { # backend mode installs
  local backend=$1 mode=$2 installs=$3 key token port started
  fresh_store "$backend"
  key=$(DATABASE_URL=$url $bin merchant create --name bench --email bench@example.com | json_field api_key)
  token=$(DATABASE_URL=$url $bin ops-agent create --email ops-bench@example.com --role operator | json_field token)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  AUTOHEAL_MERCHANT_EVENTS_PER_SECOND=10000000 RUST_LOG=${RUST_LOG:-warn} DATABASE_URL=$url $bin serve \
    --listen 127.0.0.1:$port --detector-interval-secs "$interval" --detector-max-per-hour 1000000 &
  server=$!
  started=$(date +%s.%N)
  for _ in $(seq 1 300); do
    curl -sf http://127.0.0.1:$port/healthz >/dev/null && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  curl -sf http://127.0.0.1:$port/healthz >/dev/null || { echo "FAIL: $backend server did not come up" >&2; exit 1; }
  echo "$backend $(python3 $load "$mode" "http://127.0.0.1:$port" "$key" "$token" --installs "$installs")"
  echo "$backend detector_job server_seconds=$(python3 -c "import sys, time; print(round(time.time() - float(sys.argv[1]), 1))" "$started")" \
    "runs=$(sql "SELECT runs FROM scheduled_job_runs WHERE job = 'detector'")"
  kill -TERM "$server"
  wait "$server" || true
  server=
  if [ "$backend" = postgres ]; then psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db" >/dev/null; pg_made=; fi
}

for backend in $backends; do
  run "$backend" latency "$latency_installs"
  run "$backend" burst "$burst_installs"
done
