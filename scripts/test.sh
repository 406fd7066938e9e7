#!/usr/bin/env bash
# Runs every test: installs what the integration tests need (into caches outside the clone),
# then the whole workspace with cargo-nextest (cargo test when nextest is absent).
#
# Real servers the tests start themselves on loopback ports:
#   - Google's Pub/Sub emulator (comes with the Google Cloud CLI; the test says SKIPPED without it)
#   - gcp-storage-emulator and bqemulator from PyPI (installed here into $PULSE_VENV)
set -euo pipefail
cd "$(dirname "$0")/.."

# The build directory is cargo's default (./target) unless CARGO_TARGET_DIR says otherwise, so
# this reuses what `cargo run -p pulse -- demo` built, DuckDB included.
venv=${PULSE_VENV:-$HOME/.cache/pulse-venv}

# Reinstall when the pinned versions change (the copy of the requirements marks what is there).
if ! cmp -s scripts/emulators-requirements.txt "$venv/installed-requirements.txt"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/emulators-requirements.txt
  cp scripts/emulators-requirements.txt "$venv/installed-requirements.txt"
fi
export PULSE_GCS_EMULATOR_BIN=$venv/bin/gcp-storage-emulator
export PULSE_BQ_EMULATOR_PYTHON=$venv/bin/python

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi

# The local dashboard in a real browser (installs chromium and playwright-core when missing).
bash scripts/browser-test.sh
