//! Log streams in DynamoDB, a table of their own ([`super::tables::STREAMS`]): partition the tenant
//! id; `stream#<id>` holds a stream (its version, and its JSON with the secrets sealed inside, never
//! in a key or index), `stream#<id>#figures` its delivery figures as numbers that every delivery
//! adds to in place, and `count` how many streams the tenant has. A stream and its figures sort
//! together, so one Query reads both; creates and deletes change the count in the same transaction,
//! so the per-tenant limit holds however many requests race.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, Select, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::errors::{classify, corrupt};
use super::tables::{STREAMS_BY_FAILING, stream_attr as attr};
use super::{MAX_CONFLICT_RETRIES, number, string};
use crate::backend::BackendError;
use crate::domain::TenantId;
use crate::streams::destination::{Destination, MAX_STREAMS_PER_TENANT};
use crate::streams::store::{
    Failing, Figures, FiguresDelta, LAG_BUCKETS, LastError, StoredStream, StreamStore, StreamStoreError,
};

/// Sort keys: every stream's start with this; its figures' end with [`FIGURES_SUFFIX`].
const STREAM_PREFIX: &str = "stream#";
const FIGURES_SUFFIX: &str = "#figures";
/// The sort key of a tenant's count of streams.
const COUNT_SK: &str = "count";
/// The value of `failing` on a failing stream's figures (the key of `by_failing`).
const FAILING: &str = "failing";
const CONDITION_FAILED: &str = "ConditionalCheckFailed";

#[derive(Debug, Clone)]
pub struct DynamoStreams {
    client: Client,
    table: String,
}

fn stream_sk(id: Uuid) -> String {
    format!("{STREAM_PREFIX}{id}")
}

fn figures_sk(id: Uuid) -> String {
    format!("{STREAM_PREFIX}{id}{FIGURES_SUFFIX}")
}

fn key(tenant: &TenantId, sk: String) -> HashMap<String, AttributeValue> {
    HashMap::from([(attr::PK.to_owned(), string(tenant.as_str())), (attr::SK.to_owned(), string(sk))])
}

fn count(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn millis(at: DateTime<Utc>) -> AttributeValue {
    number(at.timestamp_millis())
}

fn built(e: impl std::fmt::Display) -> BackendError {
    BackendError::Internal(format!("a streams request could not be built: {e}"))
}

/// A stream item: its key, version and JSON.
fn stream_item(stream: &Destination) -> Result<HashMap<String, AttributeValue>, BackendError> {
    let body = serde_json::to_string(stream).map_err(|e| BackendError::Internal(format!("a stream to JSON: {e}")))?;
    let version =
        i64::try_from(stream.version).map_err(|_| BackendError::Internal("stream version overflow".into()))?;
    let mut item = key(&stream.tenant_id, stream_sk(stream.id));
    item.insert(attr::VERSION.to_owned(), number(version));
    item.insert(attr::BODY.to_owned(), string(body));
    Ok(item)
}

fn unsigned(item: &HashMap<String, AttributeValue>, name: &str) -> Result<Option<u64>, BackendError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(n)) => n.parse().map(Some).map_err(|e| corrupt("stream figures", e)),
        Some(_) => Err(corrupt("stream figures", format!("{name} is not a number"))),
    }
}

fn time(item: &HashMap<String, AttributeValue>, name: &str) -> Result<Option<DateTime<Utc>>, BackendError> {
    let Some(value) = item.get(name) else { return Ok(None) };
    let ms: i64 = match value {
        AttributeValue::N(n) => n.parse().map_err(|e| corrupt("stream figures", e))?,
        _ => return Err(corrupt("stream figures", format!("{name} is not a number"))),
    };
    DateTime::from_timestamp_millis(ms)
        .map(Some)
        .ok_or_else(|| corrupt("stream figures", format!("{name} out of range")))
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Result<Option<String>, BackendError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::S(s)) => Ok(Some(s.clone())),
        Some(_) => Err(corrupt("stream figures", format!("{name} is not a string"))),
    }
}

