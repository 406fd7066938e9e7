//! inference: processed events of the scored types get a prediction from a Vertex AI endpoint
//! (or the local predictor, same REST shape), stored as one row per event in the predictions
//! table. Concurrent events share predict calls and warehouse writes; a failing endpoint trips a
//! circuit breaker; unusable answers and events without their features are dead-lettered.

mod breaker;
mod coalesce;
mod features;
mod predictions;
mod replay;
mod score;
mod trigger;
mod vertex;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::post;
use pulse_shared::auth::{AccessTokens, MetadataIdTokens};
use pulse_shared::backends::Backends;
use pulse_shared::config::{BackendKind, BatchLimits, Config, endpoint_location};
use pulse_shared::delivery;
use pulse_shared::delivery::deadletter::DeadLetterStore;
use pulse_shared::jobs::{self, ReplayJobs};
use pulse_shared::openapi;
use pulse_shared::storage::ObjectStore;
use pulse_shared::warehouse::Warehouse;
use pulse_shared::warehouse::group_commit::Writers;
use utoipa::OpenApi;

pub use features::Features;
pub use predictions::spec as predictions_table_spec;
pub use replay::{PredictReplayReport, PredictReplayRequest, RejectedEvent};
pub use score::Outcome;

/// The function's name in logs and dead-letter records.
pub const FUNCTION: &str = "inference";

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Settings>,
}

struct Settings {
    config: Config,
    features: Features,
    scorer: coalesce::Scorer,
    writers: Writers,
    table: String,
    objects: Arc<dyn ObjectStore>,
    dead_letters: DeadLetterStore,
    replays: ReplayJobs,
}

impl AppState {
    /// `tokens` authenticate the predict calls (Application Default Credentials on Google
    /// Cloud, see [`default_tokens`]); `backends` provide the raw archive and dead letters;
    /// `warehouse` holds the predictions table.
    pub fn new(
        config: Config,
        backends: &Backends,
        warehouse: Arc<dyn Warehouse>,
        tokens: AccessTokens,
    ) -> anyhow::Result<Self> {
        let settings = &config.prediction;
        if endpoint_location(&settings.endpoint).is_none() {
            anyhow::bail!(
                "PULSE_VERTEX_ENDPOINT={:?} must be `projects/P/locations/R/endpoints/E`",
                settings.endpoint
            );
        }
        let features = Features::parse(&settings.features)?;
        let client = vertex::VertexClient::new(settings, tokens)?;
        tracing::info!(endpoint = %client.url(), scored = ?features.types().collect::<Vec<_>>(), "predictions from");
        let scorer = coalesce::Scorer::start(client, settings);
        let table = settings.table.clone();
        // The rows of one predict call reach the writer together, already a batch, and rows
        // that come while a write is in progress form the next one: lingering on top of the
        // predict linger would only add latency.
        let limits = BatchLimits {
            linger: Duration::ZERO,
            ..config.batch
        };
        let writers = Writers::new(
            warehouse,
            Arc::new(predictions::PredictionsTable {
                name: table.clone(),
            }),
            limits,
        );
        Ok(Self {
            inner: Arc::new_cyclic(|settings| Settings {
                replays: ReplayJobs::new(
                    replay::PredictReplay(jobs::Owned::new(settings.clone(), FUNCTION)),
                    FUNCTION,
                    backends.objects.clone(),
                    &config,
                ),
                dead_letters: Backends::dead_letters(&config, &backends.objects),
                objects: backends.objects.clone(),
                config,
                features,
                scorer,
                writers,
                table,
            }),
        })
    }

    /// Predict calls made since start-up.
    pub fn predict_calls(&self) -> u64 {
        self.inner.scorer.calls()
    }
}

/// The tokens predict calls carry: on Google Cloud an access token for Vertex AI
/// (`*.googleapis.com`), and for the built-in predictor on Cloud Run an ID token whose audience
/// is its URL (Cloud Run refuses access tokens); none for the local predictor.
pub fn default_tokens(config: &Config) -> anyhow::Result<AccessTokens> {
    let base_url = &config.prediction.base_url;
    match config.backend {
        BackendKind::Gcp if is_google_api(base_url) => {
            AccessTokens::google(&["https://www.googleapis.com/auth/cloud-platform"])
        }
        BackendKind::Gcp => Ok(AccessTokens::IdToken(MetadataIdTokens::new(base_url)?)),
        BackendKind::Local => Ok(AccessTokens::Anonymous),
    }
}

/// True for a Google API endpoint (`https://R-aiplatform.googleapis.com`), which takes access
/// tokens; false for a Cloud Run service's URL.
fn is_google_api(base_url: &str) -> bool {
    reqwest::Url::parse(base_url)
        .ok()
        .and_then(|url| url.host_str().map(|host| host.ends_with(".googleapis.com")))
        .unwrap_or(false)
}

impl FromRef<AppState> for ReplayJobs {
    fn from_ref(state: &AppState) -> Self {
        state.inner.replays.clone()
    }
}

/// The OpenAPI description of inference, served at `GET /openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pulse inference",
        description = "Scores processed events with a prediction endpoint and stores one \
                       prediction row per event; re-scores events by hand."
    ),
    paths(openapi::trigger, replay::handle)
)]
pub struct ApiDoc;

/// The whole description: [`ApiDoc`], the replay jobs and the runtime's routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    jobs::document(ApiDoc::openapi())
}

/// The function's HTTP surface: `POST /` (the trigger), `POST /predict-replay`, the replay jobs
/// under `/jobs`, `GET /openapi.json`, `GET /healthz`, `GET /health`, `GET /metrics`. Replay
/// jobs that stopped with an earlier process are taken over from here on.
pub fn app(state: AppState) -> Router {
    state.inner.replays.resume_in_background();
    let manual = Router::new()
        .route("/predict-replay", post(replay::handle))
        .merge(jobs::routes());
    delivery::trigger::app(state.clone(), manual, &openapi(), &state.inner.config)
}

/// The function as its binary runs it: the backends, warehouse and predict-call tokens the
/// configuration names, then [`app`].
pub async fn start(config: Config) -> anyhow::Result<Router> {
    let backends = Backends::from_config(&config).await?;
    let warehouse = Backends::warehouse(&config).await?;
    let tokens = default_tokens(&config)?;
    Ok(app(AppState::new(config, &backends, warehouse, tokens)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vertex_ai_takes_access_tokens_and_cloud_run_id_tokens() {
        assert!(is_google_api(
            "https://europe-west1-aiplatform.googleapis.com"
        ));
        assert!(!is_google_api(
            "https://pulse-predictor-123456.europe-west1.run.app"
        ));
        assert!(!is_google_api("https://googleapis.com.example.org"));
        assert!(!is_google_api("not a url"));
    }
}
