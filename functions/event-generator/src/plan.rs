//! The generator: turns a scenario, a seed and a start time into the run's messages, each with
//! its send time and what the pipeline should make of it. Same inputs, same messages.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use pulse_shared::error::Reason;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use crate::events::{Built, EventFactory};
use crate::malformed::{PUBLISHABLE_REASONS, break_event};
use crate::scenario::{DUPLICATE_PHASE, MALFORMED_PHASE, MixPicker, Scenario, quota_until};

/// The decoded-event size limit preprocess applies unless `PULSE_MAX_EVENT_BYTES` says otherwise.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// How many recent messages a duplicate may repeat (redeliveries come soon after the original).
const REDELIVERY_WINDOW: usize = 100;

/// What the pipeline should make of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intent {
    /// A valid event: preprocess archives and forwards it.
    Valid {
        event_type: &'static str,
        event_id: String,
        /// A telemetry reading 4–6 sigma from its sensor's baseline.
        anomaly: bool,
        /// Carries fields or a type that a schema drift introduced.
        drifted: bool,
    },
    /// An earlier valid message published again, byte for byte (a redelivery): downstream
    /// must keep one row for it.
    Duplicate { event_id: String },
    /// Preprocess must dead-letter it with this reason.
    Malformed { reason: Reason },
}

/// One message of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedMessage {
    /// Position in the run, from 0.
    pub seq: u64,
    /// When to send it, from the start of the run.
    pub offset: Duration,
    /// The Pub/Sub message data.
    pub data: Bytes,
    pub intent: Intent,
}

/// Makes runs from a seed and a start time.
///
/// How the demo uses it (everything at once, then wait for the bus to settle):
///
/// ```
/// use std::time::Duration;
/// use event_generator::{Generator, Intent, Scenario};
///
/// let scenario = Scenario::by_name("quick_sample").expect("a named scenario")
///     .with_duration(Duration::ZERO);
/// let messages: Vec<_> = Generator::new(42, chrono::Utc::now()).plan(&scenario).collect();
/// assert_eq!(messages.len(), 12);
/// let malformed = messages.iter().filter(|m| matches!(m.intent, Intent::Malformed { .. })).count();
/// assert_eq!(malformed, 1);
/// // for m in messages { bus.publish(&config.raw_topic, OutgoingMessage { data: m.data, ..Default::default() }).await?; }
/// // then `bus.settled().await`. To send at the scenario's pace instead, use `event_generator::pacer::publish`.
/// ```
#[derive(Clone, Debug)]
pub struct Generator {
    seed: u64,
    start_time: DateTime<Utc>,
    max_event_bytes: usize,
}

impl Generator {
    /// A generator whose event timestamps count from `start_time`.
    pub fn new(seed: u64, start_time: DateTime<Utc>) -> Self {
        Self {
            seed,
            start_time,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }

    /// The size limit of the receiving preprocess, so `too_large` events exceed exactly it.
    pub fn with_max_event_bytes(self, max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            ..self
        }
    }

    /// The messages of one run of `scenario`, made one at a time as they are taken.
    pub fn plan(&self, scenario: &Scenario) -> Plan {
        Plan {
            scenario: scenario.clone(),
            rng: ChaCha8Rng::seed_from_u64(self.seed),
            factory: EventFactory::new(scenario.anomaly_ratio),
            picker: scenario.mix.picker(),
            start_time: self.start_time,
            max_event_bytes: self.max_event_bytes,
            next: 0,
            recent: VecDeque::with_capacity(REDELIVERY_WINDOW),
            duplicates_owed: 0,
            malformed_owed: 0,
            malformed_made: 0,
        }
    }
}

/// A run's messages in send order: an iterator that knows its length.
pub struct Plan {
    scenario: Scenario,
    rng: ChaCha8Rng,
    factory: EventFactory,
    picker: MixPicker,
    start_time: DateTime<Utc>,
    max_event_bytes: usize,
    next: u64,
    /// Recent valid messages, which duplicates repeat.
    recent: VecDeque<(String, Bytes)>,
    duplicates_owed: u64,
    malformed_owed: u64,
    malformed_made: usize,
}

