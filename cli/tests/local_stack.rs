//! The local stack end to end: `pulse demo`'s report checked against the files it stored, and
//! the Pub/Sub-shaped publish endpoint feeding preprocess through the local bus.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use pulse::demo;
use pulse::stack::{LocalStack, PortChoice};
use pulse_shared::config::Config;
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

    // A second run adds only what is new: the same event ids are archived already.
    let again = demo::run(Config::local(dir.path()), PortChoice::Any)
        .await
        .unwrap();
    assert_eq!(again.raw_objects_written, 0);
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
