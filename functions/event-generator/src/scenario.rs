//! Scenarios: how many messages, over how long, in what shape, of which types, and how many of
//! them are duplicates, malformed, anomalous or drifted. The named ones, and the arithmetic that
//! turns a message's position into its send time.

use std::time::Duration;

use crate::events::EventKind;

/// The largest run accepted (messages).
pub const MAX_COUNT: u64 = 50_000_000;
/// The longest run accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// The highest target rate accepted, messages per second: four times the 5,000/s the generator
/// is built to hold, and more than preprocess answers durably on 2 cores (14,013 requests/s), so
/// a typo cannot ask for a flood.
pub const MAX_RATE: f64 = 20_000.0;
/// The most messages a run without a duration (all at once, as demos and tests send) may hold.
pub const MAX_AT_ONCE: u64 = 100_000;

/// How send times spread over the run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    /// Evenly spaced: message `i` of `n` at `i/n` of the duration.
    Steady,
    /// Repeating cycles of `period`: `share` of each cycle's messages in its first `burst`,
    /// the rest spread over the remainder.
    Bursty {
        period: Duration,
        burst: Duration,
        share: f64,
    },
}

/// Relative weights of the event types.
#[derive(Clone, Debug, PartialEq)]
pub struct Mix {
    weights: Vec<(EventKind, f64)>,
}

impl Mix {
    /// A mix from `(kind, weight)` pairs; zero weights are dropped. `None` if nothing is left
    /// or a weight is negative or not finite.
    pub fn new(weights: impl IntoIterator<Item = (EventKind, f64)>) -> Option<Self> {
        let mut kept = Vec::new();
        for (kind, weight) in weights {
            if !weight.is_finite() || weight < 0.0 {
                return None;
            }
            if weight > 0.0 {
                kept.retain(|(k, _)| *k != kind);
                kept.push((kind, weight));
            }
        }
        kept.sort_by_key(|(kind, _)| *kind);
        (!kept.is_empty()).then_some(Self { weights: kept })
    }

    /// Every known type equally.
    pub fn even() -> Self {
        Self {
            weights: EventKind::ALL.iter().map(|k| (*k, 1.0)).collect(),
        }
    }

    /// A shop with a few sensors: mostly browsing, then orders and stock moves.
    pub fn shop() -> Self {
        Self {
            weights: vec![
                (EventKind::Order, 0.25),
                (EventKind::Inventory, 0.20),
                (EventKind::UserActivity, 0.40),
                (EventKind::DeviceTelemetry, 0.15),
            ],
        }
    }

    /// Only `kind`.
    pub fn only(kind: EventKind) -> Self {
        Self {
            weights: vec![(kind, 1.0)],
        }
    }

    /// The weights, normalised to shares that sum to 1.
    pub fn shares(&self) -> Vec<(EventKind, f64)> {
        let total: f64 = self.weights.iter().map(|(_, w)| w).sum();
        self.weights.iter().map(|&(k, w)| (k, w / total)).collect()
    }

    /// A deterministic picker that follows the shares exactly (smooth weighted round-robin):
    /// after `n` picks each kind has been picked `n × share` times, give or take one.
    pub(crate) fn picker(&self) -> MixPicker {
        MixPicker {
            shares: self.shares(),
            credit: vec![0.0; self.weights.len()],
        }
    }
}

/// Smooth weighted round-robin over a mix's shares.
pub(crate) struct MixPicker {
    shares: Vec<(EventKind, f64)>,
    credit: Vec<f64>,
}

impl MixPicker {
    pub fn next(&mut self) -> EventKind {
        let mut best = 0;
        for (i, (_, share)) in self.shares.iter().enumerate() {
            self.credit[i] += share;
            if self.credit[i] > self.credit[best] {
                best = i;
            }
        }
        self.credit[best] -= 1.0;
        self.shares[best].0
    }
}

