#!/usr/bin/env bash
# The cloud-mode run: does what `terraform apply` deploys work? It stands the deployment up
# on loopback from the Terraform plan itself (tf-check's offline plan, with
# scripts/cloud_parity/parity.tfvars), on Google's Pub/Sub emulator, gcp-storage-emulator and
# bqemulator, each function the binary its image ships (no `duckdb` feature) with exactly the
# plan's environment behind a Cloud Run front door (ID tokens, run.invoker, reserved paths,
# signature removed), pushes signed as the plan's push identity, Eventarc finalize events as
# the plan's trigger filters them. Then it runs the `pulse demo` scenario through it and
# compares every count with `pulse demo` run locally with the same seed, and checks the
# refusals (no token 401, non-invoker 403, stripped token off Cloud Run 401).
#
#   scripts/cloud-parity.sh          exit 0 when every count and refusal matches, 1 otherwise
#
# Compared with the local run's stored counts (what `pulse demo --json` counted in its
# warehouse and buckets), not with the generator's plan: the plan says nothing about
# predictions or the Parquet load, and the local run is what the cloud must equal.
# What the run cannot show is printed with its result (scripts/cloud_parity/__main__.py).
# Without Google's Pub/Sub emulator (it comes with the machine image) it says SKIPPED.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

# cargo's build directory: ./target unless CARGO_TARGET_DIR says otherwise (.ci/run sets it).
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
emulator_venv=${PULSE_VENV:-$HOME/.cache/pulse-venv}
harness_venv=${PULSE_PARITY_VENV:-$HOME/.cache/pulse-parity-venv}
pubsub_bin=${PULSE_PUBSUB_EMULATOR_BIN:-/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator}
seed=${PULSE_PARITY_SEED:-1616}
settle_timeout=${PULSE_PARITY_SETTLE_SECS:-120}

if [ ! -x "$pubsub_bin" ]; then
  echo "cloud-parity: SKIPPED: Google's Pub/Sub emulator is not at $pubsub_bin (it comes with the"
  echo "Google Cloud CLI on the machine image); nothing was checked."
  exit 0
fi

# Installs pinned requirements into a venv, again only when they change (as scripts/test.sh does).
venv_with() {
  local venv=$1 requirements=$2
  if ! cmp -s "$requirements" "$venv/installed-requirements.txt"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/installed-requirements.txt"
  fi
}
venv_with "$emulator_venv" scripts/emulators-requirements.txt
venv_with "$harness_venv" scripts/cloud_parity/requirements.txt

work=$(mktemp -d "${TMPDIR:-/tmp}/pulse-cloud-parity.XXXXXX")
echo "cloud-parity: working in $work (kept on failure)"

# The binaries the images ship: built as scripts/build-image.sh builds them, without the local
# world (`--no-default-features`: no local store, bus or DuckDB). They are linked out at once:
# another build in the same directory (any default build turns the local world on) may replace
# target/debug/FUNCTION at any time; a hard link
# keeps this build's file and costs no space (a copy where the run's directory is elsewhere).
functions=(preprocess table-manager parquet-loader inference event-generator predictor)
cargo build --locked --no-default-features --bins "${functions[@]/#/--package=}"
mkdir -p "$work/bin"
for function in "${functions[@]}"; do
  ln "$target_dir/debug/$function" "$work/bin/" 2>/dev/null || cp "$target_dir/debug/$function" "$work/bin/"
  if grep -a -q -F duckdb_open_ext "$work/bin/$function"; then
    echo "cloud-parity: $target_dir/debug/$function has DuckDB in it: another build replaced it; run again" >&2
    exit 1
  fi
done

# The local run the cloud must equal: `pulse demo`, same seed, its own data dir and free ports.
PULSE_DATA_DIR=$work/local cargo run --locked --quiet -p pulse -- demo --json --seed "$seed" --any-ports \
  >"$work/local-demo.json" 2>"$work/local-demo.log" ||
  { tail -n 40 "$work/local-demo.log"; echo "cloud-parity: the local \`pulse demo\` failed" >&2; exit 1; }

status=0
PYTHONPATH=scripts "$harness_venv/bin/python" -m cloud_parity \
  --repo "$PWD" \
  --tf-check ../shared/tools/terraform-offline/tf-check \
  --tfvars scripts/cloud_parity/parity.tfvars \
  --work "$work" \
  --bin-dir "$work/bin" \
  --local-report "$work/local-demo.json" \
  --fixture cli/fixtures/alltypes_plain.parquet \
  --pubsub-emulator "$pubsub_bin" \
  --storage-emulator "$emulator_venv/bin/gcp-storage-emulator" \
  --emulator-python "$emulator_venv/bin/python" \
  --settle-timeout "$settle_timeout" || status=$?

echo "cloud-parity: $((SECONDS - started)) s in all (builds included)"
[ "$status" -ne 0 ] || rm -rf "$work"
exit "$status"
