//! One message through preprocess: validate and normalise, then archive and publish, or
//! dead-letter. Used by the trigger and by replay alike.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::Utc;
use pulse_shared::archive::minute_path;
use pulse_shared::delivery::deadletter::DeadLetterRecord;
use pulse_shared::delivery::envelope::PushMessage;
use pulse_shared::error::{Reason, Rejection};
use pulse_shared::publish::OutgoingMessage;
use pulse_shared::registry::{NormalisedEvent, Provenance, normalise};
use pulse_shared::storage::Created;
use pulse_shared::telemetry;

use crate::{AppState, FUNCTION, FunctionError};

/// What became of a message. Either way it may be acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ingested {
    /// Archived (or found already archived: a redelivery) and published.
    Accepted { event_id: String, duplicate: bool },
    /// It can never succeed; its record is at `object` in the dead-letter store.
    DeadLettered { reason: Reason, object: String },
}

/// The raw archive object of an event: `<prefix><event_type>/YYYY/MM/DD/HH/MM/<event_id>.json`,
/// dated by the event's own (UTC) timestamp, so every redelivery finds the same object.
pub fn raw_object_name(prefix: &str, event: &NormalisedEvent) -> String {
    format!(
        "{prefix}{}/{}{}.json",
        event.event_type,
        minute_path(event.timestamp),
        event.event_id
    )
}

/// Validates, normalises and stores one Pub/Sub message.
pub async fn ingest(
    state: &AppState,
    message: &PushMessage,
    subscription: Option<&str>,
) -> Result<Ingested, FunctionError> {
    let provenance = Provenance {
        message_id: &message.message_id,
        publish_time: message.publish_time.as_deref(),
        ingested_at: Utc::now(),
    };
    let normalised = message
        .decode_data()
        .and_then(|data| normalise(&data, &provenance, state.config().max_event_bytes));
    match normalised {
        Ok(event) => {
            telemetry::record_ids(None, Some(&event.event_id));
            archive_and_publish(state, &event).await
        }
        Err(rejection) => {
            let record = DeadLetterRecord::for_message(&rejection, FUNCTION, message, subscription);
            dead_letter(state, &rejection, &record).await
        }
    }
}

/// Writes the event to the raw archive unless it is there, then publishes it. Publishing again
/// on a redelivery is deliberate: the first attempt may have stopped between the two, and
/// downstream drops repeats by `event_id`.
async fn archive_and_publish(
    state: &AppState,
    event: &NormalisedEvent,
) -> Result<Ingested, FunctionError> {
    let config = state.config();
    let json = event.json().clone();
    let created = state
        .inner
        .objects
        .create_if_absent(
            &config.raw_bucket,
            &raw_object_name(&config.raw_prefix, event),
            json.clone(),
            "application/json",
        )
        .await?;
    publish_processed(state, json, &event.event_type, &event.event_id).await?;
    Ok(Ingested::Accepted {
        event_id: event.event_id.clone(),
        duplicate: created == Created::AlreadyExisted,
    })
}

/// Publishes a normalised event to the processed topic, with `event_type` and `event_id`
/// attributes for subscription filters.
pub async fn publish_processed(
    state: &AppState,
    json: Bytes,
    event_type: &str,
    event_id: &str,
) -> Result<(), FunctionError> {
    let attributes = BTreeMap::from([
        ("event_type".to_owned(), event_type.to_owned()),
        ("event_id".to_owned(), event_id.to_owned()),
    ]);
    state
        .inner
        .publisher
        .publish(
            &state.config().processed_topic,
            OutgoingMessage {
                data: json,
                attributes,
            },
        )
        .await?;
    Ok(())
}

/// Stores the dead-letter record; only then may the input be acknowledged.
pub async fn dead_letter(
    state: &AppState,
    rejection: &Rejection,
    record: &DeadLetterRecord,
) -> Result<Ingested, FunctionError> {
    let object = state.inner.dead_letters.write(record).await?;
    Ok(Ingested::DeadLettered {
        reason: rejection.reason,
        object,
    })
}
