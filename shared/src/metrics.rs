//! Metrics: one Prometheus recorder per process, rendered as Prometheus text at `GET /metrics`
//! on every function, and the one place where each Pulse metric is named and recorded, so the
//! dashboard, the alerts and the code read the same list.
//!
//! Durations and sizes are summaries over a rolling minute (the exporter's default), so `/metrics`
//! states p50 and p99 directly; the local dashboard reads them from there.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Map, Value};

/// Deliveries to a trigger route, by what the answer means to Pub/Sub or Eventarc
/// (`function`, `outcome`: `acknowledged`, `redelivered`, `refused`).
pub const DELIVERIES: &str = "pulse_deliveries_total";
/// Every request answered (`function`, `route`, `status`).
pub const REQUESTS: &str = "pulse_requests_total";
/// Time to answer a request, in seconds (`function`, `route`).
pub const REQUEST_SECONDS: &str = "pulse_request_duration_seconds";
/// Dead-letter records written (`function`, `reason`).
pub const DEAD_LETTERS: &str = "pulse_dead_letters_total";
/// Rows committed to the warehouse, by streaming writes and by loads (`table`).
pub const ROWS_WRITTEN: &str = "pulse_rows_written_total";
/// Rows in one committed warehouse write (`table`).
pub const WRITE_BATCH_ROWS: &str = "pulse_write_batch_rows";
/// From an event's `timestamp` to its row's commit, in seconds (`table`).
pub const FRESHNESS_EVENT_SECONDS: &str = "pulse_freshness_event_seconds";
/// From the Pub/Sub publish of the message carrying a row to its commit, in seconds (`table`).
pub const FRESHNESS_PUBLISH_SECONDS: &str = "pulse_freshness_publish_seconds";
/// Parquet objects handled (`outcome`: `loaded`, `already_loaded`, `quarantined`, `ignored`).
pub const LOADS: &str = "pulse_loads_total";
/// Calls to the prediction endpoint (`outcome`: `ok`, `unavailable`, `refused`, `mismatch`).
pub const PREDICT_CALLS: &str = "pulse_predict_calls_total";
/// Time a prediction call took, in seconds.
pub const PREDICT_SECONDS: &str = "pulse_predict_duration_seconds";
/// 1 while the prediction endpoint's circuit breaker refuses calls, else 0.
pub const BREAKER_OPEN: &str = "pulse_predict_breaker_open";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often idle histogram buckets are drained when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the process's recorder on first call and returns its handle. The local stack runs
/// every function in one process: they share this recorder, and their metrics carry a
/// `function` (or `table`) label to tell them apart.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder was installed first; /metrics stays empty");
        }
        let upkeep = handle.clone();
        // Without the exporter's own runtime, someone must drain the histograms now and then.
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        if let Err(err) = spawned {
            tracing::warn!("metrics upkeep not started ({err}); scrapes still drain them");
        }
        handle
    })
}

/// `GET /metrics`: every metric of this process in Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "runtime",
    responses((status = 200, description = "Prometheus text format 0.0.4.", content_type = "text/plain", body = String))
)]
pub async fn render() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle().render(),
    )
}

