//! What a caller asks for (a named scenario, a custom run, or a scenario with overrides), as
//! the HTTP API and `pulse generate` both take it, resolved into a runnable [`RunSpec`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use utoipa::ToSchema;

use crate::events::EventKind;
use crate::scenario::{Mix, Scenario};

/// A run to start. Name a `scenario`, or describe a custom run with two of `rate`, `count` and
/// `duration`; with a scenario, any of them overrides it (the third follows).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// A named scenario (see `GET /scenarios`).
    #[schema(example = "light_demo")]
    pub scenario: Option<String>,
    /// Messages per second (`5000/s`, or a bare number) or per minute (`300/min`).
    #[schema(example = "50/s")]
    pub rate: Option<String>,
    /// Messages to publish, duplicates and malformed ones included.
    pub count: Option<u64>,
    /// How long the run lasts: `90s`, `10m`, `1h`, `500ms`, or seconds as a bare number.
    #[schema(example = "5m")]
    pub duration: Option<String>,
    /// Relative weights by event type (`order`, `inventory`, `user_activity`,
    /// `device_telemetry`).
    pub mix: Option<BTreeMap<String, f64>>,
    /// Same seed, same events. A random one is chosen (and reported) when absent.
    pub seed: Option<u64>,
    /// Topic to publish to; the configured raw topic when absent.
    pub topic: Option<String>,
}

/// A run ready to start.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSpec {
    pub scenario: Scenario,
    pub seed: u64,
    pub topic: String,
}

/// Why a request cannot run; the message says what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRun(pub String);

fn invalid(message: impl Into<String>) -> InvalidRun {
    InvalidRun(message.into())
}

impl RunRequest {
    /// Resolves the request; `default_topic` is used when it names none.
    pub fn resolve(&self, default_topic: &str) -> Result<RunSpec, InvalidRun> {
        let rate = self.rate.as_deref().map(parse_rate).transpose()?;
        let duration = self.duration.as_deref().map(parse_duration).transpose()?;
        let mut scenario = match &self.scenario {
            Some(name) => {
                let base = Scenario::by_name(name).ok_or_else(|| {
                    invalid(format!(
                        "no scenario is named {name:?}; the scenarios are {}",
                        crate::scenario::NAMES.join(", ")
                    ))
                })?;
                with_overrides(base, rate, self.count, duration)?
            }
            None => custom(rate, self.count, duration)?,
        };
        if let Some(weights) = &self.mix {
            scenario.mix = parse_mix(weights)?;
        }
        scenario.validate().map_err(InvalidRun)?;
        let topic = match &self.topic {
            Some(topic) => check_topic(topic)?,
            None => default_topic.to_owned(),
        };
        Ok(RunSpec {
            scenario,
            seed: self.seed.unwrap_or_else(rand::random),
            topic,
        })
    }
}

fn custom(
    rate: Option<f64>,
    count: Option<u64>,
    duration: Option<Duration>,
) -> Result<Scenario, InvalidRun> {
    let (count, duration) = match (rate, count, duration) {
        (Some(rate), Some(count), None) => (count, duration_for(count, rate)?),
        (Some(rate), None, Some(duration)) => (count_for(rate, duration)?, duration),
        (None, Some(count), Some(duration)) => (count, duration),
        (Some(_), Some(_), Some(_)) => {
            return Err(invalid(
                "give two of rate, count and duration: the third follows from them",
            ));
        }
        _ => {
            return Err(invalid(
                "a custom run needs two of rate, count and duration (or name a scenario)",
            ));
        }
    };
    Ok(Scenario::custom(count, duration))
}

