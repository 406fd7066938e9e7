//! The curated views over HTTP: `GET /views` names them, `GET /views/{name}` reads one's rows.
//! Readers (the local dashboard, a script) go through here rather than open the warehouse.

use axum::Json;
use axum::extract::{Path, State};
use pulse_shared::delivery::answer::ErrorAnswer;
use pulse_shared::error::FunctionError;
use pulse_shared::views::{CURATED_VIEWS, Dialect, curated_view};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::AppState;

/// The most rows one read returns: the views aggregate, so this is a guard, not a page.
const MAX_ROWS: usize = 5_000;

/// One curated view, as `GET /views` lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ViewSummary {
    pub name: &'static str,
    pub description: &'static str,
    pub sources: &'static [&'static str],
}

/// Names the curated views.
#[utoipa::path(get, path = "/views", tag = "views", responses((status = 200, body = [ViewSummary])))]
pub async fn list() -> Json<Vec<ViewSummary>> {
    Json(
        CURATED_VIEWS
            .iter()
            .map(|view| ViewSummary {
                name: view.name,
                description: view.description(),
                sources: view.sources,
            })
            .collect(),
    )
}

/// Reads a curated view's rows (at most 5,000).
#[utoipa::path(
    get,
    path = "/views/{name}",
    tag = "views",
    params(("name" = String, Path, description = "A name from `GET /views`.")),
    responses(
        (status = 200, description = "The rows, one object each.", body = [Object]),
        (status = 400, description = "Not a curated view.", body = ErrorAnswer<'static>),
        (status = 503, description = "The warehouse is unavailable: try again.", body = ErrorAnswer<'static>),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Map<String, Value>>>, FunctionError> {
    // Only names from the list reach the SQL.
    let view = curated_view(&name).ok_or_else(|| {
        let known: Vec<&str> = CURATED_VIEWS.iter().map(|view| view.name).collect();
        FunctionError::BadRequest(format!(
            "{name:?} is not a curated view; the views are {}",
            known.join(", ")
        ))
    })?;
    let settings = &state.inner;
    let sql = format!(
        "SELECT * FROM {}.{} LIMIT {MAX_ROWS}",
        Dialect::of(&settings.config).dataset_ref(settings.warehouse.dataset()),
        view.name
    );
    Ok(Json(settings.warehouse.query(&sql).await?))
}