/// Counts one answered request, and one delivery when it came to the trigger route.
pub fn request(function: &'static str, route: &str, trigger: bool, status: u16, took: Duration) {
    let route = route.to_owned();
    counter!(REQUESTS, "function" => function, "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    histogram!(REQUEST_SECONDS, "function" => function, "route" => route)
        .record(took.as_secs_f64());
    if trigger {
        let outcome = match status {
            200..=299 => "acknowledged",
            429 | 500..=599 => "redelivered",
            _ => "refused",
        };
        counter!(DELIVERIES, "function" => function, "outcome" => outcome).increment(1);
    }
}

/// Counts one dead-letter record written.
pub fn dead_lettered(function: &str, reason: &str) {
    counter!(DEAD_LETTERS, "function" => function.to_owned(), "reason" => reason.to_owned())
        .increment(1);
}

/// Records a committed streaming write: its rows, and for each row that carries them the time
/// from its event's `timestamp` and from its message's `publish_time` until now.
///
/// It also logs one line per write with the oldest row's ages: on Cloud Run nobody scrapes
/// `/metrics`, and the log-based freshness metric of `terraform/monitoring.tf` reads
/// `jsonPayload.freshnessMillis` from this line (the batch's worst row, so its percentiles are
/// upper bounds of the rows').
pub fn rows_committed<'a>(
    table: &str,
    rows: impl ExactSizeIterator<Item = &'a Map<String, Value>>,
) {
    let count = rows.len();
    counter!(ROWS_WRITTEN, "table" => table.to_owned()).increment(count as u64);
    histogram!(WRITE_BATCH_ROWS, "table" => table.to_owned()).record(count as f64);
    let now = Utc::now();
    let event = histogram!(FRESHNESS_EVENT_SECONDS, "table" => table.to_owned());
    let publish = histogram!(FRESHNESS_PUBLISH_SECONDS, "table" => table.to_owned());
    let (mut oldest_event, mut oldest_publish) = (None::<f64>, None::<f64>);
    for values in rows {
        if let Some(age) = age_of(values.get("timestamp"), now) {
            event.record(age);
            oldest_event = Some(oldest_event.map_or(age, |oldest| oldest.max(age)));
        }
        if let Some(age) = age_of(values.get("publish_time"), now) {
            publish.record(age);
            oldest_publish = Some(oldest_publish.map_or(age, |oldest| oldest.max(age)));
        }
    }
    tracing::info!(
        table,
        rows_committed = count,
        freshness_millis = oldest_event.map(whole_millis),
        publish_freshness_millis = oldest_publish.map(whole_millis),
        "rows committed"
    );
}

/// Whole milliseconds: Cloud Logging's JSON gets an integer (the log layer writes floats as text).
fn whole_millis(seconds: f64) -> u64 {
    (seconds * 1000.0).round() as u64
}

/// Seconds from an RFC 3339 timestamp to `now`; a time in the future counts as zero.
fn age_of(value: Option<&Value>, now: DateTime<Utc>) -> Option<f64> {
    let then = DateTime::parse_from_rfc3339(value?.as_str()?).ok()?;
    let age = now.signed_duration_since(then).as_seconds_f64();
    Some(age.max(0.0))
}

/// Counts one Parquet object handled, and the rows a load committed to `table`.
pub fn load(outcome: &'static str, loaded: Option<(&str, u64)>) {
    counter!(LOADS, "outcome" => outcome).increment(1);
    if let Some((table, rows)) = loaded {
        counter!(ROWS_WRITTEN, "table" => table.to_owned()).increment(rows);
    }
}

/// Counts one call to the prediction endpoint and how long it took.
pub fn predict_call(outcome: &'static str, took: Duration) {
    counter!(PREDICT_CALLS, "outcome" => outcome).increment(1);
    histogram!(PREDICT_SECONDS).record(took.as_secs_f64());
}

/// Sets the breaker gauge.
pub fn breaker_open(open: bool) {
    gauge!(BREAKER_OPEN).set(if open { 1.0 } else { 0.0 });
}

/// One line of Prometheus text: a metric name, its labels and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, or `""`.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// The largest value of quantile `quantile` (`"0.99"`) among the summaries named `name`: across
/// tables, an upper bound of the quantile of all their rows together.
pub fn worst_quantile(samples: &[Sample], name: &str, quantile: &str) -> Option<f64> {
    samples
        .iter()
        .filter(|sample| sample.name == name && sample.label("quantile") == quantile)
        .map(|sample| sample.value)
        .reduce(f64::max)
}

