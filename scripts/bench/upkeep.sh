#!/usr/bin/env bash
# The upkeep benchmarks of docs/benchmarks.md, on the local warehouse (DuckDB):
#   - reconcile N archived events (default 1,000,000, spread over one day) against a table that
#     holds each once, through table-manager's POST /reconcile: seconds and peak RSS;
#   - compact a table of N rows of which 10 % repeat another row's event id: seconds.
# PROFILE picks the cargo profile (default dev: a release build compiles DuckDB for about
# 25 minutes on 2 cores; the dev build's DuckDB is unoptimised, so its figures are upper bounds).
# The data (about 4 GB of small archive files for a million events) goes to a temporary
# directory under $TMPDIR, removed at the end; the figures in docs/benchmarks.md used
# TMPDIR=/dev/shm, to keep 4 GB of files off the shared disk.
set -euo pipefail
cd "$(dirname "$0")/../.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pulse-target}
profile=${PROFILE:-dev}
n=${1:-1000000}
case "$profile" in dev) out=debug ;; *) out=$profile ;; esac

cargo build --profile "$profile" -p table-manager --example upkeep --locked
bin=$CARGO_TARGET_DIR/$out/examples/upkeep
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "prepare: $("$bin" prepare "$work/reconcile" "$n")"
echo "reconcile: $(/usr/bin/time -f '{"wall_secs": %e, "max_rss_kb": %M}' -o "$work/time.json" "$bin" reconcile "$work/reconcile") $(cat "$work/time.json")"
echo "compact: $("$bin" compact "$work/compact" "$n" 10)"
