//! Load benchmark of table-manager with the DuckDB warehouse (docs/benchmarks.md): offers
//! `RATE` deliveries per second for `SECS` seconds, open loop (each request leaves at its
//! scheduled time, whatever the answers do), over loopback HTTP, every event distinct and one in
//! ten delivered a second time. Reports rows per warehouse write, request latency from the
//! scheduled send, and lost or doubled rows counted by query afterwards.
//!
//! `cargo run --release -p table-manager --example load -- [RATE] [SECS]` (default 2000 60);
//! the batch limits come from the usual `PULSE_BATCH_*` variables.

#![allow(clippy::unwrap_used)] // a benchmark fails loudly

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use chrono::Utc;
use common::Observed;
use pulse_shared::backends::Backends;
use pulse_shared::config::Config;
use pulse_shared::registry::normalise::{Provenance, normalise};
use pulse_shared::warehouse::{DuckDbWarehouse, Warehouse};
use serde_json::json;

/// The push body of the processed event `i`.
fn body(i: u64) -> String {
    let event = json!({
        "event_id": format!("bench-{i}"), "event_type": "device_telemetry",
        "timestamp": Utc::now().to_rfc3339(), "device_id": format!("dev-{}", i % 500),
        "sensor_type": "temperature", "reading": 20.0 + (i % 100) as f64 / 10.0, "unit": "C",
    });
    let message_id = format!("m-{i}");
    let provenance = Provenance {
        message_id: &message_id,
        publish_time: None,
        ingested_at: Utc::now(),
    };
    let data = normalise(&serde_json::to_vec(&event).unwrap(), &provenance, 1 << 20)
        .unwrap()
        .json()
        .to_vec();
    json!({"message": {
        "data": base64::engine::general_purpose::STANDARD.encode(data),
        "messageId": message_id,
    }})
    .to_string()
}

/// The value below which a fraction `p` of the sorted `values` lie (zero when there are none).
fn percentile(values: &[Duration], p: f64) -> Duration {
    let Some(last) = values.len().checked_sub(1) else {
        return Duration::ZERO;
    };
    values[((values.len() as f64 * p) as usize).min(last)]
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rate: u64 = args.next().map_or(2000, |a| a.parse().unwrap());
    let secs: u64 = args.next().map_or(60, |a| a.parse().unwrap());

    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_lookup(|name| std::env::var(name).ok()).unwrap();
    let config = Config {
        data_dir: dir.path().to_owned(),
        ..config
    };
    let objects = Backends::local_objects(&config).unwrap();
    let backends = Backends {
        publisher: Arc::new(Backends::local_bus(&config, &objects)),
        objects,
    };
    let warehouse = Arc::new(Observed::new(
        DuckDbWarehouse::open(&dir.path().join("warehouse.duckdb"), "pulse").unwrap(),
    ));
    let linger = config.batch.linger;
    let app = table_manager::app(table_manager::AppState::new(
        config,
        &backends,
        warehouse.clone(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let distinct = rate * secs;
    // Every tenth event is delivered again a second later: a redelivery under load.
    let schedule: Vec<(Duration, u64)> = (0..distinct)
        .map(|i| (Duration::from_secs_f64(i as f64 / rate as f64), i))
        .chain(
            (0..distinct)
                .step_by(10)
                .map(|i| (Duration::from_secs_f64(i as f64 / rate as f64 + 1.0), i)),
        )
        .collect();
    let mut schedule = schedule;
    schedule.sort();
    let bodies: Vec<String> = (0..distinct).map(body).collect();
    let bodies = Arc::new(bodies);

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap();
    let failures = Arc::new(AtomicU64::new(0));
    let (latencies_tx, mut latencies_rx) = tokio::sync::mpsc::unbounded_channel();
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(schedule.len());
    for (at, i) in schedule.iter().copied() {
        tokio::time::sleep_until(start + at).await;
        let (client, url, bodies) = (client.clone(), url.clone(), bodies.clone());
        let (failures, latencies_tx) = (failures.clone(), latencies_tx.clone());
        let scheduled = start + at;
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .body(bodies[i as usize].clone())
                .send()
                .await;
            if !response.is_ok_and(|r| r.status().is_success()) {
                failures.fetch_add(1, Ordering::Relaxed);
            }
            let _ = latencies_tx.send(scheduled.elapsed());
        }));
    }
    let offered_for = start.elapsed();
    for task in tasks {
        task.await.unwrap();
    }
    drop(latencies_tx);
    let mut latencies = Vec::with_capacity(schedule.len());
    while let Some(latency) = latencies_rx.recv().await {
        latencies.push(latency);
    }
    latencies.sort();
    let pct = |p| percentile(&latencies, p);

    let counted = warehouse
        .query("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM pulse.device_telemetry")
        .await
        .unwrap();
    let rows = counted[0]["n"].as_u64().unwrap();
    let unique = counted[0]["d"].as_u64().unwrap();
    let writes = warehouse.inserts.load(Ordering::Relaxed);
    let rows_sent = warehouse.rows.load(Ordering::Relaxed);

    println!(
        "offered          {} deliveries ({distinct} distinct events) in {offered_for:.1?} = {:.0}/s",
        schedule.len(),
        schedule.len() as f64 / offered_for.as_secs_f64()
    );
    println!("failed requests  {}", failures.load(Ordering::Relaxed));
    println!(
        "warehouse writes {writes}, rows sent {rows_sent}, rows per write {:.1}",
        rows_sent as f64 / writes.max(1) as f64
    );
    let mut write_times = warehouse.insert_times.lock().unwrap().clone();
    write_times.sort();
    let write_pct = |p| percentile(&write_times, p);
    println!(
        "write time       p50 {:.1?}  p99 {:.1?}  max {:.1?}",
        write_pct(0.50),
        write_pct(0.99),
        write_pct(1.0)
    );
    println!(
        "latency          p50 {:.1?}  p99 {:.1?}  max {:.1?}  (linger {linger:?})",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "rows in table    {rows}: lost {}, doubled {}",
        distinct.saturating_sub(unique),
        rows - unique
    );
}
