//! `POST /`: the Pub/Sub trigger (Eventarc binary or structured CloudEvent, or a push body).

use axum::Json;
use axum::extract::State;
use pulse_shared::delivery::deadletter::DeadLetterRecord;
use pulse_shared::delivery::envelope::PubsubPush;
use pulse_shared::telemetry;
use serde::Serialize;

use crate::ingest::{Ingested, dead_letter, ingest};
use crate::{AppState, FUNCTION, FunctionError};

/// The answer to a delivery that is done with: 200 either way.
#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TriggerResponse {
    Accepted { event_id: String, duplicate: bool },
    DeadLettered { reason: String, dead_letter: String },
}

impl From<Ingested> for TriggerResponse {
    fn from(ingested: Ingested) -> Self {
        match ingested {
            Ingested::Accepted {
                event_id,
                duplicate,
            } => Self::Accepted {
                event_id,
                duplicate,
            },
            Ingested::DeadLettered { reason, object } => Self::DeadLettered {
                reason: reason.code().to_owned(),
                dead_letter: object,
            },
        }
    }
}

pub async fn handle(
    State(state): State<AppState>,
    push: PubsubPush,
) -> Result<Json<TriggerResponse>, FunctionError> {
    let ingested = match push.decoded {
        Ok((_framing, delivery)) => {
            telemetry::record_ids(Some(&delivery.message.message_id), None);
            ingest(&state, &delivery.message, delivery.subscription.as_deref()).await?
        }
        Err(rejection) => {
            let record =
                DeadLetterRecord::for_body(&rejection, FUNCTION, &push.headers, &push.body);
            dead_letter(&state, &rejection, &record).await?
        }
    };
    Ok(Json(ingested.into()))
}
