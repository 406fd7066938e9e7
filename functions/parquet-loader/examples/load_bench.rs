//! Benchmark of parquet-loader's load paths on one Parquet file (docs/benchmarks.md; run by
//! `scripts/bench-parquet-loader.sh`):
//!
//! - `duckdb FILE`: `POST /load` into the local DuckDB warehouse, against DuckDB's own
//!   `CREATE TABLE … AS SELECT * FROM read_parquet(FILE)` in the same process, same run;
//! - `footer FILE`: bytes the loader reads from the object against the file's footer (its
//!   metadata and the 8-byte tail) and the target, footer + 64 KB (the warehouse is a no-op: it
//!   reads the data itself, from the URI, and does not change what the loader reads);
//! - `postgres FILE URL`: the binary COPY path alone (the warehouse is a no-op), rows/s.
//!
//! Each prints one JSON line.

#![allow(clippy::unwrap_used)] // a benchmark fails loudly

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use axum::body::Body;
use http::Request;
use parquet_loader::{AppState, app};
use pulse_shared::backends::Backends;
use pulse_shared::config::Config;
use pulse_shared::error::BackendError;
use pulse_shared::warehouse::{
    Addition, Compaction, DateRange, InsertError, LoadError, LoadOutcome, Row, RowIdentity,
    TableSpec, TableSummary, TimeWindow, Warehouse,
};
use serde_json::{Map, Value, json};
use tower::ServiceExt as _;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, file) = (args[0].as_str(), Path::new(&args[1]));
    let dir = tempfile::tempdir_in(file.parent().unwrap()).unwrap();
    let mut config = Config {
        local_fsync: false,
        ..Config::local(dir.path())
    };
    if mode == "postgres" {
        config.database_url = Some(args[2].clone());
    }
    let name = "landing/bench/file.parquet";
    let landed = dir
        .path()
        .join("gcs")
        .join(&config.landing_bucket)
        .join(name);
    std::fs::create_dir_all(landed.parent().unwrap()).unwrap();
    std::fs::hard_link(file, &landed).unwrap();
    let objects = Backends::local_objects(&config).unwrap();
    let backends = Backends {
        publisher: Arc::new(Backends::local_bus(&config, &objects)),
        objects,
    };
    let warehouse: Arc<dyn Warehouse> = match mode {
        "duckdb" => Backends::local_warehouse(&config).unwrap(),
        _ => Arc::new(NoWarehouse),
    };
    let router = app(AppState::new(config, &backends, warehouse).unwrap());

    let started = Instant::now();
    let request = Request::post("/load")
        .header("content-type", "application/json")
        .body(Body::from(json!({ "name": name }).to_string()))
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    let body: Value = serde_json::from_slice(
        &axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap(),
    )
    .unwrap();
    let loader_secs = started.elapsed().as_secs_f64();
    assert_eq!(body["outcome"], "loaded", "{body}");
    let rows = body["rows"].as_u64().unwrap();
    let size = std::fs::metadata(file).unwrap().len();
    let report = match mode {
        "duckdb" => {
            let ctas_secs = duckdb_ctas(file, &dir.path().join("ctas.duckdb"));
            json!({"mode": mode, "rows": rows, "loader_secs": loader_secs,
                   "duckdb_ctas_secs": ctas_secs, "ratio": loader_secs / ctas_secs})
        }
        "footer" => {
            let footer = footer_bytes(file);
            let read = body["footer_bytes_read"].as_u64().unwrap();
            json!({"mode": mode, "file_bytes": size, "footer_bytes": footer, "bytes_read": read,
                   "limit": footer + 64 * 1024, "met": read <= footer + 64 * 1024, "rows": rows})
        }
        _ => json!({"mode": mode, "rows": rows, "copy_secs": loader_secs,
                    "rows_per_sec": rows as f64 / loader_secs}),
    };
    println!("{report}");
}

/// The footer's size as the file states it: the metadata length in the last 8 bytes, plus those 8.
fn footer_bytes(file: &Path) -> u64 {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut tail = [0u8; 8];
    let mut reader = std::fs::File::open(file).unwrap();
    reader.seek(SeekFrom::End(-8)).unwrap();
    reader.read_exact(&mut tail).unwrap();
    assert_eq!(
        &tail[4..],
        b"PAR1",
        "not a Parquet file: {}",
        file.display()
    );
    u64::from(u32::from_le_bytes(tail[..4].try_into().unwrap())) + 8
}

/// DuckDB's own load of the same file, into a database of its own.
fn duckdb_ctas(file: &Path, database: &Path) -> f64 {
    let connection = duckdb::Connection::open(database).unwrap();
    let started = Instant::now();
    connection
        .execute_batch(&format!(
            "CREATE TABLE t AS SELECT * FROM read_parquet('{}')",
            file.display()
        ))
        .unwrap();
    started.elapsed().as_secs_f64()
}

/// A warehouse that does nothing, so the PostgreSQL copy or the footer read is measured alone.
struct NoWarehouse;

#[async_trait]
impl Warehouse for NoWarehouse {
    fn dataset(&self) -> &str {
        "pulse"
    }
    async fn ensure_table(&self, spec: &TableSpec) -> Result<TableSpec, BackendError> {
        Ok(spec.clone())
    }
    async fn table(&self, _: &str) -> Result<Option<TableSpec>, BackendError> {
        Ok(None)
    }
    async fn add_columns(&self, _: &str, _: &[Addition]) -> Result<TableSpec, BackendError> {
        unreachable!("new tables only")
    }
    async fn insert_rows(&self, _: &str, _: &[Row]) -> Result<(), InsertError> {
        Ok(())
    }
    async fn load_parquet(&self, _: &str, _: &str, id: &str) -> Result<LoadOutcome, LoadError> {
        Ok(LoadOutcome {
            rows: 0,
            job_id: id.to_owned(),
            already_loaded: false,
        })
    }
    async fn list_tables(&self) -> Result<Vec<TableSummary>, BackendError> {
        Ok(Vec::new())
    }
    async fn ensure_unique_view(&self, _: &str, _: RowIdentity) -> Result<(), BackendError> {
        unreachable!("loads make no views")
    }
    async fn compact(
        &self,
        _: &str,
        _: RowIdentity,
        _: DateRange,
    ) -> Result<Compaction, BackendError> {
        unreachable!("loads compact nothing")
    }
    async fn id_counts(&self, _: &str, _: TimeWindow) -> Result<Vec<(String, u64)>, BackendError> {
        unreachable!("loads count no ids")
    }
    async fn query(&self, _: &str) -> Result<Vec<Map<String, Value>>, BackendError> {
        Ok(Vec::new())
    }
    fn describe(&self) -> String {
        "nothing".to_owned()
    }
}
