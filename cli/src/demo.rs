//! `pulse demo`: start the stack, send the sample messages to the raw topic, wait until every
//! delivery is acknowledged or dead-lettered, and report what the pipeline did, counted from
//! what it stored.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use pulse_shared::config::Config;
use pulse_shared::publish::{OutgoingMessage, Publisher as _};
use serde::Serialize;

use crate::samples::samples;
use crate::stack::{LocalStack, PortChoice};

/// How long the demo waits for the pipeline to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// What one demo run did. Counts are what this run added to the data dir.
#[derive(Debug, Serialize)]
pub struct DemoReport {
    pub data_dir: String,
    pub events_published: u64,
    pub raw_objects_written: u64,
    pub processed_messages_published: u64,
    /// Rows each table gained (the table-manager's writes, counted in the warehouse).
    pub rows_written: BTreeMap<String, u64>,
    pub dead_lettered: BTreeMap<String, u64>,
}

/// Runs the demo against a stack on `ports`.
pub async fn run(config: Config, ports: PortChoice) -> anyhow::Result<DemoReport> {
    let stack = LocalStack::start(config, ports).await?;
    let before = StoredCounts::read(&stack).await?;

    let messages = samples(Utc::now());
    for sample in &messages {
        let message = OutgoingMessage {
            data: Bytes::from(sample.data.clone()),
            ..OutgoingMessage::default()
        };
        stack.bus.publish(&stack.config.raw_topic, message).await?;
    }
    tokio::time::timeout(SETTLE_TIMEOUT, stack.bus.settled())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the pipeline did not settle within {SETTLE_TIMEOUT:?}; see the log above"
            )
        })?;

    let after = StoredCounts::read(&stack).await?;
    let report = DemoReport {
        data_dir: stack.config.data_dir.display().to_string(),
        events_published: messages.len() as u64,
        raw_objects_written: after.raw_objects - before.raw_objects,
        processed_messages_published: stack.bus.published(&stack.config.processed_topic),
        rows_written: after
            .table_rows
            .iter()
            .map(|(table, n)| {
                (
                    table.clone(),
                    n - before.table_rows.get(table).copied().unwrap_or(0),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect(),
        dead_lettered: after
            .dead_letters
            .iter()
            .map(|(reason, n)| {
                (
                    reason.clone(),
                    n - before.dead_letters.get(reason).copied().unwrap_or(0),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect(),
    };
    stack.stop().await;
    Ok(report)
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

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Pulse demo: what the pipeline did")?;
        writeln!(
            f,
            "  events published to events-raw     {}",
            self.events_published
        )?;
        writeln!(
            f,
            "  raw archive objects written        {}",
            self.raw_objects_written
        )?;
        writeln!(
            f,
            "  published to events-processed      {} (a redelivered duplicate is published again; downstream keeps one row per event_id)",
            self.processed_messages_published
        )?;
        let rows: u64 = self.rows_written.values().sum();
        writeln!(f, "  warehouse rows written             {rows}")?;
        for (table, n) in &self.rows_written {
            writeln!(f, "    {table:<32} {n}")?;
        }
        let dead: u64 = self.dead_lettered.values().sum();
        writeln!(f, "  dead-lettered                      {dead}")?;
        for (reason, n) in &self.dead_lettered {
            writeln!(f, "    {reason:<32} {n}")?;
        }
        writeln!(f, "Look at:")?;
        writeln!(f, "  raw archive    {}/gcs/pulse-raw/raw/", self.data_dir)?;
        writeln!(
            f,
            "  dead letters   {}/gcs/pulse-raw/dead-letter/",
            self.data_dir
        )?;
        writeln!(
            f,
            "  warehouse      {}/warehouse.duckdb (schema `pulse`; stop the stack before opening it)",
            self.data_dir
        )?;
        write!(
            f,
            "  run `cargo run -p pulse -- up` to keep the stack running"
        )
    }
}
