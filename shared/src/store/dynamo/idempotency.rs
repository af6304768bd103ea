//! Idempotency records in DynamoDB. A fresh claim is one conditional PutItem whose failure returns
//! the existing record (ReturnValuesOnConditionCheckFailure), so a repeat costs one request too; a
//! takeover of a claim whose holder was cut off is one more, conditional on that holder's claim
//! time, so two retries cannot both take it over.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::errors::classify;
use super::tables::idempotency_attr as attr;
use crate::backend::BackendError;
use crate::idempotency::{Claim, Decision, IdempotencyStore, KeyOwner, RECORD_TTL, StoredResponse, decide};

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

/// `T#<tenant>#C#<hex SHA-256 of principal and key>`: principals may contain `#`, so they are hashed
/// (with the key) rather than spliced into the key.
fn record_key(owner: KeyOwner<'_>, key: &str) -> AttributeValue {
    let digest = Sha256::digest([owner.principal, key].join("\0").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    AttributeValue::S(format!("T#{}#C#{hex}", owner.tenant))
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn millis(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl DynamoIdempotency {
    /// The record as it is, read strongly consistently (for servers that do not return it with a
    /// failed condition).
    async fn read(&self, owner: KeyOwner<'_>, key: &str) -> Result<HashMap<String, AttributeValue>, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(attr::PK, record_key(owner, key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        Ok(out.item.unwrap_or_default())
    }

    /// Claims a record whose holder is gone, if nobody else did since `old_claimed`.
    async fn take_over(
        &self,
        owner: KeyOwner<'_>,
        key: &str,
        old_claimed: i64,
        stamped_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim, BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, record_key(owner, key))
            .update_expression("SET #claimed = :now")
            .condition_expression("#claimed = :old AND attribute_not_exists(#status)")
            .expression_attribute_names("#claimed", attr::CLAIMED_AT)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .expression_attribute_values(":old", n(old_claimed))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Claimed { stamped_at }),
            // Another retry took it over first: it is in progress again.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                Ok(Claim::InProgress)
            }
            Err(e) => Err(classify("UpdateItem", e)),
        }
    }
}

#[async_trait]
impl IdempotencyStore for DynamoIdempotency {
    async fn claim(
        &self,
        owner: KeyOwner<'_>,
        key: &str,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Claim, BackendError> {
        let token = uuid::Uuid::now_v7().to_string();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(attr::PK, record_key(owner, key))
            .item(attr::CLAIM_TOKEN, s(&token))
            .item(attr::REQUEST_HASH, s(hash))
            .item(attr::CLAIMED_AT, n(now.timestamp_millis()))
            .item(attr::STAMPED_AT, n(now.timestamp_millis()))
            .item(attr::EXPIRES_AT, n((now + RECORD_TTL).timestamp()))
            // Free, or expired (TTL deletes lazily).
            .condition_expression("attribute_not_exists(#pk) OR #exp < :now")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_values(":now", n(now.timestamp()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match result {
            Ok(_) => return Ok(Claim::Claimed { stamped_at: time(now.timestamp_millis()) }),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
                _ => return Err(classify("PutItem", e)),
            },
        };
        let old = match old {
            Some(item) => item,
            None => self.read(owner, key).await?,
        };
        let text = |name: &str| old.get(name).and_then(|v| v.as_s().ok()).cloned();
        let response = match (millis(&old, attr::STATUS), text(attr::BODY)) {
            (Some(status), Some(body)) => Some(StoredResponse { status: u16::try_from(status).unwrap_or(500), body }),
            _ => None,
        };
        let claimed = millis(&old, attr::CLAIMED_AT).unwrap_or(0);
        let stamped = millis(&old, attr::STAMPED_AT).unwrap_or(claimed);
        // Our own claim, written by an attempt whose reply was lost and refused on the SDK's retry.
        if text(attr::CLAIM_TOKEN).as_deref() == Some(token.as_str()) {
            return Ok(Claim::Claimed { stamped_at: time(stamped) });
        }
        match decide(hash, text(attr::REQUEST_HASH).as_deref().unwrap_or(""), response, time(claimed), now) {
            Decision::Answer(claim) => Ok(claim),
            Decision::TakeOver => self.take_over(owner, key, claimed, time(stamped), now).await,
        }
    }

    async fn complete(
        &self,
        owner: KeyOwner<'_>,
        key: &str,
        response: &StoredResponse,
        _now: DateTime<Utc>,
    ) -> Result<(), BackendError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, record_key(owner, key))
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

    async fn release(&self, owner: KeyOwner<'_>, key: &str) -> Result<(), BackendError> {
        // Not deleted: a claim time of 0 lets the next attempt take over at once, with the stamp.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, record_key(owner, key))
            .update_expression("SET #claimed = :zero")
            .condition_expression("attribute_exists(#pk) AND attribute_not_exists(#status)")
            .expression_attribute_names("#claimed", attr::CLAIMED_AT)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(classify("UpdateItem", e)),
        }
    }
}
