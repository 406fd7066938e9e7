//! `pulse demo`: start the stack, run the event generator's `quick_sample` through the same
//! publisher path as `pulse generate`, drop a sample Parquet file into the landing folder, wait
//! until the pipeline has settled and the file is loaded, and report what the pipeline did —
//! counted from what it stored, beside what the generator planned.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use event_generator::pacer::{self, Finish, Progress};
use event_generator::{Generator, Intent, Plan, RunRequest};
use pulse_shared::config::Config;
use pulse_shared::namespace::{event_table, load_table};
use pulse_shared::storage::{ByteRange, Created};
use serde::Serialize;

use crate::stack::{CONTROL_PORT, LocalStack, PortChoice};

/// The scenario the demo runs: every known type, one redelivered duplicate, one malformed event.
pub const SCENARIO: &str = "quick_sample";

/// The sample Parquet file (Impala's `alltypes_plain`, 8 rows; see `cli/fixtures/README.md`).
const SAMPLE_PARQUET: &[u8] = include_bytes!("../fixtures/alltypes_plain.parquet");

/// The landing folder the sample file is dropped in: it loads into `load_<folder>`.
pub const SAMPLE_PARQUET_FOLDER: &str = "alltypes_plain";

/// How long the demo waits for every delivery to be acknowledged or dead-lettered.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the demo waits for parquet-loader to load the sample file.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the demo looks for the sample file's load.
const LOAD_POLL: Duration = Duration::from_millis(200);

