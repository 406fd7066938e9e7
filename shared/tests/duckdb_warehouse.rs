//! The local warehouse on a real DuckDB file: creation with comments, evolution (top-level and
//! nested), inserts that ignore repeated ids, refused rows, listing, queries, reopening.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use pulse_shared::warehouse::{
    Addition, Column, ColumnType, DuckDbWarehouse, InsertError, Mode, Row, TableSpec, Warehouse,
};
use serde_json::{Map, Value, json};

fn spec() -> TableSpec {
    TableSpec {
        name: "readings".to_owned(),
        description: Some("Sensor readings.".to_owned()),
        columns: vec![
            Column::new("event_id", ColumnType::String, Mode::Required).described("Event id."),
            Column::new("event_date", ColumnType::Date, Mode::Required),
            Column::new("timestamp", ColumnType::Timestamp, Mode::Required),
            Column::new("reading", ColumnType::Float64, Mode::Nullable),
            Column::new(
                "place",
                ColumnType::Record(vec![Column::new(
                    "room",
                    ColumnType::String,
                    Mode::Nullable,
                )]),
                Mode::Nullable,
            ),
            Column::new("tags", ColumnType::String, Mode::Repeated),
            Column::new("extra", ColumnType::Json, Mode::Nullable),
        ],
        partition_column: Some("event_date".to_owned()),
        clustering: vec!["reading".to_owned()],
        row_id_column: Some("event_id".to_owned()),
    }
}

fn row(id: &str, values: Value) -> Row {
    let mut map: Map<String, Value> = serde_json::from_value(values).unwrap();
    map.insert("event_id".to_owned(), json!(id));
    map.entry("event_date").or_insert(json!("2026-11-21"));
    map.entry("timestamp")
        .or_insert(json!("2026-11-21T10:00:00.123456Z"));
    Row {
        id: id.to_owned(),
        values: map,
    }
}

fn event_ids(rows: &[Map<String, Value>]) -> Vec<&str> {
    rows.iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_table_round_trips_its_spec_and_ignores_repeated_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warehouse.duckdb");
    let warehouse = DuckDbWarehouse::open(&path, "pulse").unwrap();

    let created = warehouse.ensure_table(&spec()).await.unwrap();
    assert_eq!(created, spec(), "the table reads back as it was specified");
    assert_eq!(warehouse.ensure_table(&spec()).await.unwrap(), created);

    let first = [
        row(
            "a",
            json!({"reading": 1.5, "place": {"room": "lab"}, "tags": ["x", "y"],
                        "extra": {"any": [1, {"deep": true}]}}),
        ),
        row("b", json!({"reading": 2})),
        row("a", json!({"reading": 99.0})),
    ];
    warehouse.insert_rows("readings", &first).await.unwrap();
    warehouse
        .insert_rows(
            "readings",
            &[row("b", json!({"reading": 3})), row("c", json!({}))],
        )
        .await
        .unwrap();
    let rows = warehouse
        .query("SELECT event_id, reading, place, tags, extra, \"timestamp\" FROM pulse.readings ORDER BY event_id")
        .await
        .unwrap();
    assert_eq!(event_ids(&rows), ["a", "b", "c"]);
    assert_eq!(rows[0]["reading"], 1.5, "the first write of an id stands");
    assert_eq!(rows[0]["place"]["room"], "lab");
    assert_eq!(rows[0]["tags"], json!(["x", "y"]));
    assert_eq!(rows[0]["extra"], json!({"any": [1, {"deep": true}]}));
    assert_eq!(rows[1]["reading"], 2.0);
    assert!(
        rows[0]["timestamp"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-21 10:00:00.123456")
    );

    let listed = warehouse.list_tables().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].rows, Some(3));
    assert_eq!(listed[0].spec.clustering, ["reading"]);

    // The file is the warehouse: a new process (here, a new handle) finds everything.
    drop(warehouse);
    let reopened = DuckDbWarehouse::open(&path, "pulse").unwrap();
    assert_eq!(reopened.table("readings").await.unwrap().unwrap(), created);

    // A repeat this process never wrote (a redelivery after a restart) is still ignored, and
    // the new rows beside it are written.
    reopened
        .insert_rows(
            "readings",
            &[row("a", json!({"reading": -1.0})), row("d", json!({}))],
        )
        .await
        .unwrap();
    let rows = reopened
        .query("SELECT event_id, reading FROM pulse.readings ORDER BY event_id")
        .await
        .unwrap();
    assert_eq!(event_ids(&rows), ["a", "b", "c", "d"]);
    assert_eq!(
        rows[0]["reading"], 1.5,
        "the first write of an id still stands"
    );
}

