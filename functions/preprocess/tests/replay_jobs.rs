//! Replays that outlive a request: a raw-archive replay held back by a publisher that lets
//! messages through one permit at a time becomes a job, whose progress is watched, which is
//! cancelled, and which a new instance takes over after the first one stops, after its cursor.
//! Also: the router and the OpenAPI description name the same routes.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Body;
use bytes::Bytes;
use http::{Request, StatusCode};
use preprocess::{AppState, app};
use pulse_shared::backends::Backends;
use pulse_shared::config::Config;
use pulse_shared::error::{BackendError, Retry};
use pulse_shared::jobs::JobTiming;
use pulse_shared::publish::{OutgoingMessage, Publisher};
use pulse_shared::storage::{LocalObjectStore, ObjectStore};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

/// Publishes one message per permit of `gate`; once the gate is closed, every publish fails.
struct GatedPublisher {
    gate: Semaphore,
    event_ids: Mutex<Vec<String>>,
}

impl GatedPublisher {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            gate: Semaphore::new(0),
            event_ids: Mutex::new(Vec::new()),
        })
    }

    fn published(&self) -> Vec<String> {
        self.event_ids.lock().unwrap().clone()
    }
}

#[async_trait]
impl Publisher for GatedPublisher {
    fn describe(&self) -> String {
        "gated publisher".to_owned()
    }

    async fn publish(&self, _: &str, message: OutgoingMessage) -> Result<String, BackendError> {
        let permit = self
            .gate
            .acquire()
            .await
            .map_err(|_| BackendError::new("publish", Retry::Transient, "gate closed"))?;
        permit.forget();
        let mut ids = self.event_ids.lock().unwrap();
        ids.push(message.attributes["event_id"].clone());
        Ok(ids.len().to_string())
    }
}

struct World {
    dir: tempfile::TempDir,
    objects: Arc<dyn ObjectStore>,
}

impl World {
    async fn with_archive(events: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let objects: Arc<dyn ObjectStore> =
            Arc::new(LocalObjectStore::open(dir.path().join("gcs"), false).unwrap());
        for i in 0..events {
            let id = format!("e-{i:04}");
            let event = json!({"event_type": "order", "event_id": id, "order_id": i});
            objects
                .create_if_absent(
                    "pulse-raw",
                    &format!("raw/order/2024/05/01/12/00/{id}.json"),
                    Bytes::from(event.to_string()),
                    "application/json",
                )
                .await
                .unwrap();
        }
        Self { dir, objects }
    }

    /// One preprocess instance over the world's storage.
    fn instance(&self, publisher: Arc<GatedPublisher>) -> axum::Router {
        let mut config = Config::local(self.dir.path());
        // Requests wait half a second for their replay; jobs record their state every 50 ms and
        // are taken over after 300 ms of silence.
        config.request_timeout = Duration::from_secs(1);
        config.jobs = JobTiming {
            checkpoint_every: Duration::from_millis(50),
            lease: Duration::from_millis(300),
        };
        app(AppState::new(
            config,
            Backends {
                objects: self.objects.clone(),
                publisher,
            },
        ))
    }
}

async fn send(
    router: &axum::Router,
    request: Request<Body>,
) -> (StatusCode, http::HeaderMap, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body =
        serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body)));
    (status, headers, body)
}

async fn replay_raw(router: &axum::Router) -> (StatusCode, http::HeaderMap, Value) {
    let request = json!({"raw": {"event_type": "order", "from": "2024-05-01T12:00:00Z", "to": "2024-05-01T13:00:00Z"}});
    send(
        router,
        Request::post("/replay")
            .header("content-type", "application/json")
            .body(Body::from(request.to_string()))
            .unwrap(),
    )
    .await
}

async fn get(router: &axum::Router, uri: &str) -> Value {
    let (status, _, body) = send(router, Request::get(uri).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "GET {uri}: {body}");
    body
}

