//! Where the local gateway's live feed comes from, standing in for the Lambda event source mapping:
//! the logger's in-process listener (in-memory or SQLite storage), or the entries table's DynamoDB
//! stream (a DynamoDB API endpoint). Either way batches go through the same consumers Lambda runs,
//! from the point where its handler has read the entries out of the event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use auditline::AuditLogger;
use auditline::apigw::stream::{FeedDeps, archive_entries, fan_out_entries, inserted_entries};
use auditline::archive::ArchiveSink;
use auditline::archive::shred::ArchiveKeys;
use auditline::backend::BackendError;
use auditline::domain::AuditLogEntry;
use auditline::store::SqliteStore;
use auditline::streams::route::Router;
use aws_lambda_events::dynamodb::Event;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Records per batch, as an event source mapping's default batch size.
const BATCH_SIZE: usize = 100;
/// Retries of a batch with failures (a mapping configured with bounded retries).
const MAX_RETRIES: u32 = 3;
/// Entries waiting for the feed before new ones are dropped from it (they stay stored).
const BACKLOG: usize = 10_000;

/// The stream's consumers, as on AWS: the live feed, and the archive when one is configured.
#[derive(Clone)]
pub struct Consumers {
    pub feed: FeedDeps,
    pub archive: Option<Arc<dyn ArchiveSink>>,
    /// The keys the archive seals erasable values under.
    pub archive_keys: Arc<dyn ArchiveKeys>,
    /// Log streams: new entries become delivery jobs (a third consumer, as Kinesis is on AWS);
    /// `None` where the store routes them itself ([`follow_routing`], SQLite).
    pub streams: Option<Arc<Router>>,
}

/// One batch as a stream delivers it: entries, each with its sequence number.
type Batch = Vec<(String, AuditLogEntry)>;

/// Runs one batch through the consumers, each retried as its event source mapping would. The
/// entries go to the same code Lambda runs after reading its event ([`fan_out_entries`],
/// [`archive_entries`], [`Router::route`]), without a round trip through stream records.
pub async fn deliver(batch: Batch, consumers: &Consumers) {
    if let Some(sink) = &consumers.archive {
        archive(&batch, sink.as_ref(), consumers.archive_keys.as_ref()).await;
    }
    let entries: Vec<AuditLogEntry> = batch.iter().map(|(_, entry)| entry.clone()).collect();
    fan_out(batch, &consumers.feed).await;
    if let Some(router) = &consumers.streams {
        route(&entries, router).await;
    }
}

/// The streams' router: a batch whose jobs could not be queued is routed again (a job queued
/// twice is delivered twice, each carrying its entries' ids).
async fn route(entries: &[AuditLogEntry], router: &Router) {
    for attempt in 0..=MAX_RETRIES {
        match router.route(entries, chrono::Utc::now()).await {
            Ok(_) => return,
            Err(e) => tracing::warn!(error = %e, attempt, "a batch could not be routed to log streams"),
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
    }
    tracing::error!("a batch was not routed to log streams after {MAX_RETRIES} retries; export it to backfill");
}

/// The archive consumer: a failed batch is retried whole, as its mapping does on AWS.
async fn archive(batch: &Batch, sink: &dyn ArchiveSink, keys: &dyn ArchiveKeys) {
    for attempt in 0..=MAX_RETRIES {
        if !archive_entries(batch.clone(), sink, keys).await.retried {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
    }
    tracing::error!("an archive batch still failed after {MAX_RETRIES} retries; its entries remain in the store");
}

/// The feed consumer, retried from the lowest failed entry as Lambda does.
async fn fan_out(batch: Batch, feed: &FeedDeps) {
    let mut entries: Vec<AuditLogEntry> = batch.into_iter().map(|(_, entry)| entry).collect();
    for attempt in 0..=MAX_RETRIES {
        let report = fan_out_entries(&entries, feed).await;
        let Some(first) = report.failed.iter().min().copied() else {
            return;
        };
        if attempt == MAX_RETRIES {
            break;
        }
        entries.drain(..first);
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
    }
    tracing::warn!("a feed batch still failed after {MAX_RETRIES} retries; its entries remain readable over HTTP");
}

/// In-memory storage: every stored entry, as the logger announces it, batched like a stream.
pub fn follow_listener(logger: &AuditLogger, consumers: Consumers) -> JoinHandle<()> {
    let (tx, mut rx) = mpsc::channel::<AuditLogEntry>(BACKLOG);
    logger.add_listener(move |entry| {
        if tx.try_send(entry.clone()).is_err() {
            tracing::warn!(entry_id = %entry.id, "feed backlog full: entry stored but not pushed live");
        }
    });
    tokio::spawn(async move {
        // Sequence numbers name archive objects: start from the clock so that a restarted gateway
        // never reuses one (and overwrites an object) in the same partition.
        let mut sequence = u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(1);
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < BATCH_SIZE {
                match rx.try_recv() {
                    Ok(entry) => batch.push(entry),
                    Err(_) => break,
                }
            }
            let numbered = batch.into_iter().map(|entry| (next_sequence(&mut sequence), entry)).collect();
            deliver(numbered, &consumers).await;
        }
    })
}

/// How many rows the SQLite router looks through at a time.
const ROUTE_WINDOW: u32 = 1_000;
/// How long the router waits for a write's wake-up before it looks anyway.
const ROUTE_POLL: Duration = Duration::from_secs(1);

/// Log streams on SQLite: the entries stored after the router's position become jobs, queued with
/// the new position in one transaction — an entry stored just before a crash, or while the live
/// feed's backlog was full, is routed all the same (once). Woken by each write; looks every second.
pub fn follow_routing(logger: &AuditLogger, store: SqliteStore, router: Arc<Router>) -> JoinHandle<()> {
    let wake = Arc::new(tokio::sync::Notify::new());
    let woken = wake.clone();
    logger.add_listener(move |_| woken.notify_one());
    tokio::spawn(async move {
        loop {
            match route_from_position(&store, &router).await {
                Ok(()) => {
                    let _ = tokio::time::timeout(ROUTE_POLL, wake.notified()).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "entries could not be routed to log streams yet; trying again");
                    tokio::time::sleep(ROUTE_POLL).await;
                }
            }
        }
    })
}

