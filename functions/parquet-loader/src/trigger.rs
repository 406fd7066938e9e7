//! `POST /`: an Eventarc `google.cloud.storage.object.v1.finalized` CloudEvent (binary or
//! structured) for an object in the landing bucket.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use bytes::Bytes;
use pulse_shared::deadletter::DeadLetterRecord;
use pulse_shared::envelope::{STORAGE_FINALIZED, decode_storage};
use pulse_shared::error::FunctionError;
use serde_json::{Value, json};

use crate::load::{LandingObject, Outcome, load_object};
use crate::{AppState, FUNCTION};

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, FunctionError> {
    let event = match decode_storage(&headers, &body, STORAGE_FINALIZED) {
        Ok(event) => event,
        Err(rejection) => {
            // Redelivering it would fail the same way: keep it for a person, then acknowledge.
            let record = DeadLetterRecord::for_body(&rejection, FUNCTION, &headers, &body);
            let object = state.inner.dead_letters.write(&record).await?;
            return Ok(Json(json!({
                "outcome": "dead_lettered",
                "reason": rejection.reason.code(),
                "dead_letter": object,
            })));
        }
    };
    let object = LandingObject {
        bucket: event.object.bucket,
        name: event.object.name,
        generation: Some(event.object.generation),
        size: event.object.size,
    };
    let outcome: Outcome = load_object(&state, &object).await?;
    Ok(Json(serde_json::to_value(outcome).unwrap_or_default()))
}
