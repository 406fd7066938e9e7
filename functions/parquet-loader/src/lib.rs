//! parquet-loader: Parquet files dropped in the landing bucket become rows. Reads only each
//! file's footer, checks its schema against the target table (creating or widening the table),
//! loads it with a load id derived from bucket, object and generation (a redelivered event cannot
//! load twice), and moves a file that can never load to quarantine with its reason.

mod check;
mod footer;
mod inspect;
mod load;
mod object_reader;
mod postgres;
mod quarantine;
mod reload;
mod target;
mod trigger;
#[cfg(feature = "local")]
mod watch;

use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use pulse_shared::backends::Backends;
use pulse_shared::config::Config;
use pulse_shared::delivery;
use pulse_shared::delivery::deadletter::DeadLetterStore;
use pulse_shared::openapi;
use pulse_shared::storage::ObjectStore;
use pulse_shared::warehouse::Warehouse;
use utoipa::OpenApi;

pub use footer::FIRST_READ;
pub use inspect::inspect;
pub use load::{Destination, LandingObject, Outcome, load_id};
pub use quarantine::{Refusal, RefusalCode, quarantine_name};
pub use reload::LoadRequest;
#[cfg(feature = "local")]
pub use watch::{POLL, watch_landing};

/// The function's name in logs, dead-letter records and quarantine reports.
pub const FUNCTION: &str = "parquet-loader";

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Settings>,
}

struct Settings {
    config: Config,
    objects: Arc<dyn ObjectStore>,
    warehouse: Arc<dyn Warehouse>,
    postgres: Option<postgres::PostgresCopy>,
    dead_letters: DeadLetterStore,
}

impl AppState {
    /// `backends` provide the landing bucket and the dead-letter store; `warehouse` the tables;
    /// `DATABASE_URL`, when set, the PostgreSQL copy. Fails on a `DATABASE_URL` that does not
    /// parse.
    pub fn new(
        config: Config,
        backends: &Backends,
        warehouse: Arc<dyn Warehouse>,
    ) -> anyhow::Result<Self> {
        let dead_letters = Backends::dead_letters(&config, &backends.objects);
        let postgres = config
            .database_url
            .as_deref()
            .map(|url| postgres::PostgresCopy::new(url, &config.dataset))
            .transpose()?;
        if let Some(postgres) = &postgres {
            tracing::info!(postgres = %postgres.describe(), "rows are copied to PostgreSQL too");
        }
        Ok(Self {
            inner: Arc::new(Settings {
                config,
                objects: backends.objects.clone(),
                warehouse,
                postgres,
                dead_letters,
            }),
        })
    }
}

/// The OpenAPI description of parquet-loader, served at `GET /openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pulse parquet-loader",
        description = "Loads Parquet files dropped in the landing bucket into their table, once \
                       per generation; quarantines files that can never load."
    ),
    paths(openapi::trigger, reload::handle)
)]
pub struct ApiDoc;

/// The whole description: [`ApiDoc`] and the runtime's routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::document(ApiDoc::openapi())
}

/// The function's HTTP surface: `POST /` (the finalize trigger), `POST /load`,
/// `GET /openapi.json`, `GET /healthz`, `GET /health`, `GET /metrics`.
pub fn app(state: AppState) -> Router {
    let manual = Router::new().route("/load", post(reload::handle));
    delivery::trigger::app(state.clone(), manual, &openapi(), &state.inner.config)
}

/// The function as its binary runs it: the backends and warehouse the configuration names, then
/// [`app`].
pub async fn start(config: Config) -> anyhow::Result<Router> {
    let backends = Backends::from_config(&config).await?;
    let warehouse = Backends::warehouse(&config).await?;
    Ok(app(AppState::new(config, &backends, warehouse)?))
}
