#!/usr/bin/env bash
# Starts the emulators the integration tests use, on fixed loopback ports, with the buckets and
# topics of the local conventions, prints how to point Pulse at them, and stops them on Ctrl-C.
#
#   scripts/emulators.sh
#
#   Pub/Sub:        Google's emulator (comes with the Google Cloud CLI), port $PUBSUB_PORT (8085),
#                   topics events-raw and events-processed in project $PULSE_EMULATOR_PROJECT
#   Cloud Storage:  gcp-storage-emulator (PyPI) from the venv scripts/test.sh uses, port
#                   $STORAGE_PORT (9023), buckets pulse-raw and pulse-landing, in memory
#
# The tests start their own emulators on free ports; this is for trying things by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

pubsub_port=${PUBSUB_PORT:-8085}
storage_port=${STORAGE_PORT:-9023}
project=${PULSE_EMULATOR_PROJECT:-local}
venv=${PULSE_VENV:-$HOME/.cache/pulse-venv}
pubsub_bin=${PULSE_PUBSUB_EMULATOR_BIN:-/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator}

if [ ! -x "$venv/bin/gcp-storage-emulator" ]; then
  echo "installing gcp-storage-emulator into $venv (as scripts/test.sh does)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/emulators-requirements.txt
fi

pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 0' INT TERM

# Waits until $2 answers HTTP, or gives up naming $1.
wait_http() {
  for _ in $(seq 1 300); do
    curl --silent --output /dev/null "$2" && return 0
    sleep 0.1
  done
  echo "$1 did not start on $2" >&2
  exit 1
}

"$venv/bin/gcp-storage-emulator" start --host=127.0.0.1 --port="$storage_port" \
  --default-bucket=pulse-raw --in-memory --quiet &
pids+=($!)
wait_http "gcp-storage-emulator" "http://127.0.0.1:$storage_port/storage/v1/b"
curl --silent --fail --output /dev/null -X POST -H 'Content-Type: application/json' \
  --data '{"name":"pulse-landing"}' "http://127.0.0.1:$storage_port/storage/v1/b?project=$project"
echo "Cloud Storage emulator: http://127.0.0.1:$storage_port (buckets pulse-raw, pulse-landing)"
exports=("STORAGE_ENDPOINT=http://127.0.0.1:$storage_port")

if [ -x "$pubsub_bin" ]; then
  "$pubsub_bin" --host=127.0.0.1 --port="$pubsub_port" >/dev/null 2>&1 &
  pids+=($!)
  wait_http "Pub/Sub emulator" "http://127.0.0.1:$pubsub_port/v1/projects/$project/topics"
  for topic in events-raw events-processed; do
    curl --silent --output /dev/null -X PUT "http://127.0.0.1:$pubsub_port/v1/projects/$project/topics/$topic"
  done
  echo "Pub/Sub emulator:       http://127.0.0.1:$pubsub_port (project $project; topics events-raw, events-processed)"
  exports+=("PUBSUB_ENDPOINT=http://127.0.0.1:$pubsub_port" "PUBSUB_EMULATOR_HOST=127.0.0.1:$pubsub_port")
else
  echo "Pub/Sub emulator:       SKIPPED ($pubsub_bin not found; it comes with the Google Cloud CLI)"
fi

echo
echo "Point a function at them (GCP backends, emulator endpoints):"
echo "  export PULSE_BACKEND=gcp GOOGLE_CLOUD_PROJECT=$project ${exports[*]}"
echo "Ctrl-C stops the emulators."
wait
