//! The HTTP runtime every function shares: `GET /healthz` and `GET /health`, `GET /metrics`, a
//! body limit, a request timeout, the request span and its metrics, one answer shape for errors,
//! and [`run`]: configuration, telemetry and serving on `$PORT` until SIGTERM, draining requests
//! in flight, and [`described_app`], which puts a function's router together with them. The
//! trigger route is [`crate::delivery::trigger::route`].

use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;
use utoipa::openapi::OpenApi;

use crate::config::Config;
use crate::delivery::answer::uniform_errors;
use crate::delivery::oidc::{PushVerifier, require_operator_token};
use crate::telemetry::{self, RequestContext};
use crate::{metrics, openapi};

/// The health routes every function answers: `/healthz` for Cloud Run's probes, and `/health`
/// for everyone else, since Cloud Run keeps paths ending in `z` from outside callers.
pub const HEALTH_ROUTES: [&str; 2] = ["/healthz", "/health"];

/// Adds the shared routes and layers to the router of `function` (its name labels its metrics).
///
/// A request that outlives `PULSE_REQUEST_TIMEOUT_SECS` is answered 503, so the sender delivers
/// it again; everything a function writes is idempotent, so the abandoned attempt does no harm.
/// `GET /metrics` is outside the trigger route's push-token check: Cloud Run IAM guards it, as it
/// does the other manual routes.
pub fn with_runtime_layers(router: Router, config: &Config, function: &'static str) -> Router {
    // Installed before the first request, so that nothing is counted by a recorder nobody reads.
    metrics::handle();
    router
        .route(HEALTH_ROUTES[0], get(healthz))
        .route(HEALTH_ROUTES[1], get(health))
        .route("/metrics", get(metrics::render))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout,
        ))
        .layer(axum::middleware::from_fn(uniform_errors))
        .layer(axum::middleware::from_fn_with_state(
            RequestContext {
                project: config.project.clone(),
                function,
            },
            telemetry::trace_requests,
        ))
}

/// A function's whole router: its own `routes` over `state`, `GET /openapi.json` serving `doc`
/// (its description, see [`openapi::document`]), and [`with_runtime_layers`].
pub fn described_app<S>(
    routes: Router<S>,
    state: S,
    doc: &OpenApi,
    config: &Config,
    function: &'static str,
) -> Router
where
    S: Clone + Send + Sync + 'static,
{
    let router = routes.merge(openapi::route(doc)).with_state(state);
    with_runtime_layers(router, config, function)
}

/// Runs a function's binary: reads the configuration, starts telemetry, builds the function's
/// router with `app` (which adds [`with_runtime_layers`]), and serves it on `0.0.0.0:$PORT`
/// (Cloud Run's contract) until SIGTERM.
pub fn run<F, Fut>(function: &'static str, app: F) -> anyhow::Result<()>
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = anyhow::Result<Router>>,
{
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let config = Config::from_env()?;
            telemetry::init(&config);
            let port = config.port;
            let router = app(config).await?;
            let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await?;
            tracing::info!(port, "{function} listening");
            serve(listener, router).await?;
            Ok(())
        })
}

/// Cloud Run's probe: `ok` while the process serves.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "runtime",
    responses((status = 200, description = "Serving.", content_type = "text/plain", body = String, example = "ok"))
)]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The same as `/healthz`, for callers outside Cloud Run (which keeps paths ending in `z`).
#[utoipa::path(
    get,
    path = "/health",
    tag = "runtime",
    responses((status = 200, description = "Serving.", content_type = "text/plain", body = String, example = "ok"))
)]
pub async fn health() -> &'static str {
    "ok"
}

/// A function's manual routes (replays, `:ensure`, compaction, reloads): when push tokens are
/// verified, a request without an ID token of one of `PULSE_OPERATOR_PRINCIPALS` is refused
/// before its handler runs (401 without a valid token, 403 for anyone else, the push identity
/// included: it may invoke the whole service, so IAM alone would let a push token in). Unset, as
/// locally, the routes are left as they are. [`crate::delivery::trigger::app`] mounts them.
///
/// # Panics
/// When the HTTP client for Google's signing keys cannot be built (see [`crate::delivery::trigger::route`]).
pub fn operator_routes<S>(routes: Router<S>, config: &Config) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let Some(push) = &config.push_auth else {
        return routes;
    };
    let verifier = PushVerifier::new(push.clone()).unwrap_or_else(|error| {
        panic!("operator tokens cannot be verified ({error}); stopping rather than open the manual routes")
    });
    if push.operators.is_empty() {
        tracing::warn!("PULSE_OPERATOR_PRINCIPALS is empty: the manual routes refuse everyone");
    }
    routes.route_layer(axum::middleware::from_fn_with_state(
        verifier,
        require_operator_token,
    ))
}

/// Serves `router` on `listener` until SIGTERM or Ctrl-C, then stops accepting and waits for
/// the requests in flight to finish.
pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    serve_until(listener, router, shutdown_signal()).await
}

/// Serves `router` on `listener` until `stop` resolves, then drains requests in flight.
pub async fn serve_until(
    listener: TcpListener,
    router: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
}

/// Resolves on SIGTERM (Cloud Run's stop signal) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received: finishing requests in flight"),
        () = terminate => tracing::info!("SIGTERM received: finishing requests in flight"),
    }
}
