//! `pulse status`: each function's health (`GET /health`, which Cloud Run lets through, unlike
//! `/healthz`), what its `/metrics` counted since it started (deliveries acknowledged and
//! redelivered, dead letters, server errors), the backlog of the local bus, and the newest dead
//! letters as the recent errors. A deployed function's `/metrics` is the answering instance's.

use std::fmt;
use std::time::Instant;

use futures_util::future::join_all;
use preprocess::{DeadLetterDetail, DeadLetterSummary};
use pulse_shared::metrics::{self, Sample};
use serde::Serialize;

use crate::publish_api::BusBacklog;
use crate::remote::{AllUrls, Remote};
use crate::render::{align_right, spinner, table};

/// `pulse status`.
#[derive(Clone, Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub urls: AllUrls,
}

/// The state of the stack.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub functions: Vec<FunctionStatus>,
    /// The local bus's backlog; none for a deployment (Pub/Sub's is in Cloud Monitoring:
    /// `subscription/num_undelivered_messages`).
    pub backlog: Option<BusBacklog>,
    /// The newest dead letters, newest first.
    pub recent_errors: Vec<DeadLetterDetail>,
    /// Dead letters in all, by reason.
    pub dead_letters: Vec<(String, u64)>,
}

/// One function.
#[derive(Debug, Serialize)]
pub struct FunctionStatus {
    pub name: String,
    pub url: String,
    /// `GET /health` answered 200.
    pub healthy: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub health_ms: Option<u64>,
    /// Deliveries to its trigger route acknowledged, since it started.
    pub acknowledged: Option<u64>,
    /// Deliveries answered 5xx or 429 (Pub/Sub delivers them again).
    pub redelivered: Option<u64>,
    /// Dead-letter records it wrote.
    pub dead_lettered: Option<u64>,
    /// Requests answered 5xx, any route.
    pub server_errors: Option<u64>,
}

impl StatusReport {
    /// A function that is down is a problem (exit 1).
    pub fn problems(&self) -> Vec<String> {
        self.functions
            .iter()
            .filter(|f| !f.healthy)
            .map(|f| {
                format!(
                    "{} is down: {}",
                    f.name,
                    f.problem.as_deref().unwrap_or("no answer")
                )
            })
            .collect()
    }
}

/// Asks every function at once, the bus and the dead-letter store.
pub async fn run(args: &StatusArgs, quiet: bool) -> StatusReport {
    let urls = &args.urls;
    let named = [
        ("preprocess", &urls.preprocess.url),
        ("table-manager", &urls.table_manager.url),
        ("parquet-loader", &urls.parquet_loader.url),
        ("inference", &urls.inference),
        ("predictor", &urls.predictor),
    ];
    let waiting = spinner("asking every function", quiet);
    let functions = join_all(
        named
            .iter()
            .filter(|(_, url)| url.as_str() != "none")
            .map(|(name, url)| function_status(name, url)),
    )
    .await;
    let backlog = match urls.control.as_str() {
        "none" => None,
        control => Remote::new(control).get("/bus").await.ok(),
    };
    let summary: Option<DeadLetterSummary> = Remote::new(&urls.preprocess.url)
        .get_query("/dead-letters", &[("newest", "5")])
        .await
        .ok();
    waiting.finish_and_clear();
    let (recent_errors, dead_letters) = summary.map_or_else(Default::default, |summary| {
        let mut newest: Vec<DeadLetterDetail> = summary
            .reasons
            .iter()
            .flat_map(|reason| &reason.newest)
            .map(|detail| DeadLetterDetail {
                name: detail.name.clone(),
                id: detail.id.clone(),
                function: detail.function.clone(),
                detail: detail.detail.clone(),
                dead_lettered_at: detail.dead_lettered_at.clone(),
            })
            .collect();
        newest.sort_by(|a, b| b.dead_lettered_at.cmp(&a.dead_lettered_at));
        newest.truncate(5);
        let counts = summary
            .reasons
            .iter()
            .map(|reason| (reason.reason.clone(), reason.count))
            .collect();
        (newest, counts)
    });
    StatusReport {
        functions,
        backlog,
        recent_errors,
        dead_letters,
    }
}

