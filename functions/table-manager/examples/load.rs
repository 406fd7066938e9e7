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
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use chrono::Utc;
use common::Observed;
use pulse_shared::backends::Backends;
use pulse_shared::config::Config;
use pulse_shared::registry::normalise::{Provenance, normalise};
use pulse_shared::testing::harness::serve;
use pulse_shared::testing::load::{Timing, offer, percentile, print_rows_in_table};
use pulse_shared::warehouse::DuckDbWarehouse;
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
    let url = format!("{}/", serve(app).await);

    let offered = offer(
        &url,
        rate,
        secs,
        body,
        |response, timing: Timing| async move {
            let failed = !response.is_ok_and(|r| r.status().is_success());
            (timing.scheduled.elapsed(), failed)
        },
    )
    .await;
    let mut latencies: Vec<Duration> = offered.answers.iter().map(|(took, _)| *took).collect();
    latencies.sort();
    let pct = |p| percentile(&latencies, p);

    let writes = warehouse.inserts.load(Ordering::Relaxed);
    let rows_sent = warehouse.rows.load(Ordering::Relaxed);

    offered.print(offered.answers.iter().filter(|(_, failed)| *failed).count());
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
    print_rows_in_table(
        warehouse.as_ref(),
        "pulse.device_telemetry",
        offered.distinct,
    )
    .await;
}
