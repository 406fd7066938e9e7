#!/usr/bin/env bash
# Benchmarks preprocess under load, against a bare axum handler in the same run, then its start-up
# time, idle memory and binary size. Figures go to docs/benchmarks.md by hand, with this command.
#
#   scripts/bench-preprocess.sh [DURATION_SECONDS]   (default 30)
#
# Server pinned to core 0 with one tokio worker (TOKIO_WORKER_THREADS=1); wrk on core 1 with
# 32 connections; each request a distinct ~1 KB order event (scripts/bench/push.lua) delivered
# as a binary-mode CloudEvent. Local backends, durable writes (the journal's fdatasync before
# every answer; the files follow, and the server writes the rest when it stops: "drain").
set -euo pipefail

duration=${1:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

cargo build --release --quiet -p preprocess --bin preprocess --example bare_axum
preprocess_bin=$target/release/preprocess
bare_bin=$target/release/examples/bare_axum

# BENCH_DATA_DIR=/dev/shm puts the data dir on tmpfs, to separate disk cost from CPU cost.
work=$(mktemp -d -p "${BENCH_DATA_DIR:-${TMPDIR:-/tmp}}")
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

wait_for_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2
  return 1
}

# load NAME BINARY PORT: runs wrk against the server, prints "NAME req/s p99 non2xx total".
load() {
  local name=$1 binary=$2 port=$3
  PORT=$port PULSE_DATA_DIR="$work/$name" RUST_LOG=warn TOKIO_WORKER_THREADS=1 \
    taskset -c 0 "$binary" >"$work/$name.log" 2>&1 &
  server=$!
  wait_for_port "$port"
  taskset -c 1 wrk -t1 -c32 -d"${duration}s" --latency -s "$root/scripts/bench/push.lua" \
    "http://127.0.0.1:$port/" >"$work/$name.wrk"
  local stopping=$SECONDS
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
  echo "$((SECONDS - stopping))" >"$work/$name.drain"
  local rps p99 non2xx total
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/$name.wrk")
  p99=$(awk '$1 == "99%" {print $2}' "$work/$name.wrk")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$work/$name.wrk")
  total=$(awk '/requests in/ {print $1}' "$work/$name.wrk")
  echo "$name $rps $p99 ${non2xx:-0} $total"
}

bare=$(load bare "$bare_bin" 18091)
pre=$(load preprocess "$preprocess_bin" 18092)
archived=$(find "$work/preprocess/gcs/pulse-raw/raw" -name '*.json' | wc -l)

read -r _ bare_rps bare_p99 _ _ <<<"$bare"
read -r _ rps p99 non2xx total <<<"$pre"
echo "date:        $(date -u +%F)  machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "bare axum:   ${bare_rps} req/s, p99 ${bare_p99}"
echo "preprocess:  ${rps} req/s, p99 ${p99}, non-2xx ${non2xx}, requests ${total}, raw objects ${archived} (files written on stopping: $(cat "$work/preprocess.drain") s)"
awk -v a="$rps" -v b="$bare_rps" 'BEGIN { printf "ratio:       %.2f of bare axum\n", a / b }'
[ "$archived" -ge "$((total - non2xx))" ] || echo "WARNING: $archived raw objects for $((total - non2xx)) acknowledged requests" >&2
echo "startup:     $(python3 "$root/scripts/bench/startup.py" "$preprocess_bin" 10)"
