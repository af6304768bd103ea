//! The DynamoDB adapter. Layout and costs are described in docs/ARCHITECTURE.md; in short:
//!
//! - entries: `pk = T#<tenant>`, `id` (UUIDv7) as sort key, one GSI per query dimension, all
//!   keyed `T#<tenant>#<kind>#<value>` + `id`. Every read is one Query (or GetItem); never a Scan.
//! - counters: `pk = T#<tenant>`, `sk = <hour>#<shard>`, updated in the same transaction that puts
//!   the entry, so a retried or replayed write can never be counted twice.

pub mod api_keys;
pub mod archive_keys;
pub mod client;
pub mod connections;
mod errors;
pub mod idempotency;
mod policies;
mod seal;
mod streams;
pub mod tables;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{Semaphore, SemaphorePermit};
use uuid::Uuid;

use self::errors::{classify, corrupt};
use self::tables::{counter_attr, entry_attr, entry_index};
use super::{AuditStore, StoreError};
use crate::backend::BackendError;
use crate::domain::HourlyCounts;
use crate::domain::{
    AuditAction, AuditLogEntry, Continuation, Counts, EntityType, HourBucket, IndexKey, QueryPlan, StatsRange,
    StoredPage, TenantId,
};
use crate::erasure::Erasure;
use crate::integrity::leaf::Integrity;

pub use api_keys::DynamoApiKeys;
pub use archive_keys::DynamoArchiveKeys;
pub use client::{RequestCounter, client_for_local_endpoint, client_from_environment, open_connection};
pub use connections::DynamoConnections;
pub use idempotency::DynamoIdempotency;
pub use streams::DynamoStreams;

/// A page stops after this many Query requests even if filters left it short; it then returns a
/// `next_token` so the caller continues where the page stopped. Bounds latency and cost per call.
pub const MAX_QUERIES_PER_PAGE: usize = 8;
/// Transactions cancelled by a conflicting concurrent write on the same counter are retried this
/// many times (nothing was written by a cancelled transaction, so a retry is safe).
const MAX_CONFLICT_RETRIES: u32 = 5;
/// Requests one store sends at once; more callers queue. Keeps a burst (a big batch, a flood on the
/// local gateway) from opening a connection per call.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 32;
/// Entry attributes stored as JSON text rather than DynamoDB maps: free-form JSON keeps its exact
/// numbers (DynamoDB has one number type, limited to 38 digits and 1e125) and costs fewer bytes.
const JSON_TEXT_ATTRIBUTES: [&str; 2] = ["changes", "metadata"];

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    entries_table: String,
    counters_table: String,
    counter_shards: u8,
    in_flight: Arc<Semaphore>,
    /// Where seals keep checkpoints and tiles; `None` for a store that never seals or proves.
    seal_tables: Option<SealTables>,
}

/// The tables of sealing: checkpoints (put-only, kept forever) and proof tiles (kept as long as
/// the entries).
#[derive(Debug, Clone)]
pub struct SealTables {
    pub checkpoints: String,
    pub proofs: String,
    pub retention_days: u32,
}

impl DynamoStore {
    pub fn new(client: Client, entries_table: impl Into<String>, counters_table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            entries_table: entries_table.into(),
            counters_table: counters_table.into(),
            counter_shards: 1,
            in_flight: Arc::new(Semaphore::new(DEFAULT_MAX_IN_FLIGHT)),
            seal_tables: None,
        }
    }

    pub fn with_seal_tables(mut self, tables: SealTables) -> Self {
        self.seal_tables = Some(tables);
        self
    }

    pub fn with_counter_shards(mut self, shards: u8) -> Self {
        self.counter_shards = shards.max(1);
        self
    }

    pub fn with_max_in_flight(mut self, requests: usize) -> Self {
        self.in_flight = Arc::new(Semaphore::new(requests.max(1)));
        self
    }

    /// Waits for a free request slot; held for the duration of one DynamoDB request.
    async fn slot(&self) -> SemaphorePermit<'_> {
        self.in_flight.acquire().await.expect("the semaphore is never closed")
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn entries_table(&self) -> &str {
        &self.entries_table
    }
}

