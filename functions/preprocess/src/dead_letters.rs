//! The dead-letter store over HTTP, for people and `pulse dead-letters`: `GET /dead-letters`
//! counts the records by reason (the first folder under the dead-letter prefix) and shows the
//! newest of each; `GET /dead-letters/record?name=…` (or `?id=<message id>`) reads one, with
//! its message decoded. Every function dead-letters into the same prefix of the raw bucket, so
//! preprocess, which replays them, answers for all.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use base64::Engine as _;
use pulse_shared::delivery::answer::ErrorAnswer;
use pulse_shared::delivery::deadletter::DeadLetterRecord;
use pulse_shared::storage::is_safe_object_name;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::{AppState, FunctionError};

/// Records read for details per reason when the request names no number.
const DEFAULT_NEWEST: usize = 3;
/// Records read for details per reason at most.
const MAX_NEWEST: usize = 50;

/// The query of `GET /dead-letters`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SummaryQuery {
    /// Only the records under this prefix (under the dead-letter prefix), e.g.
    /// `dead-letter/bad_value/2026/12/`.
    pub prefix: Option<String>,
    /// How many of the newest records of each reason to show in detail (default 3, at most 50).
    #[param(minimum = 0)]
    pub newest: Option<usize>,
}

/// What `GET /dead-letters` answers.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterSummary {
    pub prefix: String,
    /// Records under the prefix.
    pub total: u64,
    /// By reason code, the most frequent first.
    pub reasons: Vec<ReasonSummary>,
}

/// The records of one reason.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReasonSummary {
    pub reason: String,
    pub count: u64,
    /// The newest records (by date folder, then name), newest first.
    pub newest: Vec<DeadLetterDetail>,
}

/// One record, as a listing shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterDetail {
    /// The object name: what `/dead-letters/record?name=` and `pulse replay dead-letters` take.
    pub name: String,
    /// The message id (or body hash) the record is named by.
    pub id: String,
    pub function: String,
    pub detail: String,
    pub dead_lettered_at: String,
}

/// The query of `GET /dead-letters/record`: one of the two.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RecordQuery {
    /// The record's object name.
    pub name: Option<String>,
    /// The id it is named by (its message id): the record is looked for under the prefix.
    pub id: Option<String>,
}

/// What `GET /dead-letters/record` answers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterShown {
    pub name: String,
    /// The record as stored: why, when, by which function, and the input.
    #[schema(value_type = Object)]
    pub record: DeadLetterRecord,
    /// The message's data decoded: JSON when it parses, else text; absent when there is none
    /// or it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

/// Counts the dead-letter records by reason and shows the newest of each.
#[utoipa::path(
    get,
    path = "/dead-letters",
    tag = "dead letters",
    params(SummaryQuery),
    responses(
        (status = 200, description = "The records under the prefix, by reason.", body = DeadLetterSummary),
        (status = 400, description = "A prefix outside the dead-letter store: what to fix.", body = ErrorAnswer<'static>),
        (status = 503, description = "The store is unavailable: try again.", body = ErrorAnswer<'static>),
    )
)]
pub async fn summary(
    State(state): State<AppState>,
    Query(query): Query<SummaryQuery>,
) -> Result<Json<DeadLetterSummary>, FunctionError> {
    let store = &state.inner.dead_letters;
    let root = store.prefix().to_owned();
    let prefix = query.prefix.unwrap_or_else(|| root.clone());
    store.check_prefix("prefix", &prefix)?;
    let newest = query.newest.unwrap_or(DEFAULT_NEWEST).min(MAX_NEWEST);
    let names = store.list(&prefix).await?;
    let mut by_reason: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in names {
        let reason = name[root.len()..]
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        by_reason.entry(reason).or_default().push(name);
    }
    let mut summary = DeadLetterSummary {
        prefix,
        ..DeadLetterSummary::default()
    };
    for (reason, mut names) in by_reason {
        // Names sort by date folder: the last are the newest.
        names.sort_unstable();
        let count = names.len() as u64;
        summary.total += count;
        let mut details = Vec::new();
        for name in names.iter().rev().take(newest) {
            if let Some(record) = store.read(name).await? {
                details.push(DeadLetterDetail {
                    id: record_id(name),
                    name: name.clone(),
                    function: record.function,
                    detail: record.detail,
                    dead_lettered_at: record.dead_lettered_at,
                });
            }
        }
        summary.reasons.push(ReasonSummary {
            reason,
            count,
            newest: details,
        });
    }
    summary
        .reasons
        .sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
    Ok(Json(summary))
}

/// Reads one dead-letter record, by object name or message id.
#[utoipa::path(
    get,
    path = "/dead-letters/record",
    tag = "dead letters",
    params(RecordQuery),
    responses(
        (status = 200, description = "The record, with its message's data decoded.", body = DeadLetterShown),
        (status = 400, description = "Neither or both of `name` and `id`, a name outside the store, or no such record: what to fix.", body = ErrorAnswer<'static>),
        (status = 503, description = "The store is unavailable: try again.", body = ErrorAnswer<'static>),
    )
)]
pub async fn record(
    State(state): State<AppState>,
    Query(query): Query<RecordQuery>,
) -> Result<Json<DeadLetterShown>, FunctionError> {
    let store = &state.inner.dead_letters;
    let root = store.prefix();
    let name = match (query.name, query.id) {
        (Some(name), None) => {
            if !name.starts_with(root) || !is_safe_object_name(&name) {
                return Err(FunctionError::BadRequest(format!(
                    "name {name:?} must be an object under {root:?}"
                )));
            }
            name
        }
        (None, Some(id)) => {
            let suffix = format!("/{id}.json");
            store
                .list(root)
                .await?
                .into_iter()
                .rev()
                .find(|name| name.ends_with(&suffix))
                .ok_or_else(|| not_found(&format!("no dead letter has the id {id:?}")))?
        }
        _ => {
            return Err(FunctionError::BadRequest(
                "set exactly one of `name` (the object name) or `id` (the message id)".to_owned(),
            ));
        }
    };
    let record = store
        .read(&name)
        .await?
        .ok_or_else(|| not_found(&format!("there is no dead-letter record {name:?}")))?;
    let data = record
        .message
        .as_ref()
        .and_then(|message| {
            base64::engine::general_purpose::STANDARD
                .decode(&message.data)
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .map(|text| serde_json::from_str(&text).unwrap_or(Value::String(text)));
    Ok(Json(DeadLetterShown { name, record, data }))
}

/// The id a record is named by: its file name without `.json`.
fn record_id(name: &str) -> String {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.strip_suffix(".json").unwrap_or(file).to_owned()
}

/// A record that is not there: the request names something else (400, with what to fix).
fn not_found(message: &str) -> FunctionError {
    FunctionError::BadRequest(format!("{message}; `pulse dead-letters` lists them"))
}
