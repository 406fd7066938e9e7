//! The local warehouse on a real DuckDB file: creation with comments, evolution (top-level and
//! nested), inserts that ignore repeated ids, refused rows, listing, queries, reopening.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use pulse_shared::testing::rows::event_ids;
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

fn limits(max_rows: usize) -> pulse_shared::warehouse::QueryLimits {
    pulse_shared::warehouse::QueryLimits {
        max_rows,
        timeout: std::time::Duration::from_secs(10),
        max_bytes_billed: 0,
    }
}

/// A refusal's reason, or a panic when the query was run or failed otherwise.
async fn refusal(warehouse: &DuckDbWarehouse, sql: &str) -> String {
    match warehouse.read_only_query(sql, limits(10)).await {
        Err(pulse_shared::warehouse::QueryError::Refused(reason)) => reason,
        other => panic!("{sql}: expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_read_only_query_answers_one_select_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = DuckDbWarehouse::open(&dir.path().join("w.duckdb"), "pulse").unwrap();
    warehouse.ensure_table(&spec()).await.unwrap();
    let rows: Vec<Row> = (0..5)
        .map(|i| row(&format!("r{i}"), json!({"reading": i})))
        .collect();
    warehouse.insert_rows("readings", &rows).await.unwrap();

    // Unqualified names are the dataset's; columns come in the query's order with their types.
    let answer = warehouse
        .read_only_query(
            "WITH r AS (SELECT reading, event_id FROM readings) \
             SELECT event_id, reading FROM r ORDER BY event_id; -- the last line",
            limits(3),
        )
        .await
        .unwrap();
    let names: Vec<&str> = answer.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["event_id", "reading"]);
    assert_eq!(answer.columns[1].kind, "DOUBLE");
    assert_eq!(event_ids(&answer.rows), ["r0", "r1", "r2"]);
    assert!(answer.truncated, "five rows, three asked for");
    let all = warehouse
        .read_only_query("FROM pulse.readings SELECT count(*) AS n", limits(3))
        .await
        .unwrap();
    assert_eq!(all.rows[0]["n"], 5);
    assert!(!all.truncated);

    // Statements that are not one query, by DuckDB's parse: nothing runs.
    for sql in [
        "DELETE FROM readings",
        "DROP TABLE pulse.readings",
        "SELECT 1; DELETE FROM readings",
        "COPY (SELECT 1) TO 'out.csv'",
        "ATTACH 'other.duckdb'",
        "SET threads = 1",
        "",
    ] {
        let reason = refusal(&warehouse, sql).await;
        assert!(reason.contains("single read-only query"), "{sql}: {reason}");
    }
    // The wrapping for the row limit cannot be broken out of.
    let reason = refusal(
        &warehouse,
        "SELECT 1) AS x; DELETE FROM readings; SELECT (1",
    )
    .await;
    assert!(reason.contains("cannot parse"), "{reason}");
    // Files and settings are not the warehouse.
    for sql in [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM '/etc/hosts.csv'",
        "SELECT * FROM (SELECT * FROM read_text('/etc/hostname'))",
        "SELECT * FROM other.readings",
        "SELECT * FROM duckdb_secrets()",
    ] {
        let reason = refusal(&warehouse, sql).await;
        assert!(
            reason.contains("warehouse") || reason.contains("dataset"),
            "{sql}: {reason}"
        );
    }
    // A query that names what is not there is the caller's to fix.
    let reason = refusal(&warehouse, "SELECT nope FROM readings").await;
    assert!(reason.contains("nope"), "{reason}");
    // Sequences advance even in a read-only transaction? No: DuckDB refuses the write.
    let reason = refusal(&warehouse, "SELECT nextval('no_such_sequence')").await;
    assert!(!reason.is_empty());

    let stored = warehouse
        .query("SELECT count(*) AS n FROM pulse.readings")
        .await
        .unwrap();
    assert_eq!(
        stored[0]["n"], 5,
        "every refused statement left the table alone"
    );
}

#[tokio::test]
async fn a_read_only_query_is_stopped_at_its_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = DuckDbWarehouse::open(&dir.path().join("w.duckdb"), "pulse").unwrap();
    let slow = pulse_shared::warehouse::QueryLimits {
        timeout: std::time::Duration::from_millis(300),
        ..limits(10)
    };
    let started = std::time::Instant::now();
    let result = warehouse
        .read_only_query(
            "SELECT count(*) FROM range(1000000000000) AS a(x) WHERE x % 7 = 3",
            slow,
        )
        .await;
    match result {
        Err(pulse_shared::warehouse::QueryError::Refused(reason)) => {
            assert!(reason.contains("longer than"), "{reason}")
        }
        other => panic!("expected the query to be stopped, got {other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // The warehouse's own connections were never interrupted.
    let after = warehouse.query("SELECT 1 AS n").await.unwrap();
    assert_eq!(after[0]["n"], 1);
}
