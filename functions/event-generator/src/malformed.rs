//! Malformed events, one way of breaking a valid event per dead-letter reason a publisher can
//! cause. `bad_envelope` and `bad_base64` are not among them: Pub/Sub (and the local bus) build
//! the envelope and encode the data themselves, so no published message can carry either.

use pulse_shared::error::Reason;
use pulse_shared::registry::catalogue::{FieldKind, known_type};
use rand::Rng;
use rand::seq::IndexedRandom as _;
use serde_json::{Map, Value, json};

/// Every reason a published message can be dead-lettered for, in the order malformed messages
/// cycle through them.
pub const PUBLISHABLE_REASONS: [Reason; 6] = [
    Reason::BadJson,
    Reason::MissingField,
    Reason::BadFieldType,
    Reason::BadValue,
    Reason::InvalidEventType,
    Reason::TooLarge,
];

/// Breaks a valid event of a known type so preprocess rejects it with `reason`.
/// `max_event_bytes` is the size limit the receiving preprocess enforces.
pub(crate) fn break_event(
    rng: &mut impl Rng,
    reason: Reason,
    mut fields: Map<String, Value>,
    event_type: &str,
    max_event_bytes: usize,
) -> Vec<u8> {
    let specs = known_type(event_type).map_or(&[][..], |spec| spec.fields);
    match reason {
        Reason::BadJson => {
            // A producer that died mid-write: any proper prefix of a JSON object is not JSON.
            let text = serialise(&fields);
            let cut = rng.random_range(1..text.len());
            return text[..cut].to_vec();
        }
        Reason::MissingField => {
            let required: Vec<&str> = specs
                .iter()
                .filter(|f| f.required)
                .map(|f| f.name)
                .chain(["timestamp"])
                .collect();
            let name = required.choose(rng).copied().unwrap_or("timestamp");
            fields.remove(name);
        }
        Reason::BadFieldType => {
            // Numbers sent as strings and ids sent as numbers: the usual producer bugs.
            if let Some(spec) = specs.choose(rng) {
                let wrong = match (spec.kind, fields.get(spec.name)) {
                    (FieldKind::String, _) => json!(rng.random_range(1_000..99_999)),
                    (_, Some(value)) => Value::String(value.to_string()),
                    (_, None) => Value::String("n/a".to_owned()),
                };
                fields.insert(spec.name.to_owned(), wrong);
            }
        }
        Reason::BadValue => {
            let (name, value) = match event_type {
                "order" => ("status", json!("PAID")),
                "inventory" => ("warehouse_id", json!(" ")),
                "user_activity" => ("activity_type", json!("scroll")),
                "device_telemetry" => ("sensor_type", json!("co2")),
                _ => ("timestamp", json!("yesterday")),
            };
            fields.insert(name.to_owned(), value);
        }
        Reason::InvalidEventType => {
            let name = match rng.random_range(0..3) {
                0 => event_type.to_uppercase(),
                1 => event_type.replace('_', "-") + "-v2",
                _ => format!("{event_type}; DROP TABLE events"),
            };
            fields.insert("event_type".to_owned(), Value::String(name));
        }
        _ => {
            // Too large: a debug dump attached by mistake.
            fields.insert(
                "debug_dump".to_owned(),
                Value::String("x".repeat(max_event_bytes + 1)),
            );
        }
    }
    serialise(&fields)
}

fn serialise(fields: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(fields).unwrap_or_default()
}
