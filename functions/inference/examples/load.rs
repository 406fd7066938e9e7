//! Load benchmark of inference against the built-in predictor (docs/benchmarks.md): offers
//! `RATE` processed `device_telemetry` deliveries per second for `SECS` seconds, open loop, over
//! loopback HTTP to inference, which calls the predictor over loopback HTTP and writes to DuckDB;
//! one event in ten is delivered again a second later. Reports predict calls per event, the
//! latency the function adds (request time minus the predict call's own time, which the answer
//! carries), and lost or doubled prediction rows counted by query afterwards.
//!
//! `cargo build --release --workspace --examples && target/release/examples/inference_load [RATE] [SECS]`
//! (default 1000 60); `PULSE_PREDICT_*` and `PULSE_BATCH_*` variables apply.

#![allow(clippy::unwrap_used)] // a benchmark fails loudly

use std::sync::Arc;

use base64::Engine as _;
use pulse_shared::auth::AccessTokens;
use pulse_shared::backends::Backends;
use pulse_shared::config::Config;
use pulse_shared::testing::harness::serve;
use pulse_shared::testing::load::{Timing, offer, percentile, print_rows_in_table};
use pulse_shared::warehouse::DuckDbWarehouse;
use serde_json::{Value, json};

fn body(i: u64) -> String {
    let event = json!({
        "event_id": format!("bench-{i}"), "event_type": "device_telemetry",
        "timestamp": "2026-11-21T10:00:00Z", "event_date": "2026-11-21",
        "device_id": format!("weather-{:02}", i % 6 + 1), "sensor_type": "pressure",
        "reading": 1013.0 + (i % 40) as f64 - 20.0, "unit": "hPa",
    });
    json!({"message": {
        "data": base64::engine::general_purpose::STANDARD.encode(event.to_string()),
        "messageId": format!("m-{i}"),
    }})
    .to_string()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rate: u64 = args.next().map_or(1000, |a| a.parse().unwrap());
    let secs: u64 = args.next().map_or(60, |a| a.parse().unwrap());

    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_lookup(|name| std::env::var(name).ok()).unwrap();
    config.data_dir = dir.path().to_owned();
    config.prediction.base_url = serve(predictor::app(
        predictor::Models::builtin(),
        &predictor::Routes::default(),
    ))
    .await;
    let backends = Backends::from_config(&config).await.unwrap();
    let warehouse =
        Arc::new(DuckDbWarehouse::open(&dir.path().join("warehouse.duckdb"), "pulse").unwrap());
    let state = inference::AppState::new(
        config,
        &backends,
        warehouse.clone(),
        AccessTokens::Anonymous,
    )
    .unwrap();
    let url = format!("{}/", serve(inference::app(state.clone())).await);

    let offered = offer(
        &url,
        rate,
        secs,
        body,
        |answer, timing: Timing| async move {
            let body: Option<Value> = match answer {
                Ok(r) if r.status().is_success() => r.json().await.ok(),
                _ => None,
            };
            let took = timing.sent.elapsed();
            let model_ms = body.and_then(|b| b["latency_ms"].as_f64())?;
            Some((
                took.as_secs_f64() * 1000.0,
                took.as_secs_f64() * 1000.0 - model_ms,
            ))
        },
    )
    .await;
    let answered: Vec<(f64, f64)> = offered.answers.iter().flatten().copied().collect();
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let total = sorted(answered.iter().map(|(took, _)| *took).collect());
    let added = sorted(answered.iter().map(|(_, added)| *added).collect());
    let calls = state.predict_calls();
    offered.print(offered.answers.len() - answered.len());
    println!(
        "predict calls    {calls} = {:.3} per delivery",
        calls as f64 / offered.deliveries as f64
    );
    println!(
        "request latency  p50 {:.1} ms  p99 {:.1} ms",
        percentile(&total, 0.5),
        percentile(&total, 0.99)
    );
    println!(
        "added latency    p50 {:.1} ms  p99 {:.1} ms  (request minus the predict call)",
        percentile(&added, 0.5),
        percentile(&added, 0.99)
    );
    print_rows_in_table(warehouse.as_ref(), "pulse.predictions", offered.distinct).await;
}