impl Plan {
    /// The scenario being run.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    fn event_id(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.random())
            .into_uuid()
            .to_string()
    }

    /// The event time of a message sent at `offset`: jittered, and now and then late.
    fn timestamp(&mut self, offset: Duration) -> String {
        let timing = self.scenario.timing;
        let mut millis = offset.as_millis() as i64;
        let jitter = timing.jitter.as_millis() as i64;
        if jitter > 0 {
            millis += self.rng.random_range(-jitter..=jitter);
        }
        let lateness = timing.max_lateness.as_millis() as i64;
        if lateness > 0 && self.rng.random_bool(timing.late_ratio) {
            millis -= self.rng.random_range(1..=lateness);
        }
        (self.start_time + TimeDelta::milliseconds(millis))
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// A valid event: of the mix's next type, or (during a drift, unless `known_only`) of the
    /// new type. Returns it with its id and whether it drifted.
    fn valid(&mut self, timestamp: String, known_only: bool) -> (Built, String, bool) {
        let event_id = self.event_id();
        let drift = self
            .scenario
            .drift
            .filter(|d| self.next as f64 > d.from * self.scenario.count as f64);
        if let Some(drift) = drift
            && !known_only
            && self.rng.random_bool(drift.new_type_ratio)
        {
            let built = self
                .factory
                .shipment(&mut self.rng, event_id.clone(), timestamp);
            return (built, event_id, true);
        }
        let kind = self.picker.next();
        let mut built = self
            .factory
            .build(&mut self.rng, kind, event_id.clone(), timestamp);
        let drifted = drift.is_some_and(|d| self.rng.random_bool(d.new_field_ratio));
        if drifted {
            self.factory.add_drift_fields(&mut self.rng, &mut built);
        }
        (built, event_id, drifted)
    }
}

impl Iterator for Plan {
    type Item = PlannedMessage;

    fn next(&mut self) -> Option<PlannedMessage> {
        let seq = self.next;
        if seq >= self.scenario.count {
            return None;
        }
        let quota =
            |ratio, phase| quota_until(seq + 1, ratio, phase) - quota_until(seq, ratio, phase);
        self.duplicates_owed += quota(self.scenario.duplicate_ratio, DUPLICATE_PHASE);
        self.malformed_owed += quota(self.scenario.malformed_ratio, MALFORMED_PHASE);
        let offset = self.scenario.offset(seq);
        self.next += 1;

        if self.duplicates_owed > 0 && !self.recent.is_empty() {
            self.duplicates_owed -= 1;
            let pick = self.rng.random_range(0..self.recent.len());
            let (event_id, data) = self.recent[pick].clone();
            return Some(PlannedMessage {
                seq,
                offset,
                data,
                intent: Intent::Duplicate { event_id },
            });
        }

        let timestamp = self.timestamp(offset);
        // A malformed message is a broken event of a known type, so each reason applies.
        let malformed = self.malformed_owed > 0;
        let (built, event_id, drifted) = self.valid(timestamp, malformed);
        if malformed {
            self.malformed_owed -= 1;
            let reason = PUBLISHABLE_REASONS[self.malformed_made % PUBLISHABLE_REASONS.len()];
            self.malformed_made += 1;
            let data = break_event(
                &mut self.rng,
                reason,
                built.fields,
                built.event_type,
                self.max_event_bytes,
            );
            return Some(PlannedMessage {
                seq,
                offset,
                data: Bytes::from(data),
                intent: Intent::Malformed { reason },
            });
        }

        let data = Bytes::from(serde_json::to_vec(&built.fields).unwrap_or_default());
        if self.recent.len() == REDELIVERY_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back((event_id.clone(), data.clone()));
        Some(PlannedMessage {
            seq,
            offset,
            data,
            intent: Intent::Valid {
                event_type: built.event_type,
                event_id,
                anomaly: built.anomaly,
                drifted,
            },
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.scenario.count - self.next).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Plan {}