/// Routes every entry stored after the position, a window at a time.
async fn route_from_position(store: &SqliteStore, router: &Router) -> Result<(), BackendError> {
    loop {
        let unrouted = store.unrouted(ROUTE_WINDOW).await?;
        if unrouted.through == unrouted.from {
            return Ok(());
        }
        let jobs = router.jobs(&unrouted.entries, chrono::Utc::now()).await?;
        // Only this task moves the position; a refusal means it moved anyway: read again.
        store.enqueue_routed(&jobs, unrouted.from, unrouted.through).await?;
    }
}

fn next_sequence(sequence: &mut u64) -> String {
    *sequence += 1;
    sequence.to_string()
}

/// DynamoDB stream records as the event Lambda receives.
pub fn records_to_event(records: &[Record], stream_arn: &str) -> Event {
    let records: Vec<serde_json::Value> = records
        .iter()
        .filter_map(|r| {
            let change = r.dynamodb()?;
            let image = |m: Option<&HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>| {
                let item: serde_dynamo::Item = m.cloned().unwrap_or_default().into();
                serde_json::to_value(item).unwrap_or_default()
            };
            let mut record = json!({
                "eventID": r.event_id(),
                "eventName": r.event_name().map(|n| n.as_str()),
                "eventVersion": r.event_version(),
                "eventSource": "aws:dynamodb",
                "awsRegion": r.aws_region().unwrap_or("local"),
                "dynamodb": {
                    "ApproximateCreationDateTime": change.approximate_creation_date_time().map_or(0, |t| t.secs()),
                    "Keys": image(change.keys()),
                    "NewImage": image(change.new_image()),
                    "SequenceNumber": change.sequence_number(),
                    "SizeBytes": change.size_bytes().unwrap_or(0),
                    "StreamViewType": "NEW_IMAGE"
                },
                "eventSourceARN": stream_arn
            });
            if let Some(identity) = r.user_identity() {
                record["userIdentity"] = json!({"type": identity.r#type(), "principalId": identity.principal_id()});
            }
            Some(record)
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap_or_default()
}

/// A DynamoDB API: follows the entries table's stream from now on, polling each shard.
pub async fn follow_stream(
    dynamodb: aws_sdk_dynamodb::Client,
    streams: aws_sdk_dynamodbstreams::Client,
    table: String,
    consumers: Consumers,
) -> Result<JoinHandle<()>, Box<dyn std::error::Error + Send + Sync>> {
    let described = dynamodb.describe_table().table_name(&table).send().await?;
    let arn = described
        .table()
        .and_then(|t| t.latest_stream_arn())
        .ok_or("the entries table has no stream; create it from the table definitions")?
        .to_owned();
    let stream = streams.describe_stream().stream_arn(&arn).send().await?;
    let mut iterators = Vec::new();
    for shard in stream.stream_description().map(|d| d.shards()).unwrap_or_default() {
        let it = streams
            .get_shard_iterator()
            .stream_arn(&arn)
            .shard_id(shard.shard_id().unwrap_or_default())
            .shard_iterator_type(ShardIteratorType::Latest)
            .send()
            .await?;
        iterators.extend(it.shard_iterator().map(str::to_owned));
    }
    let consumers = Arc::new(consumers);
    Ok(tokio::spawn(async move {
        loop {
            let mut next = Vec::new();
            for iterator in iterators.drain(..) {
                match streams.get_records().shard_iterator(&iterator).limit(BATCH_SIZE as i32).send().await {
                    Ok(out) => {
                        if !out.records().is_empty() {
                            let (batch, _unreadable) = inserted_entries(&records_to_event(out.records(), &arn));
                            deliver(batch, &consumers).await;
                        }
                        next.extend(out.next_shard_iterator().map(str::to_owned));
                    }
                    Err(e) => {
                        tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), "stream read failed; retrying");
                        next.push(iterator);
                    }
                }
            }
            iterators = next;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }))
}
