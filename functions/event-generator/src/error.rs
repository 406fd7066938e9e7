//! The API's errors: each becomes the one error answer, `{"outcome": "error", "error": …}`,
//! saying what to change.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pulse_shared::delivery::answer;

/// A request the API refuses; nothing was started or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request cannot run as asked (400): fix it and send it again.
    #[error("{0}")]
    BadRequest(String),
    /// No job has that id on this instance (404): finished jobs are forgotten after a while,
    /// and a restarted instance starts with none.
    #[error("no job {0} on this instance")]
    NoSuchJob(String),
    /// As many runs as an instance takes are going (429): send it again when one has ended.
    #[error(transparent)]
    TooManyRuns(#[from] crate::jobs::TooManyRuns),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NoSuchJob(_) => StatusCode::NOT_FOUND,
            ApiError::TooManyRuns(_) => StatusCode::TOO_MANY_REQUESTS,
        };
        answer::error(status, &self.to_string())
    }
}
