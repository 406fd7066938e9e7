//! Chooses and builds each backend from the configuration, once, at start-up: Google Cloud's
//! here, the local world's in `backends/local.rs` (only in a build with the `local` feature; a
//! build without it that is asked for local backends stops and says what to set).

#[cfg(feature = "local")]
mod local;

use std::sync::Arc;

use crate::config::{BackendKind, Config};
use crate::delivery::deadletter::DeadLetterStore;
use crate::publish::{Publisher, PubsubPublisher};
use crate::storage::{GcsObjectStore, ObjectStore};
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
            #[cfg(feature = "local")]
            BackendKind::Local => Self::connect_local(config),
            #[cfg(not(feature = "local"))]
            BackendKind::Local => Err(no_local_world()),
        }
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
            #[cfg(feature = "local")]
            BackendKind::Local => Self::local_warehouse(config),
            #[cfg(not(feature = "local"))]
            BackendKind::Local => Err(no_local_world()),
        }
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

/// Why a build without the local world does not start on local backends, and what to set.
#[cfg(not(feature = "local"))]
fn no_local_world() -> anyhow::Error {
    anyhow::anyhow!(
        "local backends were chosen (PULSE_BACKEND=local, the default when K_SERVICE is unset), \
         but this binary was built without them (cargo feature `local`; the Cloud Run images \
         leave it out). Set PULSE_BACKEND=gcp and GOOGLE_CLOUD_PROJECT, and STORAGE_ENDPOINT, \
         PUBSUB_ENDPOINT and BIGQUERY_ENDPOINT to use emulators; or run a build with the local \
         backends (`cargo run -p <function>`, `pulse up`)"
    )
}
