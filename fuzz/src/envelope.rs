//! `envelope`: whatever reaches a trigger route. Byte 0 picks the framing (the headers a
//! delivery would carry), the rest is the body. A decoded Pub/Sub delivery reads back the same
//! from the plain push body it serialises to (dead-letter replays re-encode it so) and goes on
//! through base64 and normalisation, as preprocess does; a refused body becomes the dead-letter
//! record the function would store, which keeps the body byte for byte in bounded size.

use http::{HeaderMap, HeaderValue};
use pulse_shared::delivery::deadletter::{DeadLetterRecord, MAX_KEPT_BODY};
use pulse_shared::delivery::envelope::{
    PUBSUB_PUBLISHED, STORAGE_FINALIZED, StorageObjectData, decode_pubsub, decode_storage,
};
use pulse_shared::error::Rejection;
use pulse_shared::registry::normalise::{Provenance, normalise};

/// The framings byte 0 chooses from (its value modulo their number).
const FRAMINGS: u8 = 5;

/// The headers of framing `mode`, and whether it carries a Cloud Storage event.
fn headers(mode: u8) -> (HeaderMap, bool) {
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    let storage = matches!(mode % FRAMINGS, 3 | 4);
    match mode % FRAMINGS {
        // Eventarc's binary mode.
        0 | 3 => {
            set("ce-specversion", "1.0");
            set("ce-id", "1");
            set("ce-source", "//pubsub.googleapis.com/projects/p/topics/t");
            set(
                "ce-type",
                if storage {
                    STORAGE_FINALIZED
                } else {
                    PUBSUB_PUBLISHED
                },
            );
            set("content-type", "application/json");
        }
        // A structured CloudEvent.
        1 | 4 => set("content-type", "application/cloudevents+json"),
        // A plain push body.
        _ => set("content-type", "application/json"),
    }
    (headers, storage)
}

/// Checks one input; true when the delivery was decoded.
pub fn check(input: &[u8]) -> bool {
    let Some((&mode, body)) = input.split_first() else {
        return false;
    };
    let (framing, storage) = headers(mode);
    let decoded = if storage {
        decode_storage(&framing, body, STORAGE_FINALIZED).map(|event| check_object(&event.object))
    } else {
        decode_pubsub(&framing, body).map(|(_, delivery)| {
            let (plain, _) = headers(2);
            let reencoded = serde_json::to_vec(&delivery).expect("a delivery serialises");
            let (_, again) = decode_pubsub(&plain, &reencoded)
                .unwrap_or_else(|e| panic!("a decoded delivery, re-encoded, is refused: {e:?}"));
            assert_eq!(again, delivery, "a delivery changed through its push body");
            if let Ok(data) = delivery.message.decode_data() {
                let provenance = Provenance {
                    message_id: &delivery.message.message_id,
                    publish_time: delivery.message.publish_time.as_deref(),
                    ingested_at: chrono::Utc::now(),
                };
                let _ = normalise(&data, &provenance, 1 << 20);
            }
        })
    };
    match decoded {
        Ok(()) => true,
        Err(rejection) => {
            check_dead_letter(&rejection, &framing, body);
            false
        }
    }
}

/// The object of a storage event reads back the same from the JSON it serialises to.
fn check_object(object: &StorageObjectData) {
    let json = serde_json::to_vec(object).expect("an object serialises");
    let again: StorageObjectData =
        serde_json::from_slice(&json).expect("a serialised object reads back");
    assert_eq!(&again, object, "an object changed through JSON");
}

/// The dead-letter record of a refused body keeps the body byte for byte (as text or base64,
/// never as lossy UTF-8, which grew invalid bytes threefold and escaped control characters
/// sixfold) and stays within a third more than the body, plus the reason and headers.
fn check_dead_letter(rejection: &Rejection, headers: &HeaderMap, body: &[u8]) {
    let record = DeadLetterRecord::for_body(rejection, "fuzz", headers, body);
    let json = serde_json::to_vec_pretty(&record).expect("a record serialises");
    let bound = body.len() * 4 / 3 + 4 + rejection.detail.len() * 6 + 4096;
    assert!(
        json.len() <= bound,
        "a {}-byte body made a {}-byte record",
        body.len(),
        json.len()
    );
    let kept = &body[..body.len().min(MAX_KEPT_BODY)];
    assert_eq!(record.body_bytes().as_deref(), Some(kept));
}
