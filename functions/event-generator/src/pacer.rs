//! Sends a plan at its pace: each message against an absolute deadline (start + its offset), so
//! a slow send never shifts the ones after it; when behind, everything due goes out at once,
//! with many publishes in flight. Counts what happened in a [`Progress`] others can watch.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use pulse_shared::error::{BackendError, Retry};
use pulse_shared::publish::{OutgoingMessage, Publisher};
use tokio::time::Instant;

use crate::plan::{Intent, Plan, PlannedMessage};

/// Publishes in flight at once (Pub/Sub answers each in milliseconds; thousands per second need
/// many at once).
const MAX_IN_FLIGHT: usize = 1_024;

/// Live counters of one run.
#[derive(Debug, Default)]
pub struct Progress {
    planned: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    duplicates: AtomicU64,
    malformed: AtomicU64,
    anomalies: AtomicU64,
    started: OnceLock<Instant>,
    finished_after: OnceLock<Duration>,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProgressSnapshot {
    /// Messages in the run.
    pub planned: u64,
    /// Messages the topic accepted (duplicates and malformed included).
    pub sent: u64,
    /// Messages whose publish failed (not retried: they are not in the topic).
    pub failed: u64,
    pub duplicates: u64,
    pub malformed: u64,
    pub anomalies: u64,
    /// Time since the run started, or its whole length once it has ended.
    pub elapsed: Duration,
    /// `sent / elapsed`, messages per second.
    pub achieved_rate: f64,
}

impl Progress {
    /// Counters for a run of `planned` messages.
    pub fn new(planned: u64) -> Self {
        let progress = Self::default();
        progress.planned.store(planned, Ordering::Relaxed);
        progress
    }

    /// The counters now.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let elapsed = match (self.finished_after.get(), self.started.get()) {
            (Some(length), _) => *length,
            (None, Some(start)) => start.elapsed(),
            (None, None) => Duration::ZERO,
        };
        let sent = self.sent.load(Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        ProgressSnapshot {
            planned: self.planned.load(Ordering::Relaxed),
            sent,
            failed: self.failed.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            anomalies: self.anomalies.load(Ordering::Relaxed),
            elapsed,
            achieved_rate: if secs > 0.0 { sent as f64 / secs } else { 0.0 },
        }
    }

    fn record(&self, intent: &Intent, result: &Result<String, BackendError>) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        let kind = match intent {
            Intent::Duplicate { .. } => &self.duplicates,
            Intent::Malformed { .. } => &self.malformed,
            Intent::Valid { anomaly: true, .. } => &self.anomalies,
            Intent::Valid { .. } => return,
        };
        kind.fetch_add(1, Ordering::Relaxed);
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Every message was sent (or failed transiently and was counted) and the run's duration
    /// has passed.
    Completed,
    /// Stopped on request; messages not yet sent never will be.
    Cancelled,
    /// Stopped because publishing cannot succeed (no such topic, no permission).
    Failed(String),
}

/// Publishes `plan` to `topic` at its pace until it ends, `cancelled` resolves, or the topic
/// refuses permanently. A publish that fails transiently is counted in `failed` and not
/// retried (the publisher has already retried it). Publishes in flight are awaited before
/// returning, so the counters are final.
pub async fn publish(
    plan: Plan,
    publisher: &dyn Publisher,
    topic: &str,
    progress: &Progress,
    cancelled: impl Future<Output = ()>,
) -> Finish {
    let start = Instant::now();
    let _ = progress.started.set(start);
    let end = start + plan.scenario().duration;
    let mut plan = plan.peekable();
    let mut in_flight = FuturesUnordered::new();
    let mut finish = None;
    tokio::pin!(cancelled);

    while finish.is_none() {
        let now = Instant::now();
        while in_flight.len() < MAX_IN_FLIGHT {
            match plan.next_if(|m| start + m.offset <= now) {
                Some(message) => in_flight.push(send(publisher, topic, message)),
                None => break,
            }
        }
        let next_deadline = plan.peek().map(|m| start + m.offset);
        if next_deadline.is_none() && in_flight.is_empty() {
            // The run lasts its whole duration, so its rate is count / duration.
            tokio::select! {
                () = &mut cancelled => finish = Some(Finish::Cancelled),
                () = tokio::time::sleep_until(end) => finish = Some(Finish::Completed),
            }
            continue;
        }
        let can_send = in_flight.len() < MAX_IN_FLIGHT;
        tokio::select! {
            biased;
            () = &mut cancelled => finish = Some(Finish::Cancelled),
            Some((intent, result)) = in_flight.next(), if !in_flight.is_empty() => {
                progress.record(&intent, &result);
                if let Err(err) = result && err.retry == Retry::Permanent {
                    finish = Some(Finish::Failed(format!(
                        "publishing to topic {topic} failed permanently, so the run stopped: \
                         {err}; check that the topic exists and this service may publish to it"
                    )));
                }
            }
            () = sleep_until(next_deadline), if can_send && next_deadline.is_some() => {}
        }
    }
    while let Some((intent, result)) = in_flight.next().await {
        progress.record(&intent, &result);
    }
    let _ = progress.finished_after.set(start.elapsed());
    finish.unwrap_or(Finish::Completed)
}

async fn send(
    publisher: &dyn Publisher,
    topic: &str,
    message: PlannedMessage,
) -> (Intent, Result<String, BackendError>) {
    let outgoing = OutgoingMessage {
        data: message.data,
        ..OutgoingMessage::default()
    };
    let result = publisher.publish(topic, outgoing).await;
    if let Err(err) = &result {
        tracing::warn!(seq = message.seq, "publish failed: {err}");
    }
    (message.intent, result)
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}