fn tenant_key(tenant: &TenantId) -> String {
    format!("T#{tenant}")
}

/// An entry's key in the entries table.
fn entry_key(tenant: &TenantId, id: Uuid) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (entry_attr::PK.to_owned(), string(tenant_key(tenant))),
        (entry_attr::ID.to_owned(), string(id.to_string())),
    ])
}

/// The sort key of a tenant's seal item in the counters table (its hourly counters sort before it).
const SEAL_SK: &str = "SEAL";

/// The index, key attribute and key value of the partition `key` names for `tenant`. Tenant ids
/// cannot contain `#`, so no value of one tenant can equal a value of another.
fn partition(tenant: &TenantId, key: &IndexKey) -> (Option<&'static str>, &'static str, String) {
    let scoped = |kind: &str, value: &str| format!("T#{tenant}#{kind}#{value}");
    match key {
        IndexKey::Tenant => (None, entry_attr::PK, tenant_key(tenant)),
        IndexKey::Entity(id) => (Some(entry_index::BY_ENTITY), entry_attr::ENTITY_KEY, scoped("E", id)),
        IndexKey::Project(id) => (Some(entry_index::BY_PROJECT), entry_attr::PROJECT_KEY, scoped("P", id)),
        IndexKey::User(id) => (Some(entry_index::BY_USER), entry_attr::USER_KEY, scoped("U", id)),
        IndexKey::Action(a) => (Some(entry_index::BY_ACTION), entry_attr::ACTION_KEY, scoped("A", a.as_str())),
        IndexKey::EntityType(t) => (Some(entry_index::BY_TYPE), entry_attr::TYPE_KEY, scoped("Y", t.as_str())),
    }
}

/// The stored item: the entry's own fields (via serde_dynamo) plus its table and index keys.
pub fn entry_item(entry: &AuditLogEntry) -> Result<HashMap<String, AttributeValue>, BackendError> {
    let mut item: HashMap<String, AttributeValue> =
        serde_dynamo::to_item(entry).map_err(|e| BackendError::Internal(format!("entry could not be encoded: {e}")))?;
    let tenant = &entry.tenant_id;
    item.insert(entry_attr::PK.into(), AttributeValue::S(tenant_key(tenant)));
    for key in IndexKey::all_for(entry) {
        let (_, attribute, value) = partition(tenant, &key);
        item.insert(attribute.into(), AttributeValue::S(value));
    }
    for (attribute, object) in JSON_TEXT_ATTRIBUTES.into_iter().zip([&entry.changes, &entry.metadata]) {
        if let Some(object) = object {
            let text = serde_json::to_string(object).map_err(|e| BackendError::Internal(e.to_string()))?;
            item.insert(attribute.into(), AttributeValue::S(text));
        }
    }
    Ok(item)
}

/// Every item a Query returns, following `LastEvaluatedKey` page after page, each decoded as `T`.
/// For small, bounded results (a tenant's API keys, connections, hourly counters).
pub(crate) async fn query_all<T: serde::de::DeserializeOwned>(
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    what: &str,
) -> Result<Vec<T>, BackendError> {
    let mut decoded = Vec::new();
    let mut start_key = None;
    loop {
        let out =
            query.clone().set_exclusive_start_key(start_key.take()).send().await.map_err(|e| classify("Query", e))?;
        for item in out.items.unwrap_or_default() {
            decoded.push(serde_dynamo::from_item(item).map_err(|e| corrupt(what, e))?);
        }
        match out.last_evaluated_key {
            Some(key) => start_key = Some(key),
            None => return Ok(decoded),
        }
    }
}

