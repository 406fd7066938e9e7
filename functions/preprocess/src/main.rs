//! Runs preprocess on `$PORT`: configuration → telemetry → backends → app → serve.

use pulse_shared::backends::Backends;
use pulse_shared::config::Config;
use pulse_shared::{runtime, telemetry};

// mimalloc: glibc's malloc was a tenth of the CPU profile under load (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(&config);
    let backends = Backends::from_config(&config).await?;
    backends.log();
    let listener = runtime::bind(&config).await?;
    tracing::info!(port = config.port, "preprocess listening");
    runtime::serve(
        listener,
        preprocess::app(preprocess::AppState::new(config, backends)),
    )
    .await?;
    Ok(())
}
