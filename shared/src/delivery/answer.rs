//! One JSON answer shape for every route a function serves, its trigger and its manual routes,
//! errors included: an object whose `outcome` says what became of the request.
//!
//! | outcome | status | with |
//! |---|---|---|
//! | what the function did (`accepted`, `written`, `loaded`, …) | 200 | the function's details |
//! | `dead_lettered` | 200 | `reason`, `detail`, `dead_letter` (the record's object name) |
//! | `error` | 4xx: fix the request; 429/5xx: nothing was done, send it again | `error`: what |
//!
//! Manual routes answer their report when they succeed; their errors take the same shape.
//! Answers that axum or a layer builds (an unknown route, a body too large, a timeout) are given
//! the same shape by [`uniform_errors`].

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, OptionalFromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{FunctionError, RETRY_AFTER, Rejection, Retry};

/// `outcome` of a dead-lettered delivery.
pub const DEAD_LETTERED: &str = "dead_lettered";
/// `outcome` of an error answer.
pub const ERROR: &str = "error";

/// The answer to an input that can never succeed, once its record is stored.
#[derive(Debug, Serialize)]
pub struct DeadLettered<'a> {
    pub outcome: &'static str,
    pub reason: &'static str,
    pub detail: &'a str,
    pub dead_letter: &'a str,
}

impl<'a> DeadLettered<'a> {
    pub fn new(rejection: &'a Rejection, dead_letter: &'a str) -> Self {
        Self {
            outcome: DEAD_LETTERED,
            reason: rejection.reason.code(),
            detail: &rejection.detail,
            dead_letter,
        }
    }
}

/// The body of every error answer: `{"outcome": "error", "error": …}`. It is also the error
/// body of every function's OpenAPI description.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorAnswer<'a> {
    /// Always `error`.
    #[schema(example = "error")]
    pub outcome: &'static str,
    /// What went wrong, and what to change when the request is at fault.
    pub error: &'a str,
}

/// A JSON answer.
pub fn json(status: StatusCode, body: &impl Serialize) -> Response {
    (status, axum::Json(body)).into_response()
}

/// An error answer with `status`, saying `error`.
pub fn error(status: StatusCode, error: &str) -> Response {
    json(
        status,
        &ErrorAnswer {
            outcome: ERROR,
            error,
        },
    )
}

impl IntoResponse for FunctionError {
    fn into_response(self) -> Response {
        match self {
            FunctionError::Backend(err) => {
                let status = match err.retry {
                    Retry::Transient => StatusCode::SERVICE_UNAVAILABLE,
                    Retry::Throttled => StatusCode::TOO_MANY_REQUESTS,
                    // An input the caller should have set aside alone reaches here only when
                    // it could not: it is retried like an operator's problem.
                    Retry::Permanent | Retry::InvalidInput => StatusCode::INTERNAL_SERVER_ERROR,
                };
                tracing::error!(operation = %err.operation, "{err}; answering {status} so the delivery is retried");
                // The operation names what failed, never how: backend messages stay in the log.
                let mut response = error(
                    status,
                    &format!(
                        "{} failed; nothing was acknowledged, the delivery will be retried",
                        err.operation
                    ),
                );
                if err.retry.may_pass() {
                    response.headers_mut().insert(
                        header::RETRY_AFTER,
                        HeaderValue::from(RETRY_AFTER.as_secs()),
                    );
                }
                response
            }
            FunctionError::BadRequest(message) => error(StatusCode::BAD_REQUEST, &message),
            FunctionError::NotFound(message) => error(StatusCode::NOT_FOUND, &message),
        }
    }
}

/// A JSON request body, as `axum::Json`, but refused in the one answer shape: 400 with what is
/// wrong (413 when it is too large), where axum answers 400, 415 or 422 in plain text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match <axum::Json<T> as FromRequest<S>>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(refused(&rejection)),
        }
    }
}

/// An optional JSON body: none when the request has no `Content-Type`.
impl<S: Send + Sync, T: DeserializeOwned> OptionalFromRequest<S> for Json<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        match <axum::Json<T> as OptionalFromRequest<S>>::from_request(request, state).await {
            Ok(value) => Ok(value.map(|axum::Json(value)| Self(value))),
            Err(rejection) => Err(refused(&rejection)),
        }
    }
}

fn refused(rejection: &JsonRejection) -> Response {
    let status = match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, &rejection.body_text())
}

/// The longest plain-text error body that is carried over into the JSON answer.
const MAX_TEXT_ERROR: usize = 4096;

/// Middleware: an error answer that is not JSON (axum's own rejections, an unknown route or
/// method, the body limit, the request timeout) is given the one answer shape, keeping its
/// status and headers and carrying its text over as `error`.
pub async fn uniform_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_TEXT_ERROR)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let text = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let answer = error(status, &text);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, answer.into_body())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::post;
    use serde_json::Value;
    use tower::ServiceExt as _;

    async fn answer(request: Request) -> (StatusCode, Value) {
        let router = Router::new()
            .route(
                "/",
                post(|Json(body): Json<Value>| async move { axum::Json(body) }),
            )
            .layer(axum::middleware::from_fn(uniform_errors));
        let response = router.oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("a body");
        (
            status,
            serde_json::from_slice(&body).expect("a JSON answer"),
        )
    }

    fn post_json(path: &str, content_type: &str, body: &'static str) -> Request {
        Request::post(path)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .expect("a request")
    }

    #[tokio::test]
    async fn json_rejections_are_400_in_the_one_shape() {
        for request in [
            post_json("/", "application/json", "{not json"),
            post_json("/", "text/plain", "{}"),
            Request::post("/").body(Body::empty()).expect("a request"),
        ] {
            let (status, body) = answer(request).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(body["outcome"], ERROR, "{body}");
            assert!(
                !body["error"].as_str().unwrap_or_default().is_empty(),
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn axum_s_own_answers_take_the_shape_and_keep_their_status() {
        let (status, body) = answer(post_json("/nowhere", "application/json", "{}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["outcome"], ERROR);
        let (status, body) =
            answer(Request::get("/").body(Body::empty()).expect("a request")).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"], "method not allowed");
    }
}
