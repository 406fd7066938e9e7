//! Test-only fault injection: the local backends told to fail a share of their calls, or stall,
//! for a while, so the crash and fault tests (`scripts/chaos.py faults`) can show that nothing
//! is lost or doubled when backends misbehave and then recover.
//!
//! Configured by environment variables documented as test-only (the README's configuration):
//! `PULSE_TEST_FAULT_RATE` (share of calls that fail, as a transient backend error),
//! `PULSE_TEST_FAULT_STALL_RATE` and `PULSE_TEST_FAULT_STALL_MS` (share of calls that wait that
//! long first), `PULSE_TEST_FAULT_SECONDS` (how long the faults last once armed; unset: for
//! ever) and `PULSE_TEST_FAULT_BACKENDS` (`objects,warehouse,publish`, the default). Refused on
//! Cloud Run. The local stack arms the faults once it is up, so its own start-up is spared; a
//! lone function arms them at once. Every fault is counted in
//! `pulse_test_faults_total{backend,kind}`.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::config::FaultConfig;
use crate::error::{BackendError, Retry};
use crate::publish::{OutgoingMessage, Publisher};
use crate::storage::{ByteRange, Created, ObjectStore, RangeRead};
use crate::warehouse::Row;
use crate::warehouse::{
    Addition, Compaction, DateRange, InsertError, LoadError, LoadOutcome, RowIdentity, TableSpec,
    TableSummary, TimeWindow, Warehouse,
};

/// The faults of this process: configured once, armed once.
pub struct Faults {
    config: FaultConfig,
    armed_at: OnceLock<Instant>,
}

static FAULTS: OnceLock<Option<Arc<Faults>>> = OnceLock::new();

/// This process's faults, made from the first configuration that asks (`None`: no faults).
fn faults(config: Option<&FaultConfig>) -> Option<Arc<Faults>> {
    FAULTS
        .get_or_init(|| {
            config.map(|config| {
                tracing::warn!(
                    ?config,
                    "TEST-ONLY fault injection is configured (PULSE_TEST_FAULT_*): backends \
                     will fail on purpose"
                );
                Arc::new(Faults {
                    config: config.clone(),
                    armed_at: OnceLock::new(),
                })
            })
        })
        .clone()
}

/// Starts the faults' time (the local stack calls it once it is up); later calls change
/// nothing.
pub fn arm() {
    if let Some(Some(faults)) = FAULTS.get()
        && faults.armed_at.set(Instant::now()).is_ok()
    {
        tracing::warn!("TEST-ONLY fault injection armed");
    }
}

impl Faults {
    /// Before each call: perhaps stall, perhaps fail.
    async fn before(&self, backend: &'static str, operation: &str) -> Result<(), BackendError> {
        let Some(armed_at) = self.armed_at.get() else {
            return Ok(());
        };
        if self
            .config
            .lasting
            .is_some_and(|lasting| armed_at.elapsed() >= lasting)
        {
            return Ok(());
        }
        if rand::random::<f64>() < self.config.stall_rate {
            metrics::counter!("pulse_test_faults_total", "backend" => backend, "kind" => "stall")
                .increment(1);
            tokio::time::sleep(self.config.stall).await;
        }
        if rand::random::<f64>() < self.config.rate {
            metrics::counter!("pulse_test_faults_total", "backend" => backend, "kind" => "failure")
                .increment(1);
            return Err(BackendError::new(
                operation.to_owned(),
                Retry::Transient,
                "injected fault (PULSE_TEST_FAULT_RATE, test-only)",
            ));
        }
        Ok(())
    }
}

/// `store`, failing as configured when `config` asks for faults on objects.
pub fn objects(config: Option<&FaultConfig>, store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    match faults(config) {
        Some(faults) if faults.config.objects => Arc::new(FaultyObjects {
            inner: store,
            faults,
        }),
        _ => store,
    }
}

/// `warehouse`, failing as configured when `config` asks for faults on the warehouse.
pub fn warehouse(
    config: Option<&FaultConfig>,
    warehouse: Arc<dyn Warehouse>,
) -> Arc<dyn Warehouse> {
    match faults(config) {
        Some(faults) if faults.config.warehouse => Arc::new(FaultyWarehouse {
            inner: warehouse,
            faults,
        }),
        _ => warehouse,
    }
}

/// `publisher`, failing as configured when `config` asks for faults on publishing.
pub fn publisher(
    config: Option<&FaultConfig>,
    publisher: Arc<dyn Publisher>,
) -> Arc<dyn Publisher> {
    match faults(config) {
        Some(faults) if faults.config.publish => Arc::new(FaultyPublisher {
            inner: publisher,
            faults,
        }),
        _ => publisher,
    }
}

struct FaultyObjects {
    inner: Arc<dyn ObjectStore>,
    faults: Arc<Faults>,
}

#[async_trait]
impl ObjectStore for FaultyObjects {
    fn describe(&self) -> String {
        format!("{} (with test-only faults)", self.inner.describe())
    }

