//! Coalescing: the instances of concurrent requests share predict calls. The first instance of a
//! call waits up to the linger for company; a call closes at the configured number of instances
//! or before the request would pass Vertex AI's 1.5 MB limit. Calls run concurrently (up to
//! `CALLS_IN_FLIGHT`); while they are all busy, instances queue and the next calls fill up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pulse_shared::config::PredictionSettings;
use pulse_shared::error::{BackendError, Retry};
use pulse_shared::metrics;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::{Instant, timeout_at};

use crate::breaker::{Admission, Breaker};
use crate::vertex::{CallError, Prediction, VertexClient};

/// Request bytes kept for the instances: Vertex AI's 1.5 MB limit less room for the envelope.
const MAX_INSTANCE_BYTES: usize = 1_400_000;

/// Predict calls one instance makes at once, at most.
const CALLS_IN_FLIGHT: usize = 8;

/// An instance's prediction and who made it.
#[derive(Clone, Debug)]
pub struct Scored {
    pub prediction: Prediction,
    pub model: Option<String>,
    pub model_version: Option<String>,
    /// The predict call's duration (shared by every instance in it).
    pub latency: Duration,
}

/// Why an instance has no prediction.
#[derive(Debug)]
pub enum ScoreError {
    /// The endpoint is unavailable, slow or the breaker is open: deliver again later.
    Unavailable(BackendError),
    /// The endpoint refuses our requests: an operator must act; deliver again meanwhile.
    Refused(BackendError),
    /// The answer for this instance is unusable: dead-letter the event (`bad_prediction`).
    BadPrediction(String),
}

struct Job {
    instance: Value,
    bytes: usize,
    /// When the job was queued: the linger counts from here, so a job that waited for a free
    /// call slot does not wait a whole linger more.
    queued: Instant,
    reply: oneshot::Sender<Result<Scored, ScoreError>>,
}

/// Scores instances, sharing calls between concurrent callers.
#[derive(Clone)]
pub struct Scorer {
    sender: mpsc::Sender<Job>,
    breaker: Arc<Breaker>,
    calls: Arc<AtomicU64>,
}

impl Scorer {
    /// Starts the task that groups instances into calls to `client`.
    pub fn start(client: VertexClient, settings: &PredictionSettings) -> Self {
        let breaker = Arc::new(Breaker::new(
            settings.breaker_failures,
            settings.breaker_cooldown,
        ));
        let calls = Arc::new(AtomicU64::new(0));
        let (sender, receiver) = mpsc::channel(settings.max_instances * CALLS_IN_FLIGHT * 4);
        let grouper = Grouper {
            client: Arc::new(client),
            breaker: breaker.clone(),
            calls: calls.clone(),
            max_instances: settings.max_instances,
            linger: settings.linger,
        };
        tokio::spawn(grouper.run(receiver));
        Self {
            sender,
            breaker,
            calls,
        }
    }

    /// Predict calls made so far (start-up to now), for the function's own report.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The prediction for one instance; answers at once while the breaker is open.
    pub async fn score(&self, instance: Value) -> Result<Scored, ScoreError> {
        if self.breaker.refusing() {
            return Err(breaker_open());
        }
        let bytes = serde_json::to_vec(&instance).map_or(0, |json| json.len() + 1);
        let (reply, answer) = oneshot::channel();
        let job = Job {
            instance,
            bytes,
            queued: Instant::now(),
            reply,
        };
        if self.sender.send(job).await.is_err() {
            return Err(ScoreError::Unavailable(stopped()));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(ScoreError::Unavailable(stopped())))
    }
}

fn breaker_open() -> ScoreError {
    ScoreError::Unavailable(BackendError::new(
        "predict",
        Retry::Transient,
        "the circuit breaker is open after repeated endpoint failures; not calling until the cool-down ends",
    ))
}

fn stopped() -> BackendError {
    BackendError::new(
        "predict",
        Retry::Transient,
        "the coalescing task stopped before answering",
    )
}

struct Grouper {
    client: Arc<VertexClient>,
    breaker: Arc<Breaker>,
    calls: Arc<AtomicU64>,
    max_instances: usize,
    linger: Duration,
}

impl Grouper {
    async fn run(self, mut receiver: mpsc::Receiver<Job>) {
        let in_flight = Arc::new(Semaphore::new(CALLS_IN_FLIGHT));
        let mut carried: Option<Job> = None;
        loop {
            let first = match carried.take() {
                Some(job) => job,
                None => match receiver.recv().await {
                    Some(job) => job,
                    None => return,
                },
            };
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let deadline = first.queued + self.linger;
            let mut bytes = first.bytes;
            let mut batch = vec![first];
            while batch.len() < self.max_instances {
                match timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(job)) if bytes + job.bytes > MAX_INSTANCE_BYTES => {
                        carried = Some(job);
                        break;
                    }
                    Ok(Some(job)) => {
                        bytes += job.bytes;
                        batch.push(job);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            let Some(admission) = self.breaker.admit() else {
                for job in batch {
                    let _ = job.reply.send(Err(breaker_open()));
                }
                continue;
            };
            self.calls.fetch_add(1, Ordering::Relaxed);
            let (client, breaker) = (self.client.clone(), self.breaker.clone());
            tokio::spawn(async move {
                call(&client, &breaker, admission, batch).await;
                drop(permit);
            });
        }
    }
}

/// Makes one call and answers every job in it.
async fn call(client: &VertexClient, breaker: &Breaker, admission: Admission, batch: Vec<Job>) {
    let (instances, replies): (Vec<Value>, Vec<_>) = batch
        .into_iter()
        .map(|job| (job.instance, job.reply))
        .unzip();
    let started = Instant::now();
    let result = client.predict(&instances).await;
    metrics::predict_call(
        match &result {
            Ok(_) => "ok",
            Err(CallError::Unavailable(_)) => "unavailable",
            Err(CallError::Refused(_)) => "refused",
            Err(CallError::Mismatch(_)) => "mismatch",
        },
        started.elapsed(),
    );
    let endpoint_failed = matches!(
        result,
        Err(CallError::Unavailable(_) | CallError::Refused(_))
    );
    breaker.record(admission, !endpoint_failed);
    metrics::breaker_open(breaker.refusing());
    match result {
        Ok(answer) => {
            for (reply, prediction) in replies.into_iter().zip(answer.predictions) {
                let _ = reply.send(match prediction {
                    Ok(prediction) => Ok(Scored {
                        prediction,
                        model: answer.model.clone(),
                        model_version: answer.model_version.clone(),
                        latency: answer.latency,
                    }),
                    Err(detail) => Err(ScoreError::BadPrediction(detail)),
                });
            }
        }
        Err(err) => {
            tracing::warn!(instances = replies.len(), "predict call failed: {err:?}");
            for reply in replies {
                let _ = reply.send(Err(match &err {
                    CallError::Unavailable(e) => ScoreError::Unavailable(copy(e)),
                    CallError::Refused(e) => ScoreError::Refused(copy(e)),
                    CallError::Mismatch(detail) => ScoreError::BadPrediction(detail.clone()),
                }));
            }
        }
    }
}

fn copy(err: &BackendError) -> BackendError {
    BackendError::new(err.operation.clone(), err.retry, &err.message)
}
