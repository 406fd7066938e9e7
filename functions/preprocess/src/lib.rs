//! preprocess: the streaming front door. Takes Pub/Sub deliveries of raw events, validates and
//! normalises each, archives it in the raw archive (create-if-absent) and publishes it to the
//! processed topic; dead-letters what can never succeed. Also re-drives events by hand.

mod dead_letters;
mod ingest;
mod replay;
mod trigger;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};
use pulse_shared::backends::Backends;
use pulse_shared::config::Config;
use pulse_shared::delivery;
use pulse_shared::delivery::deadletter::DeadLetterStore;
use pulse_shared::jobs::{self, ReplayJobs};
use pulse_shared::openapi;
use pulse_shared::publish::Publisher;
use pulse_shared::storage::ObjectStore;
use utoipa::OpenApi;

pub use dead_letters::{DeadLetterDetail, DeadLetterShown, DeadLetterSummary, ReasonSummary};
pub use ingest::{Ingested, raw_object_name};
pub use pulse_shared::archive::RawSlice;
pub use pulse_shared::error::FunctionError;
pub use replay::{ReplayReport, ReplayRequest};

/// The function's name in logs and dead-letter records.
pub const FUNCTION: &str = "preprocess";

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Settings>,
}

struct Settings {
    config: Config,
    objects: Arc<dyn ObjectStore>,
    publisher: Arc<dyn Publisher>,
    dead_letters: DeadLetterStore,
    replays: ReplayJobs,
}

impl AppState {
    pub fn new(config: Config, backends: Backends) -> Self {
        let dead_letters = Backends::dead_letters(&config, &backends.objects);
        Self {
            inner: Arc::new_cyclic(|settings| Settings {
                replays: ReplayJobs::new(
                    replay::ReplayWork(jobs::Owned::new(settings.clone(), FUNCTION)),
                    FUNCTION,
                    backends.objects.clone(),
                    &config,
                ),
                config,
                objects: backends.objects,
                publisher: backends.publisher,
                dead_letters,
            }),
        }
    }

    fn config(&self) -> &Config {
        &self.inner.config
    }
}

impl FromRef<AppState> for ReplayJobs {
    fn from_ref(state: &AppState) -> Self {
        state.inner.replays.clone()
    }
}

/// The OpenAPI description of preprocess, served at `GET /openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pulse preprocess",
        description = "Validates and normalises raw events, archives them and publishes them \
                       processed; re-drives events by hand."
    ),
    paths(
        openapi::trigger,
        replay::handle,
        dead_letters::summary,
        dead_letters::record
    )
)]
pub struct ApiDoc;

/// The whole description: [`ApiDoc`], the replay jobs and the runtime's routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    jobs::document(ApiDoc::openapi())
}

/// The function's HTTP surface: `POST /` (the trigger), `POST /replay`, the replay jobs under
/// `/jobs`, `GET /dead-letters`, `GET /dead-letters/record`, `GET /openapi.json`, `GET /healthz`,
/// `GET /health`, `GET /metrics`. Replay jobs
/// that stopped with an earlier process are taken over from here on.
pub fn app(state: AppState) -> Router {
    state.inner.replays.resume_in_background();
    let manual = Router::new()
        .route("/replay", post(replay::handle))
        .merge(jobs::routes())
        .route("/dead-letters", get(dead_letters::summary))
        .route("/dead-letters/record", get(dead_letters::record));
    delivery::trigger::app(state.clone(), manual, &openapi(), state.config())
}

/// The function as its binary runs it: the backends the configuration names, then [`app`].
pub async fn start(config: Config) -> anyhow::Result<Router> {
    let backends = Backends::from_config(&config).await?;
    Ok(app(AppState::new(config, backends)))
}
