//! Generation tests: every scenario's arithmetic over the messages it actually makes,
//! determinism by seed, and every message judged by the registry preprocess uses.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use event_generator::scenario::NAMES;
use event_generator::{DRIFT_EVENT_TYPE, Generator, Intent, PUBLISHABLE_REASONS, Scenario};
use pulse_shared::error::Reason;
use pulse_shared::registry::catalogue::known_type;
use pulse_shared::registry::normalise::{Provenance, normalise};
use serde_json::Value;

/// A small limit keeps the `too_large` events small.
const MAX_EVENT_BYTES: usize = 8 * 1024;

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn generator(seed: u64) -> Generator {
    Generator::new(seed, start()).with_max_event_bytes(MAX_EVENT_BYTES)
}

fn judge(data: &[u8]) -> Result<pulse_shared::registry::normalise::NormalisedEvent, Reason> {
    let provenance = Provenance {
        message_id: "1",
        publish_time: None,
        ingested_at: Utc::now(),
    };
    normalise(data, &provenance, MAX_EVENT_BYTES).map_err(|r| r.reason)
}

#[test]
fn every_message_gets_the_verdict_it_was_made_for() {
    for name in NAMES {
        let scenario = Scenario::by_name(name).unwrap();
        let mut valid_ids = BTreeSet::new();
        for message in generator(11).plan(&scenario) {
            match (&message.intent, judge(&message.data)) {
                (
                    Intent::Valid {
                        event_type,
                        event_id,
                        ..
                    },
                    Ok(event),
                ) => {
                    assert_eq!(event.event_type, *event_type);
                    assert_eq!(&event.event_id, event_id);
                    assert!(
                        valid_ids.insert(event_id.clone()),
                        "{name}: {event_id} twice"
                    );
                }
                (Intent::Duplicate { event_id }, Ok(event)) => {
                    assert_eq!(&event.event_id, event_id);
                    assert!(valid_ids.contains(event_id), "{name}: duplicate of nothing");
                }
                (Intent::Malformed { reason }, Err(got)) => assert_eq!(*reason, got, "{name}"),
                (intent, verdict) => panic!(
                    "{name} #{}: {intent:?} judged {verdict:?}: {}",
                    message.seq,
                    String::from_utf8_lossy(&message.data[..message.data.len().min(300)])
                ),
            }
        }
    }
}

#[test]
fn counts_and_ratios_add_up_for_every_scenario() {
    for scenario in Scenario::all() {
        let messages: Vec<_> = generator(5).plan(&scenario).collect();
        assert_eq!(messages.len() as u64, scenario.count, "{}", scenario.name);
        let duplicates = messages
            .iter()
            .filter(|m| matches!(m.intent, Intent::Duplicate { .. }))
            .count() as u64;
        let malformed = messages
            .iter()
            .filter(|m| matches!(m.intent, Intent::Malformed { .. }))
            .count() as u64;
        assert_eq!(
            (duplicates, malformed),
            scenario.expected_counts(),
            "{}",
            scenario.name
        );
        let last = messages.last().unwrap().offset;
        assert!(last < scenario.duration, "{}", scenario.name);
        assert!(
            messages.windows(2).all(|w| w[0].offset <= w[1].offset),
            "{}: sends in order",
            scenario.name
        );
    }
    let storm = Scenario::by_name("duplicate_storm").unwrap();
    assert_eq!(storm.expected_counts().0, storm.count / 5);
    let mix = Scenario::by_name("malformed_mix").unwrap();
    assert_eq!(mix.expected_counts().1, mix.count / 20);
}

#[test]
fn the_mix_is_followed_type_by_type() {
    let scenario = Scenario::by_name("stress_test").unwrap();
    let mut by_type: BTreeMap<&str, u64> = BTreeMap::new();
    for message in generator(9).plan(&scenario) {
        if let Intent::Valid { event_type, .. } = message.intent {
            *by_type.entry(event_type).or_default() += 1;
        }
    }
    for (kind, share) in scenario.mix.shares() {
        let expected = share * scenario.count as f64;
        let got = by_type[kind.name()] as f64;
        assert!(
            (got - expected).abs() <= 1.0,
            "{}: {got} vs {expected}",
            kind.name()
        );
    }
}

