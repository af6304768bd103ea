//! The embedded store: the default for local runs and tests of code above the store. It keeps the
//! same partitions and indexes as the DynamoDB layout, drops expired entries, and can be bounded in
//! entries and in bytes so that a long local run cannot grow without limit (the oldest entries go
//! first).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{AuditStore, StoreError};
use crate::backend::BackendError;
use crate::domain::time::{highest_id_at, lowest_id_at};
use crate::domain::{
    AuditLogEntry, Counts, HourBucket, HourlyCounts, IndexKey, QueryPlan, StatsRange, StoredPage, TenantId,
};
use crate::erasure::Erasure;
use crate::integrity::Hash;
use crate::integrity::checkpoint::Checkpoint;
use crate::retention::HELD_UNTIL;
use crate::seal::{Appended, Head, SealState, SealStore, SealedPeriod, StoredTile, WitnessStatus};

#[derive(Default)]
pub struct MemoryStore {
    state: RwLock<State>,
    max_entries: Option<usize>,
    max_bytes: Option<usize>,
}

#[derive(Default)]
struct State {
    tenants: HashMap<TenantId, Partition>,
    seals: HashMap<TenantId, Sealed>,
    witnesses: BTreeMap<String, WitnessStatus>,
    cursor: Option<HourBucket>,
    /// Every entry's id, oldest first, with its tenant and its size, for retention and the bounds.
    by_age: BTreeMap<Uuid, (TenantId, usize)>,
    /// The sizes of the entries held, by [`held_bytes`].
    bytes: usize,
}

/// What an entry costs in memory, roughly: its JSON, plus its keys in the indexes and maps.
fn held_bytes(entry: &AuditLogEntry) -> usize {
    const INDEX_OVERHEAD: usize = 400;
    serde_json::to_vec(entry).map_or(0, |v| v.len()) + INDEX_OVERHEAD
}

/// A tenant's seal state, checkpoints (by end) and their trees' tiles. Kept apart from the entries:
/// checkpoints outlive them; tiles go with the entries of their period.
#[derive(Default)]
struct Sealed {
    state: SealState,
    checkpoints: BTreeMap<DateTime<Utc>, (Checkpoint, Vec<Uuid>)>,
    tiles: BTreeMap<(DateTime<Utc>, u32, u64), StoredTile>,
}

#[derive(Default)]
struct Partition {
    entries: BTreeMap<Uuid, Arc<AuditLogEntry>>,
    indexes: HashMap<IndexKey, BTreeSet<Uuid>>,
    counters: BTreeMap<HourBucket, Counts>,
}

impl MemoryStore {
    /// An unbounded store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that keeps at most `max_entries`, and at most `max_bytes` of them as
    /// [`MemoryStore::bytes`] counts them, evicting the oldest beyond either.
    pub fn bounded(max_entries: usize, max_bytes: usize) -> Self {
        MemoryStore { max_entries: Some(max_entries), max_bytes: Some(max_bytes), ..Self::default() }
    }

    pub fn len(&self) -> usize {
        self.read().by_age.len()
    }

