//! Publishing to topics: the trait every function uses, with Pub/Sub (`pubsub.rs`) and, in a
//! build with the `local` feature, the embedded bus (`local.rs`) behind it.

#[cfg(feature = "local")]
mod local;
mod pubsub;

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;

#[cfg(feature = "local")]
pub use local::{LocalBus, LogOptions, LogStats, PushSubscription, Undelivered};
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
