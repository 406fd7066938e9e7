//! Which event types are scored, and the model instance each one becomes: `event_type` plus the
//! configured feature fields (`PULSE_INFERENCE_FEATURES`), each taken from the event by a dotted
//! path and named by that path.

use std::collections::BTreeMap;

use pulse_shared::error::{Reason, Rejection};
use serde_json::{Map, Value};

/// The scored event types and their feature fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Features {
    by_type: BTreeMap<String, Vec<String>>,
}

impl Features {
    /// Parses `type=field,field;type=field`.
    pub fn parse(spec: &str) -> anyhow::Result<Self> {
        let mut by_type = BTreeMap::new();
        for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (event_type, fields) = entry.split_once('=').ok_or_else(|| {
                anyhow::anyhow!(
                    "PULSE_INFERENCE_FEATURES entry {entry:?} must look like `type=field,field`"
                )
            })?;
            let fields: Vec<String> = fields
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect();
            if fields.is_empty() {
                anyhow::bail!("PULSE_INFERENCE_FEATURES entry {entry:?} names no field");
            }
            by_type.insert(event_type.trim().to_owned(), fields);
        }
        if by_type.is_empty() {
            anyhow::bail!("PULSE_INFERENCE_FEATURES names no event type to score");
        }
        Ok(Self { by_type })
    }

    /// True when events of this type are scored.
    pub fn scores(&self, event_type: &str) -> bool {
        self.by_type.contains_key(event_type)
    }

    /// The scored types, for start-up logs.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.by_type.keys().map(String::as_str)
    }

    /// The instance for an event of a scored type; a missing (or null) feature is a
    /// `missing_feature` rejection naming it.
    pub fn instance(
        &self,
        event_type: &str,
        event: &Map<String, Value>,
    ) -> Result<Value, Rejection> {
        let fields = self.by_type.get(event_type).ok_or_else(|| {
            Rejection::new(
                Reason::BadValue,
                format!("`{event_type}` events are not scored here"),
            )
        })?;
        let mut instance = Map::with_capacity(fields.len() + 1);
        instance.insert("event_type".to_owned(), Value::from(event_type));
        for path in fields {
            let mut parts = path.split('.');
            let first = parts.next().and_then(|key| event.get(key));
            let value = parts.try_fold(first, |value, key| Some(value?.get(key)));
            match value.flatten() {
                Some(value) if !value.is_null() => {
                    instance.insert(path.clone(), value.clone());
                }
                _ => {
                    return Err(Rejection::new(
                        Reason::MissingFeature,
                        format!("`{event_type}` events are scored on `{path}`; this one has none"),
                    ));
                }
            }
        }
        Ok(Value::Object(instance))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        serde_json::from_value(value).expect("a JSON object")
    }

    #[test]
    fn instances_carry_the_type_and_the_features_by_path() {
        let features = Features::parse(
            "device_telemetry=device_id,reading; user_activity=metadata.cart_items",
        )
        .unwrap();
        assert!(features.scores("user_activity") && !features.scores("order"));
        let event = object(json!({"device_id": "fridge-01", "reading": 4.2, "unit": "C"}));
        assert_eq!(
            features.instance("device_telemetry", &event).unwrap(),
            json!({"event_type": "device_telemetry", "device_id": "fridge-01", "reading": 4.2})
        );
        let nested = object(json!({"metadata": {"cart_items": 2}}));
        assert_eq!(
            features.instance("user_activity", &nested).unwrap()["metadata.cart_items"],
            json!(2)
        );
    }

    #[test]
    fn a_missing_or_null_feature_is_named() {
        let features = Features::parse("device_telemetry=device_id,reading").unwrap();
        for event in [
            json!({"device_id": "d"}),
            json!({"device_id": "d", "reading": null}),
        ] {
            let rejection = features
                .instance("device_telemetry", &object(event))
                .unwrap_err();
            assert_eq!(rejection.reason, Reason::MissingFeature);
            assert!(
                rejection.detail.contains("`reading`"),
                "{}",
                rejection.detail
            );
        }
    }

    #[test]
    fn a_bad_spec_is_refused() {
        for spec in ["", "device_telemetry", "device_telemetry="] {
            assert!(Features::parse(spec).is_err(), "{spec:?}");
        }
    }
}
