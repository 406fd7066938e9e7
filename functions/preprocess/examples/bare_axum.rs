//! The benchmark's yardstick: a bare axum server that reads the request body and answers 204,
//! on `$PORT`, with nothing else. `scripts/bench-preprocess.sh` reports preprocess's
//! throughput as a fraction of this one's.

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let router = Router::new().route("/", post(|_body: Bytes| async { StatusCode::NO_CONTENT }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, router).await
}
