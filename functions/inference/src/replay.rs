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
//! (their source — the archive, or the caller — still has them). A replay runs as a job
//! ([`pulse_shared::jobs`]): one done within half the request timeout answers its report; a
//! longer one answers `202` with the job, watched and cancelled under `/jobs`, which goes on
//! where it stopped after a restart. A transient failure of a short replay answers 503: call
//! again.

use std::collections::BTreeMap;

use async_trait::async_trait;
use axum::extract::{Query, State};
use axum::response::Response;
use pulse_shared::archive::{RawSlice, check_posted, posted_event, posted_names, replay_page};
use pulse_shared::delivery::answer::ErrorAnswer;
use pulse_shared::delivery::processed::ProcessedEvent;
use pulse_shared::delivery::{Handled, answer};
use pulse_shared::error::{FunctionError, Rejection};
use pulse_shared::jobs::{self, JobView, Listing, Replay, ReplayJobs, WaitQuery};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::score::{Outcome, score_event};
use crate::{AppState, Settings};

/// How many events a replay scores at once (they share predict calls and writes).
const CONCURRENCY: usize = 64;

/// Rejections listed one by one in a report, at most.
const LISTED_REJECTIONS: usize = 100;

/// A replay request: set exactly one source.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictReplayRequest {
    /// Processed events to score (at most 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub events: Option<Vec<Value>>,
    /// A slice of the raw archive to score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawSlice>,
    /// Objects per page of a slice: at most (and by default) [`pulse_shared::archive::MAX_REPLAY_PAGE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Where the page starts: the `next_after` of the answer before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// One event that could not be scored.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct RejectedEvent {
    pub event_id: Option<String>,
    pub reason: String,
    pub detail: String,
}

/// What a replay did.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
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

pub(crate) enum Item {
    Scored(Option<String>, Handled<Outcome>),
    Unreadable(String),
}

/// Re-scores events: posted, or from the raw archive.
#[utoipa::path(
    post,
    path = "/predict-replay",
    tag = "replay",
    params(WaitQuery),
    request_body = PredictReplayRequest,
    responses(
        (status = 200, description = "Done within the request.", body = PredictReplayReport),
        (status = 202, description = "Going on as a job; `Location` names it. Its `report` has the shape of `PredictReplayReport`.", body = JobView),
        (status = 400, description = "Not a replay request: what to fix.", body = ErrorAnswer<'static>),
        (status = 503, description = "A backend is unavailable: nothing is lost, call again.", body = ErrorAnswer<'static>),
    )
)]
pub async fn handle(
    jobs: State<ReplayJobs>,
    query: Query<WaitQuery>,
    request: answer::Json<PredictReplayRequest>,
) -> Result<Response, FunctionError> {
    jobs::replay::<PredictReplay>(jobs, query, request).await
}

/// Replays as inference runs them, event by event, on the function's state held weakly.
pub(crate) struct PredictReplay(pub(crate) jobs::Owned<Settings>);

impl PredictReplay {
    fn state(&self) -> Result<AppState, FunctionError> {
        self.0.state().map(|inner| AppState { inner })
    }
}

#[async_trait]
impl Replay for PredictReplay {
    type Request = PredictReplayRequest;
    type Report = PredictReplayReport;
    type Item = Item;
    const CONCURRENCY: usize = CONCURRENCY;

    fn check(&self, request: &PredictReplayRequest) -> Result<(), FunctionError> {
        replay_page(request.limit)?;
        match (&request.events, &request.raw) {
            (Some(events), None) => check_posted(events.len()),
            (None, Some(slice)) => slice.check(),
            _ => Err(FunctionError::BadRequest(
                "set exactly one of `events` or `raw`".to_owned(),
            )),
        }
    }

    fn describe(&self, request: &PredictReplayRequest) -> String {
        match (&request.events, &request.raw) {
            (Some(events), _) => format!("{} posted events", events.len()),
            (_, Some(slice)) => slice.describe(),
            _ => "nothing".to_owned(),
        }
    }

    async fn list(&self, request: &PredictReplayRequest) -> Result<Listing, FunctionError> {
        let state = self.state()?;
        match (&request.events, &request.raw) {
            (Some(events), _) => Ok(Listing {
                names: posted_names(events.len()),
                next: None,
            }),
            (_, Some(slice)) => {
                let config = &state.inner.config;
                let (names, next) = slice
                    .list_page(
                        &*state.inner.objects,
                        &config.raw_bucket,
                        &config.raw_prefix,
                        request.after.as_deref(),
                        replay_page(request.limit)?,
                    )
                    .await?;
                Ok(Listing { names, next })
            }
            _ => Ok(Listing::default()),
        }
    }

    async fn item(
        &self,
        request: &PredictReplayRequest,
        name: &str,
    ) -> Result<Item, FunctionError> {
        let state = self.state()?;
        match (&request.events, &request.raw) {
            (Some(events), _) => match posted_event(events, name) {
                Some(event) => score_value(&state, event.clone()).await,
                None => Ok(Item::Unreadable(name.to_owned())),
            },
            _ => score_archived(&state, name.to_owned()).await,
        }
    }

    fn count(report: &mut PredictReplayReport, item: Item) {
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

    fn listed(report: &mut PredictReplayReport, next: Option<String>) {
        report.next_after = next;
    }

    fn live(&self) -> bool {
        self.0.live()
    }
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
