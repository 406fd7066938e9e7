//! One classification of failure for every function: permanent (dead-letter, then acknowledge)
//! or transient (answer 503/429 so Pub/Sub or Eventarc delivers again).

use std::fmt;
use std::time::Duration;

/// Why an input can never succeed. The code names the dead-letter folder it lands in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The HTTP request is not a Pub/Sub push, nor a CloudEvent of the expected type.
    BadEnvelope,
    /// The message `data` is not valid base64.
    BadBase64,
    /// The message `data` is not a JSON object.
    BadJson,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON type.
    BadFieldType,
    /// A field has the right type but a value outside its domain.
    BadValue,
    /// `event_type` is not a safe identifier (`^[a-z][a-z0-9_]{0,63}$`).
    InvalidEventType,
    /// The decoded event is larger than `PULSE_MAX_EVENT_BYTES`.
    TooLarge,
    /// The local bus gave up pushing a message after its last attempt.
    DeliveryExhausted,
    /// A field's value does not fit the type of its table column (the table is left as it is).
    SchemaConflict,
    /// An event lacks a feature field the model needs (inference).
    MissingFeature,
    /// The prediction endpoint answered with predictions that do not match the instances sent
    /// (count or shape).
    BadPrediction,
    /// The event's type would need a new table past `PULSE_MAX_EVENT_TYPES` (table-manager).
    TooManyEventTypes,
}

impl Reason {
    /// Every reason, for tests and reports.
    pub const ALL: [Reason; 13] = [
        Reason::BadEnvelope,
        Reason::BadBase64,
        Reason::BadJson,
        Reason::MissingField,
        Reason::BadFieldType,
        Reason::BadValue,
        Reason::InvalidEventType,
        Reason::TooLarge,
        Reason::DeliveryExhausted,
        Reason::SchemaConflict,
        Reason::MissingFeature,
        Reason::BadPrediction,
        Reason::TooManyEventTypes,
    ];

    /// The reason code as it appears in dead-letter paths and reports.
    pub fn code(self) -> &'static str {
        match self {
            Reason::BadEnvelope => "bad_envelope",
            Reason::BadBase64 => "bad_base64",
            Reason::BadJson => "bad_json",
            Reason::MissingField => "missing_field",
            Reason::BadFieldType => "bad_field_type",
            Reason::BadValue => "bad_value",
            Reason::InvalidEventType => "invalid_event_type",
            Reason::TooLarge => "too_large",
            Reason::DeliveryExhausted => "delivery_exhausted",
            Reason::SchemaConflict => "schema_conflict",
            Reason::MissingFeature => "missing_feature",
            Reason::BadPrediction => "bad_prediction",
            Reason::TooManyEventTypes => "too_many_event_types",
        }
    }

    /// Parses a reason code back, e.g. from a dead-letter path.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An input that can never succeed: it is dead-lettered with its reason and acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    pub reason: Reason,
    /// What a person needs to fix it, e.g. ``field `status`: "lost" is not one of …``.
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// Whether trying the same call again may succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// The backend is unavailable or timed out: answer 503, the delivery comes again.
    Transient,
    /// The backend is pushing back (429 / resource exhausted): answer 429.
    Throttled,
    /// Retrying cannot help until an operator acts (permission denied, not found, a
    /// misconfiguration): answered 500, whatever the input.
    Permanent,
    /// The backend refuses this input (a value, a name, a file it cannot take): the same input
    /// will fail again, other inputs may pass. The caller dead-letters or quarantines the input
    /// alone.
    InvalidInput,
}

impl Retry {
    /// Classifies an HTTP status from a backend: 408, 429 and 5xx may pass; 400, 413 and 422
    /// refuse the request's content; the rest (401, 403, 404, …) refuse any request.
    pub fn from_http_status(status: u16) -> Self {
        match status {
            429 => Retry::Throttled,
            408 | 500..=599 => Retry::Transient,
            400 | 413 | 422 => Retry::InvalidInput,
            _ => Retry::Permanent,
        }
    }

