# Sourced by the HTTP benchmarks (heartbeat.sh, healing.sh): builds the release binaries
# and starts and stops one `autoheal serve` on a free loopback port.
# AUTOHEAL_BENCH_BIN runs another build of the server (a baseline) in the same way;
# AUTOHEAL_BENCH_SERVE_ARGS adds `serve` flags.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pg_admin=${AUTOHEAL_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
cargo build --release -q -p autoheal -p benches --bin autoheal --bin plugin_load
bin=${AUTOHEAL_BENCH_BIN:-target/release/autoheal}
load=target/release/plugin_load
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# start_server DATABASE_URL: sets `port`, `key` (a new merchant's API key) and `server`
# (the pid), then creates the installations with a warm-up of heartbeats.
start_server() {
  local url=$1
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  key=$(DATABASE_URL=$url $bin merchant create --name bench --email bench@example.com | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
  # The bench's one merchant is the whole load: its event rate quota is set far above it, so
  # the quota is checked on every event but never refuses one (an env var, which binaries
  # from before the quota ignore).
  AUTOHEAL_MERCHANT_EVENTS_PER_SECOND=10000000 RUST_LOG=warn DATABASE_URL=$url $bin serve --listen 127.0.0.1:$port ${AUTOHEAL_BENCH_SERVE_ARGS:-} &
  server=$!
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
  $load heartbeat 127.0.0.1:$port "$key" 64 2 >/dev/null
}

stop_server() {
  kill -TERM $server
  wait $server || true
}
