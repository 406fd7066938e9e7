//! The dead-letter store: one readable JSON record per input that can never succeed, at
//! `<dead-letter prefix><reason>/YYYY/MM/DD/<key>.json` in the raw bucket.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::PushMessage;
use crate::error::{BackendError, Rejection};
use crate::metrics;
use crate::registry::{is_valid_event_id, rfc3339};
use crate::storage::{Created, ObjectStore};

/// What is kept of a dead-lettered input: enough to read why, and to replay it after a fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    /// The reason code (`bad_json`, `missing_field`, …).
    pub reason: String,
    /// What is wrong, for a person.
    pub detail: String,
    /// The function that gave up on it.
    pub function: String,
    pub dead_lettered_at: String,
    /// The Pub/Sub message as delivered, when the envelope could be decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<PushMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<String>,
    /// The request headers that frame a CloudEvent (`ce-*`, `content-type`), when the envelope
    /// could not be decoded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The request body as received (lossy UTF-8), when the envelope could not be decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl DeadLetterRecord {
    /// A record for a decoded Pub/Sub message that failed validation.
    pub fn for_message(
        rejection: &Rejection,
        function: &str,
        message: &PushMessage,
        subscription: Option<&str>,
    ) -> Self {
        Self {
            message: Some(message.clone()),
            subscription: subscription.map(str::to_owned),
            ..Self::base(rejection, function)
        }
    }

    /// A record for a request whose envelope could not be decoded at all.
    pub fn for_body(
        rejection: &Rejection,
        function: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Self {
        let headers = headers
            .iter()
            .filter(|(name, _)| {
                name.as_str().starts_with("ce-") || *name == http::header::CONTENT_TYPE
            })
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect();
        Self {
            headers,
            body: Some(String::from_utf8_lossy(body).into_owned()),
            ..Self::base(rejection, function)
        }
    }

    /// The kept request headers, as headers again (to decode the body once more on replay).
    pub fn header_map(&self) -> HeaderMap {
        self.headers
            .iter()
            .filter_map(|(name, value)| {
                Some((
                    http::HeaderName::try_from(name.as_str()).ok()?,
                    http::HeaderValue::try_from(value.as_str()).ok()?,
                ))
            })
            .collect()
    }

    fn base(rejection: &Rejection, function: &str) -> Self {
        Self {
            reason: rejection.reason.code().to_owned(),
            detail: rejection.detail.clone(),
            function: function.to_owned(),
            dead_lettered_at: rfc3339(Utc::now()),
            message: None,
            subscription: None,
            headers: BTreeMap::new(),
            body: None,
        }
    }

    /// The object name under the dead-letter prefix. Stable across redeliveries: dated by the
    /// message's publish time (else today) and named by its message id (else a hash of the body).
    fn object_name(&self, prefix: &str) -> String {
        let published = self
            .message
            .as_ref()
            .and_then(|m| m.publish_time.as_deref())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
        let key = match &self.message {
            Some(message) if is_valid_event_id(&message.message_id) => message.message_id.clone(),
            Some(message) => format!(
                "msg-{}",
                Uuid::new_v5(&Uuid::NAMESPACE_OID, message.message_id.as_bytes())
            ),
            None => format!(
                "body-{}",
                Uuid::new_v5(
                    &Uuid::NAMESPACE_OID,
                    self.body.as_deref().unwrap_or_default().as_bytes()
                )
            ),
        };
        format!(
            "{prefix}{}/{}/{key}.json",
            self.reason,
            published.format("%Y/%m/%d")
        )
    }
}

/// Writes dead-letter records, create-if-absent, so a redelivered failure is kept once.
#[derive(Clone)]
pub struct DeadLetterStore {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
}

impl DeadLetterStore {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        Self {
            store,
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    /// The prefix under which all records live.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Stores the record durably, logs why, and returns its object name; only then may the
    /// input be acknowledged.
    pub async fn write(&self, record: &DeadLetterRecord) -> Result<String, BackendError> {
        let name = record.object_name(&self.prefix);
        let body = serde_json::to_vec_pretty(record).expect("a record always serialises");
        let created = self
            .store
            .create_if_absent(&self.bucket, &name, Bytes::from(body), "application/json")
            .await?;
        // A redelivered failure finds its record there already: it is counted once.
        if created == Created::New {
            metrics::dead_lettered(&record.function, &record.reason);
        }
        tracing::warn!(reason = %record.reason, dead_letter = %name, "dead-lettered: {}", record.detail);
        Ok(name)
    }

    /// Names of the records under `prefix`. Callers check that `prefix` starts with
    /// [`Self::prefix`]; the store itself refuses prefixes that leave the bucket.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, BackendError> {
        self.store.list(&self.bucket, prefix).await
    }

    /// Reads one record; `None` when it is gone or is not a record.
    pub async fn read(&self, name: &str) -> Result<Option<DeadLetterRecord>, BackendError> {
        let Some(bytes) = self.store.read(&self.bucket, name).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }
}
