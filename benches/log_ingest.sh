#!/usr/bin/env bash
# Platform log ingest through the buffered writer, and its cost to the heartbeat benchmark
# (issue 20): the heartbeat load of benches/heartbeat.sh (`plugin_load heartbeat`, 64
# keep-alive clients over 10,000 installs, SECONDS s after its 2 s warm-up) against a server
# without `--log-store-debug` and then with it (each heartbeat then records one `debug`
# entry, `fleet.heartbeat`, written by the log's writer beside the heartbeats' own writes),
# each on a fresh store, ROUNDS times alternating. Per run: heartbeats/s, p50/p99, and the
# entries the writer stored per second (`platform_logs_written_total` before and after ÷ the
# load's seconds) with `platform_logs_dropped_total` (both reasons). Loopback only.
# AUTOHEAL_BENCH_BIN / AUTOHEAL_BENCH_LOAD run other builds of the server / of plugin_load
# (no cargo build when both are given); AUTOHEAL_BENCH_SERVE_ARGS adds `serve` flags;
# AUTOHEAL_BENCH_POSTGRES_URL is the PostgreSQL admin URL (a throwaway database
# autoheal_ingest_bench is made beside it); BACKENDS="sqlite" runs one.
#   bash benches/log_ingest.sh [SECONDS=15]    (env ROUNDS=2)
set -euo pipefail
seconds=${1:-15}
rounds=${ROUNDS:-2}
backends=${BACKENDS:-sqlite postgres}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pg_admin=${AUTOHEAL_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
pg_db=autoheal_ingest_bench
if [ -z "${AUTOHEAL_BENCH_BIN:-}" ] || [ -z "${AUTOHEAL_BENCH_LOAD:-}" ]; then
  cargo build --release -q -p autoheal -p benches --bin autoheal --bin plugin_load
fi
bin=${AUTOHEAL_BENCH_BIN:-target/release/autoheal}
load=${AUTOHEAL_BENCH_LOAD:-target/release/plugin_load}
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

# log_counts PORT: "written dropped" from the server's /metrics.
log_counts() {
  curl -sf "http://127.0.0.1:$1/metrics" | python3 -c '
import sys
written = dropped = 0
for line in sys.stdin:
    if line.startswith("platform_logs_written_total"):
        written += float(line.split()[-1])
    elif line.startswith("platform_logs_dropped_total"):
        dropped += float(line.split()[-1])
print(int(written), int(dropped))'
}

run() { # backend logging(off|debug)
  local backend=$1 logging=$2 url key port before after flags=
  case $backend in
    sqlite) rm -f "$work"/ingest.db*; url="sqlite://$work/ingest.db" ;;
    postgres)
      PGOPTIONS=--client-min-messages=warning psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db" -c "CREATE DATABASE $pg_db"
      pg_made=1
      url=${pg_admin%/*}/$pg_db ;;
    *) echo "unknown backend $backend" >&2; exit 2 ;;
  esac
  [ "$logging" = debug ] && flags=--log-store-debug
  key=$(DATABASE_URL=$url $bin merchant create --name bench --email bench@example.com | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  RUST_LOG=warn DATABASE_URL=$url $bin serve --listen 127.0.0.1:$port $flags ${AUTOHEAL_BENCH_SERVE_ARGS:-} 2>/dev/null &
  server=$!
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
  $load heartbeat 127.0.0.1:$port "$key" 64 2 >/dev/null
  sleep 0.5 # the warm-up's entries written
  before=$(log_counts $port)
  result=$($load heartbeat 127.0.0.1:$port "$key" 64 "$seconds")
  sleep 0.5 # the writer's last batch (linger 50 ms)
  after=$(log_counts $port)
  python3 - "$backend" "$logging" "$result" "$before" "$after" <<'EOF'
import json, sys
backend, logging, result, before, after = sys.argv[1:]
result = json.loads(result)
(w0, d0), (w1, d1) = (map(int, x.split()) for x in (before, after))
print(json.dumps({"backend": backend, "logging": logging, "heartbeats": result["acknowledged"],
                  "heartbeats_per_s": result["per_second"],
                  "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"], "errors": result["errors"],
                  "entries_written": w1 - w0, "entries_per_s": round((w1 - w0) / result["seconds"]),
                  "entries_dropped": d1 - d0}, separators=(",", ":")), flush=True)
EOF
  kill -TERM "$server"
  wait "$server" || true
  server=
  if [ "$backend" = postgres ]; then psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db" >/dev/null; pg_made=; fi
}

for backend in $backends; do
  for _ in $(seq 1 "$rounds"); do
    run "$backend" off
    run "$backend" debug
  done
done
