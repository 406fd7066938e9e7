//! Benchmarks of the upkeep routes on the local warehouse (figures in docs/benchmarks.md):
//!
//! - `upkeep prepare DIR N`: N `order` events over one day (2026-11-01), each archived as a file
//!   where preprocess would put it and stored once in DuckDB, under data dir DIR.
//! - `upkeep reconcile DIR`: that day reconciled through table-manager's router an hour per
//!   `POST /reconcile`, as `pulse verify` asks; prints the counts, the seconds and the process's
//!   peak RSS.
//! - `upkeep compact DIR N PERCENT`: a table of N rows without a key, PERCENT of them repeats of
//!   other rows' ids (as BigQuery keeps them), compacted over its day; prints the seconds.
//!
//! Each step runs in its own process so the peak RSS of `reconcile` is its own.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use http::Request;
use pulse_shared::backends::Backends;
use pulse_shared::config::Config;
use pulse_shared::warehouse::dedup::EVENT_ROWS;
use pulse_shared::warehouse::{DateRange, DuckDbWarehouse, Row, Warehouse};
use serde_json::{Map, Value, json};
use table_manager::{AppState, ReconcileRequest, Reconciliation, app, table_spec};
use tower::ServiceExt as _;

const DAY: &str = "2026-11-01";
const BATCH: usize = 20_000;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match (arg(0), arg(1), arg(2), arg(3)) {
        (Some("prepare"), Some(dir), Some(n), None) => {
            prepare(Path::new(dir), n.parse().expect("N")).await;
        }
        (Some("reconcile"), Some(dir), None, None) => reconcile(Path::new(dir)).await,
        (Some("compact"), Some(dir), Some(n), Some(percent)) => {
            compact(
                Path::new(dir),
                n.parse().expect("N"),
                percent.parse().expect("PERCENT"),
            )
            .await;
        }
        _ => panic!("usage: upkeep prepare DIR N | reconcile DIR | compact DIR N PERCENT"),
    }
}

fn start() -> DateTime<Utc> {
    format!("{DAY}T00:00:00Z").parse().expect("a time")
}

/// Event `i` of `n`, spread evenly over the day.
fn event(i: usize, n: usize) -> Map<String, Value> {
    let at = start() + Duration::milliseconds((86_400_000 * i as i64) / n as i64);
    let values = json!({
        "event_id": format!("e-{i:08}"), "event_type": "order",
        "timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true), "event_date": DAY,
        "order_id": format!("o-{i}"), "customer_id": format!("c-{}", i % 1000),
        "items": [{"product_id": "p-1", "quantity": 1, "price": 9.5}],
        "total_amount": 9.5, "status": "paid",
        "ingested_at": at.to_rfc3339_opts(SecondsFormat::Millis, true),
    });
    match values {
        Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    }
}

fn open(dir: &Path) -> DuckDbWarehouse {
    DuckDbWarehouse::open(&dir.join("warehouse.duckdb"), "pulse").expect("the warehouse opens")
}

async fn prepare(dir: &Path, n: usize) {
    let started = Instant::now();
    let raw = dir.join("gcs/pulse-raw/raw/order");
    for i in 0..n {
        let values = event(i, n);
        let at: DateTime<Utc> = values["timestamp"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("a timestamp");
        let folder = raw.join(at.format("%Y/%m/%d/%H/%M").to_string());
        if i == 0 || at.timestamp() % 60 == 0 {
            std::fs::create_dir_all(&folder).expect("a folder");
        }
        let id = values["event_id"].as_str().expect("an id");
        std::fs::write(
            folder.join(format!("{id}.json")),
            Value::Object(values.clone()).to_string(),
        )
        .expect("an archive file");
    }
    let archived = started.elapsed().as_secs_f64();
    let warehouse = open(dir);
    let table = warehouse
        .ensure_table(&table_spec("order", &event(0, n)))
        .await
        .expect("the table");
    for chunk in (0..n).collect::<Vec<_>>().chunks(BATCH) {
        let rows: Vec<Row> = chunk
            .iter()
            .map(|&i| {
                let values = event(i, n);
                Row {
                    id: values["event_id"].as_str().unwrap_or_default().to_owned(),
                    values,
                }
            })
            .collect();
        warehouse
            .insert_rows(&table.name, &rows)
            .await
            .expect("the rows");
    }
    println!(
        "{}",
        json!({"prepared": n, "archive_secs": archived, "total_secs": started.elapsed().as_secs_f64()})
    );
}

async fn reconcile(dir: &Path) {
    let config = Config::local(dir);
    let backends = Backends::from_config(&config).await.expect("backends");
    let warehouse: Arc<dyn Warehouse> = Arc::new(open(dir));
    let router = app(AppState::new(config, &backends, warehouse));
    let day = ReconcileRequest {
        event_type: "order".to_owned(),
        from: start(),
        to: start() + Duration::days(1),
    };
    let (mut archived, mut stored, mut missing, mut duplicated) = (0, 0, 0, 0);
    let started = Instant::now();
    // Page by page, as `pulse verify` asks: one request per hour of event time.
    for page in day.pages() {
        let response = router
            .clone()
            .oneshot(
                Request::post("/reconcile")
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&page).expect("JSON")))
                    .expect("a request"),
            )
            .await
            .expect("an answer");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        assert!(status.is_success(), "{status}: {bytes:?}");
        let found: Reconciliation = serde_json::from_slice(&bytes).expect("a report");
        archived += found.archived;
        stored += found.stored;
        missing += found.missing.len();
        duplicated += found.duplicated.len();
    }
    println!(
        "{}",
        json!({
            "archived": archived, "stored": stored, "missing": missing, "duplicated": duplicated,
            "secs": started.elapsed().as_secs_f64(), "peak_rss_mb": peak_rss_mb(),
        })
    );
}

async fn compact(dir: &Path, n: usize, percent: usize) {
    let warehouse = open(dir);
    let mut spec = table_spec("order", &event(0, n));
    // BigQuery has no key: the same table without one holds repeats as BigQuery does.
    spec.name = "orders_unkeyed".to_owned();
    spec.row_id_column = None;
    warehouse.ensure_table(&spec).await.expect("the table");
    let repeats = n * percent / 100;
    let distinct = n - repeats;
    let ids: Vec<usize> = (0..distinct)
        .chain((0..repeats).map(|r| r * 7 % distinct))
        .collect();
    for (c, chunk) in ids.chunks(BATCH).enumerate() {
        let rows: Vec<Row> = chunk
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                let k = c * BATCH + j;
                let mut values = event(i, distinct);
                values.insert("message_id".into(), json!(format!("m-{k}")));
                Row {
                    id: format!("row-{k}"),
                    values,
                }
            })
            .collect();
        warehouse
            .insert_rows(&spec.name, &rows)
            .await
            .expect("the rows");
    }
    let day = DAY.parse().expect("a date");
    let started = Instant::now();
    let compaction = warehouse
        .compact(&spec.name, EVENT_ROWS, DateRange { from: day, to: day })
        .await
        .expect("compaction");
    let secs = started.elapsed().as_secs_f64();
    let left = warehouse
        .query("SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM pulse.orders_unkeyed")
        .await
        .expect("a count");
    println!(
        "{}",
        json!({
            "rows": n, "repeats": repeats, "duplicated_ids": compaction.duplicated_ids,
            "rows_removed": compaction.rows_removed, "left": left[0], "secs": secs,
            "peak_rss_mb": peak_rss_mb(),
        })
    );
}

/// The process's peak resident set (`VmHWM`), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
