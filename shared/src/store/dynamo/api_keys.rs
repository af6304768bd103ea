//! API key records in DynamoDB. Checking a key is one strongly consistent GetItem, so a revocation
//! takes effect on the very next request.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use super::errors::{classify, corrupt};
use super::query_all;
use super::tables::{API_KEYS_BY_TENANT, api_key_attr};
use crate::auth::api_keys::{ApiKeyRecord, ApiKeyStore};
use crate::backend::BackendError;
use crate::domain::TenantId;

#[derive(Debug, Clone)]
pub struct DynamoApiKeys {
    client: Client,
    table: String,
}

impl DynamoApiKeys {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoApiKeys { client, table: table.into() }
    }
}

#[async_trait]
impl ApiKeyStore for DynamoApiKeys {
    async fn find(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(api_key_attr::KEY_ID, AttributeValue::S(key_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        out.item.map(|item| serde_dynamo::from_item(item).map_err(|e| corrupt("API key", e))).transpose()
    }

    async fn insert(&self, record: &ApiKeyRecord) -> Result<(), BackendError> {
        let item = serde_dynamo::to_item(record).map_err(|e| BackendError::Internal(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", api_key_attr::KEY_ID)
            .send()
            .await
            .map_err(|e| classify("PutItem", e))?;
        Ok(())
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, BackendError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(API_KEYS_BY_TENANT)
            .key_condition_expression("#t = :t")
            .expression_attribute_names("#t", api_key_attr::TENANT_ID)
            .expression_attribute_values(":t", AttributeValue::S(tenant.to_string()));
        query_all(query, "API key").await
    }

    async fn revoke(&self, key_id: &str) -> Result<bool, BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(api_key_attr::KEY_ID, AttributeValue::S(key_id.to_owned()))
            .update_expression("SET #revoked = :true")
            .condition_expression("attribute_exists(#id)")
            .expression_attribute_names("#revoked", api_key_attr::REVOKED)
            .expression_attribute_names("#id", api_key_attr::KEY_ID)
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(classify("UpdateItem", e)),
        }
    }
}