#[test]
fn quick_sample_touches_every_known_type_with_one_duplicate_and_one_malformed() {
    let scenario = Scenario::by_name("quick_sample").unwrap();
    let messages: Vec<_> = generator(1).plan(&scenario).collect();
    let types: BTreeSet<&str> = messages
        .iter()
        .filter_map(|m| match m.intent {
            Intent::Valid { event_type, .. } => Some(event_type),
            _ => None,
        })
        .collect();
    assert_eq!(
        types,
        BTreeSet::from(["device_telemetry", "inventory", "order", "user_activity"])
    );
    let malformed: Vec<_> = messages
        .iter()
        .filter_map(|m| match m.intent {
            Intent::Malformed { reason } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(malformed.len(), 1);
    assert_eq!(scenario.rate(), 0.2);
}

#[test]
fn malformed_mix_covers_every_publishable_reason_equally() {
    let scenario = Scenario::by_name("malformed_mix").unwrap();
    let mut reasons: HashMap<Reason, u64> = HashMap::new();
    for message in generator(3).plan(&scenario) {
        if let Intent::Malformed { reason } = message.intent {
            *reasons.entry(reason).or_default() += 1;
        }
    }
    for reason in PUBLISHABLE_REASONS {
        assert_eq!(reasons.get(&reason), Some(&10), "{reason}");
    }
    assert!(!PUBLISHABLE_REASONS.contains(&Reason::BadEnvelope));
    assert!(!PUBLISHABLE_REASONS.contains(&Reason::BadBase64));
}

#[test]
fn the_same_seed_makes_the_same_run_and_another_seed_another() {
    let scenario = Scenario::by_name("malformed_mix").unwrap();
    let data = |seed| -> Vec<_> { generator(seed).plan(&scenario).map(|m| m.data).collect() };
    assert_eq!(data(42), data(42));
    assert_ne!(data(42), data(43));
}

#[test]
fn duplicates_repeat_an_earlier_message_byte_for_byte() {
    let scenario = Scenario::by_name("duplicate_storm").unwrap();
    let mut sent: HashMap<String, bytes::Bytes> = HashMap::new();
    for message in generator(8).plan(&scenario) {
        match message.intent {
            Intent::Valid { event_id, .. } => {
                sent.insert(event_id, message.data);
            }
            Intent::Duplicate { event_id } => assert_eq!(sent[&event_id], message.data),
            Intent::Malformed { .. } => unreachable!("duplicate_storm has no malformed events"),
        }
    }
}

#[test]
fn timestamps_follow_the_send_time_within_jitter_and_lateness() {
    let scenario = Scenario::by_name("heavy_load").unwrap();
    let timing = scenario.timing;
    let (mut late, mut valid) = (0, 0);
    for message in generator(4).plan(&scenario) {
        let Ok(event) = judge(&message.data) else {
            continue;
        };
        valid += 1;
        let sent_at = start() + TimeDelta::from_std(message.offset).unwrap();
        let skew = (event.timestamp - sent_at).to_std();
        let jitter = TimeDelta::from_std(timing.jitter).unwrap();
        match skew {
            Ok(ahead) => assert!(ahead <= timing.jitter, "{ahead:?} ahead"),
            Err(_) => {
                let behind = sent_at - event.timestamp;
                let slack = TimeDelta::milliseconds(1); // timestamps carry milliseconds
                assert!(
                    behind <= jitter + TimeDelta::from_std(timing.max_lateness).unwrap() + slack
                );
                late += usize::from(behind > jitter);
            }
        }
    }
    let share = late as f64 / valid as f64;
    assert!(share > 0.005 && share < 0.04, "{share}");
}

#[test]
fn schema_drift_adds_fields_and_a_new_type_after_its_start() {
    let scenario = Scenario::by_name("schema_drift").unwrap();
    let from = (scenario.drift.unwrap().from * scenario.count as f64) as u64;
    let (mut new_type, mut new_fields) = (0, 0);
    for message in generator(6).plan(&scenario) {
        let Intent::Valid {
            event_type,
            drifted,
            ..
        } = message.intent
        else {
            continue;
        };
        let event: serde_json::Map<String, Value> = serde_json::from_slice(&message.data).unwrap();
        let declared: BTreeSet<&str> = known_type(event_type)
            .map(|spec| spec.fields.iter().map(|f| f.name).collect())
            .unwrap_or_default();
        let undeclared = event
            .keys()
            .filter(|k| !["event_id", "event_type", "timestamp"].contains(&k.as_str()))
            .any(|k| !declared.contains(k.as_str()));
        assert_eq!(drifted, undeclared, "#{}: {event:?}", message.seq);
        if drifted {
            assert!(message.seq > from, "drift before its start");
        }
        new_type += usize::from(event_type == DRIFT_EVENT_TYPE);
        new_fields += usize::from(drifted && event_type != DRIFT_EVENT_TYPE);
    }
    assert!(new_type > 10 && new_fields > 50, "{new_type} {new_fields}");
}

#[test]
fn iot_fleet_is_telemetry_with_a_few_anomalies() {
    let scenario = Scenario::by_name("iot_fleet").unwrap();
    let (mut anomalies, mut devices) = (0, BTreeSet::new());
    for message in generator(2).plan(&scenario) {
        let Intent::Valid {
            event_type,
            anomaly,
            ..
        } = message.intent
        else {
            panic!("iot_fleet sends only valid events");
        };
        assert_eq!(event_type, "device_telemetry");
        anomalies += usize::from(anomaly);
        let event: Value = serde_json::from_slice(&message.data).unwrap();
        devices.insert(event["device_id"].as_str().unwrap().to_owned());
    }
    let share = anomalies as f64 / scenario.count as f64;
    assert!((0.01..0.03).contains(&share), "{share}");
    assert!(devices.len() >= 20, "{}", devices.len());
}

#[test]
fn a_zero_duration_sends_everything_at_once() {
    let scenario = Scenario::by_name("light_demo")
        .unwrap()
        .with_duration(Duration::ZERO);
    assert!(generator(1).plan(&scenario).all(|m| m.offset.is_zero()));
}
