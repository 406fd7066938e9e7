//! The BigQuery load job from `gs://`, as parquet-loader runs it in cloud mode:
//! `BigQueryWarehouse::load_parquet` (through `gcp-bigquery-client`) with the object's `gs://`
//! URI and the load id derived from bucket, object and generation, against PyPI's `bqemulator`.
//! The emulator's load job reads `gs://` URIs from the data directory of a real
//! `gcp-storage-emulator` (`BQEMU_GCS_LOCAL_ROOT`), into which each test uploads the Parquet file
//! over the storage emulator's JSON API. Both start per test on free loopback ports, found through
//! `PULSE_BQ_EMULATOR_PYTHON` and `PULSE_GCS_EMULATOR_BIN` (`scripts/test.sh` sets both); without
//! them every test here prints that it was SKIPPED and passes.
//!
//! What the emulators cannot show, and what is done instead:
//! - Job ids are not unique in bqemulator 1.4.0: a `jobs.insert` with an id it already has runs
//!   the load again (checked in its source, `api/routes/jobs.py`: the job record is upserted),
//!   where BigQuery answers 409 with reason `duplicate`. A proxy in front of the emulator gives
//!   BigQuery's answer when the emulator already has the job, so the tests show how the warehouse
//!   reads it and that the rows land once; BigQuery refusing the id is its documented behaviour,
//!   not something shown here. The proxy counts the load jobs the emulator actually ran.
//! - bqemulator reports `statistics.load.outputRows` as the table's row count after the load, not
//!   the rows the load appended: rows are counted by query, and the reported count is checked only
//!   where the table was empty before.
//! - Not driven here: the loader's footer read and table creation in cloud mode (the test creates
//!   the table itself). The ranged read through `google-cloud-storage` needs the header-fixing
//!   proxy of `shared/tests/gcs_emulator.rs`, which checks ranged reads byte for byte.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse as _, Response};
use http::{StatusCode, header};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use parquet_loader::load_id;
use pulse_shared::storage::{GcsObjectStore, ObjectStore as _};
use pulse_shared::testing::bigquery::bqemulator_command;
use pulse_shared::testing::gcs::{gcs_emulator_command, gcs_emulator_ready};
use pulse_shared::testing::server::{AbortOnDrop, Server, free_port};
use pulse_shared::warehouse::{
    BigQueryWarehouse, Column, ColumnType, LoadError, Mode, TableSpec, Warehouse,
};
use serde_json::{Value, json};

const PROJECT: &str = "pulse-test";
const DATASET: &str = "pulse";
const LANDING: &str = "pulse-landing";

#[tokio::test]
async fn a_parquet_object_loads_from_gs_once_per_generation() {
    let Some(stack) = Stack::start("a_parquet_object_loads_from_gs_once_per_generation").await
    else {
        return;
    };
    let warehouse = stack.warehouse().await;
    warehouse.ensure_table(&events_spec()).await.unwrap();
    let name = "landing/events/part-0.parquet";
    let rows = 3_000;
    let file = events_file(rows);
    let generation = stack.upload(name, &file).await;
    let uri = stack.uri(name).await;
    assert_eq!(uri, format!("gs://{LANDING}/{name}"));
    let id = load_id(LANDING, name, generation);

    let first = warehouse.load_parquet("events", &uri, &id).await.unwrap();
    assert_eq!(first.job_id, id);
    assert!(!first.already_loaded, "{first:?}");
    assert_eq!(
        first.rows, rows,
        "the table was empty: outputRows is the file's rows"
    );

    // The same finalize event delivered twice more: the same job id, found, not run again.
    for _ in 0..2 {
        let again = warehouse.load_parquet("events", &uri, &id).await.unwrap();
        assert_eq!(again.job_id, id);
        assert!(again.already_loaded, "{again:?}");
        assert_eq!(
            again.rows, rows,
            "the first job's count, read back from the job"
        );
    }
    assert_eq!(stack.proxy.loads_run(), 1, "one load job ran");
    assert_eq!(
        stack.proxy.duplicates(),
        2,
        "two inserts met the existing job"
    );
    assert_eq!(count(&warehouse).await, rows);

    // The values came from the file in the storage emulator, column by column.
    let found = warehouse
        .query(
            "SELECT id, name, amount, CAST(event_date AS STRING) AS day \
             FROM pulse.events WHERE id = 1234",
        )
        .await
        .unwrap();
    assert_eq!(
        Value::Array(found.into_iter().map(Value::Object).collect()),
        json!([{"id": 1234, "name": "event-1234", "amount": 1851.0, "day": "2026-01-26"}])
    );
    let sum = warehouse
        .query("SELECT sum(id) AS s FROM pulse.events")
        .await
        .unwrap();
    assert_eq!(sum[0]["s"], rows * (rows - 1) / 2);

    // Same name, new generation: a new object, so a new job id, and its rows load too.
    let next = stack.upload(name, &file).await;
    assert_ne!(next, generation);
    let next_id = load_id(LANDING, name, next);
    assert_ne!(next_id, id);
    let second = warehouse
        .load_parquet("events", &uri, &next_id)
        .await
        .unwrap();
    assert_eq!(second.job_id, next_id);
    assert!(!second.already_loaded, "{second:?}");
    assert_eq!(stack.proxy.loads_run(), 2);
    assert_eq!(count(&warehouse).await, 2 * rows);
}

