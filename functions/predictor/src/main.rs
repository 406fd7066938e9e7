//! Runs the predictor on `$AIP_HTTP_PORT` (Vertex AI) or `$PORT` (Cloud Run, the local stack).

// mimalloc: glibc's malloc was a tenth of the CPU profile of preprocess under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    pulse_shared::runtime::run(predictor::FUNCTION, predictor::start)
}
