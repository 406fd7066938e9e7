#!/usr/bin/env bash
# Publish throughput of the local bus, in memory (as before issue 17) and with its log, synced
# and not: COUNT messages of SIZE bytes, CONCURRENCY publishes at a time, one subscriber that
# answers 204 at once (shared/examples/bus_publish.rs). The log lives on the disk under test
# (BENCH_DIR, default the clone). Figures go to docs/benchmarks.md by hand, with this command.
#
#   scripts/bench-bus.sh [COUNT] [CONCURRENCY] [SIZE]   (default 100000 256 1000)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet -p pulse-shared --example bus_publish
for mode in memory log log-nosync; do
  RUST_LOG=warn "$CARGO_TARGET_DIR/release/examples/bus_publish" "$mode" "${1:-100000}" "${2:-256}" "${3:-1000}"
done
