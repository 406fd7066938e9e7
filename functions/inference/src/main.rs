//! Runs inference on `$PORT`.

// mimalloc: glibc's malloc was a tenth of the CPU profile of preprocess under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    pulse_shared::runtime::run(inference::FUNCTION, inference::start)
}
