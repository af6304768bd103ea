//! API key records on SQLite: by hash (the key itself is never stored), and by tenant.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, WriteError};
use crate::auth::api_keys::{ApiKeyRecord, ApiKeyStore};
use crate::backend::BackendError;
use crate::domain::TenantId;

fn decode(body: &str) -> Result<ApiKeyRecord, rusqlite::Error> {
    serde_json::from_str(body).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("a stored API key: {e}").into(),
        )
    })
}

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn find(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, BackendError> {
        let key_id = key_id.to_owned();
        self.read(move |conn| {
            let body: Option<String> =
                conn.query_row("SELECT body FROM api_keys WHERE key_id = ?1", [key_id], |row| row.get(0)).optional()?;
            body.map(|b| decode(&b)).transpose()
        })
        .await
    }

    async fn insert(&self, record: &ApiKeyRecord) -> Result<(), BackendError> {
        let record = record.clone();
        let body = serde_json::to_string(&record).map_err(|e| BackendError::Internal(e.to_string()))?;
        let inserted = self
            .write::<(), ()>(move |conn| {
                let n = conn.execute(
                    "INSERT OR IGNORE INTO api_keys (key_id, tenant, created_at, body) VALUES (?1, ?2, ?3, ?4)",
                    params![record.key_id, record.tenant_id.as_str(), record.created_at.timestamp_millis(), body],
                )?;
                if n == 0 { Err(WriteError::Refused(Box::new(()))) } else { Ok(()) }
            })
            .await?;
        inserted.map_err(|()| BackendError::Internal("an API key with this id exists".into()))
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, BackendError> {
        let tenant = tenant.as_str().to_owned();
        self.read(move |conn| {
            let mut statement =
                conn.prepare_cached("SELECT body FROM api_keys WHERE tenant = ?1 ORDER BY created_at, key_id")?;
            let rows = statement.query_map([tenant], |row| row.get::<_, String>(0))?;
            rows.map(|b| decode(&b?)).collect()
        })
        .await
    }

    async fn revoke(&self, key_id: &str) -> Result<bool, BackendError> {
        let key_id = key_id.to_owned();
        let revoked = self
            .write::<bool, ()>(move |conn| {
                let body: Option<String> = conn
                    .query_row("SELECT body FROM api_keys WHERE key_id = ?1", [&key_id], |row| row.get(0))
                    .optional()?;
                let Some(body) = body else { return Ok(false) };
                let mut record = decode(&body)?;
                record.revoked = true;
                let body =
                    serde_json::to_string(&record).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                conn.execute("UPDATE api_keys SET body = ?2 WHERE key_id = ?1", params![key_id, body])?;
                Ok(true)
            })
            .await?;
        revoked.map_err(|()| BackendError::Internal("a revocation cannot be refused".into()))
    }
}
