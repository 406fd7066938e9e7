//! The work for one processed event, shared by the trigger and `POST /predict-replay`: build its
//! instance, get its prediction (in a shared call), and commit its row (in a shared write).

use chrono::Utc;
use pulse_shared::delivery::Handled;
use pulse_shared::delivery::processed::ProcessedEvent;
use pulse_shared::error::{BackendError, Reason, Rejection};
use pulse_shared::warehouse::group_commit::WriteError;
use serde::Serialize;

use crate::AppState;
use crate::coalesce::ScoreError;
use crate::predictions;

/// What became of an event.
#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Its prediction row is committed (or was already there: one row per event id).
    Predicted {
        event_id: String,
        score: Option<f64>,
        label: Option<String>,
        model: Option<String>,
        latency_ms: f64,
    },
    /// Its type is not scored here: nothing to do.
    NotScored { event_type: String },
}

/// Scores one event and stores its prediction, or says why it can never be scored as it is. Err
/// means nothing was stored and the event may succeed when delivered again.
pub async fn score_event(
    state: &AppState,
    event: &ProcessedEvent,
) -> Result<Handled<Outcome>, BackendError> {
    let settings = &state.inner;
    if !settings.features.scores(&event.event_type) {
        return Ok(Handled::Done(Outcome::NotScored {
            event_type: event.event_type.clone(),
        }));
    }
    let prepared = settings
        .features
        .instance(&event.event_type, &event.values)
        .and_then(|instance| Ok((instance, event.text("event_date")?)));
    let (instance, event_date) = match prepared {
        Ok(prepared) => prepared,
        Err(rejection) => return Ok(Handled::Rejected(rejection)),
    };
    let scored = match settings.scorer.score(instance).await {
        Ok(scored) => scored,
        Err(ScoreError::BadPrediction(detail)) => {
            return Ok(Handled::Rejected(Rejection::new(
                Reason::BadPrediction,
                detail,
            )));
        }
        Err(ScoreError::Unavailable(err) | ScoreError::Refused(err)) => return Err(err),
    };
    let row = predictions::row(
        &event.event_id,
        &event.event_type,
        &event_date,
        &scored,
        Utc::now(),
    );
    match settings
        .writers
        .write(&settings.table, event.event_id.clone(), row)
        .await
    {
        Ok(()) => Ok(Handled::Done(Outcome::Predicted {
            event_id: event.event_id.clone(),
            score: scored.prediction.score,
            label: scored.prediction.label,
            model: scored.model,
            latency_ms: scored.latency.as_secs_f64() * 1000.0,
        })),
        // The predictions table has columns the row does not fit (changed by hand): nothing an
        // event can fix, but nothing to lose either — the record keeps the event.
        Err(WriteError::Conflict(detail)) => Ok(Handled::Rejected(Rejection::new(
            Reason::SchemaConflict,
            format!("the predictions table refused the row: {detail}"),
        ))),
        Err(WriteError::Backend(err)) => Err(err),
    }
}
