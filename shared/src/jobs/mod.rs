//! Replays that outlive a request. A replay (`POST /replay`, `POST /predict-replay`) starts as
//! a job and the request waits for it up to half its timeout: a short replay answers with its
//! report as before; a longer one answers `202` with the job, which goes on in the background
//! and can be watched and cancelled under `/jobs` ([`routes`]).
//!
//! A job that outlives its request is durable: its request and checkpoints (progress, report,
//! and the last item done) are objects in the function's bucket ([`store`]), written every
//! [`JobTiming::checkpoint_every`]. Items are listed in lexical order and counted done in that
//! order, so a checkpoint's cursor says that everything up to it is done. When the instance that
//! runs a job stops (a restart, a crash, a scale-in), its checkpoints stop too; any instance of
//! the function that sees a running job whose last checkpoint is older than
//! [`JobTiming::lease`] takes it over (at start-up, then every half lease) and goes on after the
//! cursor. Items after the cursor that were done before the stop are done again: every replay
//! is idempotent (create-if-absent writes, deduplication on `event_id` downstream), so this
//! costs time, not rows; the report then counts them again (as duplicates, for preprocess).
//!
//! On Cloud Run, work between requests needs CPU that is not throttled outside them
//! (`cpu_idle = false`); with throttled CPU a job goes on slowly until the next request.
//!
//! Hand-written: Rust's job libraries (apalis, fang, underway) keep their queue and leases in
//! Redis, PostgreSQL, MySQL or SQLite, and preprocess and inference have none of those; their
//! one durable store is the bucket, whose create-if-absent writes are the lease here. A job is
//! also one page of one replay (at most 1,000 items), so a queue of many jobs is not needed.

mod api;
mod store;

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt as _, stream};
use rand::Rng as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use utoipa::ToSchema;

pub use api::{
    JobsApi, WaitQuery, cancel_job, delete_job, document, get_job, list_jobs, replay, routes,
};

use crate::config::Config;
use crate::error::{BackendError, FunctionError, Retry};
use crate::storage::{Created, ObjectStore};
use store::JobStore;

/// Jobs listed by `GET /jobs`, the most recent first.
const LISTED: usize = 100;

/// Attempts at one item (or the listing) while its backend fails transiently.
const ATTEMPTS: u32 = 6;

/// How often a job records where it is, and when a silent one is taken over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobTiming {
    /// Between checkpoints of a durable job (5 s).
    pub checkpoint_every: Duration,
    /// A running job whose last checkpoint is older than this is taken over by another
    /// instance, or by this one after a restart (30 s).
    pub lease: Duration,
}

impl Default for JobTiming {
    fn default() -> Self {
        Self {
            checkpoint_every: Duration::from_secs(5),
            lease: Duration::from_secs(30),
        }
    }
}

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Completed,
    Cancelled,
    /// A backend failed on every attempt, or the job's request could not be read back: `error`
    /// says why. Running the same replay again is safe.
    Failed,
}

