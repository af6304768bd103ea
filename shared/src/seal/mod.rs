//! Seals: per tenant, entries are sealed in periods (an hour by default). After a period and a
//! grace, the sealer closes the period to writes, reads its leaves in id order, builds the RFC 6962
//! tree, and appends a signed checkpoint to the tenant's chain; the tree's tiles are kept so that
//! one entry's proof is a few small reads.
//!
//! Why a write cannot slip past a seal: every write's transaction checks the tenant's marker ("no
//! entry stamped before T"), and a seal moves the marker *before* it reads the leaves. A write is
//! ordered before the marker move (so the seal's strongly consistent read sees it) or after it
//! (so the write is refused). Never lost from the tree.
//!
//! Ports only: [`SealStore`] is implemented by the stores, the [`Signer`] by a local key or KMS.

pub mod publish;
pub mod verify;
pub mod witness;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, DurationRound, Utc};
use futures::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::backend::BackendError;
use crate::domain::time::format_timestamp;
use crate::domain::{AuditLogEntry, HourBucket, TenantId};
use crate::integrity::checkpoint::{
    CHECKPOINT_FORMAT, Checkpoint, CheckpointBody, GENESIS, encode_signature, ids_hash,
};
use crate::integrity::merkle::{self, Levels, TILE_WIDTH, Tile, Tiles};
use crate::integrity::note::CosignerKey;
use crate::integrity::signing::{self, SignError, Signer};
use crate::integrity::{Hash, leaf::LeafError};

pub use self::witness::{WitnessClient, WitnessStatus};

pub const DEFAULT_PERIOD_MINUTES: u32 = 60;
/// Longer than any write can take (every function's timeout is 10 s): a period is sealed this long
/// after it ends. A write that still arrives later is refused, not lost.
pub const DEFAULT_GRACE_SECONDS: u32 = 120;
/// How often the scheduled seal runs (the template's rate).
pub const DEFAULT_SCHEDULE_SECONDS: u32 = 300;
/// The most grace or schedule a verifier believes a bundle's settings about: beyond that, an
/// operator could excuse entries left unsealed for days by claiming a slow seal.
pub const MAX_SEAL_DELAY_SECONDS: u32 = 3600;
/// The deployment's log origin unless configured: each tenant's log is `<origin>/<tenant>`.
pub const DEFAULT_ORIGIN: &str = "auditline.local";

/// The default retention (90 days), in hours.
pub const DEFAULT_LOOKBACK_HOURS: u32 = 90 * 24;
/// Entries one period of one tenant may hold: the checkpoint item keeps the first id of each
/// 256-leaf tile, 16 bytes each, within DynamoDB's 400 KB.
pub const MAX_PERIOD_ENTRIES: usize = 20_000 * TILE_WIDTH;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealSettings {
    /// Minutes per period; divides 60, so that periods fall within hours.
    pub period_minutes: u32,
    pub grace_seconds: u32,
    /// How often the sealer runs: a period is sealed at most this long after its grace ends.
    pub schedule_seconds: u32,
    /// How far a run with no cursor (the first, or after one was lost) looks for tenants: the
    /// retention, so that a sealer that only starts working late still seals every stored entry.
    #[serde(skip)]
    pub lookback_hours: u32,
}

impl Default for SealSettings {
    fn default() -> Self {
        SealSettings {
            period_minutes: DEFAULT_PERIOD_MINUTES,
            grace_seconds: DEFAULT_GRACE_SECONDS,
            schedule_seconds: DEFAULT_SCHEDULE_SECONDS,
            lookback_hours: DEFAULT_LOOKBACK_HOURS,
        }
    }
}

impl SealSettings {
    pub fn period(&self) -> Duration {
        Duration::minutes(i64::from(self.period_minutes))
    }

    /// Whether a verifier may rely on these settings: periods that divide an hour, and grace and
    /// schedule within [`MAX_SEAL_DELAY_SECONDS`].
    pub fn plausible(&self) -> bool {
        (1..=60).contains(&self.period_minutes)
            && 60 % self.period_minutes == 0
            && self.grace_seconds <= MAX_SEAL_DELAY_SECONDS
            && self.schedule_seconds <= MAX_SEAL_DELAY_SECONDS
    }

