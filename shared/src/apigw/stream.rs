//! The entries table's stream: fanned out to the live feed, and written to the archive. These are
//! its two consumers — the most a DynamoDB stream shard serves without throttling.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use chrono::Utc;

use crate::archive::shred::ArchiveKeys;
use crate::archive::{ArchiveError, ArchiveSink, objects};
use crate::domain::AuditLogEntry;
use crate::realtime::fanout::{FanoutReport, FanoutSettings, fan_out};
use crate::realtime::redelivery::Redeliveries;
use crate::realtime::{ConnectionStore, Pusher};
use crate::store::dynamo::entry_from_item;

/// What the stream handler needs, built once per cold start.
#[derive(Clone)]
pub struct FeedDeps {
    pub connections: Arc<dyn ConnectionStore>,
    pub pusher: Arc<dyn Pusher>,
    pub settings: FanoutSettings,
    /// Who already has what of a batch that failed somewhere, kept across invocations.
    pub redeliveries: Arc<Redeliveries>,
}

impl FeedDeps {
    pub fn new(connections: Arc<dyn ConnectionStore>, pusher: Arc<dyn Pusher>, settings: FanoutSettings) -> Self {
        FeedDeps { connections, pusher, settings, redeliveries: Arc::default() }
    }
}

/// Whether a record is a TTL expiry: a REMOVE made by the DynamoDB service itself.
fn is_ttl_removal(record: &EventRecord) -> bool {
    record.user_identity.as_ref().is_some_and(|u| u.type_ == "Service" && u.principal_id == "dynamodb.amazonaws.com")
}

/// The new entry of an INSERT record; `None` for every other record (updates, deletions and TTL
/// expiries are not news). Entries are never updated, so INSERT is the only event that matters.
pub(crate) fn inserted_entry(record: &EventRecord) -> Option<Result<AuditLogEntry, String>> {
    if record.event_name != "INSERT" || is_ttl_removal(record) {
        return None;
    }
    let image: HashMap<String, aws_sdk_dynamodb::types::AttributeValue> = record.change.new_image.clone().into();
    Some(entry_from_item(image).map_err(|e| e.to_string()))
}

/// A stream event of INSERT records for `entries`, numbered from `first_sequence`, as the entries
/// table's stream delivers them: how tests and benchmarks drive the handlers.
pub fn insert_event(entries: &[AuditLogEntry], first_sequence: u64) -> Event {
    use aws_sdk_dynamodb::types::AttributeValue;
    // Built field by field: through JSON and back costs more than the handlers it drives.
    let mut event = Event::default();
    event.records = entries
        .iter()
        .zip(first_sequence..)
        .filter_map(|(e, sequence)| {
            let mut record = EventRecord::default();
            record.event_id = format!("{sequence:032x}");
            record.event_name = "INSERT".into();
            record.event_version = Some("1.1".into());
            record.event_source = Some("aws:dynamodb".into());
            record.aws_region = "local".into();
            record.change.approximate_creation_date_time = e.timestamp;
            let keys = HashMap::from([
                ("pk".to_owned(), AttributeValue::S(format!("T#{}", e.tenant_id))),
                ("id".to_owned(), AttributeValue::S(e.id.to_string())),
            ]);
            record.change.keys = keys.into();
            record.change.new_image = crate::store::dynamo::entry_item(e).ok()?.into();
            record.change.sequence_number = Some(sequence.to_string());
            record.change.stream_view_type = Some(aws_lambda_events::dynamodb::StreamViewType::NewImage);
            Some(record)
        })
        .collect();
    event
}

/// A stream event's INSERT records read as entries, each with its sequence number, and the
/// sequence numbers of the records that could not be read.
pub fn inserted_entries(event: &Event) -> (Vec<(String, AuditLogEntry)>, Vec<String>) {
    let mut entries = Vec::new();
    let mut unreadable = Vec::new();
    for record in &event.records {
        let sequence = record.change.sequence_number.clone().unwrap_or_default();
        match inserted_entry(record) {
            None => {}
            Some(Ok(entry)) => entries.push((sequence, entry)),
            Some(Err(e)) => {
                tracing::error!(sequence, error = %e, "stream record is not an audit entry");
                unreadable.push(sequence);
            }
        }
    }
    (entries, unreadable)
}

