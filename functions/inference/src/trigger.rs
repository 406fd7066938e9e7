//! `POST /`: a processed event (Eventarc `messagePublished` or a Pub/Sub push body) becomes a
//! prediction row, or a dead letter (`missing_feature`, `bad_prediction`, …), or nothing when its
//! type is not scored. Answered only when the row is committed.

use axum::Json;
use axum::extract::State;
use pulse_shared::delivery::deadletter::DeadLetterRecord;
use pulse_shared::delivery::envelope::PubsubPush;
use pulse_shared::delivery::processed::ProcessedEvent;
use pulse_shared::error::{FunctionError, Rejection};
use pulse_shared::telemetry;
use serde::Serialize;

use crate::score::{Outcome, score_event};
use crate::{AppState, FUNCTION};

/// The answer to a delivery that is done with: 200 either way.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum TriggerResponse {
    Done(Outcome),
    DeadLettered {
        outcome: &'static str,
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
    let outcome = match ProcessedEvent::from_message(&message) {
        Ok(event) => {
            telemetry::record_ids(None, Some(&event.event_id));
            score_event(&state, &event).await?
        }
        Err(rejection) => Outcome::Rejected(rejection),
    };
    match outcome {
        Outcome::Rejected(rejection) => {
            let record = DeadLetterRecord::for_message(
                &rejection,
                FUNCTION,
                &message,
                subscription.as_deref(),
            );
            dead_letter(&state, &rejection, &record).await
        }
        done => Ok(Json(TriggerResponse::Done(done))),
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
        outcome: "dead_lettered",
        reason: rejection.reason.code().to_owned(),
        dead_letter: object,
    }))
}
