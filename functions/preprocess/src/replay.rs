//! `POST /replay`: re-drive events by hand. Exactly one source per request:
//! - `{"events": [ … ]}`: events posted directly, validated like any delivery;
//! - `{"dead_letter_prefix": "dead-letter/bad_value/2024/05/"}`: dead-lettered messages go
//!   through validation again (after a fix upstream or here);
//! - `{"raw": {"event_type": "order", "from": "…", "to": "…"}}`: a slice of the raw archive
//!   (event time in `[from, to)`) is re-published to the processed topic as archived.
//!
//! A prefix or slice is worked through a page at a time: at most `limit` objects (1,000 at most,
//! the default) per request, and the answer's `next_after`, when set, is the `after` of the next
//! request. At most 1,000 events may be posted at once.
//!
//! Everything it does is idempotent (create-if-absent writes, downstream dedup on `event_id`),
//! so calling it twice is safe. A transient failure answers 503: call again.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use pulse_shared::archive::{RawSlice, check_posted, replay_page};
use pulse_shared::delivery::deadletter::DeadLetterRecord;
use pulse_shared::delivery::envelope::{PushMessage, decode_pubsub};
use pulse_shared::delivery::{Handled, answer};
use pulse_shared::error::Rejection;
use pulse_shared::storage::is_safe_object_name;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::ingest::{Ingested, ingest, publish_processed};
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
    /// Objects per page of a prefix or slice: at most (and by default) [`pulse_shared::archive::MAX_REPLAY_PAGE`].
    #[serde(default)]
    pub limit: Option<usize>,
    /// Where the page starts: the `next_after` of the answer before.
    #[serde(default)]
    pub after: Option<String>,
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
    /// Set when more of the prefix or slice may follow this page: ask again with `after` set to
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// The result of replaying one item.
enum ItemOutcome {
    Ingested(Ingested),
    DeadLettered(Rejection),
    Republished,
    Unreadable(String),
}

pub async fn handle(
    State(state): State<AppState>,
    answer::Json(request): answer::Json<ReplayRequest>,
) -> Result<Json<ReplayReport>, FunctionError> {
    let limit = replay_page(request.limit)?;
    let after = request.after.as_deref();
    let (outcomes, next_after) = match (request.events, request.dead_letter_prefix, request.raw) {
        (Some(events), None, None) => {
            check_posted(events.len())?;
            let outcomes =
                run(events.into_iter().map(|event| replay_posted(&state, event))).await?;
            (outcomes, None)
        }
        (None, Some(prefix), None) => {
            let names = dead_letter_names(&state, &prefix, after, limit).await?;
            let next = (names.len() == limit)
                .then(|| names.last().cloned())
                .flatten();
            let outcomes = run(names
                .into_iter()
                .map(|name| replay_dead_letter(&state, name)))
            .await?;
            (outcomes, next)
        }
        (None, None, Some(slice)) => {
            let config = state.config();
            let (names, next) = slice
                .list_page(
                    &*state.inner.objects,
                    &config.raw_bucket,
                    &config.raw_prefix,
                    after,
                    limit,
                )
                .await?;
            let outcomes = run(names.into_iter().map(|name| republish_raw(&state, name))).await?;
            (outcomes, next)
        }
        _ => {
            return Err(FunctionError::BadRequest(
                "set exactly one of `events`, `dead_letter_prefix` or `raw`".to_owned(),
            ));
        }
    };
    let mut report = ReplayReport {
        next_after,
        ..ReplayReport::default()
    };
    for outcome in outcomes {
        match outcome {
            ItemOutcome::Ingested(Ingested::Accepted { duplicate, .. }) => {
                if duplicate {
                    report.duplicates += 1;
                } else {
                    report.accepted += 1;
                }
            }
            ItemOutcome::DeadLettered(rejection) => {
                *report
                    .dead_lettered
                    .entry(rejection.reason.code().to_owned())
                    .or_default() += 1;
            }
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
    ingest_message(state, &message, None).await
}

/// Ingests a message again; what fails validation again is dead-lettered again.
async fn ingest_message(
    state: &AppState,
    message: &PushMessage,
    subscription: Option<&str>,
) -> Result<ItemOutcome, FunctionError> {
    match ingest(state, message).await? {
        Handled::Done(ingested) => Ok(ItemOutcome::Ingested(ingested)),
        Handled::Rejected(rejection) => {
            let record = DeadLetterRecord::for_message(&rejection, FUNCTION, message, subscription);
            dead_letter(state, rejection, &record).await
        }
    }
}

async fn dead_letter(
    state: &AppState,
    rejection: Rejection,
    record: &DeadLetterRecord,
) -> Result<ItemOutcome, FunctionError> {
    state.inner.dead_letters.write(record).await?;
    Ok(ItemOutcome::DeadLettered(rejection))
}

/// A page of the dead-letter records under `prefix`.
async fn dead_letter_names(
    state: &AppState,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, FunctionError> {
    let root = state.inner.dead_letters.prefix();
    if !prefix.starts_with(root) || !is_safe_object_name(prefix.trim_end_matches('/')) {
        return Err(FunctionError::BadRequest(format!(
            "dead_letter_prefix {prefix:?} must lie under {root:?}, e.g. \"{root}bad_value/\""
        )));
    }
    if after.is_some_and(|after| !after.starts_with(prefix)) {
        return Err(FunctionError::BadRequest(format!(
            "`after` must be a record name under {prefix:?}, as a previous page gave"
        )));
    }
    Ok(state
        .inner
        .dead_letters
        .list_page(prefix, after, limit)
        .await?)
}

/// A dead-lettered message goes through validation again under its original message id, so
/// an event id derived from it is the same as it would have been.
async fn replay_dead_letter(state: &AppState, name: String) -> Result<ItemOutcome, FunctionError> {
    let Some(record) = state.inner.dead_letters.read(&name).await? else {
        return Ok(ItemOutcome::Unreadable(name));
    };
    if let Some(message) = &record.message {
        return ingest_message(state, message, record.subscription.as_deref()).await;
    }
    let Some(body) = record.body_bytes() else {
        return Ok(ItemOutcome::Unreadable(name));
    };
    let headers = record.header_map();
    match decode_pubsub(&headers, &body) {
        Ok((_, delivery)) => {
            ingest_message(state, &delivery.message, delivery.subscription.as_deref()).await
        }
        Err(rejection) => {
            let again = DeadLetterRecord::for_body(&rejection, FUNCTION, &headers, &body);
            dead_letter(state, rejection, &again).await
        }
    }
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
