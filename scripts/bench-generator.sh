#!/usr/bin/env bash
# Benchmarks the event generator's rate control: a custom run against the local bus with no
# subscriber (only generation and pacing are measured), printing target vs achieved rate, the
# spread of one-second windows and the generator's CPU. Figures go to docs/benchmarks.md by
# hand, with this command.
#
#   scripts/bench-generator.sh [RATE] [DURATION]   (default 5000/s 60s)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet -p event-generator --example pace
RUST_LOG=warn "$CARGO_TARGET_DIR/release/examples/pace" "${1:-5000/s}" "${2:-60s}"
