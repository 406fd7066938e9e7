//! `POST /compact`: removes the physical repeats of an id from closed partitions of the event
//! tables and the predictions table, keeping each id's first row. Today's partition takes
//! streamed rows (on BigQuery, rows in the streaming buffer cannot be changed at all), so a
//! range reaching it is refused. Cloud Scheduler calls this daily with an empty body: every
//! table, the last [`DEFAULT_DAYS`] closed days.

use axum::Json;
use axum::extract::State;
use chrono::{Days, NaiveDate, Utc};
use pulse_shared::delivery::answer;
use pulse_shared::delivery::answer::ErrorAnswer;
use pulse_shared::error::FunctionError;
use pulse_shared::namespace::{LOAD_PREFIX, UNIQUE_VIEW_PREFIX};
use pulse_shared::warehouse::dedup::{EVENT_ROWS, PREDICTION_ROWS};
use pulse_shared::warehouse::{Compaction, DateRange, RowIdentity, TableSpec};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;

/// Closed days compacted when the request names none: late events and redeliveries of the
/// past week land in these.
pub const DEFAULT_DAYS: u64 = 7;

/// The body of `POST /compact`; every field may be left out.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompactRequest {
    /// One table (an event table or the predictions table); every such table when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// First partition date (default: [`DEFAULT_DAYS`] days before `to`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<NaiveDate>,
    /// Last partition date, before today (default: yesterday, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<NaiveDate>,
}

/// What `POST /compact` did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CompactReport {
    /// Per table: `table`, `from`, `to`, `duplicated_ids`, `rows_removed`.
    #[schema(value_type = Vec<Object>)]
    pub tables: Vec<Compaction>,
    /// Rows removed from all tables.
    pub rows_removed: u64,
}

/// Removes repeated rows of an id from closed partitions, keeping each id's first row.
#[utoipa::path(
    post,
    path = "/compact",
    tag = "tables",
    request_body(content = Option<CompactRequest>, description = "Optional: without a body, every table, the last 7 closed days."),
    responses(
        (status = 200, body = CompactReport),
        (status = 400, description = "A bad range or table: what to fix.", body = ErrorAnswer<'static>),
        (status = 503, description = "The warehouse is unavailable: try again.", body = ErrorAnswer<'static>),
    )
)]
pub async fn handle(
    State(state): State<AppState>,
    body: Option<answer::Json<CompactRequest>>,
) -> Result<Json<CompactReport>, FunctionError> {
    let request = body.map(|answer::Json(body)| body).unwrap_or_default();
    let dates = closed_dates(&request, Utc::now().date_naive())?;
    let warehouse = &state.inner.warehouse;
    let predictions = &state.inner.config.prediction.table;
    let targets: Vec<(String, RowIdentity)> = match &request.table {
        Some(name) => {
            let spec = warehouse.table(name).await?.ok_or_else(|| {
                FunctionError::BadRequest(format!("there is no table {name:?} to compact"))
            })?;
            let identity = identity(&spec, predictions).ok_or_else(|| {
                FunctionError::BadRequest(format!(
                    "{name:?} is neither an event table nor the predictions table; only those \
                     carry an event_id to tell repeats by"
                ))
            })?;
            vec![(spec.name, identity)]
        }
        None => warehouse
            .list_tables()
            .await?
            .into_iter()
            .filter_map(|table| {
                Some((table.spec.name.clone(), identity(&table.spec, predictions)?))
            })
            .collect(),
    };
    let mut tables = Vec::with_capacity(targets.len());
    for (table, identity) in targets {
        let compaction = warehouse.compact(&table, identity, dates).await?;
        tracing::info!(
            table,
            from = %dates.from,
            to = %dates.to,
            duplicated_ids = compaction.duplicated_ids,
            rows_removed = compaction.rows_removed,
            "compacted"
        );
        tables.push(compaction);
    }
    let rows_removed = tables.iter().map(|c| c.rows_removed).sum();
    Ok(Json(CompactReport {
        tables,
        rows_removed,
    }))
}

/// The requested dates, all before `today`.
fn closed_dates(request: &CompactRequest, today: NaiveDate) -> Result<DateRange, FunctionError> {
    let yesterday = today - Days::new(1);
    let to = request.to.unwrap_or(yesterday);
    let from = request.from.unwrap_or(to - Days::new(DEFAULT_DAYS - 1));
    if to >= today {
        return Err(FunctionError::BadRequest(format!(
            "`to` {to} reaches today's partition ({today}), which still takes streamed rows; \
             compaction covers closed days only, up to {yesterday}"
        )));
    }
    if from > to {
        return Err(FunctionError::BadRequest(format!(
            "`from` {from} is after `to` {to}"
        )));
    }
    Ok(DateRange { from, to })
}

/// How the rows of `table` are told apart, when it is a table whose rows carry an event id: the
/// predictions table, or an event table (every event table has `ingested_at`; loads and views,
/// whatever their columns, are not event tables).
fn identity(table: &TableSpec, predictions: &str) -> Option<RowIdentity> {
    if table.name == predictions {
        return Some(PREDICTION_ROWS);
    }
    let has = |column: &str| table.column(column).is_some();
    let owned_by_others = [LOAD_PREFIX, UNIQUE_VIEW_PREFIX]
        .iter()
        .any(|prefix| table.name.starts_with(prefix));
    (!owned_by_others && has(EVENT_ROWS.key) && has(EVENT_ROWS.first_by)).then_some(EVENT_ROWS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_stop_before_today() {
        let today = day("2026-12-05");
        let default = closed_dates(&CompactRequest::default(), today).unwrap();
        assert_eq!(
            default,
            DateRange {
                from: day("2026-11-28"),
                to: day("2026-12-04")
            }
        );
        let today_included = CompactRequest {
            to: Some(today),
            ..CompactRequest::default()
        };
        assert!(closed_dates(&today_included, today).is_err());
        let reversed = CompactRequest {
            from: Some(day("2026-12-03")),
            to: Some(day("2026-12-01")),
            ..CompactRequest::default()
        };
        assert!(closed_dates(&reversed, today).is_err());
    }
}
