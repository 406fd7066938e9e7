#!/usr/bin/env bash
# Frees disk in a shared build directory before a build when the disk is nearly full: a full disk
# makes the linker die with a bus error halfway through the test build.
# Removes only what cargo relinks or regenerates quickly (incremental caches, examples, test and
# binary executables); compiled dependencies (.rlib, .rmeta, .so — DuckDB among them) stay.
set -euo pipefail

target=${1:?usage: prune-target.sh TARGET_DIR [MIN_FREE_GB]}
min_free_gb=${2:-25}

[ -d "$target" ] || exit 0
free_gb=$(df --output=avail -BG "$target" | tail -1 | tr -dc '0-9')
if [ "$free_gb" -ge "$min_free_gb" ]; then
  exit 0
fi

echo "prune-target: ${free_gb} GB free (< ${min_free_gb} GB); removing incremental caches and executables under $target" >&2
for profile in "$target"/*/; do
  rm -rf "${profile}incremental" "${profile}examples"
  if [ -d "${profile}deps" ]; then
    find "${profile}deps" -maxdepth 1 -type f -perm -u+x \
      ! -name '*.so' ! -name '*.rlib' ! -name '*.rmeta' ! -name '*.d' -delete
  fi
done
echo "prune-target: $(df --output=avail -BG "$target" | tail -1 | tr -dc '0-9') GB free now" >&2
