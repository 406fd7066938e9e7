//! preprocess end to end against Google's real Pub/Sub emulator (the Java one shipped with the
//! Cloud SDK), started by the test on a free loopback port: the emulator PUSHES `events-raw` to
//! preprocess served over HTTP, and preprocess publishes `events-processed` back to it.
//!
//! Without the emulator the test prints that it was SKIPPED and passes.
//!
//! What it cannot show: Eventarc's CloudEvent framing (the emulator pushes the plain Pub/Sub push
//! body; `handler.rs` covers CloudEvents), push authentication (OIDC tokens; the emulator sends
//! none), dead-letter topics and retry policies of real subscriptions, and Cloud Storage: the
//! archive here is the local object store (`gcs_emulator.rs` in `shared` covers Cloud Storage).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use google_cloud_pubsub::client::{Publisher, Subscriber, SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::model::{Message, PushConfig};
use preprocess::{AppState, app};
use pulse_shared::backends::Backends;
use pulse_shared::config::{BackendKind, Config};
use pulse_shared::publish::PubsubPublisher;
use pulse_shared::storage::{LocalObjectStore, ObjectStore};
use pulse_shared::testing::files::files_under;
use pulse_shared::testing::server::{AbortOnDrop, Server, free_port};
use serde_json::{Value, json};