    /// The start of the period holding `t`.
    pub fn period_start(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        t.duration_trunc(self.period()).unwrap_or(t)
    }

    /// The end of the last period a seal may close at `now` (its grace over).
    pub fn sealable_through(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.period_start(now - Duration::seconds(i64::from(self.grace_seconds)))
    }

    /// The earliest a seal can cover an entry stamped at `t`.
    pub fn sealed_after(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        self.period_start(t) + self.period() + Duration::seconds(i64::from(self.grace_seconds))
    }

    /// The latest a working seal covers an entry stamped at `t`: its grace and one run later.
    pub fn overdue_after(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        self.sealed_after(t) + Duration::seconds(i64::from(self.schedule_seconds))
    }
}

/// The end of a tenant's chain: the last checkpoint's end, link and total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub end: DateTime<Utc>,
    pub hash: Hash,
    pub total: u64,
}

/// Where a tenant's sealing stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealState {
    /// No entry stamped before this may be stored any more.
    pub closed_before: Option<DateTime<Utc>>,
    pub head: Option<Head>,
    /// The end of the last checkpoint every publication sink took.
    pub published: Option<DateTime<Utc>>,
}

/// A stored piece of a sealed tree; level-0 tiles also hold their entries' ids, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTile {
    pub tile: Tile,
    pub ids: Vec<Uuid>,
}

/// A sealed period as it is stored: the checkpoint, the first id of each level-0 tile (to find an
/// entry's tile with no read of the period), and the tiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedPeriod {
    pub checkpoint: Checkpoint,
    pub first_ids: Vec<Uuid>,
    pub tiles: Vec<StoredTile>,
}

/// A public key checkpoints may be signed with, and when: `GET /audit/keys`. A key retired at
/// `valid_until` verifies no checkpoint whose period ends after that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedKey {
    pub key_id: String,
    pub public_key_pem: String,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::domain::time::serde_millis_option")]
    pub valid_from: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::domain::time::serde_millis_option")]
    pub valid_until: Option<DateTime<Utc>>,
}

/// Where `GET /audit/keys` reads the seal keys from: the signer's configuration (KMS on AWS), never
/// a table that whoever can write the tables could add a key to.
#[async_trait]
pub trait KeySource: Send + Sync {
    async fn keys(&self) -> Result<Vec<PublishedKey>, BackendError>;
}

/// A fixed list of keys (the local gateway's, tests').
pub struct StaticKeys(pub Vec<PublishedKey>);

#[async_trait]
impl KeySource for StaticKeys {
    async fn keys(&self) -> Result<Vec<PublishedKey>, BackendError> {
        Ok(self.0.clone())
    }
}

impl StaticKeys {
    /// The signer's key, valid from now on.
    pub fn of(signer: &dyn Signer) -> Self {
        StaticKeys(vec![PublishedKey {
            key_id: signer.key_id().to_owned(),
            public_key_pem: signing::public_key_pem(signer.public_key_der()),
            valid_from: None,
            valid_until: None,
        }])
    }
}

/// Somewhere outside the tables a new checkpoint is published: the Object Lock bucket, the live
/// feed. A failure is reported and retried by the next run; it never undoes the seal.
#[async_trait]
pub trait CheckpointSink: Send + Sync {
    fn name(&self) -> &str;
    async fn publish(&self, checkpoint: &Checkpoint) -> Result<(), BackendError>;
    /// The newest checkpoint of `tenant` published here, for a sink that keeps them (the seal's
    /// anchor outside the tables); `None` for one that does not (the live feed).
    async fn latest(&self, _tenant: &TenantId) -> Result<Option<Checkpoint>, BackendError> {
        Ok(None)
    }
}

/// Whether an append found the chain where the seal left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Done,
    /// Another seal moved the head first: nothing was written.
    HeadMoved,
}

