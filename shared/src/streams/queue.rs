//! Where jobs wait, and the loop that runs them where no queue service invokes a function (the
//! local gateway). On AWS jobs wait in SQS and its event source mapping runs them (see
//! `crate::apigw::streams`); here a [`JobQueue`] (memory, or SQLite in the data directory, which
//! keeps jobs across restarts) and [`run_worker`] do the same with the same [`Deliverer`].
//!
//! One stream never holds up another: each stream has at most [`WorkerSettings::per_stream`] jobs
//! in flight, so a slow receiver uses its own slots only, and a failing one waits out its backoff
//! in the queue, not in a worker.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::delivery::{Deliverer, Job, Outcome};
use crate::backend::BackendError;

/// Where the router puts new jobs.
#[async_trait]
pub trait JobSink: Send + Sync {
    async fn enqueue(&self, jobs: &[Job]) -> Result<(), BackendError>;
}

/// A job given up on, kept for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub job: Job,
    pub reason: String,
}

/// A queue that a worker reads.
#[async_trait]
pub trait JobQueue: JobSink {
    /// Up to `limit` jobs due at `now`, none of a stream in `busy`, each hidden for `lease` (a
    /// worker that dies with a job leaves it to be run again).
    async fn lease(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        busy: &[Uuid],
        lease: Duration,
    ) -> Result<Vec<Job>, BackendError>;

    /// Ends a leased job with its outcome: follow-ups queued, dead entries kept as a dead letter.
    async fn settle(&self, job: &Job, outcome: &Outcome) -> Result<(), BackendError>;

    /// Jobs waiting (due or not).
    async fn depth(&self) -> Result<usize, BackendError>;

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, BackendError>;
}

/// The job of a dead letter: the outcome's dead entries of `job`.
pub fn dead_letter_of(job: &Job, outcome: &Outcome) -> Option<DeadLetter> {
    if outcome.dead.is_empty() {
        return None;
    }
    let job = Job { entry_ids: outcome.dead.clone(), ..job.clone() };
    Some(DeadLetter { job, reason: outcome.dead_reason.clone().unwrap_or_default() })
}

/// Jobs in memory.
#[derive(Default)]
pub struct MemoryJobQueue {
    state: Mutex<MemoryQueueState>,
}

#[derive(Default)]
struct MemoryQueueState {
    /// Job id → (job, not visible before).
    jobs: BTreeMap<Uuid, (Job, DateTime<Utc>)>,
    dead: Vec<DeadLetter>,
}

impl MemoryJobQueue {
    fn locked(&self) -> std::sync::MutexGuard<'_, MemoryQueueState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl JobSink for MemoryJobQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<(), BackendError> {
        let mut state = self.locked();
        for job in jobs {
            state.jobs.insert(job.id, (job.clone(), job.due_at));
        }
        Ok(())
    }
}

#[async_trait]
impl JobQueue for MemoryJobQueue {
    async fn lease(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        busy: &[Uuid],
        lease: Duration,
    ) -> Result<Vec<Job>, BackendError> {
        let mut state = self.locked();
        let mut due: Vec<(DateTime<Utc>, Uuid)> = state
            .jobs
            .values()
            .filter(|(job, visible)| *visible <= now && !busy.contains(&job.stream_id))
            .map(|(job, visible)| (*visible, job.id))
            .collect();
        due.sort();
        let until = now + lease;
        let mut taken = Vec::new();
        let mut per_stream: HashMap<Uuid, usize> = HashMap::new();
        for (_, id) in due {
            if taken.len() == limit {
                break;
            }
            let Some((job, visible)) = state.jobs.get_mut(&id) else { continue };
            // One job per stream per lease call: the worker's per-stream limit stays meaningful.
            if per_stream.insert(job.stream_id, 1).is_some() {
                continue;
            }
            *visible = until;
            taken.push(job.clone());
        }
        Ok(taken)
    }

