//! The dead-letter store: one readable JSON record per input that can never succeed, at
//! `<dead-letter prefix><reason>/YYYY/MM/DD/<key>.json` in the raw bucket.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::delivery::envelope::PushMessage;
use crate::error::{BackendError, FunctionError, Rejection};
use crate::instant::rfc3339;
use crate::metrics;
use crate::registry::identifiers::is_valid_event_id;
use crate::storage::{Created, ObjectStore, is_safe_object_name};

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
    /// The request body as received, when the envelope could not be decoded and the body is
    /// UTF-8 text that JSON holds without much escaping (see [`DeadLetterRecord::for_body`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The request body as received, base64, when it is not such text (binary, invalid UTF-8,
    /// mostly control characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// The body's length when it was longer than [`MAX_KEPT_BODY`] and only its start is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_truncated_from: Option<u64>,
}

/// The most of a body a record keeps: a record stays one object any store takes (the local
/// store's journal takes records of up to 32 MiB), however large the requests a function accepts.
pub const MAX_KEPT_BODY: usize = 16 << 20;

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
        let (kept, truncated_from) = if body.len() > MAX_KEPT_BODY {
            (&body[..MAX_KEPT_BODY], Some(body.len() as u64))
        } else {
            (body, None)
        };
        // Text stays readable; anything else is kept byte for byte as base64. Lossy UTF-8 made
        // each invalid byte three (a 16 MiB body a 48 MiB record) and lost the bytes themselves,
        // and JSON escapes a control character in six.
        let (text, base64) = match std::str::from_utf8(kept) {
            Ok(text) if escaped_len(text) <= kept.len() + kept.len() / 3 => {
                (Some(text.to_owned()), None)
            }
            _ => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(kept)),
            ),
        };
        Self {
            headers,
            body: text,
            body_base64: base64,
            body_truncated_from: truncated_from,
            ..Self::base(rejection, function)
        }
    }

    /// The kept request body as bytes again (to decode it once more on replay); `None` when the
    /// record holds none, or its base64 does not decode.
    pub fn body_bytes(&self) -> Option<Vec<u8>> {
        match (&self.body, &self.body_base64) {
            (Some(text), _) => Some(text.as_bytes().to_vec()),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok(),
            (None, None) => None,
        }
    }

    /// True when `other` keeps the same input from the same function: a redelivery of it, not
    /// another input that happens to get the same object name.
    fn same_input(&self, other: &Self) -> bool {
        self.function == other.function
            && self.message == other.message
            && self.subscription == other.subscription
            && self.headers == other.headers
            && self.body == other.body
            && self.body_base64 == other.body_base64
            && self.body_truncated_from == other.body_truncated_from
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
            body_base64: None,
            body_truncated_from: None,
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
                Uuid::new_v5(&Uuid::NAMESPACE_OID, &self.body_bytes().unwrap_or_default())
            ),
        };
        format!(
            "{prefix}{}/{}/{key}.json",
            self.reason,
            published.format("%Y/%m/%d")
        )
    }

    /// The name for a record whose [`Self::object_name`] holds another input (another function's
    /// record of the same message, say): the same name with a digest of this input before
    /// `.json`, so every input gets a name of its own and keeps it across redeliveries.
    fn collision_name(&self, name: &str) -> String {
        let identity = serde_json::to_vec(&(
            &self.function,
            &self.message,
            &self.subscription,
            &self.headers,
            &self.body,
            &self.body_base64,
        ))
        .expect("a record always serialises");
        let digest = Uuid::new_v5(&Uuid::NAMESPACE_OID, &identity)
            .simple()
            .to_string();
        let stem = name.strip_suffix(".json").unwrap_or(name);
        format!("{stem}.{}.json", &digest[..16])
    }
}

