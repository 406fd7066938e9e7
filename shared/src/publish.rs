//! Publishing to topics: the trait every function uses, with Pub/Sub and the embedded local bus
//! behind it.

mod bus;
mod pubsub;

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;

pub use bus::{LocalBus, LogOptions, LogStats, PushSubscription, Undelivered};
pub use pubsub::PubsubPublisher;

use crate::error::BackendError;

/// A message to publish.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub data: Bytes,
    pub attributes: BTreeMap<String, String>,
}

/// Publishes messages to topics named by their short id (`events-processed`).
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Where messages go, for the start-up log.
    fn describe(&self) -> String;

    /// Publishes one message and returns its message id once the topic has accepted it.
    async fn publish(&self, topic: &str, message: OutgoingMessage) -> Result<String, BackendError>;
}
