//! The embedded bus: topics and push subscriptions in one process, delivering over HTTP as
//! Eventarc does (binary-mode `messagePublished` CloudEvents), with exponential backoff and
//! dead-lettering after the last attempt.
//!
//! Like Pub/Sub, a message published to a topic with no subscription is dropped. A bus opened
//! with [`LocalBus::open`] (the local stack's) keeps a log (`log.rs`): `publish` answers only
//! once the message is synced to it, and a bus opened again on the same directory delivers
//! every message a subscription had not finished, so a message survives a crash of the process
//! (delivered at least once; downstream drops repeats by event id). [`LocalBus::new`] keeps
//! undelivered messages in memory only (tests, and a lone function, whose bus has no
//! subscriptions).

mod log;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use backon::Retryable as _;
use base64::Engine as _;
use chrono::Utc;
use cloudevents::binding::reqwest::RequestBuilderExt as _;
use cloudevents::{EventBuilder as _, EventBuilderV10};
use tokio::sync::{Semaphore, mpsc, watch};

pub use log::{LogOptions, LogStats, Undelivered};

use super::{OutgoingMessage, Publisher};
use crate::delivery::deadletter::{DeadLetterRecord, DeadLetterStore};
use crate::delivery::envelope::{PUBSUB_PUBLISHED, PubsubDelivery, PushMessage};
use crate::error::{BackendError, Reason, Rejection, Retry};
use crate::instant::rfc3339;
use crate::retry;

/// A push subscription on the local bus.
#[derive(Clone, Debug)]
pub struct PushSubscription {
    /// Short subscription id, e.g. `preprocess-events-raw`.
    pub name: String,
    pub topic: String,
    /// The URL each message is POSTed to.
    pub endpoint: String,
    /// Attempts before the message is dead-lettered (Pub/Sub's `max_delivery_attempts`).
    pub max_attempts: u32,
    /// The pause before the second attempt; each later pause doubles up to `max_backoff`, and
    /// each is stretched by a random 0–100 % ([`crate::retry::backoff`]).
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Deliveries in flight at once.
    pub max_in_flight: usize,
    /// How long one push may take before it counts as failed.
    pub push_timeout: Duration,
}

impl PushSubscription {
    /// A subscription with the local stack's defaults: 5 attempts, backoff 100 ms to 10 s.
    pub fn new(
        name: impl Into<String>,
        topic: impl Into<String>,
        endpoint: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            topic: topic.into(),
            endpoint: endpoint.into(),
            max_attempts: 5,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_in_flight: 64,
            push_timeout: Duration::from_secs(60),
        }
    }
}

/// The in-process bus. Cheap to clone; all clones share topics and subscriptions.
#[derive(Clone)]
pub struct LocalBus {
    inner: Arc<BusInner>,
}

/// A subscription's end of the bus: its name and the queue of its deliveries.
struct Subscriber {
    name: String,
    queue: mpsc::UnboundedSender<PushMessage>,
}

struct BusInner {
    project: String,
    /// Subscribers by topic.
    subscriptions: RwLock<HashMap<String, Vec<Subscriber>>>,
    /// Where published messages are kept until delivered (absent: in memory only).
    log: Option<log::BusLog>,
    /// Messages an earlier process left undelivered, until their subscription subscribes.
    recovered: Mutex<Vec<Undelivered>>,
    http: reqwest::Client,
    dead_letters: DeadLetterStore,
    next_message_id: AtomicU64,
    /// Deliveries accepted by `publish` and not yet acknowledged or dead-lettered.
    in_flight: AtomicUsize,
    /// Messages published, by topic.
    published: Mutex<HashMap<String, u64>>,
    /// Set by [`LocalBus::close`]: deliveries stop where they are.
    closed: watch::Sender<bool>,
}

impl LocalBus {
    /// A bus that keeps undelivered messages in memory only, and whose undeliverable messages
    /// go to `dead_letters`.
    pub fn new(project: impl Into<String>, dead_letters: DeadLetterStore) -> Self {
        Self::with_log(project.into(), dead_letters, None, Vec::new())
    }

    /// A bus that keeps its messages in a log under `dir` until delivered, taking the log's
    /// lock. Messages an earlier bus left there undelivered are delivered to each subscription
    /// as it subscribes.
    pub fn open(
        project: impl Into<String>,
        dead_letters: DeadLetterStore,
        dir: &std::path::Path,
        options: LogOptions,
    ) -> std::io::Result<Self> {
        let (log, recovered) = log::BusLog::open(dir, options)?;
        if !recovered.is_empty() {
            tracing::info!(
                messages = recovered.len(),
                log = %dir.display(),
                "local bus: delivering again what an earlier process left undelivered"
            );
        }
        Ok(Self::with_log(
            project.into(),
            dead_letters,
            Some(log),
            recovered,
        ))
    }

