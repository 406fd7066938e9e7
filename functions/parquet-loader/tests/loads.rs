//! parquet-loader over the local backends (a directory per bucket, DuckDB): every fixture of
//! `../shared/fixtures/parquet` and files of other writers load with the right rows and values;
//! files that cannot load are quarantined with nothing loaded; redeliveries load once.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::RecordBatch;
use arrow_array::builder::{ArrayBuilder, Int64Builder, ListBuilder, StructBuilder};
use arrow_schema::{DataType, Field};
use common::{LANDING, Loader, fixture, integers, parquet_of, written};
use http::StatusCode;
use serde_json::Value;

/// The fixtures, the table each loads into, and the rows their footers state.
const FIXTURES: [(&str, &str, u64); 16] = [
    ("alltypes_plain.parquet", "alltypes_plain", 8),
    ("alltypes_plain.snappy.parquet", "alltypes_snappy", 2),
    ("alltypes_dictionary.parquet", "alltypes_dictionary", 2),
    ("binary.parquet", "binary", 12),
    ("byte_stream_split.zstd.parquet", "byte_stream_split", 300),
    ("datapage_v2.snappy.parquet", "datapage_v2", 5),
    ("delta_byte_array.parquet", "delta_byte_array", 1000),
    ("fixed_length_decimal.parquet", "fixed_length_decimal", 24),
    ("int64_decimal.parquet", "int64_decimal", 24),
    ("list_columns.parquet", "list_columns", 3),
    ("lz4_raw_compressed.parquet", "lz4_raw", 4),
    ("nested_lists.snappy.parquet", "nested_lists", 3),
    ("nested_maps.snappy.parquet", "nested_maps", 6),
    ("nulls.snappy.parquet", "nulls", 8),
    ("single_nan.parquet", "single_nan", 1),
    ("nation.dict-malformed.parquet", "nation", 25),
];

#[tokio::test]
async fn every_fixture_loads_with_its_rows() {
    let loader = Loader::new();
    for (file, table, rows) in FIXTURES {
        let name = format!("landing/{table}/{file}");
        let generation = loader.drop_file(&name, &fixture(file));
        let (status, body) = loader.finalize(&name, generation).await;
        assert_eq!(status, StatusCode::OK, "{file}: {body}");
        assert_eq!(body["outcome"], "loaded", "{file}: {body}");
        assert_eq!(body["rows"], rows, "{file}");
        assert_eq!(body["destinations"][0]["rows"], rows, "{file}");
        assert_eq!(loader.count(&format!("load_{table}")).await, rows, "{file}");
        // Only the footer was read, never the data (the warehouse reads the file itself).
        let size = std::fs::metadata(loader.path(&name)).unwrap().len();
        assert!(
            body["footer_bytes_read"].as_u64().unwrap() <= size,
            "{file}"
        );
    }

    let value = |sql: &'static str| loader.scalar(sql);
    assert_eq!(
        value("SELECT sum(id) AS s FROM pulse.load_alltypes_plain").await,
        28
    );
    // INT96 (Impala's timestamp) is an instant: a TIMESTAMP column, in UTC.
    let spec = loader
        .warehouse
        .table("load_alltypes_plain")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        spec.column("timestamp_col").unwrap().kind.bigquery_name(),
        "TIMESTAMP"
    );
    assert_eq!(spec.partition_column.as_deref(), Some("timestamp_col"));
    assert_eq!(
        value("SELECT min(timestamp_col)::VARCHAR AS t FROM pulse.load_alltypes_plain").await,
        "2009-01-01 00:00:00+00"
    );
    for table in ["fixed_length_decimal", "int64_decimal"] {
        let sum = loader
            .scalar(&format!(
                "SELECT sum(value)::DOUBLE AS s FROM pulse.load_{table}"
            ))
            .await;
        assert_eq!(sum, 300.0, "{table}");
    }
    assert_eq!(
        value("SELECT sum(nation_key) AS s FROM pulse.load_nation").await,
        300
    );
    // The README calls it a NaN; DuckDB and pyarrow both read the one value as null.
    assert_eq!(
        value("SELECT mycol IS NULL AS n FROM pulse.load_single_nan").await,
        true
    );
    assert_eq!(
        value("SELECT count(*) AS n FROM pulse.load_nulls WHERE b_struct.b_c_int IS NULL").await,
        8
    );
    assert_eq!(
        value(
            "SELECT int64_list::VARCHAR AS l FROM pulse.load_list_columns WHERE utf8_list IS NULL"
        )
        .await,
        "[NULL, 1]"
    );
    assert_eq!(
        value("SELECT count(DISTINCT c_customer_id) AS n FROM pulse.load_delta_byte_array").await,
        1000
    );
    assert_eq!(
        value("SELECT sum(b) AS s FROM pulse.load_nested_lists").await,
        3,
        "lists of lists load (as JSON), beside their scalar column"
    );
}

