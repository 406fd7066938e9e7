#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use serde::Deserialize;
use tokio::sync::Semaphore;

use super::*;
use crate::storage::LocalObjectStore;

/// Replays `count` numbered items; each waits for a permit of `gate` (none are handed out
/// unless a test adds them) and is recorded in `seen`.
struct Numbers {
    gate: Arc<Semaphore>,
    seen: Arc<Mutex<Vec<String>>>,
    live: Arc<AtomicBool>,
}

#[derive(Serialize, Deserialize)]
struct Count {
    count: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Tally {
    items: u64,
}

#[async_trait]
impl Replay for Numbers {
    type Request = Count;
    type Report = Tally;
    type Item = ();
    const CONCURRENCY: usize = 4;

    fn check(&self, request: &Count) -> Result<(), FunctionError> {
        if request.count == 0 {
            return Err(FunctionError::BadRequest(
                "count must be positive".to_owned(),
            ));
        }
        Ok(())
    }

    fn describe(&self, request: &Count) -> String {
        format!("{} numbers", request.count)
    }

    async fn list(&self, request: &Count) -> Result<Listing, FunctionError> {
        Ok(Listing {
            names: (0..request.count).map(|n| format!("{n:06}")).collect(),
            next: None,
        })
    }

    async fn item(&self, _: &Count, name: &str) -> Result<(), FunctionError> {
        let stopped =
            || FunctionError::Backend(BackendError::new("item", Retry::Transient, "stopped"));
        if !self.live() {
            return Err(stopped());
        }
        let permit = self.gate.acquire().await.unwrap();
        permit.forget();
        if !self.live() {
            return Err(stopped());
        }
        self.seen.lock().unwrap().push(name.to_owned());
        Ok(())
    }

    fn count(report: &mut Tally, (): ()) {
        report.items += 1;
    }

    fn live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }
}

struct World {
    _dir: tempfile::TempDir,
    objects: Arc<dyn ObjectStore>,
    config: Config,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::local(dir.path());
    config.request_timeout = Duration::from_millis(400);
    config.jobs = JobTiming {
        checkpoint_every: Duration::from_millis(50),
        lease: Duration::from_millis(300),
    };
    let objects: Arc<dyn ObjectStore> =
        Arc::new(LocalObjectStore::open(dir.path().join("objects"), false).unwrap());
    World {
        _dir: dir,
        objects,
        config,
    }
}

struct Instance {
    jobs: ReplayJobs,
    gate: Arc<Semaphore>,
    seen: Arc<Mutex<Vec<String>>>,
    live: Arc<AtomicBool>,
}

