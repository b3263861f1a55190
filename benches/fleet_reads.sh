#!/usr/bin/env bash
# Fleet read benchmark (issue 16): on SQLite and on PostgreSQL, a store bulk-loaded with SQL
# (benches/fleet_seed.py) to INSTALLS installations over ~1,000 merchants (30 % outdated, 1 %
# stale, 0.1 % blocked, the rest heartbeating within the last hour) and EVENTS telemetry
# events over the last 30 days, with the read model (plugin_event_rollups,
# fleet_version_counts) filled consistently when the schema has it. The API is checked
# against the store (overview counts, one install of each status, the lists), then each
# Ops read is timed warm: 3 warm-up requests, then REQUESTS sequential requests over one
# keep-alive connection, one JSON line per read and backend (WARMUP=3 changes the warm-up,
# for a baseline whose reads take seconds). Loopback only.
# The scheduled jobs are recorded as just run, as on a running server, so neither runs over
# the fleet during the reads. AUTOHEAL_BENCH_BIN runs another build (no cargo build then);
# AUTOHEAL_BENCH_SERVE_ARGS adds `serve` flags; AUTOHEAL_BENCH_POSTGRES_URL is the
# PostgreSQL admin URL (a throwaway database autoheal_fleet_bench is made beside it).
# CONSOLE=1 also signs in to the Ops console (issue 19) and times each of its pages the same
# way, with each page's weight (its HTML, and with the assets a first visit downloads).
#   bash benches/fleet_reads.sh [INSTALLS=1000000] [EVENTS=10000000]     (env REQUESTS=200 WARMUP=3)
set -euo pipefail
installs=${1:-1000000}
events=${2:-10000000}
requests=${REQUESTS:-200}
warmup=${WARMUP:-3}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pg_admin=${AUTOHEAL_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
pg_db=autoheal_fleet_bench
pg_url=${pg_admin%/*}/$pg_db
if [ -n "${AUTOHEAL_BENCH_BIN:-}" ]; then
  bin=$AUTOHEAL_BENCH_BIN
else
  cargo build --release -q -p autoheal --bin autoheal
  bin=target/release/autoheal
fi
seed=benches/fleet_seed.py
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
  local name=$1 url=$2 target=$3 merchant ops agent token summary port started
  DATABASE_URL=$url $bin migrate >/dev/null
  merchant=$(DATABASE_URL=$url $bin merchant create --name bench --email bench@example.com | json_field merchant_id)
  ops=$(DATABASE_URL=$url $bin ops-agent create --email ops-bench@example.com --role operator)
  agent=$(json_field agent_id <<<"$ops")
  token=$(json_field token <<<"$ops")

  summary=$work/$name.json
  started=$(date +%s.%N)
  python3 $seed load "$name" "$target" --installs "$installs" --events "$events" \
    --merchant "$merchant" --agent "$agent" >"$summary"
  python3 - "$name" "$summary" "$started" <<'EOF'
import json, sys, time
name, summary, started = sys.argv[1], json.load(open(sys.argv[2])), float(sys.argv[3])
print(json.dumps({"backend": name, "load": "store", "installs": summary["installs"], "events": summary["events"],
                  "rollups": summary["rollups"], "read_model": summary["read_model"],
                  "seconds": round(time.time() - started, 1)}, separators=(",", ":")), flush=True)
EOF

  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  RUST_LOG=${RUST_LOG:-warn} DATABASE_URL=$url $bin serve --listen 127.0.0.1:$port ${AUTOHEAL_BENCH_SERVE_ARGS:-} &
  server=$!
  for _ in $(seq 1 300); do
    curl -sf http://127.0.0.1:$port/healthz >/dev/null && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  curl -sf http://127.0.0.1:$port/healthz >/dev/null || { echo "FAIL: $name server did not come up" >&2; exit 1; }
  python3 $seed reads "http://127.0.0.1:$port" "$token" "$summary" --backend "$name" --requests "$requests" --warmup "$warmup"
  if [ -n "${CONSOLE:-}" ]; then
    printf '%s\n' 'bench console passphrase' | DATABASE_URL=$url $bin ops-agent set-password --email ops-bench@example.com >/dev/null
    python3 $seed console "http://127.0.0.1:$port" ops-bench@example.com 'bench console passphrase' "$summary" \
      --backend "$name" --requests "$requests" --warmup "$warmup"
  fi
  kill -TERM "$server"
  wait "$server" || true
  server=
}

run sqlite "sqlite://$work/fleet.db" "$work/fleet.db"
rm -f "$work"/fleet.db*
PGOPTIONS=--client-min-messages=warning psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db" -c "CREATE DATABASE $pg_db"
pg_made=1
run postgres "$pg_url" "$pg_url"
