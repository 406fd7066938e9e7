//! What one warehouse write costs in DuckDB, statement by statement (docs/benchmarks.md,
//! "table-manager under load"): 1,200 batches of 100 `device_telemetry` rows into a table keyed
//! on `event_id`, growing to 120,000 rows, with each way of writing them:
//!
//! - `json-ignore`: `INSERT OR IGNORE … json_transform(?)`, how the warehouse wrote before;
//! - `arrow-ignore`: `INSERT OR IGNORE … FROM arrow(?)`, the rows as an Arrow batch;
//! - `arrow-plain`: `INSERT … FROM arrow(?)`, what the warehouse does while the ids are new.
//!
//! `cargo build --release --workspace --example duckdb_write &&
//!  $CARGO_TARGET_DIR/release/examples/duckdb_write [VARIANT] [file|memory]`

#![allow(clippy::unwrap_used)] // a benchmark fails loudly

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_schema::{DataType, Field, Schema};
use duckdb::vtab::arrow::{ArrowBatchRegistration, ArrowVTab};
use duckdb::{Connection, params};
use serde_json::{Map, Value, json};

const COLUMNS: [(&str, &str); 12] = [
    ("event_id", "VARCHAR PRIMARY KEY"),
    ("event_type", "VARCHAR NOT NULL"),
    ("timestamp", "TIMESTAMPTZ"),
    ("event_date", "DATE"),
    ("ingested_at", "TIMESTAMPTZ"),
    ("message_id", "VARCHAR"),
    ("publish_time", "TIMESTAMPTZ"),
    ("device_id", "VARCHAR"),
    ("sensor_type", "VARCHAR"),
    ("reading", "DOUBLE"),
    ("unit", "VARCHAR"),
    ("battery", "DOUBLE"),
];

const BATCHES: usize = 1200;
const ROWS_PER_BATCH: usize = 100;

fn rows(batch: usize) -> Vec<Map<String, Value>> {
    (batch * ROWS_PER_BATCH..(batch + 1) * ROWS_PER_BATCH)
        .map(|i| {
            let row = json!({
                "event_id": format!("e-{i}"), "event_type": "device_telemetry",
                "timestamp": "2026-11-21T09:00:00.123Z", "event_date": "2026-11-21",
                "ingested_at": "2026-11-21T09:00:01Z", "message_id": format!("m-{i}"),
                "publish_time": "2026-11-21T09:00:00.5Z", "device_id": format!("dev-{}", i % 500),
                "sensor_type": "temperature", "reading": 20.5, "unit": "C", "battery": 0.7,
            });
            row.as_object().unwrap().clone()
        })
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "arrow-plain".to_owned());
    let on_file = args.next().is_none_or(|place| place == "file");

    let dir = tempfile::tempdir().unwrap();
    let connection = if on_file {
        Connection::open(dir.path().join("bench.duckdb")).unwrap()
    } else {
        Connection::open_in_memory().unwrap()
    };
    connection
        .register_table_function::<ArrowVTab>("arrow")
        .unwrap();
    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|(name, kind)| format!("\"{name}\" {kind}"))
        .collect();
    connection
        .execute_batch(&format!("CREATE TABLE t ({})", columns.join(", ")))
        .unwrap();

    // As the warehouse decodes rows: every value as text, cast by DuckDB on insert.
    let schema = Arc::new(Schema::new(
        COLUMNS
            .iter()
            .map(|(name, _)| Field::new(*name, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let structure: Map<String, Value> = COLUMNS
        .iter()
        .map(|(name, kind)| {
            let kind = kind.split(' ').next().unwrap();
            ((*name).to_owned(), Value::String(kind.to_owned()))
        })
        .collect();
    let json_sql = format!(
        "INSERT OR IGNORE INTO t BY NAME SELECT unnest(r) FROM \
         (SELECT unnest(json_transform(?::JSON, '[{}]')) AS r)",
        Value::Object(structure)
    );
    let arrow_sql = match variant.as_str() {
        "arrow-ignore" => "INSERT OR IGNORE INTO t BY NAME SELECT * FROM arrow(?)",
        "arrow-plain" => "INSERT INTO t BY NAME SELECT * FROM arrow(?)",
        "json-ignore" => "",
        other => panic!("unknown variant {other}: json-ignore, arrow-ignore or arrow-plain"),
    };

    let mut times: Vec<Duration> = Vec::with_capacity(BATCHES);
    for batch in 0..BATCHES {
        let rows = rows(batch);
        let started = Instant::now();
        if variant == "json-ignore" {
            let text = Value::Array(rows.into_iter().map(Value::Object).collect()).to_string();
            connection.execute(&json_sql, params![text]).unwrap();
        } else {
            let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
                .with_coerce_primitive(true)
                .build_decoder()
                .unwrap();
            decoder.serialize(&rows).unwrap();
            let registration = ArrowBatchRegistration::new(decoder.flush().unwrap().unwrap());
            connection
                .prepare_cached(arrow_sql)
                .unwrap()
                .execute(params![&registration])
                .unwrap();
        }
        times.push(started.elapsed());
    }
    let stored: i64 = connection
        .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
        .unwrap();
    times.sort();
    let at = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "{variant:<12} {:<6} {stored} rows; per {ROWS_PER_BATCH}-row write p50 {:.2?}  p99 {:.2?}  max {:.2?}",
        if on_file { "file" } else { "memory" },
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