fn instance(world: &World) -> Instance {
    let gate = Arc::new(Semaphore::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let live = Arc::new(AtomicBool::new(true));
    let jobs = ReplayJobs::new(
        Numbers {
            gate: gate.clone(),
            seen: seen.clone(),
            live: live.clone(),
        },
        "test",
        world.objects.clone(),
        &world.config,
    );
    jobs.resume_in_background();
    Instance {
        jobs,
        gate,
        seen,
        live,
    }
}

impl Instance {
    /// Starts a replay of `count` items that outlives its request.
    async fn start_job(&self, count: u64) -> Box<JobView> {
        let started = self
            .jobs
            .start::<Numbers>(Count { count }, None)
            .await
            .unwrap();
        let Started::Job(job) = started else {
            panic!("expected a job, got {started:?}");
        };
        job
    }

    /// Stops the instance as a crash would, then lets its items through: it does no more.
    fn crash(&self) {
        self.live.store(false, Ordering::SeqCst);
        self.gate.add_permits(1000);
    }
}

async fn stored_until<F: Fn(&JobView) -> bool>(jobs: &ReplayJobs, id: &str, condition: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = jobs.stored(id).await.unwrap();
        if stored.as_ref().is_some_and(&condition) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out; last stored {stored:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn view_until<F: Fn(&JobView) -> bool>(jobs: &ReplayJobs, id: &str, condition: F) -> JobView {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let view = jobs.get(id).await.unwrap();
        if condition(&view) {
            return view;
        }
        assert!(Instant::now() < deadline, "timed out; last view {view:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_short_replay_answers_its_report_and_leaves_nothing_stored() {
    let world = world();
    let one = instance(&world);
    one.gate.add_permits(10);
    let started = one
        .jobs
        .start::<Numbers>(Count { count: 10 }, None)
        .await
        .unwrap();
    let Started::Finished(report) = started else {
        panic!("expected a report, got {started:?}");
    };
    assert_eq!(report.items, 10);
    assert!(
        world
            .objects
            .list("pulse-raw", "jobs/")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(one.jobs.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_bad_request_is_refused_before_any_job() {
    let world = world();
    let one = instance(&world);
    let refused = one.jobs.start::<Numbers>(Count { count: 0 }, None).await;
    assert!(matches!(refused, Err(FunctionError::BadRequest(_))));
    let missing = one.jobs.get("nope").await;
    assert!(matches!(missing, Err(FunctionError::NotFound(_))));
    let unsafe_id = one.jobs.get("../x").await;
    assert!(matches!(unsafe_id, Err(FunctionError::NotFound(_))));
}

#[tokio::test]
async fn a_long_replay_becomes_a_durable_job_with_progress_and_can_be_cancelled() {
    let world = world();
    let one = instance(&world);
    one.gate.add_permits(5);
    let job = one.start_job(100).await;
    assert_eq!(job.state, JobState::Running);
    assert!(
        job.durable,
        "a job outliving its request is stored: {job:?}"
    );
    assert_eq!(job.source, "100 numbers");
    assert_eq!(job.done, 5);
    assert_eq!(job.total, Some(100));

    one.gate.add_permits(10);
    let view = view_until(&one.jobs, &job.id, |view| view.done == 15).await;
    assert_eq!(view.cursor.as_deref(), Some("000014"));
    assert_eq!(view.report, serde_json::json!({"items": 15}));
    // Progress reaches the store too.
    tokio::time::sleep(Duration::from_millis(120)).await;
    let stored = one.jobs.stored(&job.id).await.unwrap().unwrap();
    assert_eq!(stored.done, 15);

    let cancelled = one.jobs.cancel(&job.id).await.unwrap();
    assert!(cancelled.cancel_requested);
    let view = view_until(&one.jobs, &job.id, |view| view.state != JobState::Running).await;
    assert_eq!(view.state, JobState::Cancelled);
    assert!(view.finished_at.is_some());
    one.gate.add_permits(100);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(one.seen.lock().unwrap().len() <= 15 + Numbers::CONCURRENCY);
    // Cancelling again changes nothing; the job is listed.
    assert_eq!(
        one.jobs.cancel(&job.id).await.unwrap().state,
        JobState::Cancelled
    );
    let listed = one.jobs.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, job.id);
}

#[tokio::test]
async fn a_job_stopped_with_its_instance_is_taken_over_after_its_cursor() {
    let world = world();
    let first = instance(&world);
    first.gate.add_permits(20);
    let job = first.start_job(60).await;
    // Let the 20 done items reach a checkpoint, then stop the instance as a crash would.
    view_until(&first.jobs, &job.id, |view| view.done == 20).await;
    stored_until(&first.jobs, &job.id, |view| view.done == 20).await;
    first.crash();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = first.seen.lock().unwrap().len();
    assert_eq!(before, 20, "the stopped instance went on");

    let second = instance(&world);
    second.gate.add_permits(1000);
    let done = view_until(&second.jobs, &job.id, |view| {
        view.state == JobState::Completed
    })
    .await;
    assert_eq!(done.done, 60);
    assert_eq!(done.report, serde_json::json!({"items": 60}));
    assert_ne!(done.owner, job.owner);
    let redone = second.seen.lock().unwrap().clone();
    assert_eq!(
        redone.first().map(String::as_str),
        Some("000020"),
        "resumed after the cursor"
    );
    assert_eq!(redone.len(), 40, "nothing before the cursor is done again");
}

#[tokio::test]
async fn only_one_instance_takes_a_job_over() {
    let world = world();
    let first = instance(&world);
    first.gate.add_permits(3);
    let job = first.start_job(50).await;
    first.crash();

    let (a, b) = (instance(&world), instance(&world));
    a.gate.add_permits(1000);
    b.gate.add_permits(1000);
    let done = view_until(&a.jobs, &job.id, |view| view.state == JobState::Completed).await;
    let (by_a, by_b) = (a.seen.lock().unwrap().len(), b.seen.lock().unwrap().len());
    assert!(
        by_a == 0 || by_b == 0,
        "both instances ran the job: {by_a} and {by_b} items"
    );
    assert_eq!(done.done, 50);
}

#[tokio::test]
async fn a_cancel_stored_while_nobody_runs_the_job_is_honoured_on_take_over() {
    let world = world();
    let first = instance(&world);
    first.gate.add_permits(2);
    let job = first.start_job(50).await;
    first.crash();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Another instance that does not run it records the cancel.
    let other = instance(&world);
    let view = other.jobs.cancel(&job.id).await.unwrap();
    assert!(view.cancel_requested);
    other.gate.add_permits(1000);
    let view = view_until(&other.jobs, &job.id, |view| view.state != JobState::Running).await;
    assert_eq!(view.state, JobState::Cancelled);
    assert!(other.seen.lock().unwrap().is_empty());
}
