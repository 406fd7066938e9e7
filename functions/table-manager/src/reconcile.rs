//! `POST /reconcile`: the raw archive (the record of every accepted event) against the event
//! table, for one event type and a range of event time. Walks the range an hour at a time, so
//! memory holds one hour's ids and what is wrong, never the whole range: each hour lists the
//! archive's objects under that hour and counts the table's rows per id in the same hour.

use std::collections::{BTreeMap, HashSet};

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Duration, DurationRound, Utc};
use pulse_shared::archive::{RawSlice, event_id_of};
use pulse_shared::delivery::answer;
use pulse_shared::delivery::answer::ErrorAnswer;
use pulse_shared::error::FunctionError;
use pulse_shared::namespace;
use pulse_shared::warehouse::TimeWindow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;

/// How much event time one page covers.
pub const PAGE: Duration = Duration::hours(1);

/// The body of `POST /reconcile`: an event type and event time in `[from, to)`, whole minutes
/// (the archive files events by the minute).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    pub event_type: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// What the archive and the table hold for the range.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reconciliation {
    /// Events in the raw archive.
    pub archived: u64,
    /// Distinct event ids in the table.
    pub stored: u64,
    /// Archived events with no row, sorted.
    pub missing: Vec<String>,
    /// Event ids with more than one row, and how many rows each has.
    pub duplicated: BTreeMap<String, u64>,
    /// Rows whose event is not in the archive (written around preprocess), sorted.
    pub unexpected: Vec<String>,
}

impl Reconciliation {
    /// Adds a later page's findings.
    pub fn merge(&mut self, page: Reconciliation) {
        self.archived += page.archived;
        self.stored += page.stored;
        self.missing.extend(page.missing);
        self.duplicated.extend(page.duplicated);
        self.unexpected.extend(page.unexpected);
    }

    /// Nothing missing, doubled or unexpected.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.duplicated.is_empty() && self.unexpected.is_empty()
    }
}

impl ReconcileRequest {
    /// The range in pages of [`PAGE`], the first and last cut at `from` and `to`.
    pub fn pages(&self) -> Vec<ReconcileRequest> {
        let mut pages = Vec::new();
        let mut from = self.from;
        while from < self.to {
            let next = (from.duration_trunc(PAGE).unwrap_or(from) + PAGE).min(self.to);
            pages.push(ReconcileRequest {
                event_type: self.event_type.clone(),
                from,
                to: next,
            });
            from = next;
        }
        pages
    }

    fn check(&self) -> Result<(), FunctionError> {
        if self.from >= self.to {
            return Err(FunctionError::BadRequest(
                "`from` must be before `to`".to_owned(),
            ));
        }
        let whole_minute =
            |t: &DateTime<Utc>| t.duration_trunc(Duration::minutes(1)).ok() == Some(*t);
        if !whole_minute(&self.from) || !whole_minute(&self.to) {
            return Err(FunctionError::BadRequest(
                "`from` and `to` must be whole minutes: the archive files events by the minute"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

/// Compares the raw archive with the event table for one type and range of event time.
#[utoipa::path(
    post,
    path = "/reconcile",
    tag = "tables",
    request_body = ReconcileRequest,
    responses(
        (status = 200, body = Reconciliation),
        (status = 400, description = "A bad type or range: what to fix.", body = ErrorAnswer<'static>),
        (status = 503, description = "A backend is unavailable: try again.", body = ErrorAnswer<'static>),
    )
)]
pub async fn handle(
    State(state): State<AppState>,
    answer::Json(request): answer::Json<ReconcileRequest>,
) -> Result<Json<Reconciliation>, FunctionError> {
    request.check()?;
    let mut report = Reconciliation::default();
    for page in request.pages() {
        report.merge(reconcile_page(&state, &page).await?);
    }
    tracing::info!(
        event_type = %request.event_type,
        archived = report.archived,
        stored = report.stored,
        missing = report.missing.len(),
        duplicated = report.duplicated.len(),
        unexpected = report.unexpected.len(),
        "reconciled"
    );
    Ok(Json(report))
}

async fn reconcile_page(
    state: &AppState,
    page: &ReconcileRequest,
) -> Result<Reconciliation, FunctionError> {
    let config = &state.inner.config;
    let slice = RawSlice {
        event_type: page.event_type.clone(),
        from: page.from,
        to: page.to,
        event_ids: None,
    };
    let names = slice
        .list(
            &*state.inner.objects,
            &config.raw_bucket,
            &config.raw_prefix,
        )
        .await?;
    let archived: HashSet<String> = names
        .iter()
        .filter_map(|name| event_id_of(name).map(str::to_owned))
        .collect();
    let table = namespace::event_table(&page.event_type);
    let warehouse = &state.inner.warehouse;
    let stored = match warehouse.table(&table).await? {
        Some(_) => {
            let window = TimeWindow {
                from: page.from,
                to: page.to,
            };
            warehouse.id_counts(&table, window).await?
        }
        None => Vec::new(),
    };
    let mut report = Reconciliation {
        archived: archived.len() as u64,
        stored: stored.len() as u64,
        ..Reconciliation::default()
    };
    let mut seen = HashSet::with_capacity(stored.len());
    for (id, copies) in stored {
        if copies > 1 {
            report.duplicated.insert(id.clone(), copies);
        }
        if !archived.contains(&id) {
            report.unexpected.push(id.clone());
        }
        seen.insert(id);
    }
    report.missing = archived
        .into_iter()
        .filter(|id| !seen.contains(id))
        .collect();
    report.missing.sort_unstable();
    report.unexpected.sort_unstable();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn pages_follow_the_hours_and_cover_the_range_once() {
        let request = ReconcileRequest {
            event_type: "order".to_owned(),
            from: at("2026-12-01T10:30:00Z"),
            to: at("2026-12-01T12:15:00Z"),
        };
        let bounds: Vec<(DateTime<Utc>, DateTime<Utc>)> =
            request.pages().iter().map(|p| (p.from, p.to)).collect();
        assert_eq!(
            bounds,
            [
                (at("2026-12-01T10:30:00Z"), at("2026-12-01T11:00:00Z")),
                (at("2026-12-01T11:00:00Z"), at("2026-12-01T12:00:00Z")),
                (at("2026-12-01T12:00:00Z"), at("2026-12-01T12:15:00Z")),
            ]
        );
    }
}
