//! Tenants' retention and legal holds in DynamoDB: one item per tenant in the counters table
//! (`sk = POLICY`, beside its seal item), its JSON and a version that every write conditions on.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::errors::{classify, corrupt};
use super::tables::counter_attr;
use super::{DynamoStore, number, string, tenant_key};
use crate::backend::BackendError;
use crate::domain::TenantId;
use crate::retention::{PolicyStore, TenantPolicy};

/// The sort key of a tenant's policy item.
const POLICY_SK: &str = "POLICY";
const BODY: &str = "policy";
const VERSION: &str = "version";

#[async_trait]
impl PolicyStore for DynamoStore {
    async fn policy(&self, tenant: &TenantId) -> Result<(TenantPolicy, u64), BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.counters_table)
            .key(counter_attr::PK, string(tenant_key(tenant)))
            .key(counter_attr::SK, string(POLICY_SK))
            // A hold placed a moment ago covers the very next write.
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        let Some(item) = out.item else { return Ok((TenantPolicy::default(), 0)) };
        let body = match item.get(BODY) {
            Some(AttributeValue::S(text)) => text,
            _ => return Err(corrupt("policy", "no body")),
        };
        let version = match item.get(VERSION) {
            Some(AttributeValue::N(n)) => n.parse().map_err(|e| corrupt("policy version", e))?,
            _ => return Err(corrupt("policy", "no version")),
        };
        Ok((serde_json::from_str(body).map_err(|e| corrupt("policy", e))?, version))
    }

    async fn put_policy(&self, tenant: &TenantId, policy: &TenantPolicy, version: u64) -> Result<bool, BackendError> {
        let body = serde_json::to_string(policy).map_err(|e| BackendError::Internal(e.to_string()))?;
        let next = i64::try_from(version + 1).map_err(|_| BackendError::Internal("policy version overflow".into()))?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.counters_table)
            .item(counter_attr::PK, string(tenant_key(tenant)))
            .item(counter_attr::SK, string(POLICY_SK))
            .item(BODY, string(body))
            .item(VERSION, number(next))
            .expression_attribute_names("#v", VERSION);
        put = if version == 0 {
            put.condition_expression("attribute_not_exists(#v)")
        } else {
            put.condition_expression("#v = :read").expression_attribute_values(":read", number(next - 1))
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(classify("PutItem", e)),
        }
    }
}