/// A job and its progress; also what each checkpoint stores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// E.g. `20260105T101500Z-3fa2c1`: its start time, then a random part.
    pub id: String,
    /// The function that runs it.
    pub function: String,
    /// What is replayed, e.g. `dead letters under dead-letter/bad_value/`.
    pub source: String,
    pub state: JobState,
    /// Why a failed job stopped.
    pub error: Option<String>,
    /// Items done (events, dead letters or archive objects).
    pub done: u64,
    /// Items in all, once listed.
    pub total: Option<u64>,
    /// The last item done: everything up to it, in lexical order, is done.
    pub cursor: Option<String>,
    /// The report so far, in the shape of the replay's own answer.
    #[schema(value_type = Object)]
    pub report: Value,
    /// Someone asked the job to stop; it stops at its next checkpoint.
    pub cancel_requested: bool,
    /// Whether the job's state is stored, so that it survives a restart (a job becomes durable
    /// once it outlives its request).
    pub durable: bool,
    /// The instance running it (or that ran it last).
    pub owner: String,
    pub started_at: DateTime<Utc>,
    /// When its state was last recorded.
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A replay a function can run as a job: its items, and what to do with one.
#[async_trait]
pub trait Replay: Send + Sync + 'static {
    /// The request body (stored as it came, so that a job can be taken over).
    type Request: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What the replay did, as the synchronous answer gives it.
    type Report: Serialize + DeserializeOwned + Default + Send + 'static;
    /// The outcome of one item.
    type Item: Send + 'static;

    /// Items worked on at once.
    const CONCURRENCY: usize;

    /// Refuses a request that cannot run; answered 400 before any job starts.
    fn check(&self, request: &Self::Request) -> Result<(), FunctionError>;

    /// What is replayed, for people, e.g. `dead letters under dead-letter/bad_value/`.
    fn describe(&self, request: &Self::Request) -> String;

    /// The items, in lexical order, and where a following page would start (replays work a
    /// page at a time, see [`crate::archive::MAX_REPLAY_PAGE`]).
    async fn list(&self, request: &Self::Request) -> Result<Listing, FunctionError>;

    /// Notes in the report where the next page starts, once the items are listed.
    fn listed(report: &mut Self::Report, next: Option<String>) {
        let _ = (report, next);
    }

    /// Replays one item.
    async fn item(&self, request: &Self::Request, name: &str) -> Result<Self::Item, FunctionError>;

    /// Adds one item's outcome to the report.
    fn count(report: &mut Self::Report, item: Self::Item);

    /// False once the function that runs the replay has stopped: its jobs stop without a word,
    /// as they would in a crash, and are taken over later.
    fn live(&self) -> bool {
        true
    }
}

/// What a replay works on.
#[derive(Debug, Default)]
pub struct Listing {
    /// Item names, in lexical order.
    pub names: Vec<String>,
    /// Where the next page starts, when more may follow.
    pub next: Option<String>,
}

/// How a started replay answered.
#[derive(Debug)]
pub enum Started<R> {
    /// Done within the request: its report.
    Finished(R),
    /// Still running (or stopped early by a cancel): the job.
    Job(Box<JobView>),
}

/// A replay's hold on its function's state: weak, so that once the function is gone its jobs
/// stop as in a crash and are taken over later ([`Replay::live`]).
pub struct Owned<T> {
    state: Weak<T>,
    function: &'static str,
}

impl<T> Owned<T> {
    /// Holds `state` (from `Arc::new_cyclic`) for the replays of `function`.
    pub fn new(state: Weak<T>, function: &'static str) -> Self {
        Self { state, function }
    }

    /// The function's state; refused, permanently, once the function is gone.
    pub fn state(&self) -> Result<Arc<T>, FunctionError> {
        self.state.upgrade().ok_or_else(|| {
            let function = self.function;
            FunctionError::Backend(BackendError::new(
                format!("{function} replay"),
                Retry::Permanent,
                format!("{function} has stopped"),
            ))
        })
    }

    /// False once the function is gone: what [`Replay::live`] answers.
    pub fn live(&self) -> bool {
        self.state.strong_count() > 0
    }
}

/// A function's replay jobs.
#[derive(Clone)]
pub struct ReplayJobs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ReplayJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayJobs")
            .field("function", &self.inner.function)
            .field("store", &self.inner.store.describe())
            .finish_non_exhaustive()
    }
}

struct Inner {
    function: &'static str,
    store: JobStore,
    timing: JobTiming,
    /// How long a request waits for its replay before answering with the job.
    wait: Duration,
    /// This instance, as a job's owner.
    owner: String,
    starter: Box<dyn Starter>,
    /// Jobs running on this instance.
    running: Mutex<BTreeMap<String, Arc<dyn Running>>>,
    /// Jobs known to be finished: the keeper does not read them again.
    settled: Mutex<BTreeSet<String>>,
    keeper: AtomicBool,
}

