//! API tests: `app(state).oneshot(…)` with a publisher that records what it is given, and the
//! pacer on tokio's paused clock.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use event_generator::pacer::{self, Finish, Progress};
use event_generator::{AppState, Generator, Scenario, app};
use http::{Method, Request, StatusCode};
use pulse_shared::config::Config;
use pulse_shared::error::Retry;
use pulse_shared::testing::harness::answer;
use pulse_shared::testing::publisher::{Published, RecordingPublisher};
use serde_json::{Value, json};
use tokio::time::Instant;

fn harness(publisher: Arc<RecordingPublisher>) -> axum::Router {
    app(AppState::new(Config::local("/nonexistent"), publisher))
}

async fn call(
    router: &axum::Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(json) => {
            request = request.header("content-type", "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let (status, bytes) = answer(router, request.body(body).unwrap()).await;
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

async fn wait_until_finished(router: &axum::Router, id: &str) -> Value {
    for _ in 0..500 {
        let (status, job) = call(router, Method::GET, &format!("/jobs/{id}"), None).await;
        assert_eq!(status, StatusCode::OK);
        if job["state"] != "running" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {id} did not finish");
}

#[tokio::test]
async fn a_scenario_runs_as_a_job_and_reports_its_progress() {
    let publisher = Arc::new(RecordingPublisher::default());
    let router = harness(publisher.clone());
    let (status, job) = call(
        &router,
        Method::POST,
        "/jobs",
        Some(json!({"scenario": "quick_sample", "duration": "0s", "seed": 7})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["seed"], 7);
    assert_eq!(job["topic"], "events-raw");
    assert_eq!(job["planned"], 12);
    let id = job["id"].as_str().unwrap().to_owned();

    let job = wait_until_finished(&router, &id).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["sent"], 12);
    assert_eq!(job["failed"], 0);
    assert_eq!(job["duplicates"], 1);
    assert_eq!(job["malformed"], 1);
    assert_eq!(publisher.count(), 12);
    assert!(
        publisher
            .published()
            .iter()
            .all(|published| published.topic == "events-raw")
    );

    // The same seed publishes the same events; only the timestamps move with the start time.
    let (_, again) = call(
        &router,
        Method::POST,
        "/jobs",
        Some(json!({"scenario": "quick_sample", "duration": "0s", "seed": 7, "topic": "events-copy"})),
    )
    .await;
    wait_until_finished(&router, again["id"].as_str().unwrap()).await;
    let published = publisher.published();
    let (first, second) = published.split_at(12);
    let untimed = |data: &[u8]| match serde_json::from_slice::<Value>(data) {
        Ok(Value::Object(mut event)) => {
            event.remove("timestamp");
            Value::Object(event)
        }
        _ => json!(data.len()), // the truncated (bad_json) one
    };
    for (a, b) in first.iter().zip(second) {
        assert_eq!(untimed(&a.message.data), untimed(&b.message.data));
    }
    assert!(
        second
            .iter()
            .all(|published| published.topic == "events-copy")
    );

    let (status, jobs) = call(&router, Method::GET, "/jobs", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(jobs.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_running_job_can_be_cancelled_both_ways() {
    let publisher = Arc::new(RecordingPublisher::default());
    let router = harness(publisher.clone());
    for (method, suffix) in [(Method::POST, "/cancel"), (Method::DELETE, "")] {
        let (status, job) = call(
            &router,
            Method::POST,
            "/jobs",
            Some(json!({"scenario": "light_demo"})),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let id = job["id"].as_str().unwrap().to_owned();
        let (status, _) = call(&router, method, &format!("/jobs/{id}{suffix}"), None).await;
        assert_eq!(status, StatusCode::OK);
        let job = wait_until_finished(&router, &id).await;
        assert_eq!(job["state"], "cancelled", "{job}");
        assert!(job["sent"].as_u64().unwrap() < 150, "{job}");
    }
    let (status, body) = call(&router, Method::POST, "/jobs/job-99/cancel", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("job-99"));
}

/// Each run holds a task and messages in flight on the one generator instance: a fifth is
/// refused (429) until one of four ends.
#[tokio::test]
async fn runs_beyond_an_instances_share_wait_for_one_to_end() {
    let router = harness(Arc::new(RecordingPublisher::default()));
    let start = || {
        call(
            &router,
            Method::POST,
            "/jobs",
            Some(json!({"scenario": "light_demo"})),
        )
    };
    let mut ids = Vec::new();
    for _ in 0..event_generator::MAX_RUNNING {
        let (status, job) = start().await;
        assert_eq!(status, StatusCode::ACCEPTED);
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    let (status, answer) = start().await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        answer["error"].as_str().unwrap().contains("cancel one"),
        "{answer}"
    );

    call(
        &router,
        Method::POST,
        &format!("/jobs/{}/cancel", ids[0]),
        None,
    )
    .await;
    wait_until_finished(&router, &ids[0]).await;
    let (status, _) = start().await;
    assert_eq!(status, StatusCode::ACCEPTED);
    for id in &ids[1..] {
        call(&router, Method::POST, &format!("/jobs/{id}/cancel"), None).await;
    }
}

#[tokio::test]
async fn a_topic_that_refuses_fails_the_job_with_what_to_check() {
    let publisher = Arc::new(RecordingPublisher::refusing(Retry::Permanent));
    let router = harness(publisher);
    let (_, job) = call(
        &router,
        Method::POST,
        "/jobs",
        Some(json!({"scenario": "light_demo"})),
    )
    .await;
    let job = wait_until_finished(&router, job["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "failed");
    assert!(
        job["error"].as_str().unwrap().contains("topic exists"),
        "{job}"
    );
    assert!(job["failed"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn bad_requests_are_refused_with_a_reason() {
    let router = harness(Arc::new(RecordingPublisher::default()));
    for body in [
        json!({"scenario": "nope"}),
        json!({"rate": "fast"}),
        json!({"rate": "10/s"}),
        json!({"scenario": "light_demo", "mix": {"orders": 1}}),
        json!({"scenario": "light_demo", "colour": "red"}),
        // No caps once: a run of any rate, or everything at once however many.
        json!({"rate": "1000000/s", "duration": "10s"}),
        json!({"count": 1_000_000, "duration": "0s"}),
    ] {
        let (status, answer) = call(&router, Method::POST, "/jobs", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(!answer["error"].as_str().unwrap().is_empty(), "{body}");
    }
    let (status, _) = call(&router, Method::GET, "/jobs/job-1", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn scenarios_and_the_openapi_description_are_served() {
    let router = harness(Arc::new(RecordingPublisher::default()));
    let (status, scenarios) = call(&router, Method::GET, "/scenarios", None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<_> = scenarios
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, event_generator::scenario::NAMES);
    assert_eq!(scenarios[4]["shape"], "bursty");

    let (status, doc) = call(&router, Method::GET, "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/scenarios", "/jobs", "/jobs/{id}", "/jobs/{id}/cancel"] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["paths"]["/jobs/{id}"]["delete"].is_object());
    for schema in ["RunRequest", "JobView", "ScenarioView", "ErrorAnswer"] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
    let (status, _) = call(&router, Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn the_pacer_sends_each_message_on_its_deadline_without_drift() {
    let publisher = RecordingPublisher::default();
    let scenario = Scenario::by_name("burst_test").unwrap();
    let plan = Generator::new(1, chrono::Utc::now()).plan(&scenario);
    let offsets: Vec<Duration> = Generator::new(1, chrono::Utc::now())
        .plan(&scenario)
        .map(|m| m.offset)
        .collect();
    let progress = Progress::new(scenario.count);
    let start = Instant::now();
    let finish = pacer::publish(
        plan,
        &publisher,
        "events-raw",
        &progress,
        std::future::pending(),
    )
    .await;
    assert_eq!(finish, Finish::Completed);
    let published = publisher.published();
    assert_eq!(published.len(), 900);
    for (Published { at, .. }, offset) in published.iter().zip(&offsets) {
        let late = at.duration_since(start).saturating_sub(*offset);
        assert!(late < Duration::from_millis(2), "{late:?} late");
        assert!(at.duration_since(start) >= *offset, "early");
    }
    let snapshot = progress.snapshot();
    assert_eq!(
        snapshot.elapsed, scenario.duration,
        "the run lasts its duration"
    );
    assert!((snapshot.achieved_rate - scenario.rate()).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_is_counted_and_the_run_goes_on() {
    let publisher = RecordingPublisher::refusing(Retry::Transient);
    let scenario = Scenario::by_name("quick_sample").unwrap();
    let progress = Progress::new(scenario.count);
    let plan = Generator::new(1, chrono::Utc::now()).plan(&scenario);
    let finish = pacer::publish(plan, &publisher, "t", &progress, std::future::pending()).await;
    assert_eq!(finish, Finish::Completed);
    let snapshot = progress.snapshot();
    assert_eq!((snapshot.sent, snapshot.failed), (0, 12));
}

#[tokio::test]
async fn every_route_is_described() {
    let router = harness(Arc::new(RecordingPublisher::default()));
    let problems = pulse_shared::openapi::disagreements(router, &event_generator::openapi()).await;
    assert!(problems.is_empty(), "{problems:#?}");
}
