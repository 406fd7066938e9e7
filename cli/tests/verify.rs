//! `pulse verify` and `pulse compact` against a running local stack, on both warehouses: each
//! event is published three times (preprocess archives it once and forwards every delivery, as
//! on Pub/Sub), then the deduplicated view, the compaction and the reconciliation are checked;
//! rows are then deleted behind the stack's back, named by the reconciliation and restored by
//! `--repair`, and a second repair finds nothing to do.
//!
//! DuckDB keys its tables by `event_id`, so the three deliveries leave one row there and
//! compaction has nothing to remove; physical repeats are shown on bqemulator, which ignores
//! `insertId` (started through `PULSE_BQ_EMULATOR_PYTHON`; without it that test prints SKIPPED).
//!
//! What the emulator cannot show: BigQuery refuses DML on rows still in the streaming buffer
//! (the last 30 to 90 minutes of `insertAll`), which is why compaction never touches today's
//! partition and answers a refusal as "try later"; bqemulator has no streaming buffer, so that
//! refusal is not exercised. Nor is Cloud Scheduler: the daily job is only in Terraform, and
//! calls the same `POST /compact` with an empty body.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{publish_raw, settle};
use pulse::stack::{LocalStack, PortChoice};
use pulse::verify::{CompactArgs, StackUrls, VerifyArgs, VerifyReport, compact, verify};
use pulse_shared::config::Config;
use pulse_shared::testing::bigquery::BqEmulator;
use pulse_shared::warehouse::Warehouse;
use serde_json::{Value, json};

const EVENTS: usize = 20;
const DAY: &str = "2024-05-01";

fn event_id(i: usize) -> String {
    format!("order-{i:02}")
}

/// Order `i`, five minutes after the one before, from 10:00: the range spans two hourly pages.
fn order(i: usize) -> Value {
    json!({
        "event_id": event_id(i), "event_type": "order",
        "timestamp": format!("{DAY}T{:02}:{:02}:30Z", 10 + i * 5 / 60, i * 5 % 60),
        "order_id": format!("o-{i}"), "customer_id": format!("c-{}", i % 4),
        "items": [{"product_id": "p-1", "quantity": 1, "price": 9.5}],
        "total_amount": 9.5, "status": "paid"
    })
}

/// Publishes every event three times to the raw topic, waiting for the stack to be quiet after
/// each round: redeliveries come seconds to minutes apart, so each lands in a batch of its own
/// (table-manager drops repeats within one batch).
async fn publish_each_three_times(stack: &LocalStack) {
    let orders: Vec<Value> = (0..EVENTS).map(order).collect();
    for _ in 0..3 {
        publish_raw(stack, &orders).await;
        settle(stack).await;
    }
}

fn urls(stack: &LocalStack) -> StackUrls {
    StackUrls {
        table_manager: format!("http://{}", stack.table_manager),
        preprocess: format!("http://{}", stack.preprocess),
    }
}

async fn run_verify(stack: &LocalStack, repair: bool) -> VerifyReport {
    let args = VerifyArgs {
        event_type: "order".to_owned(),
        from: format!("{DAY}T10:00:00Z").parse().unwrap(),
        to: format!("{DAY}T12:00:00Z").parse().unwrap(),
        repair,
        urls: urls(stack),
    };
    verify(&args, true).await.unwrap()
}

async fn run_compact(stack: &LocalStack) -> pulse_shared::warehouse::Compaction {
    let args = CompactArgs {
        table: Some("orders".to_owned()),
        from: Some(DAY.parse().unwrap()),
        to: Some(DAY.parse().unwrap()),
        urls: urls(stack),
    };
    let mut report = compact(&args).await.unwrap();
    assert_eq!(report.tables.len(), 1);
    report.tables.remove(0)
}

async fn count(warehouse: &dyn Warehouse, sql: &str) -> u64 {
    let rows = warehouse.query(sql).await.unwrap();
    rows[0]["n"].as_u64().unwrap()
}

/// The ids that rows are deleted for, behind the stack's back.
fn lost() -> Vec<String> {
    [3, 7, 15].into_iter().map(event_id).collect()
}

/// Repairs what is missing, then checks that everything is back and a second repair does
/// nothing.
async fn repair_restores_the_lost_rows(stack: &LocalStack) {
    let found = run_verify(stack, false).await;
    assert_eq!(found.found.missing, lost(), "{found}");
    assert_eq!(found.found.stored, (EVENTS - lost().len()) as u64);
    assert!(found.found.duplicated.is_empty(), "{found}");
    assert!(!found.problems().is_empty());

    let repaired = run_verify(stack, true).await;
    assert_eq!(
        repaired.repair.as_ref().unwrap().redriven,
        lost().len() as u64
    );
    settle(stack).await;

    let again = run_verify(stack, true).await;
    assert!(again.found.is_clean(), "{again}");
    assert_eq!(again.found.stored, EVENTS as u64);
    let repair = again.repair.as_ref().unwrap();
    assert_eq!(repair.redriven, 0);
    assert!(repair.compacted.is_empty());
    assert!(again.problems().is_empty());
}