impl ReplayJobs {
    /// The jobs of `function`, running `work`, stored under `<jobs prefix><function>/` in the
    /// raw bucket of `objects`.
    pub fn new<W: Replay>(
        work: W,
        function: &'static str,
        objects: Arc<dyn ObjectStore>,
        config: &Config,
    ) -> Self {
        let owner = format!(
            "{}-{}-{:06x}",
            config.revision.as_deref().unwrap_or(function),
            std::process::id(),
            rand::rng().random_range(0..0x100_0000)
        );
        Self {
            inner: Arc::new(Inner {
                function,
                store: JobStore::new(
                    objects,
                    config.raw_bucket.clone(),
                    format!("{}{function}/", config.jobs_prefix),
                ),
                timing: config.jobs,
                wait: config.request_timeout / 2,
                owner,
                starter: Box::new(Typed(Arc::new(work))),
                running: Mutex::new(BTreeMap::new()),
                settled: Mutex::new(BTreeSet::new()),
                keeper: AtomicBool::new(false),
            }),
        }
    }

    /// Starts taking over the jobs that stopped with their instance: now, then every half
    /// lease, while `self` lives. Call it once the function is ready to serve; later calls do
    /// nothing. Outside a Tokio runtime it does nothing.
    pub fn resume_in_background(&self) {
        if self.inner.keeper.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.keeper.store(false, Ordering::SeqCst);
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        runtime.spawn(keep(weak));
    }

    /// Starts a replay and waits for it up to half the request timeout (or `wait`, when
    /// shorter): a bad request is refused, a replay done in time answers its report, a longer
    /// one is made durable and answered as a job.
    ///
    /// # Panics
    /// When `W` is not the replay these jobs were made with.
    pub async fn start<W: Replay>(
        &self,
        request: W::Request,
        wait: Option<Duration>,
    ) -> Result<Started<W::Report>, FunctionError> {
        let work = self
            .inner
            .starter
            .as_any()
            .downcast_ref::<Typed<W>>()
            .map(|typed| typed.0.clone())
            .expect("a replay of the kind these jobs run");
        work.check(&request)?;
        let now = Utc::now();
        let id = format!(
            "{}-{:06x}",
            now.format("%Y%m%dT%H%M%SZ"),
            rand::rng().random_range(0..0x100_0000)
        );
        let job = Arc::new(JobRun::<W>::new(
            id,
            self,
            work.describe(&request),
            request,
            Progress::new(now),
            None,
        ));
        let mut finished = job.finished.subscribe();
        self.register(job.clone());
        tokio::spawn(run(self.clone(), work, job.clone()));

        let wait = wait.map_or(self.inner.wait, |wait| wait.min(self.inner.wait));
        let done_in_time = tokio::time::timeout(wait, finished.wait_for(|done| *done))
            .await
            .is_ok();
        if !done_in_time {
            // The caller is told about the job: it must survive a restart from now on.
            if let Err(error) = job.checkpoint(&self.inner.store).await {
                tracing::warn!(job = %job.id, "{error}; the job will record its state at its next checkpoint");
            }
            if !*job.finished.borrow() {
                return Ok(Started::Job(Box::new(job.view())));
            }
        }
        // The run is over and has recorded its end: what it leaves is the answer's.
        let view = job.view();
        match view.state {
            JobState::Completed => Ok(Started::Finished(job.take_report())),
            JobState::Failed => Err(job
                .failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .unwrap_or_else(|| {
                    FunctionError::Backend(BackendError::new(
                        format!("replay job {}", view.id),
                        Retry::Transient,
                        view.error.clone().unwrap_or_default(),
                    ))
                })),
            JobState::Running | JobState::Cancelled => Ok(Started::Job(Box::new(view))),
        }
    }

    /// One job, from this instance or from storage.
    pub async fn get(&self, id: &str) -> Result<JobView, FunctionError> {
        let id = checked_id(id)?;
        if let Some(job) = self.running_here(id) {
            return Ok(job.view());
        }
        self.stored(id)
            .await?
            .ok_or_else(|| FunctionError::NotFound(format!("no job {id}")))
    }

