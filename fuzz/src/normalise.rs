//! `normalise`: an event's bytes, as the `data` of a message. What normalisation accepts,
//! serde_json reads as an object too (the borrowing tree claims serde_json's strictness); what it
//! writes is the input's members plus the normalised fields, reads back as JSON, holds a time both
//! warehouses and the archive's paths can hold, and normalises again to the same bytes.

use pulse_shared::error::Reason;
use pulse_shared::registry::normalise::{Provenance, normalise};
use serde_json::{Map, Value};

/// The members normalisation adds or rewrites.
const ADDED: [&str; 6] = [
    "event_id",
    "timestamp",
    "event_date",
    "ingested_at",
    "message_id",
    "publish_time",
];

/// Checks one input; true when the event was accepted.
pub fn check(data: &[u8]) -> bool {
    let provenance = Provenance {
        message_id: "fuzz-1",
        publish_time: Some("2026-12-05T10:00:00Z"),
        ingested_at: chrono::DateTime::from_timestamp(1_764_928_800, 0).expect("a valid time"),
    };
    let reference = serde_json::from_slice::<Map<String, Value>>(data);
    match normalise(data, &provenance, 1 << 20) {
        Ok(event) => {
            let input = reference.expect("normalise accepted what serde_json refuses");
            let output: Map<String, Value> =
                serde_json::from_slice(event.json()).expect("the output is a JSON object");
            for (name, value) in &input {
                if !ADDED.contains(&name.as_str()) {
                    assert_eq!(output.get(name), Some(value), "member `{name}` changed");
                }
            }
            for name in output.keys() {
                assert!(
                    input.contains_key(name) || ADDED.contains(&name.as_str()),
                    "member `{name}` appeared"
                );
            }
            let year = event.timestamp.format("%Y").to_string();
            assert_eq!(year.len(), 4, "an event of year {year} was accepted");
            let again = normalise(event.json(), &provenance, 1 << 20)
                .expect("a normalised event normalises again");
            assert_eq!(again.json(), event.json());
            true
        }
        Err(rejection) => {
            if rejection.reason == Reason::BadJson {
                assert!(
                    reference.is_err(),
                    "normalise refused JSON that serde_json reads: {}",
                    rejection.detail
                );
            }
            false
        }
    }
}
