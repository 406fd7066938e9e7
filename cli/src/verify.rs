//! `pulse verify` and `pulse compact`: the reconciliation and the compaction of a running stack,
//! through its HTTP routes (table-manager's `/reconcile` and `/compact`, preprocess's `/replay`),
//! so the warehouse is only ever opened by the stack that owns it. The same commands reach a
//! deployment when given its URLs.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use pulse_shared::archive::RawSlice;
use pulse_shared::namespace;
use serde::Serialize;
use serde::de::DeserializeOwned;
use table_manager::{CompactReport, CompactRequest, ReconcileRequest, Reconciliation};

use crate::remote::{Remote, local_url};
use crate::stack::{PREPROCESS_PORT, TABLE_MANAGER_PORT};

/// Where the stack's functions answer.
#[derive(Clone, Debug, clap::Args)]
pub struct StackUrls {
    /// table-manager's base URL.
    #[arg(long, env = "PULSE_TABLE_MANAGER_URL", default_value_t = local_url(TABLE_MANAGER_PORT))]
    pub table_manager: String,
    /// preprocess's base URL (for `--repair`).
    #[arg(long, env = "PULSE_PREPROCESS_URL", default_value_t = local_url(PREPROCESS_PORT))]
    pub preprocess: String,
}

/// `pulse verify`.
#[derive(Clone, Debug, clap::Args)]
pub struct VerifyArgs {
    /// The event type to check.
    #[arg(long)]
    pub event_type: String,
    /// Start of the event time range (RFC 3339, a whole minute).
    #[arg(long)]
    pub from: DateTime<Utc>,
    /// End of the event time range, excluded.
    #[arg(long)]
    pub to: DateTime<Utc>,
    /// Re-drive missing events through preprocess's raw replay and compact the partitions that
    /// hold doubled rows (closed days only; today's wait for the scheduled compaction).
    #[arg(long)]
    pub repair: bool,
    #[command(flatten)]
    pub urls: StackUrls,
}

/// `pulse compact`.
#[derive(Clone, Debug, clap::Args)]
pub struct CompactArgs {
    /// One table; every event table and the predictions table when absent.
    #[arg(long)]
    pub table: Option<String>,
    /// First partition date (default: a week before `--to`).
    #[arg(long)]
    pub from: Option<NaiveDate>,
    /// Last partition date, before today (default: yesterday).
    #[arg(long)]
    pub to: Option<NaiveDate>,
    #[command(flatten)]
    pub urls: StackUrls,
}

/// What `pulse verify` found, and with `--repair`, what it did about it.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub event_type: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    #[serde(flatten)]
    pub found: Reconciliation,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<Repair>,
}

/// What `--repair` did.
#[derive(Debug, Default, Serialize)]
pub struct Repair {
    /// Missing events re-published from the raw archive by preprocess.
    pub redriven: u64,
    /// Compactions of the partitions that held doubled rows.
    pub compacted: Vec<table_manager::CompactReport>,
    /// Days with doubled rows left alone: today's partition takes streamed rows.
    pub left_for_scheduled_compaction: BTreeSet<NaiveDate>,
}