    /// The most recent jobs, newest first.
    pub async fn list(&self) -> Result<Vec<JobView>, FunctionError> {
        let all = self.inner.store.all().await?;
        let mut views = Vec::new();
        let mut ids: BTreeSet<String> = all.keys().cloned().collect();
        ids.extend(self.lock_running().keys().cloned());
        for id in ids.into_iter().rev().take(LISTED) {
            if let Some(job) = self.running_here(&id) {
                views.push(job.view());
            } else if let Some(files) = all.get(&id)
                && let Some(view) = self.read_view(&id, files).await?
            {
                views.push(view);
            }
        }
        Ok(views)
    }

    /// Asks a job to stop; a finished job is unchanged.
    pub async fn cancel(&self, id: &str) -> Result<JobView, FunctionError> {
        let id = checked_id(id)?;
        if let Some(job) = self.running_here(id) {
            job.cancel();
            let view = job.view();
            if view.durable {
                self.inner.store.request_cancel(id).await?;
            }
            return Ok(view);
        }
        let Some(view) = self.stored(id).await? else {
            return Err(FunctionError::NotFound(format!("no job {id}")));
        };
        if view.state != JobState::Running {
            return Ok(view);
        }
        self.inner.store.request_cancel(id).await?;
        Ok(JobView {
            cancel_requested: true,
            ..view
        })
    }

    fn lock_running(&self) -> MutexGuard<'_, BTreeMap<String, Arc<dyn Running>>> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn running_here(&self, id: &str) -> Option<Arc<dyn Running>> {
        self.lock_running().get(id).cloned()
    }

    fn register(&self, job: Arc<dyn Running>) {
        self.lock_running().insert(job.id().to_owned(), job);
    }

    fn forget(&self, id: &str) {
        self.lock_running().remove(id);
    }

    async fn stored(&self, id: &str) -> Result<Option<JobView>, BackendError> {
        let files = self.inner.store.files(id).await?;
        self.read_view(id, &files).await
    }

    async fn read_view(
        &self,
        id: &str,
        files: &store::JobFiles,
    ) -> Result<Option<JobView>, BackendError> {
        let Some(latest) = files.latest else {
            return Ok(None);
        };
        // A checkpoint being written may be listed before it can be read: the one before it
        // then says where the job is.
        let mut view = None;
        for seq in (latest.saturating_sub(1)..=latest).rev() {
            view = self.inner.store.read_checkpoint(id, seq).await?;
            if view.is_some() {
                break;
            }
        }
        Ok(view.map(|view| JobView {
            cancel_requested: view.cancel_requested
                || (files.cancel && view.state == JobState::Running),
            ..view
        }))
    }

    /// Takes over every running job whose owner has been silent for a lease.
    async fn resume_orphans(&self) -> Result<(), BackendError> {
        let all = self.inner.store.all().await?;
        for (id, files) in all {
            if self.running_here(&id).is_some()
                || self
                    .inner
                    .settled
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .contains(&id)
            {
                continue;
            }
            let Some(seq) = files.latest else {
                continue;
            };
            let Some(view) = self.inner.store.read_checkpoint(&id, seq).await? else {
                continue;
            };
            if view.state != JobState::Running {
                self.inner
                    .settled
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(id);
                continue;
            }
            let silent = Utc::now().signed_duration_since(view.updated_at);
            if silent.to_std().unwrap_or_default() < self.inner.timing.lease {
                continue;
            }
            let Some(request) = self.inner.store.read_request(&id).await? else {
                continue;
            };
            self.inner
                .starter
                .resume(self, view, seq, request, files.cancel)
                .await;
        }
        Ok(())
    }
}

/// Takes over orphaned jobs while the jobs live.
async fn keep(jobs: Weak<Inner>) {
    loop {
        let Some(inner) = jobs.upgrade() else {
            return;
        };
        if !inner.starter.live() {
            return;
        }
        let period = (inner.timing.lease / 2).max(Duration::from_millis(50));
        let jobs_now = ReplayJobs { inner };
        if let Err(error) = jobs_now.resume_orphans().await {
            tracing::warn!(store = %jobs_now.inner.store.describe(), "looking for replay jobs to take over: {error}");
        }
        drop(jobs_now);
        tokio::time::sleep(period).await;
    }
}