/// A figures item read back. The lag histogram is empty until a lag was recorded.
fn figures_from_item(item: &HashMap<String, AttributeValue>) -> Result<Figures, BackendError> {
    let mut lag = vec![0; LAG_BUCKETS];
    let mut any_lag = false;
    for (k, slot) in lag.iter_mut().enumerate() {
        if let Some(n) = unsigned(item, &format!("{}{k}", attr::LAG_PREFIX))? {
            *slot = n;
            any_lag = true;
        }
    }
    let last_error = match (text(item, attr::LAST_ERROR)?, time(item, attr::LAST_ERROR_AT)?) {
        (Some(message), Some(at)) => Some(LastError { at, message }),
        _ => None,
    };
    let failing = match text(item, attr::FAILING)? {
        None => None,
        Some(_) => Some(Failing {
            since: time(item, attr::FAILING_SINCE)?
                .ok_or_else(|| corrupt("stream figures", "failing with no since"))?,
            reason: text(item, attr::FAILING_REASON)?.unwrap_or_default(),
        }),
    };
    Ok(Figures {
        delivered: unsigned(item, attr::DELIVERED)?.unwrap_or(0),
        failed: unsigned(item, attr::FAILED)?.unwrap_or(0),
        retried: unsigned(item, attr::RETRIED)?.unwrap_or(0),
        last_error,
        last_delivered_at: time(item, attr::LAST_DELIVERED_AT)?,
        lag: if any_lag { lag } else { Vec::new() },
        failing,
    })
}

/// A transaction cancelled by a failed condition: each item's cancellation code (`None` for an
/// item not at fault).
struct Refused(Vec<String>);

impl Refused {
    fn failed(&self, item: usize) -> bool {
        self.0.get(item).is_some_and(|c| c == CONDITION_FAILED)
    }
}

impl DynamoStreams {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStreams { client, table: table.into() }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Sends a transaction, again while a concurrent one on the same items cancels it (nothing of
    /// a cancelled transaction is written, so sending it again is safe); `Err(Refused)` when a
    /// condition failed.
    async fn transact(&self, items: Vec<TransactWriteItem>, jitter: u8) -> Result<Result<(), Refused>, BackendError> {
        let mut attempt = 0;
        loop {
            // The SDK fills ClientRequestToken once per call, so its own retries are idempotent.
            let err = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(Ok(())),
                Err(err) => err,
            };
            let codes: Option<Vec<String>> = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                    Some(e.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_owned()).collect())
                }
                _ => None,
            };
            match codes {
                Some(codes) if codes.iter().any(|c| c == CONDITION_FAILED) => return Ok(Err(Refused(codes))),
                Some(codes) if codes.iter().any(|c| c == "TransactionConflict") => {
                    if attempt >= MAX_CONFLICT_RETRIES {
                        return Err(BackendError::Throttled(
                            "TransactWriteItems: contention on a tenant's streams persisted".into(),
                        ));
                    }
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis((10 << attempt) + u64::from(jitter % 16))).await;
                }
                _ => return Err(classify("TransactWriteItems", err)),
            }
        }
    }

    /// The query of a tenant's items whose sort key starts with `prefix`.
    fn query(&self, tenant: &TenantId, prefix: String) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#sk", attr::SK)
            .expression_attribute_values(":pk", string(tenant.as_str()))
            .expression_attribute_values(":prefix", string(prefix))
            // A stream changed a moment ago is read as changed: a replace names the version read.
            .consistent_read(true)
    }

    /// The streams (with their figures) of `tenant` whose sort keys start with `prefix`, all pages,
    /// oldest first.
    async fn read(&self, tenant: &TenantId, prefix: String) -> Result<Vec<StoredStream>, BackendError> {
        let query = self.query(tenant, prefix);
        let mut found: BTreeMap<Uuid, (Option<Destination>, Option<Figures>)> = BTreeMap::new();
        let mut start_key = None;
        loop {
            let out = query
                .clone()
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|e| classify("Query", e))?;
            for item in out.items.unwrap_or_default() {
                let sk = match item.get(attr::SK) {
                    Some(AttributeValue::S(sk)) => sk.as_str(),
                    _ => return Err(corrupt("stream", "no sort key")),
                };
                let rest = sk.strip_prefix(STREAM_PREFIX).ok_or_else(|| corrupt("stream", "a foreign sort key"))?;
                let (id, is_figures) = match rest.strip_suffix(FIGURES_SUFFIX) {
                    Some(id) => (id, true),
                    None => (rest, false),
                };
                let id: Uuid = id.parse().map_err(|e| corrupt("stream id", e))?;
                let slot = found.entry(id).or_default();
                if is_figures {
                    slot.1 = Some(figures_from_item(&item)?);
                } else {
                    let body = match item.get(attr::BODY) {
                        Some(AttributeValue::S(body)) => body,
                        _ => return Err(corrupt("stream", "no body")),
                    };
                    let stream: Destination = serde_json::from_str(body).map_err(|e| corrupt("stream", e))?;
                    // Re-checked so a store bug could never hand out another tenant's stream.
                    if &stream.tenant_id != tenant || stream.id != id {
                        return Err(corrupt("stream", "its body does not match its key"));
                    }
                    slot.0 = Some(stream);
                }
            }
            match out.last_evaluated_key {
                Some(key) => start_key = Some(key),
                None => break,
            }
        }
        Ok(found
            .into_values()
            .filter_map(|(stream, figures)| {
                Some(StoredStream { stream: stream?, figures: figures.unwrap_or_default() })
            })
            .collect())
    }

    /// An update of a stream's figures item, only while the stream is there.
    fn update_figures(
        &self,
        tenant: &TenantId,
        id: Uuid,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(tenant, figures_sk(id))))
            .expression_attribute_names("#pk", attr::PK)
    }
}