/// What sealing needs from storage. The stores implement it beside [`crate::store::AuditStore`]:
/// the marker is the same one their writes check.
#[async_trait]
pub trait SealStore: Send + Sync {
    /// Tenants with entries stamped in `hour` (an index, never a Scan).
    async fn active_tenants(&self, hour: HourBucket) -> Result<Vec<TenantId>, BackendError>;
    async fn seal_state(&self, tenant: &TenantId) -> Result<SealState, BackendError>;
    /// From now on, refuses entries of `tenant` stamped before `before` (never moves back).
    async fn close_before(&self, tenant: &TenantId, before: DateTime<Utc>) -> Result<(), BackendError>;
    /// The (id, leaf hash) of every entry of `tenant` stamped in `start..end`, in id order, read
    /// strongly consistently.
    async fn leaves(
        &self,
        tenant: &TenantId,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, Hash)>, BackendError>;
    /// Stores the period and moves the head from `previous` to it, all or nothing.
    async fn append(
        &self,
        tenant: &TenantId,
        period: &SealedPeriod,
        previous: Option<&Head>,
    ) -> Result<Appended, BackendError>;
    /// Checkpoints with `end` in `(after, until]`, oldest first, at most `limit`, with their
    /// cosignatures.
    async fn checkpoints(
        &self,
        tenant: &TenantId,
        after: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<Checkpoint>, BackendError>;
    /// The last `limit` checkpoints, newest first, with their cosignatures.
    async fn latest_checkpoints(&self, tenant: &TenantId, limit: usize) -> Result<Vec<Checkpoint>, BackendError>;
    /// Keeps witnesses' cosignature lines of the checkpoint ending at `end` (each stored once).
    async fn add_cosignatures(
        &self,
        tenant: &TenantId,
        end: DateTime<Utc>,
        lines: &[String],
    ) -> Result<(), BackendError>;
    /// Notes that every sink took the checkpoints up to the one ending at `through`.
    async fn mark_published(&self, tenant: &TenantId, through: DateTime<Utc>) -> Result<(), BackendError>;
    /// The checkpoint whose range holds `t`, and its tiles' first ids.
    async fn checkpoint_covering(
        &self,
        tenant: &TenantId,
        t: DateTime<Utc>,
    ) -> Result<Option<(Checkpoint, Vec<Uuid>)>, BackendError>;
    /// Tiles of the tree of the checkpoint ending at `end`.
    async fn tiles(
        &self,
        tenant: &TenantId,
        end: DateTime<Utc>,
        wanted: &[(u32, u64)],
    ) -> Result<Vec<StoredTile>, BackendError>;
    /// What the last attempt to reach each witness found (for the health check).
    async fn witness_status(&self) -> Result<Vec<WitnessStatus>, BackendError>;
    async fn record_witness_status(&self, status: &WitnessStatus) -> Result<(), BackendError>;
    /// The last hour a run of the sealer reached.
    async fn cursor(&self) -> Result<Option<HourBucket>, BackendError>;
    async fn set_cursor(&self, hour: HourBucket) -> Result<(), BackendError>;
}

#[derive(Debug, Error)]
pub enum SealError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("a period of tenant {tenant} holds {size} entries; at most {MAX_PERIOD_ENTRIES} fit one checkpoint")]
    TooLarge { tenant: TenantId, size: usize },
    /// The stored chain is not what this seal made and published: it refuses to sign on top of it.
    #[error("tenant {tenant}'s chain was tampered with, so it is not sealed: {reason}")]
    Tampered { tenant: TenantId, reason: String },
}

/// What one run of the sealer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealReport {
    pub tenants: usize,
    pub checkpoints: usize,
    pub entries: u64,
    /// Tenants another seal was sealing at the same time (left to it).
    pub raced: usize,
    /// Cosignatures received from witnesses.
    pub cosigned: usize,
    /// Submissions to a witness that failed (retried next run).
    pub witness_failures: usize,
    /// Checkpoints a sink could not take (retried next run).
    pub publish_failures: usize,
    /// Tenants not sealed because their stored chain disagrees with itself or with what was
    /// published (an alarm: see the error logged).
    pub refused: usize,
}

