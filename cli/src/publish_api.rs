//! The local bus's publish endpoint, shaped like Pub/Sub's REST `topics.publish`, so anything
//! that can call Pub/Sub over HTTP (or curl) can feed the local stack; and `GET /bus`, its
//! backlog, for `pulse status`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use bytes::Bytes;
use pulse_shared::config::Config;
use pulse_shared::delivery::answer;
use pulse_shared::delivery::answer::ErrorAnswer;
use pulse_shared::error::{BackendError, Retry};
use pulse_shared::openapi;
use pulse_shared::publish::{LocalBus, LogStats, OutgoingMessage, Publisher};

use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

/// The OpenAPI description of the stack's own endpoint (the publish API, the bus's backlog and
/// the dashboard), served at `GET /openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pulse local stack",
        description = "The local bus's publish endpoint, shaped like Pub/Sub's REST \
                       `topics.publish`, its backlog, and the dashboard."
    ),
    paths(
        publish,
        backlog,
        pulse_shared::metrics::render,
        pulse_shared::runtime::healthz,
        openapi::openapi_json,
        crate::dashboard::show,
        crate::dashboard::replay
    )
)]
pub struct ApiDoc;

/// A `topics.publish` body.
#[derive(Deserialize, ToSchema)]
struct PublishRequest {
    messages: Vec<RequestMessage>,
}

/// One message to publish.
#[derive(Deserialize, ToSchema)]
struct RequestMessage {
    /// The message's bytes, base64.
    #[serde(default)]
    data: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

/// What `topics.publish` answers: the ids of the messages, in order.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct PublishResponse {
    message_ids: Vec<String>,
}

/// `POST /v1/projects/{project}/topics/{topic}:publish`, `GET /bus` (its backlog), `GET /metrics`
/// (every function's, as on any of their ports), `GET /healthz` and `GET /openapi.json`.
pub fn router(bus: LocalBus, config: &Config) -> Router {
    Router::new()
        .route(
            "/v1/projects/{project}/topics/{topic_action}",
            post(publish),
        )
        .route("/bus", get(backlog))
        .route("/metrics", get(pulse_shared::metrics::render))
        .route("/healthz", get(pulse_shared::runtime::healthz))
        .merge(openapi::route(&ApiDoc::openapi()))
        .with_state((bus, config.project.clone()))
}

/// What the local bus holds: the Pub/Sub backlog of the local stack (`GET /bus`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BusBacklog {
    /// Deliveries accepted and not yet acknowledged or dead-lettered, all subscriptions.
    pub undelivered: u64,
    /// Messages published since the stack started, by topic.
    pub published: BTreeMap<String, u64>,
    /// What the bus's log on disk holds.
    #[schema(value_type = Option<Object>)]
    pub log: Option<LogStats>,
}

/// The local bus's backlog, for `pulse status`.
#[utoipa::path(
    get,
    path = "/bus",
    tag = "publish",
    responses((status = 200, description = "What the bus holds.", body = BusBacklog))
)]
async fn backlog(State((bus, _)): State<(LocalBus, String)>) -> Json<BusBacklog> {
    Json(BusBacklog {
        undelivered: bus.in_flight() as u64,
        published: bus.published_by_topic(),
        log: bus.log_stats().await,
    })
}

