//! `pulse dead-letters`: a running stack's dead letters by reason, with the newest details, or
//! one record (`--show NAME_OR_ID`), through preprocess's `GET /dead-letters` routes.

use std::fmt::Write as _;

use preprocess::{DeadLetterShown, DeadLetterSummary};

use crate::remote::{PreprocessUrl, Remote};
use crate::render::{align_right, print_json, spinner, table};

/// `pulse dead-letters`.
#[derive(Clone, Debug, clap::Args)]
pub struct DeadLettersArgs {
    /// Only the records under this prefix, e.g. `dead-letter/bad_value/2026/12/`.
    #[arg(long)]
    pub prefix: Option<String>,
    /// How many of each reason's newest records to show in detail (at most 50).
    #[arg(long, default_value_t = 3)]
    pub newest: usize,
    /// Print one record: its object name, or the message id it is named by.
    #[arg(long, value_name = "NAME_OR_ID")]
    pub show: Option<String>,
    #[command(flatten)]
    pub url: PreprocessUrl,
}

/// Prints the summary, or the one record asked for.
pub async fn run(args: &DeadLettersArgs, json: bool, quiet: bool) -> anyhow::Result<()> {
    let remote = Remote::new(&args.url.url);
    let waiting = spinner("reading the dead letters", quiet);
    if let Some(wanted) = &args.show {
        let key = if wanted.contains('/') { "name" } else { "id" };
        let shown: Result<DeadLetterShown, _> = remote
            .get_query("/dead-letters/record", &[(key, wanted)])
            .await;
        waiting.finish_and_clear();
        let shown = shown?;
        if json {
            print_json(&shown)?;
        } else {
            print!("{}", record_text(&shown)?);
        }
        return Ok(());
    }
    let mut query = vec![("newest", args.newest.to_string())];
    if let Some(prefix) = &args.prefix {
        query.push(("prefix", prefix.clone()));
    }
    let summary: Result<DeadLetterSummary, _> = remote.get_query("/dead-letters", &query).await;
    waiting.finish_and_clear();
    let summary = summary?;
    if json {
        print_json(&summary)?;
    } else {
        print!("{}", summary_text(&summary));
    }
    Ok(())
}

/// Counts by reason, then each reason's newest records.
pub fn summary_text(summary: &DeadLetterSummary) -> String {
    if summary.total == 0 {
        return format!("no dead letters under {}\n", summary.prefix);
    }
    let mut counts = table(["reason", "count"]);
    for reason in &summary.reasons {
        counts.add_row([reason.reason.clone(), reason.count.to_string()]);
    }
    align_right(&mut counts, [1]);
    let mut text = format!(
        "{} dead letters under {}\n{counts}\n",
        summary.total, summary.prefix
    );
    for reason in &summary.reasons {
        let _ = writeln!(text, "\n{} (newest first)", reason.reason);
        let mut newest = table(["id", "function", "dead-lettered at", "detail"]);
        for record in &reason.newest {
            newest.add_row([
                record.id.clone(),
                record.function.clone(),
                record.dead_lettered_at.clone(),
                record.detail.clone(),
            ]);
        }
        let _ = writeln!(text, "{newest}");
    }
    let _ = writeln!(
        text,
        "\n`pulse dead-letters --show ID` prints one; `pulse replay dead-letters REASON` \
         re-drives a reason's records after a fix"
    );
    text
}

/// One record for a person: why, where from, and what it held.
fn record_text(shown: &DeadLetterShown) -> anyhow::Result<String> {
    let record = &shown.record;
    let mut text = String::new();
    let _ = writeln!(text, "{}", shown.name);
    let _ = writeln!(text, "  reason            {}", record.reason);
    let _ = writeln!(text, "  detail            {}", record.detail);
    let _ = writeln!(text, "  function          {}", record.function);
    let _ = writeln!(text, "  dead-lettered at  {}", record.dead_lettered_at);
    if let Some(message) = &record.message {
        let _ = writeln!(text, "  message id        {}", message.message_id);
        if let Some(published) = &message.publish_time {
            let _ = writeln!(text, "  published at      {published}");
        }
        for (name, value) in &message.attributes {
            let _ = writeln!(text, "  attribute         {name}={value}");
        }
    }
    if let Some(subscription) = &record.subscription {
        let _ = writeln!(text, "  subscription      {subscription}");
    }
    match (&shown.data, &record.body) {
        (Some(data), _) => {
            let _ = writeln!(text, "data:\n{}", serde_json::to_string_pretty(data)?);
        }
        (None, Some(body)) => {
            let _ = writeln!(text, "request body:\n{body}");
        }
        (None, None) => {}
    }
    Ok(text)
}