/// Seals periods: builds, signs and appends checkpoints, then has witnesses cosign the new head
/// and publishes each checkpoint outside the tables.
#[derive(Clone)]
pub struct Sealer {
    pub store: Arc<dyn SealStore>,
    pub signer: Arc<dyn Signer>,
    pub settings: SealSettings,
    /// The deployment's log origin: tenant `t`'s checkpoints name `<origin>/<t>`.
    pub origin: String,
    pub witnesses: Vec<Arc<dyn WitnessClient>>,
    pub sinks: Vec<Arc<dyn CheckpointSink>>,
    /// Public keys (DER) a stored checkpoint may be signed with: the signer's, and keys retired
    /// before it. A head signed by anything else is not sealed on.
    pub trusted_keys: Vec<Vec<u8>>,
}

impl Sealer {
    /// A sealer with the default origin, no witnesses and no sinks.
    pub fn new(store: Arc<dyn SealStore>, signer: Arc<dyn Signer>, settings: SealSettings) -> Self {
        let trusted_keys = vec![signer.public_key_der().to_vec()];
        Sealer {
            store,
            signer,
            settings,
            origin: DEFAULT_ORIGIN.to_owned(),
            witnesses: Vec::new(),
            sinks: Vec::new(),
            trusted_keys,
        }
    }