async fn function_status(name: &str, url: &str) -> FunctionStatus {
    let remote = Remote::new(url);
    let started = Instant::now();
    let health = remote.get_text("/health").await;
    let health_ms = u64::try_from(started.elapsed().as_millis()).ok();
    let (healthy, problem) = match health {
        Ok((status, _)) if status.is_success() => (true, None),
        Ok((status, body)) => (false, Some(format!("/health answered {status}: {body}"))),
        Err(err) => (false, Some(err.to_string())),
    };
    let mut status = FunctionStatus {
        name: name.to_owned(),
        url: url.to_owned(),
        healthy,
        problem,
        health_ms: healthy.then_some(health_ms).flatten(),
        acknowledged: None,
        redelivered: None,
        dead_lettered: None,
        server_errors: None,
    };
    if !healthy {
        return status;
    }
    let Ok((code, text)) = remote.get_text("/metrics").await else {
        return status;
    };
    if !code.is_success() {
        return status;
    }
    let samples = metrics::parse(&text);
    let sum = |name: &str, keep: &dyn Fn(&Sample) -> bool| -> u64 {
        samples
            .iter()
            .filter(|s| s.name == name && s.label("function") == status.name && keep(s))
            .map(|s| s.value)
            .sum::<f64>() as u64
    };
    status.acknowledged = Some(sum(metrics::DELIVERIES, &|s| {
        s.label("outcome") == "acknowledged"
    }));
    status.redelivered = Some(sum(metrics::DELIVERIES, &|s| {
        s.label("outcome") == "redelivered"
    }));
    status.dead_lettered = Some(sum(metrics::DEAD_LETTERS, &|_| true));
    status.server_errors = Some(sum(metrics::REQUESTS, &|s| {
        s.label("status").starts_with('5')
    }));
    status
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
        let mut functions = table([
            "function",
            "health",
            "acknowledged",
            "redelivered",
            "dead-lettered",
            "5xx",
            "url",
        ]);
        for function in &self.functions {
            let health = match (function.healthy, function.health_ms) {
                (true, Some(ms)) => format!("ok ({ms} ms)"),
                (true, None) => "ok".to_owned(),
                (false, _) => "DOWN".to_owned(),
            };
            functions.add_row([
                function.name.clone(),
                health,
                count(function.acknowledged),
                count(function.redelivered),
                count(function.dead_lettered),
                count(function.server_errors),
                function.url.clone(),
            ]);
        }
        align_right(&mut functions, [2, 3, 4, 5]);
        writeln!(f, "{functions}")?;
        for function in self.functions.iter().filter(|f| !f.healthy) {
            writeln!(
                f,
                "{}: {}",
                function.name,
                function.problem.as_deref().unwrap_or("no answer")
            )?;
        }
        match &self.backlog {
            Some(backlog) => {
                let published: Vec<String> = backlog
                    .published
                    .iter()
                    .map(|(topic, n)| format!("{topic} {n}"))
                    .collect();
                writeln!(
                    f,
                    "\nbacklog: {} deliveries not yet acknowledged (published since start: {})",
                    backlog.undelivered,
                    published.join(", ")
                )?;
            }
            None => writeln!(
                f,
                "\nbacklog: not known here (deployed: Pub/Sub's \
                 subscription/num_undelivered_messages in Cloud Monitoring)"
            )?,
        }
        let total: u64 = self.dead_letters.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return writeln!(f, "dead letters: none");
        }
        let reasons: Vec<String> = self
            .dead_letters
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        writeln!(f, "dead letters: {total} ({})", reasons.join(", "))?;
        writeln!(f, "recent errors (newest dead letters):")?;
        let mut recent = table(["dead-lettered at", "function", "id", "detail"]);
        for error in &self.recent_errors {
            recent.add_row([
                error.dead_lettered_at.clone(),
                error.function.clone(),
                error.id.clone(),
                error.detail.clone(),
            ]);
        }
        writeln!(f, "{recent}")
    }
}
