//! What the parquet-loader tests share: a loader over local backends in a temporary directory,
//! files dropped in its landing bucket, and the finalize CloudEvents Eventarc would send.

#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use axum::body::Body;
use http::{Request, StatusCode};
use parquet::arrow::ArrowWriter;
use parquet_loader::{AppState, app};
use pulse_shared::backends::Backends;
use pulse_shared::config::Config;
use pulse_shared::storage::{ObjectStore, local_generation};
use pulse_shared::testing::harness::send;
use pulse_shared::warehouse::Warehouse;
use serde_json::{Value, json};

pub const LANDING: &str = "pulse-landing";

/// A fixture file from `../shared/fixtures/parquet`, carried in `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A file written by another writer (`scripts/parquet-writers.py`).
pub fn written(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/writers")
        .join(name)
}

pub struct Loader {
    pub dir: tempfile::TempDir,
    pub objects: Arc<dyn ObjectStore>,
    pub config: Config,
    pub warehouse: Arc<dyn Warehouse>,
    pub router: axum::Router,
}

impl Loader {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    pub fn with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            local_fsync: false,
            ..Config::local(dir.path())
        };
        adjust(&mut config);
        let objects = Backends::local_objects(&config).unwrap();
        let bus = Backends::local_bus(&config, &objects);
        let backends = Backends {
            objects: objects.clone(),
            publisher: Arc::new(bus),
        };
        let warehouse = Backends::local_warehouse(&config).unwrap();
        let state = AppState::new(config.clone(), &backends, warehouse.clone()).unwrap();
        Self {
            dir,
            objects,
            config,
            warehouse,
            router: app(state),
        }
    }

    /// Where object `name` of the landing bucket lives on disk.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("gcs").join(LANDING).join(name)
    }

    /// Drops `bytes` as landing object `name`; returns its generation.
    pub fn drop_bytes(&self, name: &str, bytes: &[u8]) -> i64 {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let previous = std::fs::metadata(&path).ok().map(|m| local_generation(&m));
        std::fs::write(&path, bytes).unwrap();
        // A replaced file is a new generation even within the clock's resolution.
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        let mut generation = local_generation(&file.metadata().unwrap());
        if previous.is_some_and(|p| p >= generation) {
            let later = SystemTime::UNIX_EPOCH
                + Duration::from_micros(u64::try_from(previous.unwrap() + 1).unwrap());
            file.set_modified(later).unwrap();
            generation = local_generation(&file.metadata().unwrap());
        }
        generation
    }

    pub fn drop_file(&self, name: &str, source: &Path) -> i64 {
        self.drop_bytes(name, &std::fs::read(source).unwrap())
    }

    /// Delivers the finalize event of `name` at `generation` as Eventarc does (binary mode).
    pub async fn finalize(&self, name: &str, generation: i64) -> (StatusCode, Value) {
        let size = std::fs::metadata(self.path(name)).map_or(0, |m| m.len());
        let body = json!({
            "bucket": LANDING,
            "name": name,
            "generation": generation.to_string(),
            "metageneration": "1",
            "size": size.to_string(),
            "contentType": "application/octet-stream",
        });
        let request = Request::post("/")
            .header("ce-specversion", "1.0")
            .header("ce-type", "google.cloud.storage.object.v1.finalized")
            .header(
                "ce-source",
                format!("//storage.googleapis.com/projects/_/buckets/{LANDING}"),
            )
            .header("ce-subject", format!("objects/{name}"))
            .header("ce-id", format!("{name}-{generation}"))
            .header("ce-time", "2024-05-01T00:00:00Z")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(request).await
    }

    pub async fn post_load(&self, body: Value) -> (StatusCode, Value) {
        let request = Request::post("/load")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(request).await
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        send(&self.router, self.objects.as_ref(), request).await
    }

    /// One value of a one-row query.
    pub async fn scalar(&self, sql: &str) -> Value {
        let rows = self.warehouse.query(sql).await.unwrap();
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows[0].values().next().cloned().unwrap()
    }

    /// Rows in `pulse.<table>`, 0 when it does not exist.
    pub async fn count(&self, table: &str) -> u64 {
        match self.warehouse.table(table).await.unwrap() {
            None => 0,
            Some(_) => self
                .scalar(&format!("SELECT count(*) AS n FROM pulse.{table}"))
                .await
                .as_u64()
                .unwrap(),
        }
    }
}

/// `batch` as a Parquet file.
pub fn parquet_of(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    out
}

/// Two rows of integer columns named `names`.
pub fn integers(names: &[&str]) -> Vec<u8> {
    let fields: Vec<Field> = names
        .iter()
        .map(|name| Field::new(*name, DataType::Int64, true))
        .collect();
    let columns: Vec<ArrayRef> = names
        .iter()
        .map(|_| Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef)
        .collect();
    parquet_of(&RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap())
}