    /// Also trusts stored checkpoints signed by `retired` keys (DER): a chain sealed before a rotation.
    pub fn with_retired_keys(mut self, retired: Vec<Vec<u8>>) -> Self {
        self.trusted_keys.extend(retired);
        self
    }

    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = origin.into();
        self
    }

    pub fn with_witnesses(mut self, witnesses: Vec<Arc<dyn WitnessClient>>) -> Self {
        self.witnesses = witnesses;
        self
    }

    pub fn with_sinks(mut self, sinks: Vec<Arc<dyn CheckpointSink>>) -> Self {
        self.sinks = sinks;
        self
    }

    /// Seals every tenant active in the hours since the last run's (an index lags a little, so the
    /// hour before that is read again).
    pub async fn run(&self, now: DateTime<Utc>) -> Result<SealReport, SealError> {
        let since = self.store.cursor().await?;
        let through = self.settings.sealable_through(now);
        let last = HourBucket::of(through - Duration::milliseconds(1));
        // From the hour before the cursor (a tenant's counter item may land just after a run read
        // its hour); with no cursor, from as far back as entries live.
        let first = match since {
            Some(s) => s.min(last).previous(),
            None => HourBucket::of(through - Duration::hours(i64::from(self.settings.lookback_hours))),
        };
        let mut report = SealReport::default();
        let mut hours = Vec::new();
        let mut hour = first;
        while hour <= last {
            hours.push(hour);
            hour = hour.next();
        }
        // One small query per hour; a first run reads the whole retention, so a few at a time.
        let mut active =
            stream::iter(hours).map(|h| async move { (h, self.store.active_tenants(h).await) }).buffered(8);
        let mut tenants: BTreeMap<TenantId, HourBucket> = BTreeMap::new();
        while let Some((hour, found)) = active.next().await {
            for tenant in found? {
                tenants.entry(tenant).or_insert(hour);
            }
        }
        for (tenant, first_seen) in tenants {
            let sealed = match self.seal_tenant(&tenant, first_seen.start(), now).await {
                Err(SealError::Tampered { tenant, reason }) => {
                    tracing::error!(tenant = %tenant, %reason, "ALARM: the stored chain was tampered with; this tenant is not sealed until it is restored");
                    report.refused += 1;
                    continue;
                }
                other => other?,
            };
            report.tenants += 1;
            report.checkpoints += sealed.checkpoints;
            report.entries += sealed.entries;
            report.raced += sealed.raced;
            report.cosigned += sealed.cosigned;
            report.witness_failures += sealed.witness_failures;
            report.publish_failures += sealed.publish_failures;
        }
        self.store.set_cursor(last).await?;
        Ok(report)
    }

    /// The log origin of `tenant`.
    pub fn origin_of(&self, tenant: &TenantId) -> String {
        format!("{}/{tenant}", self.origin)
    }

    /// Seals `tenant`'s closed periods after its chain's head (or from `first_seen`, for its
    /// first), then brings witnesses and sinks up to the head.
    pub async fn seal_tenant(
        &self,
        tenant: &TenantId,
        first_seen: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<SealReport, SealError> {
        let through = self.settings.sealable_through(now);
        let state = self.store.seal_state(tenant).await?;
        let start = state.head.map_or(self.settings.period_start(first_seen), |h| h.end);
        let mut report = SealReport::default();
        let mut head = state.head;
        let mut sealed = Vec::new();
        if start < through {
            // First close, then read: a write racing this seal is either seen below or refused.
            self.store.close_before(tenant, through).await?;
            let leaves = self.store.leaves(tenant, start, through).await?;
            let mut by_period: BTreeMap<DateTime<Utc>, Vec<(Uuid, Hash)>> = BTreeMap::new();
            for (id, leaf) in leaves {
                let stamped = crate::domain::time::uuid_v7_time(&id).unwrap_or(start);
                by_period
                    .entry(self.settings.period_start(stamped) + self.settings.period())
                    .or_default()
                    .push((id, leaf));
            }
            if !by_period.is_empty() {
                self.check_head(tenant, state.head.as_ref()).await?;
            }
            let mut range_start = start;
            for (end, leaves) in by_period {
                if leaves.len() > MAX_PERIOD_ENTRIES {
                    return Err(SealError::TooLarge { tenant: tenant.clone(), size: leaves.len() });
                }
                let period = self.build(tenant, range_start, end, &leaves, head.as_ref()).await?;
                match self.store.append(tenant, &period, head.as_ref()).await? {
                    Appended::Done => {}
                    Appended::HeadMoved => {
                        report.raced = 1;
                        return Ok(report);
                    }
                }
                report.checkpoints += 1;
                report.entries += leaves.len() as u64;
                head = Some(Head { end, hash: period.checkpoint.link(), total: period.checkpoint.body.total });
                sealed.push(period.checkpoint);
                range_start = end;
            }
        }
        // What comes after the append (witnesses, publication) never fails the seal: the chain is
        // already extended, and the next run tries again.
        if let Some(head) = head
            && let Err(e) = self.after_append(tenant, head, state.published, sealed, &mut report, now).await
        {
            tracing::warn!(tenant = %tenant, error = %e, "witnesses or publication could not be reached; the next run tries again");
            report.publish_failures += 1;
        }
        Ok(report)
    }

    /// Before signing on top of the stored chain, checks it is the one this seal made: the head
    /// item names the newest stored checkpoint (its link, end and total), which a trusted key
    /// signed; and it is not behind what was published outside the tables (a head rolled back, or
    /// the chain deleted and started again from genesis, is refused). Whoever can write the tables
    /// can stop sealing, then, but not have a rewritten history signed.
    async fn check_head(&self, tenant: &TenantId, head: Option<&Head>) -> Result<(), SealError> {
        let tampered = |reason: String| SealError::Tampered { tenant: tenant.clone(), reason };
        let newest = self.store.latest_checkpoints(tenant, 1).await?.pop();
        match (head, &newest) {
            (None, None) => {}
            (Some(h), Some(c)) => {
                let end = parse_end(c)?;
                if c.link() != h.hash || c.body.total != h.total || end != h.end {
                    return Err(tampered(format!(
                        "the seal state names head {} (ending {}), the newest checkpoint is {} (ending {})",
                        h.hash,
                        format_timestamp(h.end),
                        c.link(),
                        c.body.end
                    )));
                }
                let signed = c.signature_bytes().is_some_and(|sig| {
                    self.trusted_keys.iter().any(|k| signing::verify(k, &c.body.signed_bytes(), &sig))
                });
                if !signed || c.body.tenant != tenant.as_str() {
                    return Err(tampered(format!(
                        "the newest checkpoint (ending {}) is not one this seal signed",
                        c.body.end
                    )));
                }
            }
            (None, Some(c)) => {
                return Err(tampered(format!(
                    "checkpoints exist (the newest ends {}) but the seal state has no head",
                    c.body.end
                )));
            }
            (Some(h), None) => {
                return Err(tampered(format!("the seal state names head {} but no checkpoint is stored", h.hash)));
            }
        }
        for sink in &self.sinks {
            let published = match sink.latest(tenant).await {
                Ok(p) => p,
                // Unreadable now: not evidence of anything; sealing goes on, the next run looks again.
                Err(e) => {
                    tracing::warn!(sink = sink.name(), tenant = %tenant, error = %e, "the published chain could not be read");
                    continue;
                }
            };
            let Some(published) = published else { continue };
            let published_end = parse_end(&published)?;
            let Some(h) = head else {
                return Err(tampered(format!(
                    "the chain starts again from genesis, but {} holds a checkpoint ending {}",
                    sink.name(),
                    published.body.end
                )));
            };
            let ours = if published_end == h.end {
                newest.clone()
            } else {
                self.store
                    .checkpoints(tenant, Some(published_end - Duration::milliseconds(1)), Some(published_end), 1)
                    .await?
                    .pop()
            };
            if published_end > h.end || ours.is_none_or(|o| o.link() != published.link()) {
                return Err(tampered(format!(
                    "{} holds checkpoint {} (ending {}), which the stored chain (head ending {}) does not contain",
                    sink.name(),
                    published.link(),
                    published.body.end,
                    format_timestamp(h.end)
                )));
            }
        }
        Ok(())
    }

    /// Witnesses cosign the head; sinks take every checkpoint they have not taken yet (those this
    /// run sealed, or more when a sink was down before).
    async fn after_append(
        &self,
        tenant: &TenantId,
        head: Head,
        published: Option<DateTime<Utc>>,
        sealed: Vec<Checkpoint>,
        report: &mut SealReport,
        now: DateTime<Utc>,
    ) -> Result<(), SealError> {
        let mut pending = if self.sinks.is_empty() || published.is_some_and(|p| p >= head.end) {
            Vec::new()
        } else if sealed
            .first()
            .is_some_and(|c| Some(c.body.start.as_str()) == published.map(format_timestamp).as_deref())
        {
            sealed.clone()
        } else {
            self.store.checkpoints(tenant, published, None, witness::MAX_CATCH_UP).await?
        };
        if !self.witnesses.is_empty() {
            let latest = match sealed.last() {
                Some(c) => Some(c.clone()),
                None => self.store.latest_checkpoints(tenant, 1).await?.pop(),
            };
            if let Some(mut latest) = latest {
                witness::cosign_head(self, tenant, &mut latest, report, now).await?;
                if let Some(slot) = pending.iter_mut().find(|c| c.body.end == latest.body.end) {
                    *slot = latest;
                }
            }
        }
        // Published with the cosignatures of the configured witnesses only.
        let keys: Vec<CosignerKey> = self.witnesses.iter().map(|w| w.key().clone()).collect();
        for checkpoint in &mut pending {
            checkpoint.retain_cosignatures(&keys);
        }
        let mut through = None;
        'checkpoints: for checkpoint in &pending {
            for sink in &self.sinks {
                if let Err(e) = sink.publish(checkpoint).await {
                    tracing::warn!(sink = sink.name(), tenant = %tenant, end = %checkpoint.body.end, error = %e,
                        "publishing a checkpoint failed; the next run tries again");
                    report.publish_failures += 1;
                    break 'checkpoints;
                }
            }
            through = Some(parse_end(checkpoint)?);
        }
        if let Some(through) = through {
            self.store.mark_published(tenant, through).await?;
        }
        Ok(())
    }

    async fn build(
        &self,
        tenant: &TenantId,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        leaves: &[(Uuid, Hash)],
        previous: Option<&Head>,
    ) -> Result<SealedPeriod, SealError> {
        let tree = Levels::new(leaves.iter().map(|(_, h)| *h).collect());
        let body = CheckpointBody {
            format: CHECKPOINT_FORMAT.to_owned(),
            origin: self.origin_of(tenant),
            tenant: tenant.to_string(),
            start: format_timestamp(start),
            end: format_timestamp(end),
            size: tree.size(),
            total: previous.map_or(0, |h| h.total) + tree.size(),
            root: tree.root(),
            ids: ids_hash(leaves.iter().map(|(id, _)| id.as_bytes())),
            previous: previous.map_or(GENESIS, |h| h.hash),
            key_id: self.signer.key_id().to_owned(),
        };
        // Low s whatever the signer returns (KMS does not normalise): one checkpoint, one signature.
        let signature = self.signer.sign(&body.signed_bytes()).await?;
        let signature = signing::normalize_low_s(&signature)
            .ok_or_else(|| SignError::Key("the signer returned no DER signature".into()))?;
        let ids: Vec<Uuid> = leaves.iter().map(|(id, _)| *id).collect();
        let tiles = tree
            .tiles()
            .into_iter()
            .map(|tile| {
                let ids = if tile.level == 0 {
                    let from = tile.index as usize * TILE_WIDTH;
                    ids[from..from + tile.hashes.len()].to_vec()
                } else {
                    Vec::new()
                };
                StoredTile { tile, ids }
            })
            .collect();
        Ok(SealedPeriod {
            checkpoint: Checkpoint { body, signature: encode_signature(&signature), cosignatures: Vec::new() },
            first_ids: ids.chunks(TILE_WIDTH).map(|c| c[0]).collect(),
            tiles,
        })
    }
}

