//! A function's router driven as its callers drive it: a request in, the answer read whole; or
//! served on a loopback port for callers that speak HTTP.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::storage::ObjectStore;

/// The answer of `router` to `request`: its status and whole body.
pub async fn answer(router: &Router, request: Request<Body>) -> (StatusCode, Bytes) {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("a router answers");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("the whole answer");
    (status, body)
}

/// [`answer`], with the body as JSON (a body that is not JSON as a JSON string), once `objects`
/// has written its files: the tests look at the files themselves, which a local store writes
/// after answering.
pub async fn send(
    router: &Router,
    objects: &dyn ObjectStore,
    request: Request<Body>,
) -> (StatusCode, Value) {
    let (status, body) = answer(router, request).await;
    objects.flush().await.expect("the store writes its files");
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, value)
}

/// A POST of `body` as JSON.
pub fn post_json(uri: &str, body: &Value) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("a valid request")
}

/// A Pub/Sub push of `data` as message `message_id`, to `/`.
pub fn push(message_id: &str, data: &[u8]) -> Request<Body> {
    post_json(
        "/",
        &json!({
            "message": {
                "data": base64::engine::general_purpose::STANDARD.encode(data),
                "messageId": message_id,
            },
            "subscription": "projects/local/subscriptions/test",
        }),
    )
}

/// Serves `router` on a free loopback port for the rest of the process; its `http://` base URL
/// (no trailing slash).
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("a bound address"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}
