//! Idempotent writes: a request sent again with the same `Idempotency-Key` gets the first answer
//! instead of writing twice.
//!
//! The first request *claims* the key (a conditional write), does its work, then *completes* the
//! claim with its response. A repeat finds the completed claim and replays it; a repeat while the
//! first is still running is told to retry; a repeat with a different body is refused. A claim whose
//! holder died is taken over after [`STALE_CLAIM`]. Records expire after [`RECORD_TTL`].
//!
//! Keys belong to a caller ([`KeyOwner`]: tenant and principal). The claim also fixes when the
//! request's entries are stamped, and their ids derive from that and the key: a request cut off
//! half-way (a Lambda timeout) and taken over later writes the very same ids, so the entries it did
//! store are refused by the conditional put instead of stored twice.

use std::collections::{HashMap, VecDeque};
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

/// Whose request an `Idempotency-Key` names: keys are per caller (tenant and principal), so two
/// users of one tenant can neither replay, block nor probe each other's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyOwner<'a> {
    pub tenant: &'a TenantId,
    /// The user or API-key holder; empty for an anonymous caller.
    pub principal: &'a str,
}

impl KeyOwner<'_> {
    /// What a request's entry ids derive from: tenant, principal and key, NUL-separated (none of
    /// them can contain NUL, so no two owners' keys give the same bytes).
    pub fn identity(&self, key: &str) -> Vec<u8> {
        [self.tenant.as_str(), self.principal, key].join("\0").into_bytes()
    }
}

