//! Logging: Cloud Logging JSON on stdout on Cloud Run (severity, source location, `httpRequest`,
//! trace correlation), readable text on stderr elsewhere (stdout stays for what a command
//! prints, such as `pulse demo --json`), and one span per request carrying the message id and
//! event id.

use std::io;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;
use tracing::{Instrument as _, Span, field};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::Config;
use crate::metrics;

/// Installs the global subscriber. `RUST_LOG` filters (default `info`).
pub fn init(config: &Config) {
    init_with_filter(config, None);
}

/// Installs the global subscriber with `filter` (a `RUST_LOG`-style directive, e.g. `debug`,
/// from a command-line tool's `-v`/`-q`), or when `None`, with `RUST_LOG`, by default `info`.
pub fn init_with_filter(config: &Config, filter: Option<&str>) {
    // The per-write "rows committed" line feeds Cloud Logging's freshness metric; locally,
    // `/metrics` and the dashboard show the same figures, so the text log leaves it out.
    let default = if config.json_logs {
        "info"
    } else {
        "info,pulse_shared::metrics=warn"
    };
    let filter = match filter {
        Some(directive) => EnvFilter::new(directive),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if config.json_logs {
        registry
            .with(
                tracing_stackdriver::layer()
                    .with_source_location(true)
                    .with_writer(TraceLiftingStdout),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_writer(io::stderr),
            )
            .try_init()
    };
    // A second init (tests, or the local stack running several functions) keeps the first.
    drop(installed);
}

/// The Cloud Trace id of a request, from `traceparent` (W3C) or `X-Cloud-Trace-Context`.
pub fn trace_id(headers: &http::HeaderMap) -> Option<String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let valid = |id: &str| {
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id != "0".repeat(32)
    };
    if let Some(parent) = header("traceparent") {
        let mut parts = parent.split('-');
        if let (Some(_version), Some(id)) = (parts.next(), parts.next())
            && valid(id)
        {
            return Some(id.to_ascii_lowercase());
        }
    }
    let context = header("x-cloud-trace-context")?;
    let id = context.split('/').next()?;
    valid(id).then(|| id.to_ascii_lowercase())
}

/// Who answers the requests that [`trace_requests`] sees.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The project that Cloud Trace ids belong to.
    pub project: String,
    /// The function's name, labelling its metrics.
    pub function: &'static str,
}

/// Middleware: runs each request in a `request` span (method, path, trace, and the
/// `message_id`/`event_id` that handlers record), counts it in the metrics (by route, and as a
/// delivery when it came to the trigger route `POST /`) and logs its end with `httpRequest`
/// fields: at `info` for server errors and redeliveries asked for, at `debug` otherwise.
pub async fn trace_requests(
    State(context): State<RequestContext>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // The route's pattern, not the path, so that names in paths do not become label values.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let trigger = method == http::Method::POST && route == "/";
    let project = &context.project;
    let span = tracing::info_span!(
        "request",
        %method,
        %path,
        trace = field::Empty,
        message_id = field::Empty,
        event_id = field::Empty,
    );
    if let Some(id) = trace_id(request.headers()) {
        span.record("trace", format!("projects/{project}/traces/{id}"));
    }
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    metrics::request(context.function, &route, trigger, status, started.elapsed());
    // Field values are only computed when the log line is enabled.
    let latency = || format!("{:.6}s", started.elapsed().as_secs_f64());
    let _entered = span.enter();
    if status >= 500 || status == 429 {
        tracing::info!(
            http_request.request_method = %method,
            http_request.request_url = %path,
            http_request.status = status,
            http_request.latency = %latency(),
            "request answered {status}; the sender will deliver it again"
        );
    } else {
        tracing::debug!(
            http_request.request_method = %method,
            http_request.request_url = %path,
            http_request.status = status,
            http_request.latency = %latency(),
            "request answered {status}"
        );
    }
    response
}

/// Records the message and event ids on the current request span.
pub fn record_ids(message_id: Option<&str>, event_id: Option<&str>) {
    let span = Span::current();
    if let Some(id) = message_id {
        span.record("message_id", id);
    }
    if let Some(id) = event_id {
        span.record("event_id", id);
    }
}

/// Writes Cloud Logging lines to stdout, lifting the request span's `trace` field to the
/// top-level `logging.googleapis.com/trace` key that Cloud Logging correlates on.
/// (`tracing-stackdriver` only does this through OpenTelemetry 0.22, which this project does
/// not otherwise need, so these few lines are written by hand.)
struct TraceLiftingStdout;

impl<'a> MakeWriter<'a> for TraceLiftingStdout {
    type Writer = TraceLiftingWriter;
    fn make_writer(&'a self) -> Self::Writer {
        TraceLiftingWriter
    }
}

struct TraceLiftingWriter;

impl io::Write for TraceLiftingWriter {
    /// The formatter hands over one whole JSON line per call.
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let lifted = lift_trace(line);
        io::Write::write_all(&mut io::stdout().lock(), lifted.as_deref().unwrap_or(line))?;
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

/// Returns the line with `logging.googleapis.com/trace` added, or `None` when it has no trace.
fn lift_trace(line: &[u8]) -> Option<Vec<u8>> {
    let mut entry: serde_json::Map<String, Value> = serde_json::from_slice(line).ok()?;
    let trace = entry
        .get("spans")?
        .as_array()?
        .iter()
        .find_map(|span| span.get("trace")?.as_str().filter(|t| !t.is_empty()))?
        .to_owned();
    entry.insert(
        "logging.googleapis.com/trace".to_owned(),
        Value::String(trace),
    );
    let mut out = serde_json::to_vec(&entry).ok()?;
    out.push(b'\n');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &'static str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(name, http::HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn reads_trace_ids_from_both_headers() {
        assert_eq!(
            trace_id(&headers(
                "traceparent",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
            ))
            .as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            trace_id(&headers(
                "x-cloud-trace-context",
                "105445aa7843bc8bf206b12000100000/1;o=1"
            ))
            .as_deref(),
            Some("105445aa7843bc8bf206b12000100000")
        );
        assert_eq!(trace_id(&headers("traceparent", "garbage")), None);
        assert_eq!(trace_id(&http::HeaderMap::new()), None);
    }

    #[test]
    fn lifts_the_request_trace_to_the_top_level() {
        let line =
            br#"{"severity":"INFO","spans":[{"name":"request","trace":"projects/p/traces/abc"}]}"#;
        let lifted: Value = serde_json::from_slice(&lift_trace(line).unwrap()).unwrap();
        assert_eq!(
            lifted["logging.googleapis.com/trace"],
            "projects/p/traces/abc"
        );
        assert_eq!(lift_trace(br#"{"severity":"INFO"}"#), None);
    }
}
