//! A small fixed set of sample messages for the demo: one valid event of each known type and
//! one of a new type, a redelivered duplicate, and malformed messages of three kinds.

use chrono::{DateTime, Utc};
use pulse_shared::registry::rfc3339;
use serde_json::json;

/// A sample message and what the pipeline should make of it.
#[derive(Clone, Debug)]
pub struct Sample {
    pub data: Vec<u8>,
    /// `None` for a valid event; the reason code it should be dead-lettered with otherwise.
    pub expected_rejection: Option<&'static str>,
}

/// The demo's messages, stamped `now`.
pub fn samples(now: DateTime<Utc>) -> Vec<Sample> {
    let ts = rfc3339(now);
    let order = json!({
        "event_id": "demo-order-1", "event_type": "order", "timestamp": ts,
        "order_id": "ord-1001", "customer_id": "cust-42", "status": "paid", "total_amount": 59.97,
        "currency": "EUR",
        "items": [{"product_id": "sku-7", "quantity": 3, "price": 19.99}],
    });
    let valid = [
        order.clone(),
        json!({"event_id": "demo-inventory-1", "event_type": "inventory", "timestamp": ts,
               "product_id": "sku-7", "warehouse_id": "wh-berlin", "quantity_change": -3, "reason": "sale"}),
        json!({"event_id": "demo-activity-1", "event_type": "user_activity", "timestamp": ts,
               "user_id": "cust-42", "activity_type": "purchase", "metadata": {"order_id": "ord-1001"}}),
        json!({"event_id": "demo-telemetry-1", "event_type": "device_telemetry", "timestamp": ts,
               "device_id": "fridge-3", "sensor_type": "temperature", "reading": 4.2, "unit": "C"}),
        json!({"event_id": "demo-shipment-1", "event_type": "shipment_scan", "timestamp": ts,
               "parcel_id": "pcl-9", "hub": "Leipzig", "scanned_by": "robot-2"}),
        // The same order again, as Pub/Sub redelivers it under a new message id.
        order,
    ];
    let mut samples: Vec<Sample> = valid
        .iter()
        .map(|event| Sample {
            data: event.to_string().into_bytes(),
            expected_rejection: None,
        })
        .collect();
    samples.push(Sample {
        data: b"{\"event_type\": \"order\", oops".to_vec(),
        expected_rejection: Some("bad_json"),
    });
    samples.push(Sample {
        data: json!({"event_id": "demo-bad-1", "event_type": "order", "timestamp": ts, "order_id": "ord-1002"})
            .to_string()
            .into_bytes(),
        expected_rejection: Some("missing_field"),
    });
    samples.push(Sample {
        data: json!({"event_id": "demo-bad-2", "event_type": "Robert'); DROP TABLE orders;--", "timestamp": ts})
            .to_string()
            .into_bytes(),
        expected_rejection: Some("invalid_event_type"),
    });
    samples
}
