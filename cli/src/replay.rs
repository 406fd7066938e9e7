//! `pulse replay`: re-drive what a running stack set aside, through its own replay routes:
//! dead letters under a prefix and a slice of the raw archive through preprocess's
//! `POST /replay` (page after page, following `next_after`), one landing object through
//! parquet-loader's `POST /load`.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use preprocess::{RawSlice, ReplayReport};
use serde::Serialize;
use serde_json::{Value, json};

use crate::remote::{ParquetLoaderUrl, PreprocessUrl, Remote};
use crate::render::spinner;

/// `pulse replay`.
#[derive(Clone, Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(subcommand)]
    pub what: ReplayWhat,
}

/// What to re-drive.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum ReplayWhat {
    /// Dead-lettered messages under a prefix, validated again (after a fix upstream or in
    /// Pulse): a reason (`bad_value`) or a prefix (`dead-letter/bad_value/2026/12/`).
    DeadLetters {
        /// A reason code, or a prefix under the dead-letter prefix.
        prefix: String,
        #[command(flatten)]
        url: PreprocessUrl,
    },
    /// A slice of the raw archive (event time in [from, to)), re-published to the processed
    /// topic as archived.
    Raw {
        #[arg(long)]
        event_type: String,
        /// Start, RFC 3339.
        #[arg(long)]
        from: DateTime<Utc>,
        /// End, excluded.
        #[arg(long)]
        to: DateTime<Utc>,
        /// Only these events (repeat the flag).
        #[arg(long = "event-id", value_name = "ID")]
        event_ids: Vec<String>,
        #[command(flatten)]
        url: PreprocessUrl,
    },
    /// One landing object, loaded again with the trigger's checks and load id (a generation
    /// already loaded is not loaded twice).
    Object {
        /// The object name, e.g. `landing/sales/2026-12-05.parquet`.
        name: String,
        /// Default: the landing bucket.
        #[arg(long)]
        bucket: Option<String>,
        /// Default: the current generation.
        #[arg(long)]
        generation: Option<i64>,
        #[command(flatten)]
        url: ParquetLoaderUrl,
    },
}

/// What a replay did.
#[derive(Debug, Serialize)]
#[serde(tag = "replayed", rename_all = "snake_case")]
pub enum ReplayOutcome {
    /// Dead letters or a raw slice, every page added up.
    Events {
        /// Requests it took (pages of the prefix or slice).
        pages: u64,
        #[serde(flatten)]
        report: ReplayReport,
    },
    /// parquet-loader's answer for the object.
    Object { outcome: Value },
}

impl ReplayOutcome {
    /// What the replay left undone, for the exit code.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self {
            ReplayOutcome::Events { report, .. } => {
                let again: u64 = report.dead_lettered.values().sum();
                if again > 0 {
                    problems.push(format!("{again} events were dead-lettered again"));
                }
                if !report.unreadable.is_empty() {
                    problems.push(format!(
                        "{} objects could not be read",
                        report.unreadable.len()
                    ));
                }
            }
            ReplayOutcome::Object { outcome } => match outcome["outcome"].as_str() {
                Some("loaded") => {}
                Some(other) => problems.push(format!(
                    "the object was {other}: {}",
                    outcome["detail"]
                        .as_str()
                        .or(outcome["reason"].as_str())
                        .unwrap_or_default()
                )),
                None => problems.push("parquet-loader's answer has no outcome".to_owned()),
            },
        }
        problems
    }
}

impl fmt::Display for ReplayOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayOutcome::Events { pages, report } => {
                writeln!(f, "replayed in {pages} request(s):")?;
                writeln!(f, "  accepted      {}", report.accepted)?;
                writeln!(f, "  duplicates    {}", report.duplicates)?;
                writeln!(f, "  republished   {}", report.republished)?;
                let again: u64 = report.dead_lettered.values().sum();
                writeln!(f, "  dead-lettered {again}")?;
                for (reason, count) in &report.dead_lettered {
                    writeln!(f, "    {reason:<20} {count}")?;
                }
                writeln!(f, "  unreadable    {}", report.unreadable.len())?;
                for name in &report.unreadable {
                    writeln!(f, "    {name}")?;
                }
                Ok(())
            }
            ReplayOutcome::Object { outcome } => {
                let text = serde_json::to_string_pretty(outcome).map_err(|_| fmt::Error)?;
                write!(f, "{text}")
            }
        }
    }
}

/// Runs the replay, with a spinner counting pages.
pub async fn run(args: &ReplayArgs, quiet: bool) -> anyhow::Result<ReplayOutcome> {
    match &args.what {
        ReplayWhat::DeadLetters { prefix, url } => {
            let prefix = if prefix.contains('/') {
                prefix.clone()
            } else {
                format!("dead-letter/{prefix}/")
            };
            pages(url, json!({ "dead_letter_prefix": prefix }), quiet).await
        }
        ReplayWhat::Raw {
            event_type,
            from,
            to,
            event_ids,
            url,
        } => {
            let slice = RawSlice {
                event_type: event_type.clone(),
                from: *from,
                to: *to,
                event_ids: (!event_ids.is_empty()).then(|| event_ids.iter().cloned().collect()),
            };
            pages(url, json!({ "raw": slice }), quiet).await
        }
        ReplayWhat::Object {
            name,
            bucket,
            generation,
            url,
        } => {
            let remote = Remote::new(&url.url);
            let waiting = spinner(format!("loading {name}"), quiet);
            let outcome = remote
                .post(
                    "/load",
                    &json!({ "name": name, "bucket": bucket, "generation": generation }),
                )
                .await;
            waiting.finish_and_clear();
            Ok(ReplayOutcome::Object { outcome: outcome? })
        }
    }
}

/// Posts `request` to preprocess's `/replay` page after page until the prefix or slice is done.
async fn pages(url: &PreprocessUrl, request: Value, quiet: bool) -> anyhow::Result<ReplayOutcome> {
    let remote = Remote::new(&url.url);
    let waiting = spinner("replaying", quiet);
    let mut total = ReplayReport::default();
    let mut pages = 0;
    let mut after: Option<String> = None;
    loop {
        let mut body = request.clone();
        if let Some(after) = &after {
            body["after"] = json!(after);
        }
        let page: ReplayReport = match remote.post("/replay", &body).await {
            Ok(page) => page,
            Err(err) => {
                waiting.finish_and_clear();
                return Err(err.into());
            }
        };
        pages += 1;
        after = page.next_after.clone();
        merge(&mut total, page);
        waiting.set_message(format!(
            "replaying: {pages} page(s), {} accepted, {} republished",
            total.accepted, total.republished
        ));
        if after.is_none() {
            break;
        }
    }
    waiting.finish_and_clear();
    Ok(ReplayOutcome::Events {
        pages,
        report: total,
    })
}

fn merge(total: &mut ReplayReport, page: ReplayReport) {
    total.accepted += page.accepted;
    total.duplicates += page.duplicates;
    total.republished += page.republished;
    let mut again: BTreeMap<String, u64> = std::mem::take(&mut total.dead_lettered);
    for (reason, count) in page.dead_lettered {
        *again.entry(reason).or_default() += count;
    }
    total.dead_lettered = again;
    total.unreadable.extend(page.unreadable);
}
