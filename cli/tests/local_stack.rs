//! The local stack end to end: the `pulse demo` and `pulse generate` commands, their reports
//! checked against the files and rows they stored, and the Pub/Sub-shaped publish endpoint
//! feeding preprocess through the local bus.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use common::{publish_raw, pulse, settle, start_stack};
use pulse_shared::testing::files::names_under;
use pulse_shared::testing::rows::event_ids;
use pulse_shared::warehouse::{DuckDbWarehouse, Warehouse as _};
use serde_json::{Value, json};

/// `count(*)` of a table, or `None` when the warehouse has no such table.
async fn table_rows(warehouse: &DuckDbWarehouse, table: &str) -> Option<u64> {
    let exists = warehouse
        .query(&format!(
            "SELECT count(*) AS n FROM duckdb_tables() \
             WHERE schema_name = 'pulse' AND table_name = '{table}'"
        ))
        .await
        .unwrap();
    if exists[0]["n"] == 0 {
        return None;
    }
    let rows = warehouse
        .query(&format!("SELECT count(*) AS n FROM pulse.{table}"))
        .await
        .unwrap();
    rows[0]["n"].as_u64()
}

/// Dead-letter records under `dead-letter/`, by reason (the first path segment).
fn dead_letters_by_reason(data_dir: &Path) -> BTreeMap<String, u64> {
    let mut by_reason = BTreeMap::new();
    for name in names_under(&data_dir.join("gcs/pulse-raw/dead-letter"), "") {
        let reason = name.split('/').next().unwrap().to_owned();
        *by_reason.entry(reason).or_default() += 1;
    }
    by_reason
}

fn counts(value: &Value) -> BTreeMap<String, u64> {
    serde_json::from_value(value.clone()).unwrap()
}

const KNOWN_TABLES: [&str; 4] = ["orders", "inventory", "user_activity", "device_telemetry"];

#[tokio::test]
async fn the_demo_command_reports_what_the_pipeline_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let report = pulse(data, &["demo"]);

    // What was generated: quick_sample's twelve messages, sent at once.
    let events = &report["events"];
    assert_eq!(report["scenario"], "quick_sample");
    assert_eq!(events["generated"], 12, "{report:#}");
    assert_eq!(events["published"], 12);
    assert_eq!(events["failed_to_publish"], 0);
    assert_eq!(events["duplicates"], 1);
    assert_eq!(events["malformed"], 1);
    let valid = 12 - 1 - 1;

    // Raw archive: the report's count is the number of files, one per valid event.
    let raw = names_under(&data.join("gcs/pulse-raw/raw"), "");
    assert_eq!(report["raw_objects_written"], raw.len() as u64, "{raw:?}");
    assert_eq!(raw.len(), valid);
    assert_eq!(report["processed_messages_published"], valid as u64 + 1);

    // Dead letters, by reason, as the report says and as the files are.
    let dead = dead_letters_by_reason(data);
    assert_eq!(counts(&report["dead_lettered"]), dead);
    assert_eq!(dead.values().sum::<u64>(), 1, "{dead:?}");
    assert_eq!(counts(&report["expected"]["dead_lettered"]), dead);

    // Rows per table, as the report says and as a query of the warehouse finds them: every known
    // type is there, one row per valid event, the duplicate stored once.
    let warehouse = DuckDbWarehouse::open(&data.join("warehouse.duckdb"), "pulse").unwrap();
    let rows = counts(&report["rows_written"]);
    let mut event_rows = 0;
    for table in KNOWN_TABLES {
        let stored = table_rows(&warehouse, table).await;
        assert!(
            stored.unwrap_or(0) > 0,
            "{table}: quick_sample covers every known type"
        );
        assert_eq!(rows.get(table).copied(), stored, "{table}: {rows:?}");
        event_rows += stored.unwrap();
    }
    assert_eq!(event_rows, valid as u64);
    assert_eq!(
        counts(&report["expected"]["rows"]).values().sum::<u64>(),
        event_rows
    );

    // The Parquet file: loaded once, with as many rows as its own footer states.
    let parquet = &report["parquet"];
    assert_eq!(parquet["table"], "load_alltypes_plain");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/alltypes_plain.parquet");
    let footer = warehouse
        .query(&format!(
            "SELECT num_rows AS n FROM parquet_file_metadata('{}')",
            fixture.display()
        ))
        .await
        .unwrap();
    assert_eq!(parquet["rows"], footer[0]["n"], "{report:#}");
    assert_eq!(
        table_rows(&warehouse, "load_alltypes_plain").await,
        parquet["rows"].as_u64()
    );
    assert_eq!(
        rows.get("load_alltypes_plain").copied(),
        parquet["rows"].as_u64()
    );
    let object = parquet["object"].as_str().unwrap();
    assert!(
        data.join("gcs/pulse-landing").join(object).is_file(),
        "{object} stays in the landing bucket"
    );

    // Predictions: the count of the predictions table when something has created it.
    assert_eq!(
        report["predictions_written"].as_u64(),
        table_rows(&warehouse, "predictions").await,
        "{report:#}"
    );
    assert_eq!(report["data_dir"], data.display().to_string());
    drop(warehouse);

    // A second run counts only what it added: new events (another seed), a new upload.
    let again = pulse(data, &["demo"]);
    assert_ne!(again["seed"], report["seed"]);
    let raw_total = names_under(&data.join("gcs/pulse-raw/raw"), "").len() as u64;
    assert_eq!(
        again["raw_objects_written"].as_u64().unwrap(),
        raw_total - raw.len() as u64
    );
    assert_eq!(again["raw_objects_written"], valid as u64);
    let warehouse = DuckDbWarehouse::open(&data.join("warehouse.duckdb"), "pulse").unwrap();
    assert_eq!(
        table_rows(&warehouse, "load_alltypes_plain").await,
        Some(2 * parquet["rows"].as_u64().unwrap())
    );
    let again_rows = counts(&again["rows_written"]);
    for table in KNOWN_TABLES {
        assert_eq!(
            table_rows(&warehouse, table).await,
            Some(
                rows.get(table).copied().unwrap_or(0) + again_rows.get(table).copied().unwrap_or(0)
            ),
            "{table}"
        );
    }
}

