#!/usr/bin/env bash
# Two replicas on one PostgreSQL under a simulated fleet (issue 16): a store bulk-loaded by
# benches/fleet_seed.py with INSTALLS installs of one merchant and EVENTS events, two
# `autoheal serve` on it, and fleet_sim sending each install's hourly heartbeat (a mean of
# INSTALLS / 3600 per second, with 10x bursts) and as many payment events at a steady rate
# to both, round robin, for SECONDS. Prints fleet_sim's JSON line (latency per replica, in and out of
# the bursts) and one line per replica with the CPU it used: user + system time from
# /proc/PID/stat over the run, as a share of one core.
# KEEP_DB=1 leaves the database (autoheal_fleet_sim) behind, to look at its plans after.
#   bash benches/fleet_sim.sh [INSTALLS=1000000] [SECONDS=600] [EVENTS=10000000]
set -euo pipefail
installs=${1:-1000000}
seconds=${2:-600}
events=${3:-10000000}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pg_admin=${AUTOHEAL_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
pg_db=autoheal_fleet_sim
url=${pg_admin%/*}/$pg_db
if [ -z "${AUTOHEAL_BENCH_BIN:-}" ]; then
  cargo build --release -q -p autoheal -p benches --bin autoheal --bin fleet_sim
fi
bin=${AUTOHEAL_BENCH_BIN:-target/release/autoheal}
sim=target/release/fleet_sim
work=$(mktemp -d)
servers=()
cleanup() {
  for server in "${servers[@]}"; do kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; done
  [ -n "${KEEP_DB:-}" ] || psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

PGOPTIONS=--client-min-messages=warning psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db" -c "CREATE DATABASE $pg_db"
DATABASE_URL=$url $bin migrate >/dev/null
made=$(DATABASE_URL=$url $bin merchant create --name fleet --email fleet@example.com)
merchant=$(json_field merchant_id <<<"$made")
key=$(json_field api_key <<<"$made")
agent=$(DATABASE_URL=$url $bin ops-agent create --email ops-fleet@example.com --role operator | json_field agent_id)
python3 benches/fleet_seed.py load postgres "$url" --installs "$installs" --events "$events" \
  --merchants 0 --merchant "$merchant" --agent "$agent" >"$work/summary.json"

addresses=()
for replica in 1 2; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # One merchant holds the whole fleet: its install quota is raised above it (an env var,
  # which binaries from before the quota ignore).
  AUTOHEAL_MAX_INSTALLS_PER_MERCHANT=$(( installs * 2 )) RUST_LOG=warn DATABASE_URL=$url $bin serve --listen 127.0.0.1:$port ${AUTOHEAL_BENCH_SERVE_ARGS:-} &
  servers+=($!)
  addresses+=(127.0.0.1:$port)
  for _ in $(seq 1 300); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
  curl -sf http://127.0.0.1:$port/healthz >/dev/null || { echo "FAIL: replica $replica did not come up" >&2; exit 1; }
done
before=()
for server in "${servers[@]}"; do before+=("$(cpu_ticks "$server")"); done
started=$(date +%s.%N)
$sim "$(IFS=,; echo "${addresses[*]}")" "$key" "$installs" "$seconds" "$(( installs / 3600 ))"
ended=$(date +%s.%N)
hz=$(getconf CLK_TCK)
for i in "${!servers[@]}"; do
  python3 -c "import json,sys; t=float(sys.argv[2])/int(sys.argv[3]); w=float(sys.argv[5])-float(sys.argv[4]); \
print(json.dumps({'replica': sys.argv[1], 'cpu_seconds': round(t, 1), 'wall_seconds': round(w, 1), 'share_of_a_core': round(t / w, 3)}))" \
    "${addresses[$i]}" "$(( $(cpu_ticks "${servers[$i]}") - before[i] ))" "$hz" "$started" "$ended"
done
