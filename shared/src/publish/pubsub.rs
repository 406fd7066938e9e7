//! Pub/Sub through the official `google-cloud-pubsub` crate, one batching publisher per topic.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use google_cloud_pubsub::client::{BasePublisher, Publisher as TopicPublisher};
use google_cloud_pubsub::error::PublishError;
use google_cloud_pubsub::model::Message;

use super::{OutgoingMessage, Publisher};
use crate::error::{BackendError, Retry};

/// Publishes to Pub/Sub topics of one project.
pub struct PubsubPublisher {
    base: BasePublisher,
    project: String,
    endpoint: Option<String>,
    topics: Mutex<HashMap<String, TopicPublisher>>,
}

impl PubsubPublisher {
    /// Connects once. `endpoint` overrides the service address (the emulator, which also needs
    /// `anonymous` credentials).
    pub async fn connect(
        project: &str,
        endpoint: Option<&str>,
        anonymous: bool,
    ) -> anyhow::Result<Self> {
        let mut builder = BasePublisher::builder();
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if anonymous {
            builder = builder.with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        }
        Ok(Self {
            base: builder.build().await?,
            project: project.to_owned(),
            endpoint: endpoint.map(str::to_owned),
            topics: Mutex::new(HashMap::new()),
        })
    }

    fn topic(&self, topic: &str) -> TopicPublisher {
        let mut topics = self
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        topics
            .entry(topic.to_owned())
            .or_insert_with(|| {
                self.base
                    .publisher(format!("projects/{}/topics/{topic}", self.project))
                    .build()
            })
            .clone()
    }
}

#[async_trait]
impl Publisher for PubsubPublisher {
    fn describe(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => format!("Pub/Sub at {endpoint}, project {}", self.project),
            None => format!("Pub/Sub, project {}", self.project),
        }
    }

    async fn publish(&self, topic: &str, message: OutgoingMessage) -> Result<String, BackendError> {
        let operation = || format!("publish to {topic}");
        self.topic(topic)
            .publish(
                Message::new()
                    .set_data(message.data)
                    .set_attributes(message.attributes),
            )
            .await
            .map_err(|err| match err {
                PublishError::Rpc(rpc) => BackendError::from_gax(operation(), &rpc),
                other => BackendError::new(operation(), Retry::Transient, other),
            })
    }
}
