//! A publisher that keeps what it is given, for tests that look at what a function published.

use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use tokio::time::Instant;

use crate::error::{BackendError, Retry};
use crate::publish::{OutgoingMessage, Publisher};

/// One message as it was published.
#[derive(Clone, Debug)]
pub struct Published {
    pub topic: String,
    /// When it was published (on tokio's clock, which a test may pause).
    pub at: Instant,
    pub message: OutgoingMessage,
}

/// Records every published message; refuses each one, as a backend answering `retry` would,
/// while a refusal is set.
#[derive(Default)]
pub struct RecordingPublisher {
    published: Mutex<Vec<Published>>,
    refusal: Mutex<Option<Retry>>,
}

impl RecordingPublisher {
    /// A publisher refusing every message with `retry`.
    pub fn refusing(retry: Retry) -> Self {
        let publisher = Self::default();
        publisher.refuse(Some(retry));
        publisher
    }

    /// Refuses the messages from now on with `retry`, or takes them again (`None`).
    pub fn refuse(&self, retry: Option<Retry>) {
        *self.refusal.lock().unwrap_or_else(PoisonError::into_inner) = retry;
    }

    /// Every message published so far, in order.
    pub fn published(&self) -> Vec<Published> {
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn count(&self) -> usize {
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[async_trait]
impl Publisher for RecordingPublisher {
    fn describe(&self) -> String {
        "recording publisher".to_owned()
    }

    async fn publish(&self, topic: &str, message: OutgoingMessage) -> Result<String, BackendError> {
        if let Some(retry) = *self.refusal.lock().unwrap_or_else(PoisonError::into_inner) {
            return Err(BackendError::new("publish", retry, "refused by the test"));
        }
        let mut published = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        published.push(Published {
            topic: topic.to_owned(),
            at: Instant::now(),
            message,
        });
        Ok(published.len().to_string())
    }
}