/// Fans out entries already read from the stream: what [`handle_stream`] does after reading, and
/// what the local gateway does with the entries its store announces (no round trip through items).
pub async fn fan_out_entries(entries: &[AuditLogEntry], deps: &FeedDeps) -> FanoutReport {
    fan_out(entries, deps.connections.as_ref(), deps.pusher.as_ref(), &deps.settings, &deps.redeliveries, Utc::now())
        .await
}

/// Handles one batch: fans out every new entry and reports, by sequence number, the records whose
/// entry could not reach every connection allowed to see it (or could not be read), so Lambda
/// retries those, and only those, instead of failing the whole batch.
pub async fn handle_stream(event: Event, deps: &FeedDeps) -> (DynamoDbEventResponse, FanoutReport) {
    let (read, mut failed_sequences) = inserted_entries(&event);
    let (sequences, entries): (Vec<String>, Vec<AuditLogEntry>) = read.into_iter().unzip();
    let report = fan_out_entries(&entries, deps).await;
    failed_sequences.extend(report.failed.iter().map(|i| sequences[*i].clone()));
    tracing::info!(
        records = event.records.len(),
        entries = entries.len(),
        delivered = report.delivered,
        gone = report.gone.len(),
        failed = failed_sequences.len(),
        "stream batch fanned out"
    );
    let mut response = DynamoDbEventResponse::default();
    response.batch_item_failures = failed_sequences
        .into_iter()
        .map(|sequence| {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(sequence);
            failure
        })
        .collect();
    (response, report)
}

/// What one archive batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveReport {
    pub entries: usize,
    pub objects: usize,
    pub bytes: usize,
    /// Whether the batch failed and is to be retried whole.
    pub retried: bool,
}

/// Archives one batch. Nothing is written unless every record reads as an entry; objects are
/// written one at a time in order; on any failure the batch's first record is reported, so Lambda
/// retries the whole batch, which then writes the same objects again (see [`crate::archive`]).
pub async fn handle_archive(
    event: Event,
    sink: &dyn ArchiveSink,
    keys: &dyn ArchiveKeys,
) -> (DynamoDbEventResponse, ArchiveReport) {
    let first = event.records.first().and_then(|r| r.change.sequence_number.clone());
    let (batch, unreadable) = inserted_entries(&event);
    let report = if unreadable.is_empty() {
        archive_entries(batch, sink, keys).await
    } else {
        tracing::error!(records = unreadable.len(), "the batch is not archived: some records are not audit entries");
        ArchiveReport { retried: true, ..ArchiveReport::default() }
    };
    tracing::info!(records = event.records.len(), ?report, "stream batch archived");
    let mut response = DynamoDbEventResponse::default();
    if let (true, Some(sequence)) = (report.retried, first) {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(sequence);
        response.batch_item_failures = vec![failure];
    }
    (response, report)
}

/// Archives entries already read, each with its sequence number (which names its object); stops at
/// the first failed write and says so in `retried`.
pub async fn archive_entries(
    batch: Vec<(String, AuditLogEntry)>,
    sink: &dyn ArchiveSink,
    keys: &dyn ArchiveKeys,
) -> ArchiveReport {
    let mut report = ArchiveReport::default();
    for object in objects(batch) {
        let written = match object.gzip_jsonl(keys).await {
            Ok(body) => {
                let size = body.len();
                sink.put(&object.key, body).await.map(|()| size).map_err(ArchiveError::Sink)
            }
            Err(e) => Err(e),
        };
        let size = match written {
            Ok(size) => size,
            Err(e) => {
                tracing::error!(key = object.key, error = %e, "archive write failed; the batch will be retried");
                report.retried = true;
                break;
            }
        };
        report.entries += object.entries.len();
        report.objects += 1;
        report.bytes += size;
    }
    report
}