/// Reads the samples of a Prometheus text exposition (comments and malformed lines are skipped).
/// Label values are read as this exporter writes them: quoted, with `\\`, `\"` and `\n` escapes.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find('{') {
        Some(open) => (&line[..open], &line[open + 1..]),
        None => {
            let (name, value) = line.split_once(' ')?;
            return Some(Sample {
                name: name.to_owned(),
                labels: BTreeMap::new(),
                value: value.trim().parse().ok()?,
            });
        }
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.char_indices();
    loop {
        let start = chars.clone().next()?.0;
        let (eq, _) = chars.by_ref().find(|(_, c)| *c == '=')?;
        let key = rest[start..eq].trim_start_matches(',').trim().to_owned();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()?.1 {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                other => value.push(other),
            }
        }
        labels.insert(key, value);
        let (at, next) = chars.next()?;
        if next == '}' {
            return Some(Sample {
                name: name.to_owned(),
                labels,
                value: rest[at + 1..].trim().split(' ').next()?.parse().ok()?,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_exporters_text() {
        let text = "# TYPE pulse_rows_written_total counter\n\
            pulse_rows_written_total{table=\"orders\"} 12\n\
            pulse_freshness_event_seconds{table=\"orders\",quantile=\"0.99\"} 0.25\n\
            pulse_predict_breaker_open 0\n\
            odd{reason=\"a \\\"quoted\\\" \\\\ one\"} 3\n\
            broken{table=\"x\" 4\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 4, "{samples:?}");
        assert_eq!(samples[0].name, "pulse_rows_written_total");
        assert_eq!(samples[0].label("table"), "orders");
        assert_eq!(samples[0].value, 12.0);
        assert_eq!(samples[1].label("quantile"), "0.99");
        assert_eq!(samples[1].value, 0.25);
        assert!(samples[2].labels.is_empty());
        assert_eq!(samples[3].label("reason"), "a \"quoted\" \\ one");
        let both = parse(
            "f{table=\"a\",quantile=\"0.99\"} 0.5\nf{table=\"b\",quantile=\"0.99\"} 0.75\n\
             f{table=\"b\",quantile=\"0.5\"} 0.9\n",
        );
        assert_eq!(worst_quantile(&both, "f", "0.99"), Some(0.75));
        assert_eq!(worst_quantile(&both, "g", "0.99"), None);
    }

    /// Cloud Logging's freshness metric (terraform/monitoring.tf) reads these field names.
    #[test]
    fn each_write_logs_its_oldest_rows_freshness_for_cloud_logging() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt as _;

        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_stackdriver::layer().with_writer(move || writer.clone()));
        let ago = |seconds: i64| {
            let mut row = Map::new();
            let then = Utc::now() - chrono::Duration::seconds(seconds);
            row.insert("timestamp".to_owned(), Value::String(then.to_rfc3339()));
            row
        };
        let rows = [ago(5), ago(30)];
        tracing::subscriber::with_default(subscriber, || rows_committed("orders", rows.iter()));

        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["table"], "orders", "{line}");
        assert_eq!(line["rowsCommitted"], 2, "{line}");
        let freshness = line["freshnessMillis"].as_u64().unwrap_or_default();
        assert!(
            (30_000..40_000).contains(&freshness),
            "the oldest row's age: {line}"
        );
        assert!(line.get("publishFreshnessMillis").is_none(), "{line}");
    }

    #[test]
    fn freshness_is_measured_from_the_rows_own_times() {
        let now = DateTime::parse_from_rfc3339("2026-12-05T10:00:02Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |t: &str| Value::String(t.to_owned());
        assert_eq!(age_of(Some(&at("2026-12-05T10:00:00.5Z")), now), Some(1.5));
        assert_eq!(age_of(Some(&at("2026-12-05T10:00:03Z")), now), Some(0.0));
        assert_eq!(age_of(Some(&at("yesterday")), now), None);
        assert_eq!(age_of(None, now), None);
    }
}
