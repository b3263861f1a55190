#!/usr/bin/env bash
# Healing loop and interop benchmark (issue 7): on SQLite and on PostgreSQL, in the same
# run and against the same server, heartbeats (the reference rate), interop events, and
# Sira detections that auto-apply (decision, sandboxed dry run, durable snapshot and
# command before the 201: detection-to-command latency), without and then with an
# idempotency key on each detection (detect-keyed), and the plugin's poll that takes each
# queued command (handout: lease, sequence, signature — issue 18). Loopback only, bounded in time.
# The peer for the detection latency is the smallest durable write PostgreSQL does:
# pgbench committing one 2 KB row per transaction, at the same concurrencies, on the same
# server, in the same run.
#   bash benches/healing.sh [SECONDS=15] [DETECT_CLIENTS="1 4 16"]
set -euo pipefail
seconds=${1:-15}
detect_clients=${2:-"1 4 16"}
source "$(dirname "$0")/serve.sh"

run() { # name database_url
  local name=$1 url=$2 sira
  sira=$(DATABASE_URL=$url $bin sira-token create --name bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  start_server "$url"
  echo "$name $($load heartbeat 127.0.0.1:$port "$key" 64 "$seconds")"
  echo "$name $($load interop 127.0.0.1:$port "$key" 64 "$seconds")"
  for mode in detect detect-keyed handout; do
    for clients in $detect_clients; do
      echo "$name $($load $mode 127.0.0.1:$port "$key:$sira" "$clients" "$seconds")"
    done
  done
  stop_server
}

run sqlite "sqlite://$work/bench.db"
psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS autoheal_bench" -c "CREATE DATABASE autoheal_bench"
run postgres "${pg_admin%/*}/autoheal_bench"

psql -q "${pg_admin%/*}/autoheal_bench" -c "CREATE TABLE commit_bench (id bigserial PRIMARY KEY, body text NOT NULL, at timestamptz NOT NULL)"
echo "INSERT INTO commit_bench (body, at) VALUES (repeat('x', 2048), now());" > "$work/commit.sql"
for clients in $detect_clients; do
  rm -f "$work"/pgbench_log.*
  (cd "$work" && pgbench -n -c "$clients" -j "$(( clients < 2 ? 1 : 2 ))" -T "$seconds" -l -f commit.sql "${pg_admin%/*}/autoheal_bench" >/dev/null 2>&1)
  # Column 3 of pgbench's per-transaction log is the latency in microseconds.
  echo "pgbench $(cat "$work"/pgbench_log.* | awk '{print $3}' | sort -n | awk -v c="$clients" -v s="$seconds" \
    '{l[NR]=$1} END {printf "{\"mode\":\"one-row commit\",\"clients\":%d,\"per_second\":%d,\"p50_ms\":%.3f,\"p99_ms\":%.3f}", c, NR/s, l[int(NR*0.5)]/1000, l[int(NR*0.99)]/1000}')"
done
psql -q "$pg_admin" -c "DROP DATABASE autoheal_bench"