#[tokio::test]
async fn files_of_other_writers_load_nested_types_decimals_and_zones() {
    let loader = Loader::new();
    for (file, table) in [
        ("pyarrow_nested.parquet", "pyarrow_nested"),
        ("duckdb_copy.parquet", "duckdb_copy"),
    ] {
        let name = format!("landing/{table}/{file}");
        let generation = loader.drop_file(&name, &written(file));
        let (status, body) = loader.finalize(&name, generation).await;
        assert_eq!(
            (status, &body["outcome"]),
            (StatusCode::OK, &Value::from("loaded")),
            "{body}"
        );
        assert_eq!(loader.count(&format!("load_{table}")).await, 3000, "{file}");
    }
    let value = |sql: &'static str| loader.scalar(sql);
    // pyarrow: three row groups, dictionary-encoded strings, a decimal, a zoned and a zoneless
    // timestamp, a list, a struct, a map.
    assert_eq!(
        value("SELECT sum(price)::VARCHAR AS s FROM pulse.load_pyarrow_nested").await,
        "44985.000000000"
    );
    assert_eq!(
        value("SELECT count(tags) AS n FROM pulse.load_pyarrow_nested").await,
        2400
    );
    assert_eq!(
        value("SELECT sum(point.x) AS s FROM pulse.load_pyarrow_nested").await,
        4_498_500.0
    );
    assert_eq!(
        value("SELECT count(DISTINCT name) AS n FROM pulse.load_pyarrow_nested").await,
        7
    );
    assert_eq!(
        value("SELECT max(seen_at)::VARCHAR AS t FROM pulse.load_pyarrow_nested").await,
        "2024-05-01 00:49:59+00"
    );
    assert_eq!(
        value("SELECT max(local_time)::VARCHAR AS t FROM pulse.load_pyarrow_nested").await,
        "2024-05-03 01:59:00"
    );
    assert_eq!(
        value("SELECT attrs::VARCHAR AS m FROM pulse.load_pyarrow_nested WHERE id = 7").await,
        "{\"k\":7}"
    );
    let spec = loader
        .warehouse
        .table("load_pyarrow_nested")
        .await
        .unwrap()
        .unwrap();
    let kinds: Vec<(&str, &str)> = spec
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.kind.bigquery_name()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("id", "INTEGER"),
            ("name", "STRING"),
            ("price", "NUMERIC"),
            ("seen_at", "TIMESTAMP"),
            ("local_time", "DATETIME"),
            ("day", "DATE"),
            ("tags", "STRING"),
            ("point", "RECORD"),
            ("attrs", "JSON"),
            ("ok", "BOOLEAN"),
            ("blob", "BYTES"),
        ]
    );
    assert_eq!(spec.partition_column.as_deref(), Some("seen_at"));
    // DuckDB's COPY TO: two row groups, DECIMAL(18, 3), TIMESTAMPTZ, a list, a struct.
    assert_eq!(
        value("SELECT sum(amount)::VARCHAR AS s FROM pulse.load_duckdb_copy").await,
        "1124625.000000000"
    );
    assert_eq!(
        value("SELECT sum(rec.a) AS s FROM pulse.load_duckdb_copy").await,
        4_498_500
    );
    assert_eq!(
        value("SELECT sum(pair[2]) AS s FROM pulse.load_duckdb_copy").await,
        4_501_500
    );
}

