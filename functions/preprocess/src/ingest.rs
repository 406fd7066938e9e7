//! One message through preprocess: validate and normalise, then archive and publish; what can
//! never succeed is handed back to be dead-lettered. Used by the trigger and by replay alike.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::Utc;
use pulse_shared::archive::minute_path;
use pulse_shared::delivery::Handled;
use pulse_shared::delivery::envelope::PushMessage;
use pulse_shared::error::BackendError;
use pulse_shared::publish::OutgoingMessage;
use pulse_shared::registry::normalise::{NormalisedEvent, Provenance, normalise};
use pulse_shared::storage::Created;
use pulse_shared::telemetry;

use serde::Serialize;

use crate::AppState;

/// What became of a valid message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Ingested {
    /// Archived (or found already archived: a redelivery) and published.
    Accepted { event_id: String, duplicate: bool },
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
) -> Result<Handled<Ingested>, BackendError> {
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
            Ok(Handled::Done(archive_and_publish(state, &event).await?))
        }
        Err(rejection) => Ok(Handled::Rejected(rejection)),
    }
}

/// Writes the event to the raw archive unless it is there, then publishes it. Publishing again
/// on a redelivery is deliberate: the first attempt may have stopped between the two, and
/// downstream drops repeats by `event_id`.
async fn archive_and_publish(
    state: &AppState,
    event: &NormalisedEvent,
) -> Result<Ingested, BackendError> {
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
) -> Result<(), BackendError> {
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
