//! How preprocess answers a failure: the status code is the delivery decision.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pulse_shared::error::{BackendError, RETRY_AFTER, Retry};

/// A request that could not be completed. Permanent problems with an event are not errors here:
/// they are dead-lettered and acknowledged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreprocessError {
    /// A backend failed: answered 503 (429 when throttled; 500 when retrying cannot help until
    /// an operator acts), so Pub/Sub delivers the message again. Nothing was acknowledged.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A manual request (`/replay`) is malformed: answered 400 with what to fix.
    #[error("{0}")]
    BadRequest(String),
}

impl IntoResponse for PreprocessError {
    fn into_response(self) -> Response {
        match self {
            PreprocessError::Backend(err) => {
                let status = match err.retry {
                    Retry::Transient => StatusCode::SERVICE_UNAVAILABLE,
                    Retry::Throttled => StatusCode::TOO_MANY_REQUESTS,
                    Retry::Permanent => StatusCode::INTERNAL_SERVER_ERROR,
                };
                tracing::error!(operation = %err.operation, "{err}; answering {status} so the delivery is retried");
                let mut response = (
                    status,
                    format!(
                        "{} failed; nothing was acknowledged, the delivery will be retried\n",
                        err.operation
                    ),
                )
                    .into_response();
                if err.retry != Retry::Permanent {
                    response.headers_mut().insert(
                        header::RETRY_AFTER,
                        HeaderValue::from(RETRY_AFTER.as_secs()),
                    );
                }
                response
            }
            PreprocessError::BadRequest(message) => {
                (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
            }
        }
    }
}