/// A short duplicate storm with a fixed seed: the same events on every run.
const GENERATE_ARGS: [&str; 9] = [
    "generate",
    "--scenario",
    "duplicate_storm",
    "--count",
    "50",
    "--duration",
    "1s",
    "--seed",
    "7",
];

#[tokio::test]
async fn pulse_generate_reports_what_it_sent_and_the_pipeline_kept_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let report = pulse(data, &GENERATE_ARGS);
    assert_eq!(report["outcome"], "completed", "{report:#}");
    assert_eq!(report["settled"], true);
    assert_eq!(report["seed"], 7);
    assert_eq!(report["planned"], 50);
    assert_eq!(report["sent"], 50);
    assert_eq!(report["failed"], 0);
    let (sent, duplicates, malformed) = (
        report["sent"].as_u64().unwrap(),
        report["duplicates"].as_u64().unwrap(),
        report["malformed"].as_u64().unwrap(),
    );
    assert!(
        duplicates > 0,
        "duplicate_storm repeats messages: {report:#}"
    );
    let distinct = sent - duplicates - malformed;

    // Every distinct valid event archived once and stored once; every valid delivery forwarded.
    let raw = names_under(&data.join("gcs/pulse-raw/raw"), "");
    assert_eq!(raw.len() as u64, distinct, "{report:#}");
    assert_eq!(report["processed_published"], sent - malformed);
    let dead: u64 = dead_letters_by_reason(data).values().sum();
    assert_eq!(dead, malformed);
    let warehouse = DuckDbWarehouse::open(&data.join("warehouse.duckdb"), "pulse").unwrap();
    let mut rows = 0;
    for table in KNOWN_TABLES {
        rows += table_rows(&warehouse, table).await.unwrap_or(0);
    }
    assert_eq!(rows, distinct);

    // Same seed, same events: a second run in a fresh data dir reports the same counts.
    let other = tempfile::tempdir().unwrap();
    let again = pulse(other.path(), &GENERATE_ARGS);
    assert_eq!(again["duplicates"], report["duplicates"]);
    let again_raw = names_under(&other.path().join("gcs/pulse-raw/raw"), "");
    assert_eq!(
        archived_event_ids(&again_raw),
        archived_event_ids(&raw),
        "the same event ids"
    );
}