#[tokio::test]
async fn columns_are_added_at_the_top_and_inside_records() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = DuckDbWarehouse::open(&dir.path().join("w.duckdb"), "pulse").unwrap();
    warehouse.ensure_table(&spec()).await.unwrap();
    let additions = [
        Addition {
            parents: vec![],
            column: Column::new("unit", ColumnType::String, Mode::Nullable).described("Unit."),
        },
        Addition {
            parents: vec!["place".to_owned()],
            column: Column::new("floor", ColumnType::Int64, Mode::Nullable),
        },
    ];
    let evolved = warehouse.add_columns("readings", &additions).await.unwrap();
    assert_eq!(
        evolved.column("unit").unwrap().description.as_deref(),
        Some("Unit.")
    );
    let ColumnType::Record(place) = &evolved.column("place").unwrap().kind else {
        panic!("{evolved:?}")
    };
    assert_eq!(place.len(), 2);
    // Adding them again (another writer got there first) changes nothing.
    assert_eq!(
        warehouse.add_columns("readings", &additions).await.unwrap(),
        evolved
    );

    warehouse
        .insert_rows(
            "readings",
            &[row(
                "a",
                json!({"unit": "C", "place": {"room": "lab", "floor": 2}}),
            )],
        )
        .await
        .unwrap();
    let rows = warehouse
        .query("SELECT unit, place FROM pulse.readings")
        .await
        .unwrap();
    assert_eq!(rows[0]["place"]["floor"], 2);
    assert_eq!(rows[0]["unit"], "C");
}

/// A redelivered row beside a bad one, after a restart (so this process never wrote it): only
/// the bad row is refused; the repeat is stored already, and saying otherwise would dead-letter it.
#[tokio::test]
async fn a_stored_repeat_beside_a_refused_row_is_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.duckdb");
    let warehouse = DuckDbWarehouse::open(&path, "pulse").unwrap();
    warehouse.ensure_table(&spec()).await.unwrap();
    warehouse
        .insert_rows("readings", &[row("a", json!({}))])
        .await
        .unwrap();
    drop(warehouse);

    let reopened = DuckDbWarehouse::open(&path, "pulse").unwrap();
    let mut missing = row("bad", json!({}));
    missing.values.remove("timestamp");
    match reopened
        .insert_rows("readings", &[row("a", json!({})), missing])
        .await
    {
        Err(InsertError::RowsRefused(refused)) => {
            let positions: Vec<usize> = refused.iter().map(|(index, _)| *index).collect();
            assert_eq!(positions, [1], "{refused:?}");
        }
        other => panic!("expected the bad row refused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_row_the_table_refuses_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = DuckDbWarehouse::open(&dir.path().join("w.duckdb"), "pulse").unwrap();
    warehouse.ensure_table(&spec()).await.unwrap();
    // `timestamp` is NOT NULL: a row without one fails on its own.
    let mut missing = row("bad", json!({}));
    missing.values.remove("timestamp");
    let result = warehouse
        .insert_rows("readings", &[row("good", json!({})), missing])
        .await;
    match result {
        Err(InsertError::RowsRefused(refused)) => {
            assert_eq!(refused.len(), 1, "{refused:?}");
            assert_eq!(refused[0].0, 1);
        }
        other => panic!("expected a refused row, got {other:?}"),
    }
    let rows = warehouse
        .query("SELECT * FROM pulse.readings")
        .await
        .unwrap();
    assert!(
        rows.is_empty(),
        "nothing may be written when a row is refused: {rows:?}"
    );
}
