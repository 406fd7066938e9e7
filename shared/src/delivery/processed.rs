//! A processed event as table-manager and inference receive it: the JSON object preprocess
//! published, whose `event_type` and `event_id` are checked again on arrival, because they reach
//! table names and primary keys and anyone with publish rights on the topic could have sent it.

use serde_json::{Map, Value};

use crate::delivery::envelope::PushMessage;
use crate::error::{Reason, Rejection};
use crate::registry::identifiers::{is_valid_event_id, is_valid_event_type};

/// A processed event, decoded and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessedEvent {
    pub event_type: String,
    pub event_id: String,
    /// Every field, `event_type` and `event_id` included.
    pub values: Map<String, Value>,
}

impl ProcessedEvent {
    /// Decodes the message data; a rejection says which rule it broke.
    pub fn from_message(message: &PushMessage) -> Result<Self, Rejection> {
        let data = message.decode_data()?;
        let values: Map<String, Value> = serde_json::from_slice(&data).map_err(|e| {
            Rejection::new(
                Reason::BadJson,
                format!("message data is not a JSON object: {e}"),
            )
        })?;
        Self::from_values(values)
    }

    /// Checks an event already parsed (a replayed one, say).
    pub fn from_values(values: Map<String, Value>) -> Result<Self, Rejection> {
        let event_type = text(&values, "event_type")?;
        if !is_valid_event_type(&event_type) {
            return Err(Rejection::new(
                Reason::InvalidEventType,
                "event_type is not a safe identifier (lower-case letter, then up to 63 lower-case \
                 letters, digits or underscores)",
            ));
        }
        let event_id = text(&values, "event_id")?;
        if !is_valid_event_id(&event_id) {
            return Err(Rejection::new(
                Reason::BadValue,
                "event_id must be 1-128 letters, digits or `._:@-`, starting with a letter or digit",
            ));
        }
        Ok(Self {
            event_type,
            event_id,
            values,
        })
    }

    /// A string field that processed events always carry (`event_date`, say).
    pub fn text(&self, name: &str) -> Result<String, Rejection> {
        text(&self.values, name)
    }
}

fn text(values: &Map<String, Value>, name: &str) -> Result<String, Rejection> {
    match values.get(name) {
        Some(Value::String(text)) => Ok(text.clone()),
        None | Some(Value::Null) => Err(Rejection::new(
            Reason::MissingField,
            format!("processed events carry `{name}`; this one has none"),
        )),
        Some(_) => Err(Rejection::new(
            Reason::BadFieldType,
            format!("`{name}` must be a string"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(value: Value) -> Result<ProcessedEvent, Rejection> {
        match value {
            Value::Object(values) => ProcessedEvent::from_values(values),
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn type_and_id_are_checked_again() {
        let ok = event(json!({"event_type": "order", "event_id": "e-1"})).unwrap();
        assert_eq!(
            (ok.event_type.as_str(), ok.event_id.as_str()),
            ("order", "e-1")
        );
        let cases = [
            (json!({"event_id": "e-1"}), Reason::MissingField),
            (
                json!({"event_type": 3, "event_id": "e-1"}),
                Reason::BadFieldType,
            ),
            (
                json!({"event_type": "Drop Table", "event_id": "e-1"}),
                Reason::InvalidEventType,
            ),
            (
                json!({"event_type": "order", "event_id": "../x"}),
                Reason::BadValue,
            ),
        ];
        for (value, reason) in cases {
            assert_eq!(event(value.clone()).unwrap_err().reason, reason, "{value}");
        }
    }
}
