//! Every committed seed through its fuzz target's checks, as libFuzzer replays its corpus: the
//! regression run of the fuzz targets in the workspace's tests (and so in CI, where the
//! instrumented build costs too much; docs/fuzzing.md). Inputs fuzzing found are added as seeds.

use std::path::{Path, PathBuf};

/// The files of `dir` (relative to this crate), in name order.
fn inputs(dir: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, bytes)
        })
        .collect()
}

/// Runs `check` on every input of `dir`, and returns the names of those it accepted.
fn accepted(dir: &str, check: fn(&[u8]) -> bool) -> Vec<String> {
    let mut accepted = Vec::new();
    for (path, input) in inputs(dir) {
        let name = path.file_name().expect("a file name").to_string_lossy();
        eprintln!("{dir}/{name}");
        if check(&input) {
            accepted.push(name.into_owned());
        }
    }
    accepted
}

#[test]
fn envelope_seeds() {
    let accepted = accepted("seeds/envelope", pulse_fuzz::envelope::check);
    assert!(accepted.len() >= 5, "{accepted:?}");
}

#[test]
fn normalise_seeds() {
    let accepted = accepted("seeds/normalise", pulse_fuzz::normalise::check);
    assert!(!accepted.is_empty(), "{accepted:?}");
}

#[test]
fn parquet_footer_seeds() {
    let accepted = accepted(
        "../functions/parquet-loader/tests/fixtures",
        pulse_fuzz::parquet_footer::check,
    );
    assert!(
        accepted.contains(&"alltypes_plain.parquet".to_owned()),
        "{accepted:?}"
    );
}

#[test]
fn push_token_seeds() {
    let accepted = accepted("seeds/push_token", pulse_fuzz::push_token::check);
    // The signed seed needs Google's keys, which are never fetched.
    assert_eq!(accepted, ["signature-removed"]);
}
