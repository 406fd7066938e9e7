//! Runs parquet-loader on `$PORT`: configuration → telemetry → backends → app → serve.

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
    let listener = runtime::bind(&config).await?;
    tracing::info!(port = config.port, "parquet-loader listening");
    let state = parquet_loader::AppState::new(config, &backends, warehouse)?;
    runtime::serve(listener, parquet_loader::app(state)).await?;
    Ok(())
}
