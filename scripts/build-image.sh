#!/usr/bin/env bash
# Builds the container image of one function: a static release binary (x86_64 glibc with
# +crt-static; without the local world, `--no-default-features`) on an empty base, from the
# repository's Dockerfile. Uses docker when it is there, else buildah (rootless-friendly: vfs, chroot).
#
#   scripts/build-image.sh FUNCTION [IMAGE]     e.g. scripts/build-image.sh preprocess
#
# IMAGE defaults to localhost/pulse-FUNCTION:dev. PULSE_IMAGE_BUILDER=docker|buildah forces one.
# Prints the image name on the last line of its output.
set -euo pipefail
cd "$(dirname "$0")/.."

function=${1:?usage: scripts/build-image.sh FUNCTION [IMAGE]}
image=${2:-localhost/pulse-$function:dev}
target=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

if [ ! -f "functions/$function/Cargo.toml" ]; then
  echo "no function named '$function' (functions/$function/Cargo.toml is missing)" >&2
  exit 2
fi

builder=${PULSE_IMAGE_BUILDER:-}
if [ -z "$builder" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then builder=docker
  elif command -v buildah >/dev/null 2>&1; then builder=buildah
  else
    echo "neither docker nor buildah is available (apt-get install -y buildah)" >&2
    exit 1
  fi
fi

# --target keeps RUSTFLAGS off build scripts and proc-macros, which must stay dynamic. Without
# default features the function leaves out its `local` feature: no local backends, no DuckDB.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --no-default-features --target "$target" -p "$function" \
  --bin "$function"
binary=$CARGO_TARGET_DIR/$target/release/$function

if readelf --program-headers "$binary" | grep -q INTERP; then
  echo "$binary is dynamically linked; it would not start on an empty base image" >&2
  exit 1
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
install -m 0555 "$binary" "$context/function"
install -m 0444 /etc/ssl/certs/ca-certificates.crt "$context/ca-certificates.crt"

case "$builder" in
  docker) docker build --quiet --build-arg "FUNCTION=$function" -f Dockerfile -t "$image" "$context" >/dev/null ;;
  buildah) buildah --storage-driver vfs bud --quiet --isolation chroot --layers=false \
             --build-arg "FUNCTION=$function" -f Dockerfile -t "$image" "$context" >/dev/null ;;
  *) echo "PULSE_IMAGE_BUILDER must be docker or buildah, not '$builder'" >&2; exit 2 ;;
esac
echo "$image"
