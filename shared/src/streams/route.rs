//! Routing: new entries, as the stream of writes brings them, become jobs — per tenant, per active
//! stream whose filter takes them, at most [`JOB_ENTRIES`] each. A tenant's streams are read once
//! per batch (one Query), or from a short cache when the deployment allows one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::delivery::{JOB_ENTRIES, Job};
use super::destination::Destination;
use super::queue::JobSink;
use super::store::StreamStore;
use crate::backend::BackendError;
use crate::domain::{AuditLogEntry, TenantId};

/// The jobs that deliver `entries` (of any tenants) to `streams` (of those tenants).
pub fn jobs_for(entries: &[&AuditLogEntry], streams: &[Destination], now: DateTime<Utc>) -> Vec<Job> {
    let mut jobs = Vec::new();
    for stream in streams {
        let ids: Vec<Uuid> = entries.iter().filter(|e| stream.takes(e)).map(|e| e.id).collect();
        for chunk in ids.chunks(JOB_ENTRIES) {
            jobs.push(Job::new(stream.tenant_id.clone(), stream.id, chunk.to_vec(), now));
        }
    }
    jobs
}

/// A tenant's streams as read at a time.
type Cached = (Instant, Arc<Vec<Destination>>);

/// Routes batches of new entries into a [`JobSink`].
pub struct Router {
    streams: Arc<dyn StreamStore>,
    sink: Arc<dyn JobSink>,
    /// How long a tenant's streams are taken from memory; zero reads them for every batch.
    cache_for: Duration,
    cache: Mutex<HashMap<TenantId, Cached>>,
}

impl Router {
    pub fn new(streams: Arc<dyn StreamStore>, sink: Arc<dyn JobSink>, cache_for: Duration) -> Self {
        Router { streams, sink, cache_for, cache: Mutex::new(HashMap::new()) }
    }

    async fn streams_of(&self, tenant: &TenantId) -> Result<Arc<Vec<Destination>>, BackendError> {
        if !self.cache_for.is_zero()
            && let Some((at, streams)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(tenant)
            && at.elapsed() < self.cache_for
        {
            return Ok(streams.clone());
        }
        let streams: Arc<Vec<Destination>> =
            Arc::new(self.streams.list(tenant).await?.into_iter().map(|s| s.stream).collect());
        if !self.cache_for.is_zero() {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.retain(|_, (at, _)| at.elapsed() < self.cache_for);
            cache.insert(tenant.clone(), (Instant::now(), streams.clone()));
        }
        Ok(streams)
    }

    /// The jobs that deliver `entries` to their tenants' streams, as they are now.
    pub async fn jobs(&self, entries: &[AuditLogEntry], now: DateTime<Utc>) -> Result<Vec<Job>, BackendError> {
        let mut by_tenant: BTreeMap<&TenantId, Vec<&AuditLogEntry>> = BTreeMap::new();
        for entry in entries {
            by_tenant.entry(&entry.tenant_id).or_default().push(entry);
        }
        let mut jobs = Vec::new();
        for (tenant, entries) in by_tenant {
            let streams = self.streams_of(tenant).await?;
            jobs.extend(jobs_for(&entries, &streams, now));
        }
        Ok(jobs)
    }

    /// Queues the jobs for `entries`; answers how many. An error leaves the batch to be routed
    /// again (by the caller's retry): a job queued twice is delivered twice, never lost.
    pub async fn route(&self, entries: &[AuditLogEntry], now: DateTime<Utc>) -> Result<usize, BackendError> {
        let jobs = self.jobs(entries, now).await?;
        if !jobs.is_empty() {
            self.sink.enqueue(&jobs).await?;
        }
        Ok(jobs.len())
    }
}