fn parse_end(c: &Checkpoint) -> Result<DateTime<Utc>, BackendError> {
    DateTime::parse_from_rfc3339(&c.body.end).map(|t| t.to_utc()).map_err(|e| corrupt(&e))
}

/// The (id, leaf hash) of every entry of the sealed period ending at `end`, in tree order, from its
/// level-0 tiles: what a verifier needs to check a period some of whose entries are past
/// retention. `None` when the tiles are gone (the whole period past retention).
pub async fn period_leaves(
    store: &dyn SealStore,
    tenant: &TenantId,
    checkpoint: &Checkpoint,
) -> Result<Option<Vec<(Uuid, Hash)>>, BackendError> {
    let end = parse_end(checkpoint)?;
    let size = checkpoint.body.size;
    let wanted: Vec<(u32, u64)> = (0..size.div_ceil(TILE_WIDTH as u64)).map(|i| (0, i)).collect();
    let mut tiles = store.tiles(tenant, end, &wanted).await?;
    if tiles.len() != wanted.len() {
        return Ok(None);
    }
    tiles.sort_by_key(|t| t.tile.index);
    let mut out = Vec::with_capacity(size as usize);
    for t in tiles {
        if t.ids.len() != t.tile.hashes.len() {
            return Err(BackendError::Internal("a stored tile's ids do not match its hashes".into()));
        }
        out.extend(t.ids.into_iter().zip(t.tile.hashes));
    }
    Ok(Some(out))
}