    /// The memory the entries held take, roughly: their JSON and their index keys.
    pub fn bytes(&self) -> usize {
        self.read().bytes
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // A panic while holding the lock cannot leave the maps half-updated in a way that matters more
    // than losing the store, so a poisoned lock is simply taken over.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops expired entries, if the oldest one has expired (a cheap check under the read lock).
    fn purge_expired(&self, now: DateTime<Utc>) {
        let oldest_expired = |s: &State| {
            s.by_age
                .iter()
                .next()
                .and_then(|(id, (t, _))| s.tenants.get(t)?.entries.get(id))
                .is_some_and(|e| e.is_expired(now))
        };
        if !oldest_expired(&self.read()) {
            return;
        }
        let mut state = self.write();
        while oldest_expired(&state) {
            state.remove_oldest();
        }
    }
}

impl State {
    fn remove_oldest(&mut self) {
        let Some((id, (tenant, size))) = self.by_age.pop_first() else {
            return;
        };
        self.bytes -= size;
        let Some(partition) = self.tenants.get_mut(&tenant) else {
            return;
        };
        let Some(entry) = partition.entries.remove(&id) else {
            return;
        };
        for key in IndexKey::all_for(&entry) {
            if let Some(ids) = partition.indexes.get_mut(&key) {
                ids.remove(&id);
                if ids.is_empty() {
                    partition.indexes.remove(&key);
                }
            }
        }
        // A period's tiles go with its entries (its checkpoint stays).
        if let Some(sealed) = self.seals.get_mut(&tenant) {
            sealed.tiles.retain(|(end, _, _), _| *end > entry.timestamp);
        }
        let bucket = HourBucket::of(entry.timestamp);
        if let Some(counts) = partition.counters.get_mut(&bucket) {
            counts.subtract(&Counts::of(&entry));
            if counts.total == 0 {
                partition.counters.remove(&bucket);
            }
        }
        if partition.entries.is_empty() {
            self.tenants.remove(&tenant);
        }
    }
}

#[async_trait]
impl AuditStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn put(&self, entry: &AuditLogEntry) -> Result<(), StoreError> {
        self.purge_expired(Utc::now());
        let mut state = self.write();
        let closed_before = state.seals.get(&entry.tenant_id).and_then(|s| s.state.closed_before);
        let partition = state.tenants.entry(entry.tenant_id.clone()).or_default();
        if partition.entries.contains_key(&entry.id) {
            return Err(StoreError::AlreadyExists(entry.id));
        }
        if closed_before.is_some_and(|c| entry.timestamp < c) {
            return Err(StoreError::Sealed(entry.id));
        }
        for key in IndexKey::all_for(entry) {
            partition.indexes.entry(key).or_default().insert(entry.id);
        }
        partition.counters.entry(HourBucket::of(entry.timestamp)).or_default().add(&Counts::of(entry));
        partition.entries.insert(entry.id, Arc::new(entry.clone()));
        let size = held_bytes(entry);
        state.by_age.insert(entry.id, (entry.tenant_id.clone(), size));
        state.bytes += size;
        let too_many = |s: &State| self.max_entries.is_some_and(|max| s.by_age.len() > max);
        let too_big = |s: &State| self.max_bytes.is_some_and(|max| s.bytes > max);
        while too_many(&state) || too_big(&state) {
            state.remove_oldest();
        }
        Ok(())
    }