impl VerifyReport {
    /// What is still wrong after the command: everything found, unless repaired; rows nobody
    /// archived are never repaired.
    pub fn problems(&self) -> Vec<String> {
        let found = &self.found;
        let mut problems = Vec::new();
        if !found.unexpected.is_empty() {
            problems.push(format!(
                "{} stored events are not in the raw archive",
                found.unexpected.len()
            ));
        }
        match &self.repair {
            None => {
                if !found.missing.is_empty() {
                    problems.push(format!(
                        "{} archived events are missing",
                        found.missing.len()
                    ));
                }
                if !found.duplicated.is_empty() {
                    problems.push(format!(
                        "{} events are stored more than once",
                        found.duplicated.len()
                    ));
                }
            }
            Some(repair) if !repair.left_for_scheduled_compaction.is_empty() => {
                problems.push(format!(
                    "doubled rows of today's partition are left for the scheduled compaction: {:?}",
                    repair.left_for_scheduled_compaction
                ));
            }
            Some(_) => {}
        }
        problems
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let found = &self.found;
        writeln!(
            f,
            "{} events from {} to {}: {} archived, {} stored",
            self.event_type, self.from, self.to, found.archived, found.stored
        )?;
        writeln!(f, "  missing     {}", found.missing.len())?;
        for id in &found.missing {
            writeln!(f, "    {id}")?;
        }
        writeln!(f, "  duplicated  {}", found.duplicated.len())?;
        for (id, copies) in &found.duplicated {
            writeln!(f, "    {id} ({copies} rows)")?;
        }
        writeln!(f, "  unexpected  {}", found.unexpected.len())?;
        for id in &found.unexpected {
            writeln!(f, "    {id}")?;
        }
        if let Some(repair) = &self.repair {
            let removed: u64 = repair.compacted.iter().map(|c| c.rows_removed).sum();
            writeln!(
                f,
                "repair: {} missing events re-driven through preprocess's raw replay (run \
                 verify again once they are stored); compaction removed {removed} rows",
                repair.redriven
            )?;
        }
        Ok(())
    }
}

/// Reconciles the range an hour at a time (a progress bar on stderr unless `quiet`), repairing
/// each page's findings as it goes when asked.
pub async fn verify(args: &VerifyArgs, quiet: bool) -> anyhow::Result<VerifyReport> {
    let table_manager = Remote::new(&args.urls.table_manager);
    let preprocess = Remote::new(&args.urls.preprocess);
    let request = ReconcileRequest {
        event_type: args.event_type.clone(),
        from: args.from,
        to: args.to,
    };
    let pages = request.pages();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(pages.len() as u64)
    };
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} hours, {msg} ({eta} left)",
    )?);
    let mut found = Reconciliation::default();
    let mut repair = args.repair.then(Repair::default);
    let mut doubled_days = BTreeSet::new();
    for page in pages {
        let page_found: Reconciliation = post(&table_manager, "/reconcile", &page).await?;
        if let Some(repair) = &mut repair {
            if !page_found.missing.is_empty() {
                let slice = RawSlice {
                    event_type: page.event_type.clone(),
                    from: page.from,
                    to: page.to,
                    event_ids: Some(page_found.missing.iter().cloned().collect()),
                };
                let replayed: preprocess::ReplayReport =
                    post(&preprocess, "/replay", &serde_json::json!({ "raw": slice })).await?;
                repair.redriven += replayed.republished;
            }
            if !page_found.duplicated.is_empty() {
                doubled_days.insert(page.from.date_naive());
            }
        }
        found.merge(page_found);
        bar.set_message(format!(
            "{} archived, {} missing, {} doubled",
            found.archived,
            found.missing.len(),
            found.duplicated.len()
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(repair) = &mut repair {
        let today = Utc::now().date_naive();
        let table = namespace::event_table(&args.event_type);
        for day in doubled_days {
            if day >= today {
                repair.left_for_scheduled_compaction.insert(day);
                continue;
            }
            let request = CompactRequest {
                table: Some(table.clone()),
                from: Some(day),
                to: Some(day),
            };
            repair
                .compacted
                .push(post(&table_manager, "/compact", &request).await?);
        }
    }
    Ok(VerifyReport {
        event_type: args.event_type.clone(),
        from: args.from,
        to: args.to,
        found,
        repair,
    })
}

/// Asks table-manager to compact.
pub async fn compact(args: &CompactArgs) -> anyhow::Result<CompactReport> {
    let request = CompactRequest {
        table: args.table.clone(),
        from: args.from,
        to: args.to,
    };
    post(&Remote::new(&args.urls.table_manager), "/compact", &request).await
}

/// Posts `body` as JSON to `url` (a function's base URL and a route) and reads the JSON answer,
/// with an ID token for a deployed function.
async fn post<T: DeserializeOwned>(
    remote: &Remote,
    path: &str,
    body: &impl Serialize,
) -> anyhow::Result<T> {
    Ok(remote.post(path, body).await?)
}
