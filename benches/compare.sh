#!/usr/bin/env bash
# Before and after: the heartbeat, healing-loop and flag benchmarks against two builds of the
# server, interleaved round by round on one machine in one run, so the machine's noise falls
# on both alike. BASELINE_BIN is another build's `autoheal` (say, an earlier commit built in a
# git worktree); the other side is this checkout's release build. Same load generators for
# both. Every line is prefixed with its round and side.
#   bash benches/compare.sh BASELINE_BIN [ROUNDS=2] [SECONDS=10]
set -euo pipefail
baseline=$(readlink -f "$1")
rounds=${2:-2}
seconds=${3:-10}
cd "$(dirname "$0")/.."
for round in $(seq 1 "$rounds"); do
  for side in baseline current; do
    server=""
    [ "$side" = baseline ] && server=$baseline
    for bench in heartbeat healing flags; do
      AUTOHEAL_BENCH_BIN=$server bash "benches/$bench.sh" "$seconds" \
        | sed "s/^/round=$round side=$side bench=$bench /"
    done
  done
done
