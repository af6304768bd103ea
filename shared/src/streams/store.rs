//! Where streams and their figures are kept: the [`StreamStore`] port, its in-memory adapter, and
//! the figures themselves (delivered, failed, retried, last error, lag histogram, failing).
//! SQLite and DynamoDB adapters live in `crate::store`; all three pass the same contract tests.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use super::destination::{Destination, MAX_STREAMS_PER_TENANT};
use crate::backend::BackendError;
use crate::domain::TenantId;

/// Buckets of the lag histogram: bucket `k` holds lags below `2^((k+1)/2)` ms, the last one
/// everything longer (about 26 hours and up).
pub const LAG_BUCKETS: usize = 54;

/// The bucket of a lag.
pub fn lag_bucket(lag_ms: u64) -> usize {
    // ⌊2·log2(ms + 1)⌋, computed on integers: half-powers of two by comparing squares.
    let x = u128::from(lag_ms) + 1;
    let mut k = 0usize;
    while k + 1 < LAG_BUCKETS && (1u128 << (k + 1)) <= x.saturating_mul(x) {
        k += 1;
    }
    k
}

/// The upper bound (ms) of bucket `k`: what a percentile falling in it is reported as.
pub fn lag_bucket_bound(k: usize) -> u64 {
    // 2^((k+1)/2), rounded up.
    let exponent = (k as f64 + 1.0) / 2.0;
    (2f64.powf(exponent)).ceil() as u64
}

/// A stream that gave up: since when, and the error that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failing {
    #[serde(with = "crate::domain::time::serde_millis")]
    pub since: DateTime<Utc>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    #[serde(with = "crate::domain::time::serde_millis")]
    pub at: DateTime<Utc>,
    pub message: String,
}

/// A stream's delivery figures since it was created, counted in entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Figures {
    pub delivered: u64,
    /// Entries given up on (dead-lettered).
    pub failed: u64,
    /// Entries whose delivery failed and was tried again later.
    pub retried: u64,
    pub last_error: Option<LastError>,
    #[serde(default, with = "crate::domain::time::serde_millis_option")]
    pub last_delivered_at: Option<DateTime<Utc>>,
    /// Lags from write to delivery, by [`lag_bucket`].
    pub lag: Vec<u64>,
    /// Set when a delivery was dead-lettered, cleared by the next success.
    pub failing: Option<Failing>,
}

impl Figures {
    /// The lag (ms) below which `q` (0..=1) of the deliveries fell, as its bucket's bound.
    pub fn lag_percentile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.lag.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (k, count) in self.lag.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(lag_bucket_bound(k));
            }
        }
        None
    }

    /// Adds `delta` (what an adapter that cannot add in place does).
    pub fn apply(&mut self, delta: &FiguresDelta) {
        self.delivered += delta.delivered;
        self.failed += delta.failed;
        self.retried += delta.retried;
        if let Some(error) = &delta.error {
            self.last_error = Some(error.clone());
        }
        if delta.delivered_at.is_some() {
            self.last_delivered_at = delta.delivered_at;
        }
        if self.lag.len() < LAG_BUCKETS {
            self.lag.resize(LAG_BUCKETS, 0);
        }
        for (bucket, count) in &delta.lags {
            self.lag[(*bucket).min(LAG_BUCKETS - 1)] += count;
        }
    }
}

/// What one delivery attempt adds to a stream's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FiguresDelta {
    pub delivered: u64,
    pub failed: u64,
    pub retried: u64,
    /// (bucket, count) of the delivered entries' lags.
    pub lags: Vec<(usize, u64)>,
    pub error: Option<LastError>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl FiguresDelta {
    pub fn is_empty(&self) -> bool {
        self == &FiguresDelta::default()
    }
}

/// A stream and its figures, read together.
#[derive(Debug, Clone)]
pub struct StoredStream {
    pub stream: Destination,
    pub figures: Figures,
}

#[derive(Debug, Error)]
pub enum StreamStoreError {
    #[error("a tenant may have at most {MAX_STREAMS_PER_TENANT} streams")]
    Limit,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Where streams are kept, per tenant.
#[async_trait]
pub trait StreamStore: Send + Sync {
    /// Adds a new stream (version 1), unless its tenant has [`MAX_STREAMS_PER_TENANT`] already.
    async fn create(&self, stream: &Destination) -> Result<(), StreamStoreError>;

    /// The tenant's streams with their figures, oldest first.
    async fn list(&self, tenant: &TenantId) -> Result<Vec<StoredStream>, BackendError>;

    async fn get(&self, tenant: &TenantId, id: Uuid) -> Result<Option<StoredStream>, BackendError>;

    /// Writes `stream` over version `stream.version - 1`; false if another change came first or
    /// the stream is gone. Figures are left as they are.
    async fn replace(&self, stream: &Destination) -> Result<bool, BackendError>;

