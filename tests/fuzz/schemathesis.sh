#!/usr/bin/env bash
# Fuzzes a live `autoheal serve` against its own OpenAPI document (`GET /api/openapi.json`)
# with schemathesis: on a fresh SQLite file and on a throwaway PostgreSQL database, once per
# credential kind (merchant key, Ops admin token, Sira token). It fails on any 5xx and on any
# response the document does not describe (status, content type, body schema), and prints
# the figures (requests tried, failures) per backend and credential.
#
#   tests/fuzz/schemathesis.sh                 # both backends
#   FUZZ_BACKENDS=sqlite tests/fuzz/schemathesis.sh
#
# Settings (environment): FUZZ_BACKENDS (`sqlite postgres`), FUZZ_MAX_EXAMPLES (examples per
# operation and phase, 30), FUZZ_CHECKS (schemathesis's checks: not_a_server_error,
# status_code_conformance, content_type_conformance, response_schema_conformance; `all` adds
# the looser ones, such as a schema-valid request refused), FUZZ_POSTGRES (the server PostgreSQL runs on,
# postgres://postgres@127.0.0.1:5432), AUTOHEAL_BIN (a built binary; otherwise
# `cargo build` makes one), FUZZ_OUT (where each run's output, JSON report and the server's
# log are kept: target/schemathesis), SCHEMATHESIS (the command; otherwise schemathesis 4 is
# installed with pip in a virtualenv of Python 3.12 or later, target/schemathesis-venv: on
# 3.11 its coverage phase trips CPython's "AST constructor recursion depth mismatch").
set -euo pipefail
cd "$(dirname "$0")/../.."

backends=${FUZZ_BACKENDS:-sqlite postgres}
max_examples=${FUZZ_MAX_EXAMPLES:-30}
postgres=${FUZZ_POSTGRES:-postgres://postgres@127.0.0.1:5432}
if [ -z "${AUTOHEAL_BIN:-}" ]; then
  cargo build -q --bin autoheal
  AUTOHEAL_BIN="${CARGO_TARGET_DIR:-target}/debug/autoheal"
fi
if [ -z "${SCHEMATHESIS:-}" ]; then
  venv="${CARGO_TARGET_DIR:-target}/schemathesis-venv"
  if [ ! -x "$venv/bin/schemathesis" ]; then
    python=""
    for candidate in python3.13 python3.12 "$(pyenv root 2>/dev/null)"/versions/3.1[2-9]*/bin/python3; do
      if command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
        python=$candidate
        break
      fi
    done
    [ -n "$python" ] || { echo "schemathesis needs Python 3.12 or later (or set SCHEMATHESIS)" >&2; exit 1; }
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q 'schemathesis>=4.32,<5'
  fi
  SCHEMATHESIS="$venv/bin/schemathesis"
fi
SCHEMATHESIS=$(cd "$(dirname "$SCHEMATHESIS")" && pwd)/$(basename "$SCHEMATHESIS")

out=${FUZZ_OUT:-${CARGO_TARGET_DIR:-target}/schemathesis}
rm -rf "$out"; mkdir -p "$out"; out=$(cd "$out" && pwd)
work=$(mktemp -d)
server_pid=""
pg_db=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ -n "$pg_db" ]; then psql "$postgres/postgres" -q -c "DROP DATABASE IF EXISTS $pg_db" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The JSON field `$2` of the JSON text `$1`.
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# POST $2 (JSON) to path $1 with token $3; prints the answer, fails on a non-2xx.
post() {
  curl -sS --fail-with-body -X POST "$base$1" -H "Authorization: Bearer $3" \
    -H 'Content-Type: application/json' -d "$2"
}

summary=()
failed=0

