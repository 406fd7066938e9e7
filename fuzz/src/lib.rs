//! The invariants of the fuzz targets, one module per target, each with a `check` that panics
//! when one breaks: `cargo fuzz` runs them on libFuzzer's inputs (`fuzz_targets/`,
//! scripts/fuzz.sh), the workspace's tests on every committed seed (`tests/seeds.rs`).

pub mod envelope;
pub mod normalise;
pub mod parquet_footer;
pub mod push_token;

use std::sync::OnceLock;

/// The runtime the async entry points run on, one per process: libFuzzer calls a target
/// millions of times.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}
