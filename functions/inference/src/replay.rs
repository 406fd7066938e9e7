//! `POST /predict-replay`: re-score events by hand, with exactly one source:
//! - `{"events": [ … ]}`: processed events posted directly;
//! - `{"raw": {"event_type": "device_telemetry", "from": "…", "to": "…"}}`: a slice of the raw
//!   archive (event time in `[from, to)`).
//!
//! A slice is worked through a page at a time, as preprocess's `/replay` does (`limit`, `after`,
//! and the answer's `next_after`); at most 1,000 events may be posted at once.
//!
//! Each event goes through the same path as a delivery (shared predict calls, shared writes).
//! An event that already has a prediction row keeps it (one row per event id), so calling this
//! twice is safe; events that cannot be scored are reported in the answer, not dead-lettered
//! (their source — the archive, or the caller — still has them). A transient failure answers
//! 503: call again.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use pulse_shared::archive::{RawSlice, check_posted, replay_page};
use pulse_shared::delivery::processed::ProcessedEvent;
use pulse_shared::delivery::{Handled, answer};
use pulse_shared::error::{FunctionError, Rejection};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::AppState;
use crate::score::{Outcome, score_event};

/// How many events a replay scores at once (they share predict calls and writes).
const CONCURRENCY: usize = 64;

/// Rejections listed one by one in a report, at most.
const LISTED_REJECTIONS: usize = 100;

/// A replay request: set exactly one source.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictReplayRequest {
    #[serde(default)]
    pub events: Option<Vec<Value>>,
    #[serde(default)]
    pub raw: Option<RawSlice>,
    /// Objects per page of a slice: at most (and by default) [`pulse_shared::archive::MAX_REPLAY_PAGE`].
    #[serde(default)]
    pub limit: Option<usize>,
    /// Where the page starts: the `next_after` of the answer before.
    #[serde(default)]
    pub after: Option<String>,
}

/// One event that could not be scored.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RejectedEvent {
    pub event_id: Option<String>,
    pub reason: String,
    pub detail: String,
}

/// What a replay did.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PredictReplayReport {
    /// Events whose prediction row is now stored (new, or already there).
    pub predicted: u64,
    /// Events of types that are not scored.
    pub not_scored: u64,
    /// Events that cannot be scored, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// The first of them, with what is wrong.
    pub rejections: Vec<RejectedEvent>,
    /// Archive objects that are not a JSON event, left where they are.
    pub unreadable: Vec<String>,
    /// Set when more of the slice may follow this page: ask again with `after` set to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

enum Item {
    Scored(Option<String>, Handled<Outcome>),
    Unreadable(String),
}

pub async fn handle(
    State(state): State<AppState>,
    answer::Json(request): answer::Json<PredictReplayRequest>,
) -> Result<Json<PredictReplayReport>, FunctionError> {
    let limit = replay_page(request.limit)?;
    let (items, next_after): (Vec<Item>, _) = match (request.events, request.raw) {
        (Some(events), None) => {
            check_posted(events.len())?;
            let items = stream::iter(events)
                .map(|event| score_value(&state, event))
                .buffer_unordered(CONCURRENCY)
                .try_collect()
                .await?;
            (items, None)
        }
        (None, Some(slice)) => {
            let config = &state.inner.config;
            let (names, next) = slice
                .list_page(
                    &*state.inner.objects,
                    &config.raw_bucket,
                    &config.raw_prefix,
                    request.after.as_deref(),
                    limit,
                )
                .await?;
            let items = stream::iter(names)
                .map(|name| score_archived(&state, name))
                .buffer_unordered(CONCURRENCY)
                .try_collect()
                .await?;
            (items, next)
        }
        _ => {
            return Err(FunctionError::BadRequest(
                "set exactly one of `events` or `raw`".to_owned(),
            ));
        }
    };
    let mut report = PredictReplayReport {
        next_after,
        ..PredictReplayReport::default()
    };
    for item in items {
        match item {
            Item::Scored(_, Handled::Done(Outcome::Predicted { .. })) => report.predicted += 1,
            Item::Scored(_, Handled::Done(Outcome::NotScored { .. })) => report.not_scored += 1,
            Item::Scored(event_id, Handled::Rejected(Rejection { reason, detail })) => {
                *report.rejected.entry(reason.code().to_owned()).or_default() += 1;
                if report.rejections.len() < LISTED_REJECTIONS {
                    report.rejections.push(RejectedEvent {
                        event_id,
                        reason: reason.code().to_owned(),
                        detail,
                    });
                }
            }
            Item::Unreadable(name) => report.unreadable.push(name),
        }
    }
    tracing::info!(?report, "predict replay done");
    Ok(Json(report))
}

async fn score_value(state: &AppState, event: Value) -> Result<Item, FunctionError> {
    let event_id = event
        .get("event_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let checked = match event {
        Value::Object(values) => ProcessedEvent::from_values(values),
        _ => ProcessedEvent::from_values(Map::new()),
    };
    let outcome = match checked {
        Ok(event) => score_event(state, &event).await?,
        Err(rejection) => Handled::Rejected(rejection),
    };
    Ok(Item::Scored(event_id, outcome))
}

async fn score_archived(state: &AppState, name: String) -> Result<Item, FunctionError> {
    let config = &state.inner.config;
    let Some(bytes) = state.inner.objects.read(&config.raw_bucket, &name).await? else {
        return Ok(Item::Unreadable(name));
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(event @ Value::Object(_)) => score_value(state, event).await,
        _ => Ok(Item::Unreadable(name)),
    }
}