run_backend() {
  local backend=$1 url
  case "$backend" in
    sqlite) url="sqlite://$work/fuzz.db" ;;
    postgres)
      pg_db="autoheal_fuzz_$$"
      psql "$postgres/postgres" -q -c "CREATE DATABASE $pg_db" >/dev/null
      url="$postgres/$pg_db" ;;
    *) echo "unknown backend $backend" >&2; exit 2 ;;
  esac
  export DATABASE_URL=$url

  local merchant ops sira
  merchant=$("$AUTOHEAL_BIN" merchant create --name "Fuzz Shop" --email fuzz@example.com)
  ops=$("$AUTOHEAL_BIN" ops-agent create --email fuzz-ops@example.com --role admin)
  sira=$("$AUTOHEAL_BIN" sira-token create --name fuzz)
  local merchant_key ops_token sira_token
  merchant_key=$(field "$merchant" api_key)
  ops_token=$(field "$ops" token)
  sira_token=$(field "$sira" token)

  local port
  port=$(free_port)
  base="http://127.0.0.1:$port"
  "$AUTOHEAL_BIN" serve --listen "127.0.0.1:$port" --log-format json >"$out/server-$backend.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    curl -sf "$base/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -sf "$base/readyz" >/dev/null || { echo "server did not start:" >&2; tail -20 "$out/server-$backend.log" >&2; exit 1; }

  # A little real data, so the paths with ids have something to find.
  local install log
  install=$(field "$(post /api/v1/plugins/heartbeat '{"cms": "woocommerce", "plugin_version": "1.3.5", "site_url": "https://fuzz.example", "state": {"config": {"memory_limit": "256M"}, "tables": {"wp_orders": {"id": "bigint(20)"}}}}' "$merchant_key")" installation_id)
  post /api/v1/plugins/event '{"cms": "woocommerce", "site_url": "https://fuzz.example", "event_type": "payment_failed", "message": "card declined"}' "$merchant_key" >/dev/null
  post /api/v1/plugins/versions '{"cms": "woocommerce", "version": "1.4.0", "is_latest": true, "release_notes": "fixes"}' "$ops_token" >/dev/null
  log=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["log"]["id"])' \
    < <(post /api/v1/plugins/autoheal "{\"plugin_id\": \"$install\", \"detected_issue\": \"missing column\", \"issue_severity\": \"low\", \"sira_confidence\": 40}" "$sira_token"))
  post /api/v1/plugins/interop/event "{\"plugin_id\": \"$install\", \"event_type\": \"checkout.created\", \"payload\": {\"order_id\": \"1\"}}" "$merchant_key" >/dev/null
  # The one credential revoke and rotate may act on: schemathesis reuses the ids it reads
  # (GET /api/v1/credentials), and revoking the run's own token would leave it nothing to test.
  "$AUTOHEAL_BIN" merchant create --name "Fuzz Spare" --email spare@example.com >/dev/null
  local spare
  spare=$(curl -sS --fail-with-body "$base/api/v1/credentials?kind=merchant" -H "Authorization: Bearer $ops_token" \
    | python3 -c 'import json,sys; print(next(c["id"] for c in json.load(sys.stdin) if c["owner"] == "Fuzz Spare"))')

  # Path parameters drawn from that data (the rest of each request is fuzzed).
  cat >"$work/schemathesis.toml" <<EOF
[[operations]]
include-path-regex = '^/api/v1/plugins/\{id\}'
parameters = { "path.id" = "$install" }

[[operations]]
include-path-regex = '^/api/v1/plugins/autoheal/commands/\{plugin_id\}$'
parameters = { "path.plugin_id" = "$install" }

[[operations]]
include-path-regex = '^/api/v1/plugins/autoheal/\{id\}'
parameters = { "path.id" = "$log" }

[[operations]]
include-path-regex = '^/api/v1/credentials/\{id\}/'
parameters = { "path.id" = "$spare" }

[[operations]]
include-path-regex = '^/api/platform/flags/\{key\}'
parameters = { "path.key" = "autoheal.auto_apply" }

[[operations]]
include-path-regex = '^/api/platform/health/\{service\}$'
parameters = { "path.service" = "store" }

EOF

  local kind token
  for kind in merchant ops sira; do
    case "$kind" in
      merchant) token=$merchant_key ;;
      ops) token=$ops_token ;;
      sira) token=$sira_token ;;
    esac
    local report="$out/report-$backend-$kind.json" status=0
    # The live log stream never ends by itself (Server-Sent Events): a client reading whole
    # bodies would wait on it forever. Its filters are the query's, fuzzed there.
    (cd "$work" && "$SCHEMATHESIS" run "$base/api/openapi.json" \
      --header "Authorization: Bearer $token" \
      --exclude-path /api/platform/logs/stream \
      --checks "${FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance}" \
      --phases examples,coverage,fuzzing \
      --max-examples "$max_examples" \
      --workers 2 \
      --seed 17 \
      --no-color \
      --report json --report-json-path "$report" \
      >"$out/schemathesis-$backend-$kind.txt" 2>&1) || status=$?
    local figures
    figures=$(python3 - "$report" <<'PY'
import json, sys
try:
    report = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print("? ?")
else:
    cases = report["test_cases"]
    print(cases["generated"], cases["with_failures"] + len(report["errors"]))
PY
)
    summary+=("$backend $kind $figures")
    if [ "$status" -ne 0 ]; then
      failed=1
      echo "--- schemathesis: $backend, $kind credential: FAILED (exit $status)" >&2
      sed -n '/FAILURES\|ERRORS/,$p' "$out/schemathesis-$backend-$kind.txt" | head -150 >&2 || true
    fi
  done

  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
  if grep -q '"level":"ERROR"' "$out/server-$backend.log"; then
    echo "--- the server logged errors on $backend:" >&2
    grep '"level":"ERROR"' "$out/server-$backend.log" | head -20 >&2
    failed=1
  fi
  if [ "$backend" = postgres ]; then
    psql "$postgres/postgres" -q -c "DROP DATABASE $pg_db" >/dev/null; pg_db=""
  fi
}

for backend in $backends; do
  run_backend "$backend"
done

echo "schemathesis against GET /api/openapi.json (backend, credential: requests, failures)"
for line in "${summary[@]}"; do
  read -r backend kind requests failures <<<"$line"
  printf '  %-8s %-8s %6s requests, %s failures\n' "$backend" "$kind" "$requests" "$failures"
done
exit "$failed"
