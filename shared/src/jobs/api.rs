//! `/jobs`: a function's replay jobs over HTTP, with their OpenAPI description.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};

use super::{JobView, Replay, ReplayJobs, Started};
use crate::delivery::answer::{self, ErrorAnswer};
use crate::error::FunctionError;
use crate::openapi;

/// The description of [`routes`], merged into each function's own.
#[derive(OpenApi)]
#[openapi(paths(list_jobs, get_job, cancel_job, delete_job))]
pub struct JobsApi;

/// The whole description of a function with replay jobs: its own (`own`), [`JobsApi`] and the
/// runtime's routes ([`openapi::document`]).
pub fn document(mut own: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    own.merge(JobsApi::openapi());
    openapi::document(own)
}

/// `GET /jobs`, `GET /jobs/{id}`, `POST /jobs/{id}/cancel` and `DELETE /jobs/{id}`, for a router
/// whose state holds the function's [`ReplayJobs`].
pub fn routes<S>() -> Router<S>
where
    ReplayJobs: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/jobs", get(list_jobs))
        .route("/jobs/{id}", get(get_job).delete(delete_job))
        .route("/jobs/{id}/cancel", post(cancel_job))
}

/// The query of a replay request.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// How long to wait for the replay before answering with its job (at most, and by default,
    /// half the request timeout). `0` answers with the job at once.
    #[param(minimum = 0)]
    pub wait_seconds: Option<u64>,
}

impl WaitQuery {
    pub fn wait(&self) -> Option<Duration> {
        self.wait_seconds.map(Duration::from_secs)
    }
}

/// A replay's answer: its report (200) when it finished within the request, else its job (202,
/// `Location: /jobs/{id}`), which goes on in the background.
impl<R: serde::Serialize + std::fmt::Debug> IntoResponse for Started<R> {
    fn into_response(self) -> Response {
        match self {
            Started::Finished(report) => {
                tracing::info!(?report, "replay done");
                Json(report).into_response()
            }
            Started::Job(job) => (
                StatusCode::ACCEPTED,
                [(header::LOCATION, format!("/jobs/{}", job.id))],
                Json(job),
            )
                .into_response(),
        }
    }
}

/// The body of a replay route (`POST /replay`, `POST /predict-replay`): starts `W` as one of
/// the function's jobs and answers as [`Started`] does. Each function describes its route on
/// its own handler, which calls this.
pub async fn replay<W: Replay>(
    State(jobs): State<ReplayJobs>,
    Query(query): Query<WaitQuery>,
    answer::Json(request): answer::Json<W::Request>,
) -> Result<Response, FunctionError>
where
    W::Report: std::fmt::Debug,
{
    let started = jobs.start::<W>(request, query.wait()).await?;
    Ok(started.into_response())
}

/// Lists the function's replay jobs, the most recent first (at most 100): those running here
/// and every durable one.
#[utoipa::path(
    get,
    path = "/jobs",
    tag = "jobs",
    responses(
        (status = 200, body = [JobView]),
        (status = 503, description = "The job store is unavailable: try again.", body = ErrorAnswer<'static>),
    )
)]
pub async fn list_jobs(
    State(jobs): State<ReplayJobs>,
) -> Result<Json<Vec<JobView>>, FunctionError> {
    Ok(Json(jobs.list().await?))
}

/// One replay job and its progress.
#[utoipa::path(
    get,
    path = "/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id, from the `202` answer of a replay.")),
    responses(
        (status = 200, body = JobView),
        (status = 404, description = "No such job.", body = ErrorAnswer<'static>),
        (status = 503, description = "The job store is unavailable: try again.", body = ErrorAnswer<'static>),
    )
)]
pub async fn get_job(
    State(jobs): State<ReplayJobs>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, FunctionError> {
    Ok(Json(jobs.get(&id).await?))
}

/// Cancels a replay job: items not yet replayed will not be; those in flight are dropped where
/// they are (what they wrote stays: every replay write is idempotent). The job stops within
/// moments where it runs, or at its next checkpoint on another instance; cancelling a finished
/// job changes nothing.
#[utoipa::path(
    post,
    path = "/jobs/{id}/cancel",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "Cancel requested.", body = JobView),
        (status = 404, description = "No such job.", body = ErrorAnswer<'static>),
        (status = 503, description = "The job store is unavailable: try again.", body = ErrorAnswer<'static>),
    )
)]
pub async fn cancel_job(
    State(jobs): State<ReplayJobs>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, FunctionError> {
    Ok(Json(jobs.cancel(&id).await?))
}

/// The same as `POST /jobs/{id}/cancel` (a job's record is kept).
#[utoipa::path(
    delete,
    path = "/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "Cancel requested.", body = JobView),
        (status = 404, description = "No such job.", body = ErrorAnswer<'static>),
        (status = 503, description = "The job store is unavailable: try again.", body = ErrorAnswer<'static>),
    )
)]
pub async fn delete_job(
    state: State<ReplayJobs>,
    id: Path<String>,
) -> Result<Json<JobView>, FunctionError> {
    cancel_job(state, id).await
}
