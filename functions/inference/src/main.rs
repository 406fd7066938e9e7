//! Runs inference on `$PORT`: configuration → telemetry → backends → app → serve.

use pulse_shared::backends::Backends;
use pulse_shared::config::Config;
use pulse_shared::{runtime, telemetry};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(&config);
    let backends = Backends::from_config(&config).await?;
    let warehouse = Backends::warehouse(&config).await?;
    backends.log();
    tracing::info!(warehouse = %warehouse.describe(), "warehouse chosen");
    let tokens = inference::default_tokens(&config)?;
    let listener = runtime::bind(&config).await?;
    tracing::info!(port = config.port, "inference listening");
    let state = inference::AppState::new(config, &backends, warehouse, tokens)?;
    runtime::serve(listener, inference::app(state)).await?;
    Ok(())
}
