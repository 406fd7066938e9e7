//! The built-in models (see `models/README.md`): a robust z-score for `device_telemetry` readings
//! and a logistic purchase propensity for `user_activity`, each read from a small JSON file.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

/// The model files compiled in, used unless `PULSE_MODEL_DIR` names others.
const DEVICE_ANOMALY: &str = include_str!("../models/device_anomaly.json");
const PURCHASE_PROPENSITY: &str = include_str!("../models/purchase_propensity.json");

/// Median and median absolute deviation of one sensor.
#[derive(Clone, Copy, Debug, Deserialize)]
struct Baseline {
    median: f64,
    mad: f64,
}

#[derive(Debug, Deserialize)]
struct DeviceAnomaly {
    name: String,
    version: String,
    threshold: f64,
    /// `<device model>/<sensor type>`, or `*/<sensor type>` for any model.
    sensors: HashMap<String, Baseline>,
}

#[derive(Debug, Deserialize)]
struct PurchasePropensity {
    name: String,
    version: String,
    threshold: f64,
    intercept: f64,
    activity_type: HashMap<String, f64>,
    /// Dotted path into the instance → weight.
    numeric: HashMap<String, f64>,
}

/// Both models, ready to score instances.
#[derive(Debug)]
pub struct Models {
    anomaly: DeviceAnomaly,
    propensity: PurchasePropensity,
}

impl Models {
    /// The model files in `models/`, compiled in.
    pub fn builtin() -> Self {
        Self::parse(DEVICE_ANOMALY, PURCHASE_PROPENSITY)
            .expect("the model files in the repository parse (checked by a test)")
    }

    /// `device_anomaly.json` and `purchase_propensity.json` from `dir`.
    pub fn from_dir(dir: &Path) -> anyhow::Result<Self> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|e| {
                anyhow::anyhow!("cannot read model file {}: {e}", dir.join(name).display())
            })
        };
        Self::parse(
            &read("device_anomaly.json")?,
            &read("purchase_propensity.json")?,
        )
    }

    fn parse(anomaly: &str, propensity: &str) -> anyhow::Result<Self> {
        let anomaly: DeviceAnomaly = serde_json::from_str(anomaly)
            .map_err(|e| anyhow::anyhow!("device_anomaly.json: {e}"))?;
        if let Some((key, _)) = anomaly.sensors.iter().find(|(_, b)| b.mad <= 0.0) {
            anyhow::bail!("device_anomaly.json: sensor {key} needs a positive `mad`");
        }
        let propensity = serde_json::from_str(propensity)
            .map_err(|e| anyhow::anyhow!("purchase_propensity.json: {e}"))?;
        Ok(Self {
            anomaly,
            propensity,
        })
    }

    /// The model name and version the predictor reports (`model`, `modelVersionId`).
    pub fn identity(&self) -> (String, String) {
        (
            format!("{}+{}", self.anomaly.name, self.propensity.name),
            format!("{}+{}", self.anomaly.version, self.propensity.version),
        )
    }

    /// Scores one instance: `{"event_type": …, <feature fields>}` → `{"score", "label"}`, or
    /// why the instance cannot be scored.
    pub fn predict(&self, instance: &Value) -> Result<Value, String> {
        match instance.get("event_type").and_then(Value::as_str) {
            Some("device_telemetry") => self.anomaly(instance),
            Some("user_activity") => Ok(self.propensity(instance)),
            Some(other) => Err(format!("no built-in model scores `{other}` events")),
            None => Err("an instance needs `event_type` (a string)".to_owned()),
        }
    }

    fn anomaly(&self, instance: &Value) -> Result<Value, String> {
        let text = |name: &str| {
            instance
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("device_telemetry instances need `{name}` (a string)"))
        };
        let (device, sensor) = (text("device_id")?, text("sensor_type")?);
        let reading = instance
            .get("reading")
            .and_then(Value::as_f64)
            .ok_or("device_telemetry instances need `reading` (a number)")?;
        let model = device.rsplit_once('-').map_or(device, |(model, _)| model);
        let baseline = self
            .anomaly
            .sensors
            .get(&format!("{model}/{sensor}"))
            .or_else(|| self.anomaly.sensors.get(&format!("*/{sensor}")))
            .ok_or_else(|| format!("no baseline for sensor type `{sensor}`"))?;
        let score = (0.6745 * (reading - baseline.median) / baseline.mad).abs();
        let label = if score > self.anomaly.threshold {
            "anomaly"
        } else {
            "normal"
        };
        Ok(json!({"score": round(score), "label": label}))
    }

    fn propensity(&self, instance: &Value) -> Value {
        let model = &self.propensity;
        let activity = instance
            .get("activity_type")
            .and_then(Value::as_str)
            .and_then(|activity| model.activity_type.get(activity))
            .copied()
            .unwrap_or_default();
        let numeric: f64 = model
            .numeric
            .iter()
            .map(|(path, weight)| {
                weight
                    * lookup(instance, path)
                        .and_then(Value::as_f64)
                        .unwrap_or(0.0)
            })
            .sum();
        let score = 1.0 / (1.0 + (-(model.intercept + activity + numeric)).exp());
        let label = if score >= model.threshold {
            "likely_buyer"
        } else {
            "unlikely_buyer"
        };
        json!({"score": round(score), "label": label})
    }
}

