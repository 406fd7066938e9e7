//! predictor: the built-in models behind Vertex AI's online prediction contract, so inference
//! runs unchanged against it. It answers `POST /v1/projects/P/locations/R/endpoints/E:predict`
//! (the REST path inference calls) and, as a Vertex AI custom container, `AIP_PREDICT_ROUTE` and
//! `AIP_HEALTH_ROUTE` on `AIP_HTTP_PORT`.

mod models;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pulse_shared::runtime;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use models::Models;

/// The routes a Vertex AI custom container serves (Vertex sets them; these are its defaults).
#[derive(Clone, Debug)]
pub struct Routes {
    /// `AIP_PREDICT_ROUTE`.
    pub predict: String,
    /// `AIP_HEALTH_ROUTE`.
    pub health: String,
}

impl Routes {
    /// From Vertex AI's variables, else `/predict` and `/health`.
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| v.starts_with('/'))
                .unwrap_or_else(|| default.to_owned())
        };
        Self {
            predict: var("AIP_PREDICT_ROUTE", "/predict"),
            health: var("AIP_HEALTH_ROUTE", "/health"),
        }
    }
}

impl Default for Routes {
    fn default() -> Self {
        Self {
            predict: "/predict".to_owned(),
            health: "/health".to_owned(),
        }
    }
}

/// A `:predict` request body.
#[derive(Debug, Deserialize)]
pub struct PredictRequest {
    pub instances: Vec<Value>,
    /// Accepted and ignored: the built-in models take no parameters.
    #[serde(default)]
    pub parameters: Option<Value>,
}

/// A `:predict` response body, as Vertex AI shapes it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PredictResponse {
    pub predictions: Vec<Value>,
    pub deployed_model_id: String,
    pub model: String,
    pub model_version_id: String,
}

/// The function's name, labelling its metrics.
pub const FUNCTION: &str = "predictor";

/// The predictor's HTTP surface over `models`.
pub fn app(models: Models, routes: &Routes) -> Router {
    let models = Arc::new(models);
    let router = Router::new()
        .route("/v1/{*endpoint}", post(vertex_path))
        .route(&routes.predict, post(predict));
    // The runtime answers its own health routes; Vertex AI may ask for another one.
    let router = if runtime::HEALTH_ROUTES.contains(&routes.health.as_str()) {
        router
    } else {
        router.route(&routes.health, get(|| async { "ok" }))
    };
    router.with_state(models)
}

/// `POST /v1/projects/P/locations/R/endpoints/E:predict`: the path inference calls on Vertex AI.
async fn vertex_path(
    State(models): State<Arc<Models>>,
    Path(endpoint): Path<String>,
    body: Result<Json<PredictRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if !endpoint.ends_with(":predict") {
        return error(
            StatusCode::NOT_FOUND,
            format!("no method at /v1/{endpoint}; this server answers `…:predict`"),
        );
    }
    predict(State(models), body).await
}

async fn predict(
    State(models): State<Arc<Models>>,
    body: Result<Json<PredictRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    // Like Vertex AI, one instance the model cannot take fails the whole request.
    let predictions: Result<Vec<Value>, String> = request
        .instances
        .iter()
        .enumerate()
        .map(|(i, instance)| {
            models
                .predict(instance)
                .map_err(|e| format!("instance {i}: {e}"))
        })
        .collect();
    match predictions {
        Ok(predictions) => {
            let (model, version) = models.identity();
            Json(PredictResponse {
                predictions,
                deployed_model_id: "pulse-builtin".to_owned(),
                model,
                model_version_id: version,
            })
            .into_response()
        }
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

/// Google's error body: `{"error": {"code", "message", "status"}}`.
fn error(status: StatusCode, message: String) -> Response {
    let code = match status {
        StatusCode::NOT_FOUND => "NOT_FOUND",
        _ => "INVALID_ARGUMENT",
    };
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": code}});
    (status, Json(body)).into_response()
}

/// The predictor as its binary runs it: the models in `PULSE_MODEL_DIR` (else the built-in
/// ones) on the routes Vertex AI names, then the shared layers.
pub async fn start(config: pulse_shared::config::Config) -> anyhow::Result<Router> {
    let models = match std::env::var_os("PULSE_MODEL_DIR") {
        Some(dir) => Models::from_dir(&std::path::PathBuf::from(dir))?,
        None => Models::builtin(),
    };
    let routes = Routes::from_env();
    tracing::info!(predict = %routes.predict, health = %routes.health, "predictor routes");
    Ok(runtime::with_runtime_layers(
        app(models, &routes),
        &config,
        FUNCTION,
    ))
}