/// One entry's proof: the entry, where its leaf sits in its period's tree, the audit path, and the
/// checkpoint that commits to the tree. Checkable offline with the signer's public key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryProof {
    pub entry: AuditLogEntry,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub proof: Vec<Hash>,
    pub checkpoint: Checkpoint,
}

/// What a proof request finds.
#[derive(Debug, Clone, PartialEq)]
pub enum ProofOutcome {
    Proven(Box<EntryProof>),
    /// The entry's period is not sealed yet; it will be after this.
    NotSealed {
        sealed_after: DateTime<Utc>,
    },
}

/// The proof of `entry` (read by the caller from its tenant's entries). Reads the checkpoint that
/// covers it and the few tiles its path crosses: O(log n) hashes in at most three requests.
pub async fn prove(
    store: &dyn SealStore,
    entry: AuditLogEntry,
    settings: &SealSettings,
) -> Result<ProofOutcome, BackendError> {
    let tenant = entry.tenant_id.clone();
    let not_sealed = ProofOutcome::NotSealed { sealed_after: settings.sealed_after(entry.timestamp) };
    let Some((checkpoint, first_ids)) = store.checkpoint_covering(&tenant, entry.timestamp).await? else {
        return Ok(not_sealed);
    };
    let end = DateTime::parse_from_rfc3339(&checkpoint.body.end).map_err(|e| corrupt(&e))?.to_utc();
    // The tile holding the entry: the last whose first id is not after it.
    let tile = first_ids.partition_point(|first| *first <= entry.id).checked_sub(1);
    let Some(tile) = tile else { return Ok(not_sealed) };
    let level0 = store.tiles(&tenant, end, &[(0, tile as u64)]).await?;
    let Some(position) = level0.first().and_then(|t| t.ids.iter().position(|id| *id == entry.id)) else {
        // Stamped in a sealed range but not in its tree: only a store fault can do that.
        return Err(BackendError::Internal(format!("entry {} is missing from its sealed tree", entry.id)));
    };
    let index = (tile * TILE_WIDTH + position) as u64;
    let size = checkpoint.body.size;
    let needed: Vec<(u32, u64)> =
        merkle::tiles_for_inclusion(index, size).into_iter().filter(|t| *t != (0, tile as u64)).collect();
    let mut tiles: Vec<Tile> = level0.into_iter().map(|t| t.tile).collect();
    if !needed.is_empty() {
        tiles.extend(store.tiles(&tenant, end, &needed).await?.into_iter().map(|t| t.tile));
    }
    let proof = merkle::inclusion_proof(&Tiles(&tiles), index, size);
    Ok(ProofOutcome::Proven(Box::new(EntryProof { entry, leaf_index: index, tree_size: size, proof, checkpoint })))
}

