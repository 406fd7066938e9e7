#!/usr/bin/env bash
# Freshness at a steady rate: `pulse generate` publishes generated events (every known type,
# the default mix) at RATE per second for DURATION through the whole local stack, waits until
# every delivery is answered, and prints freshness from the stack's own /metrics: event
# `timestamp` → row committed and processed-topic publish → row committed, p50 and p99 of the
# worst table, over about the last minute. Figures go to docs/benchmarks.md by hand, with this
# command.
#
#   scripts/bench-freshness.sh [RATE] [DURATION]        (default 1000 60s)
#   BENCH_PROFILE=dev scripts/bench-freshness.sh         (the debug build: no 25-minute DuckDB
#                                                         release build, slower figures)
set -euo pipefail

rate=${1:-1000}
duration=${2:-60s}
profile=${BENCH_PROFILE:-release}
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
case $profile in
  dev) bin=$target/debug/pulse ;;
  *) bin=$target/$profile/pulse ;;
esac

cargo build --quiet --locked --profile "$profile" -p pulse
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "pulse generate --rate ${rate}/s --duration $duration ($profile build, $(nproc) cores)" >&2
PULSE_DATA_DIR=$work RUST_LOG=warn "$bin" generate --any-ports --rate "${rate}/s" \
  --duration "$duration" --json
