//! The local stack: each function served on its own loopback port, exactly as on Cloud Run,
//! wired by the local bus's push subscriptions, sharing one object store under the data dir.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use pulse_shared::auth::AccessTokens;

use crate::dashboard::Dashboard;
use pulse_shared::backends::Backends;
use pulse_shared::config::Config;
use pulse_shared::publish::{LocalBus, PushSubscription};
use pulse_shared::registry::catalogue::KNOWN_TYPES;
use pulse_shared::runtime::{serve_until, with_runtime_layers};
use pulse_shared::storage::ObjectStore;
use pulse_shared::views::{CURATED_VIEWS, Dialect};
use pulse_shared::warehouse::Warehouse;
use pulse_shared::warehouse::dedup::{EVENT_ROWS, PREDICTION_ROWS};
use serde_json::Map;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Which ports the servers bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortChoice {
    /// The local conventions: control and dashboard 8080, preprocess 8081, table-manager 8082,
    /// parquet-loader 8083, inference 8084, predictor 8087.
    Conventional,
    /// Any free port (tests, or a second stack beside the first).
    Any,
    /// The conventional layout moved to start at this port (control at it, preprocess one
    /// above, …): a second stack at known ports, kept across restarts (the crash test).
    From(u16),
}

impl PortChoice {
    fn port(self, conventional: u16) -> u16 {
        match self {
            PortChoice::Conventional => conventional,
            PortChoice::Any => 0,
            PortChoice::From(base) => base.saturating_add(conventional - CONTROL_PORT),
        }
    }
}

/// Port of the stack's own endpoint: the dashboard and the publish API.
pub const CONTROL_PORT: u16 = 8080;
/// Port of preprocess.
pub const PREPROCESS_PORT: u16 = 8081;
/// Port of table-manager.
pub const TABLE_MANAGER_PORT: u16 = 8082;
/// Port of parquet-loader.
pub const PARQUET_LOADER_PORT: u16 = 8083;
/// Port of inference.
pub const INFERENCE_PORT: u16 = 8084;
/// Port of the built-in predictor (the local stand-in for a Vertex AI endpoint).
pub const PREDICTOR_PORT: u16 = 8087;

/// A running local stack.
pub struct LocalStack {
    pub config: Config,
    pub bus: LocalBus,
    pub objects: Arc<dyn ObjectStore>,
    /// The warehouse (DuckDB unless started with another), opened once and shared by every
    /// function that writes tables.
    pub warehouse: Arc<dyn Warehouse>,
    pub control: SocketAddr,
    pub preprocess: SocketAddr,
    pub table_manager: SocketAddr,
    pub parquet_loader: SocketAddr,
    pub inference: SocketAddr,
    pub predictor: SocketAddr,
    stop: watch::Sender<bool>,
    /// The landing-folder watcher (the local Eventarc storage trigger).
    watcher: JoinHandle<()>,
    /// The dashboard's metrics scraper.
    scraper: JoinHandle<()>,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
}

impl LocalStack {
    /// Starts every function and subscribes it to its topic on the bus.
    pub async fn start(config: Config, ports: PortChoice) -> anyhow::Result<Self> {
        let warehouse = Backends::local_warehouse(&config)?;
        // Before any server answers: the bus may deliver what an earlier run left undelivered
        // as soon as it subscribes, and a table-manager creating `orders` at the same moment
        // would make this creation fail.
        create_curated_views(&config, warehouse.as_ref()).await?;
        let stack = Self::start_with_warehouse(config, ports, warehouse).await?;
        // Test-only faults (PULSE_TEST_FAULT_*) start once the stack is up.
        pulse_shared::faults::arm();
        Ok(stack)
    }

