//! `pulse generate`: runs the event generator in-process against the local stack, with a
//! progress bar, waits until the pipeline has settled, and summarises the run.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use event_generator::pacer::{self, Finish, Progress, ProgressSnapshot};
use event_generator::request::parse_mix_list;
use event_generator::{Generator, RunRequest, RunSpec};
use indicatif::{ProgressBar, ProgressStyle};
use pulse::publish_api::{BusBacklog, PublishClient};
use pulse::stack::{LocalStack, PortChoice};
use pulse_shared::config::Config;
use pulse_shared::error::BackendError;
use pulse_shared::metrics;
use pulse_shared::publish::{OutgoingMessage, Publisher};
use pulse_shared::runtime::shutdown_signal;

/// How long to wait for the pipeline to settle after the last message.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(300);

/// What to generate: a named scenario, overrides of it, or a custom run.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// A named scenario: quick_sample, light_demo, moderate_load, heavy_load, burst_test,
    /// stress_test, duplicate_storm, malformed_mix, schema_drift, iot_fleet.
    #[arg(long)]
    scenario: Option<String>,
    /// Messages per second or minute: `5000/s`, `300/min`.
    #[arg(long)]
    rate: Option<String>,
    /// Messages to publish.
    #[arg(long)]
    count: Option<u64>,
    /// How long the run lasts: `90s`, `10m`, `1h`.
    #[arg(long)]
    duration: Option<String>,
    /// Type weights: `order=3,inventory=1,user_activity=4,device_telemetry=2`.
    #[arg(long)]
    mix: Option<String>,
    /// Same seed, same events (random when absent, and printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Topic to publish to (default: the raw topic).
    #[arg(long)]
    topic: Option<String>,
    /// Publish to a running stack (`pulse up`) at this control URL, `http://127.0.0.1:8080`,
    /// instead of starting one; the run goes on while the stack is down (those publishes
    /// fail and are counted), and settling is waited for through its `GET /bus`.
    #[arg(long)]
    stack: Option<String>,
    /// Append `<event_type> <event_id>` for every message the topic acknowledged to this file,
    /// a line each, as soon as it is acknowledged.
    #[arg(long)]
    acked: Option<PathBuf>,
}

/// What a run did.
#[derive(Debug)]
pub struct GenerateReport {
    spec: RunSpec,
    finish: Finish,
    progress: ProgressSnapshot,
    processed: u64,
    settled: bool,
    freshness: Freshness,
}

/// Freshness of the rows the run wrote, from the stack's `/metrics` once it settled: the
/// summaries cover about the last minute, and each figure is the worst table's.
#[derive(Debug, Default)]
struct Freshness {
    /// Event `timestamp` → row committed, p50 and p99, seconds.
    event: [Option<f64>; 2],
    /// Pub/Sub publish of the processed message → row committed, p50 and p99, seconds.
    publish: [Option<f64>; 2],
}

impl Freshness {
    async fn scrape(url: &str) -> Self {
        let text = match reqwest::get(url).await {
            Ok(response) => response.text().await,
            Err(err) => Err(err),
        };
        let samples = match text {
            Ok(text) => metrics::parse(&text),
            Err(err) => {
                tracing::warn!("freshness not read from {url}: {err}");
                return Self::default();
            }
        };
        let of = |name| ["0.5", "0.99"].map(|q| metrics::worst_quantile(&samples, name, q));
        Self {
            event: of(metrics::FRESHNESS_EVENT_SECONDS),
            publish: of(metrics::FRESHNESS_PUBLISH_SECONDS),
        }
    }
}