#[async_trait]
impl StreamStore for DynamoStreams {
    async fn create(&self, stream: &Destination) -> Result<(), StreamStoreError> {
        let tenant = &stream.tenant_id;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(stream_item(stream)?))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", attr::PK)
            .build()
            .map_err(built)?;
        let figures = Put::builder()
            .table_name(&self.table)
            .set_item(Some(key(tenant, figures_sk(stream.id))))
            .build()
            .map_err(built)?;
        let max = i64::try_from(MAX_STREAMS_PER_TENANT).map_err(built)?;
        let counted = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(tenant, COUNT_SK.to_owned())))
            .update_expression("ADD #n :one")
            .condition_expression("attribute_not_exists(#n) OR #n < :max")
            .expression_attribute_names("#n", attr::COUNT)
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":max", number(max))
            .build()
            .map_err(built)?;
        let items = vec![
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder().put(figures).build(),
            TransactWriteItem::builder().update(counted).build(),
        ];
        match self.transact(items, stream.id.as_u128() as u8).await? {
            Ok(()) => Ok(()),
            Err(refused) if refused.failed(2) => Err(StreamStoreError::Limit),
            // There already: a create sent again after its answer was lost.
            Err(refused) if refused.failed(0) => Ok(()),
            Err(Refused(codes)) => Err(BackendError::Internal(format!(
                "TransactWriteItems: a stream's create was cancelled ({})",
                codes.join(", ")
            ))
            .into()),
        }
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<StoredStream>, BackendError> {
        self.read(tenant, STREAM_PREFIX.to_owned()).await
    }

    async fn get(&self, tenant: &TenantId, id: Uuid) -> Result<Option<StoredStream>, BackendError> {
        // The stream and its figures, in one request.
        Ok(self.read(tenant, stream_sk(id)).await?.into_iter().find(|s| s.stream.id == id))
    }

    async fn replace(&self, stream: &Destination) -> Result<bool, BackendError> {
        let Some(read) = stream.version.checked_sub(1) else { return Ok(false) };
        let read = i64::try_from(read).map_err(|_| BackendError::Internal("stream version overflow".into()))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(stream_item(stream)?))
            .condition_expression("#v = :read")
            .expression_attribute_names("#v", attr::VERSION)
            .expression_attribute_values(":read", number(read))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(classify("PutItem", e)),
        }
    }

    async fn delete(&self, tenant: &TenantId, id: Uuid) -> Result<bool, BackendError> {
        let stream = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(tenant, stream_sk(id))))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", attr::PK)
            .build()
            .map_err(built)?;
        let figures = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(tenant, figures_sk(id))))
            .build()
            .map_err(built)?;
        let counted = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(tenant, COUNT_SK.to_owned())))
            .update_expression("ADD #n :minus_one")
            .expression_attribute_names("#n", attr::COUNT)
            .expression_attribute_values(":minus_one", number(-1))
            .build()
            .map_err(built)?;
        let items = vec![
            TransactWriteItem::builder().delete(stream).build(),
            TransactWriteItem::builder().delete(figures).build(),
            TransactWriteItem::builder().update(counted).build(),
        ];
        match self.transact(items, id.as_u128() as u8).await? {
            Ok(()) => Ok(true),
            Err(refused) if refused.failed(0) => Ok(false),
            Err(Refused(codes)) => Err(BackendError::Internal(format!(
                "TransactWriteItems: a stream's delete was cancelled ({})",
                codes.join(", ")
            ))),
        }
    }

    async fn record(&self, tenant: &TenantId, id: Uuid, delta: &FiguresDelta) -> Result<(), BackendError> {
        let mut adds = Vec::new();
        let mut sets = Vec::new();
        let mut update = self.update_figures(tenant, id);
        for (i, (name, n)) in
            [(attr::DELIVERED, delta.delivered), (attr::FAILED, delta.failed), (attr::RETRIED, delta.retried)]
                .into_iter()
                .enumerate()
        {
            if n > 0 {
                adds.push(format!("#c{i} :c{i}"));
                update = update
                    .expression_attribute_names(format!("#c{i}"), name)
                    .expression_attribute_values(format!(":c{i}"), count(n));
            }
        }
        // One ADD per bucket: a path named twice in one expression is refused.
        let mut lags: BTreeMap<usize, u64> = BTreeMap::new();
        for (bucket, n) in &delta.lags {
            *lags.entry((*bucket).min(LAG_BUCKETS - 1)).or_default() += n;
        }
        for (k, n) in lags.into_iter().filter(|(_, n)| *n > 0) {
            adds.push(format!("#l{k} :l{k}"));
            update = update
                .expression_attribute_names(format!("#l{k}"), format!("{}{k}", attr::LAG_PREFIX))
                .expression_attribute_values(format!(":l{k}"), count(n));
        }
        if let Some(error) = &delta.error {
            sets.extend(["#le = :le".to_owned(), "#lea = :lea".to_owned()]);
            update = update
                .expression_attribute_names("#le", attr::LAST_ERROR)
                .expression_attribute_names("#lea", attr::LAST_ERROR_AT)
                .expression_attribute_values(":le", string(error.message.as_str()))
                .expression_attribute_values(":lea", millis(error.at));
        }
        if let Some(at) = delta.delivered_at {
            sets.push("#lda = :lda".to_owned());
            update = update
                .expression_attribute_names("#lda", attr::LAST_DELIVERED_AT)
                .expression_attribute_values(":lda", millis(at));
        }
        if adds.is_empty() && sets.is_empty() {
            return Ok(());
        }
        let mut expression = Vec::new();
        if !adds.is_empty() {
            expression.push(format!("ADD {}", adds.join(", ")));
        }
        if !sets.is_empty() {
            expression.push(format!("SET {}", sets.join(", ")));
        }
        let result = update
            .update_expression(expression.join(" "))
            // A stream deleted meanwhile: its figures are not made again.
            .condition_expression("attribute_exists(#pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(classify("UpdateItem", e)),
        }
    }

    async fn set_failing(&self, tenant: &TenantId, id: Uuid, failing: Option<&Failing>) -> Result<bool, BackendError> {
        let update = self
            .update_figures(tenant, id)
            .expression_attribute_names("#f", attr::FAILING)
            .expression_attribute_names("#since", attr::FAILING_SINCE)
            .expression_attribute_names("#reason", attr::FAILING_REASON);
        let update = match failing {
            Some(failing) => update
                .update_expression("SET #f = :f, #since = :since, #reason = :reason")
                .condition_expression("attribute_exists(#pk) AND attribute_not_exists(#f)")
                .expression_attribute_values(":f", string(FAILING))
                .expression_attribute_values(":since", millis(failing.since))
                .expression_attribute_values(":reason", string(failing.reason.as_str())),
            None => update
                .update_expression("REMOVE #f, #since, #reason")
                // `#pk` is named for every update of figures; an unused name is refused.
                .condition_expression("attribute_exists(#pk) AND attribute_exists(#f)"),
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(classify("UpdateItem", e)),
        }
    }

    async fn failing_count(&self) -> Result<u64, BackendError> {
        // The sparse index holds failing streams only: a count of it, never a Scan of the table.
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(STREAMS_BY_FAILING)
            .key_condition_expression("#f = :f")
            .expression_attribute_names("#f", attr::FAILING)
            .expression_attribute_values(":f", string(FAILING))
            .select(Select::Count);
        let mut total = 0u64;
        let mut start_key = None;
        loop {
            let out = query
                .clone()
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|e| classify("Query", e))?;
            total += u64::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(key) => start_key = Some(key),
                None => return Ok(total),
            }
        }
    }
}
