//! WebSocket connection records in DynamoDB.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};

use super::errors::classify;
use super::query_all;
use super::tables::{CONNECTIONS_BY_TENANT, connection_attr};
use crate::backend::BackendError;
use crate::domain::TenantId;
use crate::realtime::{ConnectionCounts, ConnectionStore, WebSocketConnectionInfo};

#[derive(Debug, Clone)]
pub struct DynamoConnections {
    client: Client,
    table: String,
}

impl DynamoConnections {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoConnections { client, table: table.into() }
    }

    /// A tenant's live records: one Query on the tenant index, never a Scan. TTL removes expired
    /// records within a day or two; until then the filter skips them.
    fn live_of(&self, tenant: &TenantId, now: DateTime<Utc>) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(CONNECTIONS_BY_TENANT)
            .key_condition_expression("#t = :t")
            .filter_expression("#exp > :now")
            .expression_attribute_names("#t", connection_attr::TENANT_ID)
            .expression_attribute_names("#exp", connection_attr::EXPIRES_AT)
            .expression_attribute_values(":t", AttributeValue::S(tenant.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now.timestamp().to_string()))
    }
}

#[async_trait]
impl ConnectionStore for DynamoConnections {
    async fn put(&self, connection: &WebSocketConnectionInfo) -> Result<(), BackendError> {
        let item = serde_dynamo::to_item(connection).map_err(|e| BackendError::Internal(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| classify("PutItem", e))?;
        Ok(())
    }

    async fn remove(&self, connection_id: &str) -> Result<(), BackendError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(connection_attr::CONNECTION_ID, AttributeValue::S(connection_id.to_owned()))
            .send()
            .await
            .map_err(|e| classify("DeleteItem", e))?;
        Ok(())
    }

    async fn tenant_connections(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
    ) -> Result<Vec<WebSocketConnectionInfo>, BackendError> {
        query_all(self.live_of(tenant, now), "connection").await
    }

    async fn count(
        &self,
        tenant: &TenantId,
        principal: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ConnectionCounts, BackendError> {
        #[derive(serde::Deserialize)]
        struct Owner {
            #[serde(default)]
            user_id: Option<String>,
        }
        // The fan-out's Query, reading only the owner of each record.
        let query = self
            .live_of(tenant, now)
            .projection_expression("#u")
            .expression_attribute_names("#u", connection_attr::USER_ID);
        let owners: Vec<Owner> = query_all(query, "connection").await?;
        Ok(ConnectionCounts::tally(owners.iter().map(|o| o.user_id.as_deref()), principal))
    }

    async fn strike(&self, connection_id: &str) -> Result<u32, BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(connection_attr::CONNECTION_ID, AttributeValue::S(connection_id.to_owned()))
            .update_expression("ADD #strikes :one")
            .condition_expression("attribute_exists(#id)")
            .expression_attribute_names("#strikes", connection_attr::STRIKES)
            .expression_attribute_names("#id", connection_attr::CONNECTION_ID)
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match result {
            Ok(out) => {
                Ok(out.attributes.and_then(|a| a.get(connection_attr::STRIKES)?.as_n().ok()?.parse().ok()).unwrap_or(0))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(0),
            Err(e) => Err(classify("UpdateItem", e)),
        }
    }
}
