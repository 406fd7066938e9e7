//! The embedded bus: topics and push subscriptions in one process, delivering over HTTP as
//! Eventarc does (binary-mode `messagePublished` CloudEvents), with exponential backoff and
//! dead-lettering after the last attempt.
//!
//! Like Pub/Sub, a message published to a topic with no subscription is dropped. Unlike Pub/Sub,
//! undelivered messages live in memory: they are lost if the process stops. The raw archive
//! keeps every event, and `POST /replay` re-publishes any slice of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use chrono::Utc;
use cloudevents::binding::reqwest::RequestBuilderExt as _;
use cloudevents::{EventBuilder as _, EventBuilderV10};
use tokio::sync::{Semaphore, mpsc};

use super::{OutgoingMessage, Publisher};
use crate::deadletter::{DeadLetterRecord, DeadLetterStore};
use crate::envelope::{PUBSUB_PUBLISHED, PubsubDelivery, PushMessage};
use crate::error::{BackendError, Reason, Rejection, Retry};
use crate::registry::rfc3339;

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

struct BusInner {
    project: String,
    subscriptions: RwLock<HashMap<String, Vec<mpsc::UnboundedSender<PushMessage>>>>,
    http: reqwest::Client,
    dead_letters: DeadLetterStore,
    next_message_id: AtomicU64,
    /// Deliveries accepted by `publish` and not yet acknowledged or dead-lettered.
    in_flight: AtomicUsize,
    /// Messages published, by topic.
    published: Mutex<HashMap<String, u64>>,
}

impl LocalBus {
    /// A bus whose undeliverable messages go to `dead_letters`.
    pub fn new(project: impl Into<String>, dead_letters: DeadLetterStore) -> Self {
        // Message ids start at the current time in microseconds, so ids from an earlier run of
        // the bus are not reused (event ids may be derived from them).
        let first_id = u64::try_from(Utc::now().timestamp_micros()).unwrap_or_default();
        Self {
            inner: Arc::new(BusInner {
                project: project.into(),
                subscriptions: RwLock::new(HashMap::new()),
                http: reqwest::Client::new(),
                dead_letters,
                next_message_id: AtomicU64::new(first_id),
                in_flight: AtomicUsize::new(0),
                published: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Adds a push subscription; messages published from now on are delivered to it.
    pub fn subscribe(&self, subscription: PushSubscription) {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.inner
            .subscriptions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(subscription.topic.clone())
            .or_default()
            .push(sender);
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
        let subscriptions = self.inner.subscriptions.read().map_err(|_| {
            BackendError::new(
                format!("publish to {topic}"),
                Retry::Transient,
                "bus lock poisoned",
            )
        })?;
        if let Some(senders) = subscriptions.get(topic) {
            let push = PushMessage {
                data: base64::engine::general_purpose::STANDARD.encode(&message.data),
                attributes: message.attributes,
                message_id: message_id.clone(),
                publish_time: Some(rfc3339(Utc::now())),
                ordering_key: None,
            };
            for sender in senders {
                self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
                if sender.send(push.clone()).is_err() {
                    // The runtime is shutting down; there is nobody left to deliver to.
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
    while let Some(message) = messages.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let (bus, subscription) = (bus.clone(), subscription.clone());
        tokio::spawn(async move {
            deliver(&bus, &subscription, message).await;
            bus.in_flight.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
        });
    }
}

/// Pushes one message until it is acknowledged (2xx) or its attempts run out.
async fn deliver(bus: &BusInner, subscription: &PushSubscription, message: PushMessage) {
    let mut backoff = subscription.min_backoff;
    let mut last_failure = String::new();
    for attempt in 1..=subscription.max_attempts {
        match push_once(bus, subscription, &message).await {
            Ok(()) => return,
            Err(failure) => last_failure = failure,
        }
        if attempt < subscription.max_attempts {
            tracing::debug!(
                subscription = %subscription.name,
                message_id = %message.message_id,
                attempt,
                "push failed ({last_failure}); retrying in {backoff:?}"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(subscription.max_backoff);
        }
    }
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
        &message,
        Some(&subscription_path(&bus.project, &subscription.name)),
    );
    match bus.dead_letters.write(&record).await {
        Ok(name) => tracing::warn!(
            subscription = %subscription.name,
            message_id = %message.message_id,
            dead_letter = %name,
            "{rejection}"
        ),
        Err(err) => tracing::error!(
            subscription = %subscription.name,
            message_id = %message.message_id,
            "message lost: {rejection}; writing its dead-letter record failed too: {err}"
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
