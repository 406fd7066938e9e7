//! OpenAPI descriptions: what every function shares (the runtime's routes, the trigger route,
//! `GET /openapi.json`; errors are [`ErrorAnswer`], the one answer shape), and a hand-written
//! check that a function's router and its description name the same routes ([`disagreements`]).
//!
//! Each function describes its own routes with `#[utoipa::path]` on their handlers and serves
//! `document(ItsApi::openapi())` through [`route`]. The check is hand-written because utoipa
//! only keeps the two together when the router is built through `utoipa-axum`'s own router,
//! and every function builds a plain axum router (with the shared layers and operator routes).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Extension;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tower::ServiceExt as _;
use utoipa::OpenApi as _;
use utoipa::openapi::{OpenApi, PathItem};

use crate::delivery::answer::ErrorAnswer;

/// The routes every function serves.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    crate::runtime::healthz,
    crate::runtime::health,
    crate::metrics::render,
    openapi_json
))]
pub struct RuntimeApi;

/// The trigger route, `POST /`, as every triggered function serves it: where Pub/Sub pushes
/// and Eventarc delivers. (Described here, as the trigger is the same everywhere.)
#[utoipa::path(
    post,
    path = "/",
    tag = "trigger",
    request_body(
        content = Object,
        description = "What Pub/Sub pushes or Eventarc delivers: a Pub/Sub push body (`{\"message\": {\"data\": …, \"messageId\": …}, \"subscription\": …}`), a structured CloudEvent, or the data of a binary CloudEvent with its `ce-*` headers (parquet-loader: Cloud Storage `finalized` events). What cannot be decoded is dead-lettered.",
        content_type = "application/json"
    ),
    responses(
        (status = 200, description = "Done with: stored, or dead-lettered with its reason. `outcome` says which.", body = Object),
        (status = 401, description = "No valid push token, when the function requires one.", body = ErrorAnswer<'static>),
        (status = 413, description = "The body is larger than `PULSE_MAX_BODY_BYTES`.", body = ErrorAnswer<'static>),
        (status = 429, description = "A backend pushes back: nothing was acknowledged, deliver again.", body = ErrorAnswer<'static>),
        (status = 503, description = "A backend is unavailable: nothing was acknowledged, deliver again.", body = ErrorAnswer<'static>),
    )
)]
pub fn trigger() {}

/// A function's description: its own routes (`own`, with its title and description) and the
/// runtime's.
pub fn document(mut own: OpenApi) -> OpenApi {
    own.merge(RuntimeApi::openapi());
    own
}

/// `GET /openapi.json`, serving `doc`.
pub fn route<S>(doc: &OpenApi) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let json = serde_json::to_vec(doc).expect("an OpenAPI document always serialises");
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .layer(Extension(Arc::new(Bytes::from(json))))
}

/// This function's OpenAPI description.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "runtime",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object))
)]
pub async fn openapi_json(Extension(json): Extension<Arc<Bytes>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Bytes::clone(&json),
    )
        .into_response()
}

/// Where `router` and `doc` disagree, one line each: a route served but not described, a
/// described route not served, or a method served on a path but not described (or the
/// reverse). Empty when they agree.
///
/// The router's paths are read from its `Debug` form (axum lists them there and nowhere
/// else); its methods from the `Allow` header of the `405` it answers to `TRACE`, which no
/// route serves. Panics when no path can be read, rather than pass on a changed `Debug` form.
pub async fn disagreements(router: Router, doc: &OpenApi) -> Vec<String> {
    let served_paths = router_paths(&router);
    assert!(
        !served_paths.is_empty(),
        "no route read from the router's Debug form: {router:?}"
    );
    let described: BTreeMap<String, BTreeSet<String>> = doc
        .paths
        .paths
        .iter()
        .map(|(path, item)| (path.clone(), described_methods(item)))
        .collect();
    let mut problems = Vec::new();
    for path in &served_paths {
        if !described.contains_key(path) {
            problems.push(format!("{path} is served but not described"));
        }
    }
    for (path, methods) in &described {
        if !served_paths.contains(path) {
            problems.push(format!("{path} is described but not served"));
            continue;
        }
        let served = served_methods(&router, path).await;
        for method in served.difference(methods) {
            problems.push(format!("{method} {path} is served but not described"));
        }
        for method in methods.difference(&served) {
            problems.push(format!("{method} {path} is described but not served"));
        }
    }
    problems
}

/// The paths of `router`, as registered (`/jobs/{id}`).
fn router_paths(router: &Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    // The first `Node { paths: {RouteId(1): "/", …} }` is the path router's; later ones are
    // the fallback router's.
    let Some(start) = debug.find("Node { paths: {") else {
        return BTreeSet::new();
    };
    let mut rest = &debug[start + "Node { paths: {".len()..];
    let mut paths = BTreeSet::new();
    // `RouteId(1): "/", RouteId(2): "/jobs/{id}", …}`
    while let Some(entry) = rest
        .strip_prefix(", ")
        .or(Some(rest))
        .filter(|r| r.starts_with("RouteId("))
    {
        let Some(quote) = entry.find(": \"") else {
            break;
        };
        let text = &entry[quote + 3..];
        let mut end = 0;
        let bytes = text.as_bytes();
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        paths.insert(text[..end.min(text.len())].to_owned());
        rest = text.get(end + 1..).unwrap_or_default();
    }
    paths
}

fn described_methods(item: &PathItem) -> BTreeSet<String> {
    [
        ("GET", &item.get),
        ("POST", &item.post),
        ("PUT", &item.put),
        ("DELETE", &item.delete),
        ("PATCH", &item.patch),
        ("OPTIONS", &item.options),
        ("HEAD", &item.head),
    ]
    .into_iter()
    .filter(|(_, operation)| operation.is_some())
    .map(|(method, _)| method.to_owned())
    .collect()
}

/// The methods `router` serves on `path` (`HEAD` aside: axum adds it to every `GET`).
async fn served_methods(router: &Router, path: &str) -> BTreeSet<String> {
    let concrete = path
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "probe"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    let answer = router
        .clone()
        .oneshot(
            Request::builder()
                .method(Method::TRACE)
                .uri(if concrete.is_empty() { "/" } else { &concrete })
                .body(Body::empty())
                .expect("a request"),
        )
        .await
        .expect("routers are infallible");
    assert_eq!(
        answer.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "TRACE {concrete} should be refused by the router"
    );
    answer
        .headers()
        .get(header::ALLOW)
        .and_then(|allow| allow.to_str().ok())
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|method| !method.is_empty() && *method != "HEAD")
        .map(str::to_owned)
        .collect()
}