    fn with_log(
        project: String,
        dead_letters: DeadLetterStore,
        log: Option<log::BusLog>,
        recovered: Vec<Undelivered>,
    ) -> Self {
        // Message ids start at the current time in microseconds, so ids from an earlier run of
        // the bus are not reused (event ids may be derived from them), and after any recovered.
        let first_id = recovered
            .iter()
            .filter_map(|m| m.message.message_id.parse::<u64>().ok())
            .map(|id| id + 1)
            .chain([u64::try_from(Utc::now().timestamp_micros()).unwrap_or_default()])
            .max()
            .unwrap_or_default();
        Self {
            inner: Arc::new(BusInner {
                project,
                subscriptions: RwLock::new(HashMap::new()),
                log,
                recovered: Mutex::new(recovered),
                http: reqwest::Client::new(),
                dead_letters,
                next_message_id: AtomicU64::new(first_id),
                in_flight: AtomicUsize::new(0),
                published: Mutex::new(HashMap::new()),
                closed: watch::Sender::new(false),
            }),
        }
    }

    /// Adds a push subscription; messages published from now on are delivered to it, and so
    /// are those an earlier process left in the log for a subscription of the same name.
    pub fn subscribe(&self, subscription: PushSubscription) {
        let (sender, receiver) = mpsc::unbounded_channel();
        {
            let mut recovered = self
                .inner
                .recovered
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for undelivered in recovered.iter_mut() {
                if let Some(at) = undelivered
                    .subscriptions
                    .iter()
                    .position(|name| *name == subscription.name)
                {
                    undelivered.subscriptions.swap_remove(at);
                    self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
                    let _ = sender.send(undelivered.message.clone());
                }
            }
            recovered.retain(|undelivered| !undelivered.subscriptions.is_empty());
        }
        self.inner
            .subscriptions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(subscription.topic.clone())
            .or_default()
            .push(Subscriber {
                name: subscription.name.clone(),
                queue: sender,
            });
        tokio::spawn(deliver_all(
            self.inner.clone(),
            Arc::new(subscription),
            receiver,
        ));
    }

    /// Deliveries not yet acknowledged or dead-lettered.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// Resolves once every delivery has been acknowledged or dead-lettered.
    pub async fn settled(&self) {
        while self.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops delivering and closes the log, letting its lock go: what was not delivered stays
    /// in the log for the next bus on its directory (a bus in memory loses it). Publishing
    /// afterwards fails.
    pub async fn close(&self) {
        self.inner.closed.send_replace(true);
        if let Some(log) = &self.inner.log {
            log.close().await;
        }
    }

    /// What the bus's log holds (`None` for a bus kept in memory).
    pub async fn log_stats(&self) -> Option<LogStats> {
        match &self.inner.log {
            Some(log) => log.stats().await.ok(),
            None => None,
        }
    }

    /// How many messages have been published to each topic since the bus started.
    pub fn published_by_topic(&self) -> std::collections::BTreeMap<String, u64> {
        let published = self
            .inner
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        published.iter().map(|(t, n)| (t.clone(), *n)).collect()
    }

    /// How many messages have been published to `topic` since the bus started.
    pub fn published(&self, topic: &str) -> u64 {
        let published = self
            .inner
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        published.get(topic).copied().unwrap_or_default()
    }
}

#[async_trait]
impl Publisher for LocalBus {
    fn describe(&self) -> String {
        "local in-process bus".to_owned()
    }

