//! The local bus against real HTTP endpoints on loopback: Eventarc's binary CloudEvent format,
//! retry with backoff until acknowledged, dead-lettering after the last attempt, and dropping
//! messages published to a topic nobody subscribes to.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use pulse_shared::delivery::deadletter::DeadLetterStore;
use pulse_shared::delivery::envelope::decode_pubsub;
use pulse_shared::publish::{
    LocalBus, LogOptions, OutgoingMessage, Publisher as _, PushSubscription,
};
use pulse_shared::storage::{LocalObjectStore, ObjectStore};
use pulse_shared::testing::harness;
use pulse_shared::testing::server::free_port;

/// An endpoint that fails its first `failures` requests with 503, recording every request.
#[derive(Clone, Default)]
struct Endpoint {
    failures: usize,
    seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

async fn receive(State(endpoint): State<Endpoint>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut seen = endpoint.seen.lock().unwrap();
    seen.push((headers, body));
    if seen.len() <= endpoint.failures {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn serve(endpoint: Endpoint) -> String {
    let router = Router::new().route("/", post(receive)).with_state(endpoint);
    format!("{}/", harness::serve(router).await)
}

fn bus(dir: &tempfile::TempDir) -> (LocalBus, Arc<dyn ObjectStore>) {
    let objects: Arc<dyn ObjectStore> =
        Arc::new(LocalObjectStore::open(dir.path(), false).unwrap());
    let dead_letters = DeadLetterStore::new(objects.clone(), "pulse-raw", "dead-letter/");
    (LocalBus::new("local", dead_letters), objects)
}

fn subscription(topic: &str, endpoint: String, max_attempts: u32) -> PushSubscription {
    PushSubscription {
        max_attempts,
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        ..PushSubscription::new(format!("{topic}-sub"), topic, endpoint)
    }
}

fn message(data: &'static [u8]) -> OutgoingMessage {
    OutgoingMessage {
        data: Bytes::from_static(data),
        attributes: [("event_type".to_owned(), "order".to_owned())].into(),
    }
}

/// Publishes `message` to `topic` and waits until the bus is done with it (delivered or dead
/// lettered); its id.
async fn publish_and_settle(bus: &LocalBus, topic: &str, message: OutgoingMessage) -> String {
    let message_id = bus.publish(topic, message).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), bus.settled())
        .await
        .unwrap();
    message_id
}

/// The names of the dead letters the bus wrote.
async fn dead_letters(objects: &dyn ObjectStore) -> Vec<String> {
    objects.list("pulse-raw", "dead-letter/").await.unwrap()
}

#[tokio::test]
async fn delivers_as_eventarc_does_and_retries_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (bus, objects) = bus(&dir);
    let endpoint = Endpoint {
        failures: 2,
        ..Endpoint::default()
    };
    bus.subscribe(subscription("events-raw", serve(endpoint.clone()).await, 5));

    let message_id = publish_and_settle(&bus, "events-raw", message(b"{\"a\":1}")).await;

    let seen = endpoint.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "two failures, then the acknowledgement");
    let (headers, body) = &seen[2];
    assert_eq!(
        headers["ce-type"],
        "google.cloud.pubsub.topic.v1.messagePublished"
    );
    assert_eq!(headers["ce-specversion"], "1.0");
    assert_eq!(headers["ce-id"], message_id.as_str());
    assert_eq!(
        headers["ce-source"],
        "//pubsub.googleapis.com/projects/local/topics/events-raw"
    );
    let (_, delivery) = decode_pubsub(headers, body).unwrap();
    assert_eq!(delivery.message.message_id, message_id);
    assert_eq!(delivery.message.decode_data().unwrap(), b"{\"a\":1}");
    assert_eq!(delivery.message.attributes["event_type"], "order");
    assert_eq!(
        delivery.subscription.as_deref(),
        Some("projects/local/subscriptions/events-raw-sub")
    );
    assert!(dead_letters(objects.as_ref()).await.is_empty());
}

