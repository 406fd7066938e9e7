//! `POST /`: an Eventarc `google.cloud.storage.object.v1.finalized` CloudEvent (binary or
//! structured) for an object in the landing bucket.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use bytes::Bytes;
use pulse_shared::delivery::deadletter::DeadLetterRecord;
use pulse_shared::delivery::envelope::{STORAGE_FINALIZED, decode_storage};
use pulse_shared::error::{FunctionError, Reason, Rejection};
use pulse_shared::storage::is_safe_object_name;
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
        Err(rejection) => return dead_letter(&state, &rejection, &headers, &body).await,
    };
    if !is_safe_object_name(&event.object.name) {
        // Neither loadable nor movable to quarantine by its name: kept for a person instead.
        let rejection = Rejection::new(
            Reason::BadValue,
            format!(
                "object name {:?} has an empty, `.` or `..` part, which the loader does not \
                 address; rename the object",
                event.object.name
            ),
        );
        return dead_letter(&state, &rejection, &headers, &body).await;
    }
    let object = LandingObject {
        bucket: event.object.bucket,
        name: event.object.name,
        generation: Some(event.object.generation),
        size: event.object.size,
    };
    let outcome: Outcome = load_object(&state, &object).await?;
    Ok(Json(serde_json::to_value(outcome).unwrap_or_default()))
}

/// Redelivering the event would fail the same way: it is kept for a person, then acknowledged.
async fn dead_letter(
    state: &AppState,
    rejection: &Rejection,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Json<Value>, FunctionError> {
    let record = DeadLetterRecord::for_body(rejection, FUNCTION, headers, body);
    let object = state.inner.dead_letters.write(&record).await?;
    Ok(Json(json!({
        "outcome": "dead_lettered",
        "reason": rejection.reason.code(),
        "dead_letter": object,
    })))
}
