#!/usr/bin/env bash
# Heartbeat ingest benchmark (issue 2): autoheal on SQLite and on PostgreSQL
# under 64 keep-alive clients on loopback, next to pgbench running a
# single-row upsert on the same PostgreSQL in the same session; then, on the
# same server, telemetry event ingest (plugin_load event: 64 clients over
# 1,000 installs, each event also counted into its install's hourly rollup).
#   bash benches/heartbeat.sh [SECONDS=20]
set -euo pipefail
seconds=${1:-20}
source "$(dirname "$0")/serve.sh"

run() { # name database_url
  start_server "$2"
  echo "$1 $($load heartbeat 127.0.0.1:$port "$key" 64 "$seconds")"
  echo "$1 $($load event 127.0.0.1:$port "$key" 64 "$seconds")"
  stop_server
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
