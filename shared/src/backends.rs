//! Chooses and builds each backend from the configuration, once, at start-up.

use std::sync::Arc;

use crate::config::{BackendKind, Config};
use crate::delivery::deadletter::DeadLetterStore;
use crate::faults;
use crate::publish::{LocalBus, LogOptions, Publisher, PubsubPublisher};
use crate::storage::{GcsObjectStore, LocalObjectStore, ObjectStore};
use crate::warehouse::{BigQueryWarehouse, Warehouse};

/// The outside systems a function talks to.
#[derive(Clone)]
pub struct Backends {
    pub objects: Arc<dyn ObjectStore>,
    pub publisher: Arc<dyn Publisher>,
}

impl Backends {
    /// Builds the backends the configuration names and logs which they are. Locally the bus has
    /// no subscriptions, so what a lone function publishes is dropped, as Pub/Sub drops messages
    /// nobody subscribed to.
    pub async fn from_config(config: &Config) -> anyhow::Result<Self> {
        let backends = Self::connect(config).await?;
        backends.log();
        Ok(backends)
    }

    async fn connect(config: &Config) -> anyhow::Result<Self> {
        match config.backend {
            BackendKind::Gcp => {
                let emulated = |endpoint: &Option<String>| {
                    endpoint
                        .as_deref()
                        .is_some_and(|e| e.starts_with("http://"))
                };
                let objects = GcsObjectStore::connect(
                    config.storage_endpoint.as_deref(),
                    emulated(&config.storage_endpoint),
                )
                .await?;
                let publisher = PubsubPublisher::connect(
                    &config.project,
                    config.pubsub_endpoint.as_deref(),
                    emulated(&config.pubsub_endpoint),
                )
                .await?;
                Ok(Self {
                    objects: Arc::new(objects),
                    publisher: Arc::new(publisher),
                })
            }
            BackendKind::Local => {
                let objects = Self::local_objects(config)?;
                let bus = Self::local_bus(config, &objects);
                // A lone function has no start-up to spare from the test-only faults.
                faults::arm();
                Ok(Self {
                    objects,
                    publisher: faults::publisher(config.test_faults.as_ref(), Arc::new(bus)),
                })
            }
        }
    }

    /// The local object store: a directory per bucket under `$PULSE_DATA_DIR/gcs`.
    pub fn local_objects(config: &Config) -> std::io::Result<Arc<dyn ObjectStore>> {
        let store = Arc::new(LocalObjectStore::open(
            config.data_dir.join("gcs"),
            config.local_fsync,
        )?);
        Ok(faults::objects(config.test_faults.as_ref(), store))
    }

    /// A local bus that dead-letters into `objects` and keeps undelivered messages in memory
    /// (a lone function's: nothing subscribes to it).
    pub fn local_bus(config: &Config, objects: &Arc<dyn ObjectStore>) -> LocalBus {
        LocalBus::new(config.project.clone(), Self::dead_letters(config, objects))
    }

    /// The local stack's bus: messages are kept in `$PULSE_DATA_DIR/bus` until delivered, so
    /// they survive a crash, and what an earlier run left undelivered is delivered again.
    pub fn durable_local_bus(
        config: &Config,
        objects: &Arc<dyn ObjectStore>,
    ) -> std::io::Result<LocalBus> {
        LocalBus::open(
            config.project.clone(),
            Self::dead_letters(config, objects),
            &config.data_dir.join("bus"),
            LogOptions {
                durable: config.local_fsync,
                ..LogOptions::default()
            },
        )
    }

    /// The dead-letter store in the raw bucket.
    pub fn dead_letters(config: &Config, objects: &Arc<dyn ObjectStore>) -> DeadLetterStore {
        DeadLetterStore::new(
            objects.clone(),
            config.raw_bucket.clone(),
            config.dead_letter_prefix.clone(),
        )
    }

    /// The warehouse the configuration names, logged: BigQuery (or `BIGQUERY_ENDPOINT`'s
    /// emulator), or the local DuckDB file. Opened by the functions that write tables, once per
    /// process: the local stack shares one.
    pub async fn warehouse(config: &Config) -> anyhow::Result<Arc<dyn Warehouse>> {
        let warehouse = Self::open_warehouse(config).await?;
        tracing::info!(warehouse = %warehouse.describe(), "warehouse chosen");
        Ok(warehouse)
    }

    async fn open_warehouse(config: &Config) -> anyhow::Result<Arc<dyn Warehouse>> {
        match config.backend {
            BackendKind::Gcp => Ok(Arc::new(
                BigQueryWarehouse::connect(
                    &config.project,
                    &config.dataset,
                    config.bigquery_endpoint.as_deref(),
                )
                .await?,
            )),
            BackendKind::Local => Self::local_warehouse(config),
        }
    }

    /// The local warehouse, `$PULSE_DATA_DIR/warehouse.duckdb`.
    #[cfg(feature = "duckdb")]
    pub fn local_warehouse(config: &Config) -> anyhow::Result<Arc<dyn Warehouse>> {
        let warehouse = Arc::new(crate::warehouse::DuckDbWarehouse::open(
            &config.data_dir.join("warehouse.duckdb"),
            &config.dataset,
        )?);
        Ok(faults::warehouse(config.test_faults.as_ref(), warehouse))
    }

    /// Without the `duckdb` feature there is no local warehouse.
    #[cfg(not(feature = "duckdb"))]
    pub fn local_warehouse(_config: &Config) -> anyhow::Result<Arc<dyn Warehouse>> {
        anyhow::bail!(
            "this build has no local warehouse: build with `--features duckdb` (or run `pulse up`), \
             or set PULSE_BACKEND=gcp"
        )
    }

    /// Logs which implementation backs each capability.
    pub fn log(&self) {
        tracing::info!(
            object_storage = %self.objects.describe(),
            publish = %self.publisher.describe(),
            "backends chosen"
        );
    }
}