#[tokio::test]
async fn on_duckdb_pulse_verify_names_lost_rows_and_repair_restores_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::local(dir.path());
    let stack = LocalStack::start(config.clone(), PortChoice::Any)
        .await
        .unwrap();
    publish_each_three_times(&stack).await;

    let clean = run_verify(&stack, false).await;
    assert_eq!(clean.found.archived, EVENTS as u64, "{clean}");
    assert_eq!(clean.found.stored, EVENTS as u64, "{clean}");
    assert!(clean.found.is_clean(), "{clean}");
    let warehouse = stack.warehouse.clone();
    let view = "SELECT count(*) AS n FROM pulse.unique_orders";
    assert_eq!(count(&*warehouse, view).await, EVENTS as u64);
    let table = "SELECT count(*) AS n FROM pulse.orders";
    assert_eq!(count(&*warehouse, table).await, EVENTS as u64);
    let compaction = run_compact(&stack).await;
    assert_eq!(
        (compaction.duplicated_ids, compaction.rows_removed),
        (0, 0),
        "the key keeps one row per event"
    );
    drop(warehouse);
    stack.stop().await;

    // Only one process may open the file: rows vanish while the stack is down.
    delete_from_duckdb(&dir.path().join("warehouse.duckdb"), &lost());
    let stack = LocalStack::start(config, PortChoice::Any).await.unwrap();
    repair_restores_the_lost_rows(&stack).await;
    assert_eq!(count(&*stack.warehouse, view).await, EVENTS as u64);
    stack.stop().await;
}

/// Deletes the rows of `ids` from `orders`, waiting for the stopped stack to let the file go.
fn delete_from_duckdb(path: &Path, ids: &[String]) {
    let started = Instant::now();
    let connection = loop {
        match duckdb::Connection::open(path) {
            Ok(connection) => break connection,
            Err(err) if started.elapsed() < Duration::from_secs(30) => {
                eprintln!("waiting for the stack to close the warehouse: {err}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(err) => panic!("the stopped stack still holds {}: {err}", path.display()),
        }
    };
    let list = ids
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let deleted = connection
        .execute(
            &format!("DELETE FROM pulse.orders WHERE event_id IN ({list})"),
            [],
        )
        .unwrap();
    assert_eq!(deleted, ids.len());
}

#[tokio::test]
async fn on_bigquery_the_view_compaction_and_verify_make_each_event_count_once() {
    let test = "on_bigquery_the_view_compaction_and_verify_make_each_event_count_once";
    let Some(emulator) = BqEmulator::start(test, "pulse-test", "pulse").await else {
        return;
    };
    let warehouse: Arc<dyn Warehouse> = Arc::new(emulator.warehouse().await);
    let dir = tempfile::tempdir().unwrap();
    let stack =
        LocalStack::start_with_warehouse(Config::local(dir.path()), PortChoice::Any, warehouse)
            .await
            .unwrap();
    publish_each_three_times(&stack).await;
    let warehouse = &*stack.warehouse;
    let table = "SELECT COUNT(*) AS n FROM `pulse-test.pulse.orders`";
    let view = "SELECT COUNT(DISTINCT event_id) AS n FROM `pulse-test.pulse.unique_orders`";
    let view_rows = "SELECT COUNT(*) AS n FROM `pulse-test.pulse.unique_orders`";

    // The emulator keeps every delivery; the view shows each event once.
    assert_eq!(count(warehouse, table).await, 3 * EVENTS as u64);
    assert_eq!(count(warehouse, view).await, EVENTS as u64);
    assert_eq!(count(warehouse, view_rows).await, EVENTS as u64);
    let doubled = run_verify(&stack, false).await;
    assert_eq!(doubled.found.archived, EVENTS as u64);
    assert_eq!(doubled.found.stored, EVENTS as u64);
    assert!(doubled.found.missing.is_empty(), "{doubled}");
    assert_eq!(doubled.found.duplicated.len(), EVENTS, "{doubled}");
    assert!(doubled.found.duplicated.values().all(|&copies| copies == 3));

    // Compaction leaves one row per event; a second run finds nothing.
    let compaction = run_compact(&stack).await;
    assert_eq!(compaction.duplicated_ids, EVENTS as u64);
    assert_eq!(compaction.rows_removed, 2 * EVENTS as u64);
    assert_eq!(count(warehouse, table).await, EVENTS as u64);
    let again = run_compact(&stack).await;
    assert_eq!((again.duplicated_ids, again.rows_removed), (0, 0));
    let clean = run_verify(&stack, false).await;
    assert!(clean.found.is_clean(), "{clean}");

    // Rows deleted behind table-manager's back.
    let list = lost()
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(", ");
    warehouse
        .query(&format!(
            "DELETE FROM `pulse-test.pulse.orders` WHERE event_id IN ({list})"
        ))
        .await
        .unwrap();
    repair_restores_the_lost_rows(&stack).await;
    assert_eq!(count(warehouse, table).await, EVENTS as u64);
    stack.stop().await;
}
