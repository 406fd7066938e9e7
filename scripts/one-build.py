#!/usr/bin/env python3
"""Checks that the README's two commands share one build: every dependency that
`cargo run -p pulse` compiles is compiled the same way (features, profile) by
`cargo test --workspace`, so the second command compiles only the project's own crates and
their tests. A feature that only tests turn on (tokio's `test-util`, say) would otherwise
rebuild that crate and everything above it.

Reads cargo's unit graph (`--unit-graph`, an unstable flag that the stable cargo takes under
RUSTC_BOOTSTRAP=1; nothing is built). Exits 1 and names the differing units when they differ.
"""
import json
import os
import subprocess
import sys


def dependency_units(*args):
    env = dict(os.environ, RUSTC_BOOTSTRAP="1")
    graph = json.loads(
        subprocess.run(
            ["cargo", *args, "--locked", "--unit-graph", "-Z", "unstable-options"],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
    )
    units = set()
    for unit in graph["units"]:
        if unit["pkg_id"].startswith("path+file"):
            continue  # the workspace's own crates: the tests build them again, as they must
        profile = unit["profile"]
        units.add(
            (
                unit["pkg_id"].rsplit("#", 1)[-1],
                unit["target"]["name"],
                unit["mode"],
                ",".join(sorted(unit["features"])),
                profile["opt_level"],
                str(profile["debuginfo"]),
            )
        )
    return units


def main():
    demo = dependency_units("build", "-p", "pulse", "--bins")
    tests = dependency_units("test", "--workspace", "--no-run")
    rebuilt = sorted(demo - tests)
    if rebuilt:
        print(
            "cargo test --workspace would compile again these dependencies that "
            "cargo run -p pulse compiled (package, target, mode, features, opt, debug):",
            file=sys.stderr,
        )
        for unit in rebuilt:
            print(f"  {unit}", file=sys.stderr)
        print(
            "Turn the differing features on for every build in the workspace Cargo.toml.",
            file=sys.stderr,
        )
        sys.exit(1)
    print(f"one build: the {len(demo)} dependency units of `cargo run -p pulse` are all reused by the tests")


if __name__ == "__main__":
    main()