/// The length of `text` as a JSON string's contents.
fn escaped_len(text: &str) -> usize {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum()
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

    /// Refuses a prefix (given as request field `field`) that names no folder of this store:
    /// one outside [`Self::prefix`], or with empty, `.` or `..` segments.
    pub fn check_prefix(&self, field: &str, prefix: &str) -> Result<(), FunctionError> {
        let root = &self.prefix;
        if prefix.starts_with(root.as_str()) && is_safe_object_name(prefix.trim_end_matches('/')) {
            return Ok(());
        }
        Err(FunctionError::BadRequest(format!(
            "{field} {prefix:?} must lie under {root:?}, e.g. \"{root}bad_value/\""
        )))
    }

    /// Stores the record durably, logs why, and returns its object name; only then may the
    /// input be acknowledged. A record of another input already under the name (another
    /// function's record of the same message, say) is left alone, and this one is stored beside
    /// it under a name of its own.
    pub async fn write(&self, record: &DeadLetterRecord) -> Result<String, BackendError> {
        let mut name = record.object_name(&self.prefix);
        let body =
            Bytes::from(serde_json::to_vec_pretty(record).expect("a record always serialises"));
        let mut created = self
            .store
            .create_if_absent(&self.bucket, &name, body.clone(), "application/json")
            .await?;
        if created == Created::AlreadyExisted
            && !self
                .read(&name)
                .await?
                .is_some_and(|existing| existing.same_input(record))
        {
            name = record.collision_name(&name);
            created = self
                .store
                .create_if_absent(&self.bucket, &name, body, "application/json")
                .await?;
        }
        // A redelivered failure finds its record there already: it is counted once.
        if created == Created::New {
            metrics::dead_lettered(&record.function, &record.reason);
        }
        tracing::warn!(reason = %record.reason, dead_letter = %name, "dead-lettered: {}", record.detail);
        Ok(name)
    }

    /// Names of the records under `prefix`. Callers check `prefix` with [`Self::check_prefix`];
    /// the store itself refuses prefixes that leave the bucket.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, BackendError> {
        self.store.list(&self.bucket, prefix).await
    }

    /// A page of [`Self::list`]: at most `max` names after `after`.
    pub async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<String>, BackendError> {
        self.store.list_page(&self.bucket, prefix, after, max).await
    }

    /// Reads one record; `None` when it is gone or is not a record.
    pub async fn read(&self, name: &str) -> Result<Option<DeadLetterRecord>, BackendError> {
        let Some(bytes) = self.store.read(&self.bucket, name).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Reason;
    #[cfg(feature = "local")]
    use crate::storage::LocalObjectStore;

    fn rejection() -> Rejection {
        Rejection::new(Reason::BadEnvelope, "not a push")
    }

    /// A dead-letter store under `dead-letter/` in a local store in a fresh directory (kept
    /// while the returned guard lives).
    #[cfg(feature = "local")]
    fn local_dead_letters() -> (tempfile::TempDir, DeadLetterStore) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalObjectStore::open(dir.path(), false).unwrap());
        (dir, DeadLetterStore::new(store, "raw", "dead-letter/"))
    }

    fn record_of(body: &[u8]) -> DeadLetterRecord {
        DeadLetterRecord::for_body(&rejection(), "preprocess", &HeaderMap::new(), body)
    }

    fn stored_size(record: &DeadLetterRecord) -> usize {
        serde_json::to_vec_pretty(record).unwrap().len()
    }

    /// A 16 MiB body that is not UTF-8 was kept as lossy UTF-8: 48 MiB, larger than the local
    /// store's journal takes, and not the bytes received. Now every body is kept byte for byte in
    /// at most a third more than its size.
    #[test]
    fn bodies_are_kept_byte_for_byte_in_at_most_a_third_more() {
        let size = 1 << 20;
        let invalid_utf8 = vec![0xff_u8; size];
        let control_characters = vec![0x01_u8; size];
        let text = "é {\"message\": 1}\n".repeat(size / 20).into_bytes();
        for (what, body) in [
            ("invalid UTF-8", invalid_utf8),
            ("control characters", control_characters),
            ("text", text),
        ] {
            let record = record_of(&body);
            assert_eq!(record.body_bytes().as_deref(), Some(&body[..]), "{what}");
            assert!(
                stored_size(&record) <= body.len() * 4 / 3 + 1024,
                "{what}: a {}-byte body made a {}-byte record",
                body.len(),
                stored_size(&record)
            );
        }
        assert!(
            record_of(b"{\"message\": 1}").body.is_some(),
            "text stays readable"
        );
        assert!(record_of(&[0xff]).body_base64.is_some());
    }

    #[test]
    fn a_body_over_the_kept_limit_keeps_its_start_and_length() {
        let body = vec![b'a'; MAX_KEPT_BODY + 10];
        let record = record_of(&body);
        assert_eq!(record.body_truncated_from, Some(body.len() as u64));
        assert_eq!(record.body_bytes().unwrap().len(), MAX_KEPT_BODY);
    }

    #[cfg(feature = "local")]
    fn message() -> PushMessage {
        PushMessage {
            data: "e30=".to_owned(),
            attributes: BTreeMap::new(),
            message_id: "m-1".to_owned(),
            publish_time: Some("2026-12-05T10:00:00Z".to_owned()),
            ordering_key: None,
        }
    }

    /// table-manager and inference read the same processed messages: the second to dead-letter
    /// one with the same reason found the first one's record under the name and answered as if
    /// its own were stored.
    #[cfg(feature = "local")]
    #[tokio::test]
    async fn another_input_under_the_same_name_gets_a_name_of_its_own() {
        let (_dir, dead_letters) = local_dead_letters();
        let rejection = Rejection::new(Reason::SchemaConflict, "no");
        let first = DeadLetterRecord::for_message(&rejection, "table-manager", &message(), None);
        let second = DeadLetterRecord::for_message(&rejection, "inference", &message(), None);

        let first_name = dead_letters.write(&first).await.unwrap();
        let second_name = dead_letters.write(&second).await.unwrap();
        assert_ne!(first_name, second_name);
        assert!(second_name.starts_with("dead-letter/schema_conflict/2026/12/05/m-1."));
        assert_eq!(
            dead_letters
                .read(&first_name)
                .await
                .unwrap()
                .unwrap()
                .function,
            "table-manager"
        );
        assert_eq!(
            dead_letters
                .read(&second_name)
                .await
                .unwrap()
                .unwrap()
                .function,
            "inference"
        );

        // Redeliveries find their own records: nothing more is stored.
        assert_eq!(dead_letters.write(&first).await.unwrap(), first_name);
        assert_eq!(dead_letters.write(&second).await.unwrap(), second_name);
        let names = dead_letters.list("dead-letter/").await.unwrap();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[cfg(feature = "local")]
    #[tokio::test]
    async fn a_prefix_must_name_a_folder_of_the_store() {
        let (_dir, dead_letters) = local_dead_letters();
        for fine in [
            "dead-letter/",
            "dead-letter/bad_json/",
            "dead-letter/bad_json/2026/12",
        ] {
            assert!(dead_letters.check_prefix("prefix", fine).is_ok(), "{fine}");
        }
        for refused in [
            "raw/",
            "",
            "dead-letter/../raw/",
            "dead-letter//x",
            "dead-letters/",
        ] {
            let err = dead_letters.check_prefix("prefix", refused).unwrap_err();
            assert!(
                matches!(&err, FunctionError::BadRequest(m) if m.contains("must lie under \"dead-letter/\"")),
                "{refused}: {err:?}"
            );
        }
    }
}