/// A response as first sent, to be replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This request owns the key: do the work, stamping its entries at `stamped_at`, then
    /// `complete` (or `release`). A claim taken over from an attempt that was cut off keeps that
    /// attempt's `stamped_at`, so the same entries get the same ids.
    Claimed { stamped_at: DateTime<Utc> },
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
    async fn claim(
        &self,
        owner: KeyOwner<'_>,
        key: &str,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Claim, BackendError>;
    async fn complete(
        &self,
        owner: KeyOwner<'_>,
        key: &str,
        response: &StoredResponse,
        now: DateTime<Utc>,
    ) -> Result<(), BackendError>;
    /// Gives a claim up (the work failed in a way worth retrying), so a retry can run at once. The
    /// record and its stamp stay: the retry writes the same ids, and whatever the failed attempt
    /// did store after all is not stored twice.
    async fn release(&self, owner: KeyOwner<'_>, key: &str) -> Result<(), BackendError>;
}

/// What an existing record means for a new request with `hash` at `now`.
pub fn decide(
    hash: &str,
    record_hash: &str,
    response: Option<StoredResponse>,
    claimed_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Decision {
    if record_hash != hash {
        return Decision::Answer(Claim::Mismatch);
    }
    match response {
        Some(response) => Decision::Answer(Claim::Completed(response)),
        None if claimed_at + STALE_CLAIM > now => Decision::Answer(Claim::InProgress),
        None => Decision::TakeOver,
    }
}

/// What to do about an existing record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Answer(Claim),
    /// Its holder was cut off (or released it): claim it, keeping its stamp.
    TakeOver,
}

#[derive(Debug, Clone)]
struct Record {
    hash: String,
    claimed_at: DateTime<Utc>,
    stamped_at: DateTime<Utc>,
    response: Option<StoredResponse>,
}

type Slot = (TenantId, String, String);

/// In-process records: the local default and tests. Optionally bounded in bytes: past the bound the
/// oldest records go first (a retry after that is a new request, as after [`RECORD_TTL`]).
#[derive(Default)]
pub struct MemoryIdempotency {
    state: Mutex<Records>,
    max_bytes: Option<usize>,
}

#[derive(Default)]
struct Records {
    by_slot: HashMap<Slot, Record>,
    /// Slots in the order they were first claimed (some may be gone already).
    order: VecDeque<Slot>,
    bytes: usize,
}

impl Record {
    fn size(slot: &Slot, record: &Record) -> usize {
        const OVERHEAD: usize = 128;
        slot.0.as_str().len()
            + slot.1.len()
            + slot.2.len()
            + record.hash.len()
            + record.response.as_ref().map_or(0, |r| r.body.len())
            + OVERHEAD
    }
}

impl Records {
    fn remove(&mut self, slot: &Slot) {
        if let Some(record) = self.by_slot.remove(slot) {
            self.bytes -= Record::size(slot, &record);
        }
    }

    /// Drops expired records from the old end (claims come in time order, so they are there).
    fn expire(&mut self, now: DateTime<Utc>) {
        while let Some(oldest) = self.order.front() {
            if self.by_slot.get(oldest).is_some_and(|r| r.stamped_at + RECORD_TTL > now) {
                break;
            }
            let oldest = self.order.pop_front().expect("a front exists");
            if self.by_slot.get(&oldest).is_some_and(|r| r.stamped_at + RECORD_TTL <= now) {
                self.remove(&oldest);
            }
        }
    }

    fn shrink_to(&mut self, max_bytes: usize) {
        while self.bytes > max_bytes {
            let Some(oldest) = self.order.pop_front() else { break };
            self.remove(&oldest);
        }
    }
}

impl MemoryIdempotency {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records bounded to about `max_bytes` (keys, hashes and kept responses).
    pub fn bounded(max_bytes: usize) -> Self {
        MemoryIdempotency { max_bytes: Some(max_bytes), ..Self::default() }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.records().by_slot.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes the records take, as the bound counts them.
    pub fn bytes(&self) -> usize {
        self.records().bytes
    }
}

fn slot(owner: KeyOwner<'_>, key: &str) -> Slot {
    (owner.tenant.clone(), owner.principal.to_owned(), key.to_owned())
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotency {
    async fn claim(
        &self,
        owner: KeyOwner<'_>,
        key: &str,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Claim, BackendError> {
        let mut records = self.records();
        records.expire(now);
        let slot = slot(owner, key);
        if records.by_slot.get(&slot).is_some_and(|r| r.stamped_at + RECORD_TTL <= now) {
            records.remove(&slot);
        }
        let record = match records.by_slot.get_mut(&slot) {
            None => {
                let fresh = Record { hash: hash.to_owned(), claimed_at: now, stamped_at: now, response: None };
                records.bytes += Record::size(&slot, &fresh);
                records.by_slot.insert(slot.clone(), fresh);
                records.order.push_back(slot);
                if let Some(max) = self.max_bytes {
                    records.shrink_to(max);
                }
                return Ok(Claim::Claimed { stamped_at: now });
            }
            Some(record) => record,
        };
        match decide(hash, &record.hash, record.response.clone(), record.claimed_at, now) {
            Decision::Answer(claim) => Ok(claim),
            Decision::TakeOver => {
                record.claimed_at = now;
                Ok(Claim::Claimed { stamped_at: record.stamped_at })
            }
        }
    }

    async fn complete(
        &self,
        owner: KeyOwner<'_>,
        key: &str,
        response: &StoredResponse,
        _now: DateTime<Utc>,
    ) -> Result<(), BackendError> {
        let mut records = self.records();
        let slot = slot(owner, key);
        if let Some(r) = records.by_slot.get_mut(&slot) {
            let before = Record::size(&slot, r);
            r.response = Some(response.clone());
            let after = Record::size(&slot, r);
            records.bytes = records.bytes - before + after;
        }
        if let Some(max) = self.max_bytes {
            records.shrink_to(max);
        }
        Ok(())
    }

    async fn release(&self, owner: KeyOwner<'_>, key: &str) -> Result<(), BackendError> {
        let mut records = self.records();
        if let Some(r) = records.by_slot.get_mut(&slot(owner, key)).filter(|r| r.response.is_none()) {
            r.claimed_at = DateTime::UNIX_EPOCH;
        }
        Ok(())
    }
}
