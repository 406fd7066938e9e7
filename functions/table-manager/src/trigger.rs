//! `POST /`: a processed event (Eventarc binary or structured CloudEvent, or a Pub/Sub push
//! body) becomes a row in the table of its type, or a dead letter.

use axum::Json;
use axum::extract::State;
use pulse_shared::delivery::deadletter::DeadLetterRecord;
use pulse_shared::delivery::envelope::PubsubPush;
use pulse_shared::delivery::processed::ProcessedEvent;
use pulse_shared::error::{FunctionError, Reason, Rejection};
use pulse_shared::telemetry;
use pulse_shared::warehouse::group_commit::WriteError;
use serde::Serialize;

use crate::{AppState, FUNCTION, event_table};

/// The answer to a delivery that is done with: 200 either way.
#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TriggerResponse {
    /// The row is committed (or was already there: repeats are dropped by id).
    Written {
        table: String,
        event_id: String,
    },
    DeadLettered {
        reason: String,
        dead_letter: String,
    },
}

pub async fn handle(
    State(state): State<AppState>,
    push: PubsubPush,
) -> Result<Json<TriggerResponse>, FunctionError> {
    let (message, subscription) = match push.decoded {
        Ok((_framing, delivery)) => (delivery.message, delivery.subscription),
        Err(rejection) => {
            let record =
                DeadLetterRecord::for_body(&rejection, FUNCTION, &push.headers, &push.body);
            return dead_letter(&state, &rejection, &record).await;
        }
    };
    telemetry::record_ids(Some(&message.message_id), None);
    let rejected = |rejection: Rejection| {
        let record =
            DeadLetterRecord::for_message(&rejection, FUNCTION, &message, subscription.as_deref());
        (rejection, record)
    };
    let ProcessedEvent {
        event_type,
        event_id,
        values,
    } = match ProcessedEvent::from_message(&message) {
        Ok(event) => event,
        Err(rejection) => {
            let (rejection, record) = rejected(rejection);
            return dead_letter(&state, &rejection, &record).await;
        }
    };
    telemetry::record_ids(None, Some(&event_id));
    if let Err(rejection) = state.inner.event_types.admit(&event_type).await? {
        let (rejection, record) = rejected(rejection);
        return dead_letter(&state, &rejection, &record).await;
    }
    match state
        .inner
        .writers
        .write(&event_type, event_id.clone(), values)
        .await
    {
        Ok(()) => Ok(Json(TriggerResponse::Written {
            table: event_table::table_name(&event_type),
            event_id,
        })),
        Err(WriteError::Conflict(detail)) => {
            let (rejection, record) = rejected(Rejection::new(Reason::SchemaConflict, detail));
            dead_letter(&state, &rejection, &record).await
        }
        Err(WriteError::Backend(err)) => Err(err.into()),
    }
}

/// Stores the dead-letter record; only then may the delivery be acknowledged.
async fn dead_letter(
    state: &AppState,
    rejection: &Rejection,
    record: &DeadLetterRecord,
) -> Result<Json<TriggerResponse>, FunctionError> {
    let object = state.inner.dead_letters.write(record).await?;
    Ok(Json(TriggerResponse::DeadLettered {
        reason: rejection.reason.code().to_owned(),
        dead_letter: object,
    }))
}