/// How event timestamps relate to send times.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// Each timestamp is its send time moved by up to this much, either way.
    pub jitter: Duration,
    /// Share of events that arrive late (their timestamp further in the past).
    pub late_ratio: f64,
    /// How late a late event is, at most.
    pub max_lateness: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            jitter: Duration::from_secs(2),
            late_ratio: 0.02,
            max_lateness: Duration::from_secs(300),
        }
    }
}

/// A schema drift: from some point in the run, producers add fields and a new event type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Drift {
    /// Where in the run the drift starts, as a share of the messages (0..1).
    pub from: f64,
    /// Share of known-type events after the start that carry new fields.
    pub new_field_ratio: f64,
    /// Share of events after the start that are of the new type instead.
    pub new_type_ratio: f64,
}

/// A run's recipe.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// Messages published, duplicates and malformed ones included.
    pub count: u64,
    /// Time from the first send to the end of the run.
    pub duration: Duration,
    pub shape: Shape,
    pub mix: Mix,
    /// Share of messages that are an earlier message published again (a redelivery).
    pub duplicate_ratio: f64,
    /// Share of messages that are malformed, cycling through every publishable reason.
    pub malformed_ratio: f64,
    /// Share of telemetry readings that are anomalies (4–6 sigma from the baseline).
    pub anomaly_ratio: f64,
    pub drift: Option<Drift>,
    pub timing: Timing,
}

/// The named scenarios, in the order they are listed.
pub const NAMES: [&str; 10] = [
    "quick_sample",
    "light_demo",
    "moderate_load",
    "heavy_load",
    "burst_test",
    "stress_test",
    "duplicate_storm",
    "malformed_mix",
    "schema_drift",
    "iot_fleet",
];

const MINUTE: u64 = 60;

impl Scenario {
    /// A custom run's starting point: `count` messages over `duration`, the shop mix, clean.
    pub fn custom(count: u64, duration: Duration) -> Self {
        Self {
            name: "custom".to_owned(),
            description: "A custom run.".to_owned(),
            count,
            duration,
            shape: Shape::Steady,
            mix: Mix::shop(),
            duplicate_ratio: 0.0,
            malformed_ratio: 0.0,
            anomaly_ratio: 0.01,
            drift: None,
            timing: Timing::default(),
        }
    }

    /// The named scenario, if there is one by that name.
    pub fn by_name(name: &str) -> Option<Self> {
        let steady = |count, minutes: u64, description: &str| Self {
            name: name.to_owned(),
            description: description.to_owned(),
            ..Self::custom(count, Duration::from_secs(minutes * MINUTE))
        };
        let scenario = match name {
            "quick_sample" => Self {
                mix: Mix::even(),
                duplicate_ratio: 1.0 / 12.0,
                malformed_ratio: 1.0 / 12.0,
                ..steady(
                    12,
                    1,
                    "Every known type, one redelivered duplicate and one malformed event.",
                )
            },
            "light_demo" => steady(150, 5, "A light, steady shop load."),
            "moderate_load" => steady(600, 10, "A moderate, steady shop load."),
            "heavy_load" => steady(1_800, 15, "A heavy, steady shop load."),
            "burst_test" => Self {
                shape: Shape::Bursty {
                    period: Duration::from_secs(30),
                    burst: Duration::from_secs(3),
                    share: 0.8,
                },
                ..steady(
                    900,
                    3,
                    "Bursts: 80 % of each 30 s cycle's events in its first 3 s.",
                )
            },
            "stress_test" => steady(6_000, 10, "The heaviest named load, steady."),
            "duplicate_storm" => Self {
                duplicate_ratio: 0.2,
                ..steady(
                    1_000,
                    5,
                    "20 % of messages are redeliveries of earlier ones; rows must not double.",
                )
            },
            "malformed_mix" => Self {
                malformed_ratio: 0.05,
                ..steady(
                    1_200,
                    10,
                    "5 % malformed, covering every reason a published message can be \
                     dead-lettered for.",
                )
            },
            "schema_drift" => Self {
                drift: Some(Drift {
                    from: 0.3,
                    new_field_ratio: 0.5,
                    new_type_ratio: 0.15,
                }),
                ..steady(
                    300,
                    5,
                    "After 30 % of the run, known types gain new fields and a new type \
                     (`shipment`) appears.",
                )
            },
            "iot_fleet" => Self {
                mix: Mix::only(EventKind::DeviceTelemetry),
                anomaly_ratio: 0.02,
                ..steady(
                    2_400,
                    10,
                    "A fleet of devices reporting around their baselines, 2 % anomalies.",
                )
            },
            _ => return None,
        };
        Some(scenario)
    }

