#!/usr/bin/env bash
# Heartbeat ingest benchmark (issue 2): autoheal on SQLite and on PostgreSQL
# under 64 keep-alive clients on loopback, next to pgbench running a
# single-row upsert on the same PostgreSQL in the same session.
#   bash benches/heartbeat.sh [SECONDS=20]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
pg_admin=${AUTOHEAL_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
cargo build --release -q -p autoheal -p benches --bin autoheal --bin plugin_load
bin=target/release/autoheal
load=target/release/plugin_load
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

run() { # name database_url
  local name=$1 url=$2 port key
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  key=$(DATABASE_URL=$url $bin merchant create --name bench --email bench@example.com | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
  RUST_LOG=warn DATABASE_URL=$url $bin serve --listen 127.0.0.1:$port ${AUTOHEAL_BENCH_SERVE_ARGS:-} &
  local server=$!
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
  $load heartbeat 127.0.0.1:$port "$key" 64 2 >/dev/null   # warm-up: creates the installations
  echo "$name $($load heartbeat 127.0.0.1:$port "$key" 64 "$seconds")"
  kill -TERM $server; wait $server || true
}

run sqlite "sqlite://$work/bench.db"
psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS autoheal_bench" -c "CREATE DATABASE autoheal_bench"
run postgres "${pg_admin%/*}/autoheal_bench"

psql -q "${pg_admin%/*}/autoheal_bench" -c "CREATE TABLE upsert_bench (id int PRIMARY KEY, beats bigint NOT NULL, seen timestamptz NOT NULL)"
cat > "$work/upsert.sql" <<'SQL'
\set id random(1, 10000)
INSERT INTO upsert_bench (id, beats, seen) VALUES (:id, 1, now())
  ON CONFLICT (id) DO UPDATE SET beats = upsert_bench.beats + 1, seen = now();
SQL
echo "pgbench $(pgbench -n -c 64 -j 2 -T "$seconds" -f "$work/upsert.sql" "${pg_admin%/*}/autoheal_bench" 2>/dev/null | grep -E 'tps|latency average' | tr '\n' ' ')"
psql -q "$pg_admin" -c "DROP DATABASE autoheal_bench"
