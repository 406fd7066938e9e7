//! table-manager: processed events in, one row per event out. Writes each event to the table of
//! its type, creating the table (and its deduplicated view) on first sight and adding columns as
//! new fields appear; coalesces concurrent requests into one write per table; dead-letters rows
//! that conflict with their table. Keeps the promise checkable: compacts repeats away and
//! reconciles the tables with the raw archive.

mod admission;
mod compact;
mod event_table;
mod query;
mod reconcile;
mod tables;
mod trigger;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use pulse_shared::backends::Backends;
use pulse_shared::config::Config;
use pulse_shared::delivery;
use pulse_shared::delivery::deadletter::DeadLetterStore;
use pulse_shared::openapi;
use pulse_shared::storage::ObjectStore;
use pulse_shared::warehouse::Warehouse;
use pulse_shared::warehouse::group_commit::Writers;
use utoipa::OpenApi;

pub use compact::{CompactReport, CompactRequest};
pub use event_table::{table_name, table_spec};
pub use query::QueryRequest;
pub use reconcile::{ReconcileRequest, Reconciliation};
pub use tables::EnsureRequest;
pub use trigger::Written;

/// The function's name in logs and dead-letter records.
pub const FUNCTION: &str = "table-manager";

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Settings>,
}

struct Settings {
    config: Config,
    warehouse: Arc<dyn Warehouse>,
    /// The raw archive, read by the reconciliation.
    objects: Arc<dyn ObjectStore>,
    writers: Writers,
    /// Which event types may have a table (`PULSE_MAX_EVENT_TYPES`).
    event_types: admission::EventTypes,
    dead_letters: DeadLetterStore,
}

impl AppState {
    /// `backends` provide the dead-letter store and the raw archive; `warehouse` holds the tables.
    pub fn new(config: Config, backends: &Backends, warehouse: Arc<dyn Warehouse>) -> Self {
        let dead_letters = Backends::dead_letters(&config, &backends.objects);
        let writers = Writers::new(
            warehouse.clone(),
            Arc::new(event_table::EventTables),
            config.batch,
        );
        let event_types = admission::EventTypes::new(warehouse.clone(), config.max_event_types);
        Self {
            inner: Arc::new(Settings {
                config,
                warehouse,
                objects: backends.objects.clone(),
                writers,
                event_types,
                dead_letters,
            }),
        }
    }
}

/// The OpenAPI description of table-manager, served at `GET /openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pulse table-manager",
        description = "Writes processed events to the table of their type, creating and widening \
                       tables; lists and ensures tables, reads the curated views, compacts \
                       repeats and reconciles tables with the raw archive."
    ),
    paths(
        openapi::trigger,
        tables::list,
        tables::ensure,
        views::list,
        views::read,
        query::handle,
        compact::handle,
        reconcile::handle
    )
)]
pub struct ApiDoc;

/// The whole description: [`ApiDoc`] and the runtime's routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::document(ApiDoc::openapi())
}

/// The function's HTTP surface: `POST /` (the trigger), `POST /tables/{event_type}:ensure`,
/// `GET /tables`, `GET /views`, `GET /views/{name}`, `POST /query`, `POST /compact`,
/// `POST /reconcile`, `GET /openapi.json`, `GET /healthz`, `GET /health`, `GET /metrics`.
pub fn app(state: AppState) -> Router {
    let manual = Router::new()
        .route("/tables", get(tables::list))
        .route("/tables/{action}", post(tables::ensure))
        .route("/views", get(views::list))
        .route("/views/{name}", get(views::read))
        .route("/query", post(query::handle))
        .route("/compact", post(compact::handle))
        .route("/reconcile", post(reconcile::handle));
    delivery::trigger::app(state.clone(), manual, &openapi(), &state.inner.config)
}

/// The function as its binary runs it: the backends and warehouse the configuration names, then
/// [`app`].
pub async fn start(config: Config) -> anyhow::Result<Router> {
    let backends = Backends::from_config(&config).await?;
    let warehouse = Backends::warehouse(&config).await?;
    Ok(app(AppState::new(config, &backends, warehouse)))
}
