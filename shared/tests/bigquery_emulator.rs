//! `BigQueryWarehouse` (through `gcp-bigquery-client`) against PyPI's `bqemulator`, started by
//! each test through the test kit (`pulse_shared::testing`).
//!
//! The emulator's Python is found through `PULSE_BQ_EMULATOR_PYTHON` (`scripts/test.sh` sets
//! it); without it every test here prints that it was SKIPPED and passes.
//!
//! What the emulator cannot show, and what is checked instead:
//! - `tables.patch` changes only its metadata (no real column appears for inserts and queries):
//!   the column add is checked by reading the table's schema back, i.e. what the patch request
//!   carried, not by writing to the new column.
//! - Whether `insertId` de-duplication happens: BigQuery drops repeats on a best-effort basis;
//!   the test reports what the emulator did and checks every id arrived.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use pulse_shared::error::Retry;
use pulse_shared::testing::bigquery::BqEmulator;
use pulse_shared::testing::rows::event_ids;
use pulse_shared::warehouse::{
    Addition, BigQueryWarehouse, Column, ColumnType, Mode, Row, TableSpec, Warehouse,
};
use serde_json::{Map, Value, json};

const PROJECT: &str = "pulse-test";
const DATASET: &str = "pulse";

/// The emulator started for `test`, and its dataset as a warehouse; `None` (the test passes as
/// SKIPPED) where the emulator's Python is not set.
async fn warehouse_for(test: &str) -> Option<(BqEmulator, BigQueryWarehouse)> {
    let emulator = BqEmulator::start(test, PROJECT, DATASET).await?;
    let warehouse = emulator.warehouse().await;
    Some((emulator, warehouse))
}

fn orders_spec() -> TableSpec {
    TableSpec {
        name: "orders".to_owned(),
        description: Some("Orders.".to_owned()),
        columns: vec![
            Column::new("event_id", ColumnType::String, Mode::Required).described("Event id."),
            Column::new("event_date", ColumnType::Date, Mode::Required),
            Column::new("timestamp", ColumnType::Timestamp, Mode::Required),
            Column::new("customer_id", ColumnType::String, Mode::Required),
            Column::new("status", ColumnType::String, Mode::Nullable),
            Column::new("total_amount", ColumnType::Float64, Mode::Nullable),
            Column::new(
                "items",
                ColumnType::Record(vec![
                    Column::new("product_id", ColumnType::String, Mode::Nullable),
                    Column::new("quantity", ColumnType::Int64, Mode::Nullable),
                ]),
                Mode::Repeated,
            ),
        ],
        partition_column: Some("event_date".to_owned()),
        clustering: vec!["customer_id".to_owned(), "status".to_owned()],
        row_id_column: Some("event_id".to_owned()),
    }
}

fn row(id: &str, customer: &str) -> Row {
    let values: Map<String, Value> = serde_json::from_value(json!({
        "event_id": id, "event_date": "2026-11-21", "timestamp": "2026-11-21T10:00:00Z",
        "customer_id": customer, "status": "paid", "total_amount": 19.5,
        "items": [{"product_id": "p-1", "quantity": 2}],
    }))
    .unwrap();
    Row {
        id: id.to_owned(),
        values,
    }
}

#[tokio::test]
async fn tables_are_created_partitioned_and_clustered_and_rows_come_back() {
    let Some((_emulator, warehouse)) =
        warehouse_for("tables_are_created_partitioned_and_clustered_and_rows_come_back").await
    else {
        return;
    };

    let created = warehouse.ensure_table(&orders_spec()).await.unwrap();
    assert_eq!(created.partition_column.as_deref(), Some("event_date"));
    assert_eq!(created.clustering, ["customer_id", "status"]);
    // Read back through tables.get: what BigQuery (here, the emulator) stored.
    let stored = warehouse.table("orders").await.unwrap().unwrap();
    assert_eq!(stored.partition_column.as_deref(), Some("event_date"));
    assert_eq!(stored.clustering, ["customer_id", "status"]);
    assert_eq!(stored.columns, orders_spec().columns);
    // A second creation (another instance racing) is success, and changes nothing.
    assert_eq!(
        warehouse.ensure_table(&orders_spec()).await.unwrap(),
        stored
    );

    warehouse
        .insert_rows("orders", &[row("e1", "c-1"), row("e2", "c-2")])
        .await
        .unwrap();
    warehouse
        .insert_rows("orders", &[row("e2", "c-2"), row("e3", "c-3")])
        .await
        .unwrap();
    let rows = warehouse
        .query("SELECT event_id, customer_id, total_amount FROM pulse.orders ORDER BY event_id")
        .await
        .unwrap();
    let ids = event_ids(&rows);
    let mut distinct = ids.clone();
    distinct.dedup();
    assert_eq!(distinct, ["e1", "e2", "e3"]);
    if ids.len() > distinct.len() {
        eprintln!(
            "NOTE: bqemulator kept a row repeated with the same insertId ({ids:?}); BigQuery \
             drops such repeats best-effort, and the curated views keep one row per event_id"
        );
    }
    assert_eq!(rows[0]["total_amount"], 19.5);

    let listed = warehouse.list_tables().await.unwrap();
    assert!(listed.iter().any(|t| t.spec.name == "orders"), "{listed:?}");
}

