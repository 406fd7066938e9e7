//! `GET /metrics`: the counters move with deliveries and dead letters, and the route answers
//! where the trigger route asks for a push token. A file of its own: the recorder is one per
//! process, and other tests' deliveries would move the same counters.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use preprocess::{AppState, app};
use pulse_shared::backends::Backends;
use pulse_shared::config::Config;
use pulse_shared::delivery::oidc::PushAuthConfig;
use pulse_shared::metrics::{self, DEAD_LETTERS, DELIVERIES, Sample};
use pulse_shared::testing::harness::{answer, push};
use serde_json::json;

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, String) {
    let (status, body) = answer(router, request).await;
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The value of `name` with `labels` in a scrape of `router`, 0 when it is not there yet.
async fn scraped(router: &Router, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (status, text) = send(
        router,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    metrics::parse(&text)
        .into_iter()
        .find(|sample: &Sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.label(key) == *value)
        })
        .map_or(0.0, |sample| sample.value)
}

fn router(dir: &tempfile::TempDir, push_auth: Option<PushAuthConfig>) -> Router {
    let config = Config {
        push_auth,
        ..Config::local(dir.path())
    };
    let objects = Backends::local_objects(&config).unwrap();
    let backends = Backends {
        publisher: std::sync::Arc::new(Backends::local_bus(&config, &objects)),
        objects,
    };
    app(AppState::new(config, backends))
}

#[tokio::test]
async fn counters_move_with_deliveries_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let open = router(&dir, None);
    let acknowledged = [("function", "preprocess"), ("outcome", "acknowledged")];
    let bad_json = [("function", "preprocess"), ("reason", "bad_json")];
    assert_eq!(scraped(&open, DELIVERIES, &acknowledged).await, 0.0);
    assert_eq!(scraped(&open, DEAD_LETTERS, &bad_json).await, 0.0);

    let event = json!({
        "event_id": "ord-1", "event_type": "order", "timestamp": "2026-12-05T12:00:00Z",
        "order_id": "o-1", "customer_id": "c-1", "status": "paid", "total_amount": 19.0,
        "items": [{"product_id": "p-1", "quantity": 2, "price": 9.5}],
    });
    for request in [
        push("1", event.to_string().as_bytes()),
        push("2", b"{not json"),
        // The same broken message again: its record is there already, counted once.
        push("2", b"{not json"),
    ] {
        let (status, body) = send(&open, request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(scraped(&open, DELIVERIES, &acknowledged).await, 3.0);
    assert_eq!(scraped(&open, DEAD_LETTERS, &bad_json).await, 1.0);

    // With push tokens required, a push without one is refused and counted so, while
    // `/metrics` still answers without a token.
    let guarded = router(
        &dir,
        Some(PushAuthConfig {
            audience: "https://preprocess.example".to_owned(),
            service_account: "push@p.iam.gserviceaccount.com".to_owned(),
            jwks_url: "http://127.0.0.1:9/never-fetched".to_owned(),
            min_refresh_interval: Duration::from_secs(30),
            operators: pulse_shared::delivery::oidc::Operators::default(),
            behind_cloud_run: false,
        }),
    );
    let (status, _) = send(&guarded, push("3", event.to_string().as_bytes())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let refused = [("function", "preprocess"), ("outcome", "refused")];
    assert_eq!(scraped(&guarded, DELIVERIES, &refused).await, 1.0);
}
