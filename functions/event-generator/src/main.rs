//! Runs event-generator on `$PORT`: configuration → telemetry → backends → app → serve.

use pulse_shared::backends::Backends;
use pulse_shared::config::{BackendKind, Config};
use pulse_shared::{runtime, telemetry};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(&config);
    let backends = Backends::from_config(&config).await?;
    backends.log();
    if config.backend == BackendKind::Local {
        tracing::warn!(
            "a lone event-generator on the local bus publishes to nobody; run it inside the \
             local stack (`pulse up`) or point it at the Pub/Sub emulator \
             (PULSE_BACKEND=gcp PUBSUB_ENDPOINT=http://127.0.0.1:8085)"
        );
    }
    let listener = runtime::bind(&config).await?;
    tracing::info!(
        port = config.port,
        "{} listening",
        event_generator::FUNCTION
    );
    let state = event_generator::AppState::new(config, backends.publisher);
    runtime::serve(listener, event_generator::app(state)).await?;
    Ok(())
}
