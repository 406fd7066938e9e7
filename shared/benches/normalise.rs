//! Decode + validate + normalise + serialise of a ~1 KB order event delivered as a binary-mode
//! CloudEvent: the per-event CPU cost of preprocess. `cargo bench -p pulse-shared --bench normalise`

#![allow(clippy::unwrap_used)] // a benchmark of known-good input

use base64::Engine as _;
use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use pulse_shared::delivery::envelope::decode_pubsub;
use pulse_shared::registry::normalise::{Provenance, normalise};
use serde_json::json;

fn order_event() -> Vec<u8> {
    let items: Vec<_> = (0..8)
        .map(|i| json!({"product_id": format!("sku-{:04}", 1000 + i * 37), "quantity": i + 1, "price": 10.99 + f64::from(i)}))
        .collect();
    let event = json!({
        "event_id": "b00001-0000000001", "event_type": "order", "timestamp": "2024-05-01T14:00:01+02:00",
        "order_id": "ord-bench", "customer_id": "cust-0042", "status": "paid", "total_amount": 431.92,
        "currency": "EUR", "items": items, "channel": "web",
        "shipping": {"street": "Unter den Linden 77", "city": "Berlin", "postcode": "10117", "country": "DE"},
        "note": "n".repeat(260),
    });
    serde_json::to_vec(&event).unwrap()
}

fn bench(c: &mut Criterion) {
    let event = order_event();
    assert!(
        (900..1200).contains(&event.len()),
        "event is {} bytes",
        event.len()
    );
    let body = serde_json::to_vec(&json!({
        "message": {"data": base64::engine::general_purpose::STANDARD.encode(&event), "messageId": "1",
                    "publishTime": "2024-05-01T12:00:00Z"},
        "subscription": "projects/bench/subscriptions/eventarc",
    }))
    .unwrap();
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        (
            "ce-source",
            "//pubsub.googleapis.com/projects/bench/topics/events-raw",
        ),
        ("ce-type", "google.cloud.pubsub.topic.v1.messagePublished"),
        ("content-type", "application/json"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    c.bench_function("decode+validate+normalise+serialise 1 KB order", |b| {
        b.iter(|| {
            let (_, delivery) = decode_pubsub(&headers, &body).unwrap();
            let data = delivery.message.decode_data().unwrap();
            let provenance = Provenance {
                message_id: &delivery.message.message_id,
                publish_time: delivery.message.publish_time.as_deref(),
                ingested_at: Utc::now(),
            };
            normalise(&data, &provenance, 1 << 20).unwrap()
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