fn checked_id(id: &str) -> Result<&str, FunctionError> {
    if !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        Ok(id)
    } else {
        Err(FunctionError::NotFound(format!(
            "no job {id:?}: job ids are letters, digits and dashes"
        )))
    }
}

/// Runs `attempt` again while it fails transiently, with growing, jittered pauses.
async fn retrying<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, FunctionError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, FunctionError>>,
{
    let mut pause = Duration::from_millis(250);
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(FunctionError::Backend(error))
                if matches!(error.retry, Retry::Transient | Retry::Throttled)
                    && tries < ATTEMPTS =>
            {
                tracing::warn!(item = what, "{error}; trying again in {pause:?}");
                let jitter = rand::rng().random_range(0..=pause.as_millis() as u64 / 2);
                tokio::time::sleep(pause + Duration::from_millis(jitter)).await;
                pause = (pause * 2).min(Duration::from_secs(8));
                tries += 1;
            }
            other => return other,
        }
    }
}

/// A job of this instance, whatever its replay.
trait Running: Send + Sync {
    fn id(&self) -> &str;
    fn view(&self) -> JobView;
    fn cancel(&self);
}

/// Starts jobs of one kind of replay, typed or from storage.
#[async_trait]
trait Starter: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn live(&self) -> bool;
    /// Takes over a stored job at checkpoint `seq`, and runs it here.
    async fn resume(
        &self,
        jobs: &ReplayJobs,
        view: JobView,
        seq: u64,
        request: Value,
        cancel: bool,
    );
}

struct Typed<W>(Arc<W>);

#[async_trait]
impl<W: Replay> Starter for Typed<W> {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn live(&self) -> bool {
        self.0.live()
    }

    async fn resume(
        &self,
        jobs: &ReplayJobs,
        view: JobView,
        seq: u64,
        request: Value,
        cancel: bool,
    ) {
        let id = view.id.clone();
        let (request, failure) = match serde_json::from_value::<W::Request>(request) {
            Ok(request) => (Some(request), None),
            Err(error) => (
                None,
                Some(format!("its stored request does not read back: {error}")),
            ),
        };
        let report = serde_json::from_value(view.report.clone()).unwrap_or_default();
        let progress = Progress {
            state: JobState::Running,
            error: None,
            done: view.done,
            total: None,
            cursor: view.cursor.clone(),
            report,
            cancel_requested: cancel,
            started_at: view.started_at,
            updated_at: view.updated_at,
            finished_at: None,
        };
        let Some(request) = request else {
            // Nothing can run it: record why, once, under the next number.
            let failed = JobView {
                state: JobState::Failed,
                error: failure,
                owner: jobs.inner.owner.clone(),
                updated_at: Utc::now(),
                finished_at: Some(Utc::now()),
                ..view
            };
            if let Err(error) = jobs
                .inner
                .store
                .write_checkpoint(&id, seq + 1, &failed)
                .await
            {
                tracing::warn!(job = %id, "{error}");
            }
            return;
        };
        let job = Arc::new(JobRun::<W>::new(
            id.clone(),
            jobs,
            view.source.clone(),
            request,
            progress,
            Some(seq),
        ));
        // Writing the next checkpoint takes the job over; another instance that got there first
        // keeps it.
        match job.checkpoint(&jobs.inner.store).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                tracing::warn!(job = %id, "cannot take the job over: {error}");
                return;
            }
        }
        tracing::info!(job = %id, done = view.done, cursor = ?view.cursor, previous_owner = %view.owner, "replay job taken over; going on after its cursor");
        if cancel {
            job.cancel();
        }
        jobs.register(job.clone());
        tokio::spawn(run(jobs.clone(), self.0.clone(), job));
    }
}