    /// Removes a stream and its figures; false if there was none.
    async fn delete(&self, tenant: &TenantId, id: Uuid) -> Result<bool, BackendError>;

    /// Adds to a stream's figures (nothing if it is gone).
    async fn record(&self, tenant: &TenantId, id: Uuid, delta: &FiguresDelta) -> Result<(), BackendError>;

    /// Marks a stream failing, or (with `None`) healthy again; true only if that changed it, so one
    /// transition is recorded once however many deliveries race.
    async fn set_failing(&self, tenant: &TenantId, id: Uuid, failing: Option<&Failing>) -> Result<bool, BackendError>;

    /// How many streams, of all tenants, are failing (the health check's figure).
    async fn failing_count(&self) -> Result<u64, BackendError>;
}

/// Streams in memory, for tests and the memory-backed local gateway.
#[derive(Default)]
pub struct MemoryStreams {
    streams: Mutex<HashMap<(TenantId, Uuid), StoredStream>>,
}

impl MemoryStreams {
    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<(TenantId, Uuid), StoredStream>> {
        self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl StreamStore for MemoryStreams {
    async fn create(&self, stream: &Destination) -> Result<(), StreamStoreError> {
        let mut streams = self.locked();
        if streams.keys().filter(|(t, _)| t == &stream.tenant_id).count() >= MAX_STREAMS_PER_TENANT {
            return Err(StreamStoreError::Limit);
        }
        streams
            .entry((stream.tenant_id.clone(), stream.id))
            .or_insert_with(|| StoredStream { stream: stream.clone(), figures: Figures::default() });
        Ok(())
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<StoredStream>, BackendError> {
        let mut found: Vec<StoredStream> =
            self.locked().iter().filter(|((t, _), _)| t == tenant).map(|(_, s)| s.clone()).collect();
        found.sort_by_key(|s| s.stream.id);
        Ok(found)
    }

    async fn get(&self, tenant: &TenantId, id: Uuid) -> Result<Option<StoredStream>, BackendError> {
        Ok(self.locked().get(&(tenant.clone(), id)).cloned())
    }

    async fn replace(&self, stream: &Destination) -> Result<bool, BackendError> {
        let mut streams = self.locked();
        match streams.get_mut(&(stream.tenant_id.clone(), stream.id)) {
            Some(stored) if stored.stream.version + 1 == stream.version => {
                stored.stream = stream.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete(&self, tenant: &TenantId, id: Uuid) -> Result<bool, BackendError> {
        Ok(self.locked().remove(&(tenant.clone(), id)).is_some())
    }

    async fn record(&self, tenant: &TenantId, id: Uuid, delta: &FiguresDelta) -> Result<(), BackendError> {
        if let Some(stored) = self.locked().get_mut(&(tenant.clone(), id)) {
            stored.figures.apply(delta);
        }
        Ok(())
    }

    async fn set_failing(&self, tenant: &TenantId, id: Uuid, failing: Option<&Failing>) -> Result<bool, BackendError> {
        let mut streams = self.locked();
        let Some(stored) = streams.get_mut(&(tenant.clone(), id)) else {
            return Ok(false);
        };
        if stored.figures.failing.is_some() == failing.is_some() {
            return Ok(false);
        }
        stored.figures.failing = failing.cloned();
        Ok(true)
    }

    async fn failing_count(&self) -> Result<u64, BackendError> {
        Ok(self.locked().values().filter(|s| s.figures.failing.is_some()).count() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_buckets_grow_by_half_powers_of_two() {
        assert_eq!(lag_bucket(0), 0);
        assert_eq!(lag_bucket(1), 2);
        assert_eq!(lag_bucket(3), 4);
        for ms in [0u64, 1, 5, 99, 1000, 86_400_000] {
            let k = lag_bucket(ms);
            assert!(ms < lag_bucket_bound(k), "{ms} ms is below its bucket's bound");
            if k > 0 {
                assert!(ms + 1 >= lag_bucket_bound(k - 1), "{ms} ms is not below the bucket before");
            }
        }
        assert_eq!(lag_bucket(u64::MAX), LAG_BUCKETS - 1);
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut figures = Figures::default();
        let mut delta = FiguresDelta::default();
        delta.lags.push((lag_bucket(40), 99));
        delta.lags.push((lag_bucket(3000), 1));
        figures.apply(&delta);
        assert_eq!(figures.lag_percentile(0.5), Some(lag_bucket_bound(lag_bucket(40))));
        assert_eq!(figures.lag_percentile(0.99), Some(lag_bucket_bound(lag_bucket(40))));
        assert_eq!(figures.lag_percentile(1.0), Some(lag_bucket_bound(lag_bucket(3000))));
        assert_eq!(Figures::default().lag_percentile(0.5), None);
    }
}