#[tokio::test]
async fn a_column_add_patches_the_schema() {
    let Some((_emulator, warehouse)) = warehouse_for("a_column_add_patches_the_schema").await
    else {
        return;
    };
    warehouse.ensure_table(&orders_spec()).await.unwrap();
    let additions = [
        Addition {
            parents: vec![],
            column: Column::new("coupon", ColumnType::String, Mode::Nullable),
        },
        Addition {
            parents: vec!["items".to_owned()],
            column: Column::new("discount", ColumnType::Float64, Mode::Nullable),
        },
    ];
    let evolved = warehouse.add_columns("orders", &additions).await.unwrap();
    assert!(evolved.column("coupon").is_some(), "{evolved:?}");
    // The emulator only records the patched schema (no column to write to): what it reports
    // back is what the patch request carried.
    let stored = warehouse.table("orders").await.unwrap().unwrap();
    assert_eq!(stored.column("coupon").unwrap().kind, ColumnType::String);
    let ColumnType::Record(items) = &stored.column("items").unwrap().kind else {
        panic!("items is no longer a record: {stored:?}")
    };
    assert!(items.iter().any(|c| c.name == "discount"), "{items:?}");
    // Adding the same columns again is a no-op, not an error.
    assert_eq!(
        warehouse.add_columns("orders", &additions).await.unwrap(),
        stored
    );
}

#[tokio::test]
async fn a_missing_table_and_a_bad_query_are_told_apart() {
    let Some((_emulator, warehouse)) =
        warehouse_for("a_missing_table_and_a_bad_query_are_told_apart").await
    else {
        return;
    };
    assert_eq!(warehouse.table("nothing_here").await.unwrap(), None);
    let err = warehouse.query("SELECT FROM WHERE").await.unwrap_err();
    assert_eq!(err.retry, Retry::Permanent, "{err}");
}

/// The read-only query route's BigQuery path: a dry-run job classifies the statement, and only
/// a SELECT runs. What the emulator cannot show: byte estimates (it reports 0, so the
/// `maximumBytesBilled` refusal is not exercised) and a query outliving its timeout.
#[tokio::test]
async fn a_read_only_query_runs_a_select_and_the_dry_run_refuses_the_rest() {
    let Some((_emulator, warehouse)) =
        warehouse_for("a_read_only_query_runs_a_select_and_the_dry_run_refuses_the_rest").await
    else {
        return;
    };
    warehouse.ensure_table(&orders_spec()).await.unwrap();
    let rows: Vec<Row> = (0..3).map(|i| row(&format!("e{i}"), "c-1")).collect();
    warehouse.insert_rows("orders", &rows).await.unwrap();
    let limits = pulse_shared::warehouse::QueryLimits {
        max_rows: 2,
        timeout: std::time::Duration::from_secs(20),
        max_bytes_billed: 1_000_000_000,
    };

    // Unqualified names are the dataset's (`defaultDataset`); the third row is cut.
    let answer = warehouse
        .read_only_query(
            "SELECT event_id, total_amount FROM orders ORDER BY event_id;",
            limits,
        )
        .await
        .unwrap();
    let names: Vec<&str> = answer.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["event_id", "total_amount"]);
    assert_eq!(answer.columns[1].kind, "FLOAT");
    assert_eq!(answer.rows.len(), 2);
    assert_eq!(answer.rows[0]["event_id"], "e0");
    assert_eq!(answer.rows[0]["total_amount"], 19.5);
    assert!(answer.truncated, "{answer:?}");

    for sql in [
        "DELETE FROM orders WHERE TRUE",
        "DROP TABLE orders",
        "CREATE TABLE other (x INT64)",
    ] {
        match warehouse.read_only_query(sql, limits).await {
            Err(pulse_shared::warehouse::QueryError::Refused(reason)) => {
                assert!(reason.contains("single read-only query"), "{sql}: {reason}")
            }
            other => panic!("{sql}: expected a refusal, got {other:?}"),
        }
    }
    let stored = warehouse
        .query(&format!(
            "SELECT COUNT(*) AS n FROM `{PROJECT}.{DATASET}.orders`"
        ))
        .await
        .unwrap();
    assert_eq!(stored[0]["n"], 3, "nothing refused ran");
}
