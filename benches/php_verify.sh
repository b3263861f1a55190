#!/usr/bin/env bash
# Verification of one signed command (issue 18): the PHP SDK (php benches/php/verify.php)
# beside the Rust reference verifier and the server's signing (criterion), in one run, on the
# conformance kit's accepted apply.
#   bash benches/php_verify.sh [RUNS=2000]
set -euo pipefail
cd "$(dirname "$0")/.."
php benches/php/verify.php "${1:-2000}"
cargo bench -q -p benches --bench command_signing -- --warm-up-time 1 --measurement-time 3 2>&1 \
  | grep -E '^(server|peer|plugin)|time:'
