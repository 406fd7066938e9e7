//! `POST /load`: loads a landing object by hand (`{"bucket", "name"[, "generation"]}`), with the
//! same checks and the same load ids as the trigger, so it never loads a generation twice.

use axum::Json;
use axum::extract::State;
use pulse_shared::delivery::answer::{self, ErrorAnswer};
use pulse_shared::error::FunctionError;
use pulse_shared::storage::is_safe_object_name;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::load::{LandingObject, Outcome, load_object};

/// A manual load.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// Defaults to the landing bucket.
    #[serde(default)]
    pub bucket: Option<String>,
    pub name: String,
    /// The generation to load; the current one when absent.
    #[serde(default)]
    pub generation: Option<i64>,
}

/// Loads one landing object by hand, with the trigger's checks and load ids.
#[utoipa::path(
    post,
    path = "/load",
    tag = "load",
    request_body = LoadRequest,
    responses(
        (status = 200, description = "Done with: `outcome` is `loaded`, `quarantined` (with its reason) or `ignored`.", body = Object),
        (status = 400, description = "Not a load request: what to fix.", body = ErrorAnswer<'static>),
        (status = 503, description = "A backend is unavailable: nothing was loaded, call again.", body = ErrorAnswer<'static>),
    )
)]
pub async fn handle(
    State(state): State<AppState>,
    answer::Json(request): answer::Json<LoadRequest>,
) -> Result<Json<Outcome>, FunctionError> {
    if !is_safe_object_name(&request.name) {
        return Err(FunctionError::BadRequest(
            "`name` must be an object name without empty, `.` or `..` segments".to_owned(),
        ));
    }
    let object = LandingObject {
        bucket: request
            .bucket
            .unwrap_or_else(|| state.inner.config.landing_bucket.clone()),
        name: request.name,
        generation: request.generation,
        size: None,
    };
    Ok(Json(load_object(&state, &object).await?))
}