struct Progress<R> {
    state: JobState,
    error: Option<String>,
    done: u64,
    total: Option<u64>,
    cursor: Option<String>,
    report: R,
    cancel_requested: bool,
    started_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl<R: Default> Progress<R> {
    fn new(now: DateTime<Utc>) -> Self {
        Self {
            state: JobState::Running,
            error: None,
            done: 0,
            total: None,
            cursor: None,
            report: R::default(),
            cancel_requested: false,
            started_at: now,
            updated_at: now,
            finished_at: None,
        }
    }
}

/// Where a job's state is stored.
struct Durability {
    /// The last checkpoint written; `None` until the job is durable.
    seq: Option<u64>,
    /// Another instance wrote a checkpoint of ours first: it owns the job now.
    lost: bool,
}

/// One job of replay `W` on this instance.
struct JobRun<W: Replay> {
    id: String,
    function: &'static str,
    owner: String,
    source: String,
    request: W::Request,
    /// When this instance started (or took over) the job.
    began: Instant,
    progress: Mutex<Progress<W::Report>>,
    cancel: watch::Sender<bool>,
    finished: watch::Sender<bool>,
    durability: tokio::sync::Mutex<Durability>,
    durable: AtomicBool,
    /// Why the job failed, for a request still waiting on it.
    failure: Mutex<Option<FunctionError>>,
}

impl<W: Replay> JobRun<W> {
    fn new(
        id: String,
        jobs: &ReplayJobs,
        source: String,
        request: W::Request,
        progress: Progress<W::Report>,
        seq: Option<u64>,
    ) -> Self {
        let cancelled = progress.cancel_requested;
        Self {
            id,
            function: jobs.inner.function,
            owner: jobs.inner.owner.clone(),
            source,
            request,
            began: Instant::now(),
            progress: Mutex::new(progress),
            cancel: watch::channel(cancelled).0,
            finished: watch::channel(false).0,
            durability: tokio::sync::Mutex::new(Durability { seq, lost: false }),
            durable: AtomicBool::new(seq.is_some()),
            failure: Mutex::new(None),
        }
    }

    fn progress(&self) -> MutexGuard<'_, Progress<W::Report>> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_durable(&self) -> bool {
        self.durable.load(Ordering::SeqCst)
    }

    fn take_report(&self) -> W::Report {
        std::mem::take(&mut self.progress().report)
    }

    fn finish(&self, state: JobState, error: Option<String>) {
        let mut progress = self.progress();
        let now = Utc::now();
        progress.state = state;
        progress.error = error;
        progress.updated_at = now;
        progress.finished_at = Some(now);
    }

    /// Records the job's state under the next checkpoint number (the request first, when the
    /// job was not durable yet). `Ok(false)` when another instance owns the job now.
    async fn checkpoint(&self, store: &JobStore) -> Result<bool, BackendError> {
        let mut durability = self.durability.lock().await;
        if durability.lost {
            return Ok(false);
        }
        if durability.seq.is_none() {
            let request = serde_json::to_value(&self.request).map_err(|error| {
                BackendError::new(format!("record job {}", self.id), Retry::Permanent, error)
            })?;
            store.write_request(&self.id, &request).await?;
        }
        let next = durability.seq.map_or(0, |seq| seq + 1);
        self.progress().updated_at = Utc::now();
        let view = JobView {
            durable: true,
            ..self.view()
        };
        match store.write_checkpoint(&self.id, next, &view).await? {
            Created::New => {
                durability.seq = Some(next);
                self.durable.store(true, Ordering::SeqCst);
                Ok(true)
            }
            Created::AlreadyExisted => {
                tracing::info!(job = %self.id, "another instance took the job over; stopping here");
                durability.lost = true;
                Ok(false)
            }
        }
    }
}

impl<W: Replay> Running for JobRun<W> {
    fn id(&self) -> &str {
        &self.id
    }

    fn view(&self) -> JobView {
        let progress = self.progress();
        JobView {
            id: self.id.clone(),
            function: self.function.to_owned(),
            source: self.source.clone(),
            state: progress.state,
            error: progress.error.clone(),
            done: progress.done,
            total: progress.total,
            cursor: progress.cursor.clone(),
            report: serde_json::to_value(&progress.report).unwrap_or(Value::Null),
            cancel_requested: progress.cancel_requested,
            durable: self.is_durable(),
            owner: self.owner.clone(),
            started_at: progress.started_at,
            updated_at: progress.updated_at,
            finished_at: progress.finished_at,
        }
    }