    /// Starts the stack over another warehouse (a BigQuery emulator in tests), without the
    /// curated views: on BigQuery they are Terraform's.
    pub async fn start_with_warehouse(
        config: Config,
        ports: PortChoice,
        warehouse: Arc<dyn Warehouse>,
    ) -> anyhow::Result<Self> {
        let objects = Backends::local_objects(&config)?;
        let bus = Backends::durable_local_bus(&config, &objects)?;
        let backends = Backends {
            objects: objects.clone(),
            publisher: pulse_shared::faults::publisher(
                config.test_faults.as_ref(),
                Arc::new(bus.clone()),
            ),
        };
        let (stop, stopped) = watch::channel(false);
        let mut servers = Vec::new();

        let (preprocess, server) = serve(
            ports.port(PREPROCESS_PORT),
            preprocess::app(preprocess::AppState::new(config.clone(), backends.clone())),
            stopped.clone(),
        )
        .await?;
        servers.push(server);

        let (table_manager, server) = serve(
            ports.port(TABLE_MANAGER_PORT),
            table_manager::app(table_manager::AppState::new(
                config.clone(),
                &backends,
                warehouse.clone(),
            )),
            stopped.clone(),
        )
        .await?;
        servers.push(server);

        let (parquet_loader, server) = serve(
            ports.port(PARQUET_LOADER_PORT),
            parquet_loader::app(parquet_loader::AppState::new(
                config.clone(),
                &backends,
                warehouse.clone(),
            )?),
            stopped.clone(),
        )
        .await?;
        servers.push(server);
        let watcher = tokio::spawn(parquet_loader::watch_landing(
            config.clone(),
            format!("http://{parquet_loader}/"),
        ));

        let (predictor, server) = serve(
            ports.port(PREDICTOR_PORT),
            with_runtime_layers(
                predictor::app(predictor::Models::builtin(), &predictor::Routes::default()),
                &config,
                predictor::FUNCTION,
            ),
            stopped.clone(),
        )
        .await?;
        servers.push(server);
        // Inference calls the predictor exactly as it calls Vertex AI on Google Cloud.
        let mut inference_config = config.clone();
        inference_config.prediction.base_url = format!("http://{predictor}");
        let (inference, server) = serve(
            ports.port(INFERENCE_PORT),
            inference::app(inference::AppState::new(
                inference_config,
                &backends,
                warehouse.clone(),
                AccessTokens::Anonymous,
            )?),
            stopped.clone(),
        )
        .await?;
        servers.push(server);

        // Subscribed once every server is up, downstream first: like Pub/Sub, a subscription
        // gets only what is published after it exists, and preprocess publishes to the
        // processed topic as soon as the bus hands it the first message an earlier run left
        // undelivered. Subscribed upstream first, a restart after a crash archived and
        // acknowledged such events while the processed topic had no subscription yet: they
        // never reached the warehouse (nor inference).
        bus.subscribe(PushSubscription::new(
            "table-manager",
            config.processed_topic.clone(),
            format!("http://{table_manager}/"),
        ));
        bus.subscribe(PushSubscription::new(
            "inference",
            config.processed_topic.clone(),
            format!("http://{inference}/"),
        ));
        bus.subscribe(PushSubscription::new(
            "preprocess",
            config.raw_topic.clone(),
            format!("http://{preprocess}/"),
        ));

        let (dashboard, scraper) = Dashboard::start(
            preprocess,
            table_manager,
            Backends::dead_letters(&config, &objects),
            config.data_dir.display().to_string(),
        );
        let (control, server) = serve(
            ports.port(CONTROL_PORT),
            crate::publish_api::router(bus.clone(), &config).merge(dashboard.router()),
            stopped,
        )
        .await?;
        servers.push(server);

        backends.log();
        tracing::info!(warehouse = %warehouse.describe(), "warehouse chosen");
        Ok(Self {
            config,
            bus,
            objects,
            warehouse,
            control,
            preprocess,
            table_manager,
            parquet_loader,
            inference,
            predictor,
            stop,
            watcher,
            scraper,
            servers,
        })
    }

