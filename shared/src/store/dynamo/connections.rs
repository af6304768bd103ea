//! WebSocket connection records in DynamoDB.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::errors::classify;
use super::query_all;
use super::tables::{CONNECTIONS_BY_TENANT, connection_attr};
use crate::backend::BackendError;
use crate::domain::TenantId;
use crate::realtime::{ConnectionStore, WebSocketConnectionInfo};

#[derive(Debug, Clone)]
pub struct DynamoConnections {
    client: Client,
    table: String,
}

impl DynamoConnections {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoConnections { client, table: table.into() }
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
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(CONNECTIONS_BY_TENANT)
            .key_condition_expression("#t = :t")
            // TTL removes expired records within a day or two; until then they are skipped here.
            .filter_expression("#exp > :now")
            .expression_attribute_names("#t", connection_attr::TENANT_ID)
            .expression_attribute_names("#exp", connection_attr::EXPIRES_AT)
            .expression_attribute_values(":t", AttributeValue::S(tenant.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now.timestamp().to_string()));
        query_all(query, "connection").await
    }
}