const EMULATOR: &str =
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator";
const PROJECT: &str = "pulse-test";
const EVENT_ID: &str = "ord-emulator-1";
/// Where the event's timestamp (2024-05-01T12:00:00Z) files it in the raw archive.
const RAW_OBJECT: &str = "raw/order/2024/05/01/12/00/ord-emulator-1.json";
/// Upper bound for the emulator to start and for the deliveries to arrive.
const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn pushed_events_are_archived_dead_lettered_and_published_processed() {
    if !Path::new(EMULATOR).is_file() {
        eprintln!(
            "SKIPPED pushed_events_are_archived_dead_lettered_and_published_processed: \
             the Pub/Sub emulator is not installed at {EMULATOR} (it comes with the Cloud SDK \
             image and cannot be installed from a package registry)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port();
    let mut emulator = start_emulator(dir.path(), port);
    let endpoint = format!("http://127.0.0.1:{port}");
    let topic = |id: &str| format!("projects/{PROJECT}/topics/{id}");
    let subscription = |id: &str| format!("projects/{PROJECT}/subscriptions/{id}");

    // preprocess, in process, publishing to the emulator and archiving to a local directory.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind preprocess");
    let preprocess_url = format!("http://{}/", listener.local_addr().expect("address"));
    let config = Config {
        backend: BackendKind::Gcp,
        project: PROJECT.to_owned(),
        pubsub_endpoint: Some(endpoint.clone()),
        ..Config::local(dir.path())
    };
    let objects: Arc<dyn ObjectStore> =
        Arc::new(LocalObjectStore::open(dir.path().join("gcs"), true).expect("store"));
    let backends = Backends {
        objects: objects.clone(),
        publisher: Arc::new(
            PubsubPublisher::connect(PROJECT, Some(&endpoint), true)
                .await
                .expect("preprocess's publisher"),
        ),
    };
    let router = app(AppState::new(config, backends));
    let _preprocess = AbortOnDrop(tokio::spawn(async move {
        axum::serve(listener, router)
            .await
            .expect("preprocess server");
    }));

    // Topics and subscriptions, through the SDK's admin clients (REST).
    let topics = TopicAdmin::builder()
        .with_endpoint(&endpoint)
        .with_credentials(anonymous())
        .build()
        .await
        .expect("topic admin");
    // The first call doubles as the readiness probe: the JVM takes a few seconds to listen.
    until_ready(&mut emulator, || {
        topics.create_topic().set_name(topic("events-raw")).send()
    })
    .await;
    topics
        .create_topic()
        .set_name(topic("events-processed"))
        .send()
        .await
        .expect("create events-processed");
    let subscriptions = SubscriptionAdmin::builder()
        .with_endpoint(&endpoint)
        .with_credentials(anonymous())
        .build()
        .await
        .expect("subscription admin");
    // The pull subscription exists before anything is published to events-processed.
    subscriptions
        .create_subscription()
        .set_name(subscription("processed-pull"))
        .set_topic(topic("events-processed"))
        .send()
        .await
        .expect("create the pull subscription");
    subscriptions
        .create_subscription()
        .set_name(subscription("raw-push"))
        .set_topic(topic("events-raw"))
        .set_push_config(PushConfig::new().set_push_endpoint(&preprocess_url))
        .send()
        .await
        .expect("create the push subscription");

    // A valid event, the same event again (a redelivery has its own message id), and garbage.
    let raw = Publisher::builder(topic("events-raw"))
        .with_endpoint(&endpoint)
        .with_credentials(anonymous())
        .build()
        .await
        .expect("raw publisher");
    let event = serde_json::to_vec(&order(EVENT_ID, "2024-05-01T12:00:00Z")).expect("JSON");
    let mut event_message_ids = Vec::new();
    for _ in 0..2 {
        let id = raw
            .publish(Message::new().set_data(event.clone()))
            .await
            .expect("publish the event");
        event_message_ids.push(id);
    }
    let bad_message_id = raw
        .publish(Message::new().set_data("{not json"))
        .await
        .expect("publish garbage");
    assert_ne!(event_message_ids[0], event_message_ids[1]);

    // What reaches events-processed: both deliveries of the event are published (a redelivery is
    // republished on purpose; downstream drops repeats by event_id).
    let subscriber = Subscriber::builder()
        .with_endpoint(&endpoint)
        .with_credentials(anonymous())
        .build()
        .await
        .expect("subscriber");
    let mut stream = subscriber.subscribe(subscription("processed-pull")).build();
    let mut processed: Vec<Message> = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while !event_message_ids
        .iter()
        .all(|id| processed.iter().any(|m| delivered_message_id(m) == *id))
    {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let next = tokio::time::timeout(remaining, stream.next()).await;
        let Ok(Some(next)) = next else {
            panic!(
                "after {PATIENCE:?}, events-processed had only {:?}; emulator log:\n{}",
                processed.iter().map(|m| &m.data).collect::<Vec<_>>(),
                emulator.log()
            );
        };
        let (message, handler) = next.expect("pull from events-processed");
        handler.ack();
        processed.push(message);
    }

    // The store writes its files after answering; the test looks at the files.
    objects.flush().await.expect("flush the local store");
    let gcs = dir.path().join("gcs/pulse-raw");
    let dead_letters = wait_for_files(&gcs.join("dead-letter/bad_json"), &emulator).await;
    let archived = files_under(&gcs.join("raw"));
    assert_eq!(
        archived,
        [gcs.join(RAW_OBJECT)],
        "exactly one raw object for the event"
    );
    let archived_bytes = std::fs::read(&archived[0]).expect("read the raw object");
    let archived_json: Value = serde_json::from_slice(&archived_bytes).expect("raw object JSON");
    assert_eq!(archived_json["event_id"], EVENT_ID);
    assert!(
        event_message_ids
            .iter()
            .any(|id| archived_json["message_id"] == *id),
        "the archive holds one of the two deliveries: {archived_json}"
    );

    for message in &processed {
        assert_eq!(message.attributes["event_id"], EVENT_ID, "{message:?}");
        assert_eq!(message.attributes["event_type"], "order", "{message:?}");
    }
    let first = processed
        .iter()
        .find(|m| delivered_message_id(m) == archived_json["message_id"])
        .expect("the archived delivery was published");
    assert_eq!(
        first.data, archived_bytes,
        "the processed message is the archived JSON, byte for byte"
    );

    assert_eq!(dead_letters.len(), 1, "{dead_letters:?}");
    let record: Value =
        serde_json::from_slice(&std::fs::read(&dead_letters[0]).expect("read the dead letter"))
            .expect("dead-letter JSON");
    assert_eq!(record["reason"], "bad_json", "{record}");
    assert_eq!(record["function"], "preprocess", "{record}");
    assert_eq!(record["message"]["messageId"], bad_message_id, "{record}");
    assert_eq!(record["subscription"], subscription("raw-push"), "{record}");
}

fn anonymous() -> google_cloud_auth::credentials::Credentials {
    google_cloud_auth::credentials::anonymous::Builder::new().build()
}

/// A valid order event (as in `handler.rs`).
fn order(event_id: &str, timestamp: &str) -> Value {
    json!({
        "event_id": event_id, "event_type": "order", "timestamp": timestamp,
        "order_id": "o-1", "customer_id": "c-1", "status": "paid", "total_amount": 19.0,
        "items": [{"product_id": "p-1", "quantity": 2, "price": 9.5}],
    })
}

/// The raw message id preprocess recorded in a processed event.
fn delivered_message_id(message: &Message) -> String {
    serde_json::from_slice::<Value>(&message.data).expect("processed JSON")["message_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits until `dir` holds at least one file, then returns them all.
async fn wait_for_files(dir: &Path, emulator: &Server) -> Vec<PathBuf> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let files = files_under(dir);
        if !files.is_empty() {
            return files;
        }
        assert!(
            Instant::now() < deadline,
            "nothing under {} after {PATIENCE:?}; emulator log:\n{}",
            dir.display(),
            emulator.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts Google's Pub/Sub emulator on `port`, its output in `dir`.
fn start_emulator(dir: &Path, port: u16) -> Server {
    let mut command = Command::new(EMULATOR);
    command.args(["--host=127.0.0.1", &format!("--port={port}")]);
    Server::spawn(command, &dir.join("pubsub-emulator.log"))
}

/// Repeats `attempt` until it succeeds, failing if the emulator exits or takes too long.
async fn until_ready<T, F>(emulator: &mut Server, attempt: impl Fn() -> F)
where
    F: Future<Output = google_cloud_pubsub::Result<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        let error = match tokio::time::timeout(Duration::from_secs(20), attempt()).await {
            Ok(Ok(_)) => return,
            // An earlier attempt that timed out on our side still created the resource: a
            // slow start on a busy machine, and the emulator is ready.
            Ok(Err(error))
                if error.status().map(|s| s.code)
                    == Some(google_cloud_gax::error::rpc::Code::AlreadyExists) =>
            {
                return;
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => "no answer in 20 s".to_owned(),
        };
        if let Some(status) = emulator.exited() {
            panic!(
                "the Pub/Sub emulator exited ({status}) before it was ready:\n{}",
                emulator.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the Pub/Sub emulator was not ready after {PATIENCE:?} ({error}):\n{}",
            emulator.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
