//! Background runs: each started run is a job with live progress, that can be listed and
//! cancelled. Jobs live in the memory of the instance that runs them (on Cloud Run, one
//! instance with CPU always allocated, so a run is not throttled between requests).

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use pulse_shared::publish::Publisher;
use tokio::sync::watch;

use crate::pacer::{self, Finish, Progress};
use crate::plan::Generator;
use crate::request::RunSpec;

/// Finished jobs kept for listing; older ones are forgotten first.
const KEEP_FINISHED: usize = 100;
/// Runs going at once on one instance: each holds a publisher's worth of messages in flight and
/// a task, and the instance is one (Terraform), so more would only share its CPU.
pub const MAX_RUNNING: usize = 4;

/// A run refused because [`MAX_RUNNING`] are going: wait for one, or cancel one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{MAX_RUNNING} runs are going on this instance already; wait for one to end or cancel one")]
pub struct TooManyRuns;

/// Where a job is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    Running,
    Completed,
    Cancelled,
    /// Publishing cannot succeed; the message says why and what to check.
    Failed(String),
}

/// One run in the background.
#[derive(Debug)]
pub struct Job {
    pub id: String,
    pub spec: RunSpec,
    pub started_at: DateTime<Utc>,
    pub progress: Progress,
    state: Mutex<(JobState, Option<DateTime<Utc>>)>,
    cancel: watch::Sender<bool>,
}

impl Job {
    /// The job's state, and when it finished if it has.
    pub fn state(&self) -> (JobState, Option<DateTime<Utc>>) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Asks the job to stop; messages not yet sent will not be. A finished job is unchanged.
    pub fn cancel(&self) {
        self.cancel.send_replace(true);
    }

    fn finish(&self, finish: Finish) {
        let state = match finish {
            Finish::Completed => JobState::Completed,
            Finish::Cancelled => JobState::Cancelled,
            Finish::Failed(why) => JobState::Failed(why),
        };
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = (state, Some(Utc::now()));
    }
}

/// The jobs of this instance.
#[derive(Debug, Default)]
pub struct Jobs {
    jobs: Mutex<Vec<Arc<Job>>>,
    started: Mutex<u64>,
}

impl Jobs {
    /// Starts `spec` in the background, publishing through `publisher`.
    pub fn start(
        &self,
        spec: RunSpec,
        publisher: Arc<dyn Publisher>,
        max_event_bytes: usize,
    ) -> Result<Arc<Job>, TooManyRuns> {
        // Held until the job is listed, so two starts cannot both take the last place.
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if jobs
            .iter()
            .filter(|j| j.state().0 == JobState::Running)
            .count()
            >= MAX_RUNNING
        {
            return Err(TooManyRuns);
        }
        let number = {
            let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
            *started += 1;
            *started
        };
        let started_at = Utc::now();
        let plan = Generator::new(spec.seed, started_at)
            .with_max_event_bytes(max_event_bytes)
            .plan(&spec.scenario);
        let (cancel, mut cancelled) = watch::channel(false);
        let job = Arc::new(Job {
            id: format!("job-{number}"),
            progress: Progress::new(spec.scenario.count),
            spec,
            started_at,
            state: Mutex::new((JobState::Running, None)),
            cancel,
        });
        remember(&mut jobs, job.clone());
        drop(jobs);
        let running = job.clone();
        tokio::spawn(async move {
            let job = running;
            tracing::info!(
                job = %job.id,
                scenario = %job.spec.scenario.name,
                count = job.spec.scenario.count,
                rate = job.spec.scenario.rate(),
                seed = job.spec.seed,
                topic = %job.spec.topic,
                "run started"
            );
            let stop = async move {
                let _ = cancelled.wait_for(|stop| *stop).await;
            };
            let finish = pacer::publish(
                plan,
                publisher.as_ref(),
                &job.spec.topic,
                &job.progress,
                stop,
            )
            .await;
            let p = job.progress.snapshot();
            tracing::info!(
                job = %job.id,
                sent = p.sent,
                failed = p.failed,
                achieved_rate = p.achieved_rate,
                "run ended: {finish:?}"
            );
            job.finish(finish);
        });
        Ok(job)
    }

    /// Every job still remembered, oldest first.
    pub fn list(&self) -> Vec<Arc<Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The job with this id.
    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.list().into_iter().find(|job| job.id == id)
    }
}

/// Lists `job`, forgetting the oldest finished job past [`KEEP_FINISHED`].
fn remember(jobs: &mut Vec<Arc<Job>>, job: Arc<Job>) {
    let finished = jobs
        .iter()
        .filter(|j| j.state().0 != JobState::Running)
        .count();
    if finished >= KEEP_FINISHED
        && let Some(oldest) = jobs.iter().position(|j| j.state().0 != JobState::Running)
    {
        jobs.remove(oldest);
    }
    jobs.push(job);
}
