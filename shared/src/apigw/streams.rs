//! The log streams' two functions, as plain async functions of (event, dependencies):
//! - `stream-route` reads the entries table's changes from its Kinesis streaming destination (a
//!   reader of its own: the DynamoDB stream keeps its two, the fan-out and the archive) and queues
//!   one job per stream and up to 100 entries in SQS;
//! - `stream-deliver` runs those jobs as SQS hands them over: each delivered, retried later (a new
//!   message, delayed) or dead-lettered, and one message's trouble never fails the others.

use std::sync::Arc;

use aws_lambda_events::dynamodb::EventRecord;
use aws_lambda_events::kinesis::KinesisEvent;
use aws_lambda_events::sqs::SqsEvent;
use aws_lambda_events::streams::{KinesisEventResponse, SqsBatchItemFailure, SqsEventResponse};
use chrono::Utc;
use futures::{FutureExt, StreamExt};

use super::stream::inserted_entry;
use crate::domain::AuditLogEntry;
use crate::store::sqs::SqsQueue;
use crate::streams::delivery::{Deliverer, Job};
use crate::streams::queue::{JobSink, dead_letter_of};
use crate::streams::route::Router;

/// Messages of one SQS batch delivered at once (a batch holds at most 10).
const MESSAGES_AT_ONCE: usize = 10;

/// The entries of a Kinesis batch: each record's data is a DynamoDB change record (JSON); only
/// INSERTs are entries. A record that cannot be read is logged and passed over — it never will be
/// read, and holding the shard for it would stop every tenant's deliveries.
pub fn kinesis_entries(event: &KinesisEvent) -> Vec<AuditLogEntry> {
    let mut entries = Vec::new();
    for record in &event.records {
        let sequence = &record.kinesis.sequence_number;
        let change: EventRecord = match serde_json::from_slice(&record.kinesis.data) {
            Ok(change) => change,
            Err(e) => {
                tracing::error!(sequence, error = %e, "a Kinesis record is not a DynamoDB change record");
                continue;
            }
        };
        match inserted_entry(&change) {
            None => {}
            Some(Ok(entry)) => entries.push(entry),
            Some(Err(e)) => tracing::error!(sequence, error = %e, "a change record is not an audit entry"),
        }
    }
    entries
}

/// Routes a Kinesis batch. If the jobs cannot be queued, the batch is reported failed from its
/// first record, so Lambda sends it again (jobs queued twice are delivered twice, never lost).
pub async fn route_kinesis(event: KinesisEvent, router: &Router) -> KinesisEventResponse {
    let entries = kinesis_entries(&event);
    let mut response = KinesisEventResponse::default();
    match router.route(&entries, Utc::now()).await {
        Ok(jobs) => tracing::info!(records = event.records.len(), entries = entries.len(), jobs, "routed"),
        Err(e) => {
            tracing::error!(error = %e, "a batch could not be routed; Lambda sends it again");
            if let Some(first) = event.records.first() {
                response.add_failure(first.kinesis.sequence_number.clone());
            }
        }
    }
    response
}

/// What `stream-deliver` needs.
pub struct DeliverDeps {
    pub deliverer: Arc<Deliverer>,
    pub queue: Arc<SqsQueue>,
}

/// Delivers an SQS batch of jobs. A message is reported failed (SQS hands it over again after its
/// visibility timeout) only when its outcome could not be queued or kept — or when its delivery
/// panicked: caught here, so one job's bug fails that message alone, never the batch (other
/// tenants' jobs would otherwise be delivered again, and dead-lettered with it in the end).
pub async fn deliver_sqs(event: SqsEvent, deps: &DeliverDeps) -> SqsEventResponse {
    let results: Vec<Option<String>> = futures::stream::iter(event.records)
        .map(|message| async move {
            let id = message.message_id.clone().unwrap_or_default();
            let body = message.body.unwrap_or_default();
            let kept = match serde_json::from_str::<Job>(&body) {
                Ok(job) => match std::panic::AssertUnwindSafe(settle(&job, deps)).catch_unwind().await {
                    Ok(kept) => kept,
                    Err(_) => Err(crate::backend::BackendError::Internal(format!(
                        "the delivery of job {} to stream {} panicked",
                        job.id, job.stream_id
                    ))),
                },
                Err(e) => {
                    tracing::error!(message = %id, error = %e, "a message is not a job; kept as a dead letter");
                    deps.queue.dead_letter_raw(&body, "not a job").await
                }
            };
            match kept {
                Ok(()) => None,
                Err(e) => {
                    tracing::error!(message = %id, error = %e, "a job's outcome was not kept; SQS hands it over again");
                    Some(id)
                }
            }
        })
        .buffer_unordered(MESSAGES_AT_ONCE)
        .collect()
        .await;
    let mut response = SqsEventResponse::default();
    for id in results.into_iter().flatten() {
        let mut failure = SqsBatchItemFailure::default();
        failure.item_identifier = Some(id);
        response.batch_item_failures.push(failure);
    }
    response
}

async fn settle(job: &Job, deps: &DeliverDeps) -> Result<(), crate::backend::BackendError> {
    let outcome = deps.deliverer.deliver(job, Utc::now()).await;
    if !outcome.follow_ups.is_empty() {
        deps.queue.enqueue(&outcome.follow_ups).await?;
    }
    if let Some(letter) = dead_letter_of(job, &outcome) {
        deps.queue.dead_letter(&letter).await?;
    }
    Ok(())
}
