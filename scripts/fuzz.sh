#!/usr/bin/env bash
# Fuzzes what the outside world sends Pulse with cargo fuzz (libFuzzer, AddressSanitizer): envelope
# decoding, the JSON tree and normalisation, the Parquet footer check, push-token parsing (fuzz/,
# docs/fuzzing.md). Not part of CI: its cold build costs too much there; CI runs every target's
# checks on the committed seeds with the workspace's tests (fuzz/tests/seeds.rs).
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 15 s each, every target)
#
# A crash, a panic, a broken invariant, a leak past the RSS limit or one input slower than 10 s
# fails the run; libFuzzer prints the input and saves it in fuzz/libfuzzer/artifacts/<target>/.
#
# Toolchain: cargo-fuzz passes rustc flags that only a nightly compiler takes (`-Zsanitizer=…`).
# The project builds with the stable toolchain, and a machine may have no other nor be able to
# fetch one, so the build runs the stable compiler with RUSTC_BOOTSTRAP=1, which lets it take
# nightly flags (the switch the compiler's own bootstrap uses; it is never set for the project's
# own builds). AddressSanitizer runs as under nightly: the stable rust-std ships its runtime.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-15}
shift || true
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=(envelope normalise parquet_footer push_token)
fi

# cargo-fuzz itself, from crates.io, pinned and cached outside the clone.
version=0.13.2
root=${PULSE_CARGO_FUZZ_ROOT:-$HOME/.cache/pulse-cargo-fuzz}
if ! "$root/bin/cargo-fuzz" --version 2>/dev/null | grep -qF "$version"; then
  cargo install cargo-fuzz --locked --version "$version" --root "$root"
fi
export PATH="$root/bin:$PATH"
export RUSTC_BOOTSTRAP=1
# Instrumented builds are kept apart from the project's (other flags), and reused across runs.
export CARGO_TARGET_DIR=${PULSE_FUZZ_TARGET_DIR:-$HOME/.cache/pulse-fuzz-target}
# The fuzzed code at the versions that ship: the workspace's lock file (cargo adds libFuzzer's).
cp Cargo.lock fuzz/libfuzzer/Cargo.lock
# The corpus grows across runs on one machine; the committed seeds start it.
corpus_root=${PULSE_FUZZ_CORPUS:-$HOME/.cache/pulse-fuzz-corpus}

seeds() {
  case "$1" in
    parquet_footer) echo functions/parquet-loader/tests/fixtures ;;
    *) echo "fuzz/seeds/$1" ;;
  esac
}

max_len() {
  case "$1" in
    parquet_footer) echo 262144 ;;
    push_token) echo 8192 ;;
    *) echo 65536 ;;
  esac
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in "${targets[@]}"; do
  corpus="$corpus_root/$target"
  mkdir -p "$corpus"
  echo "fuzz: $target for ${seconds}s, corpus of $(find "$corpus" -type f | wc -l) inputs"
  if ! cargo fuzz run --fuzz-dir fuzz/libfuzzer "$target" "$corpus" "$PWD/$(seeds "$target")" -- \
    -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 80 "$log" >&2
    echo "fuzz: $target FAILED (above); an input it found is in fuzz/libfuzzer/artifacts/$target/" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  echo "fuzz: $target passed: ${runs:-?} runs, corpus of $(find "$corpus" -type f | wc -l) inputs"
done