/// Starts the stack, runs the generator against its bus at the scenario's pace (Ctrl-C stops
/// it early), waits for the pipeline to settle, and stops the stack.
pub async fn run(
    config: Config,
    ports: PortChoice,
    args: GenerateArgs,
    quiet: bool,
) -> anyhow::Result<GenerateReport> {
    let request = RunRequest {
        scenario: args.scenario,
        rate: args.rate,
        count: args.count,
        duration: args.duration,
        mix: args.mix.as_deref().map(parse_mix_list).transpose()?,
        seed: args.seed,
        topic: args.topic,
    };
    let spec = request.resolve(&config.raw_topic)?;
    let target = match &args.stack {
        Some(url) => Target::Running(RunningStack::new(url, &config)),
        None => Target::Started(Box::new(LocalStack::start(config.clone(), ports).await?)),
    };
    let plan = Generator::new(spec.seed, Utc::now())
        .with_max_event_bytes(config.max_event_bytes)
        .plan(&spec.scenario);
    let progress = Progress::new(spec.scenario.count);
    let publisher: Arc<dyn Publisher> = match &args.acked {
        Some(path) => Arc::new(AckLog::open(target.publisher(), path)?),
        None => target.publisher(),
    };

    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(spec.scenario.count)
    }
    .with_style(
        ProgressStyle::with_template(
            "{spinner} {msg:>12} [{bar:40}] {pos}/{len} sent, {per_sec}, eta {eta}",
        )?
        .progress_chars("=> "),
    );
    bar.set_message(spec.scenario.name.clone());
    let finish = {
        let run = pacer::publish(
            plan,
            publisher.as_ref(),
            &spec.topic,
            &progress,
            shutdown_signal(),
        );
        tokio::pin!(run);
        loop {
            tokio::select! {
                finish = &mut run => break finish,
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    let p = progress.snapshot();
                    bar.set_position(p.sent + p.failed);
                }
            }
        }
    };
    let p = progress.snapshot();
    bar.set_position(p.sent + p.failed);
    bar.finish_and_clear();

    let settling = pulse::render::spinner("waiting for the pipeline to settle", quiet);
    let settled = tokio::time::timeout(SETTLE_TIMEOUT, target.settled())
        .await
        .is_ok();
    settling.finish_and_clear();
    let report = GenerateReport {
        processed: target.published(&config.processed_topic).await,
        spec,
        finish,
        progress: progress.snapshot(),
        settled,
        freshness: Freshness::scrape(&target.metrics_url()).await,
    };
    if let Target::Started(stack) = target {
        stack.stop().await;
    }
    Ok(report)
}

/// Where the run publishes: a stack it started, or one running already.
enum Target {
    Started(Box<LocalStack>),
    Running(RunningStack),
}

impl Target {
    fn publisher(&self) -> Arc<dyn Publisher> {
        match self {
            Target::Started(stack) => Arc::new(stack.bus.clone()),
            Target::Running(running) => running.client.clone(),
        }
    }

    /// Resolves once every delivery has been acknowledged or dead-lettered.
    async fn settled(&self) {
        match self {
            Target::Started(stack) => stack.bus.settled().await,
            Target::Running(running) => running.settled().await,
        }
    }

    async fn published(&self, topic: &str) -> u64 {
        match self {
            Target::Started(stack) => stack.bus.published(topic),
            Target::Running(running) => running
                .status()
                .await
                .and_then(|status| status.published.get(topic).copied())
                .unwrap_or_default(),
        }
    }

    fn metrics_url(&self) -> String {
        match self {
            Target::Started(stack) => format!("http://{}/metrics", stack.preprocess),
            Target::Running(running) => format!("{}/metrics", running.url),
        }
    }
}

/// A stack `pulse up` runs, reached at its control URL.
struct RunningStack {
    url: String,
    client: Arc<dyn Publisher>,
}

impl RunningStack {
    fn new(url: &str, config: &Config) -> Self {
        let url = url.trim_end_matches('/').to_owned();
        Self {
            client: Arc::new(PublishClient::new(&url, &config.project)),
            url,
        }
    }

    async fn status(&self) -> Option<BusBacklog> {
        let response = reqwest::get(format!("{}/bus", self.url)).await.ok()?;
        response.json().await.ok()
    }

    /// Settled once the bus has owed nothing on two reads in a row (a restarted stack may
    /// still be reading its log on the first).
    async fn settled(&self) {
        let mut idle = 0;
        while idle < 2 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            match self.status().await {
                Some(status) if status.undelivered == 0 => idle += 1,
                _ => idle = 0,
            }
        }
    }
}

/// Publishes through another publisher and appends the type and id of each acknowledged event
/// to a file, with one `write` each, so a line is whole even if the process is killed.
struct AckLog {
    inner: Arc<dyn Publisher>,
    file: Mutex<std::fs::File>,
}

impl AckLog {
    fn open(inner: Arc<dyn Publisher>, path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|err| anyhow::anyhow!("--acked {}: {err}", path.display()))?;
        Ok(Self {
            inner,
            file: Mutex::new(file),
        })
    }
}

#[async_trait]
impl Publisher for AckLog {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn publish(&self, topic: &str, message: OutgoingMessage) -> Result<String, BackendError> {
        #[derive(serde::Deserialize)]
        struct Ids {
            event_type: Option<String>,
            event_id: Option<String>,
        }
        let data = message.data.clone();
        let message_id = self.inner.publish(topic, message).await?;
        if let Ok(Ids {
            event_type: Some(event_type),
            event_id: Some(event_id),
        }) = serde_json::from_slice(&data)
        {
            let line = format!("{event_type} {event_id}\n");
            let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(err) = file.write_all(line.as_bytes()) {
                tracing::error!("--acked: {err}");
            }
        }
        Ok(message_id)
    }
}