#[tokio::test]
async fn a_redelivered_event_loads_once_and_a_new_generation_loads_again() {
    let loader = Loader::new();
    let name = "landing/orders/2024/05/01/part-0.parquet";
    let generation = loader.drop_file(name, &fixture("alltypes_plain.parquet"));
    let mut already = Vec::new();
    for _ in 0..3 {
        let (status, body) = loader.finalize(name, generation).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["destinations"][0]["rows"], 8, "{body}");
        already.push(body["destinations"][0]["already_loaded"].as_bool().unwrap());
    }
    assert_eq!(already, [false, true, true]);
    assert_eq!(loader.count("load_orders").await, 8);
    // The `orders` folder names a load table: the event table `orders` is out of its reach.
    assert_eq!(loader.warehouse.table("orders").await.unwrap(), None);

    // A manual reload of the same generation is a redelivery too.
    let (status, body) = loader.post_load(serde_json::json!({"name": name})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["destinations"][0]["already_loaded"], true, "{body}");
    assert_eq!(loader.count("load_orders").await, 8);

    // The same name uploaded again is a new object.
    let newer = loader.drop_file(name, &fixture("alltypes_plain.parquet"));
    assert_ne!(newer, generation);
    let (_, body) = loader.finalize(name, newer).await;
    assert_eq!(body["destinations"][0]["already_loaded"], false, "{body}");
    assert_eq!(loader.count("load_orders").await, 16);
    // The old generation's event, late: that generation is gone, nothing to do.
    let (status, body) = loader.finalize(name, generation).await;
    assert_eq!(
        (status, &body["outcome"]),
        (StatusCode::OK, &Value::from("ignored")),
        "{body}"
    );
    assert_eq!(loader.count("load_orders").await, 16);
}

#[tokio::test]
async fn an_object_name_is_data_never_a_pattern() {
    let loader = Loader::new();
    // Files every pattern below would match, dropped but not (yet) announced.
    for bystander in ["landing/globs/a1.parquet", "landing/globs/ab.parquet"] {
        loader.drop_file(bystander, &fixture("alltypes_plain.parquet"));
    }
    let mut expected = 0;
    for name in [
        "landing/globs/a*.parquet",
        "landing/globs/a?.parquet",
        "landing/globs/a[1].parquet",
        "landing/globs/**.parquet",
    ] {
        let generation = loader.drop_file(name, &fixture("alltypes_plain.parquet"));
        let (status, body) = loader.finalize(name, generation).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert_eq!(body["outcome"], "loaded", "{name}: {body}");
        expected += 8;
        assert_eq!(
            loader.count("load_globs").await,
            expected,
            "{name} read other files"
        );
        // A redelivery loads nothing more.
        let (_, body) = loader.finalize(name, generation).await;
        assert_eq!(body["destinations"][0]["already_loaded"], true, "{body}");
        assert_eq!(loader.count("load_globs").await, expected, "{name}");
    }
    let left: Vec<String> = loader
        .objects
        .list(LANDING, "_pulse_staging/")
        .await
        .unwrap();
    assert!(left.is_empty(), "the staged copies are removed: {left:?}");
}

#[tokio::test]
async fn a_new_table_evolves_with_new_columns() {
    let loader = Loader::new();
    let first = "landing/evolving/a.parquet";
    let generation = loader.drop_file(first, &fixture("alltypes_dictionary.parquet"));
    loader.finalize(first, generation).await;
    // The same table, a file with columns it lacks (and none it conflicts with).
    let second = "landing/evolving/b.parquet";
    let generation = loader.drop_file(second, &fixture("single_nan.parquet"));
    let (status, body) = loader.finalize(second, generation).await;
    assert_eq!(
        (status, &body["outcome"]),
        (StatusCode::OK, &Value::from("loaded")),
        "{body}"
    );
    assert_eq!(loader.count("load_evolving").await, 3);
    let spec = loader
        .warehouse
        .table("load_evolving")
        .await
        .unwrap()
        .unwrap();
    assert!(spec.column("mycol").is_some());
}

