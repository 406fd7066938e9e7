//! The DuckDB warehouse with counters, and an outage switch: shared by the handler tests and
//! the load benchmark (`examples/load.rs` includes this file by path).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pulse_shared::error::{BackendError, Retry};
use pulse_shared::warehouse::{
    Addition, Compaction, DateRange, DuckDbWarehouse, InsertError, LoadError, LoadOutcome, Row,
    RowIdentity, TableSpec, TableSummary, TimeWindow, Warehouse,
};
use serde_json::{Map, Value};

/// Counts warehouse writes, the rows they carry and the schema calls; fails writes while
/// `failing` is set.
pub struct Observed {
    inner: DuckDbWarehouse,
    /// `insert_rows` calls, failed ones included.
    pub inserts: AtomicU64,
    /// Rows passed to `insert_rows`.
    pub rows: AtomicU64,
    /// `ensure_table`, `table`, `add_columns` and `ensure_unique_view` calls.
    pub metadata_calls: AtomicU64,
    /// While set, `insert_rows` fails with a transient error and writes nothing.
    pub failing: AtomicBool,
    /// How long each `insert_rows` call took.
    pub insert_times: Mutex<Vec<Duration>>,
}

impl Observed {
    pub fn new(inner: DuckDbWarehouse) -> Self {
        Self {
            inner,
            inserts: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            metadata_calls: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            insert_times: Mutex::default(),
        }
    }
}

#[async_trait]
impl Warehouse for Observed {
    fn dataset(&self) -> &str {
        self.inner.dataset()
    }
    async fn ensure_table(&self, spec: &TableSpec) -> Result<TableSpec, BackendError> {
        self.metadata_calls.fetch_add(1, Ordering::SeqCst);
        self.inner.ensure_table(spec).await
    }
    async fn table(&self, name: &str) -> Result<Option<TableSpec>, BackendError> {
        self.metadata_calls.fetch_add(1, Ordering::SeqCst);
        self.inner.table(name).await
    }
    async fn add_columns(&self, t: &str, a: &[Addition]) -> Result<TableSpec, BackendError> {
        self.metadata_calls.fetch_add(1, Ordering::SeqCst);
        self.inner.add_columns(t, a).await
    }
    async fn insert_rows(&self, table: &str, rows: &[Row]) -> Result<(), InsertError> {
        self.inserts.fetch_add(1, Ordering::SeqCst);
        self.rows.fetch_add(rows.len() as u64, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(BackendError::new("insert", Retry::Transient, "test outage").into());
        }
        let started = Instant::now();
        let result = self.inner.insert_rows(table, rows).await;
        self.insert_times
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(started.elapsed());
        result
    }
    async fn load_parquet(&self, t: &str, uri: &str, id: &str) -> Result<LoadOutcome, LoadError> {
        self.inner.load_parquet(t, uri, id).await
    }
    async fn list_tables(&self) -> Result<Vec<TableSummary>, BackendError> {
        self.inner.list_tables().await
    }
    async fn ensure_unique_view(&self, t: &str, id: RowIdentity) -> Result<(), BackendError> {
        self.metadata_calls.fetch_add(1, Ordering::SeqCst);
        self.inner.ensure_unique_view(t, id).await
    }
    async fn compact(
        &self,
        t: &str,
        id: RowIdentity,
        dates: DateRange,
    ) -> Result<Compaction, BackendError> {
        self.inner.compact(t, id, dates).await
    }
    async fn id_counts(&self, t: &str, w: TimeWindow) -> Result<Vec<(String, u64)>, BackendError> {
        self.inner.id_counts(t, w).await
    }
    async fn query(&self, sql: &str) -> Result<Vec<Map<String, Value>>, BackendError> {
        self.inner.query(sql).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}
