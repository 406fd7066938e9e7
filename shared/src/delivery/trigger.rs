//! The trigger route `POST /`, the same for every function: the push-token check, decoding,
//! dead-lettering what can never succeed, and the answer with its status. A function says only
//! what it does with one decoded delivery ([`Trigger::handle`]).

use std::future::Future;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use bytes::Bytes;
use serde::Serialize;
use utoipa::openapi::OpenApi;

use super::answer::{self, DeadLettered};
use super::deadletter::{DeadLetterRecord, DeadLetterStore};
use super::envelope::{
    Framing, PubsubDelivery, STORAGE_FINALIZED, StorageEvent, decode_pubsub, decode_storage,
};
use super::oidc::{PushVerifier, require_push_token};
use super::processed::ProcessedEvent;
use crate::config::Config;
use crate::error::{BackendError, FunctionError, Rejection};
use crate::runtime::{described_app, operator_routes};
use crate::telemetry;

/// What a function did with one delivery; either way the delivery is acknowledged.
#[derive(Debug)]
pub enum Handled<T> {
    /// Done with: answered 200 with `T`, whose `outcome` names what was done.
    Done(T),
    /// It can never succeed: its record is stored in the dead-letter store, then it is
    /// answered 200 `dead_lettered`.
    Rejected(Rejection),
}

/// A function triggered on `POST /`: its state, and what it does with one delivery.
pub trait Trigger: Clone + Send + Sync + 'static {
    /// What it is triggered by, decoded and checked before [`Self::handle`] sees it.
    type Delivery: Delivery;
    /// What it answers when done: a JSON object with an `outcome` (a `#[serde(tag =
    /// "outcome")]` enum, say).
    type Done: Serialize + Send;
    /// Its name in dead-letter records.
    const FUNCTION: &'static str;

    /// Where inputs that can never succeed are kept.
    fn dead_letters(&self) -> &DeadLetterStore;

    /// Does the work for one delivery. An `Err` means nothing was acknowledged: it is answered
    /// 503, 429 or 500 ([`FunctionError`]) and the delivery comes again. The function may take
    /// what it needs out of the delivery; the message it came in stays for the dead-letter record.
    fn handle(
        &self,
        delivery: &mut Self::Delivery,
    ) -> impl Future<Output = Result<Handled<Self::Done>, BackendError>> + Send;
}

/// A delivery as a function receives it, decoded from the request.
pub trait Delivery: Sized + Send + Sync + 'static {
    /// Decodes the request; what cannot be decoded is dead-lettered with the message it was
    /// decoded that far, if any.
    fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Self, Undecodable>;
    /// The Pub/Sub message it came in: a dead-letter record keeps it (else the request whole).
    fn message(&self) -> Option<&PubsubDelivery>;
    /// The event id, for the request's log span.
    fn event_id(&self) -> Option<&str> {
        None
    }
}

/// A delivery that cannot be decoded, with the Pub/Sub message when that much was.
#[derive(Debug)]
pub struct Undecodable {
    pub rejection: Rejection,
    pub message: Option<Box<PubsubDelivery>>,
}

impl From<Rejection> for Undecodable {
    fn from(rejection: Rejection) -> Self {
        Self {
            rejection,
            message: None,
        }
    }
}

fn log_framing(framing: Framing) {
    tracing::debug!(?framing, "delivery decoded");
}

impl Delivery for PubsubDelivery {
    fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Self, Undecodable> {
        let (framing, delivery) = decode_pubsub(headers, body)?;
        log_framing(framing);
        Ok(delivery)
    }

    fn message(&self) -> Option<&PubsubDelivery> {
        Some(self)
    }
}

/// A processed event (what preprocess published), checked again on arrival, with the message
/// it came in.
#[derive(Debug)]
pub struct Processed {
    pub event: ProcessedEvent,
    pub delivery: PubsubDelivery,
}

impl Delivery for Processed {
    fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Self, Undecodable> {
        let delivery = PubsubDelivery::decode(headers, body)?;
        match ProcessedEvent::from_message(&delivery.message) {
            Ok(event) => Ok(Self { event, delivery }),
            Err(rejection) => Err(Undecodable {
                rejection,
                message: Some(Box::new(delivery)),
            }),
        }
    }

