//! The SQS adapter of the log streams' queue: jobs sent in batches of ten, each delayed until it
//! is due (SQS holds a message back at most 15 minutes: a job due later arrives early and the
//! deliverer sends it back, see [`crate::streams::delivery::Deliverer::deliver`]); dead letters
//! sent to their own queue, which keeps them 14 days.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_smithy_types::error::display::DisplayErrorContext;
use chrono::Utc;

use crate::backend::BackendError;
use crate::streams::delivery::Job;
use crate::streams::queue::{DeadLetter, JobSink};

/// The longest SQS delays a message.
const MAX_DELAY_SECONDS: i64 = 900;
/// Messages per SendMessageBatch.
const BATCH: usize = 10;
/// Attempts at the messages SQS did not take from a batch.
const ATTEMPTS: usize = 3;

pub struct SqsQueue {
    client: Client,
    queue_url: String,
    dead_letter_url: String,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: &str, dead_letter_url: &str) -> Self {
        SqsQueue { client, queue_url: queue_url.to_owned(), dead_letter_url: dead_letter_url.to_owned() }
    }

    /// The client of a deployed function (or one pointed at a local SQS API).
    pub fn from_environment(
        shared: &aws_config::SdkConfig,
        queue_url: &str,
        dead_letter_url: &str,
        endpoint_override: Option<&str>,
    ) -> Self {
        let mut builder = aws_sdk_sqs::config::Builder::from(shared)
            .timeout_config(TimeoutConfig::builder().operation_timeout(Duration::from_secs(5)).build());
        if let Some(endpoint) = endpoint_override {
            builder = builder.endpoint_url(endpoint);
        }
        Self::new(Client::from_conf(builder.build()), queue_url, dead_letter_url)
    }

    /// Keeps a dead letter: the job (ids only, never values) and why it was given up on.
    pub async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), BackendError> {
        self.keep_dead(serde_json::json!({"job": letter.job, "reason": letter.reason})).await
    }

    /// Keeps a message that is not a job as it came, so nothing is dropped unseen.
    pub async fn dead_letter_raw(&self, body: &str, reason: &str) -> Result<(), BackendError> {
        self.keep_dead(serde_json::json!({"message": body, "reason": reason})).await
    }

    async fn keep_dead(&self, body: serde_json::Value) -> Result<(), BackendError> {
        self.client
            .send_message()
            .queue_url(&self.dead_letter_url)
            .message_body(body.to_string())
            .send()
            .await
            .map_err(|e| BackendError::Unavailable(format!("SQS SendMessage: {}", DisplayErrorContext(&e))))?;
        Ok(())
    }
}

#[async_trait]
impl JobSink for SqsQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<(), BackendError> {
        let now = Utc::now();
        for chunk in jobs.chunks(BATCH) {
            let mut waiting: Vec<(String, &Job)> =
                chunk.iter().enumerate().map(|(i, job)| (i.to_string(), job)).collect();
            for attempt in 0..ATTEMPTS {
                let mut entries = Vec::with_capacity(waiting.len());
                for (id, job) in &waiting {
                    let body = serde_json::to_string(job).map_err(|e| BackendError::Internal(format!("a job: {e}")))?;
                    let delay = (job.due_at - now).num_seconds().clamp(0, MAX_DELAY_SECONDS) as i32;
                    entries.push(
                        SendMessageBatchRequestEntry::builder()
                            .id(id)
                            .message_body(body)
                            .delay_seconds(delay)
                            .build()
                            .map_err(|e| BackendError::Internal(format!("a message: {e}")))?,
                    );
                }
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| {
                        BackendError::Unavailable(format!("SQS SendMessageBatch: {}", DisplayErrorContext(&e)))
                    })?;
                let failed: Vec<&str> = out.failed().iter().map(|f| f.id()).collect();
                waiting.retain(|(id, _)| failed.contains(&id.as_str()));
                if waiting.is_empty() {
                    break;
                }
                if attempt + 1 == ATTEMPTS {
                    return Err(BackendError::Unavailable(format!("SQS did not take {} jobs", waiting.len())));
                }
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
        }
        Ok(())
    }
}