    async fn settle(&self, job: &Job, outcome: &Outcome) -> Result<(), BackendError> {
        let mut state = self.locked();
        state.jobs.remove(&job.id);
        for follow_up in &outcome.follow_ups {
            state.jobs.insert(follow_up.id, (follow_up.clone(), follow_up.due_at));
        }
        if let Some(dead) = dead_letter_of(job, outcome) {
            state.dead.push(dead);
        }
        Ok(())
    }

    async fn depth(&self) -> Result<usize, BackendError> {
        Ok(self.locked().jobs.len())
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, BackendError> {
        Ok(self.locked().dead.clone())
    }
}

/// How the local worker runs.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Jobs in flight in all.
    pub concurrency: usize,
    /// Jobs of one stream in flight at once.
    pub per_stream: usize,
    /// How long a leased job stays hidden: longer than a job can take.
    pub lease: Duration,
    /// How often the queue is read when it had nothing due.
    pub poll: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            concurrency: 32,
            per_stream: 2,
            lease: Duration::from_secs(120),
            poll: Duration::from_millis(50),
        }
    }
}

/// Runs due jobs until `stop` turns true: the local counterpart of SQS and its Lambda trigger.
pub async fn run_worker(
    queue: Arc<dyn JobQueue>,
    deliverer: Arc<Deliverer>,
    settings: WorkerSettings,
    mut stop: watch::Receiver<bool>,
) {
    let mut running: JoinSet<Uuid> = JoinSet::new();
    let mut in_flight: HashMap<Uuid, usize> = HashMap::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let free = settings.concurrency.saturating_sub(running.len());
        let mut leased = 0;
        if free > 0 {
            let busy: Vec<Uuid> =
                in_flight.iter().filter(|(_, n)| **n >= settings.per_stream).map(|(id, _)| *id).collect();
            match queue.lease(Utc::now(), free, &busy, settings.lease).await {
                Ok(jobs) => {
                    leased = jobs.len();
                    for job in jobs {
                        *in_flight.entry(job.stream_id).or_default() += 1;
                        let (queue, deliverer) = (queue.clone(), deliverer.clone());
                        running.spawn(async move {
                            // A delivery that panics leaves its job leased (it is run again when the
                            // lease ends) and still frees its stream's slot.
                            let delivery = std::panic::AssertUnwindSafe(deliverer.deliver(&job, Utc::now()));
                            let Ok(outcome) = futures::FutureExt::catch_unwind(delivery).await else {
                                tracing::error!(job = %job.id, stream = %job.stream_id, "a delivery panicked");
                                return job.stream_id;
                            };
                            if let Err(e) = queue.settle(&job, &outcome).await {
                                // The lease runs out and the job is run again: at least once.
                                tracing::error!(job = %job.id, error = %e, "a delivery's outcome was not saved");
                            }
                            job.stream_id
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "the delivery queue could not be read"),
            }
        }
        if leased > 0 && running.len() < settings.concurrency {
            // More may be due right away.
            reap(&mut running, &mut in_flight);
            continue;
        }
        tokio::select! {
            finished = running.join_next(), if !running.is_empty() => {
                if let Some(Ok(stream)) = finished {
                    release(&mut in_flight, stream);
                }
            }
            _ = tokio::time::sleep(settings.poll) => {}
            _ = stop.changed() => {}
        }
        reap(&mut running, &mut in_flight);
    }
    running.shutdown().await;
}

fn reap(running: &mut JoinSet<Uuid>, in_flight: &mut HashMap<Uuid, usize>) {
    while let Some(Ok(stream)) = running.try_join_next() {
        release(in_flight, stream);
    }
}

fn release(in_flight: &mut HashMap<Uuid, usize>, stream: Uuid) {
    if let Some(n) = in_flight.get_mut(&stream) {
        *n -= 1;
        if *n == 0 {
            in_flight.remove(&stream);
        }
    }
}
