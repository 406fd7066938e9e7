//! The local world's backends, built from the configuration: a directory per bucket, the
//! in-process bus, the DuckDB file, each wrapped in the test-only faults when they are asked for.

use std::sync::Arc;

use super::Backends;
use crate::config::Config;
use crate::faults;
use crate::publish::{LocalBus, LogOptions};
use crate::storage::{LocalObjectStore, ObjectStore};
use crate::warehouse::{DuckDbWarehouse, Warehouse};

impl Backends {
    /// The local object store and a lone function's bus (see [`Self::local_bus`]).
    pub(super) fn connect_local(config: &Config) -> anyhow::Result<Self> {
        let objects = Self::local_objects(config)?;
        let bus = Self::local_bus(config, &objects);
        // A lone function has no start-up to spare from the test-only faults.
        faults::arm();
        Ok(Self {
            objects,
            publisher: faults::publisher(config.test_faults.as_ref(), Arc::new(bus)),
        })
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

    /// The local warehouse, `$PULSE_DATA_DIR/warehouse.duckdb`.
    pub fn local_warehouse(config: &Config) -> anyhow::Result<Arc<dyn Warehouse>> {
        let warehouse = Arc::new(DuckDbWarehouse::open(
            &config.data_dir.join("warehouse.duckdb"),
            &config.dataset,
        )?);
        Ok(faults::warehouse(config.test_faults.as_ref(), warehouse))
    }
}