    /// Whether the same call may pass if tried again: the backend was unavailable or pushing
    /// back. The other kinds fail again until the input or an operator changes.
    pub fn may_pass(self) -> bool {
        matches!(self, Retry::Transient | Retry::Throttled)
    }
}

/// A call to an outside system (object store, publisher) that failed.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed ({retry:?}): {message}")]
pub struct BackendError {
    /// What was being done, e.g. `write gs://pulse-raw/raw/order/…`.
    pub operation: String,
    pub retry: Retry,
    pub message: String,
}

impl BackendError {
    pub fn new(operation: impl Into<String>, retry: Retry, message: impl fmt::Display) -> Self {
        Self {
            operation: operation.into(),
            retry,
            message: message.to_string(),
        }
    }

    /// A local I/O failure: the disk may come back (full, busy), so it is transient.
    pub fn io(operation: impl Into<String>, err: &std::io::Error) -> Self {
        Self::new(operation, Retry::Transient, err)
    }

    /// Classifies an error from the official Google Cloud SDK crates.
    pub fn from_gax(operation: impl Into<String>, err: &google_cloud_gax::error::Error) -> Self {
        use google_cloud_gax::error::rpc::Code;
        // The HTTP status decides first when there is one: an error answer whose body is not a
        // JSON error (an empty 404, a proxy's HTML page) reaches us as a *transport* error that
        // still carries its status, and a missing bucket must not be retried forever.
        let retry = if let Some(status) = err.http_status_code() {
            Retry::from_http_status(status)
        } else if err.is_timeout() || err.is_transport() || err.is_exhausted() {
            Retry::Transient
        } else if let Some(status) = err.status() {
            match status.code {
                Code::ResourceExhausted => Retry::Throttled,
                Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::Internal
                | Code::Unknown => Retry::Transient,
                Code::InvalidArgument | Code::OutOfRange => Retry::InvalidInput,
                _ => Retry::Permanent,
            }
        } else {
            // Neither a status nor a transport error: an I/O or serialisation problem on our
            // side, which another attempt on another instance may not repeat.
            Retry::Transient
        };
        Self::new(operation, retry, err)
    }
}

/// The `Retry-After` a transient or throttled answer carries.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A request a function could not complete. Permanent problems with an input are not errors:
/// they are dead-lettered and acknowledged. Answered in the one answer shape
/// ([`crate::delivery::answer`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FunctionError {
    /// A backend failed: answered 503 (429 when throttled; 500 when retrying cannot help until
    /// an operator acts), so Pub/Sub delivers the message again. Nothing was acknowledged.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A manual request is malformed: answered 400 with what to fix.
    #[error("{0}")]
    BadRequest(String),
    /// A manual request names something that does not exist (a job): answered 404.
    #[error("{0}")]
    NotFound(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for reason in Reason::ALL {
            assert_eq!(Reason::from_code(reason.code()), Some(reason));
        }
        assert_eq!(Reason::from_code("nope"), None);
    }

    #[test]
    fn http_statuses_classify() {
        assert_eq!(Retry::from_http_status(429), Retry::Throttled);
        for status in [408, 500, 502, 503, 504] {
            assert_eq!(Retry::from_http_status(status), Retry::Transient);
        }
        for status in [400, 413, 422] {
            assert_eq!(Retry::from_http_status(status), Retry::InvalidInput);
        }
        for status in [401, 403, 404, 409, 412] {
            assert_eq!(Retry::from_http_status(status), Retry::Permanent);
        }
    }
}

/// A configuration problem, naming the variable so the operator knows what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The variable is set but its value cannot be used.
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
    /// The variable must be set for the chosen backends.
    #[error("environment variable {var} must be set: {reason}")]
    Missing { var: &'static str, reason: String },
    /// Local backends were asked for on Cloud Run, where nothing they write would survive.
    #[error(
        "PULSE_BACKEND=local refused: K_SERVICE={service} says this is Cloud Run, where local \
         files and an in-process bus would lose data; unset PULSE_BACKEND or set it to `gcp`"
    )]
    LocalOnCloudRun { service: String },
}
