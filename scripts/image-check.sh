#!/usr/bin/env bash
# Builds a function's image with buildah (scripts/build-image.sh) and checks, running the binary
# from it as the image's user:
#   - the image has no local world: started without K_SERVICE and without Google backends
#     configured, as on a laptop, it stops at once and names what to set;
#   - on its Google backends (PULSE_BACKEND=gcp, emulator endpoints) it answers GET /healthz 200;
#   - the unpacked image is under the 30 MB budget, and it does not run as root.
#
#   scripts/image-check.sh [FUNCTION]      (default preprocess; needs buildah, run as root)
set -euo pipefail
cd "$(dirname "$0")/.."

function=${1:-preprocess}
image=localhost/pulse-$function:check
budget=$((30 * 1024 * 1024))
port=${PULSE_IMAGE_CHECK_PORT:-18089}
bah=(buildah --storage-driver vfs)

PULSE_IMAGE_BUILDER=buildah scripts/build-image.sh "$function" "$image" >/dev/null

work=$(mktemp -d)
container=""
runner=""
# The EXIT trap's status becomes the script's: cleanup must not fail a passing check.
cleanup() {
  if [ -n "$runner" ]; then
    kill "$runner" 2>/dev/null || true
    wait "$runner" 2>/dev/null || true
  fi
  if [ -n "$container" ]; then
    "${bah[@]}" rm "$container" >/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

container=$("${bah[@]}" from --quiet "$image")
# chroot isolation shares the host's network, so the check reaches the port on loopback.
run=("${bah[@]}" run --isolation chroot --env "PORT=$port")

# Without the local world the default (local) backends cannot be built: the binary must exit
# non-zero before it listens, saying to set PULSE_BACKEND=gcp.
refused=0
timeout 60 "${run[@]}" "$container" -- /function >"$work/local.log" 2>&1 || refused=$?
if [ "$refused" = 0 ] || [ "$refused" = 124 ] || ! grep -q 'PULSE_BACKEND=gcp' "$work/local.log"; then
  echo "FAIL: $image started without Google backends configured did not stop with the error" \
    "naming PULSE_BACKEND=gcp (exit status $refused); its output:" >&2
  cat "$work/local.log" >&2
  exit 1
fi

# http:// endpoints are emulators' to the clients, which then use anonymous credentials; they
# connect on first use, so /healthz answers whether or not an emulator listens there.
"${run[@]}" --env PULSE_BACKEND=gcp --env GOOGLE_CLOUD_PROJECT=pulse-image-check \
  --env STORAGE_ENDPOINT=http://127.0.0.1:9023 --env PUBSUB_ENDPOINT=http://127.0.0.1:8085 \
  --env BIGQUERY_ENDPOINT=http://127.0.0.1:9050 "$container" -- /function >"$work/gcp.log" 2>&1 &
runner=$!

status=""
for _ in $(seq 1 100); do
  status=$(curl --silent --output /dev/null --write-out '%{http_code}' "http://127.0.0.1:$port/healthz" || true)
  [ "$status" = 200 ] && break
  kill -0 "$runner" 2>/dev/null || break
  sleep 0.1
done
if [ "$status" != 200 ]; then
  echo "FAIL: $image on Google backends did not answer GET /healthz with 200 (last answer:" \
    "${status:-none}); its output:" >&2
  cat "$work/gcp.log" >&2
  exit 1
fi

user=$("${bah[@]}" inspect --format '{{.OCIv1.Config.User}}' "$image")
size=$("${bah[@]}" images --noheading --format '{{.Size}}' "$image")
mount=$("${bah[@]}" mount "$container")
bytes=$(du -sb "$mount" | cut -f1)
binary=$(stat --format %s "$mount/function")
"${bah[@]}" umount "$container" >/dev/null
echo "OK: $image has no local backends (it refuses to start on them) and answers /healthz (200)" \
  "on Google's as user $user; image size $size ($bytes bytes unpacked, binary $binary bytes," \
  "budget $budget)"
if [ "$bytes" -gt "$budget" ]; then
  echo "FAIL: the image is over the 30 MB budget" >&2
  exit 1
fi
if [ -z "$user" ] || [ "${user%%:*}" = 0 ] || [ "${user%%:*}" = root ]; then
  echo "FAIL: the image runs as root" >&2
  exit 1
fi
