//! `POST /replay`: re-drive events by hand. Exactly one source per request:
//! - `{"events": [ … ]}`: events posted directly, validated like any delivery;
//! - `{"dead_letter_prefix": "dead-letter/bad_value/2024/05/"}`: dead-lettered messages go
//!   through validation again (after a fix upstream or here);
//! - `{"raw": {"event_type": "order", "from": "…", "to": "…"}}`: a slice of the raw archive
//!   (event time in `[from, to)`) is re-published to the processed topic as archived.
//!
//! Everything it does is idempotent (create-if-absent writes, downstream dedup on `event_id`),
//! so calling it twice is safe. A transient failure answers 503: call again.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use pulse_shared::archive::RawSlice;
use pulse_shared::deadletter::DeadLetterRecord;
use pulse_shared::envelope::{PushMessage, decode_pubsub};
use pulse_shared::storage::is_safe_object_name;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::ingest::{Ingested, dead_letter, ingest, publish_processed};
use crate::{AppState, FUNCTION, FunctionError};

/// How many objects or events a replay works on at once.
const CONCURRENCY: usize = 16;

/// A replay request: set exactly one source.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    #[serde(default)]
    pub events: Option<Vec<Value>>,
    #[serde(default)]
    pub dead_letter_prefix: Option<String>,
    #[serde(default)]
    pub raw: Option<RawSlice>,
}

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayReport {
    /// Events archived for the first time and published.
    pub accepted: u64,
    /// Events already in the raw archive: published again, dropped downstream by `event_id`.
    pub duplicates: u64,
    /// Events that failed validation again, by reason.
    pub dead_lettered: BTreeMap<String, u64>,
    /// Raw archive objects re-published to the processed topic.
    pub republished: u64,
    /// Objects that could not be read as what they should be, left where they are.
    pub unreadable: Vec<String>,
}

impl ReplayReport {
    fn count(&mut self, ingested: Ingested) {
        match ingested {
            Ingested::Accepted {
                duplicate: false, ..
            } => self.accepted += 1,
            Ingested::Accepted {
                duplicate: true, ..
            } => self.duplicates += 1,
            Ingested::DeadLettered { reason, .. } => {
                *self
                    .dead_lettered
                    .entry(reason.code().to_owned())
                    .or_default() += 1;
            }
        }
    }
}

/// The result of replaying one item.
enum ItemOutcome {
    Ingested(Ingested),
    Republished,
    Unreadable(String),
}

pub async fn handle(
    State(state): State<AppState>,
    Json(request): Json<ReplayRequest>,
) -> Result<Json<ReplayReport>, FunctionError> {
    let outcomes = match request {
        ReplayRequest {
            events: Some(events),
            dead_letter_prefix: None,
            raw: None,
        } => run(events.into_iter().map(|event| replay_posted(&state, event))).await?,
        ReplayRequest {
            events: None,
            dead_letter_prefix: Some(prefix),
            raw: None,
        } => {
            let names = dead_letter_names(&state, &prefix).await?;
            run(names
                .into_iter()
                .map(|name| replay_dead_letter(&state, name)))
            .await?
        }
        ReplayRequest {
            events: None,
            dead_letter_prefix: None,
            raw: Some(slice),
        } => {
            let config = state.config();
            let names = slice
                .list(
                    &*state.inner.objects,
                    &config.raw_bucket,
                    &config.raw_prefix,
                )
                .await?;
            run(names.into_iter().map(|name| republish_raw(&state, name))).await?
        }
        _ => {
            return Err(FunctionError::BadRequest(
                "set exactly one of `events`, `dead_letter_prefix` or `raw`".to_owned(),
            ));
        }
    };
    let mut report = ReplayReport::default();
    for outcome in outcomes {
        match outcome {
            ItemOutcome::Ingested(ingested) => report.count(ingested),
            ItemOutcome::Republished => report.republished += 1,
            ItemOutcome::Unreadable(name) => report.unreadable.push(name),
        }
    }
    tracing::info!(?report, "replay done");
    Ok(Json(report))
}

async fn run<F>(items: impl Iterator<Item = F>) -> Result<Vec<ItemOutcome>, FunctionError>
where
    F: Future<Output = Result<ItemOutcome, FunctionError>>,
{
    stream::iter(items)
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
}

/// A posted event gets a message id derived from its content, so posting it twice derives the
/// same `event_id` when it has none.
async fn replay_posted(state: &AppState, event: Value) -> Result<ItemOutcome, FunctionError> {
    let data = serde_json::to_vec(&event).expect("a JSON value always serialises");
    let message = PushMessage {
        message_id: format!("replay-{}", Uuid::new_v5(&Uuid::NAMESPACE_OID, &data)),
        data: base64::engine::general_purpose::STANDARD.encode(&data),
        attributes: BTreeMap::new(),
        publish_time: None,
        ordering_key: None,
    };
    Ok(ItemOutcome::Ingested(ingest(state, &message, None).await?))
}

async fn dead_letter_names(state: &AppState, prefix: &str) -> Result<Vec<String>, FunctionError> {
    let root = state.inner.dead_letters.prefix();
    if !prefix.starts_with(root) || !is_safe_object_name(prefix.trim_end_matches('/')) {
        return Err(FunctionError::BadRequest(format!(
            "dead_letter_prefix {prefix:?} must lie under {root:?}, e.g. \"{root}bad_value/\""
        )));
    }
    Ok(state.inner.dead_letters.list(prefix).await?)
}

/// A dead-lettered message goes through validation again under its original message id, so
/// an event id derived from it is the same as it would have been.
async fn replay_dead_letter(state: &AppState, name: String) -> Result<ItemOutcome, FunctionError> {
    let Some(record) = state.inner.dead_letters.read(&name).await? else {
        return Ok(ItemOutcome::Unreadable(name));
    };
    if let Some(message) = &record.message {
        return Ok(ItemOutcome::Ingested(
            ingest(state, message, record.subscription.as_deref()).await?,
        ));
    }
    let Some(body) = record.body_bytes() else {
        return Ok(ItemOutcome::Unreadable(name));
    };
    let headers = record.header_map();
    let ingested = match decode_pubsub(&headers, &body) {
        Ok((_, delivery)) => {
            ingest(state, &delivery.message, delivery.subscription.as_deref()).await?
        }
        Err(rejection) => {
            let again = DeadLetterRecord::for_body(&rejection, FUNCTION, &headers, &body);
            dead_letter(state, &rejection, &again).await?
        }
    };
    Ok(ItemOutcome::Ingested(ingested))
}

async fn republish_raw(state: &AppState, name: String) -> Result<ItemOutcome, FunctionError> {
    let config = state.config();
    let Some(bytes) = state.inner.objects.read(&config.raw_bucket, &name).await? else {
        return Ok(ItemOutcome::Unreadable(name));
    };
    let ids = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|event| {
            let field = |key: &str| event.get(key)?.as_str().map(str::to_owned);
            Some((field("event_type")?, field("event_id")?))
        });
    let Some((event_type, event_id)) = ids else {
        return Ok(ItemOutcome::Unreadable(name));
    };
    publish_processed(state, bytes, &event_type, &event_id).await?;
    Ok(ItemOutcome::Republished)
}