    /// Every named scenario.
    pub fn all() -> Vec<Self> {
        NAMES
            .iter()
            .filter_map(|name| Self::by_name(name))
            .collect()
    }

    /// The target rate, messages per second (infinite for a zero duration: all at once).
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.duration.as_secs_f64()
    }

    /// The same run, over `duration` (the rate changes). `Duration::ZERO` sends everything
    /// at once, which is what a demo or a test wants.
    pub fn with_duration(self, duration: Duration) -> Self {
        Self { duration, ..self }
    }

    /// The same run with `count` messages over the same duration (the rate changes).
    pub fn with_count(self, count: u64) -> Self {
        Self { count, ..self }
    }

    /// When message `index` is sent, from the start of the run.
    pub fn offset(&self, index: u64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let total = self.duration.as_secs_f64();
        let secs = match self.shape {
            Shape::Steady => {
                // In integer nanoseconds, so evenly spaced means exactly evenly spaced.
                let nanos = self.duration.as_nanos() * u128::from(index) / u128::from(self.count);
                return Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
            }
            Shape::Bursty {
                period,
                burst,
                share,
            } => {
                let (period, burst) = (period.as_secs_f64(), burst.as_secs_f64());
                // Cycles elapsed; products first, so whole cycles come out whole.
                let x = (index as f64 * total) / (self.count as f64 * period);
                let cycle = x.floor();
                let p = x - cycle;
                let within = if p < share {
                    p / share * burst
                } else {
                    burst + (p - share) / (1.0 - share) * (period - burst)
                };
                (cycle * period + within).min(total)
            }
        };
        Duration::from_secs_f64(secs)
    }

    /// How many of the run's messages are duplicates and malformed, exactly.
    pub fn expected_counts(&self) -> (u64, u64) {
        (
            quota_until(self.count, self.duplicate_ratio, DUPLICATE_PHASE),
            quota_until(self.count, self.malformed_ratio, MALFORMED_PHASE),
        )
    }

    /// Checks the recipe can run; the error says which part to change.
    pub fn validate(&self) -> Result<(), String> {
        let ratio = |name: &str, value: f64| {
            if (0.0..1.0).contains(&value) {
                Ok(())
            } else {
                Err(format!(
                    "{name} must be at least 0 and below 1, not {value}"
                ))
            }
        };
        ratio("duplicate_ratio", self.duplicate_ratio)?;
        ratio("malformed_ratio", self.malformed_ratio)?;
        ratio("anomaly_ratio", self.anomaly_ratio)?;
        if self.duplicate_ratio + self.malformed_ratio >= 1.0 {
            return Err("duplicates and malformed messages leave no room for events".to_owned());
        }
        if self.count == 0 || self.count > MAX_COUNT {
            return Err(format!(
                "count must be between 1 and {MAX_COUNT}, not {}",
                self.count
            ));
        }
        if self.duration.is_zero() && self.count > MAX_AT_ONCE {
            return Err(format!(
                "a run without a duration sends everything at once: at most {MAX_AT_ONCE} \
                 messages, not {}; give a duration or a rate",
                self.count
            ));
        }
        if !self.duration.is_zero() && self.rate() > MAX_RATE {
            return Err(format!(
                "the rate must be at most {MAX_RATE}/s, not {:.0}/s",
                self.rate()
            ));
        }
        if self.duration > MAX_DURATION {
            return Err(format!(
                "duration must be at most {} s, not {} s",
                MAX_DURATION.as_secs(),
                self.duration.as_secs_f64()
            ));
        }
        Ok(())
    }
}

