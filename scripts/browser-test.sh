#!/usr/bin/env bash
# The local dashboard in a real browser: runs `pulse demo --json` on a fresh data dir, starts
# `pulse up` on it, and runs tests/browser/ (node's test runner, Playwright driving Debian's
# headless chromium) against the dashboard. Installs chromium (apt, as root) and playwright-core
# (npm, from package-lock.json) when they are missing.
#
#   bash scripts/browser-test.sh                               # as scripts/test.sh runs it
#   PULSE_SCREENSHOT=docs/dashboard.png bash scripts/browser-test.sh   # also keep a screenshot
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pulse-target}

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "chromium is missing: run 'apt-get install -y chromium' as root" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# node_modules is made from the committed lock file every time (one small package).
npm ci --prefer-offline --no-audit --no-fund --loglevel=error

# PULSE_BIN: a pulse binary built already (several checkouts sharing one build directory
# overwrite each other's target/debug/pulse).
pulse=${PULSE_BIN:-}
if [ -z "$pulse" ]; then
  cargo build -p pulse --locked --quiet
  pulse=$CARGO_TARGET_DIR/debug/pulse
fi

work=$(mktemp -d)
up_pid=
cleanup() {
  if [ -n "$up_pid" ]; then
    kill -INT "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

export PULSE_DATA_DIR=$work/data
"$pulse" demo --json --any-ports >"$work/demo.json" 2>"$work/demo.log" || {
  cat "$work/demo.log" "$work/demo.json" >&2
  exit 1
}
"$pulse" up --any-ports >"$work/up.txt" 2>"$work/up.log" &
up_pid=$!
url=
for _ in $(seq 1 600); do
  url=$(sed -n 's/^  dashboard *\(http[^ ]*\).*/\1/p' "$work/up.txt")
  [ -n "$url" ] && break
  if ! kill -0 "$up_pid" 2>/dev/null; then
    cat "$work/up.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$url" ]; then
  echo "pulse up printed no dashboard address" >&2
  cat "$work/up.log" >&2
  exit 1
fi

PULSE_DASHBOARD_URL=$url PULSE_DEMO_REPORT=$work/demo.json \
  PULSE_SCREENSHOT=${PULSE_SCREENSHOT:+$(realpath -m "$PULSE_SCREENSHOT")} \
  node --test tests/browser/
