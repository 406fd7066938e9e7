//! Publish throughput of the local bus: `count` messages of `size` bytes, `concurrency`
//! publishes at a time, to one subscription whose endpoint answers 204 at once. Prints one JSON
//! line: publishes per second (until the last publish is answered) and deliveries per second
//! (until the bus settled). `scripts/bench-bus.sh` runs it for each mode.
//!
//! `cargo run --release -p pulse-shared --example bus_publish -- MODE [COUNT] [CONCURRENCY] [SIZE]`
//! with MODE `memory` (no log), `log` (the log, synced) or `log-nosync`.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use pulse_shared::delivery::deadletter::DeadLetterStore;
use pulse_shared::publish::{
    LocalBus, LogOptions, OutgoingMessage, Publisher as _, PushSubscription,
};
use pulse_shared::storage::{LocalObjectStore, ObjectStore};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map_or("log", String::as_str).to_owned();
    let arg = |i: usize, default: usize| -> anyhow::Result<usize> {
        Ok(args
            .get(i)
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let (count, concurrency, size) = (arg(1, 100_000)?, arg(2, 256)?, arg(3, 1_000)?);
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".to_owned()))?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}/", listener.local_addr()?);
    let router = Router::new().route("/", post(|| async { StatusCode::NO_CONTENT }));
    tokio::spawn(async move { axum::serve(listener, router).await });

    let objects: Arc<dyn ObjectStore> =
        Arc::new(LocalObjectStore::open(dir.path().join("gcs"), false)?);
    let dead_letters = DeadLetterStore::new(objects, "pulse-raw", "dead-letter/");
    let bus = match mode.as_str() {
        "memory" => LocalBus::new("local", dead_letters),
        "log" | "log-nosync" => LocalBus::open(
            "local",
            dead_letters,
            &dir.path().join("bus"),
            LogOptions {
                durable: mode == "log",
                ..LogOptions::default()
            },
        )?,
        other => anyhow::bail!("unknown mode {other:?}: memory, log or log-nosync"),
    };
    bus.subscribe(PushSubscription {
        max_in_flight: 64,
        ..PushSubscription::new("bench", "events-raw", endpoint)
    });

    let data = Bytes::from(vec![b'x'; size]);
    let start = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut sent = 0;
    let mut failed = 0;
    while sent < count || !in_flight.is_empty() {
        while sent < count && in_flight.len() < concurrency {
            let message = OutgoingMessage {
                data: data.clone(),
                ..OutgoingMessage::default()
            };
            let bus = bus.clone();
            in_flight.push(async move { bus.publish("events-raw", message).await });
            sent += 1;
        }
        if let Some(result) = in_flight.next().await
            && result.is_err()
        {
            failed += 1;
        }
    }
    let published = start.elapsed();
    bus.settled().await;
    let settled = start.elapsed();
    let stats = bus.log_stats().await;
    println!(
        "{}",
        serde_json::json!({
            "mode": mode,
            "count": count,
            "concurrency": concurrency,
            "size": size,
            "failed": failed,
            "publishes_per_second": (count as f64 / published.as_secs_f64()).round(),
            "delivered_per_second": (count as f64 / settled.as_secs_f64()).round(),
            "log_syncs": stats.map(|s| s.syncs),
            "log_groups": stats.map(|s| s.groups),
            "log_bytes_after": stats.map(|s| s.bytes),
        })
    );
    Ok(())
}