/// Phases of the even spreading of duplicates and malformed messages: different, so the two
/// do not fall on the same message, and past zero so the first message is a real event.
pub(crate) const DUPLICATE_PHASE: f64 = 0.5;
pub(crate) const MALFORMED_PHASE: f64 = 0.25;

/// How many of the first `n` messages carry a quota of `ratio`, spread evenly.
pub(crate) fn quota_until(n: u64, ratio: f64, phase: f64) -> u64 {
    ((n as f64 * ratio + phase).floor() - phase.floor()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_scenarios_have_the_documented_size() {
        let expect = [
            ("quick_sample", 12, 1),
            ("light_demo", 150, 5),
            ("moderate_load", 600, 10),
            ("heavy_load", 1_800, 15),
            ("burst_test", 900, 3),
            ("stress_test", 6_000, 10),
        ];
        for (name, count, minutes) in expect {
            let s = Scenario::by_name(name).unwrap();
            assert_eq!(s.count, count, "{name}");
            assert_eq!(s.duration, Duration::from_secs(minutes * 60), "{name}");
        }
        assert_eq!(Scenario::all().len(), NAMES.len());
        for s in Scenario::all() {
            s.validate().unwrap();
        }
        assert!(Scenario::by_name("nope").is_none());
    }

    #[test]
    fn duplicate_and_malformed_counts_are_exact() {
        let counts = |name| Scenario::by_name(name).unwrap().expected_counts();
        assert_eq!(counts("quick_sample"), (1, 1));
        assert_eq!(counts("duplicate_storm"), (200, 0));
        assert_eq!(counts("malformed_mix"), (0, 60));
        assert_eq!(counts("light_demo"), (0, 0));
    }

    #[test]
    fn steady_offsets_are_evenly_spaced() {
        let s = Scenario::by_name("light_demo").unwrap();
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(75), Duration::from_secs(150));
        assert_eq!(s.offset(1), Duration::from_secs(2));
        assert!((s.rate() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn bursts_put_most_messages_at_the_start_of_each_cycle() {
        let s = Scenario::by_name("burst_test").unwrap();
        let offsets: Vec<f64> = (0..s.count).map(|i| s.offset(i).as_secs_f64()).collect();
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "monotonic");
        assert!(offsets.iter().all(|o| *o < 180.0));
        let in_bursts = offsets.iter().filter(|o| *o % 30.0 < 3.0).count();
        // 80 % of 900, give or take the messages that fall exactly on a burst's end.
        assert!((714..=726).contains(&in_bursts), "{in_bursts}");
    }

    #[test]
    fn the_mix_picker_follows_the_shares() {
        let mut picker = Mix::shop().picker();
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..1_000 {
            *counts.entry(picker.next()).or_insert(0) += 1;
        }
        for (kind, share) in Mix::shop().shares() {
            let expected = share * 1_000.0;
            assert!(
                (f64::from(counts[&kind]) - expected).abs() <= 1.0,
                "{kind:?}"
            );
        }
        let mut even = Mix::even().picker();
        let first: Vec<_> = (0..4).map(|_| even.next()).collect();
        assert_eq!(first, EventKind::ALL);
    }

    #[test]
    fn mixes_reject_nonsense_weights() {
        assert!(Mix::new([(EventKind::Order, 0.0)]).is_none());
        assert!(Mix::new([(EventKind::Order, -1.0)]).is_none());
        assert!(Mix::new([(EventKind::Order, f64::NAN)]).is_none());
        let mix = Mix::new([(EventKind::Order, 3.0), (EventKind::Inventory, 1.0)]).unwrap();
        assert_eq!(
            mix.shares(),
            vec![(EventKind::Order, 0.75), (EventKind::Inventory, 0.25)]
        );
    }
}
