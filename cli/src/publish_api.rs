//! The local bus's publish endpoint, shaped like Pub/Sub's REST `topics.publish`, so anything
//! that can call Pub/Sub over HTTP (or curl) can feed the local stack; and `GET /bus`, its
//! backlog, for `pulse status`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use bytes::Bytes;
use pulse_shared::config::Config;
use pulse_shared::publish::{LocalBus, OutgoingMessage, Publisher as _};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct PublishRequest {
    messages: Vec<RequestMessage>,
}

#[derive(Deserialize)]
struct RequestMessage {
    #[serde(default)]
    data: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PublishResponse {
    message_ids: Vec<String>,
}

/// `POST /v1/projects/{project}/topics/{topic}:publish`, `GET /bus` and `GET /healthz`.
pub fn router(bus: LocalBus, config: &Config) -> Router {
    let topics = vec![config.raw_topic.clone(), config.processed_topic.clone()];
    Router::new()
        .route(
            "/v1/projects/{project}/topics/{topic_action}",
            post(publish),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state((bus.clone(), config.project.clone()))
        .merge(
            Router::new()
                .route("/bus", get(backlog))
                .with_state((bus, topics)),
        )
}

/// What the local bus holds: the Pub/Sub backlog of the local stack.
#[derive(Debug, Serialize, Deserialize)]
pub struct BusBacklog {
    /// Deliveries accepted and not yet acknowledged or dead-lettered, all subscriptions.
    pub undelivered: u64,
    /// Messages published since the stack started, by topic.
    pub published: BTreeMap<String, u64>,
}

async fn backlog(State((bus, topics)): State<(LocalBus, Vec<String>)>) -> Json<BusBacklog> {
    Json(BusBacklog {
        undelivered: bus.in_flight() as u64,
        published: topics
            .into_iter()
            .map(|topic| {
                let count = bus.published(&topic);
                (topic, count)
            })
            .collect(),
    })
}

async fn publish(
    State((bus, project)): State<(LocalBus, String)>,
    Path((requested_project, topic_action)): Path<(String, String)>,
    Json(request): Json<PublishRequest>,
) -> Result<Json<PublishResponse>, (StatusCode, String)> {
    let not_found = |what: String| (StatusCode::NOT_FOUND, what);
    let Some(topic) = topic_action.strip_suffix(":publish") else {
        return Err(not_found(format!(
            "unknown action in {topic_action:?}; expected `<topic>:publish`"
        )));
    };
    if requested_project != project {
        return Err(not_found(format!(
            "project {requested_project:?} is not the local project {project:?}"
        )));
    }
    let mut message_ids = Vec::with_capacity(request.messages.len());
    for message in request.messages {
        let data = base64::engine::general_purpose::STANDARD
            .decode(&message.data)
            .map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("message data is not base64: {e}"),
                )
            })?;
        let id = bus
            .publish(
                topic,
                OutgoingMessage {
                    data: Bytes::from(data),
                    attributes: message.attributes,
                },
            )
            .await
            .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        message_ids.push(id);
    }
    Ok(Json(PublishResponse { message_ids }))
}