/// The event ids of raw archive objects (`<type>/YYYY/MM/DD/HH/MM/<event_id>.json`), sorted.
fn archived_event_ids(raw: &[String]) -> Vec<&str> {
    let mut ids: Vec<&str> = raw
        .iter()
        .map(|name| name.rsplit('/').next().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn raw_events_become_rows_once_and_new_fields_become_columns() {
    let (stack, dir) = start_stack().await;
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
    publish_raw(&stack, &[&events[..], &events, &events].concat()).await;
    settle(&stack).await;

    let rows = stack
        .warehouse
        .query("SELECT event_id, weight_kg, scanned_at FROM pulse.events_parcel_scan ORDER BY event_id")
        .await
        .unwrap();
    assert_eq!(
        event_ids(&rows),
        ["s1", "s2"],
        "s3 conflicts with the weight_kg column"
    );
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
    let conflicts = names_under(
        &dir.path().join("gcs/pulse-raw/dead-letter/schema_conflict"),
        "",
    );
    assert_eq!(
        conflicts.len(),
        3,
        "each delivery of s3 is dead-lettered: {conflicts:?}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn an_event_published_over_http_is_archived_by_preprocess() {
    let (stack, dir) = start_stack().await;
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
    settle(&stack).await;
    let archived = dir
        .path()
        .join("gcs/pulse-raw/raw/device_telemetry/2024/05/01/12/00/http-1.json");
    let stored: Value = serde_json::from_slice(&std::fs::read(&archived).unwrap()).unwrap();
    assert_eq!(stored["reading"], 40.5);
    assert_eq!(stack.bus.published("events-processed"), 1);
    stack.stop().await;
}

#[tokio::test]
async fn curated_views_metrics_and_the_dashboard_read_the_running_stack() {
    let (stack, _dir) = start_stack().await;
    let order = |id: &str, at: &str, amount: f64| {
        json!({"event_id": id, "event_type": "order", "timestamp": at, "order_id": id,
            "customer_id": "c-1", "status": "paid", "total_amount": amount,
            "items": [{"product_id": "p-1", "quantity": 1, "price": amount}]})
    };
    let events = [
        order("o1", "2026-12-05T10:05:00Z", 10.0),
        order("o2", "2026-12-05T10:55:00Z", 5.5),
        order("o3", "2026-12-05T11:00:00Z", 1.0),
        json!({"event_id": "t1", "event_type": "device_telemetry", "timestamp": "2026-12-05T10:00:00Z",
            "device_id": "d-1", "sensor_type": "temperature", "reading": 21.5, "unit": "C"}),
    ];
    publish_raw(&stack, &events).await;
    settle(&stack).await;
    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move {
            let response = http.get(&url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let table_manager = format!("http://{}", stack.table_manager);

    // Every curated view exists in DuckDB and is read through table-manager.
    let (status, listed) = get(format!("{table_manager}/views")).await;
    assert_eq!(status, 200, "{listed}");
    let listed: Vec<Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.len(), pulse_shared::views::CURATED_VIEWS.len());
    for view in &listed {
        let (status, body) = get(format!(
            "{table_manager}/views/{}",
            view["name"].as_str().unwrap()
        ))
        .await;
        assert_eq!(status, 200, "{view}: {body}");
    }
    let (_, hourly) = get(format!("{table_manager}/views/orders_hourly")).await;
    let mut hourly: Vec<Value> = serde_json::from_str(&hourly).unwrap();
    hourly.sort_by_key(|row| row["order_hour"].to_string());
    assert_eq!(hourly.len(), 2, "{hourly:?}");
    assert_eq!(
        (&hourly[0]["orders"], &hourly[0]["revenue"]),
        (&json!(2), &json!(15.5))
    );
    assert_eq!(
        (&hourly[1]["orders"], &hourly[1]["revenue"]),
        (&json!(1), &json!(1.0))
    );
    let (_, anomalies) = get(format!("{table_manager}/views/device_anomalies")).await;
    let anomalies: Vec<Value> = serde_json::from_str(&anomalies).unwrap();
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    assert!(
        anomalies[0]["score"].is_number(),
        "inference scored it: {anomalies:?}"
    );
    let (status, _) = get(format!("{table_manager}/views/orders")).await;
    assert_eq!(status, 400, "only curated views are read");

    // The metrics counted the rows and measured their freshness.
    let (status, text) = get(format!("{table_manager}/metrics")).await;
    assert_eq!(status, 200);
    let samples = pulse_shared::metrics::parse(&text);
    let value = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == *v))
            .map(|s| s.value)
    };
    assert_eq!(
        value("pulse_rows_written_total", &[("table", "orders")]),
        Some(3.0)
    );
    let acknowledged = [("function", "table-manager"), ("outcome", "acknowledged")];
    assert_eq!(value("pulse_deliveries_total", &acknowledged), Some(4.0));
    // Each committed row is measured (a redelivered row that was committed twice, twice).
    let measured = value(
        "pulse_freshness_event_seconds_count",
        &[("table", "orders")],
    );
    assert!(measured >= Some(3.0), "{measured:?}");

    // The dashboard draws from the same stack.
    let (status, page) = get(format!("http://{}/", stack.control)).await;
    assert_eq!(status, 200);
    assert!(
        page.contains(
            r#"<tr data-table="orders"><th scope="row">orders</th><td class="n">3</td></tr>"#
        ),
        "{page}"
    );
    assert!(page.contains(r#"<svg id="orders-chart""#));
    stack.stop().await;
}

/// A restart delivers what an earlier run left on the bus, and every such event reaches the
/// warehouse. The crash run once found them archived but never stored: the stack subscribed
/// preprocess before table-manager, and recovered raw events were published to a processed
/// topic with no subscription yet. That was a race with table-manager's start-up, which this
/// fresh, small stack wins either way; the guard against it is the subscription order in
/// `stack.rs` (downstream first) and `cli/tests/chaos.rs`.
#[tokio::test]
async fn events_a_crashed_run_left_on_the_bus_are_stored_after_restart() {
    use pulse::stack::{LocalStack, PortChoice};
    use pulse_shared::backends::Backends;
    use pulse_shared::config::Config;
    use pulse_shared::publish::{OutgoingMessage, Publisher as _, PushSubscription};

    const EVENTS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let config = Config::local(dir.path());

    // The earlier run: its preprocess took the messages and never answered before the crash.
    let unanswering = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let objects = Backends::local_objects(&config).unwrap();
    let bus = Backends::durable_local_bus(&config, &objects).unwrap();
    bus.subscribe(PushSubscription::new(
        "preprocess",
        config.raw_topic.clone(),
        format!("http://{}/", unanswering.local_addr().unwrap()),
    ));
    for i in 0..EVENTS {
        let event = json!({"event_id": format!("left-{i}"), "event_type": "order",
            "timestamp": "2026-12-05T10:00:00Z", "order_id": format!("o-{i}"),
            "customer_id": "c-1", "status": "paid", "total_amount": 1.5,
            "items": [{"product_id": "p-1", "quantity": 1, "price": 1.5}]});
        let message = OutgoingMessage {
            data: event.to_string().into(),
            ..Default::default()
        };
        bus.publish(&config.raw_topic, message).await.unwrap();
    }
    bus.close().await;
    drop((bus, objects));

    let stack = LocalStack::start(config, PortChoice::Any).await.unwrap();
    settle(&stack).await;
    let stored = stack
        .warehouse
        .query("SELECT count(DISTINCT event_id) AS n FROM pulse.orders")
        .await
        .unwrap();
    assert_eq!(
        stored[0]["n"], EVENTS as u64,
        "every recovered event is stored"
    );
    stack.stop().await;
}
