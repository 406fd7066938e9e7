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
//! so calling it twice is safe. A replay runs as a job ([`pulse_shared::jobs`]): one done within
//! half the request timeout answers its report; a longer one answers `202` with the job, which
//! goes on in the background, is watched and cancelled under `/jobs`, and goes on where it
//! stopped after a restart. A transient failure of a short replay answers 503: call again.

use std::collections::BTreeMap;

use async_trait::async_trait;
use axum::extract::{Query, State};
use axum::response::Response;
use base64::Engine as _;
use pulse_shared::archive::{RawSlice, check_posted, posted_event, posted_names, replay_page};
use pulse_shared::delivery::answer::ErrorAnswer;
use pulse_shared::delivery::deadletter::DeadLetterRecord;
use pulse_shared::delivery::envelope::{PushMessage, decode_pubsub};
use pulse_shared::delivery::{Handled, answer};
use pulse_shared::error::Rejection;
use pulse_shared::jobs::{self, JobView, Listing, Replay, ReplayJobs, WaitQuery};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ingest::{Ingested, ingest, publish_processed};
use crate::{AppState, FUNCTION, FunctionError, Settings};

/// How many objects or events a replay works on at once.
const CONCURRENCY: usize = 16;

/// A replay request: set exactly one source.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Events to validate and ingest, as a producer would publish them (at most 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub events: Option<Vec<Value>>,
    /// Dead-lettered messages to validate again, e.g. `dead-letter/bad_value/2024/05/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_prefix: Option<String>,
    /// A slice of the raw archive to publish to the processed topic again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawSlice>,
    /// Objects per page of a prefix or slice: at most (and by default) [`pulse_shared::archive::MAX_REPLAY_PAGE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Where the page starts: the `next_after` of the answer before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
pub(crate) enum ItemOutcome {
    Ingested(Ingested),
    DeadLettered(Rejection),
    Republished,
    Unreadable(String),
}

/// Re-drives events: posted, dead-lettered, or from the raw archive.
#[utoipa::path(
    post,
    path = "/replay",
    tag = "replay",
    params(WaitQuery),
    request_body = ReplayRequest,
    responses(
        (status = 200, description = "Done within the request.", body = ReplayReport),
        (status = 202, description = "Going on as a job; `Location` names it. Its `report` has the shape of `ReplayReport`.", body = JobView),
        (status = 400, description = "Not a replay request: what to fix.", body = ErrorAnswer<'static>),
        (status = 503, description = "A backend is unavailable: nothing is lost, call again.", body = ErrorAnswer<'static>),
    )
)]
pub async fn handle(
    jobs: State<ReplayJobs>,
    query: Query<WaitQuery>,
    request: answer::Json<ReplayRequest>,
) -> Result<Response, FunctionError> {
    jobs::replay::<ReplayWork>(jobs, query, request).await
}

/// Replays as preprocess runs them, item by item, on the function's state held weakly.
pub(crate) struct ReplayWork(pub(crate) jobs::Owned<Settings>);

impl ReplayWork {
    fn state(&self) -> Result<AppState, FunctionError> {
        self.0.state().map(|inner| AppState { inner })
    }
}

#[async_trait]
impl Replay for ReplayWork {
    type Request = ReplayRequest;
    type Report = ReplayReport;
    type Item = ItemOutcome;
    const CONCURRENCY: usize = CONCURRENCY;

    fn check(&self, request: &ReplayRequest) -> Result<(), FunctionError> {
        let state = self.state()?;
        replay_page(request.limit)?;
        match (&request.events, &request.dead_letter_prefix, &request.raw) {
            (Some(events), None, None) => check_posted(events.len()),
            (None, Some(prefix), None) => {
                check_dead_letter_prefix(&state, prefix, request.after.as_deref())
            }
            (None, None, Some(slice)) => slice.check(),
            _ => Err(FunctionError::BadRequest(
                "set exactly one of `events`, `dead_letter_prefix` or `raw`".to_owned(),
            )),
        }
    }

    fn describe(&self, request: &ReplayRequest) -> String {
        match (&request.events, &request.dead_letter_prefix, &request.raw) {
            (Some(events), _, _) => format!("{} posted events", events.len()),
            (_, Some(prefix), _) => format!("dead letters under {prefix}"),
            (_, _, Some(slice)) => slice.describe(),
            _ => "nothing".to_owned(),
        }
    }

    async fn list(&self, request: &ReplayRequest) -> Result<Listing, FunctionError> {
        let state = self.state()?;
        let limit = replay_page(request.limit)?;
        let after = request.after.as_deref();
        match (&request.events, &request.dead_letter_prefix, &request.raw) {
            (Some(events), _, _) => Ok(Listing {
                names: posted_names(events.len()),
                next: None,
            }),
            (_, Some(prefix), _) => {
                let names = state
                    .inner
                    .dead_letters
                    .list_page(prefix, after, limit)
                    .await?;
                let next = (names.len() == limit)
                    .then(|| names.last().cloned())
                    .flatten();
                Ok(Listing { names, next })
            }
            (_, _, Some(slice)) => {
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
                Ok(Listing { names, next })
            }
            _ => Ok(Listing::default()),
        }
    }

    async fn item(
        &self,
        request: &ReplayRequest,
        name: &str,
    ) -> Result<ItemOutcome, FunctionError> {
        let state = self.state()?;
        match (&request.events, &request.dead_letter_prefix, &request.raw) {
            (Some(events), _, _) => match posted_event(events, name) {
                Some(event) => replay_posted(&state, event).await,
                None => Ok(ItemOutcome::Unreadable(name.to_owned())),
            },
            (_, Some(_), _) => replay_dead_letter(&state, name.to_owned()).await,
            (_, _, Some(_)) => republish_raw(&state, name.to_owned()).await,
            _ => Ok(ItemOutcome::Unreadable(name.to_owned())),
        }
    }

    fn count(report: &mut ReplayReport, item: ItemOutcome) {
        match item {
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

    fn listed(report: &mut ReplayReport, next: Option<String>) {
        report.next_after = next;
    }

    fn live(&self) -> bool {
        self.0.live()
    }
}

/// A posted event gets a message id derived from its content, so posting it twice derives the
/// same `event_id` when it has none.
async fn replay_posted(state: &AppState, event: &Value) -> Result<ItemOutcome, FunctionError> {
    let data = serde_json::to_vec(event).expect("a JSON value always serialises");
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

/// Refuses a dead-letter prefix outside the store, and an `after` outside the prefix.
fn check_dead_letter_prefix(
    state: &AppState,
    prefix: &str,
    after: Option<&str>,
) -> Result<(), FunctionError> {
    state
        .inner
        .dead_letters
        .check_prefix("dead_letter_prefix", prefix)?;
    if after.is_some_and(|after| !after.starts_with(prefix)) {
        return Err(FunctionError::BadRequest(format!(
            "`after` must be a record name under {prefix:?}, as a previous page gave"
        )));
    }
    Ok(())
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