    fn cancel(&self) {
        self.progress().cancel_requested = true;
        self.cancel.send_replace(true);
    }
}

/// How a job's run ended on this instance.
enum Finish {
    Completed,
    Cancelled,
    Failed(FunctionError),
    /// The function stopped, or another instance took the job over: nothing more is written.
    Abandoned,
}

/// Runs a job to its end on this instance, then records how it ended.
async fn run<W: Replay>(jobs: ReplayJobs, work: Arc<W>, job: Arc<JobRun<W>>) {
    let finish = drive(&jobs, &work, &job).await;
    let (state, error) = match finish {
        Finish::Abandoned => {
            jobs.forget(&job.id);
            return;
        }
        Finish::Completed => (JobState::Completed, None),
        Finish::Cancelled => (JobState::Cancelled, None),
        Finish::Failed(error) => {
            let message = format!(
                "{error}; running the same replay again is safe (what was done is skipped downstream)"
            );
            *job.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
            (JobState::Failed, Some(message))
        }
    };
    job.finish(state, error);
    if job.is_durable() {
        for attempt in 1..=3 {
            match job.checkpoint(&jobs.inner.store).await {
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(job = %job.id, attempt, "recording the end of the job: {error}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        jobs.inner
            .settled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(job.id.clone());
    }
    let view = job.view();
    tracing::info!(job = %job.id, state = ?view.state, done = view.done, report = %view.report, "replay job ended");
    jobs.forget(&job.id);
    job.finished.send_replace(true);
}

async fn drive<W: Replay>(jobs: &ReplayJobs, work: &Arc<W>, job: &JobRun<W>) -> Finish {
    let store = &jobs.inner.store;
    let timing = jobs.inner.timing;
    let listing = match retrying("listing", || work.list(&job.request)).await {
        Ok(listing) => listing,
        Err(_) if !work.live() => return Finish::Abandoned,
        Err(error) => return Finish::Failed(error),
    };
    let names: Vec<String> = {
        let mut progress = job.progress();
        W::listed(&mut progress.report, listing.next);
        let names: Vec<String> = listing
            .names
            .into_iter()
            .filter(|name| progress.cursor.as_ref().is_none_or(|cursor| name > cursor))
            .collect();
        progress.total = Some(progress.done + names.len() as u64);
        names
    };
    // In order, so that the cursor only moves past items that are done.
    let items = stream::iter(names)
        .map(|name| async move {
            let outcome = retrying(&name, || work.item(&job.request, &name)).await;
            (name, outcome)
        })
        .buffered(W::CONCURRENCY.max(1));
    let mut items = std::pin::pin!(items);
    let mut cancelled = job.cancel.subscribe();
    let mut tick = tokio::time::interval_at(
        Instant::now() + timing.checkpoint_every,
        timing.checkpoint_every,
    );
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = async { let _ = cancelled.wait_for(|stop| *stop).await; } => return Finish::Cancelled,
            _ = tick.tick() => {
                if !work.live() {
                    return Finish::Abandoned;
                }
                if job.is_durable() && store.files(&job.id).await.is_ok_and(|files| files.cancel) {
                    job.cancel();
                    return Finish::Cancelled;
                }
                if job.is_durable() || job.began.elapsed() >= jobs.inner.wait {
                    match job.checkpoint(store).await {
                        Ok(true) => {}
                        Ok(false) => return Finish::Abandoned,
                        Err(error) => tracing::warn!(job = %job.id, "checkpoint: {error}"),
                    }
                }
            }
            next = items.next() => match next {
                None => return Finish::Completed,
                Some((name, Ok(item))) => {
                    let mut progress = job.progress();
                    W::count(&mut progress.report, item);
                    progress.done += 1;
                    progress.cursor = Some(name);
                }
                Some((_, Err(_))) if !work.live() => return Finish::Abandoned,
                Some((_, Err(error))) => return Finish::Failed(error),
            },
        }
    }
}

#[cfg(test)]
mod tests;