    async fn create_if_absent(
        &self,
        bucket: &str,
        name: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<Created, BackendError> {
        self.faults
            .before("objects", &format!("write {bucket}/{name}"))
            .await?;
        self.inner
            .create_if_absent(bucket, name, body, content_type)
            .await
    }

    async fn read(&self, bucket: &str, name: &str) -> Result<Option<Bytes>, BackendError> {
        self.faults
            .before("objects", &format!("read {bucket}/{name}"))
            .await?;
        self.inner.read(bucket, name).await
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, BackendError> {
        self.faults
            .before("objects", &format!("list {bucket}/{prefix}"))
            .await?;
        self.inner.list(bucket, prefix).await
    }

    async fn read_range(
        &self,
        bucket: &str,
        name: &str,
        range: ByteRange,
        generation: Option<i64>,
    ) -> Result<Option<RangeRead>, BackendError> {
        self.faults
            .before("objects", &format!("read {bucket}/{name}"))
            .await?;
        self.inner.read_range(bucket, name, range, generation).await
    }

    async fn copy(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
        to: &str,
    ) -> Result<bool, BackendError> {
        self.faults
            .before("objects", &format!("copy {bucket}/{name}"))
            .await?;
        self.inner.copy(bucket, name, generation, to).await
    }

    async fn delete(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<(), BackendError> {
        self.faults
            .before("objects", &format!("delete {bucket}/{name}"))
            .await?;
        self.inner.delete(bucket, name, generation).await
    }

    fn uri(&self, bucket: &str, name: &str) -> String {
        self.inner.uri(bucket, name)
    }

    async fn flush(&self) -> Result<(), BackendError> {
        self.inner.flush().await
    }
}

struct FaultyWarehouse {
    inner: Arc<dyn Warehouse>,
    faults: Arc<Faults>,
}

#[async_trait]
impl Warehouse for FaultyWarehouse {
    fn dataset(&self) -> &str {
        self.inner.dataset()
    }

    async fn ensure_table(&self, spec: &TableSpec) -> Result<TableSpec, BackendError> {
        self.faults.before("warehouse", "ensure table").await?;
        self.inner.ensure_table(spec).await
    }

    async fn table(&self, name: &str) -> Result<Option<TableSpec>, BackendError> {
        self.faults.before("warehouse", "read table").await?;
        self.inner.table(name).await
    }

    async fn add_columns(
        &self,
        table: &str,
        additions: &[Addition],
    ) -> Result<TableSpec, BackendError> {
        self.faults.before("warehouse", "add columns").await?;
        self.inner.add_columns(table, additions).await
    }

    async fn insert_rows(&self, table: &str, rows: &[Row]) -> Result<(), InsertError> {
        self.faults
            .before("warehouse", &format!("insert into {table}"))
            .await?;
        self.inner.insert_rows(table, rows).await
    }

    async fn load_parquet(
        &self,
        table: &str,
        uri: &str,
        load_id: &str,
    ) -> Result<LoadOutcome, LoadError> {
        self.faults
            .before("warehouse", &format!("load into {table}"))
            .await?;
        self.inner.load_parquet(table, uri, load_id).await
    }

    async fn list_tables(&self) -> Result<Vec<TableSummary>, BackendError> {
        self.faults.before("warehouse", "list tables").await?;
        self.inner.list_tables().await
    }

    async fn ensure_unique_view(
        &self,
        table: &str,
        identity: RowIdentity,
    ) -> Result<(), BackendError> {
        self.faults.before("warehouse", "ensure view").await?;
        self.inner.ensure_unique_view(table, identity).await
    }

    async fn compact(
        &self,
        table: &str,
        identity: RowIdentity,
        dates: DateRange,
    ) -> Result<Compaction, BackendError> {
        self.faults.before("warehouse", "compact").await?;
        self.inner.compact(table, identity, dates).await
    }

    async fn id_counts(
        &self,
        table: &str,
        window: TimeWindow,
    ) -> Result<Vec<(String, u64)>, BackendError> {
        self.faults.before("warehouse", "count ids").await?;
        self.inner.id_counts(table, window).await
    }

    async fn query(&self, sql: &str) -> Result<Vec<Map<String, Value>>, BackendError> {
        self.faults.before("warehouse", "query").await?;
        self.inner.query(sql).await
    }

    async fn create_view(&self, name: &str, select: &str) -> Result<(), BackendError> {
        self.faults.before("warehouse", "create view").await?;
        self.inner.create_view(name, select).await
    }

    fn describe(&self) -> String {
        format!("{} (with test-only faults)", self.inner.describe())
    }
}

struct FaultyPublisher {
    inner: Arc<dyn Publisher>,
    faults: Arc<Faults>,
}

#[async_trait]
impl Publisher for FaultyPublisher {
    fn describe(&self) -> String {
        format!("{} (with test-only faults)", self.inner.describe())
    }

    async fn publish(&self, topic: &str, message: OutgoingMessage) -> Result<String, BackendError> {
        self.faults
            .before("publish", &format!("publish to {topic}"))
            .await?;
        self.inner.publish(topic, message).await
    }
}
