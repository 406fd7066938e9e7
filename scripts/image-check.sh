#!/usr/bin/env bash
# Builds a function's image with buildah (scripts/build-image.sh), starts the binary from it as
# the image's user, checks that GET /healthz answers 200, and reports the image size against the
# 30 MB budget. Runs without K_SERVICE, so the function starts on its local backends.
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
chmod 0777 "$work"
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
"${bah[@]}" run --isolation chroot \
  --env "PORT=$port" --env PULSE_DATA_DIR=/data --volume "$work:/data" \
  "$container" -- /function >"$work/log" 2>&1 &
runner=$!

status=""
for _ in $(seq 1 100); do
  status=$(curl --silent --output /dev/null --write-out '%{http_code}' "http://127.0.0.1:$port/healthz" || true)
  [ "$status" = 200 ] && break
  kill -0 "$runner" 2>/dev/null || break
  sleep 0.1
done
if [ "$status" != 200 ]; then
  echo "FAIL: $image did not answer GET /healthz with 200 (last answer: ${status:-none}); its output:" >&2
  cat "$work/log" >&2
  exit 1
fi

user=$("${bah[@]}" inspect --format '{{.OCIv1.Config.User}}' "$image")
size=$("${bah[@]}" images --noheading --format '{{.Size}}' "$image")
mount=$("${bah[@]}" mount "$container")
bytes=$(du -sb "$mount" | cut -f1)
"${bah[@]}" umount "$container" >/dev/null
echo "OK: $image answers /healthz (200) as user $user; image size $size ($bytes bytes unpacked, budget $budget)"
if [ "$bytes" -gt "$budget" ]; then
  echo "FAIL: the image is over the 30 MB budget" >&2
  exit 1
fi
if [ -z "$user" ] || [ "${user%%:*}" = 0 ] || [ "${user%%:*}" = root ]; then
  echo "FAIL: the image runs as root" >&2
  exit 1
fi
