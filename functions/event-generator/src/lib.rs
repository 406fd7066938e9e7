//! event-generator: publishes realistic events (orders, inventory, user activity, device
//! telemetry, and what breaks pipelines: duplicates, malformed events, schema drift, anomalies)
//! to a topic at a controlled rate, by named scenario or custom run, as background jobs.
//!
//! The pieces, for callers other than the HTTP service (`pulse generate`, the demo):
//! [`Scenario::by_name`] gives a recipe, [`Generator::plan`] its messages (an iterator with
//! each message's send offset and [`Intent`]), and [`pacer::publish`] sends them at their pace.

mod api;
mod catalogue;
mod error;
mod events;
pub mod jobs;
mod malformed;
pub mod pacer;
mod plan;
pub mod request;
pub mod scenario;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use pulse_shared::backends::Backends;
use pulse_shared::config::{BackendKind, Config};
use pulse_shared::publish::Publisher;
use pulse_shared::runtime::described_app;

pub use api::{ApiDoc, JobView, ScenarioView, openapi};
pub use error::ApiError;
pub use events::{DRIFT_EVENT_TYPE, EventKind};
pub use jobs::{MAX_RUNNING, TooManyRuns};
pub use malformed::PUBLISHABLE_REASONS;
pub use plan::{DEFAULT_MAX_EVENT_BYTES, Generator, Intent, Plan, PlannedMessage};
pub use request::{RunRequest, RunSpec};
pub use scenario::{MAX_AT_ONCE, MAX_RATE, Scenario};

/// The function's name in logs.
pub const FUNCTION: &str = "event-generator";

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Settings>,
}

struct Settings {
    config: Config,
    publisher: Arc<dyn Publisher>,
    jobs: jobs::Jobs,
}

impl AppState {
    /// Runs publish through `publisher`, to `config.raw_topic` unless a run names another
    /// topic; `too_large` events exceed `config.max_event_bytes`.
    pub fn new(config: Config, publisher: Arc<dyn Publisher>) -> Self {
        Self {
            inner: Arc::new(Settings {
                config,
                publisher,
                jobs: jobs::Jobs::default(),
            }),
        }
    }

    /// This instance's jobs.
    pub fn jobs(&self) -> &jobs::Jobs {
        &self.inner.jobs
    }

    fn config(&self) -> &Config {
        &self.inner.config
    }

    fn publisher(&self) -> Arc<dyn Publisher> {
        self.inner.publisher.clone()
    }
}

/// The function's HTTP surface: `GET /scenarios`, `POST /jobs`, `GET /jobs`, `GET /jobs/{id}`,
/// `POST /jobs/{id}/cancel`, `DELETE /jobs/{id}`, `GET /openapi.json`, `GET /healthz`.
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .route("/scenarios", get(api::list_scenarios))
        .route("/jobs", post(api::start_job).get(api::list_jobs))
        .route("/jobs/{id}", get(api::get_job).delete(api::delete_job))
        .route("/jobs/{id}/cancel", post(api::cancel_job));
    described_app(
        routes,
        state.clone(),
        &api::openapi(),
        state.config(),
        FUNCTION,
    )
}

/// The service as its binary runs it: the publisher the configuration names, then [`app`].
pub async fn start(config: Config) -> anyhow::Result<Router> {
    let backends = Backends::from_config(&config).await?;
    if config.backend == BackendKind::Local {
        tracing::warn!(
            "a lone event-generator on the local bus publishes to nobody; run it inside the \
             local stack (`pulse up`) or point it at the Pub/Sub emulator \
             (PULSE_BACKEND=gcp PUBSUB_ENDPOINT=http://127.0.0.1:8085)"
        );
    }
    Ok(app(AppState::new(config, backends.publisher)))
}
