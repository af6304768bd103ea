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
use crate::domain::{AuditLogEntry, Counts, HourBucket, IndexKey, QueryPlan, StatsRange, StoredPage, TenantId};

#[derive(Default)]
pub struct MemoryStore {
    state: RwLock<State>,
    max_entries: Option<usize>,
    max_bytes: Option<usize>,
}

#[derive(Default)]
struct State {
    tenants: HashMap<TenantId, Partition>,
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
        let partition = state.tenants.entry(entry.tenant_id.clone()).or_default();
        if partition.entries.contains_key(&entry.id) {
            return Err(StoreError::AlreadyExists(entry.id));
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

    async fn counts(&self, tenant: &TenantId, range: &StatsRange, now: DateTime<Utc>) -> Result<Counts, StoreError> {
        self.purge_expired(now);
        let state = self.read();
        let mut total = Counts::default();
        if let Some(partition) = state.tenants.get(tenant) {
            for (_, counts) in partition.counters.iter().filter(|(b, _)| range.contains(**b)) {
                total.add(counts);
            }
        }
        Ok(total)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