fn corrupt(e: &dyn std::fmt::Display) -> BackendError {
    BackendError::Internal(format!("a stored checkpoint could not be read: {e}"))
}

/// Why a proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    #[error("the entry does not match its leaf hash: {0}")]
    Leaf(LeafError),
    #[error("the audit path does not lead from the entry's leaf to the checkpoint's root")]
    Path,
    #[error("the checkpoint's signature does not verify with the key given")]
    Signature,
    #[error("the checkpoint was signed by key {found}, not by the key given ({expected})")]
    OtherKey { found: String, expected: String },
    #[error("the checkpoint was signed by key {found}, which is not among the keys given")]
    UnknownKey { found: String },
    #[error("the entry belongs to tenant {entry}, the checkpoint to {checkpoint}")]
    Tenant { entry: String, checkpoint: String },
    #[error("the proof is tenant {found}'s, not tenant {expected}'s")]
    NotTheTenant { expected: String, found: String },
    #[error("the entry was stamped outside the checkpoint's period")]
    OutOfRange,
    #[error("the checkpoint was signed by key {key_id}, which was retired at {until}")]
    Retired { key_id: String, until: String },
    #[error("the checkpoint is malformed: {0}")]
    Malformed(&'static str),
    #[error("the entry's timestamp is not its id's time (one was moved)")]
    Stamp,
}

impl EntryProof {
    /// Checks the proof with the signer's public key (DER). Returns the erased fields.
    pub fn verify(&self, public_key_der: &[u8]) -> Result<Vec<String>, ProofError> {
        let body = &self.checkpoint.body;
        if body.format != CHECKPOINT_FORMAT {
            return Err(ProofError::Malformed("not an auditline-checkpoint/2"));
        }
        if !body.origin_names_tenant() {
            return Err(ProofError::Malformed("its origin does not name its tenant"));
        }
        let expected = signing::key_id(public_key_der);
        if body.key_id != expected {
            return Err(ProofError::OtherKey { found: body.key_id.clone(), expected });
        }
        let signature = self.checkpoint.signature_bytes().ok_or(ProofError::Signature)?;
        if !signing::verify(public_key_der, &body.signed_bytes(), &signature) {
            return Err(ProofError::Signature);
        }
        if self.entry.tenant_id.as_str() != body.tenant {
            return Err(ProofError::Tenant {
                entry: self.entry.tenant_id.to_string(),
                checkpoint: body.tenant.clone(),
            });
        }
        if crate::domain::time::uuid_v7_time(&self.entry.id) != Some(self.entry.timestamp) {
            return Err(ProofError::Stamp);
        }
        let stamped = format_timestamp(self.entry.timestamp);
        if !(body.start <= stamped && stamped < body.end) {
            return Err(ProofError::OutOfRange);
        }
        let erased = self.entry.verify_leaf().map_err(ProofError::Leaf)?;
        let leaf = self.entry.integrity.leaf_hash;
        if self.tree_size != body.size
            || !merkle::verify_inclusion(&leaf, self.leaf_index, self.tree_size, &self.proof, &body.root)
        {
            return Err(ProofError::Path);
        }
        Ok(erased)
    }
}