/// What a refusal must leave: the file in quarantine with its report, the original gone,
/// nothing loaded.
async fn assert_quarantined(loader: &Loader, name: &str, body: &Value, reason: &str, table: &str) {
    assert_eq!(body["outcome"], "quarantined", "{name}: {body}");
    assert_eq!(body["reason"], reason, "{name}: {body}");
    let moved = body["quarantine"].as_str().unwrap().to_owned();
    let generation = moved
        .strip_prefix(&format!("{}@", name.replacen("landing/", "quarantine/", 1)))
        .unwrap_or_else(|| panic!("{name} quarantined as {moved}"));
    assert!(loader.path(&moved).exists(), "{moved}");
    assert!(
        !loader.path(name).exists(),
        "the original is deleted: {name}"
    );
    let report: Value = serde_json::from_slice(
        &std::fs::read(loader.path(&format!("{moved}.error.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(report["reason"], reason);
    assert!(report["detail"].as_str().unwrap().len() > 10, "{report}");
    assert_eq!(report["generation"].to_string(), generation);
    assert!(report["quarantined_at"].is_string());
    assert_eq!(loader.count(table).await, 0, "nothing loaded from {name}");
}

/// The second refused upload of a name deleted the first one's report and replaced its copy:
/// each generation now keeps its own.
#[tokio::test]
async fn each_refused_upload_of_a_name_keeps_its_own_copy_and_report() {
    let loader = Loader::new();
    let name = "landing/refused/again.parquet";
    let mut quarantined = Vec::new();
    for body in [&b"not parquet, first"[..], b"not parquet either, second"] {
        let generation = loader.drop_bytes(name, body);
        let (status, answer) = loader.finalize(name, generation).await;
        assert_eq!(status, StatusCode::OK);
        assert_quarantined(&loader, name, &answer, "not_parquet", "load_refused").await;
        let moved = answer["quarantine"].as_str().unwrap().to_owned();
        quarantined.push((moved, body.to_vec()));
    }
    assert_ne!(quarantined[0].0, quarantined[1].0);
    for (moved, body) in &quarantined {
        assert_eq!(&std::fs::read(loader.path(moved)).unwrap(), body, "{moved}");
        assert!(
            loader.path(&format!("{moved}.error.json")).exists(),
            "{moved}"
        );
    }
}

#[tokio::test]
async fn files_that_cannot_load_are_quarantined_with_nothing_loaded() {
    let loader = Loader::new();
    let good = std::fs::read(fixture("delta_byte_array.parquet")).unwrap();

    let mut corrupt = good.clone();
    for byte in &mut corrupt[200..20_000] {
        *byte ^= 0x5a;
    }
    let mut encrypted = good[..100].to_vec();
    encrypted.extend_from_slice(&64u32.to_le_bytes());
    encrypted.extend_from_slice(b"PARE");
    let mut truncated = b"PAR1".to_vec();
    truncated.extend_from_slice(&good[good.len() - 8..]);
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "landing/refused/not.parquet",
            b"id,name\n1,a\n".to_vec(),
            "not_parquet",
        ),
        (
            "landing/refused/cut.parquet",
            good[..good.len() / 2].to_vec(),
            "not_parquet",
        ),
        ("landing/refused/short.parquet", truncated, "truncated"),
        ("landing/refused/secret.parquet", encrypted, "encrypted"),
        ("landing/refused/corrupt.parquet", corrupt, "corrupt"),
    ];
    for (name, bytes, reason) in cases {
        let generation = loader.drop_bytes(name, &bytes);
        let (status, body) = loader.finalize(name, generation).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert_quarantined(&loader, name, &body, reason, "load_refused").await;
        // A redelivery finds nothing left to do.
        let (status, body) = loader.finalize(name, generation).await;
        assert_eq!(
            (status, &body["outcome"]),
            (StatusCode::OK, &Value::from("ignored")),
            "{body}"
        );
    }

    // `load_` and 59 bytes would be truncated by PostgreSQL, where two such names could meet.
    let too_long = format!("landing/{}/x.parquet", "a".repeat(59));
    for bad_table in ["landing/Not-A-Table/x.parquet", too_long.as_str()] {
        let generation = loader.drop_file(bad_table, &fixture("single_nan.parquet"));
        let (_, body) = loader.finalize(bad_table, generation).await;
        assert_quarantined(&loader, bad_table, &body, "bad_name", "load_refused").await;
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("58 bytes at most"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_file_that_conflicts_with_its_table_is_refused() {
    let loader = Loader::new();
    let first = "landing/conflicting/a.parquet";
    let generation = loader.drop_file(first, &fixture("int64_decimal.parquet"));
    loader.finalize(first, generation).await;
    // DECIMAL(10, 2) made the column NUMERIC; DECIMAL(25, 2) is NUMERIC too.
    let third = "landing/conflicting/c.parquet";
    let generation = loader.drop_file(third, &fixture("fixed_length_decimal.parquet"));
    let (_, body) = loader.finalize(third, generation).await;
    assert_eq!(body["outcome"], "loaded", "same column, same type: {body}");

    let conflicting = "landing/alltypes/a.parquet";
    let generation = loader.drop_file(conflicting, &fixture("alltypes_plain.parquet"));
    loader.finalize(conflicting, generation).await;
    // `id` is INTEGER in `alltypes`; this file has it as BYTES.
    let other = "landing/alltypes/b.parquet";
    let generation = loader.drop_file(other, &written("id_as_bytes.parquet"));
    let (status, body) = loader.finalize(other, generation).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["outcome"], "quarantined", "{body}");
    assert_eq!(body["reason"], "schema_conflict", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("`id`"), "{body}");
    assert_eq!(
        loader.count("load_alltypes").await,
        8,
        "only the first file"
    );
}

/// One row with `items`, a list of one record whose integer fields are `fields`.
fn list_of_records(fields: &[&str]) -> Vec<u8> {
    let fields: Vec<Field> = fields
        .iter()
        .map(|name| Field::new(*name, DataType::Int64, true))
        .collect();
    let builders: Vec<Box<dyn ArrayBuilder>> = fields
        .iter()
        .map(|_| Box::new(Int64Builder::new()) as Box<dyn ArrayBuilder>)
        .collect();
    let mut items = ListBuilder::new(StructBuilder::new(fields.clone(), builders));
    let record = items.values();
    for index in 0..fields.len() {
        record
            .field_builder::<Int64Builder>(index)
            .unwrap()
            .append_value(7);
    }
    record.append(true);
    items.append(true);
    let items: ArrayRef = Arc::new(items.finish());
    parquet_of(&RecordBatch::try_from_iter([("items", items)]).unwrap())
}

#[tokio::test]
async fn columns_the_warehouse_cannot_take_are_quarantined_not_retried() {
    let loader = Loader::new();
    let first = "landing/cases/a.parquet";
    let generation = loader.drop_bytes(first, &integers(&["id"]));
    let (_, body) = loader.finalize(first, generation).await;
    assert_eq!(body["outcome"], "loaded", "{body}");
    for (name, bytes, reason) in [
        // `ID` beside the table's `id`: one name to both warehouses.
        ("landing/cases/b.parquet", integers(&["ID"]), "bad_name"),
        (
            "landing/twice/a.parquet",
            integers(&["id", "ID"]),
            "bad_name",
        ),
        (
            "landing/reserved/a.parquet",
            integers(&["_PARTITIONTIME"]),
            "bad_name",
        ),
    ] {
        let table = format!("load_{}", name.split('/').nth(1).unwrap());
        let before = loader.count(&table).await;
        let generation = loader.drop_bytes(name, &bytes);
        let (status, body) = loader.finalize(name, generation).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert_quarantined(&loader, name, &body, reason, "load_none").await;
        assert_eq!(loader.count(&table).await, before, "{name}");
    }
    assert_eq!(loader.count("load_cases").await, 2);

    // DuckDB cannot add a field to records inside a list: the file is refused, not retried.
    let listed = "landing/listed/a.parquet";
    let generation = loader.drop_bytes(listed, &list_of_records(&["a"]));
    let (_, body) = loader.finalize(listed, generation).await;
    assert_eq!(body["outcome"], "loaded", "{body}");
    let wider = "landing/listed/b.parquet";
    let generation = loader.drop_bytes(wider, &list_of_records(&["a", "b"]));
    let (status, body) = loader.finalize(wider, generation).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_quarantined(&loader, wider, &body, "schema_conflict", "load_none").await;
    assert_eq!(loader.count("load_listed").await, 1);
}

#[tokio::test]
async fn an_object_name_the_loader_cannot_address_is_dead_lettered() {
    let loader = Loader::new();
    let name = "landing/orders/../x.parquet";
    let (status, body) = loader.finalize(name, 1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "dead_lettered", "{body}");
    assert_eq!(body["reason"], "bad_value", "{body}");
}

#[tokio::test]
async fn other_objects_are_ignored() {
    let loader = Loader::new();
    for name in [
        "landing/orders/_SUCCESS",
        "landing/orders/part-0.csv",
        "landing/part-0.parquet",
        "quarantine/orders/x.parquet",
        "elsewhere/orders/x.parquet",
    ] {
        let generation = loader.drop_bytes(name, b"x");
        let (status, body) = loader.finalize(name, generation).await;
        assert_eq!(
            (status, &body["outcome"]),
            (StatusCode::OK, &Value::from("ignored")),
            "{name}: {body}"
        );
        assert!(loader.path(name).exists(), "left alone: {name}");
    }
    let empty = "landing/orders/empty.parquet";
    let generation = loader.drop_bytes(empty, b"");
    let (_, body) = loader.finalize(empty, generation).await;
    assert_eq!(body["outcome"], "ignored", "{body}");
    assert_eq!(body["reason"], "a zero-byte object", "{body}");
}

#[tokio::test]
async fn bad_requests_are_answered_400_and_bad_envelopes_dead_lettered() {
    let loader = Loader::new();
    let (status, _) = loader.post_load(serde_json::json!({"object": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = loader
        .post_load(serde_json::json!({"name": "landing/../x.parquet"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = loader
        .post_load(serde_json::json!({"name": "landing/t/none.parquet"}))
        .await;
    assert_eq!(
        (status, &body["outcome"]),
        (StatusCode::OK, &Value::from("ignored")),
        "{body}"
    );
}

#[tokio::test]
async fn an_event_that_is_not_a_finalize_event_is_dead_lettered() {
    let loader = Loader::new();
    let request = http::Request::post("/")
        .header("ce-specversion", "1.0")
        .header("ce-type", "google.cloud.storage.object.v1.deleted")
        .header(
            "ce-source",
            "//storage.googleapis.com/projects/_/buckets/pulse-landing",
        )
        .header("ce-id", "1")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            r#"{"bucket":"pulse-landing","name":"x","generation":"1"}"#,
        ))
        .unwrap();
    let (status, body) = loader.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["outcome"], "dead_lettered", "{body}");
    assert_eq!(body["reason"], "bad_envelope", "{body}");
}

#[tokio::test]
async fn every_route_is_described() {
    let loader = Loader::new();
    let problems =
        pulse_shared::openapi::disagreements(loader.router.clone(), &parquet_loader::openapi())
            .await;
    assert!(problems.is_empty(), "{problems:#?}");
}