    async fn erase(&self, tenant: &TenantId, id: Uuid, erasure: &Erasure) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut state = self.write();
        let partition = state.tenants.get_mut(tenant).ok_or(StoreError::NotFound(id))?;
        let stored = partition.entries.get(&id).filter(|e| !e.is_expired(now)).ok_or(StoreError::NotFound(id))?;
        // A hold placed since the erasure was planned keeps the entry as it is.
        if stored.integrity != erasure.before || stored.expires_at == HELD_UNTIL {
            return Err(StoreError::Changed(id));
        }
        let mut erased = (**stored).clone();
        erasure.apply(&mut erased);
        for key in IndexKey::all_for(stored) {
            if !IndexKey::all_for(&erased).contains(&key)
                && let Some(ids) = partition.indexes.get_mut(&key)
            {
                ids.remove(&id);
            }
        }
        partition.entries.insert(id, Arc::new(erased));
        Ok(())
    }

    async fn set_expiry(&self, tenant: &TenantId, id: Uuid, expires_at: i64) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut state = self.write();
        let partition = state.tenants.get_mut(tenant).ok_or(StoreError::NotFound(id))?;
        let stored = partition.entries.get_mut(&id).filter(|e| !e.is_expired(now)).ok_or(StoreError::NotFound(id))?;
        Arc::make_mut(stored).expires_at = expires_at;
        Ok(())
    }

    async fn get(&self, tenant: &TenantId, id: Uuid, now: DateTime<Utc>) -> Result<Option<AuditLogEntry>, StoreError> {
        let state = self.read();
        let entry = state.tenants.get(tenant).and_then(|p| p.entries.get(&id));
        Ok(entry.filter(|e| !e.is_expired(now)).map(|e| (**e).clone()))
    }

    async fn query(&self, plan: &QueryPlan, now: DateTime<Utc>) -> Result<StoredPage, StoreError> {
        self.purge_expired(now);
        let state = self.read();
        let Some(partition) = state.tenants.get(&plan.tenant) else {
            return Ok(StoredPage::default());
        };
        if plan.is_empty() {
            return Ok(StoredPage::default());
        }
        let range = plan.lowest..=plan.highest;
        let ids: Box<dyn Iterator<Item = &Uuid>> = match &plan.index {
            IndexKey::Tenant => Box::new(partition.entries.range(range).rev().map(|(id, _)| id)),
            key => match partition.indexes.get(key) {
                Some(ids) => Box::new(ids.range(range).rev()),
                None => Box::new(std::iter::empty()),
            },
        };
        let mut matching = ids
            .filter_map(|id| partition.entries.get(id))
            .filter(|e| !e.is_expired(now) && plan.residual.matches(e))
            .skip(plan.skip);
        let entries: Vec<AuditLogEntry> = matching.by_ref().take(plan.take).map(|e| (**e).clone()).collect();
        let more = matching.next().is_some();
        Ok(StoredPage::after_last(entries, more))
    }

    async fn counts(
        &self,
        tenant: &TenantId,
        range: &StatsRange,
        now: DateTime<Utc>,
    ) -> Result<HourlyCounts, StoreError> {
        self.purge_expired(now);
        let state = self.read();
        Ok(state
            .tenants
            .get(tenant)
            .map(|p| p.counters.iter().filter(|(b, _)| range.contains(**b)).map(|(b, c)| (*b, *c)).collect())
            .unwrap_or_default())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The ids of `partition`'s entries stamped in `start..end`.
fn ids_between(partition: &Partition, start: DateTime<Utc>, end: DateTime<Utc>) -> impl Iterator<Item = &Uuid> {
    let range = lowest_id_at(start)..=highest_id_at(end - chrono::Duration::milliseconds(1));
    partition.entries.range(range).map(|(id, _)| id)
}

#[async_trait]
impl SealStore for MemoryStore {
    async fn active_tenants(&self, hour: HourBucket) -> Result<Vec<TenantId>, BackendError> {
        let state = self.read();
        let mut active: Vec<TenantId> = state
            .tenants
            .iter()
            .filter(|(_, p)| ids_between(p, hour.start(), hour.end()).next().is_some())
            .map(|(t, _)| t.clone())
            .collect();
        active.sort();
        Ok(active)
    }

    async fn seal_state(&self, tenant: &TenantId) -> Result<SealState, BackendError> {
        Ok(self.read().seals.get(tenant).map(|s| s.state).unwrap_or_default())
    }

    async fn close_before(&self, tenant: &TenantId, before: DateTime<Utc>) -> Result<(), BackendError> {
        let mut state = self.write();
        let seal = &mut state.seals.entry(tenant.clone()).or_default().state;
        seal.closed_before = Some(seal.closed_before.map_or(before, |c| c.max(before)));
        Ok(())
    }

    async fn leaves(
        &self,
        tenant: &TenantId,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, Hash)>, BackendError> {
        let state = self.read();
        let Some(partition) = state.tenants.get(tenant) else { return Ok(Vec::new()) };
        Ok(ids_between(partition, start, end)
            .filter_map(|id| partition.entries.get(id).map(|e| (*id, e.integrity.leaf_hash)))
            .collect())
    }

    async fn append(
        &self,
        tenant: &TenantId,
        period: &SealedPeriod,
        previous: Option<&Head>,
    ) -> Result<Appended, BackendError> {
        let end = parse_time(&period.checkpoint.body.end)?;
        let mut state = self.write();
        let sealed = state.seals.entry(tenant.clone()).or_default();
        if sealed.state.head.as_ref() != previous {
            return Ok(Appended::HeadMoved);
        }
        sealed.checkpoints.insert(end, (period.checkpoint.clone(), period.first_ids.clone()));
        for tile in &period.tiles {
            sealed.tiles.insert((end, tile.tile.level, tile.tile.index), tile.clone());
        }
        sealed.state.head = Some(Head { end, hash: period.checkpoint.link(), total: period.checkpoint.body.total });
        Ok(Appended::Done)
    }

    async fn checkpoints(
        &self,
        tenant: &TenantId,
        after: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<Checkpoint>, BackendError> {
        let state = self.read();
        let Some(sealed) = state.seals.get(tenant) else { return Ok(Vec::new()) };
        Ok(sealed
            .checkpoints
            .iter()
            .filter(|(end, _)| after.is_none_or(|a| **end > a) && until.is_none_or(|u| **end <= u))
            .take(limit)
            .map(|(_, (c, _))| c.clone())
            .collect())
    }

    async fn checkpoint_covering(
        &self,
        tenant: &TenantId,
        t: DateTime<Utc>,
    ) -> Result<Option<(Checkpoint, Vec<Uuid>)>, BackendError> {
        let state = self.read();
        let Some(sealed) = state.seals.get(tenant) else { return Ok(None) };
        let after = std::ops::Bound::Excluded(t);
        let found = sealed.checkpoints.range((after, std::ops::Bound::Unbounded)).next();
        Ok(found.map(|(_, c)| c.clone()).filter(|(c, _)| parse_time(&c.body.start).is_ok_and(|s| s <= t)))
    }

    async fn tiles(
        &self,
        tenant: &TenantId,
        end: DateTime<Utc>,
        wanted: &[(u32, u64)],
    ) -> Result<Vec<StoredTile>, BackendError> {
        let state = self.read();
        let Some(sealed) = state.seals.get(tenant) else { return Ok(Vec::new()) };
        Ok(wanted.iter().filter_map(|(level, index)| sealed.tiles.get(&(end, *level, *index)).cloned()).collect())
    }

    async fn latest_checkpoints(&self, tenant: &TenantId, limit: usize) -> Result<Vec<Checkpoint>, BackendError> {
        let state = self.read();
        let Some(sealed) = state.seals.get(tenant) else { return Ok(Vec::new()) };
        Ok(sealed.checkpoints.values().rev().take(limit).map(|(c, _)| c.clone()).collect())
    }

    async fn add_cosignatures(
        &self,
        tenant: &TenantId,
        end: DateTime<Utc>,
        lines: &[String],
    ) -> Result<(), BackendError> {
        let mut state = self.write();
        let Some((checkpoint, _)) = state.seals.get_mut(tenant).and_then(|s| s.checkpoints.get_mut(&end)) else {
            return Err(BackendError::Internal(format!("no checkpoint of {tenant} ends at {end}")));
        };
        for line in lines {
            if !checkpoint.cosignatures.contains(line) {
                checkpoint.cosignatures.push(line.clone());
            }
        }
        Ok(())
    }

    async fn mark_published(&self, tenant: &TenantId, through: DateTime<Utc>) -> Result<(), BackendError> {
        let mut state = self.write();
        let seal = &mut state.seals.entry(tenant.clone()).or_default().state;
        seal.published = Some(seal.published.map_or(through, |p| p.max(through)));
        Ok(())
    }

    async fn witness_status(&self) -> Result<Vec<WitnessStatus>, BackendError> {
        Ok(self.read().witnesses.values().cloned().collect())
    }

    async fn record_witness_status(&self, status: &WitnessStatus) -> Result<(), BackendError> {
        let mut state = self.write();
        let kept = state
            .witnesses
            .entry(status.witness.clone())
            .or_insert_with(|| WitnessStatus { witness: status.witness.clone(), ..WitnessStatus::default() });
        merge_status(kept, status);
        Ok(())
    }

    async fn cursor(&self) -> Result<Option<HourBucket>, BackendError> {
        Ok(self.read().cursor)
    }

    async fn set_cursor(&self, hour: HourBucket) -> Result<(), BackendError> {
        self.write().cursor = Some(hour);
        Ok(())
    }
}

/// Folds a new observation into what is kept: each time set replaces the older one.
pub(crate) fn merge_status(kept: &mut WitnessStatus, new: &WitnessStatus) {
    if new.last_success.is_some() {
        kept.last_success = new.last_success;
    }
    if new.last_failure.is_some() {
        kept.last_failure = new.last_failure;
        kept.last_error.clone_from(&new.last_error);
    }
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, BackendError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .map_err(|e| BackendError::Internal(format!("a stored checkpoint time could not be read: {e}")))
}