    fn message(&self) -> Option<&PubsubDelivery> {
        Some(&self.delivery)
    }

    fn event_id(&self) -> Option<&str> {
        Some(&self.event.event_id)
    }
}

/// A Cloud Storage object finalized (Eventarc `google.cloud.storage.object.v1.finalized`).
impl Delivery for StorageEvent {
    fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Self, Undecodable> {
        Ok(decode_storage(headers, body, STORAGE_FINALIZED)?)
    }

    fn message(&self) -> Option<&PubsubDelivery> {
        None
    }
}

/// The trigger route of `T`: `POST /` (where Pub/Sub pushes and Eventarc deliver). When
/// `PULSE_PUSH_AUDIENCE` and `PULSE_PUSH_SERVICE_ACCOUNT` are set, a request without a valid
/// push token is refused 401 before anything else ([`super::oidc`]); unset, as locally, every
/// request is taken. [`app`] mounts it.
///
/// # Panics
/// When the HTTP client for Google's signing keys cannot be built: the service then stops at
/// start-up rather than take pushes it cannot verify.
pub fn route<T: Trigger>(config: &Config) -> MethodRouter<T> {
    let route = post(handle::<T>);
    let Some(push) = &config.push_auth else {
        return route;
    };
    let verifier = PushVerifier::new(push.clone()).unwrap_or_else(|error| {
        panic!("push tokens cannot be verified ({error}); stopping rather than accept unverified pushes")
    });
    tracing::info!(
        audience = %push.audience,
        service_account = %push.service_account,
        "the trigger route requires a push token"
    );
    route.route_layer(axum::middleware::from_fn_with_state(
        verifier,
        require_push_token,
    ))
}

/// A triggered function's whole router: [`route`] at `POST /`, its `manual` routes behind
/// [`operator_routes`], and the rest of [`described_app`] with `doc`.
///
/// # Panics
/// As [`route`] and [`operator_routes`] do.
pub fn app<T: Trigger>(state: T, manual: Router<T>, doc: &OpenApi, config: &Config) -> Router {
    let routes = Router::new()
        .route("/", route::<T>(config))
        .merge(operator_routes(manual, config));
    described_app(routes, state, doc, config, T::FUNCTION)
}

/// One delivery through `function`: decode, handle, dead-letter what can never succeed, answer.
async fn handle<T: Trigger>(
    State(function): State<T>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (rejection, message) = match T::Delivery::decode(&headers, &body) {
        Ok(mut delivery) => {
            if let Some(message) = delivery.message() {
                telemetry::record_ids(Some(&message.message.message_id), delivery.event_id());
            }
            match function.handle(&mut delivery).await {
                Ok(Handled::Done(done)) => return answer::json(StatusCode::OK, &done),
                Ok(Handled::Rejected(rejection)) => {
                    let record =
                        record(&rejection, T::FUNCTION, delivery.message(), &headers, &body);
                    return dead_letter(function.dead_letters(), &rejection, &record).await;
                }
                Err(err) => return FunctionError::from(err).into_response(),
            }
        }
        Err(Undecodable { rejection, message }) => (rejection, message),
    };
    if let Some(message) = &message {
        telemetry::record_ids(Some(&message.message.message_id), None);
    }
    let record = record(&rejection, T::FUNCTION, message.as_deref(), &headers, &body);
    dead_letter(function.dead_letters(), &rejection, &record).await
}

fn record(
    rejection: &Rejection,
    function: &str,
    message: Option<&PubsubDelivery>,
    headers: &HeaderMap,
    body: &[u8],
) -> DeadLetterRecord {
    match message {
        Some(delivery) => DeadLetterRecord::for_message(
            rejection,
            function,
            &delivery.message,
            delivery.subscription.as_deref(),
        ),
        None => DeadLetterRecord::for_body(rejection, function, headers, body),
    }
}

/// Stores the record; only then is the delivery acknowledged.
async fn dead_letter(
    store: &DeadLetterStore,
    rejection: &Rejection,
    record: &DeadLetterRecord,
) -> Response {
    match store.write(record).await {
        Ok(object) => answer::json(StatusCode::OK, &DeadLettered::new(rejection, &object)),
        Err(err) => FunctionError::from(err).into_response(),
    }
}
