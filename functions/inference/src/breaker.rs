//! A circuit breaker for the prediction endpoint: after a run of failed calls it stops calling
//! for a cool-down (requests are answered 503 at once, so Pub/Sub redelivers later instead of
//! piling onto a failing endpoint), then lets one trial call through: success closes it, failure
//! opens it again.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The trial call is in flight; everything else waits for its verdict.
    HalfOpen,
}

/// What a call was admitted as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Normal,
    Trial,
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    failures_to_open: u32,
    cooldown: Duration,
}

impl Breaker {
    pub fn new(failures_to_open: u32, cooldown: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            failures_to_open: failures_to_open.max(1),
            cooldown,
        }
    }

    /// True while calls are refused (open and cooling down, or a trial call in flight).
    pub fn refusing(&self) -> bool {
        match *self.lock() {
            State::Closed { .. } => false,
            State::Open { until } => Instant::now() < until,
            State::HalfOpen => true,
        }
    }

    /// Admits a call, or refuses it while the breaker is open.
    pub fn admit(&self) -> Option<Admission> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Some(Admission::Normal),
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                Some(Admission::Trial)
            }
            State::Open { .. } | State::HalfOpen => None,
        }
    }

    /// Records how an admitted call went.
    pub fn record(&self, admission: Admission, success: bool) {
        let mut state = self.lock();
        let opened = Instant::now() + self.cooldown;
        *state = match (&*state, admission, success) {
            (_, _, true) => State::Closed { failures: 0 },
            (_, Admission::Trial, false) => State::Open { until: opened },
            (State::Closed { failures }, Admission::Normal, false) => {
                let failures = failures + 1;
                if failures >= self.failures_to_open {
                    tracing::warn!(failures, cooldown = ?self.cooldown, "prediction endpoint failing: circuit breaker open");
                    State::Open { until: opened }
                } else {
                    State::Closed { failures }
                }
            }
            // A call admitted before the breaker opened, failing late: the breaker stays as is.
            (State::Open { until }, Admission::Normal, false) => State::Open { until: *until },
            (State::HalfOpen, Admission::Normal, false) => State::HalfOpen,
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_then_half_opens_and_recovers() {
        let cooldown = Duration::from_millis(30);
        let breaker = Breaker::new(2, cooldown);
        for _ in 0..2 {
            assert_eq!(breaker.admit(), Some(Admission::Normal));
            breaker.record(Admission::Normal, false);
        }
        assert!(breaker.refusing());
        assert_eq!(breaker.admit(), None);
        std::thread::sleep(cooldown);
        assert!(!breaker.refusing());
        assert_eq!(breaker.admit(), Some(Admission::Trial));
        assert_eq!(breaker.admit(), None, "one trial at a time");
        breaker.record(Admission::Trial, false);
        assert!(breaker.refusing(), "a failed trial opens it again");
        std::thread::sleep(cooldown);
        assert_eq!(breaker.admit(), Some(Admission::Trial));
        breaker.record(Admission::Trial, true);
        assert_eq!(breaker.admit(), Some(Admission::Normal));
    }
}