impl GenerateReport {
    /// The summary as JSON, with the same numbers as the text.
    pub fn to_json(&self) -> serde_json::Value {
        let (s, p) = (&self.spec, &self.progress);
        serde_json::json!({
            "scenario": s.scenario.name,
            "seed": s.seed,
            "topic": s.topic,
            "outcome": self.outcome(),
            "planned": p.planned,
            "sent": p.sent,
            "duplicates": p.duplicates,
            "malformed": p.malformed,
            "anomalies": p.anomalies,
            "failed": p.failed,
            "achieved_rate_per_second": p.achieved_rate,
            "target_rate_per_second": s.scenario.rate(),
            "elapsed_seconds": p.elapsed.as_secs_f64(),
            "processed_published": self.processed,
            "settled": self.settled,
            "freshness_event_seconds": {"p50": self.freshness.event[0], "p99": self.freshness.event[1]},
            "freshness_publish_seconds": {"p50": self.freshness.publish[0], "p99": self.freshness.publish[1]},
        })
    }

    /// What went wrong, if anything: the run failed, a publish failed (those events are not in
    /// the topic), or the pipeline did not settle. A run stopped with Ctrl-C is not a problem.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Finish::Failed(why) = &self.finish {
            problems.push(format!("the run failed: {why}"));
        }
        if self.progress.failed > 0 {
            problems.push(format!(
                "{} message(s) could not be published and are not in the topic",
                self.progress.failed
            ));
        }
        if !self.settled {
            problems.push(format!(
                "the pipeline had not settled after {} s",
                SETTLE_TIMEOUT.as_secs()
            ));
        }
        problems
    }

    fn outcome(&self) -> String {
        match &self.finish {
            Finish::Completed => "completed".to_owned(),
            Finish::Cancelled => "cancelled".to_owned(),
            Finish::Failed(why) => format!("failed: {why}"),
        }
    }
}

impl fmt::Display for GenerateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, p) = (&self.spec, &self.progress);
        writeln!(
            f,
            "pulse generate: {} ({})",
            s.scenario.name,
            self.outcome()
        )?;
        writeln!(
            f,
            "  seed                    {} (same seed, same events)",
            s.seed
        )?;
        writeln!(f, "  topic                   {}", s.topic)?;
        writeln!(f, "  sent                    {} of {}", p.sent, p.planned)?;
        writeln!(f, "    duplicates            {}", p.duplicates)?;
        writeln!(f, "    malformed             {}", p.malformed)?;
        writeln!(f, "    telemetry anomalies   {}", p.anomalies)?;
        writeln!(f, "  failed to publish       {}", p.failed)?;
        writeln!(
            f,
            "  rate                    {:.1}/s achieved, {:.1}/s target, over {:.1} s",
            p.achieved_rate,
            s.scenario.rate(),
            p.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  pipeline                {} published to the processed topic{}",
            self.processed,
            if self.settled {
                ""
            } else {
                "; NOT settled: deliveries were still in flight when the wait ended"
            }
        )?;
        let seconds =
            |value: Option<f64>| value.map_or_else(|| "—".to_owned(), |v| format!("{v:.3} s"));
        let [event_p50, event_p99] = self.freshness.event.map(seconds);
        let [publish_p50, publish_p99] = self.freshness.publish.map(seconds);
        write!(
            f,
            "  freshness (last minute) event → row p50 {event_p50}, p99 {event_p99}; publish → row p50 {publish_p50}, p99 {publish_p99}"
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose

    use super::*;

    fn report(finish: Finish, failed: u64, settled: bool) -> GenerateReport {
        GenerateReport {
            spec: RunRequest {
                scenario: Some("light_demo".to_owned()),
                ..RunRequest::default()
            }
            .resolve("events-raw")
            .unwrap(),
            finish,
            progress: ProgressSnapshot {
                failed,
                ..ProgressSnapshot::default()
            },
            processed: 0,
            settled,
            freshness: Freshness::default(),
        }
    }

    #[test]
    fn a_clean_or_cancelled_run_has_no_problems_and_anything_else_is_named() {
        assert!(report(Finish::Completed, 0, true).problems().is_empty());
        assert!(report(Finish::Cancelled, 0, true).problems().is_empty());
        let problems = report(Finish::Failed("the bus stopped".to_owned()), 3, false).problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("the bus stopped"));
        assert!(problems[1].starts_with("3 message(s)"));
        assert!(problems[2].contains("not settled"));
    }
}
