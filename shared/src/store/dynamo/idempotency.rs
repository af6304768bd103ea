//! Idempotency records in DynamoDB: a claim is one conditional PutItem whose failure returns the
//! existing record (ReturnValuesOnConditionCheckFailure), so a repeat costs one request too.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};

use super::errors::classify;
use super::tables::idempotency_attr as attr;
use crate::backend::BackendError;
use crate::domain::TenantId;
use crate::idempotency::{Claim, IdempotencyStore, RECORD_TTL, STALE_CLAIM, StoredResponse};

#[derive(Debug, Clone)]
pub struct DynamoIdempotency {
    client: Client,
    table: String,
}

impl DynamoIdempotency {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoIdempotency { client, table: table.into() }
    }
}

fn record_key(tenant: &TenantId, key: &str) -> AttributeValue {
    AttributeValue::S(format!("T#{tenant}#K#{key}"))
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// What an existing record means for a new request with `hash`.
fn existing(item: &HashMap<String, AttributeValue>, hash: &str) -> Claim {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    if text(attr::REQUEST_HASH).as_deref() != Some(hash) {
        return Claim::Mismatch;
    }
    let status = item.get(attr::STATUS).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<u16>().ok());
    match (status, text(attr::BODY)) {
        (Some(status), Some(body)) => Claim::Completed(StoredResponse { status, body }),
        _ => Claim::InProgress,
    }
}

#[async_trait]
impl IdempotencyStore for DynamoIdempotency {
    async fn claim(&self, tenant: &TenantId, key: &str, hash: &str, now: DateTime<Utc>) -> Result<Claim, BackendError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(attr::PK, record_key(tenant, key))
            .item(attr::REQUEST_HASH, s(hash))
            .item(attr::CLAIMED_AT, n(now.timestamp_millis()))
            .item(attr::EXPIRES_AT, n((now + RECORD_TTL).timestamp()))
            // Free, expired (TTL deletes lazily), or claimed by a request that never finished.
            .condition_expression(
                "attribute_not_exists(#pk) OR #exp < :now OR (attribute_not_exists(#status) AND #claimed < :stale)",
            )
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#claimed", attr::CLAIMED_AT)
            .expression_attribute_values(":now", n(now.timestamp()))
            .expression_attribute_values(":stale", n((now - STALE_CLAIM).timestamp_millis()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Claimed),
            Err(e) => match e.as_service_error() {
                Some(service) if service.is_conditional_check_failed_exception() => {
                    let old = match service {
                        aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => {
                            c.item().cloned()
                        }
                        _ => None,
                    };
                    let old = match old {
                        Some(item) => item,
                        // Older servers do not return the item: read it.
                        None => self
                            .client
                            .get_item()
                            .table_name(&self.table)
                            .key(attr::PK, record_key(tenant, key))
                            .consistent_read(true)
                            .send()
                            .await
                            .map_err(|e| classify("GetItem", e))?
                            .item
                            .unwrap_or_default(),
                    };
                    Ok(existing(&old, hash))
                }
                _ => Err(classify("PutItem", e)),
            },
        }
    }

    async fn complete(
        &self,
        tenant: &TenantId,
        key: &str,
        response: &StoredResponse,
        _now: DateTime<Utc>,
    ) -> Result<(), BackendError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, record_key(tenant, key))
            .update_expression("SET #status = :status, #body = :body")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#body", attr::BODY)
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_values(":status", n(i64::from(response.status)))
            .expression_attribute_values(":body", s(&response.body))
            .send()
            .await
            .map_err(|e| classify("UpdateItem", e))?;
        Ok(())
    }

    async fn release(&self, tenant: &TenantId, key: &str) -> Result<(), BackendError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(attr::PK, record_key(tenant, key))
            .condition_expression("attribute_not_exists(#status)")
            .expression_attribute_names("#status", attr::STATUS)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(classify("DeleteItem", e)),
        }
    }
}
