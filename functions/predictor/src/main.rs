//! Runs the predictor on `$AIP_HTTP_PORT` (Vertex AI) or `$PORT` (Cloud Run, the local stack).

use std::path::PathBuf;

use predictor::{Models, Routes};
use pulse_shared::config::Config;
use pulse_shared::{runtime, telemetry};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = Config::from_env()?;
    if let Some(port) = std::env::var("AIP_HTTP_PORT")
        .ok()
        .filter(|p| !p.is_empty())
    {
        config.port = port
            .parse()
            .map_err(|e| anyhow::anyhow!("AIP_HTTP_PORT={port:?} is not a port: {e}"))?;
    }
    telemetry::init(&config);
    let models = match std::env::var_os("PULSE_MODEL_DIR") {
        Some(dir) => Models::from_dir(&PathBuf::from(dir))?,
        None => Models::builtin(),
    };
    let routes = Routes::from_env();
    let listener = runtime::bind(&config).await?;
    tracing::info!(port = config.port, predict = %routes.predict, health = %routes.health, "predictor listening");
    let app = runtime::with_runtime_layers(
        predictor::app(models, &routes),
        &config,
        predictor::FUNCTION,
    );
    runtime::serve(listener, app).await?;
    Ok(())
}