/// Overrides on a named scenario: the one not given follows from the others, keeping the
/// scenario's count when only the rate changes and its duration when only the count changes.
fn with_overrides(
    base: Scenario,
    rate: Option<f64>,
    count: Option<u64>,
    duration: Option<Duration>,
) -> Result<Scenario, InvalidRun> {
    Ok(match (rate, count, duration) {
        (None, None, None) => base,
        (None, Some(count), None) => base.with_count(count),
        (None, None, Some(duration)) => base.with_duration(duration),
        (None, Some(count), Some(duration)) => base.with_count(count).with_duration(duration),
        (Some(rate), None, None) => {
            let duration = duration_for(base.count, rate)?;
            base.with_duration(duration)
        }
        (Some(rate), Some(count), None) => base
            .with_count(count)
            .with_duration(duration_for(count, rate)?),
        (Some(rate), None, Some(duration)) => base
            .with_count(count_for(rate, duration)?)
            .with_duration(duration),
        (Some(_), Some(_), Some(_)) => {
            return Err(invalid(
                "give at most two of rate, count and duration: the third follows from them",
            ));
        }
    })
}

fn duration_for(count: u64, rate: f64) -> Result<Duration, InvalidRun> {
    Duration::try_from_secs_f64(count as f64 / rate)
        .map_err(|_| invalid("count / rate is not a usable duration"))
}

fn count_for(rate: f64, duration: Duration) -> Result<u64, InvalidRun> {
    let count = (rate * duration.as_secs_f64()).round();
    if count < 1.0 {
        return Err(invalid(format!(
            "{rate}/s for {} s is less than one message",
            duration.as_secs_f64()
        )));
    }
    Ok(count as u64)
}

/// Parses `5000/s`, `5000` (per second) or `300/min` into messages per second.
pub fn parse_rate(text: &str) -> Result<f64, InvalidRun> {
    let text = text.trim();
    let (number, per) = match text.split_once('/') {
        Some((number, unit)) => (number.trim(), unit.trim()),
        None => (text, "s"),
    };
    let seconds = match per {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => {
            return Err(invalid(format!(
                "rate {text:?}: the unit must be /s, /min or /h"
            )));
        }
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n / seconds),
        _ => Err(invalid(format!(
            "rate {text:?} must be a positive number per unit, like 5000/s or 300/min"
        ))),
    }
}

/// Parses `90s`, `10m`, `1h`, `500ms` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, InvalidRun> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "" | "s" | "sec" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(invalid(format!(
                "duration {text:?}: the unit must be ms, s, m or h"
            )));
        }
    };
    number
        .parse::<f64>()
        .ok()
        .and_then(|n| Duration::try_from_secs_f64(n * scale).ok())
        .ok_or_else(|| invalid(format!("duration {text:?} must be like 90s, 10m or 1h")))
}

/// Parses `order=3,inventory=1` (the command line's form of a mix).
pub fn parse_mix_list(text: &str) -> Result<BTreeMap<String, f64>, InvalidRun> {
    text.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            let (name, weight) = part.split_once('=').ok_or_else(|| {
                invalid(format!(
                    "mix entry {part:?} must be type=weight, like order=3"
                ))
            })?;
            let weight = weight
                .trim()
                .parse()
                .map_err(|_| invalid(format!("mix entry {part:?}: the weight must be a number")))?;
            Ok((name.trim().to_owned(), weight))
        })
        .collect()
}