    async fn publish(&self, topic: &str, message: OutgoingMessage) -> Result<String, BackendError> {
        let message_id = self
            .inner
            .next_message_id
            .fetch_add(1, Ordering::Relaxed)
            .to_string();
        let lock_poisoned = || {
            BackendError::new(
                format!("publish to {topic}"),
                Retry::Transient,
                "bus lock poisoned",
            )
        };
        let names: Vec<String> = {
            let subscriptions = self
                .inner
                .subscriptions
                .read()
                .map_err(|_| lock_poisoned())?;
            subscriptions
                .get(topic)
                .map(|subscribers| subscribers.iter().map(|s| s.name.clone()).collect())
                .unwrap_or_default()
        };
        if !names.is_empty() {
            let push = PushMessage {
                data: base64::engine::general_purpose::STANDARD.encode(&message.data),
                attributes: message.attributes,
                message_id: message_id.clone(),
                publish_time: Some(rfc3339(Utc::now())),
                ordering_key: None,
            };
            // Durable before anyone hears of it: a crash from here on redelivers it.
            if let Some(log) = &self.inner.log {
                log.append(topic, &names, &push).await.map_err(|err| {
                    let retry = if err.kind() == std::io::ErrorKind::InvalidInput {
                        Retry::InvalidInput
                    } else {
                        Retry::Transient
                    };
                    BackendError::new(format!("publish to {topic}"), retry, err.to_string())
                })?;
            }
            let subscriptions = self
                .inner
                .subscriptions
                .read()
                .map_err(|_| lock_poisoned())?;
            for subscriber in subscriptions.get(topic).into_iter().flatten() {
                if !names.contains(&subscriber.name) {
                    // Subscribed after the message was logged; like Pub/Sub, a subscription
                    // receives only what is published after it exists.
                    continue;
                }
                self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
                if subscriber.queue.send(push.clone()).is_err() {
                    // The runtime is shutting down; the log (if any) keeps the message.
                    self.inner.in_flight.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
        let mut published = self
            .inner
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match published.get_mut(topic) {
            Some(count) => *count += 1,
            None => {
                published.insert(topic.to_owned(), 1);
            }
        }
        Ok(message_id)
    }
}

async fn deliver_all(
    bus: Arc<BusInner>,
    subscription: Arc<PushSubscription>,
    mut messages: mpsc::UnboundedReceiver<PushMessage>,
) {
    let in_flight = Arc::new(Semaphore::new(subscription.max_in_flight));
    let mut closed = bus.closed.subscribe();
    loop {
        let message = tokio::select! {
            message = messages.recv() => message,
            _ = closed.wait_for(|closed| *closed) => None,
        };
        let Some(message) = message else {
            return;
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let (bus, subscription) = (bus.clone(), subscription.clone());
        tokio::spawn(async move {
            let mut closed = bus.closed.subscribe();
            tokio::select! {
                () = deliver(&bus, &subscription, &message) => {
                    if let Some(log) = &bus.log {
                        log.done(&subscription.name, &message.message_id);
                    }
                }
                // Closed mid-delivery: the log keeps the message for the next bus.
                _ = closed.wait_for(|closed| *closed) => {}
            }
            bus.in_flight.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
        });
    }
}

/// Pushes one message until it is acknowledged (2xx) or its attempts run out and its
/// dead-letter record is stored.
async fn deliver(bus: &BusInner, subscription: &PushSubscription, message: &PushMessage) {
    let backoff = || retry::backoff(subscription.min_backoff, subscription.max_backoff);
    let mut attempt = 0;
    let pushed = (|| push_once(bus, subscription, message))
        .retry(backoff().with_max_times(subscription.max_attempts.saturating_sub(1) as usize))
        .notify(|failure, pause| {
            attempt += 1;
            tracing::debug!(
                subscription = %subscription.name,
                message_id = %message.message_id,
                attempt,
                "push failed ({failure}); retrying in {pause:?}"
            );
        })
        .await;
    let Err(last_failure) = pushed else {
        return;
    };
    let rejection = Rejection::new(
        Reason::DeliveryExhausted,
        format!(
            "subscription {} gave up after {} attempts to push to {}; last failure: {last_failure}",
            subscription.name, subscription.max_attempts, subscription.endpoint
        ),
    );
    let record = DeadLetterRecord::for_message(
        &rejection,
        "local-bus",
        message,
        Some(&subscription_path(&bus.project, &subscription.name)),
    );
    // The message is finished only once its record is stored: until then it is tried again,
    // as Pub/Sub keeps a message whose dead-letter topic refuses it.
    let stored = (|| bus.dead_letters.write(&record))
        .retry(backoff())
        .when(|err| err.retry.may_pass())
        .notify(|err, pause| {
            tracing::warn!(
                subscription = %subscription.name,
                message_id = %message.message_id,
                "storing the dead-letter record failed ({err}); retrying in {pause:?}"
            );
        })
        .await;
    match stored {
        Ok(name) => tracing::warn!(
            subscription = %subscription.name,
            message_id = %message.message_id,
            dead_letter = %name,
            "{rejection}"
        ),
        Err(err) => tracing::error!(
            subscription = %subscription.name,
            message_id = %message.message_id,
            "message lost: {rejection}; its dead-letter record cannot be stored: {err}"
        ),
    }
}

async fn push_once(
    bus: &BusInner,
    subscription: &PushSubscription,
    message: &PushMessage,
) -> Result<(), String> {
    let data = PubsubDelivery {
        message: message.clone(),
        subscription: Some(subscription_path(&bus.project, &subscription.name)),
    };
    let event = EventBuilderV10::new()
        .id(message.message_id.clone())
        .source(format!(
            "//pubsub.googleapis.com/projects/{}/topics/{}",
            bus.project, subscription.topic
        ))
        .ty(PUBSUB_PUBLISHED)
        .time(Utc::now())
        .data(
            "application/json",
            serde_json::to_value(&data).map_err(|e| e.to_string())?,
        )
        .build()
        .map_err(|e| e.to_string())?;
    let response = bus
        .http
        .post(&subscription.endpoint)
        .timeout(subscription.push_timeout)
        .event(event)
        .map_err(|e| e.to_string())?
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

fn subscription_path(project: &str, name: &str) -> String {
    format!("projects/{project}/subscriptions/{name}")
}
