//! The local stack end to end: `pulse demo`'s report checked against the files it stored, and
//! the Pub/Sub-shaped publish endpoint feeding preprocess through the local bus.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use pulse::demo;
use pulse::stack::{LocalStack, PortChoice};
use pulse_shared::config::Config;
use pulse_shared::warehouse::{DuckDbWarehouse, Warehouse as _};
use serde_json::{Value, json};

fn files_under(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.map(Result::unwrap) {
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                files.push(
                    entry
                        .path()
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    files.sort();
    files
}

#[tokio::test]
async fn the_demo_report_matches_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let report = demo::run(Config::local(dir.path()), PortChoice::Any)
        .await
        .unwrap();

    let raw = files_under(&dir.path().join("gcs/pulse-raw/raw"));
    let dead = files_under(&dir.path().join("gcs/pulse-raw/dead-letter"));
    assert_eq!(report.events_published, 9);
    assert_eq!(report.raw_objects_written, raw.len() as u64);
    assert_eq!(
        raw.len(),
        5,
        "four known types and one new type, the duplicate archived once: {raw:?}"
    );
    assert_eq!(
        report.processed_messages_published, 6,
        "every valid delivery is published"
    );
    let dead_total: u64 = report.dead_lettered.values().sum();
    assert_eq!(dead_total, dead.len() as u64);
    for reason in ["bad_json", "missing_field", "invalid_event_type"] {
        assert_eq!(
            report.dead_lettered.get(reason),
            Some(&1),
            "{reason}: {:?}",
            report.dead_lettered
        );
        assert!(
            dead.iter().any(|name| name.starts_with(reason)),
            "{reason}: {dead:?}"
        );
    }

    // Rows per table, as the report says and as a query of the warehouse finds them: one per
    // event, the redelivered order included once.
    let warehouse = DuckDbWarehouse::open(&dir.path().join("warehouse.duckdb"), "pulse").unwrap();
    for table in [
        "orders",
        "inventory",
        "user_activity",
        "device_telemetry",
        "shipment_scan",
    ] {
        let rows = warehouse
            .query(&format!("SELECT count(*) AS n FROM pulse.{table}"))
            .await
            .unwrap();
        assert_eq!(rows[0]["n"], 1, "{table}");
        assert_eq!(
            report.rows_written.get(table),
            Some(&1),
            "{table}: {:?}",
            report.rows_written
        );
    }
    drop(warehouse);

    // A second run adds only what is new: the same event ids are archived and stored already.
    let again = demo::run(Config::local(dir.path()), PortChoice::Any)
        .await
        .unwrap();
    assert_eq!(again.raw_objects_written, 0);
    assert!(again.rows_written.is_empty(), "{:?}", again.rows_written);
}

#[tokio::test]
async fn raw_events_become_rows_once_and_new_fields_become_columns() {
    let dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::start(Config::local(dir.path()), PortChoice::Any)
        .await
        .unwrap();
    let scan = |id: &str, extra: Value| {
        let mut event = json!({"event_id": id, "event_type": "parcel_scan",
            "timestamp": "2026-11-21T10:00:00Z", "parcel_id": "p-1", "hub": "Leipzig"});
        event
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        event
    };
    let events = [
        scan("s1", json!({})),
        scan(
            "s2",
            json!({"weight_kg": 2.5, "scanned_at": "2026-11-21T10:00:05Z"}),
        ),
        scan("s3", json!({"weight_kg": "heavy"})),
        json!({"event_id": "t1", "event_type": "device_telemetry", "timestamp": "2026-11-21T10:00:00Z",
               "device_id": "d-1", "sensor_type": "voltage", "reading": 229.5, "unit": "V", "phase": 2}),
    ];
    // Every event three times, as Pub/Sub may deliver it; each publish is a new message.
    for _ in 0..3 {
        for event in &events {
            let message = pulse_shared::publish::OutgoingMessage {
                data: bytes::Bytes::from(event.to_string()),
                ..Default::default()
            };
            pulse_shared::publish::Publisher::publish(&stack.bus, "events-raw", message)
                .await
                .unwrap();
        }
    }
    tokio::time::timeout(Duration::from_secs(60), stack.bus.settled())
        .await
        .unwrap();

    let rows = stack
        .warehouse
        .query("SELECT event_id, weight_kg, scanned_at FROM pulse.parcel_scan ORDER BY event_id")
        .await
        .unwrap();
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s1", "s2"], "s3 conflicts with the weight_kg column");
    assert_eq!(rows[1]["weight_kg"], 2.5);
    let telemetry = stack
        .warehouse
        .query("SELECT phase FROM pulse.device_telemetry")
        .await
        .unwrap();
    assert_eq!(
        telemetry,
        [serde_json::from_value(json!({"phase": 2})).unwrap()]
    );
    let conflicts = files_under(&dir.path().join("gcs/pulse-raw/dead-letter/schema_conflict"));
    assert_eq!(
        conflicts.len(),
        3,
        "each delivery of s3 is dead-lettered: {conflicts:?}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn an_event_published_over_http_is_archived_by_preprocess() {
    let dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::start(Config::local(dir.path()), PortChoice::Any)
        .await
        .unwrap();
    let event = json!({"event_id": "http-1", "event_type": "device_telemetry", "timestamp": "2024-05-01T12:00:00Z",
        "device_id": "d-1", "sensor_type": "humidity", "reading": 40.5, "unit": "%"});
    let data = base64::engine::general_purpose::STANDARD.encode(event.to_string());
    let url = format!(
        "http://{}/v1/projects/local/topics/events-raw:publish",
        stack.control
    );
    let response: Value = reqwest::Client::new()
        .post(&url)
        .json(&json!({"messages": [{"data": data}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        response["messageIds"].as_array().unwrap().len(),
        1,
        "{response}"
    );
    tokio::time::timeout(Duration::from_secs(30), stack.bus.settled())
        .await
        .unwrap();
    let archived = dir
        .path()
        .join("gcs/pulse-raw/raw/device_telemetry/2024/05/01/12/00/http-1.json");
    let stored: Value = serde_json::from_slice(&std::fs::read(&archived).unwrap()).unwrap();
    assert_eq!(stored["reading"], 40.5);
    assert_eq!(stack.bus.published("events-processed"), 1);
    stack.stop().await;
}
