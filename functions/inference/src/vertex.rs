//! The Vertex AI online prediction call: `POST {base}/v1/{endpoint}:predict` with
//! `{"instances": […]}` and an OAuth bearer token, answered by `{"predictions": […],
//! "deployedModelId", "model", "modelVersionId"}`. Written by hand over `reqwest`, one POST. The official
//! `google-cloud-aiplatform-v1` crate has `PredictionService::predict` and should replace this
//! module (not adopted yet: it is the whole Vertex AI API, a long compile here); the request
//! and response shapes tested in `tests/predict.rs` stay the same.

use std::time::{Duration, Instant};

use pulse_shared::auth::AccessTokens;
use pulse_shared::config::PredictionSettings;
use pulse_shared::error::{BackendError, Retry};
use serde::Deserialize;
use serde_json::{Value, json};

/// One model answer for one instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub score: Option<f64>,
    pub label: Option<String>,
}

/// What one predict call returned: a prediction per instance, in order (or why that instance's
/// prediction has a shape we cannot store), and who answered.
#[derive(Debug)]
pub struct Answer {
    pub predictions: Vec<Result<Prediction, String>>,
    pub model: Option<String>,
    pub model_version: Option<String>,
    /// How long the call took, network included.
    pub latency: Duration,
}

/// Why a call gave no usable answer.
#[derive(Debug)]
pub enum CallError {
    /// Timeout, transport failure, 429 or 5xx: the same instances may succeed later.
    Unavailable(BackendError),
    /// The endpoint refused the request (400, 403, 404): an operator must act; the events are
    /// answered 500 and redelivered meanwhile, never dropped.
    Refused(BackendError),
    /// The answer does not match the request (not JSON, or another number of predictions).
    Mismatch(String),
}

/// Calls one endpoint.
#[derive(Clone, Debug)]
pub struct VertexClient {
    http: reqwest::Client,
    url: String,
    tokens: AccessTokens,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    predictions: Option<Vec<Value>>,
    #[serde(default)]
    deployed_model_id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    model_version_id: Option<String>,
}

impl VertexClient {
    pub fn new(settings: &PredictionSettings, tokens: AccessTokens) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .pool_max_idle_per_host(32)
            .build()?;
        Ok(Self {
            http,
            url: format!("{}/v1/{}:predict", settings.base_url, settings.endpoint),
            tokens,
        })
    }

    /// The URL calls go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Scores `instances` in one call.
    pub async fn predict(&self, instances: &[Value]) -> Result<Answer, CallError> {
        let operation = || format!("predict {} instance(s) at {}", instances.len(), self.url);
        let token = self.tokens.token().await.map_err(|err| match err.retry {
            Retry::Permanent | Retry::InvalidInput => CallError::Refused(err),
            _ => CallError::Unavailable(err),
        })?;
        let started = Instant::now();
        let sent = self
            .http
            .post(&self.url)
            .bearer_auth(token)
            .json(&json!({ "instances": instances }))
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => {
                let why = if err.is_timeout() {
                    "timed out"
                } else {
                    "failed"
                };
                return Err(CallError::Unavailable(BackendError::new(
                    operation(),
                    Retry::Transient,
                    format!("the call {why}: {err}"),
                )));
            }
        };
        let status = response.status();
        let body = response.bytes().await.map_err(|err| {
            CallError::Unavailable(BackendError::new(
                operation(),
                Retry::Transient,
                format!("reading the answer failed: {err}"),
            ))
        })?;
        let latency = started.elapsed();
        if !status.is_success() {
            let detail = format!(
                "the endpoint answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(512)])
            );
            return Err(match Retry::from_http_status(status.as_u16()) {
                Retry::Permanent | Retry::InvalidInput => {
                    CallError::Refused(BackendError::new(operation(), Retry::Permanent, detail))
                }
                // 429 included: the contract is 503 for anything that may pass later.
                _ => {
                    CallError::Unavailable(BackendError::new(operation(), Retry::Transient, detail))
                }
            });
        }
        let response: Response = serde_json::from_slice(&body).map_err(|e| {
            CallError::Mismatch(format!("the answer is not a predict response: {e}"))
        })?;
        let predictions = response.predictions.unwrap_or_default();
        if predictions.len() != instances.len() {
            return Err(CallError::Mismatch(format!(
                "{} instance(s) sent, {} prediction(s) returned",
                instances.len(),
                predictions.len()
            )));
        }
        Ok(Answer {
            predictions: predictions.iter().map(prediction).collect(),
            model: response.model.or(response.deployed_model_id),
            model_version: response.model_version_id,
            latency,
        })
    }
}

/// Reads the shapes models commonly answer with: a number (a score), a string (a label), an
/// object with `score` and/or `label`, or a classifier's `classes`/`displayNames` with `scores`
/// (the top class wins).
fn prediction(value: &Value) -> Result<Prediction, String> {
    let shape = || format!("a prediction shaped {value} has neither a score nor a label");
    match value {
        Value::Number(n) => Ok(Prediction {
            score: n.as_f64(),
            label: None,
        }),
        Value::String(label) => Ok(Prediction {
            score: None,
            label: Some(label.clone()),
        }),
        Value::Object(fields) => {
            let mut score = fields.get("score").and_then(Value::as_f64);
            let mut label = fields
                .get("label")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let classes = fields
                .get("classes")
                .or_else(|| fields.get("displayNames"))
                .and_then(Value::as_array);
            let scores = fields.get("scores").and_then(Value::as_array);
            if let (Some(classes), Some(scores)) = (classes, scores) {
                let best = scores
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| Some((i, s.as_f64()?)))
                    .max_by(|a, b| a.1.total_cmp(&b.1));
                if let Some((i, top)) = best {
                    score = score.or(Some(top));
                    label = label.or_else(|| classes.get(i)?.as_str().map(str::to_owned));
                }
            }
            if score.is_none() && label.is_none() {
                return Err(shape());
            }
            Ok(Prediction { score, label })
        }
        _ => Err(shape()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prediction_shapes_are_read() {
        let read = |v: Value| prediction(&v);
        assert_eq!(read(json!(0.7)).unwrap().score, Some(0.7));
        assert_eq!(read(json!("cat")).unwrap().label.as_deref(), Some("cat"));
        let both = read(json!({"score": 4.2, "label": "anomaly"})).unwrap();
        assert_eq!(
            (both.score, both.label.as_deref()),
            (Some(4.2), Some("anomaly"))
        );
        let classifier = read(json!({"classes": ["no", "yes"], "scores": [0.2, 0.8]})).unwrap();
        assert_eq!(
            (classifier.score, classifier.label.as_deref()),
            (Some(0.8), Some("yes"))
        );
        for bad in [json!({"value": 1}), json!([1, 2]), json!(null)] {
            assert!(read(bad.clone()).is_err(), "{bad}");
        }
    }
}