    /// Where things are, for a person.
    pub fn describe(&self) -> String {
        let data_dir = self.config.data_dir.display();
        let mut text = String::new();
        let _ = writeln!(text, "Pulse local stack is up (Ctrl-C to stop)");
        let _ = writeln!(text, "  dashboard      http://{}/", self.control);
        let _ = writeln!(text, "  data dir       {data_dir}");
        let _ = writeln!(
            text,
            "  raw archive    {data_dir}/gcs/{}/{}",
            self.config.raw_bucket, self.config.raw_prefix
        );
        let _ = writeln!(
            text,
            "  dead letters   {data_dir}/gcs/{}/{}",
            self.config.raw_bucket, self.config.dead_letter_prefix
        );
        let _ = writeln!(
            text,
            "  preprocess     http://{}/  (pulse dead-letters, pulse replay; pulse status for all)",
            self.preprocess
        );
        let _ = writeln!(
            text,
            "  table-manager  http://{}/  (pulse tables, pulse query \"SELECT …\", pulse verify)",
            self.table_manager
        );
        let _ = writeln!(
            text,
            "  parquet-loader http://{}/  (drop files in {data_dir}/gcs/{}/{}<table>/; reload: POST /load)",
            self.parquet_loader, self.config.landing_bucket, self.config.landing_prefix
        );
        let _ = writeln!(
            text,
            "  inference      http://{}/  (re-score: POST /predict-replay)",
            self.inference
        );
        let _ = writeln!(
            text,
            "  predictor      http://{}/v1/{}:predict  (built-in models)",
            self.predictor,
            pulse_shared::config::LOCAL_PREDICT_ENDPOINT
        );
        let _ = writeln!(
            text,
            "  warehouse      {data_dir}/warehouse.duckdb  (dataset {})",
            self.config.dataset
        );
        let _ = writeln!(
            text,
            "  publish        curl -X POST http://{}/v1/projects/{}/topics/{}:publish \\\n                   -H 'content-type: application/json' \\\n                   -d '{{\"messages\":[{{\"data\":\"<base64 event JSON>\"}}]}}'",
            self.control, self.config.project, self.config.raw_topic
        );
        text
    }

    /// Stops accepting requests, lets those in flight finish, and waits for every server.
    pub async fn stop(self) {
        // Deliveries stop first, so none is pushed to a stopped server and dead-lettered for
        // it: what is not delivered stays in the bus's log for the next start.
        self.bus.close().await;
        self.watcher.abort();
        self.scraper.abort();
        let _ = self.stop.send(true);
        for server in self.servers {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::error!("a server stopped with an error: {err}"),
                Err(err) => tracing::error!("a server task failed: {err}"),
            }
        }
        // Every object written is a file before `pulse` returns, for the person who looks.
        if let Err(err) = self.objects.flush().await {
            tracing::error!("the local store's files may lag its journal: {err}");
        }
    }
}

/// Creates the curated views in DuckDB from the SQL Terraform gives BigQuery. A view needs its
/// tables, so the tables of the known event types and the predictions table are created first,
/// empty and exactly as table-manager and inference would create them on their first row, with
/// their `unique_*` views.
async fn create_curated_views(config: &Config, warehouse: &dyn Warehouse) -> anyhow::Result<()> {
    for spec in KNOWN_TYPES {
        let table = warehouse
            .ensure_table(&table_manager::table_spec(spec.name, &Map::new()))
            .await?;
        warehouse
            .ensure_unique_view(&table.name, EVENT_ROWS)
            .await?;
    }
    let predictions = warehouse
        .ensure_table(&inference::predictions_table_spec(&config.prediction.table))
        .await?;
    warehouse
        .ensure_unique_view(&predictions.name, PREDICTION_ROWS)
        .await?;
    for view in CURATED_VIEWS {
        warehouse
            .create_view(view.name, &view.sql(Dialect::DuckDb, warehouse.dataset()))
            .await
            .map_err(|err| anyhow::anyhow!("curated view {}: {err}", view.name))?;
    }
    Ok(())
}

async fn serve(
    port: u16,
    router: axum::Router,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e} (is a stack already running? try --any-ports)"))?;
    let address = listener.local_addr()?;
    let stop = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    Ok((address, tokio::spawn(serve_until(listener, router, stop))))
}
