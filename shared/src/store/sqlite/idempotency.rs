//! `Idempotency-Key` records on SQLite: claimed, completed and released in the writer's
//! transactions, so two requests with one key cannot both claim it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::backend::BackendError;
use crate::idempotency::{Claim, Decision, IdempotencyStore, KeyOwner, RECORD_TTL, StoredResponse, decide};

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim(
        &self,
        owner: KeyOwner<'_>,
        key: &str,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Claim, BackendError> {
        let (tenant, principal, key, hash) =
            (owner.tenant.as_str().to_owned(), owner.principal.to_owned(), key.to_owned(), hash.to_owned());
        let claim = self
            .write::<Claim, ()>(move |conn| {
                let record: Option<(String, i64, i64, Option<String>)> = conn
                    .query_row(
                        "SELECT hash, claimed_at, stamped_at, response FROM idempotency
                         WHERE tenant = ?1 AND principal = ?2 AND key = ?3",
                        params![tenant, principal, key],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                    )
                    .optional()?;
                // A record past its life is as good as none (the purge removes it later).
                let record = record.filter(|(_, _, stamped, _)| at(*stamped) + RECORD_TTL > now);
                let Some((record_hash, claimed_at, stamped_at, response)) = record else {
                    conn.execute(
                        "INSERT OR REPLACE INTO idempotency
                           (tenant, principal, key, hash, claimed_at, stamped_at, response, expires_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?5, NULL, ?6)",
                        params![tenant, principal, key, hash, now.timestamp_millis(), (now + RECORD_TTL).timestamp()],
                    )?;
                    return Ok(Claim::Claimed { stamped_at: now });
                };
                let response = response
                    .map(|r| serde_json::from_str::<StoredResponse>(&r))
                    .transpose()
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                match decide(&hash, &record_hash, response, at(claimed_at), now) {
                    Decision::Answer(claim) => Ok(claim),
                    Decision::TakeOver => {
                        conn.execute(
                            "UPDATE idempotency SET claimed_at = ?4 WHERE tenant = ?1 AND principal = ?2 AND key = ?3",
                            params![tenant, principal, key, now.timestamp_millis()],
                        )?;
                        Ok(Claim::Claimed { stamped_at: at(stamped_at) })
                    }
                }
            })
            .await?;
        claim.map_err(|()| BackendError::Internal("a claim cannot be refused".into()))
    }

    async fn complete(
        &self,
        owner: KeyOwner<'_>,
        key: &str,
        response: &StoredResponse,
        _now: DateTime<Utc>,
    ) -> Result<(), BackendError> {
        let (tenant, principal, key) = (owner.tenant.as_str().to_owned(), owner.principal.to_owned(), key.to_owned());
        let response = serde_json::to_string(response).map_err(|e| BackendError::Internal(e.to_string()))?;
        self.write::<(), ()>(move |conn| {
            conn.execute(
                "UPDATE idempotency SET response = ?4 WHERE tenant = ?1 AND principal = ?2 AND key = ?3",
                params![tenant, principal, key, response],
            )?;
            Ok(())
        })
        .await?
        .map_err(|()| BackendError::Internal("a completion cannot be refused".into()))
    }

    async fn release(&self, owner: KeyOwner<'_>, key: &str) -> Result<(), BackendError> {
        let (tenant, principal, key) = (owner.tenant.as_str().to_owned(), owner.principal.to_owned(), key.to_owned());
        self.write::<(), ()>(move |conn| {
            conn.execute(
                "UPDATE idempotency SET claimed_at = 0
                 WHERE tenant = ?1 AND principal = ?2 AND key = ?3 AND response IS NULL",
                params![tenant, principal, key],
            )?;
            Ok(())
        })
        .await?
        .map_err(|()| BackendError::Internal("a release cannot be refused".into()))
    }
}