/// The value at a dotted path (`metadata.cart_items`).
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |value, key| value.get(key))
}

/// Six decimals: enough for a score, and stable in a JSON round trip.
fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_far_from_the_baseline_are_anomalies() {
        let models = Models::builtin();
        let score = |reading: f64| {
            models
                .predict(
                    &json!({"event_type": "device_telemetry", "device_id": "weather-02",
                                  "sensor_type": "pressure", "reading": reading}),
                )
                .unwrap()
        };
        assert_eq!(score(1013.0), json!({"score": 0.0, "label": "normal"}));
        let far = score(1013.0 + 6.0 * 4.0);
        assert_eq!(far["label"], "anomaly");
        assert!(far["score"].as_f64().unwrap() > 3.5, "{far}");
        // Another model's sensor of the same type falls back to the `*` baseline.
        let other = models
            .predict(
                &json!({"event_type": "device_telemetry", "device_id": "boiler-1",
                              "sensor_type": "pressure", "reading": 1013.0}),
            )
            .unwrap();
        assert_eq!(other["label"], "normal");
    }

    #[test]
    fn checkout_scores_higher_than_a_page_view() {
        let models = Models::builtin();
        let score = |activity: &str, metadata: Value| {
            models
                .predict(
                    &json!({"event_type": "user_activity", "activity_type": activity,
                                  "metadata": metadata}),
                )
                .unwrap()
        };
        let checkout = score("checkout", json!({"cart_items": 3}));
        let browse = score("page_view", json!({"page": "/"}));
        assert_eq!(checkout["label"], "likely_buyer");
        assert_eq!(browse["label"], "unlikely_buyer");
        assert!(checkout["score"].as_f64() > browse["score"].as_f64());
    }

    #[test]
    fn instances_that_cannot_be_scored_say_why() {
        let models = Models::builtin();
        let err = models.predict(&json!({"event_type": "order"})).unwrap_err();
        assert!(err.contains("order"), "{err}");
        let err = models
            .predict(&json!({"event_type": "device_telemetry", "device_id": "x-1", "sensor_type": "pressure"}))
            .unwrap_err();
        assert!(err.contains("reading"), "{err}");
    }

    #[test]
    fn the_model_files_in_the_repository_load_from_a_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let models = Models::from_dir(&dir).unwrap();
        assert_eq!(
            models.identity(),
            (
                "device-anomaly+purchase-propensity".to_owned(),
                "1+1".to_owned()
            )
        );
    }
}