/// Reads an entry back from an item or a stream image (extra key attributes are ignored).
pub fn entry_from_item(mut item: HashMap<String, AttributeValue>) -> Result<AuditLogEntry, BackendError> {
    let mut json_fields = [None, None];
    for (slot, attribute) in json_fields.iter_mut().zip(JSON_TEXT_ATTRIBUTES) {
        if let Some(AttributeValue::S(text)) = item.remove(attribute) {
            *slot = Some(serde_json::from_str(&text).map_err(|e| corrupt(attribute, e))?);
        }
    }
    let mut entry: AuditLogEntry = serde_dynamo::from_item(item).map_err(|e| corrupt("entry", e))?;
    let [changes, metadata] = json_fields;
    entry.changes = changes;
    entry.metadata = metadata;
    Ok(entry)
}

fn counter_action_attribute(a: AuditAction) -> String {
    format!("action_{a}")
}

fn counter_type_attribute(t: EntityType) -> String {
    format!("type_{t}")
}

fn string(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn number(n: i64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

impl DynamoStore {
    fn counter_key(&self, entry: &AuditLogEntry) -> HashMap<String, AttributeValue> {
        // The id's random low bits spread one hour's writes over the shards.
        let shard = (entry.id.as_u128() % u128::from(self.counter_shards)) as u8;
        HashMap::from([
            (counter_attr::PK.to_owned(), string(tenant_key(&entry.tenant_id))),
            (counter_attr::SK.to_owned(), string(format!("{}#{shard:02}", HourBucket::of(entry.timestamp).label()))),
        ])
    }

    fn put_transaction(&self, entry: &AuditLogEntry) -> Result<Vec<TransactWriteItem>, BackendError> {
        let put = Put::builder()
            .table_name(&self.entries_table)
            .set_item(Some(entry_item(entry)?))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", entry_attr::PK)
            .build()
            .map_err(|e| BackendError::Internal(e.to_string()))?;
        let count = Update::builder()
            .table_name(&self.counters_table)
            .set_key(Some(self.counter_key(entry)))
            .update_expression("ADD #total :one, #action :one, #type :one SET #exp = :exp, #hour = :hour")
            .expression_attribute_names("#hour", counter_attr::HOUR)
            .expression_attribute_values(":hour", string(HourBucket::of(entry.timestamp).label()))
            .expression_attribute_names("#total", counter_attr::TOTAL)
            .expression_attribute_names("#action", counter_action_attribute(entry.action))
            .expression_attribute_names("#type", counter_type_attribute(entry.entity_type))
            .expression_attribute_names("#exp", counter_attr::EXPIRES_AT)
            .expression_attribute_values(":one", number(1))
            // Later entries of an hour expire later, so the counter lives as long as its last entry.
            .expression_attribute_values(":exp", number(entry.expires_at))
            .build()
            .map_err(|e| BackendError::Internal(e.to_string()))?;
        // The tenant's seal marker: no entry stamped before a sealed period's end may be stored.
        let open = ConditionCheck::builder()
            .table_name(&self.counters_table)
            .key(counter_attr::PK, string(tenant_key(&entry.tenant_id)))
            .key(counter_attr::SK, string(SEAL_SK))
            .condition_expression("attribute_not_exists(#closed) OR #closed <= :stamped")
            .expression_attribute_names("#closed", counter_attr::CLOSED_BEFORE)
            .expression_attribute_values(":stamped", number(entry.timestamp.timestamp_millis()))
            .build()
            .map_err(|e| BackendError::Internal(e.to_string()))?;
        Ok(vec![
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder().update(count).build(),
            TransactWriteItem::builder().condition_check(open).build(),
        ])
    }
}

/// What a cancelled transaction means for us.
enum Cancelled {
    AlreadyExists,
    Sealed,
    Conflict,
    Other,
}

fn cancellation(err: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, impl std::fmt::Debug>) -> Cancelled {
    let Some(TransactWriteItemsError::TransactionCanceledException(e)) = err.as_service_error() else {
        return Cancelled::Other;
    };
    let codes: Vec<&str> = e.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")).collect();
    if codes.first() == Some(&"ConditionalCheckFailed") {
        Cancelled::AlreadyExists
    } else if codes.get(2) == Some(&"ConditionalCheckFailed") {
        Cancelled::Sealed
    } else if codes.contains(&"TransactionConflict") {
        Cancelled::Conflict
    } else {
        Cancelled::Other
    }
}

#[async_trait]
impl AuditStore for DynamoStore {
    fn backend(&self) -> &'static str {
        "dynamodb"
    }

    async fn put(&self, entry: &AuditLogEntry) -> Result<(), StoreError> {
        let items = self.put_transaction(entry)?;
        let mut attempt = 0;
        loop {
            // The SDK fills ClientRequestToken once per call, so its own retries are idempotent too.
            let result = self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await;
            let err = match result {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            match cancellation(&err) {
                Cancelled::AlreadyExists => return Err(StoreError::AlreadyExists(entry.id)),
                Cancelled::Sealed => return Err(StoreError::Sealed(entry.id)),
                Cancelled::Conflict if attempt < MAX_CONFLICT_RETRIES => {
                    attempt += 1;
                    let jitter = u64::from(entry.id.as_u128() as u8 % 16);
                    tokio::time::sleep(Duration::from_millis((10 << attempt) + jitter)).await;
                }
                Cancelled::Conflict => {
                    return Err(
                        BackendError::Throttled("TransactWriteItems: counter contention persisted".into()).into()
                    );
                }
                Cancelled::Other => return Err(classify("TransactWriteItems", err).into()),
            }
        }
    }

    async fn erase(&self, tenant: &TenantId, id: Uuid, erasure: &Erasure) -> Result<(), StoreError> {
        let encode = |i: &Integrity| {
            serde_dynamo::to_attribute_value::<_, AttributeValue>(i)
                .map_err(|e| BackendError::Internal(format!("integrity could not be encoded: {e}")))
        };
        // Only these attributes change, as the erasure function's IAM policy allows: the fields'
        // values (null, as an entry without them has), the user index's key, and `integrity`.
        let mut names = HashMap::from([
            ("#id".to_owned(), entry_attr::ID.to_owned()),
            ("#exp".to_owned(), entry_attr::EXPIRES_AT.to_owned()),
            ("#integrity".to_owned(), "integrity".to_owned()),
        ]);
        let mut sets = vec!["#integrity = :after".to_owned()];
        let mut removes = Vec::new();
        for (i, field) in erasure.fields.iter().enumerate() {
            names.insert(format!("#f{i}"), (*field).to_owned());
            sets.push(format!("#f{i} = :null"));
            if *field == "user_id" {
                names.insert("#user_key".into(), entry_attr::USER_KEY.into());
                removes.push("#user_key");
            }
        }
        let mut update = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            update.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.entries_table)
            .set_key(Some(entry_key(tenant, id)))
            .update_expression(update)
            // Not held: a hold placed since the erasure was planned keeps the entry as it is.
            .condition_expression("attribute_exists(#id) AND #exp > :now AND #exp <> :held AND #integrity = :before")
            .set_expression_attribute_names(Some(names))
            .expression_attribute_values(":after", encode(&erasure.after)?)
            .expression_attribute_values(":before", encode(&erasure.before)?)
            .expression_attribute_values(":null", AttributeValue::Null(true))
            .expression_attribute_values(":held", number(crate::retention::HELD_UNTIL))
            .expression_attribute_values(":now", AttributeValue::N(Utc::now().timestamp().to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                // Gone, or changed: a consistent read tells which.
                match self.get(tenant, id, Utc::now()).await? {
                    Some(_) => Err(StoreError::Changed(id)),
                    None => Err(StoreError::NotFound(id)),
                }
            }
            Err(e) => Err(classify("UpdateItem", e).into()),
        }
    }

    async fn set_expiry(&self, tenant: &TenantId, id: Uuid, expires_at: i64) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.entries_table)
            .set_key(Some(entry_key(tenant, id)))
            .update_expression("SET #exp = :expires")
            .condition_expression("attribute_exists(#id) AND #exp > :now")
            .expression_attribute_names("#id", entry_attr::ID)
            .expression_attribute_names("#exp", entry_attr::EXPIRES_AT)
            .expression_attribute_values(":expires", number(expires_at))
            .expression_attribute_values(":now", number(Utc::now().timestamp()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                Err(StoreError::NotFound(id))
            }
            Err(e) => Err(classify("UpdateItem", e).into()),
        }
    }

    async fn get(&self, tenant: &TenantId, id: Uuid, now: DateTime<Utc>) -> Result<Option<AuditLogEntry>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.entries_table)
            .set_key(Some(entry_key(tenant, id)))
            // Read-your-write: a client that has just written an entry may fetch it at once.
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        match out.item {
            None => Ok(None),
            Some(item) => {
                let entry = entry_from_item(item)?;
                Ok(Some(entry).filter(|e| !e.is_expired(now) && &e.tenant_id == tenant))
            }
        }
    }

    async fn query(&self, plan: &QueryPlan, now: DateTime<Utc>) -> Result<StoredPage, StoreError> {
        if plan.is_empty() {
            return Ok(StoredPage::default());
        }
        let (index, key_attribute, key_value) = partition(&plan.tenant, &plan.index);
        let mut filter = vec!["#exp > :now".to_owned()];
        let mut names = HashMap::from([
            ("#k".to_owned(), key_attribute.to_owned()),
            ("#id".to_owned(), entry_attr::ID.to_owned()),
            ("#exp".to_owned(), entry_attr::EXPIRES_AT.to_owned()),
        ]);
        let mut values = HashMap::from([
            (":k".to_owned(), string(key_value)),
            (":lo".to_owned(), string(plan.lowest.to_string())),
            (":hi".to_owned(), string(plan.highest.to_string())),
            (":now".to_owned(), number(now.timestamp())),
        ]);
        let residual = &plan.residual;
        for (name, attribute, value) in [
            ("action", "action", residual.action.map(AuditAction::as_str)),
            ("type", "entity_type", residual.entity_type.map(EntityType::as_str)),
            ("user", "user_id", residual.user_id.as_deref()),
            ("project", "project_id", residual.project_id.as_deref()),
        ] {
            if let Some(value) = value {
                filter.push(format!("#{name} = :{name}"));
                names.insert(format!("#{name}"), attribute.to_owned());
                values.insert(format!(":{name}"), string(value));
            }
        }

        // One more than wanted tells whether another page exists without an extra round trip.
        let wanted = plan.skip + plan.take + 1;
        let mut matched: Vec<AuditLogEntry> = Vec::new();
        let mut start_key = None;
        for request in 1..=MAX_QUERIES_PER_PAGE {
            let mut query = self
                .client
                .query()
                .table_name(&self.entries_table)
                .set_index_name(index.map(str::to_owned))
                .key_condition_expression("#k = :k AND #id BETWEEN :lo AND :hi")
                .filter_expression(filter.join(" AND "))
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .set_exclusive_start_key(start_key.take());
            // Without residual filters almost every item read is returned (only expired ones are
            // not), so reading exactly what is wanted is one request. With them, let DynamoDB read
            // its full 1 MB page per request instead.
            if residual.is_empty() {
                query = query.limit(i32::try_from(wanted - matched.len()).unwrap_or(i32::MAX));
            }
            let slot = self.slot().await;
            let out = query.send().await.map_err(|e| classify("Query", e))?;
            drop(slot);
            for item in out.items.unwrap_or_default() {
                let entry = entry_from_item(item)?;
                // Re-checked here so a store bug could never return a foreign or expired entry.
                if entry.tenant_id == plan.tenant && !entry.is_expired(now) && residual.matches(&entry) {
                    matched.push(entry);
                }
            }
            if matched.len() >= wanted {
                break;
            }
            match out.last_evaluated_key {
                None => break,
                Some(key) if request == MAX_QUERIES_PER_PAGE => {
                    // Out of budget: stop here and let the caller continue after the last item read.
                    let after = key
                        .get(entry_attr::ID)
                        .and_then(|v| v.as_s().ok())
                        .and_then(|s| s.parse::<Uuid>().ok())
                        .ok_or_else(|| corrupt("key", "LastEvaluatedKey has no id"))?;
                    let skipped = matched.len().min(plan.skip);
                    let entries: Vec<AuditLogEntry> = matched.into_iter().skip(plan.skip).collect();
                    let skip = u32::try_from(plan.skip - skipped).unwrap_or(u32::MAX);
                    return Ok(StoredPage { entries, continuation: Some(Continuation { after, skip }) });
                }
                Some(key) => start_key = Some(key),
            }
        }
        let more = matched.len() >= wanted;
        let entries: Vec<AuditLogEntry> = matched.into_iter().skip(plan.skip).take(plan.take).collect();
        Ok(StoredPage::after_last(entries, more))
    }

    async fn counts(
        &self,
        tenant: &TenantId,
        range: &StatsRange,
        now: DateTime<Utc>,
    ) -> Result<HourlyCounts, StoreError> {
        let mut condition = "#pk = :pk".to_owned();
        let mut values = HashMap::from([
            (":pk".to_owned(), string(tenant_key(tenant))),
            (":now".to_owned(), number(now.timestamp())),
        ]);
        // Sort keys are `<hour>#<shard>`; `#` sorts before digits and `~` after them.
        let low = range.first.map(|b| format!("{}#", b.label()));
        let high = range.last.map(|b| format!("{}#~", b.label()));
        match (low, high) {
            (Some(l), Some(h)) => {
                condition.push_str(" AND #sk BETWEEN :lo AND :hi");
                values.extend([(":lo".to_owned(), string(l)), (":hi".to_owned(), string(h))]);
            }
            (Some(l), None) => {
                condition.push_str(" AND #sk >= :lo");
                values.insert(":lo".to_owned(), string(l));
            }
            (None, Some(h)) => {
                condition.push_str(" AND #sk <= :hi");
                values.insert(":hi".to_owned(), string(h));
            }
            (None, None) => {}
        }
        let mut names = HashMap::from([
            ("#pk".to_owned(), counter_attr::PK.to_owned()),
            ("#exp".to_owned(), counter_attr::EXPIRES_AT.to_owned()),
        ]);
        if condition.contains("#sk") {
            names.insert("#sk".to_owned(), counter_attr::SK.to_owned());
        }

        let _slot = self.slot().await;
        let query = self
            .client
            .query()
            .table_name(&self.counters_table)
            .key_condition_expression(&condition)
            .filter_expression("#exp > :now")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values));
        let mut hourly = HourlyCounts::new();
        for fields in query_all::<BTreeMap<String, Value>>(query, "counter").await? {
            // `<hour>#<shard>`; the partition's seal marker (`SEAL`) is no hour.
            let hour = fields.get(counter_attr::SK).and_then(Value::as_str).and_then(|sk| sk.split_once('#'));
            let Some(hour) = hour.and_then(|(label, _)| HourBucket::from_label(label)) else { continue };
            let n = |name: &str| fields.get(name).and_then(Value::as_u64).unwrap_or(0);
            let mut c = Counts { total: n(counter_attr::TOTAL), ..Counts::default() };
            for (i, a) in AuditAction::ALL.iter().enumerate() {
                c.by_action[i] = n(&counter_action_attribute(*a));
            }
            for (i, t) in EntityType::ALL.iter().enumerate() {
                c.by_entity_type[i] = n(&counter_type_attribute(*t));
            }
            hourly.entry(hour).or_default().add(&c);
        }
        Ok(hourly)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _slot = self.slot().await;
        // A key no entry can have (`H#` is never a tenant prefix): proves reachability and read
        // permission for half a read unit.
        self.client
            .get_item()
            .table_name(&self.entries_table)
            .key(entry_attr::PK, string("H#health"))
            .key(entry_attr::ID, string("0"))
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        Ok(())
    }
}
