//! inference against the real built-in predictor over HTTP, through a small fault-injecting
//! proxy the test controls (it counts calls, records what inference sent, and can delay, fail,
//! or drop a prediction), writing to a real DuckDB file: coalescing, shape mismatch, timeouts,
//! the circuit breaker, redelivery, replay, and the request's REST shape.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use http::Request;
use inference::{AppState, app};
use pulse_shared::auth::AccessTokens;
use pulse_shared::backends::Backends;
use pulse_shared::config::Config;
use pulse_shared::storage::ObjectStore;
use pulse_shared::testing::files::files_under;
use pulse_shared::testing::harness::{post_json, send, serve};
use pulse_shared::warehouse::{DuckDbWarehouse, Warehouse};
use serde_json::{Map, Value, json};

/// What the proxy does to the next calls, and what it saw.
#[derive(Default)]
struct Faults {
    delay_ms: AtomicU64,
    fail_with: AtomicUsize,
    drop_last_prediction: AtomicBool,
    calls: AtomicU64,
    instances_per_call: Mutex<Vec<usize>>,
    last_request: Mutex<Option<(String, HeaderMap, Value)>>,
}

struct Proxy {
    faults: Arc<Faults>,
    url: String,
}

/// The real predictor, and the proxy in front of it.
async fn predictor_behind_proxy() -> Proxy {
    let predictor_url = serve(predictor::app(
        predictor::Models::builtin(),
        &predictor::Routes::default(),
    ))
    .await;
    let faults = Arc::new(Faults::default());
    let state = (faults.clone(), predictor_url, reqwest::Client::new());
    let router = axum::Router::new()
        .route("/v1/{*endpoint}", post(forward))
        .with_state(state);
    Proxy {
        faults,
        url: serve(router).await,
    }
}

