//! The HTTP API: list scenarios, start runs as background jobs, watch and cancel them, and the
//! OpenAPI description of it all.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use chrono::{DateTime, Utc};
use pulse_shared::delivery::answer::{self, ErrorAnswer};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::AppState;
use crate::error::ApiError;
use crate::jobs::{Job, JobState};
use crate::request::RunRequest;
use crate::scenario::{Scenario, Shape};

/// The OpenAPI description served at `GET /openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pulse event-generator",
        description = "Publishes realistic events to a topic at a controlled rate, by named \
                       scenario or custom run, as background jobs."
    ),
    paths(list_scenarios, start_job, list_jobs, get_job, cancel_job, delete_job)
)]
pub struct ApiDoc;

/// A named scenario.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScenarioView {
    pub name: String,
    pub description: String,
    /// Messages published, duplicates and malformed ones included.
    pub count: u64,
    pub duration_seconds: f64,
    pub rate_per_second: f64,
    /// `steady` or `bursty`.
    pub shape: &'static str,
    /// Share of events by type.
    pub mix: BTreeMap<String, f64>,
    pub duplicate_ratio: f64,
    pub malformed_ratio: f64,
    pub anomaly_ratio: f64,
    /// Whether known types gain new fields and a new type appears during the run.
    pub schema_drift: bool,
}

impl From<&Scenario> for ScenarioView {
    fn from(s: &Scenario) -> Self {
        Self {
            name: s.name.clone(),
            description: s.description.clone(),
            count: s.count,
            duration_seconds: s.duration.as_secs_f64(),
            rate_per_second: s.rate(),
            shape: match s.shape {
                Shape::Steady => "steady",
                Shape::Bursty { .. } => "bursty",
            },
            mix: s
                .mix
                .shares()
                .into_iter()
                .map(|(kind, share)| (kind.name().to_owned(), share))
                .collect(),
            duplicate_ratio: s.duplicate_ratio,
            malformed_ratio: s.malformed_ratio,
            anomaly_ratio: s.anomaly_ratio,
            schema_drift: s.drift.is_some(),
        }
    }
}

/// A job and its progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    /// `running`, `completed`, `cancelled` or `failed`.
    pub state: &'static str,
    /// Why a failed job stopped.
    pub error: Option<String>,
    pub scenario: ScenarioView,
    /// Run again with this seed for the same events.
    pub seed: u64,
    pub topic: String,
    pub planned: u64,
    pub sent: u64,
    pub failed: u64,
    pub duplicates: u64,
    pub malformed: u64,
    pub anomalies: u64,
    pub target_rate_per_second: f64,
    pub achieved_rate_per_second: f64,
    pub elapsed_seconds: f64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<&Job> for JobView {
    fn from(job: &Job) -> Self {
        let (state, finished_at) = job.state();
        let (state, error) = match state {
            JobState::Running => ("running", None),
            JobState::Completed => ("completed", None),
            JobState::Cancelled => ("cancelled", None),
            JobState::Failed(why) => ("failed", Some(why)),
        };
        let p = job.progress.snapshot();
        Self {
            id: job.id.clone(),
            state,
            error,
            scenario: ScenarioView::from(&job.spec.scenario),
            seed: job.spec.seed,
            topic: job.spec.topic.clone(),
            planned: p.planned,
            sent: p.sent,
            failed: p.failed,
            duplicates: p.duplicates,
            malformed: p.malformed,
            anomalies: p.anomalies,
            target_rate_per_second: job.spec.scenario.rate(),
            achieved_rate_per_second: p.achieved_rate,
            elapsed_seconds: p.elapsed.as_secs_f64(),
            started_at: job.started_at,
            finished_at,
        }
    }
}

/// Lists the named scenarios.
#[utoipa::path(get, path = "/scenarios", responses((status = 200, body = [ScenarioView])))]
pub async fn list_scenarios() -> Json<Vec<ScenarioView>> {
    Json(Scenario::all().iter().map(ScenarioView::from).collect())
}

/// Starts a run in the background.
#[utoipa::path(
    post,
    path = "/jobs",
    request_body = RunRequest,
    responses(
        (status = 202, description = "Started; `Location` names the job.", body = JobView),
        (status = 400, description = "The run cannot start as asked.", body = ErrorAnswer<'static>),
        (status = 429, description = "As many runs as an instance takes are going.", body = ErrorAnswer<'static>),
    )
)]
pub async fn start_job(
    State(state): State<AppState>,
    answer::Json(request): answer::Json<RunRequest>,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<JobView>), ApiError> {
    let spec = request
        .resolve(&state.config().raw_topic)
        .map_err(|e| ApiError::BadRequest(e.0))?;
    let job = state
        .jobs()
        .start(spec, state.publisher(), state.config().max_event_bytes)?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/jobs/{}", job.id))],
        Json(JobView::from(job.as_ref())),
    ))
}

/// Lists this instance's jobs, oldest first.
#[utoipa::path(get, path = "/jobs", responses((status = 200, body = [JobView])))]
pub async fn list_jobs(State(state): State<AppState>) -> Json<Vec<JobView>> {
    Json(
        state
            .jobs()
            .list()
            .iter()
            .map(|job| JobView::from(job.as_ref()))
            .collect(),
    )
}

/// One job and its progress.
#[utoipa::path(
    get,
    path = "/jobs/{id}",
    params(("id" = String, Path, description = "The job's id, e.g. `job-1`.")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorAnswer<'static>))
)]
pub async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = state.jobs().get(&id).ok_or(ApiError::NoSuchJob(id))?;
    Ok(Json(JobView::from(job.as_ref())))
}

/// Cancels a job: messages not yet sent will not be. Cancelling a finished job changes nothing.
#[utoipa::path(
    post,
    path = "/jobs/{id}/cancel",
    params(("id" = String, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "Cancel requested; the job stops within moments.", body = JobView),
        (status = 404, body = ErrorAnswer<'static>),
    )
)]
pub async fn cancel_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = state.jobs().get(&id).ok_or(ApiError::NoSuchJob(id))?;
    job.cancel();
    Ok(Json(JobView::from(job.as_ref())))
}

/// The same as `POST /jobs/{id}/cancel`.
#[utoipa::path(
    delete,
    path = "/jobs/{id}",
    params(("id" = String, Path, description = "The job's id.")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorAnswer<'static>))
)]
pub async fn delete_job(
    state: State<AppState>,
    id: Path<String>,
) -> Result<Json<JobView>, ApiError> {
    cancel_job(state, id).await
}

/// The whole description: [`ApiDoc`] and the runtime's routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    pulse_shared::openapi::document(ApiDoc::openapi())
}
