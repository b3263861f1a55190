#!/usr/bin/env bash
# Flag evaluation over HTTP (issue 5): autoheal on SQLite serving the shipped
# rules (fifteen flags in rules/flags/platform.json), CLIENTS keep-alive
# clients posting batch evaluations of BATCH flags for one context each.
#   bash benches/flags.sh [SECONDS=15] [CLIENTS=8] [BATCH=15]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
clients=${2:-8}
batch=${3:-15}
cargo build --release -q -p autoheal -p benches --bin autoheal --bin flags_load
target=${CARGO_TARGET_DIR:-target}
bin=${AUTOHEAL_BENCH_BIN:-$target/release/autoheal}
load=$target/release/flags_load
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

url="sqlite://$work/bench.db"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token=$(DATABASE_URL=$url $bin ops-agent create --email bench@ops.test --role viewer | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
keys=$(python3 -c 'import json,sys; print(",".join(f["key"] for f in json.load(open("rules/flags/platform.json"))["flags"][:int(sys.argv[1])]))' "$batch")
RUST_LOG=warn DATABASE_URL=$url $bin serve --listen 127.0.0.1:$port --rules ./rules &
server=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
$load 127.0.0.1:$port "$token" "$keys" "$clients" 2 >/dev/null   # warm-up
echo "sqlite $($load 127.0.0.1:$port "$token" "$keys" "$clients" "$seconds")"
kill -TERM $server; wait $server || true