async fn forward(
    State((faults, upstream, client)): State<(Arc<Faults>, String, reqwest::Client)>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    faults.calls.fetch_add(1, Ordering::SeqCst);
    let request: Value = serde_json::from_slice(&body).unwrap();
    faults
        .instances_per_call
        .lock()
        .unwrap()
        .push(request["instances"].as_array().map_or(0, Vec::len));
    *faults.last_request.lock().unwrap() = Some((format!("/v1/{endpoint}"), headers, request));
    let delay = faults.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = faults.fail_with.load(Ordering::SeqCst);
    if status != 0 {
        let status = StatusCode::from_u16(u16::try_from(status).unwrap()).unwrap();
        return (status, "injected failure").into_response();
    }
    let answer = client
        .post(format!("{upstream}/v1/{endpoint}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let mut answer: Value = answer.json().await.unwrap();
    if faults.drop_last_prediction.load(Ordering::SeqCst) {
        answer["predictions"].as_array_mut().unwrap().pop();
    }
    (status, axum::Json(answer)).into_response()
}

struct Harness {
    dir: tempfile::TempDir,
    objects: Arc<dyn ObjectStore>,
    proxy: Proxy,
    warehouse: Arc<DuckDbWarehouse>,
    state: AppState,
}

impl Harness {
    async fn new(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::with_tokens(adjust, AccessTokens::Anonymous).await
    }

    async fn with_tokens(adjust: impl FnOnce(&mut Config), tokens: AccessTokens) -> Self {
        let proxy = predictor_behind_proxy().await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::local(dir.path());
        config.prediction.base_url = proxy.url.clone();
        config.prediction.linger = Duration::from_millis(10);
        config.prediction.timeout = Duration::from_millis(2_000);
        adjust(&mut config);
        let backends = Backends::from_config(&config).await.unwrap();
        let warehouse =
            Arc::new(DuckDbWarehouse::open(&dir.path().join("warehouse.duckdb"), "pulse").unwrap());
        let state = AppState::new(config, &backends, warehouse.clone(), tokens).unwrap();
        Self {
            dir,
            objects: backends.objects.clone(),
            proxy,
            warehouse,
            state,
        }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        send(&app(self.state.clone()), self.objects.as_ref(), request).await
    }

    async fn deliver(&self, event: &Value) -> (StatusCode, Value) {
        let data = serde_json::to_vec(event).unwrap();
        let body = json!({
            "message": {
                "data": base64::engine::general_purpose::STANDARD.encode(data),
                "messageId": format!("m-{}", event["event_id"].as_str().unwrap()),
                "publishTime": "2026-11-21T10:00:00Z",
            },
            "subscription": "projects/local/subscriptions/inference",
        });
        self.send(post_json("/", &body)).await
    }

    /// The prediction rows; none before the first prediction creates the table. A query that
    /// fails otherwise fails the test: it must not read as "no rows".
    async fn rows(&self, filter: &str) -> Vec<Map<String, Value>> {
        if self.warehouse.table("predictions").await.unwrap().is_none() {
            return Vec::new();
        }
        self.warehouse
            .query(&format!(
                "SELECT event_id, label, score, model, model_version, latency_ms \
                 FROM pulse.predictions WHERE {filter} ORDER BY event_id"
            ))
            .await
            .unwrap()
    }

    fn calls(&self) -> u64 {
        self.proxy.faults.calls.load(Ordering::SeqCst)
    }

    fn dead_letters(&self, reason: &str) -> usize {
        let dir = self
            .dir
            .path()
            .join("gcs/pulse-raw/dead-letter")
            .join(reason);
        files_under(&dir).len()
    }
}

fn telemetry(id: &str, reading: f64) -> Value {
    json!({
        "event_id": id, "event_type": "device_telemetry", "timestamp": "2026-11-21T10:00:00Z",
        "event_date": "2026-11-21", "device_id": "weather-03", "sensor_type": "pressure",
        "reading": reading, "unit": "hPa"
    })
}

#[tokio::test]
async fn concurrent_events_share_predict_calls_and_each_gets_one_row() {
    let h = Harness::new(|c| c.prediction.max_instances = 16).await;
    let events: Vec<Value> = (0..64)
        .map(|i| {
            telemetry(
                &format!("t-{i:03}"),
                if i % 8 == 0 { 1040.0 } else { 1013.0 },
            )
        })
        .collect();
    let answers = futures_util::future::join_all(events.iter().map(|e| h.deliver(e))).await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body["outcome"], "predicted", "{body}");
    }
    let calls = h.calls();
    let sizes = h.proxy.faults.instances_per_call.lock().unwrap().clone();
    assert!(
        calls < 64 / 2,
        "64 concurrent events took {calls} calls: {sizes:?}"
    );
    assert!(
        sizes.iter().all(|&n| n <= 16),
        "a call exceeded max_instances: {sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<usize>(), 64);
    let rows = h.rows("true").await;
    assert_eq!(rows.len(), 64);
    let anomalies = rows.iter().filter(|r| r["label"] == "anomaly").count();
    assert_eq!(
        anomalies, 8,
        "readings 27 hPa off are anomalies, the rest normal"
    );
    assert_eq!(rows[0]["model"], "device-anomaly+purchase-propensity");
    assert_eq!(rows[0]["model_version"], "1+1");
    assert!(rows[0]["latency_ms"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn a_redelivered_event_keeps_one_row() {
    let h = Harness::new(|_| {}).await;
    let event = telemetry("dup-1", 1013.0);
    let (first, second) = tokio::join!(h.deliver(&event), h.deliver(&event));
    assert_eq!((first.0, second.0), (StatusCode::OK, StatusCode::OK));
    let (third, _) = h.deliver(&event).await;
    assert_eq!(third, StatusCode::OK);
    assert_eq!(h.rows("event_id = 'dup-1'").await.len(), 1);
}

#[tokio::test]
async fn a_prediction_count_mismatch_dead_letters_the_events_of_that_call() {
    let h = Harness::new(|_| {}).await;
    h.proxy
        .faults
        .drop_last_prediction
        .store(true, Ordering::SeqCst);
    let (status, body) = h.deliver(&telemetry("short-1", 1013.0)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reason"], "bad_prediction", "{body}");
    assert_eq!(h.dead_letters("bad_prediction"), 1);
    assert!(h.rows("true").await.is_empty());
}

#[tokio::test]
async fn missing_features_are_dead_lettered_without_a_call() {
    let h = Harness::new(|_| {}).await;
    let mut event = telemetry("no-reading", 0.0);
    event.as_object_mut().unwrap().remove("reading");
    let (status, body) = h.deliver(&event).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["reason"], "missing_feature", "{body}");
    assert_eq!(h.dead_letters("missing_feature"), 1);
    assert_eq!(h.calls(), 0);
    // A type that is not scored is acknowledged and left alone.
    let order = json!({"event_id": "o-1", "event_type": "order", "event_date": "2026-11-21"});
    let (status, body) = h.deliver(&order).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("not_scored"))
    );
}

#[tokio::test]
async fn a_slow_endpoint_times_out_as_503_and_stores_nothing() {
    let h = Harness::new(|c| c.prediction.timeout = Duration::from_millis(200)).await;
    h.proxy.faults.delay_ms.store(2_000, Ordering::SeqCst);
    let (status, _) = h.deliver(&telemetry("slow-1", 1013.0)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(h.rows("true").await.is_empty());
    assert_eq!(h.dead_letters("bad_prediction"), 0);
}

#[tokio::test]
async fn a_failing_endpoint_opens_the_breaker_which_half_opens_and_recovers() {
    let cooldown = Duration::from_millis(300);
    let h = Harness::new(|c| {
        c.prediction.breaker_failures = 2;
        c.prediction.breaker_cooldown = cooldown;
    })
    .await;
    h.proxy.faults.fail_with.store(500, Ordering::SeqCst);
    for i in 0..2 {
        let (status, _) = h.deliver(&telemetry(&format!("f-{i}"), 1013.0)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(h.calls(), 2);
    // Open: answered 503 at once, the endpoint is not called.
    let (status, _) = h.deliver(&telemetry("f-2", 1013.0)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.calls(), 2, "an open breaker must not call the endpoint");
    // After the cool-down one trial call goes through; the endpoint has recovered.
    h.proxy.faults.fail_with.store(0, Ordering::SeqCst);
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    let (status, body) = h.deliver(&telemetry("f-3", 1013.0)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.calls(), 3);
    let (status, _) = h.deliver(&telemetry("f-4", 1013.0)).await;
    assert_eq!(status, StatusCode::OK, "closed again after a good trial");
    assert_eq!(h.rows("true").await.len(), 2);
}

#[tokio::test]
async fn the_request_matches_vertex_ai_rest_shape_with_the_bearer_token() {
    let h = Harness::with_tokens(|_| {}, AccessTokens::Fixed("ya29.test-token".to_owned())).await;
    let (status, _) = h.deliver(&telemetry("shape-1", 1013.0)).await;
    assert_eq!(status, StatusCode::OK);
    let (path, headers, body) = h.proxy.faults.last_request.lock().unwrap().clone().unwrap();
    // POST https://{region}-aiplatform.googleapis.com/v1/{endpoint}:predict
    assert_eq!(
        path,
        "/v1/projects/local/locations/local/endpoints/pulse-builtin:predict"
    );
    assert_eq!(headers["authorization"], "Bearer ya29.test-token");
    assert_eq!(headers["content-type"], "application/json");
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["instances"],
        "the body is {{\"instances\": [...]}}: {body}"
    );
    assert_eq!(
        body["instances"][0],
        json!({"event_type": "device_telemetry", "device_id": "weather-03",
               "sensor_type": "pressure", "reading": 1013.0})
    );
}

#[tokio::test]
async fn replay_scores_posted_events_once() {
    let h = Harness::new(|_| {}).await;
    let mut missing = telemetry("r-bad", 0.0);
    missing.as_object_mut().unwrap().remove("device_id");
    let events = json!({"events": [
        telemetry("r-1", 1013.0),
        telemetry("r-2", 1050.0),
        {"event_id": "u-1", "event_type": "user_activity", "event_date": "2026-11-21",
         "activity_type": "checkout", "metadata": {"cart_items": 3}},
        {"event_id": "o-1", "event_type": "order", "event_date": "2026-11-21"},
        missing,
    ]});
    for _ in 0..2 {
        let (status, report) = h.send(post_json("/predict-replay", &events)).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["predicted"], 3, "{report}");
        assert_eq!(report["not_scored"], 1, "{report}");
        assert_eq!(report["rejected"]["missing_feature"], 1, "{report}");
        assert_eq!(report["rejections"][0]["event_id"], "r-bad", "{report}");
    }
    let rows = h.rows("true").await;
    assert_eq!(rows.len(), 3);
    let buyer = rows.iter().find(|r| r["event_id"] == "u-1").unwrap();
    assert_eq!(buyer["label"], "likely_buyer");
    let (status, _) = h.send(post_json("/predict-replay", &json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn every_route_is_described() {
    let h = Harness::new(|_| {}).await;
    let problems =
        pulse_shared::openapi::disagreements(app(h.state.clone()), &inference::openapi()).await;
    assert!(problems.is_empty(), "{problems:#?}");
}