/// Options of `pulse demo`.
#[derive(clap::Args, Debug, Default)]
pub struct DemoArgs {
    /// Generate the events of this seed (random when absent, and printed). Events are new only
    /// once: the same seed again in the same data dir sends event ids that are stored already.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// What one demo run did. Counts are what this run added to the data dir.
#[derive(Debug, Serialize)]
pub struct DemoReport {
    pub scenario: String,
    pub seed: u64,
    pub data_dir: String,
    pub events: EventCounts,
    /// What the plan says the pipeline must store.
    pub expected: Expected,
    pub raw_objects_written: u64,
    pub processed_messages_published: u64,
    /// Rows each table gained, counted in the warehouse (event tables, the Parquet table, and
    /// the predictions table when something writes it).
    pub rows_written: BTreeMap<String, u64>,
    /// Dead-letter records written, by reason code.
    pub dead_lettered: BTreeMap<String, u64>,
    pub parquet: ParquetLoad,
    /// Rows the predictions table gained; `None` when the table does not exist.
    pub predictions_written: Option<u64>,
    pub locations: Locations,
}

/// Where a person finds what the run stored.
#[derive(Debug, Serialize)]
pub struct Locations {
    pub raw_archive: String,
    pub dead_letters: String,
    pub landing: String,
    pub warehouse: String,
    /// The warehouse's schema (BigQuery dataset) holding the tables.
    pub dataset: String,
    /// The dashboard `pulse up` serves, when the stack has one.
    pub dashboard: Option<String>,
}

/// The generator's messages, as the publisher took them.
#[derive(Debug, Serialize)]
pub struct EventCounts {
    pub generated: u64,
    /// Accepted by the raw topic (duplicates and malformed ones included).
    pub published: u64,
    pub failed_to_publish: u64,
    pub duplicates: u64,
    pub malformed: u64,
}

/// What the pipeline must store for the plan's messages.
#[derive(Debug, Default, Serialize)]
pub struct Expected {
    /// One per valid event (its duplicate is archived once).
    pub raw_objects: u64,
    /// Every valid delivery, the duplicate included (tables keep one row per event id).
    pub processed_messages: u64,
    /// One row per valid event, by table.
    pub rows: BTreeMap<String, u64>,
    /// One record per malformed message, by reason code.
    pub dead_lettered: BTreeMap<String, u64>,
}

/// The sample Parquet file's load.
#[derive(Debug, Serialize)]
pub struct ParquetLoad {
    /// Its name in the landing bucket.
    pub object: String,
    pub table: String,
    /// Rows the load wrote, as parquet-loader's ledger records them.
    pub rows: u64,
    pub load_id: String,
}

/// Runs the demo against a stack on `ports`: the whole stack is stopped before it returns.
pub async fn run(
    config: Config,
    ports: PortChoice,
    args: &DemoArgs,
    quiet: bool,
) -> anyhow::Result<DemoReport> {
    let request = RunRequest {
        scenario: Some(SCENARIO.to_owned()),
        seed: args.seed,
        ..RunRequest::default()
    };
    let spec = request.resolve(&config.raw_topic)?;
    // Everything at once: the demo shows what the pipeline stores, not the scenario's pace.
    let scenario = spec.scenario.with_duration(Duration::ZERO);
    let stack = LocalStack::start(config, ports).await?;
    let result = run_on(&stack, &scenario, spec.seed, quiet).await;
    stack.stop().await;
    result
}

async fn run_on(
    stack: &LocalStack,
    scenario: &event_generator::Scenario,
    seed: u64,
    quiet: bool,
) -> anyhow::Result<DemoReport> {
    let config = &stack.config;
    let before = StoredCounts::read(stack).await?;
    let generator =
        Generator::new(seed, Utc::now()).with_max_event_bytes(stack.config.max_event_bytes);
    // The plan is made twice, once to count and once to send: same seed, same messages.
    let expected = Expected::of(generator.plan(scenario));

    let object = drop_sample_parquet(stack).await?;
    let progress = Progress::new(scenario.count);
    let finish = pacer::publish(
        generator.plan(scenario),
        &stack.bus,
        &config.raw_topic,
        &progress,
        std::future::pending(),
    )
    .await;
    if let Finish::Failed(why) = finish {
        anyhow::bail!("the demo could not publish its events: {why}");
    }
    let waiting = crate::render::spinner(
        "waiting for every delivery and the sample file's load",
        quiet,
    );
    let settled = tokio::time::timeout(SETTLE_TIMEOUT, stack.bus.settled()).await;
    let parquet = match settled {
        Ok(()) => wait_for_load(stack, object).await,
        Err(_) => Err(anyhow::anyhow!(
            "the pipeline did not settle within {SETTLE_TIMEOUT:?}; see the log above for \
             deliveries being retried"
        )),
    };
    waiting.finish_and_clear();
    let parquet = parquet?;

    let after = StoredCounts::read(stack).await?;
    let rows_written = increase(&before.table_rows, &after.table_rows);
    // Present only once something has created the table (inference, when it runs).
    let predictions = &config.prediction.table;
    let predictions_written = after
        .table_rows
        .contains_key(predictions)
        .then(|| rows_written.get(predictions).copied().unwrap_or(0));
    let sent = progress.snapshot();
    Ok(DemoReport {
        scenario: scenario.name.clone(),
        seed,
        data_dir: config.data_dir.display().to_string(),
        events: EventCounts {
            generated: sent.planned,
            published: sent.sent,
            failed_to_publish: sent.failed,
            duplicates: sent.duplicates,
            malformed: sent.malformed,
        },
        expected,
        raw_objects_written: after.raw_objects.saturating_sub(before.raw_objects),
        processed_messages_published: stack.bus.published(&config.processed_topic),
        rows_written,
        dead_lettered: increase(&before.dead_letters, &after.dead_letters),
        parquet,
        predictions_written,
        locations: Locations::of(stack).await,
    })
}

impl Expected {
    /// Counts a plan's messages by what the pipeline must make of them.
    fn of(plan: Plan) -> Self {
        let mut expected = Self::default();
        for message in plan {
            match message.intent {
                Intent::Valid { event_type, .. } => {
                    *expected.rows.entry(event_table(event_type)).or_default() += 1;
                    expected.raw_objects += 1;
                    expected.processed_messages += 1;
                }
                Intent::Duplicate { .. } => expected.processed_messages += 1,
                Intent::Malformed { reason } => {
                    *expected
                        .dead_lettered
                        .entry(reason.code().to_owned())
                        .or_default() += 1;
                }
            }
        }
        expected
    }
}

/// Writes the sample file into the landing folder (under a name of its own, so every run is a
/// new upload) and returns its name and generation.
async fn drop_sample_parquet(stack: &LocalStack) -> anyhow::Result<(String, i64)> {
    let config = &stack.config;
    let name = format!(
        "{}{SAMPLE_PARQUET_FOLDER}/demo-{}.parquet",
        config.landing_prefix,
        Utc::now().format("%Y%m%dT%H%M%S%.6fZ")
    );
    let created = stack
        .objects
        .create_if_absent(
            &config.landing_bucket,
            &name,
            Bytes::from_static(SAMPLE_PARQUET),
            "application/vnd.apache.parquet",
        )
        .await?;
    anyhow::ensure!(
        created == Created::New,
        "{name} is in the landing bucket already; run the demo again for a new name"
    );
    let stored = stack
        .objects
        .read_range(&config.landing_bucket, &name, ByteRange::Tail(1), None)
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!("{name} vanished from the landing bucket as it was written")
        })?;
    Ok((name, stored.generation))
}

