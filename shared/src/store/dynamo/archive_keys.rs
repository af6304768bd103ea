//! Archive keys in DynamoDB, a table of their own: `pk = T#<tenant>`, `sk` = entry id, one item per
//! archived entry with an attribute per sealed field — its key (binary), or the id of the erasure
//! record that destroyed it (string). Kept as long as the archive keeps the entry (TTL), and no
//! longer than that: the table has no point-in-time recovery, so a destroyed key is gone.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValue};
use futures::StreamExt;
use uuid::Uuid;

use super::errors::{classify, corrupt};
use super::tables::archive_key_attr;
use super::{number, string, tenant_key};
use crate::archive::shred::{ArchiveKeys, EntryKeys, FieldKey, KEY_BYTES, KeySlot};
use crate::backend::BackendError;
use crate::domain::TenantId;

/// Key items written at once by [`ArchiveKeys::issue`] (one UpdateItem each: only an update can
/// keep a key or tombstone already there).
const UPDATES_AT_ONCE: usize = 16;
/// BatchGetItem's limit.
const KEYS_PER_READ: usize = 100;

#[derive(Debug, Clone)]
pub struct DynamoArchiveKeys {
    client: Client,
    table: String,
    /// How long the archive keeps an entry: its keys expire a day after.
    retention_days: i64,
}

impl DynamoArchiveKeys {
    pub fn new(client: Client, table: impl Into<String>, retention_days: i64) -> Self {
        DynamoArchiveKeys { client, table: table.into(), retention_days }
    }

    fn key(tenant: &TenantId, id: Uuid) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (archive_key_attr::PK.to_owned(), string(tenant_key(tenant))),
            (archive_key_attr::SK.to_owned(), string(id.to_string())),
        ])
    }

    /// An update of entry `id`'s key item that also sets its expiry (`#x = :x`) where none is.
    fn update(
        &self,
        tenant: &TenantId,
        id: Uuid,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(tenant, id)))
            .expression_attribute_names("#x", archive_key_attr::EXPIRES_AT)
            .expression_attribute_values(":x", number(self.expires_at(id)))
    }

    /// [`ArchiveKeys::issue`] for one entry.
    async fn issue_one(&self, tenant: &TenantId, id: Uuid, fields: &[&'static str]) -> Result<EntryKeys, BackendError> {
        if fields.is_empty() {
            return Ok(EntryKeys::new());
        }
        let mut expression = Vec::with_capacity(fields.len() + 1);
        let mut update = self.update(tenant, id).return_values(ReturnValue::AllNew);
        for (i, field) in fields.iter().enumerate() {
            expression.push(format!("#f{i} = if_not_exists(#f{i}, :k{i})"));
            update = update
                .expression_attribute_names(format!("#f{i}"), *field)
                .expression_attribute_values(format!(":k{i}"), AttributeValue::B(Blob::new(FieldKey::random().0)));
        }
        expression.push("#x = if_not_exists(#x, :x)".to_owned());
        let out = update
            .update_expression(format!("SET {}", expression.join(", ")))
            .send()
            .await
            .map_err(|e| classify("UpdateItem", e))?;
        slots_of(&out.attributes.unwrap_or_default())
    }

    /// Epoch seconds after which the archive no longer has entry `id`.
    fn expires_at(&self, id: Uuid) -> i64 {
        let stamped = crate::domain::time::uuid_v7_time(&id).unwrap_or_else(chrono::Utc::now);
        (stamped + chrono::Duration::days(self.retention_days + 1)).timestamp()
    }
}

/// An item's slots: every attribute but the key and expiry.
fn slots_of(item: &HashMap<String, AttributeValue>) -> Result<EntryKeys, BackendError> {
    let mut out = EntryKeys::new();
    for (name, value) in item {
        if [archive_key_attr::PK, archive_key_attr::SK, archive_key_attr::EXPIRES_AT].contains(&name.as_str()) {
            continue;
        }
        let slot = match value {
            AttributeValue::B(bytes) => KeySlot::Key(FieldKey(
                bytes.as_ref().try_into().map_err(|_| corrupt("archive key", format!("not {KEY_BYTES} bytes")))?,
            )),
            AttributeValue::S(record) => KeySlot::Shredded(record.parse().map_err(|e| corrupt("archive key", e))?),
            _ => return Err(corrupt("archive key", "neither a key nor a record")),
        };
        out.insert(name.clone(), slot);
    }
    Ok(out)
}

#[async_trait]
impl ArchiveKeys for DynamoArchiveKeys {
    async fn issue(
        &self,
        tenant: &TenantId,
        wanted: &[(Uuid, Vec<&'static str>)],
    ) -> Result<Vec<EntryKeys>, BackendError> {
        let updates: Vec<_> = wanted.iter().map(|(id, fields)| self.issue_one(tenant, *id, fields)).collect();
        futures::stream::iter(updates).buffered(UPDATES_AT_ONCE).collect::<Vec<_>>().await.into_iter().collect()
    }

    async fn keys(&self, tenant: &TenantId, ids: &[Uuid]) -> Result<HashMap<Uuid, EntryKeys>, BackendError> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(KEYS_PER_READ) {
            let mut pending = KeysAndAttributes::builder()
                .set_keys(Some(chunk.iter().map(|id| Self::key(tenant, *id)).collect()))
                .consistent_read(true)
                .build()
                .map_err(|e| BackendError::Internal(e.to_string()))?;
            loop {
                let read = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| classify("BatchGetItem", e))?;
                for item in read.responses.unwrap_or_default().remove(&self.table).unwrap_or_default() {
                    let id = match item.get(archive_key_attr::SK) {
                        Some(AttributeValue::S(id)) => id.parse().map_err(|e| corrupt("archive key id", e))?,
                        _ => return Err(corrupt("archive key", "no id")),
                    };
                    out.insert(id, slots_of(&item)?);
                }
                match read.unprocessed_keys.unwrap_or_default().remove(&self.table) {
                    Some(rest) if !rest.keys.is_empty() => {
                        // Throttled: a moment before the rest.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        pending = rest;
                    }
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    async fn shred(&self, tenant: &TenantId, id: Uuid, fields: &[&str], record: Uuid) -> Result<(), BackendError> {
        if fields.is_empty() {
            return Ok(());
        }
        let mut expression: Vec<String> = Vec::with_capacity(fields.len() + 1);
        let mut update = self.update(tenant, id).expression_attribute_values(":r", string(record.to_string()));
        for (i, field) in fields.iter().enumerate() {
            expression.push(format!("#f{i} = :r"));
            update = update.expression_attribute_names(format!("#f{i}"), *field);
        }
        expression.push("#x = if_not_exists(#x, :x)".to_owned());
        update
            .update_expression(format!("SET {}", expression.join(", ")))
            .send()
            .await
            .map_err(|e| classify("UpdateItem", e))?;
        Ok(())
    }
}
