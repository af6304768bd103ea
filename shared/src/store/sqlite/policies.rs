//! Tenants' retention and legal holds on SQLite: one row per tenant, replaced only at the version
//! read, and kept in memory once read (every write checks its tenant's policy; one process holds
//! the file, so the copy cannot go stale).

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, WriteError};
use crate::backend::BackendError;
use crate::domain::TenantId;
use crate::retention::{PolicyStore, TenantPolicy};

#[async_trait]
impl PolicyStore for SqliteStore {
    async fn policy(&self, tenant: &TenantId) -> Result<(TenantPolicy, u64), BackendError> {
        if let Some(known) = self.inner.policies.lock().unwrap_or_else(|p| p.into_inner()).get(tenant.as_str()) {
            return Ok(known.clone());
        }
        let key = tenant.as_str().to_owned();
        let tenant = key.clone();
        let row: Option<(String, i64)> = self
            .read(move |conn| {
                conn.prepare_cached("SELECT body, version FROM policies WHERE tenant = ?1")?
                    .query_row([tenant], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .await?;
        let read = match row {
            None => (TenantPolicy::default(), 0),
            Some((body, version)) => (
                serde_json::from_str(&body).map_err(|e| BackendError::Internal(format!("a stored policy: {e}")))?,
                u64::try_from(version).unwrap_or(0),
            ),
        };
        // A write that finished meanwhile put its newer policy here first: it stays.
        Ok(self.inner.policies.lock().unwrap_or_else(|p| p.into_inner()).entry(key).or_insert(read).clone())
    }

    async fn put_policy(&self, tenant: &TenantId, policy: &TenantPolicy, version: u64) -> Result<bool, BackendError> {
        let key = tenant.as_str().to_owned();
        let tenant = key.clone();
        let body = serde_json::to_string(policy).map_err(|e| BackendError::Internal(e.to_string()))?;
        let (read, next) = (version as i64, version as i64 + 1);
        let written = self
            .write::<(), ()>(move |conn| {
                let changed = if read == 0 {
                    conn.execute(
                        "INSERT OR IGNORE INTO policies (tenant, version, body) VALUES (?1, ?2, ?3)",
                        params![tenant, next, body],
                    )?
                } else {
                    conn.execute(
                        "UPDATE policies SET version = ?2, body = ?3 WHERE tenant = ?1 AND version = ?4",
                        params![tenant, next, body, read],
                    )?
                };
                if changed == 1 { Ok(()) } else { Err(WriteError::Refused(Box::new(()))) }
            })
            .await?;
        let mut known = self.inner.policies.lock().unwrap_or_else(|p| p.into_inner());
        match written {
            Ok(()) => {
                known.insert(key, (policy.clone(), version + 1));
                Ok(true)
            }
            Err(()) => {
                known.remove(&key);
                Ok(false)
            }
        }
    }
}