/// Waits until parquet-loader's ledger holds the load of `object` (the landing watcher announces
/// it, as Eventarc would), or the loader has quarantined it.
async fn wait_for_load(
    stack: &LocalStack,
    (name, generation): (String, i64),
) -> anyhow::Result<ParquetLoad> {
    let config = &stack.config;
    let load_id = parquet_loader::load_id(&config.landing_bucket, &name, generation);
    let error_report = format!(
        "{}.error.json",
        parquet_loader::quarantine_name(
            &config.landing_prefix,
            &config.quarantine_prefix,
            &name,
            generation
        )
    );
    let deadline = Instant::now() + LOAD_TIMEOUT;
    loop {
        if let Some(rows) = ledger_rows(stack, &load_id).await? {
            return Ok(ParquetLoad {
                object: name,
                table: load_table(SAMPLE_PARQUET_FOLDER),
                rows,
                load_id,
            });
        }
        if let Some(report) = stack
            .objects
            .read(&config.landing_bucket, &error_report)
            .await?
        {
            anyhow::bail!(
                "parquet-loader refused the sample file and moved it to quarantine: {}",
                String::from_utf8_lossy(&report)
            );
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "parquet-loader had not loaded {name} after {LOAD_TIMEOUT:?}; see the log above for \
             the landing watcher's and the loader's messages"
        );
        tokio::time::sleep(LOAD_POLL).await;
    }
}

/// The rows of load `load_id` in the local warehouse's load ledger, once it is there.
async fn ledger_rows(stack: &LocalStack, load_id: &str) -> anyhow::Result<Option<u64>> {
    let ledger = stack
        .warehouse
        .query(
            "SELECT count(*) AS n FROM duckdb_tables() \
             WHERE schema_name = '_pulse' AND table_name = 'parquet_loads'",
        )
        .await?;
    if ledger.first().and_then(|row| row["n"].as_u64()) != Some(1) {
        return Ok(None);
    }
    // A load id is `pulse_load_` and hex digits: nothing to escape.
    let rows = stack
        .warehouse
        .query(&format!(
            "SELECT rows FROM _pulse.parquet_loads WHERE load_id = '{load_id}'"
        ))
        .await?;
    Ok(rows.first().and_then(|row| row["rows"].as_u64()))
}

impl Locations {
    async fn of(stack: &LocalStack) -> Self {
        let config = &stack.config;
        let bucket = |bucket: &str, prefix: &str| {
            config
                .data_dir
                .join("gcs")
                .join(bucket)
                .join(prefix)
                .display()
                .to_string()
        };
        Self {
            raw_archive: bucket(&config.raw_bucket, &config.raw_prefix),
            dead_letters: bucket(&config.raw_bucket, &config.dead_letter_prefix),
            landing: bucket(&config.landing_bucket, &config.landing_prefix),
            warehouse: config
                .data_dir
                .join("warehouse.duckdb")
                .display()
                .to_string(),
            dataset: config.dataset.clone(),
            dashboard: dashboard(stack).await,
        }
    }
}

/// The dashboard's address under `pulse up`, if the stack serves one (an HTML page at the
/// control port's root).
async fn dashboard(stack: &LocalStack) -> Option<String> {
    let response = reqwest::get(format!("http://{}/", stack.control))
        .await
        .ok()?;
    let html = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/html"));
    (response.status().is_success() && html).then(|| format!("http://127.0.0.1:{CONTROL_PORT}/"))
}