#[tokio::test]
async fn dead_letters_after_the_last_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let (bus, objects) = bus(&dir);
    let endpoint = Endpoint {
        failures: usize::MAX,
        ..Endpoint::default()
    };
    bus.subscribe(subscription(
        "events-processed",
        serve(endpoint.clone()).await,
        3,
    ));

    let message_id = publish_and_settle(&bus, "events-processed", message(b"{}")).await;

    assert_eq!(endpoint.seen.lock().unwrap().len(), 3);
    let names = objects
        .list("pulse-raw", "dead-letter/delivery_exhausted/")
        .await
        .unwrap();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        names[0].ends_with(&format!("/{message_id}.json")),
        "{names:?}"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&objects.read("pulse-raw", &names[0]).await.unwrap().unwrap())
            .unwrap();
    assert_eq!(record["reason"], "delivery_exhausted");
    assert!(
        record["detail"].as_str().unwrap().contains("3 attempts"),
        "{record}"
    );
    assert_eq!(record["message"]["messageId"], message_id.as_str());
}

#[tokio::test]
async fn a_topic_without_subscriptions_drops_what_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let (bus, objects) = bus(&dir);
    bus.publish("nobody-listens", message(b"{}")).await.unwrap();
    assert_eq!(bus.in_flight(), 0);
    assert_eq!(bus.published("nobody-listens"), 1);
    assert!(objects.list("pulse-raw", "").await.unwrap().is_empty());
}

fn durable_bus(dir: &tempfile::TempDir) -> (LocalBus, Arc<dyn ObjectStore>) {
    let objects: Arc<dyn ObjectStore> =
        Arc::new(LocalObjectStore::open(dir.path().join("gcs"), false).unwrap());
    let dead_letters = DeadLetterStore::new(objects.clone(), "pulse-raw", "dead-letter/");
    let bus = LocalBus::open(
        "local",
        dead_letters,
        &dir.path().join("bus"),
        LogOptions::default(),
    )
    .unwrap();
    (bus, objects)
}

/// A crash: the process's runtime goes away with deliveries still owed (here the endpoint is
/// down, so nothing was acknowledged); the next bus on the same directory delivers them.
#[test]
fn a_durable_bus_delivers_after_a_crash_what_it_had_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let published: Vec<String> = {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let (bus, _) = durable_bus(&dir);
            // Nothing listens on this port: every push fails and is retried, never finished.
            let nowhere = format!("http://127.0.0.1:{}/", free_port());
            bus.subscribe(PushSubscription {
                max_attempts: 1000,
                ..subscription("events-raw", nowhere, 1000)
            });
            let mut ids = Vec::new();
            for _ in 0..50 {
                ids.push(
                    bus.publish("events-raw", message(b"{\"a\":1}"))
                        .await
                        .unwrap(),
                );
            }
            ids
        })
        // The runtime is dropped here with every delivery still retrying: the crash.
    };

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (bus, objects) = durable_bus(&dir);
        let endpoint = Endpoint::default();
        bus.subscribe(subscription("events-raw", serve(endpoint.clone()).await, 5));
        tokio::time::timeout(Duration::from_secs(20), bus.settled())
            .await
            .unwrap();
        let mut delivered: Vec<String> = endpoint
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|(headers, body)| decode_pubsub(headers, body).unwrap().1.message.message_id)
            .collect();
        delivered.sort();
        let mut expected = published.clone();
        expected.sort();
        assert_eq!(
            delivered, expected,
            "each accepted message delivered once after restart"
        );
        assert!(dead_letters(objects.as_ref()).await.is_empty());
        // New ids never reuse the recovered ones.
        let next = bus.publish("events-raw", message(b"{}")).await.unwrap();
        assert!(!published.contains(&next));
        bus.settled().await;
        assert_eq!(bus.log_stats().await.unwrap().live, 0);
    });
    drop(runtime);

    // Everything was acknowledged: a third start has nothing to deliver.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (bus, _) = durable_bus(&dir);
        let endpoint = Endpoint::default();
        bus.subscribe(subscription("events-raw", serve(endpoint.clone()).await, 5));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(bus.in_flight(), 0);
        assert!(endpoint.seen.lock().unwrap().is_empty());
    });
}