fn parse_mix(weights: &BTreeMap<String, f64>) -> Result<Mix, InvalidRun> {
    let kinds = weights
        .iter()
        .map(|(name, weight)| {
            EventKind::from_name(name)
                .map(|k| (k, *weight))
                .ok_or_else(|| {
                    invalid(format!(
                        "mix names {name:?}, which is not a known event type ({})",
                        EventKind::ALL.map(EventKind::name).join(", ")
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Mix::new(kinds).ok_or_else(|| {
        invalid("mix weights must be non-negative numbers, at least one of them above zero")
    })
}

/// A Pub/Sub topic id: 3–255 characters, starting with a letter, of letters, digits and `-_.~+%`.
fn check_topic(topic: &str) -> Result<String, InvalidRun> {
    let ok = (3..=255).contains(&topic.len())
        && topic.starts_with(|c: char| c.is_ascii_alphabetic())
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c))
        && !topic.starts_with("goog");
    if ok {
        Ok(topic.to_owned())
    } else {
        Err(invalid(format!(
            "topic {topic:?} is not a Pub/Sub topic id (3-255 letters, digits or -_.~+%, \
             starting with a letter, not with `goog`)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> Result<RunSpec, InvalidRun> {
        serde_json::from_value::<RunRequest>(json)
            .unwrap()
            .resolve("events-raw")
    }

    #[test]
    fn rates_and_durations_parse() {
        assert_eq!(parse_rate("5000/s").unwrap(), 5000.0);
        assert_eq!(parse_rate("5000").unwrap(), 5000.0);
        assert_eq!(parse_rate("300/min").unwrap(), 5.0);
        assert!(parse_rate("-1/s").is_err());
        assert!(parse_rate("5/fortnight").is_err());
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn a_custom_run_takes_two_of_rate_count_and_duration() {
        let spec = request(serde_json::json!({"rate": "5000/s", "duration": "60s"})).unwrap();
        assert_eq!(spec.scenario.count, 300_000);
        assert_eq!(spec.scenario.duration, Duration::from_secs(60));
        assert_eq!(spec.topic, "events-raw");
        let spec = request(serde_json::json!({"rate": "300/min", "count": 60, "seed": 7})).unwrap();
        assert_eq!(spec.scenario.duration, Duration::from_secs(12));
        assert_eq!(spec.seed, 7);
        assert!(request(serde_json::json!({"rate": "5/s"})).is_err());
        let err =
            request(serde_json::json!({"rate": "5/s", "count": 5, "duration": "1s"})).unwrap_err();
        assert!(err.0.contains("two of"), "{err}");
    }

    #[test]
    fn scenario_overrides_keep_what_is_not_overridden() {
        let spec = request(serde_json::json!({"scenario": "light_demo", "rate": "5/s"})).unwrap();
        assert_eq!(spec.scenario.count, 150);
        assert_eq!(spec.scenario.duration, Duration::from_secs(30));
        let spec = request(serde_json::json!({"scenario": "light_demo", "count": 300})).unwrap();
        assert_eq!(spec.scenario.duration, Duration::from_secs(300));
        let spec = request(serde_json::json!({
            "scenario": "quick_sample", "duration": "0s", "topic": "my-topic",
            "mix": {"order": 1, "device_telemetry": 0}
        }))
        .unwrap();
        assert_eq!(spec.scenario.duration, Duration::ZERO);
        assert_eq!(spec.topic, "my-topic");
        assert_eq!(spec.scenario.mix.shares(), vec![(EventKind::Order, 1.0)]);
    }

    #[test]
    fn bad_requests_say_what_to_change() {
        for (json, says) in [
            (serde_json::json!({"scenario": "nope"}), "light_demo"),
            (
                serde_json::json!({"scenario": "light_demo", "mix": {"orders": 1}}),
                "order",
            ),
            (
                serde_json::json!({"scenario": "light_demo", "topic": "a/b"}),
                "topic",
            ),
            (
                serde_json::json!({"scenario": "light_demo", "count": 0}),
                "count",
            ),
            (
                serde_json::json!({"count": 5, "duration": "48h"}),
                "duration",
            ),
        ] {
            let err = request(json.clone()).unwrap_err();
            assert!(err.0.contains(says), "{json}: {err}");
        }
        assert!(serde_json::from_value::<RunRequest>(serde_json::json!({"speed": 3})).is_err());
    }

    #[test]
    fn mix_lists_parse() {
        let mix = parse_mix_list("order=3, inventory=1").unwrap();
        assert_eq!(mix["order"], 3.0);
        assert_eq!(mix["inventory"], 1.0);
        assert!(parse_mix_list("order").is_err());
    }
}