#[tokio::test]
async fn a_file_that_does_not_fit_its_table_is_refused_and_loads_nothing() {
    let Some(stack) =
        Stack::start("a_file_that_does_not_fit_its_table_is_refused_and_loads_nothing").await
    else {
        return;
    };
    let warehouse = stack.warehouse().await;
    warehouse.ensure_table(&events_spec()).await.unwrap();
    // Two columns where the table has five.
    let narrow = RecordBatch::try_from_iter([
        (
            "id",
            Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
        ),
        (
            "name",
            Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef,
        ),
    ])
    .unwrap();
    let name = "landing/events/narrow.parquet";
    let generation = stack.upload(name, &parquet_bytes(&[narrow])).await;
    let uri = stack.uri(name).await;

    let err = warehouse
        .load_parquet("events", &uri, &load_id(LANDING, name, generation))
        .await
        .unwrap_err();
    // Refused, not a backend failure: the loader quarantines the file instead of having the
    // event redelivered forever.
    assert!(matches!(err, LoadError::Refused(_)), "{err:?}");
    assert_eq!(count(&warehouse).await, 0);
}

/// The table the generated files load into.
fn events_spec() -> TableSpec {
    TableSpec {
        name: "events".to_owned(),
        description: Some("Parquet drops.".to_owned()),
        columns: vec![
            Column::new("id", ColumnType::Int64, Mode::Nullable),
            Column::new("name", ColumnType::String, Mode::Nullable),
            Column::new("amount", ColumnType::Float64, Mode::Nullable),
            Column::new("event_date", ColumnType::Date, Mode::Nullable),
            Column::new("event_time", ColumnType::Timestamp, Mode::Nullable),
        ],
        partition_column: Some("event_date".to_owned()),
        clustering: Vec::new(),
        row_id_column: None,
    }
}

/// `rows` rows in row groups of 1,000: id `i`, name `event-i`, amount `1.5 i`, the date
/// 2026-01-01 plus `i % 31` days, a UTC timestamp `i` seconds after 2026-01-01.
fn events_file(rows: u64) -> Vec<u8> {
    let ids: Vec<i64> = (0..i64::try_from(rows).unwrap()).collect();
    // 2026-01-01 is day 20,454 of the Unix epoch.
    let days: Vec<i32> = ids
        .iter()
        .map(|i| 20_454 + i32::try_from(i % 31).unwrap())
        .collect();
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(ids.clone())) as ArrayRef),
        (
            "name",
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| format!("event-{i}")),
            )),
        ),
        (
            "amount",
            Arc::new(Float64Array::from_iter_values(
                ids.iter().map(|&i| i as f64 * 1.5),
            )),
        ),
        ("event_date", Arc::new(Date32Array::from(days))),
        (
            "event_time",
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    ids.iter().map(|i| 1_767_225_600_000_000 + i * 1_000_000),
                )
                .with_timezone("UTC"),
            ),
        ),
    ])
    .unwrap();
    let groups: Vec<RecordBatch> = (0..batch.num_rows())
        .step_by(1_000)
        .map(|offset| batch.slice(offset, 1_000.min(batch.num_rows() - offset)))
        .collect();
    parquet_bytes(&groups)
}