async fn job_until(
    router: &axum::Router,
    location: &str,
    what: &str,
    condition: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let job = get(router, location).await;
        if condition(&job) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; job is {job}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The job once `published` messages went through and nothing moves any more.
async fn settled(
    router: &axum::Router,
    location: &str,
    publisher: &GatedPublisher,
    published: usize,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    while publisher.published().len() < published {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {published} publishes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    get(router, location).await
}

#[tokio::test]
async fn a_long_replay_is_a_job_to_watch_and_cancel() {
    let world = World::with_archive(200).await;
    let publisher = GatedPublisher::new();
    let router = world.instance(publisher.clone());

    let (status, headers, job) = replay_raw(&router).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let location = headers["location"].to_str().unwrap().to_owned();
    assert_eq!(location, format!("/jobs/{}", job["id"].as_str().unwrap()));
    assert_eq!(job["state"], "running");
    assert_eq!(job["durable"], true);
    assert_eq!(job["total"], 200);
    assert_eq!(job["done"], 0);

    // Items are counted done in their order; the publishes they wait on are not in order.
    publisher.gate.add_permits(50);
    let job = settled(&router, &location, &publisher, 50).await;
    let done = job["done"].as_u64().unwrap();
    assert!((50 - 16..=50).contains(&done), "{job}");
    assert_eq!(job["report"]["republished"], done);
    assert_eq!(
        job["cursor"],
        format!("raw/order/2024/05/01/12/00/e-{:04}.json", done - 1)
    );
    let listed = get(&router, "/jobs").await;
    assert_eq!(listed[0]["id"], job["id"]);

    let (status, _, cancelled) = send(
        &router,
        Request::post(format!("{location}/cancel"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["cancel_requested"], true);
    let job = job_until(&router, &location, "the cancel", |job| {
        job["state"] != "running"
    })
    .await;
    assert_eq!(job["state"], "cancelled");
    publisher.gate.add_permits(1000);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        publisher.published().len(),
        50,
        "nothing more is published after the cancel"
    );

    let (status, _, _) = send(
        &router,
        Request::get("/jobs/no-such-job")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_job_goes_on_after_a_restart_where_it_stopped() {
    let world = World::with_archive(300).await;
    let first = GatedPublisher::new();
    let router = world.instance(first.clone());
    let (status, headers, job) = replay_raw(&router).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let location = headers["location"].to_str().unwrap().to_owned();
    first.gate.add_permits(120);
    let stopped_at = settled(&router, &location, &first, 120).await["done"]
        .as_u64()
        .unwrap();
    // A few checkpoints later, the process stops: its state goes, its blocked publishes fail.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(router);
    first.gate.close();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let second = GatedPublisher::new();
    second.gate.add_permits(10_000);
    let router = world.instance(second.clone());
    let job = job_until(&router, &location, "the job taken over and done", |job| {
        job["state"] == "completed"
    })
    .await;
    assert_eq!(job["done"], 300, "{job}");

    let (before, after) = (first.published(), second.published());
    assert_eq!(before.len(), 120);
    assert_eq!(
        after.len() as u64,
        300 - stopped_at,
        "the second instance goes on after the cursor ({stopped_at} done), not from zero"
    );
    let all: BTreeSet<String> = before.iter().chain(&after).cloned().collect();
    assert_eq!(all.len(), 300, "every archived event is published once");
}

#[tokio::test]
async fn a_short_replay_answers_its_report() {
    let world = World::with_archive(5).await;
    let publisher = GatedPublisher::new();
    publisher.gate.add_permits(5);
    let router = world.instance(publisher.clone());
    let (status, _, report) = replay_raw(&router).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["republished"], 5);
    // `wait_seconds=0` asks for the job at once.
    let request = json!({"raw": {"event_type": "order", "from": "2024-05-01T12:00:00Z", "to": "2024-05-01T13:00:00Z"}});
    let (status, _, job) = send(
        &router,
        Request::post("/replay?wait_seconds=0")
            .header("content-type", "application/json")
            .body(Body::from(request.to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    publisher.gate.add_permits(5);
    let location = format!("/jobs/{}", job["id"].as_str().unwrap());
    let job = job_until(&router, &location, "the end", |job| {
        job["state"] == "completed"
    })
    .await;
    assert_eq!(job["report"]["republished"], 5);
}

#[tokio::test]
async fn every_route_is_described() {
    let world = World::with_archive(0).await;
    let router = world.instance(GatedPublisher::new());
    let problems = pulse_shared::openapi::disagreements(router, &preprocess::openapi()).await;
    assert!(problems.is_empty(), "{problems:#?}");
}