/// Publishes messages to a topic of the local bus, as Pub/Sub's `topics.publish` does.
#[utoipa::path(
    post,
    path = "/v1/projects/{project}/topics/{topic_action}",
    tag = "publish",
    params(
        ("project" = String, Path, description = "The local project (`local` unless `GOOGLE_CLOUD_PROJECT` says otherwise).", example = "local"),
        ("topic_action" = String, Path, description = "`{topic}:publish`.", example = "events-raw:publish"),
    ),
    request_body = PublishRequest,
    responses(
        (status = 200, description = "Published, durably, to every subscription of the topic.", body = PublishResponse),
        (status = 400, description = "A message's data is not base64, a message is larger than the bus stores, or the body is not a publish request.", body = ErrorAnswer<'static>),
        (status = 404, description = "Another project, or not `:publish`.", body = ErrorAnswer<'static>),
        (status = 413, description = "The body is larger than the stack takes.", body = ErrorAnswer<'static>),
        (status = 503, description = "The bus could not store a message: publish again.", body = ErrorAnswer<'static>),
    )
)]
async fn publish(
    State((bus, project)): State<(LocalBus, String)>,
    Path((requested_project, topic_action)): Path<(String, String)>,
    answer::Json(request): answer::Json<PublishRequest>,
) -> Result<Json<PublishResponse>, Response> {
    let Some(topic) = topic_action.strip_suffix(":publish") else {
        return Err(answer::error(
            StatusCode::NOT_FOUND,
            &format!("unknown action in {topic_action:?}; expected `<topic>:publish`"),
        ));
    };
    if requested_project != project {
        return Err(answer::error(
            StatusCode::NOT_FOUND,
            &format!("project {requested_project:?} is not the local project {project:?}"),
        ));
    }
    let mut outgoing = Vec::with_capacity(request.messages.len());
    for message in request.messages {
        let data = base64::engine::general_purpose::STANDARD
            .decode(&message.data)
            .map_err(|e| {
                answer::error(
                    StatusCode::BAD_REQUEST,
                    &format!("message data is not base64: {e}"),
                )
            })?;
        outgoing.push(OutgoingMessage {
            data: Bytes::from(data),
            attributes: message.attributes,
        });
    }
    // Published together, so the bus's log syncs them as one group.
    let published =
        futures_util::future::join_all(outgoing.into_iter().map(|m| bus.publish(topic, m))).await;
    let message_ids = published
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            // The bus refuses what it can never store (a message too large for its log) as the
            // caller's; the rest may pass on another attempt.
            let status = match e.retry {
                Retry::InvalidInput => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            answer::error(status, &e.to_string())
        })?;
    Ok(Json(PublishResponse { message_ids }))
}

/// A client of this endpoint: `pulse generate --stack` publishes to a running stack with it.
pub struct PublishClient {
    http: reqwest::Client,
    base_url: String,
    project: String,
}

impl PublishClient {
    /// Publishes to the stack whose control endpoint is `base_url` (`http://127.0.0.1:8080`).
    pub fn new(base_url: &str, project: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            project: project.to_owned(),
        }
    }
}

#[async_trait]
impl Publisher for PublishClient {
    fn describe(&self) -> String {
        format!("the local stack's publish endpoint at {}", self.base_url)
    }

    async fn publish(&self, topic: &str, message: OutgoingMessage) -> Result<String, BackendError> {
        let url = format!(
            "{}/v1/projects/{}/topics/{topic}:publish",
            self.base_url, self.project
        );
        let operation = || format!("publish to {url}");
        let body = serde_json::json!({"messages": [{
            "data": base64::engine::general_purpose::STANDARD.encode(&message.data),
            "attributes": message.attributes,
        }]});
        // Unreachable (the stack is down or restarting) or cut off: it may pass later.
        let response = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| BackendError::new(operation(), Retry::Transient, e.to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| BackendError::new(operation(), Retry::Transient, e.to_string()))?;
        if !status.is_success() {
            let retry = Retry::from_http_status(status.as_u16());
            return Err(BackendError::new(
                operation(),
                retry,
                format!("{status}: {text}"),
            ));
        }
        let answer: PublishResponse = serde_json::from_str(&text)
            .map_err(|e| BackendError::new(operation(), Retry::Permanent, e.to_string()))?;
        answer.message_ids.into_iter().next().ok_or_else(|| {
            BackendError::new(operation(), Retry::Permanent, "no message id in the answer")
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose

    use std::sync::Arc;

    use pulse_shared::delivery::deadletter::DeadLetterStore;
    use pulse_shared::storage::LocalObjectStore;

    use super::*;
    use crate::dashboard::Dashboard;

    /// The stack's own endpoint, as `pulse up` serves it, against its description.
    #[tokio::test]
    async fn every_route_is_described() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::local(dir.path());
        let objects = Arc::new(LocalObjectStore::open(dir.path().join("gcs"), false).unwrap());
        let dead_letters = DeadLetterStore::new(objects, "pulse-raw", "dead-letter/");
        let bus = LocalBus::new("local", dead_letters.clone());
        let unused = "127.0.0.1:9".parse().unwrap();
        let (dashboard, scraper) = Dashboard::start(unused, unused, dead_letters, String::new());
        let router = router(bus, &config).merge(dashboard.router());
        let problems = openapi::disagreements(router, &ApiDoc::openapi()).await;
        scraper.abort();
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