/// How much each count grew, keeping only those that did.
fn increase(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(key, n)| {
            (
                key.clone(),
                n.saturating_sub(before.get(key).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Objects in the raw archive, dead-letter records by reason, rows by table.
struct StoredCounts {
    raw_objects: u64,
    dead_letters: BTreeMap<String, u64>,
    table_rows: BTreeMap<String, u64>,
}

impl StoredCounts {
    async fn read(stack: &LocalStack) -> anyhow::Result<Self> {
        let config = &stack.config;
        let raw = stack
            .objects
            .list(&config.raw_bucket, &config.raw_prefix)
            .await?;
        let mut dead_letters = BTreeMap::new();
        for name in stack
            .objects
            .list(&config.raw_bucket, &config.dead_letter_prefix)
            .await?
        {
            let reason = name[config.dead_letter_prefix.len()..]
                .split('/')
                .next()
                .unwrap_or_default();
            *dead_letters.entry(reason.to_owned()).or_default() += 1;
        }
        let table_rows = stack
            .warehouse
            .list_tables()
            .await?
            .into_iter()
            .map(|table| (table.spec.name, table.rows.unwrap_or(0)))
            .collect();
        Ok(Self {
            raw_objects: raw.len() as u64,
            dead_letters,
            table_rows,
        })
    }
}

impl DemoReport {
    /// Where what the pipeline stored differs from what the plan says it must store; empty
    /// when everything matches.
    pub fn mismatches(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut check = |what: &str, stored: u64, expected: u64| {
            if stored != expected {
                found.push(format!("{what}: {stored} stored, {expected} expected"));
            }
        };
        check(
            "events published",
            self.events.published,
            self.events.generated,
        );
        check(
            "raw archive objects",
            self.raw_objects_written,
            self.expected.raw_objects,
        );
        check(
            "messages published to the processed topic",
            self.processed_messages_published,
            self.expected.processed_messages,
        );
        for (table, n) in &self.expected.rows {
            check(
                &format!("rows in {table}"),
                self.rows_written.get(table).copied().unwrap_or(0),
                *n,
            );
        }
        for (reason, n) in &self.expected.dead_lettered {
            check(
                &format!("dead letters {reason}"),
                self.dead_lettered.get(reason).copied().unwrap_or(0),
                *n,
            );
        }
        check(
            "dead letters in all",
            self.dead_lettered.values().sum(),
            self.expected.dead_lettered.values().sum(),
        );
        check(
            &format!("rows in {} (the Parquet load)", self.parquet.table),
            self.rows_written
                .get(&self.parquet.table)
                .copied()
                .unwrap_or(0),
            self.parquet.rows,
        );
        found
    }
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.events;
        writeln!(
            f,
            "Pulse demo: what the pipeline did with {} (seed {}; `--seed {}` generates the same events)",
            self.scenario, self.seed, self.seed
        )?;
        writeln!(
            f,
            "  events generated                 {} ({} valid, {} duplicates, {} malformed)",
            e.generated,
            e.generated - e.duplicates - e.malformed,
            e.duplicates,
            e.malformed
        )?;
        writeln!(
            f,
            "  published to events-raw          {}{}",
            e.published,
            if e.failed_to_publish > 0 {
                format!(" ({} failed)", e.failed_to_publish)
            } else {
                String::new()
            }
        )?;
        writeln!(
            f,
            "  raw archive objects written      {} (one per valid event; the duplicate is archived once)",
            self.raw_objects_written
        )?;
        writeln!(
            f,
            "  published to events-processed    {} (every valid delivery; tables keep one row per event_id)",
            self.processed_messages_published
        )?;
        let rows: u64 = self.rows_written.values().sum();
        writeln!(f, "  warehouse rows written           {rows}")?;
        for (table, n) in &self.rows_written {
            writeln!(f, "    {table:<30} {n}")?;
        }
        let dead: u64 = self.dead_lettered.values().sum();
        writeln!(f, "  dead-lettered                    {dead}")?;
        for (reason, n) in &self.dead_lettered {
            writeln!(f, "    {reason:<30} {n}")?;
        }
        let p = &self.parquet;
        writeln!(
            f,
            "  Parquet rows loaded              {} ({} into table {}, load {})",
            p.rows, p.object, p.table, p.load_id
        )?;
        match self.predictions_written {
            Some(n) => writeln!(f, "  predictions written              {n}")?,
            None => writeln!(
                f,
                "  predictions written              none: the predictions table does not exist yet"
            )?,
        }
        let mismatches = self.mismatches();
        if mismatches.is_empty() {
            writeln!(
                f,
                "  check                            every count matches the generator's plan"
            )?;
        } else {
            writeln!(
                f,
                "  check                            MISMATCH with the generator's plan:"
            )?;
            for mismatch in &mismatches {
                writeln!(f, "    {mismatch}")?;
            }
        }
        let at = &self.locations;
        writeln!(f, "Look at:")?;
        writeln!(f, "  data dir       {}", self.data_dir)?;
        writeln!(f, "  raw archive    {}", at.raw_archive)?;
        writeln!(f, "  dead letters   {}", at.dead_letters)?;
        writeln!(
            f,
            "  landing        {} (drop Parquet files into <table>/)",
            at.landing
        )?;
        writeln!(
            f,
            "  warehouse      {} (schema `{}`; stop the stack before opening it)",
            at.warehouse, at.dataset
        )?;
        match &at.dashboard {
            Some(dashboard) => write!(
                f,
                "  dashboard      {dashboard} (run `cargo run -p pulse -- up` to keep the stack and the page up)"
            ),
            None => write!(
                f,
                "  run `cargo run -p pulse -- up` to keep the stack running"
            ),
        }
    }
}