/// One row group per batch.
fn parquet_bytes(batches: &[RecordBatch]) -> Vec<u8> {
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(1_000))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batches[0].schema(), Some(properties)).unwrap();
    for batch in batches {
        writer.write(batch).unwrap();
        writer.flush().unwrap();
    }
    writer.close().unwrap();
    out
}

async fn count(warehouse: &BigQueryWarehouse) -> u64 {
    let rows = warehouse
        .query("SELECT count(*) AS n FROM pulse.events")
        .await
        .unwrap();
    rows[0]["n"].as_u64().unwrap()
}

/// The storage emulator (on disk), bqemulator reading `gs://` from that disk, and the proxy in
/// front of bqemulator; all stop when this is dropped.
struct Stack {
    _gcs: Server,
    /// `http://127.0.0.1:<port>` of the storage emulator.
    gcs_url: String,
    _bigquery: Server,
    proxy: Arc<Proxy>,
    proxy_url: String,
    _proxy_task: AbortOnDrop,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// Starts everything, or says why the test is skipped and returns `None`.
    async fn start(test: &str) -> Option<Self> {
        let (Ok(python), Ok(gcs_bin)) = (
            std::env::var("PULSE_BQ_EMULATOR_PYTHON"),
            std::env::var("PULSE_GCS_EMULATOR_BIN"),
        ) else {
            eprintln!(
                "SKIPPED {test}: set PULSE_BQ_EMULATOR_PYTHON to a Python with `bqemulator` and \
                 PULSE_GCS_EMULATOR_BIN to `gcp-storage-emulator` (bash scripts/test.sh does)"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        // The storage emulator keeps object `NAME` of bucket `B` at
        // `$STORAGE_BASE/.cloudstorage/B/NAME`; bqemulator maps `gs://B/NAME` to
        // `$BQEMU_GCS_LOCAL_ROOT/B/NAME`.
        let gcs_port = free_port();
        let mut gcs = gcs_emulator_command(Path::new(&gcs_bin), gcs_port, LANDING);
        gcs.env("STORAGE_BASE", dir.path());
        let gcs = Server::start(
            gcs,
            &dir.path().join("gcs.log"),
            &gcs_emulator_ready(gcs_port, LANDING),
        )
        .await
        .unwrap_or_else(|why| panic!("gcp-storage-emulator {why}"));

        let bq_port = free_port();
        let mut bigquery = bqemulator_command(&python, bq_port, PROJECT);
        bigquery.env("BQEMU_GCS_LOCAL_ROOT", dir.path().join(".cloudstorage"));
        let upstream = format!("http://127.0.0.1:{bq_port}");
        let datasets = format!("{upstream}/bigquery/v2/projects/{PROJECT}/datasets");
        let bigquery = Server::start(bigquery, &dir.path().join("bq.log"), &datasets)
            .await
            .unwrap_or_else(|why| panic!("bqemulator {why}"));
        let created = reqwest::Client::new()
            .post(&datasets)
            .json(&json!({"datasetReference": {"projectId": PROJECT, "datasetId": DATASET}}))
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success(), "{:?}", created.text().await);

        let proxy = Arc::new(Proxy {
            client: reqwest::Client::new(),
            upstream,
            loads_run: AtomicUsize::new(0),
            duplicates: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_url = format!("http://{}", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Some(Self {
            _gcs: gcs,
            gcs_url: format!("http://127.0.0.1:{gcs_port}"),
            _bigquery: bigquery,
            proxy,
            proxy_url,
            _proxy_task: AbortOnDrop(task),
            _dir: dir,
        })
    }

    async fn warehouse(&self) -> BigQueryWarehouse {
        BigQueryWarehouse::connect(PROJECT, DATASET, Some(&self.proxy_url))
            .await
            .unwrap()
    }

    /// The URI the loader hands the warehouse: the Cloud Storage store's name for the object.
    async fn uri(&self, name: &str) -> String {
        GcsObjectStore::connect(Some(&self.gcs_url), true)
            .await
            .unwrap()
            .uri(LANDING, name)
    }

    /// Uploads `bytes` as landing object `name` (a simple media upload, as a producer would);
    /// returns its generation.
    async fn upload(&self, name: &str, bytes: &[u8]) -> i64 {
        let mut url = reqwest::Url::parse(&self.gcs_url).unwrap();
        url.path_segments_mut()
            .unwrap()
            .extend(["upload", "storage", "v1", "b", LANDING, "o"]);
        url.query_pairs_mut()
            .append_pair("uploadType", "media")
            .append_pair("name", name);
        let response = reqwest::Client::new()
            .post(url)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "upload: {response:?}");
        let object: Value = response.json().await.unwrap();
        object["generation"].as_str().unwrap().parse().unwrap()
    }
}

/// Forwards every request to bqemulator, except a `jobs.insert` naming a job the emulator already
/// has: that gets BigQuery's answer, 409 `duplicate`, and nothing runs.
struct Proxy {
    client: reqwest::Client,
    upstream: String,
    /// Load jobs forwarded to the emulator (each one ran).
    loads_run: AtomicUsize,
    /// Inserts answered 409 because the job existed.
    duplicates: AtomicUsize,
}

impl Proxy {
    fn loads_run(&self) -> usize {
        self.loads_run.load(Ordering::SeqCst)
    }

    fn duplicates(&self) -> usize {
        self.duplicates.load(Ordering::SeqCst)
    }
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("{}{path_and_query}", proxy.upstream);

    // jobs.insert: `POST /bigquery/v2/projects/{project}/jobs`.
    let segments: Vec<&str> = parts.uri.path().trim_matches('/').split('/').collect();
    if parts.method == http::Method::POST
        && let ["bigquery", "v2", "projects", project, "jobs"] = segments.as_slice()
    {
        let job: Value = serde_json::from_slice(&body).unwrap();
        if let Some(id) = job["jobReference"]["jobId"].as_str() {
            let existing = proxy
                .client
                .get(format!(
                    "{}/bigquery/v2/projects/{project}/jobs/{id}",
                    proxy.upstream
                ))
                .send()
                .await
                .unwrap();
            if existing.status().is_success() {
                proxy.duplicates.fetch_add(1, Ordering::SeqCst);
                return duplicate(project, id);
            }
        }
        if job["configuration"]["load"].is_object() {
            // BigQuery reads a Parquet LIST as `list.element` records unless list inference is
            // on, and the loader plans REPEATED columns: such a load fails there, while the
            // emulator reads lists as lists either way. Refuse it here as BigQuery would.
            if job["configuration"]["load"]["parquetOptions"]["enableListInference"] != true {
                return invalid("the load job does not set parquetOptions.enableListInference");
            }
            proxy.loads_run.fetch_add(1, Ordering::SeqCst);
        }
    }

    let mut headers = parts.headers;
    for hop in [header::HOST, header::CONNECTION, header::CONTENT_LENGTH] {
        headers.remove(hop);
    }
    let upstream = proxy
        .client
        .request(parts.method, url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = upstream.status();
    let mut headers = upstream.headers().clone();
    for hop in [
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(hop);
    }
    let mut response = Response::new(Body::from(upstream.bytes().await.unwrap()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// BigQuery's refusal of a `jobs.insert` that is not valid.
fn invalid(message: &str) -> Response {
    refusal(
        StatusCode::BAD_REQUEST,
        "invalid",
        "INVALID_ARGUMENT",
        message,
    )
}

/// BigQuery's answer to a `jobs.insert` whose job id is taken.
fn duplicate(project: &str, id: &str) -> Response {
    let message = format!("Already Exists: Job {project}:US.{id}");
    refusal(
        StatusCode::CONFLICT,
        "duplicate",
        "ALREADY_EXISTS",
        &message,
    )
}

/// A BigQuery error answer, as its API shapes one.
fn refusal(status: StatusCode, reason: &str, state: &str, message: &str) -> Response {
    let body = json!({
        "error": {
            "code": status.as_u16(),
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": state,
        }
    });
    (status, axum::Json(body)).into_response()
}
