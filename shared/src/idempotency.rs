//! Idempotent writes: a request sent again with the same `Idempotency-Key` gets the first answer
//! instead of writing twice.
//!
//! The first request *claims* the key (a conditional write), does its work, then *completes* the
//! claim with its response. A repeat finds the completed claim and replays it; a repeat while the
//! first is still running is told to retry; a repeat with a different body is refused. A claim whose
//! holder died is taken over after [`STALE_CLAIM`]. Records expire after [`RECORD_TTL`].

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::BackendError;
use crate::domain::{TenantId, ValidationError, validation};

pub const RECORD_TTL: Duration = Duration::hours(24);
pub const STALE_CLAIM: Duration = Duration::seconds(60);
pub const MAX_KEY_LEN: usize = 128;

/// A response as first sent, to be replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This request owns the key: do the work, then `complete` (or `release` on failure).
    Claimed,
    /// Done before with the same request: replay this.
    Completed(StoredResponse),
    /// Another request with this key is still running.
    InProgress,
    /// The key was used for a different request body.
    Mismatch,
}

/// Checks an `Idempotency-Key` header value.
pub fn check_key(key: &str) -> Result<(), ValidationError> {
    validation::identifier("Idempotency-Key", key)?;
    if key.len() > MAX_KEY_LEN {
        return Err(ValidationError::TooLong { field: "Idempotency-Key", max: MAX_KEY_LEN, actual: key.len() });
    }
    Ok(())
}

/// What identifies "the same request": a hash of its body.
pub fn request_hash(body: &[u8]) -> String {
    Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    async fn claim(&self, tenant: &TenantId, key: &str, hash: &str, now: DateTime<Utc>) -> Result<Claim, BackendError>;
    async fn complete(
        &self,
        tenant: &TenantId,
        key: &str,
        response: &StoredResponse,
        now: DateTime<Utc>,
    ) -> Result<(), BackendError>;
    /// Gives a claim up (the work failed in a way worth retrying), so a retry can run.
    async fn release(&self, tenant: &TenantId, key: &str) -> Result<(), BackendError>;
}

#[derive(Debug, Clone)]
struct Record {
    hash: String,
    claimed_at: DateTime<Utc>,
    response: Option<StoredResponse>,
}

/// In-process records: the local default and tests.
#[derive(Default)]
pub struct MemoryIdempotency(Mutex<HashMap<(TenantId, String), Record>>);

impl MemoryIdempotency {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotency {
    async fn claim(&self, tenant: &TenantId, key: &str, hash: &str, now: DateTime<Utc>) -> Result<Claim, BackendError> {
        let mut records = self.0.lock().unwrap_or_else(|p| p.into_inner());
        records.retain(|_, r| r.claimed_at + RECORD_TTL > now);
        let slot = (tenant.clone(), key.to_owned());
        match records.get(&slot) {
            Some(r) if r.hash != hash => Ok(Claim::Mismatch),
            Some(Record { response: Some(response), .. }) => Ok(Claim::Completed(response.clone())),
            Some(r) if r.claimed_at + STALE_CLAIM > now => Ok(Claim::InProgress),
            _ => {
                records.insert(slot, Record { hash: hash.to_owned(), claimed_at: now, response: None });
                Ok(Claim::Claimed)
            }
        }
    }

    async fn complete(
        &self,
        tenant: &TenantId,
        key: &str,
        response: &StoredResponse,
        _now: DateTime<Utc>,
    ) -> Result<(), BackendError> {
        let mut records = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = records.get_mut(&(tenant.clone(), key.to_owned())) {
            r.response = Some(response.clone());
        }
        Ok(())
    }

    async fn release(&self, tenant: &TenantId, key: &str) -> Result<(), BackendError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&(tenant.clone(), key.to_owned()));
        Ok(())
    }
}
