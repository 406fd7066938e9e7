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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use pulse_shared::auth::AccessTokens;
use pulse_shared::backends::Backends;
use pulse_shared::config::Config;
use pulse_shared::warehouse::{DuckDbWarehouse, Warehouse};
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

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
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

    let distinct = rate * secs;
    let mut schedule: Vec<(Duration, u64)> = (0..distinct)
        .map(|i| (Duration::from_secs_f64(i as f64 / rate as f64), i))
        .chain(
            (0..distinct)
                .step_by(10)
                .map(|i| (Duration::from_secs_f64(i as f64 / rate as f64 + 1.0), i)),
        )
        .collect();
    schedule.sort();
    let bodies = Arc::new((0..distinct).map(body).collect::<Vec<_>>());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap();
    let failures = Arc::new(AtomicU64::new(0));
    let (samples_tx, mut samples_rx) = tokio::sync::mpsc::unbounded_channel();
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(schedule.len());
    for (at, i) in schedule.iter().copied() {
        tokio::time::sleep_until(start + at).await;
        let (client, url, bodies) = (client.clone(), url.clone(), bodies.clone());
        let (failures, samples_tx) = (failures.clone(), samples_tx.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let answer = client
                .post(&url)
                .header("content-type", "application/json")
                .body(bodies[i as usize].clone())
                .send()
                .await;
            let body: Option<Value> = match answer {
                Ok(r) if r.status().is_success() => r.json().await.ok(),
                _ => None,
            };
            let took = sent.elapsed();
            match body.and_then(|b| b["latency_ms"].as_f64()) {
                Some(model_ms) => {
                    let _ = samples_tx.send((took, took.as_secs_f64() * 1000.0 - model_ms));
                }
                None => {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let offered_for = start.elapsed();
    for task in tasks {
        task.await.unwrap();
    }
    drop(samples_tx);
    let (mut total, mut added) = (Vec::new(), Vec::new());
    while let Some((took, added_ms)) = samples_rx.recv().await {
        total.push(took.as_secs_f64() * 1000.0);
        added.push(added_ms);
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
    };
    let counted = warehouse
        .query("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM pulse.predictions")
        .await
        .unwrap();
    let rows = counted[0]["n"].as_u64().unwrap();
    let unique = counted[0]["d"].as_u64().unwrap();
    let calls = state.predict_calls();
    println!(
        "offered          {} deliveries ({distinct} distinct events) in {offered_for:.1?} = {:.0}/s",
        schedule.len(),
        schedule.len() as f64 / offered_for.as_secs_f64()
    );
    println!("failed requests  {}", failures.load(Ordering::Relaxed));
    println!(
        "predict calls    {calls} = {:.3} per delivery",
        calls as f64 / schedule.len() as f64
    );
    println!(
        "request latency  p50 {:.1} ms  p99 {:.1} ms",
        pct(&mut total, 0.5),
        pct(&mut total, 0.99)
    );
    println!(
        "added latency    p50 {:.1} ms  p99 {:.1} ms  (request minus the predict call)",
        pct(&mut added, 0.5),
        pct(&mut added, 0.99)
    );
    println!(
        "rows in table    {rows}: lost {}, doubled {}",
        distinct.saturating_sub(unique),
        rows - unique
    );
}
