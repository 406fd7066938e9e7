#!/usr/bin/env python3
"""Checks the workspace's `rust-version` against the locked dependencies.

The true minimum toolchain is the highest `rust-version` any locked crates.io dependency declares
(the workspace's own code needs nothing newer: edition 2024 and let chains are older). This reads
each locked package's Cargo.toml from cargo's registry sources, so it runs after a build (crates
only other platforms use are not downloaded, and not counted), and fails when the workspace claims
less than its dependencies need or more than they do.
"""
import glob
import json
import os
import re
import subprocess
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
lock = open(os.path.join(root, "Cargo.lock"), encoding="utf-8").read()
claimed = re.search(r'^rust-version\s*=\s*"([^"]+)"', open(os.path.join(root, "Cargo.toml"), encoding="utf-8").read(), re.M)
cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))


def version(text):
    """`1.91` and `1.91.0` are the same version."""
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


needed, needed_by, unfetched = (0, 0, 0), [], 0
# Only what this machine's builds use: the resolve for the host platform (crates for other
# platforms, or behind cfg(loom), may sit in the registry after a `cargo tree --target all`).
host = re.search(r"^host: (\S+)$", subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout, re.M).group(1)
metadata = json.loads(subprocess.run(
    ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", host],
    cwd=root, capture_output=True, text=True, check=True).stdout)
in_build = {(p["name"], p["version"]) for p in metadata["packages"] if (p.get("source") or "").startswith("registry")}
for name, ver in re.findall(r'\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"\nsource = "registry', lock):
    if (name, ver) not in in_build:
        continue
    manifests = glob.glob(os.path.join(cargo_home, "registry", "src", "*", f"{name}-{ver}", "Cargo.toml"))
    if not manifests:
        unfetched += 1
        continue
    found = re.search(r'^rust-version\s*=\s*"([^"]+)"', open(manifests[0], encoding="utf-8").read(), re.M)
    if not found:
        continue
    if version(found.group(1)) > needed:
        needed, needed_by = version(found.group(1)), [f"{name} {ver}"]
    elif version(found.group(1)) == needed:
        needed_by.append(f"{name} {ver}")

need = ".".join(map(str, needed[:2] if needed[2] == 0 else needed))
if not claimed or version(claimed.group(1)) != needed:
    sys.exit(f"rust-version: Cargo.toml says {claimed.group(1) if claimed else 'nothing'}, the locked "
             f"dependencies need {need} ({', '.join(needed_by[:3])}…): set rust-version = \"{need}\"")
print(f"rust-version {need}: the highest any locked dependency declares ({', '.join(needed_by[:3])}, …; "
      f"{unfetched} crates for other platforms not downloaded, not counted)")
