//! Offline verification of a bundle — a tenant's entries, checkpoints, and what `fetch` recorded —
//! against keys the auditor pinned, built for one adversary: whoever can write the tables.
//!
//! Checked: every checkpoint's signature (low s, by a pinned key inside its window), the chain (from
//! genesis, no gap, no fork, totals that add up, containing a head recorded earlier), the tenant,
//! witnesses' cosignatures on the head, every entry against its leaf, and every period's entries
//! against its root and ids — from the entries themselves, or from the period's published leaves
//! when retention removed some. Entries no checkpoint covers must be recent: a working seal covers
//! an entry within its period, grace and schedule, so an older one means checkpoints were removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{EntryProof, ProofError, SealSettings};
use crate::domain::AuditLogEntry;
use crate::domain::time::{format_timestamp, uuid_v7_time};
use crate::integrity::checkpoint::{CHECKPOINT_FORMAT, Checkpoint, GENESIS, ids_hash};
use crate::integrity::note::{CosignerKey, Note, SignatureLine};
use crate::integrity::signing;
use crate::integrity::{Hash, merkle};

pub const MANIFEST_FORMAT: &str = "auditline-bundle/1";

/// How far a bundle's contents may be ahead of its recorded fetch time (clocks differ a little).
const FETCH_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// What `fetch` (or `export`) records about a bundle: whose it is, when it was taken, and the seal
/// settings the service reported. The verifier judges "should have been sealed by now" at the
/// earlier of `fetched_at` and its own clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub tenant: String,
    #[serde(with = "crate::domain::time::serde_millis")]
    pub fetched_at: DateTime<Utc>,
    pub seal: SealSettings,
}

/// A sealed period's leaves in tree order, as the service keeps them with its checkpoint: what a
/// period some of whose entries are past retention is checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodLeaves {
    /// The end of the period's checkpoint.
    pub end: String,
    pub ids: Vec<Uuid>,
    pub leaves: Vec<Hash>,
}

/// What a witness said it last cosigned for the tenant's log, as `fetch --witness` asked it: a
/// note with the witness's fresh cosignature. A chain that does not reach it was cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessView {
    pub witness: String,
    pub note: String,
}

/// What a bundle holds.
#[derive(Debug, Clone, Default)]
pub struct Bundle {
    pub entries: Vec<AuditLogEntry>,
    pub checkpoints: Vec<Checkpoint>,
    pub periods: Vec<PeriodLeaves>,
    pub manifest: Option<Manifest>,
    pub witnessed: Vec<WitnessView>,
}

/// One thing found wrong, named so that a person can find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Signature {
        end: String,
    },
    UnknownKey {
        end: String,
        key_id: String,
    },
    KeyRetired {
        end: String,
        key_id: String,
        until: String,
    },
    Malformed {
        end: String,
        reason: String,
    },
    NotGenesis {
        end: String,
    },
    Gap {
        after: String,
        next_start: String,
    },
    BrokenLink {
        end: String,
    },
    Total {
        end: String,
    },
    Fork {
        end: String,
    },
    Tenant {
        what: String,
    },
    Head {
        expected: Hash,
    },
    Witnesses {
        end: String,
        found: usize,
        required: usize,
    },
    Leaf {
        id: Uuid,
        reason: String,
    },
    Uncovered {
        id: Uuid,
        timestamp: String,
    },
    Overdue {
        id: Uuid,
        timestamp: String,
        due: String,
    },
    Count {
        start: String,
        end: String,
        found: u64,
        size: u64,
    },
    Missing {
        start: String,
        end: String,
        size: u64,
    },
    MissingEntry {
        id: Uuid,
        end: String,
    },
    NotInPeriod {
        id: Uuid,
        end: String,
    },
    Root {
        start: String,
        end: String,
    },
    PeriodLeaves {
        end: String,
    },
    Duplicate {
        id: Uuid,
    },
    Settings {
        reason: String,
    },
    Stamp {
        id: Uuid,
    },
    WitnessAhead {
        witness: String,
        total: u64,
        end: String,
    },
    /// An erased field without an erasure record naming it.
    ErasedWithoutRecord {
        id: Uuid,
        field: String,
    },
    /// An erased field whose record is not in the bundle.
    ErasureRecordMissing {
        id: Uuid,
        field: String,
        record: Uuid,
    },
    /// An erased field whose record does not name that entry and field (or is not a record).
    ErasureRecordMismatch {
        id: Uuid,
        field: String,
        record: Uuid,
    },
    /// An erased field whose record is not proven itself (not under a checkpoint, nor recent).
    ErasureRecordUnproven {
        id: Uuid,
        field: String,
        record: Uuid,
    },
    /// A field erased that its entry's kind may not lose (one that identifies or places it).
    NotErasable {
        id: Uuid,
        field: String,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Signature { end } => {
                write!(f, "checkpoint ending {end}: the signature does not verify (or is not low-s DER)")
            }
            Failure::UnknownKey { end, key_id } => {
                write!(f, "checkpoint ending {end}: signed by key {key_id}, which is not among the keys given")
            }
            Failure::KeyRetired { end, key_id, until } => write!(
                f,
                "checkpoint ending {end}: signed by key {key_id}, which was retired at {until} (a retired key signs nothing later)"
            ),
            Failure::Malformed { end, reason } => write!(f, "checkpoint ending {end}: {reason}"),
            Failure::NotGenesis { end } => write!(
                f,
                "checkpoint ending {end}: the chain does not start at genesis (an earlier checkpoint is missing)"
            ),
            Failure::Gap { after, next_start } => write!(
                f,
                "the chain breaks after the checkpoint ending {after}: the next starts at {next_start} (a checkpoint is missing)"
            ),
            Failure::BrokenLink { end } => write!(
                f,
                "checkpoint ending {end}: it does not name the link of the one before (one was removed, replaced or re-signed)"
            ),
            Failure::Total { end } => write!(
                f,
                "checkpoint ending {end}: its total is not the previous total plus its size (entries were added to or removed from the count)"
            ),
            Failure::Fork { end } => {
                write!(f, "checkpoint ending {end}: another checkpoint claims the same place in the chain (a fork)")
            }
            Failure::Tenant { what } => write!(f, "{what}"),
            Failure::Head { expected } => write!(
                f,
                "the chain does not contain the head {expected} recorded earlier (history was rewritten, checkpoints removed, or it is another chain)"
            ),
            Failure::Witnesses { end, found, required } => write!(
                f,
                "the head (checkpoint ending {end}) carries {found} valid cosignature(s) of the witnesses given, {required} required"
            ),
            Failure::Leaf { id, reason } => write!(f, "entry {id}: {reason}"),
            Failure::Uncovered { id, timestamp } => write!(
                f,
                "entry {id} ({timestamp}) is older than the chain's first checkpoint: no checkpoint covers it (inserted, or back-dated)"
            ),
            Failure::Overdue { id, timestamp, due } => write!(
                f,
                "entry {id} ({timestamp}) should have been sealed by {due}, but no checkpoint covers it (checkpoints were removed)"
            ),
            Failure::Count { start, end, found, size } => write!(
                f,
                "period {start} – {end}: the bundle holds {found} entries, the checkpoint {size} (entries were removed or added)"
            ),
            Failure::Missing { start, end, size } => write!(
                f,
                "period {start} – {end}: its {size} entries are all missing, and it is not past retention (entries were removed)"
            ),
            Failure::MissingEntry { id, end } => write!(
                f,
                "entry {id} of the period ending {end} is missing, and it is not past retention (it was removed)"
            ),
            Failure::NotInPeriod { id, end } => {
                write!(f, "entry {id} is not in the sealed period ending {end} (inserted, or changed since sealing)")
            }
            Failure::Root { start, end } => write!(
                f,
                "period {start} – {end}: its entries do not hash to the checkpoint's root and ids (an entry was changed, replaced or moved)"
            ),
            Failure::PeriodLeaves { end } => {
                write!(f, "the leaves given for the period ending {end} do not match its checkpoint's root and ids")
            }
            Failure::Duplicate { id } => write!(f, "entry {id} appears twice"),
            Failure::Settings { reason } => write!(f, "{reason}"),
            Failure::WitnessAhead { witness, total, end } => write!(
                f,
                "witness {witness} cosigned a checkpoint of this log (size {total}, ending {end}) that this chain does not contain: checkpoints were removed from its end, or it was rewritten"
            ),
            Failure::Stamp { id } => write!(
                f,
                "entry {id}: its timestamp is not its id's time (the service stamps both at once; one was moved)"
            ),
            Failure::ErasedWithoutRecord { id, field } => {
                write!(f, "entry {id}: field {field} is erased without an erasure record (the row was edited directly)")
            }
            Failure::ErasureRecordMissing { id, field, record } => write!(
                f,
                "entry {id}: field {field} is erased by record {record}, which is not in the bundle (fetch it with the bundle, or it was removed)"
            ),
            Failure::ErasureRecordMismatch { id, field, record } => write!(
                f,
                "entry {id}: field {field} is erased by record {record}, which is not an erasure record of this entry and field"
            ),
            Failure::ErasureRecordUnproven { id, field, record } => write!(
                f,
                "entry {id}: field {field} is erased by record {record}, which is not proven itself (no checkpoint covers it)"
            ),
            Failure::NotErasable { id, field } => {
                write!(f, "entry {id}: field {field} is erased, but no erasure may remove it from an entry of its kind")
            }
        }
    }
}

/// What the verifier found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The tenant whose trail this is (the expected one, else the bundle's).
    pub tenant: Option<String>,
    pub checkpoints: usize,
    pub checkpoints_valid: usize,
    pub entries: usize,
    pub entries_valid: usize,
    /// Entries with erased fields: each field, and the erasure record that names it.
    pub erased: BTreeMap<Uuid, Vec<(String, Uuid)>>,
    /// Entries after the last checkpoint that a working seal would not have covered yet.
    pub unsealed: usize,
    /// Checkpoints of periods wholly past retention whose entries are all gone: signature and
    /// chain checked.
    pub expired_periods: usize,
    /// Entries past retention missing from periods checked through their leaves.
    pub expired_entries: usize,
    /// Entries left in a period wholly past retention whose other entries are gone: each checked
    /// against its own leaf, but its period can no longer be recomputed (not counted valid).
    pub unproven: usize,
    /// Periods outside the range the bundle was fetched for (see [`Verifier::with_range`]), with
    /// no entries in the bundle: signature and chain checked, entries not.
    pub outside_range: usize,
    /// Checkpoints added after the head recorded earlier (`--head`).
    pub added_since_head: Option<usize>,
    /// Valid cosignatures of pinned witnesses on the head.
    pub witnessed: usize,
    /// The last checkpoint's end and link: keep it, and pass it as the expected head next time.
    pub head: Option<(String, Hash)>,
    pub failures: Vec<Failure>,
}

impl Summary {
    pub fn is_valid(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tenant {}: {}/{} checkpoints valid, {}/{} entries valid",
            self.tenant.as_deref().unwrap_or("(none)"),
            self.checkpoints_valid,
            self.checkpoints,
            self.entries_valid,
            self.entries
        )?;
        if !self.erased.is_empty() {
            write!(f, ", {} with erased fields", self.erased.len())?;
        }
        if self.unsealed > 0 {
            write!(f, ", {} not sealed yet", self.unsealed)?;
        }
        if self.expired_periods > 0 {
            let s = if self.expired_periods == 1 { "" } else { "s" };
            write!(f, ", {} period{s} past retention", self.expired_periods)?;
        }
        if self.expired_entries > 0 {
            write!(f, ", {} entries past retention", self.expired_entries)?;
        }
        if self.unproven > 0 {
            write!(f, ", {} entries left past retention (checked against their leaves only)", self.unproven)?;
        }
        if self.outside_range > 0 {
            let s = if self.outside_range == 1 { "" } else { "s" };
            write!(f, ", {} period{s} outside the range (entries not checked)", self.outside_range)?;
        }
        if let Some(added) = self.added_since_head {
            write!(f, ", {added} checkpoint(s) added since the head given")?;
        }
        if self.witnessed > 0 {
            write!(f, ", head cosigned by {} witness(es)", self.witnessed)?;
        }
        Ok(())
    }
}

/// What an entry without a proof means, judged without trusting the service's settings: it may be
/// pending until its period, grace and one seal run have passed — at most [`LATEST_SEAL`] after it
/// was stamped, whatever the service claims, and no later than the service's own `overdue_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsealed {
    /// A working seal would not have covered it yet.
    Pending { until: DateTime<Utc> },
    /// It should have been sealed by `due`: a checkpoint that covers it was removed (or never made).
    Overdue { due: DateTime<Utc> },
}

/// The longest a working seal can take to cover an entry: the longest period (an hour), then the
/// most grace and schedule a verifier believes.
pub const LATEST_SEAL: chrono::Duration = chrono::Duration::seconds(3600 + 2 * super::MAX_SEAL_DELAY_SECONDS as i64);

pub fn judge_unsealed(stamped: DateTime<Utc>, overdue_after: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Unsealed {
    let bound = stamped + LATEST_SEAL;
    let due = overdue_after.map_or(bound, |o| o.min(bound));
    if now > due { Unsealed::Overdue { due } } else { Unsealed::Pending { until: due } }
}

/// The chain's origin, from its checkpoints.
fn summary_origin(bundle: &Bundle) -> Option<&str> {
    bundle.checkpoints.first().map(|c| c.body.origin.as_str())
}

/// A key the auditor trusts, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TrustedKey {
    der: Vec<u8>,
    /// Checkpoints of periods ending after this were not signed by it.
    valid_until: Option<DateTime<Utc>>,
}

/// Checks bundles against the keys an auditor trusts (and, optionally, a head recorded earlier, the
/// expected tenant, a retention horizon, witnesses).
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: BTreeMap<String, TrustedKey>,
    head: Option<Hash>,
    tenant: Option<String>,
    expired_before: Option<DateTime<Utc>>,
    /// The bundle holds the entries of `[from, to]` only.
    range: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    witnesses: Vec<CosignerKey>,
    witnesses_required: usize,
    /// The deployment's log origin, if pinned: checkpoints must name `<origin>/<tenant>`.
    origin: Option<String>,
    /// The verifier's clock (fixed in tests).
    now: DateTime<Utc>,
}

/// A checkpoint with its period parsed, in chain order.
struct Link<'a> {
    checkpoint: &'a Checkpoint,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl Verifier {
    /// A verifier that accepts checkpoints signed by any of `keys` (a rotation leaves several).
    pub fn new<K: AsRef<[u8]>>(keys: impl IntoIterator<Item = K>) -> Self {
        let keys = keys
            .into_iter()
            .map(|k| (signing::key_id(k.as_ref()), TrustedKey { der: k.as_ref().to_vec(), valid_until: None }))
            .collect();
        Verifier {
            keys,
            head: None,
            tenant: None,
            expired_before: None,
            range: (None, None),
            witnesses: Vec::new(),
            witnesses_required: 0,
            origin: None,
            now: Utc::now(),
        }
    }

    /// Trusts `key` too, for checkpoints of periods ending no later than `until` (a retired key).
    pub fn with_retired_key(mut self, key: &[u8], until: DateTime<Utc>) -> Self {
        self.keys.insert(signing::key_id(key), TrustedKey { der: key.to_vec(), valid_until: Some(until) });
        self
    }

    /// Narrows a trusted key's window to end at `until` (the service's published window for it; a
    /// window can only narrow, so a wrong one cannot make anything verify that would not).
    pub fn narrow_key_window(mut self, key_id: &str, until: DateTime<Utc>) -> Self {
        if let Some(k) = self.keys.get_mut(key_id) {
            k.valid_until = Some(k.valid_until.map_or(until, |u| u.min(until)));
        }
        self
    }

    /// Requires the chain to contain the checkpoint with this link (a head recorded earlier).
    pub fn with_head(mut self, head: Hash) -> Self {
        self.head = Some(head);
        self
    }

    /// Requires the bundle to be this tenant's.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Accepts that entries stamped before `horizon` may be gone (retention removes entries, never
    /// checkpoints). Only those: a missing entry stamped at or after it is a failure, and a period
    /// that straddles it is checked through its published leaves.
    pub fn with_expired_before(mut self, horizon: DateTime<Utc>) -> Self {
        self.expired_before = Some(horizon);
        self
    }

    /// Says the bundle holds only the entries written from `from` up to `to`, both included (an
    /// export or a fetch with dates). Periods wholly outside are checked as links of the chain, not
    /// for their entries; a period the range cuts through must be whole, like any other (fetch and
    /// export widen their dates to whole periods).
    pub fn with_range(mut self, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Self {
        self.range = (from, to);
        self
    }

    /// Requires `required` of `witnesses` to have cosigned the head; other cosignatures are ignored.
    pub fn with_witnesses(mut self, witnesses: Vec<CosignerKey>, required: usize) -> Self {
        self.witnesses = witnesses;
        self.witnesses_required = required;
        self
    }

    /// Requires checkpoints to name the log `<origin>/<tenant>` (the deployment's origin).
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// The verifier's "now" (tests).
    pub fn at(mut self, now: DateTime<Utc>) -> Self {
        self.now = now;
        self
    }

    /// The time the bundle is judged at: the earlier of its fetch and now.
    pub fn cutoff(&self, bundle: &Bundle) -> DateTime<Utc> {
        bundle.manifest.as_ref().map_or(self.now, |m| m.fetched_at.min(self.now))
    }

    /// Refuses a configuration that cannot apply to `bundle` (the command line exits 2 on it).
    pub fn check_settings(&self, bundle: &Bundle) -> Result<(), String> {
        let cutoff = self.cutoff(bundle);
        if let Some(h) = self.expired_before
            && h > cutoff
        {
            return Err(format!(
                "--expired-before {} is after the bundle was fetched ({}): retention cannot have removed entries the service still held",
                format_timestamp(h),
                format_timestamp(cutoff)
            ));
        }
        // A bundle holds nothing younger than its fetch: a fetch time moved back to excuse unsealed
        // entries is refused.
        if let Some(m) = &bundle.manifest {
            let latest_entry = bundle.entries.iter().map(|e| e.timestamp).max();
            let latest_end = bundle
                .checkpoints
                .iter()
                .filter_map(|c| DateTime::parse_from_rfc3339(&c.body.end).ok())
                .map(|t| t.to_utc())
                .max();
            if let Some(latest) = latest_entry.into_iter().chain(latest_end).max()
                && latest > m.fetched_at + FETCH_SKEW
            {
                return Err(format!(
                    "the bundle says it was fetched at {}, but it holds data of {}: its manifest is not the fetch's",
                    format_timestamp(m.fetched_at),
                    format_timestamp(latest)
                ));
            }
        }
        let distinct: BTreeSet<&[u8; 32]> = self.witnesses.iter().map(|w| &w.public_key).collect();
        if distinct.len() != self.witnesses.len() {
            return Err("the same witness key is given twice: each witness counts once".into());
        }
        if self.witnesses_required > self.witnesses.len() {
            return Err(format!(
                "{} witness cosignatures required, but only {} witness key(s) given",
                self.witnesses_required,
                self.witnesses.len()
            ));
        }
        Ok(())
    }

    /// Checks one entry's proof with the trusted key that signed its checkpoint.
    pub fn verify_proof(&self, proof: &EntryProof) -> Result<Vec<String>, ProofError> {
        let body = &proof.checkpoint.body;
        let key = self.keys.get(&body.key_id).ok_or_else(|| ProofError::UnknownKey { found: body.key_id.clone() })?;
        if let Some(until) = key.valid_until
            && DateTime::parse_from_rfc3339(&body.end).map_or(true, |end| end.to_utc() > until)
        {
            return Err(ProofError::Retired { key_id: body.key_id.clone(), until: format_timestamp(until) });
        }
        if let Some(tenant) = &self.tenant
            && (&body.tenant != tenant || proof.entry.tenant_id.as_str() != tenant)
        {
            return Err(ProofError::Tenant {
                entry: proof.entry.tenant_id.to_string(),
                checkpoint: body.tenant.clone(),
            });
        }
        proof.verify(&key.der)
    }

    pub fn verify(&self, bundle: &Bundle) -> Summary {
        let mut summary =
            Summary { checkpoints: bundle.checkpoints.len(), entries: bundle.entries.len(), ..Summary::default() };
        let cutoff = self.cutoff(bundle);
        let settings = self.settings(bundle, &mut summary);
        if let Err(reason) = self.check_settings(bundle) {
            summary.failures.push(Failure::Settings { reason });
        }
        self.check_tenant(bundle, &mut summary);
        let (chain, bad_checkpoints) = self.check_chain(bundle, &mut summary);
        self.check_entries(bundle, &chain, &bad_checkpoints, &settings, cutoff, &mut summary);
        summary
    }

    /// The seal settings the bundle was made under; implausible ones are a failure, and replaced
    /// by the defaults.
    fn settings(&self, bundle: &Bundle, summary: &mut Summary) -> SealSettings {
        match &bundle.manifest {
            Some(m) if m.format != MANIFEST_FORMAT => {
                summary
                    .failures
                    .push(Failure::Settings { reason: format!("the bundle's manifest is not {MANIFEST_FORMAT}") });
                SealSettings::default()
            }
            Some(m) if !m.seal.plausible() => {
                summary.failures.push(Failure::Settings {
                    reason: format!(
                        "the bundle's seal settings (period {} min, grace {} s, schedule {} s) are implausible: a verifier accepts at most {} s of grace and of schedule",
                        m.seal.period_minutes,
                        m.seal.grace_seconds,
                        m.seal.schedule_seconds,
                        super::MAX_SEAL_DELAY_SECONDS
                    ),
                });
                SealSettings::default()
            }
            Some(m) => m.seal,
            None => SealSettings::default(),
        }
    }

    /// The tenant the bundle claims, against the one expected.
    fn check_tenant(&self, bundle: &Bundle, summary: &mut Summary) {
        let claimed = bundle
            .manifest
            .as_ref()
            .map(|m| m.tenant.clone())
            .or_else(|| bundle.checkpoints.first().map(|c| c.body.tenant.clone()))
            .or_else(|| bundle.entries.first().map(|e| e.tenant_id.to_string()));
        summary.tenant = self.tenant.clone().or(claimed.clone());
        if let (Some(expected), Some(claimed)) = (&self.tenant, &claimed)
            && expected != claimed
        {
            summary
                .failures
                .push(Failure::Tenant { what: format!("the bundle is tenant {claimed}'s, not tenant {expected}'s") });
        }
    }

    /// Signatures, key windows, then the chain in order of the periods' ends. Returns the
    /// well-formed links and the positions of the bad ones among them.
    fn check_chain<'a>(&self, bundle: &'a Bundle, summary: &mut Summary) -> (Vec<Link<'a>>, BTreeSet<usize>) {
        let mut bad = BTreeSet::new();
        let mut chain = Vec::with_capacity(bundle.checkpoints.len());
        for c in &bundle.checkpoints {
            let parse = |t: &str| DateTime::parse_from_rfc3339(t).map(|t| t.to_utc());
            let malformed = |reason: &str| Failure::Malformed { end: c.body.end.clone(), reason: reason.to_owned() };
            match (parse(&c.body.start), parse(&c.body.end)) {
                _ if c.body.format != CHECKPOINT_FORMAT => {
                    summary.failures.push(malformed(&format!("its format is not {CHECKPOINT_FORMAT}")))
                }
                _ if !c.body.origin_names_tenant() => {
                    summary.failures.push(malformed("its origin does not name its tenant as <origin>/<tenant>"))
                }
                _ if c.body.size == 0 => summary.failures.push(malformed("it seals no entries")),
                (Ok(start), Ok(end)) if start < end => chain.push(Link { checkpoint: c, start, end }),
                _ => summary.failures.push(malformed("its period is not a valid time range")),
            }
        }
        chain.sort_by_key(|l| l.end);
        let tenant = summary.tenant.clone();
        let origin = chain.first().map(|l| l.checkpoint.body.origin.clone());
        let mut named_previous: BTreeMap<Hash, usize> = BTreeMap::new();
        let mut links = Vec::with_capacity(chain.len());
        for (i, link) in chain.iter().enumerate() {
            let c = link.checkpoint;
            let end = c.body.end.clone();
            let mut fail = |failure: Failure| {
                summary.failures.push(failure);
                bad.insert(i);
            };
            match self.keys.get(&c.body.key_id) {
                None => fail(Failure::UnknownKey { end: end.clone(), key_id: c.body.key_id.clone() }),
                Some(key) => {
                    let signed =
                        c.signature_bytes().is_some_and(|s| signing::verify(&key.der, &c.body.signed_bytes(), &s));
                    if !signed {
                        fail(Failure::Signature { end: end.clone() });
                    }
                    if let Some(until) = key.valid_until
                        && link.end > until
                    {
                        fail(Failure::KeyRetired {
                            end: end.clone(),
                            key_id: c.body.key_id.clone(),
                            until: format_timestamp(until),
                        });
                    }
                }
            }
            if let Some(prefix) = &self.origin
                && c.body.origin != format!("{prefix}/{}", c.body.tenant)
            {
                fail(Failure::Malformed { end: end.clone(), reason: format!("its origin is not {prefix}/<tenant>") });
            }
            if Some(&c.body.tenant) != tenant.as_ref() {
                fail(Failure::Tenant {
                    what: format!("checkpoint ending {end} is of tenant {}: the bundle mixes tenants", c.body.tenant),
                });
            } else if Some(&c.body.origin) != origin.as_ref() {
                fail(Failure::Malformed { end: end.clone(), reason: "its origin differs from the chain's".into() });
            }
            let link_hash = c.link();
            links.push(link_hash);
            if named_previous.insert(c.body.previous, i).is_some() {
                fail(Failure::Fork { end: end.clone() });
                continue;
            }
            match i.checked_sub(1).map(|p| (&chain[p], links[p])) {
                None if c.body.previous != GENESIS => fail(Failure::NotGenesis { end }),
                None if c.body.total != c.body.size => fail(Failure::Total { end }),
                None => {}
                Some((prev, _)) if prev.end == link.end => fail(Failure::Fork { end }),
                Some((prev, _)) if prev.end != link.start => {
                    fail(Failure::Gap { after: prev.checkpoint.body.end.clone(), next_start: c.body.start.clone() })
                }
                Some((_, prev_link)) if prev_link != c.body.previous => fail(Failure::BrokenLink { end }),
                Some((prev, _)) if prev.checkpoint.body.total.checked_add(c.body.size) != Some(c.body.total) => {
                    fail(Failure::Total { end })
                }
                Some(_) => {}
            }
        }
        summary.head = chain.last().map(|l| (l.checkpoint.body.end.clone(), *links.last().expect("as many links")));
        if let Some(expected) = self.head {
            match links.iter().position(|l| *l == expected) {
                Some(at) => summary.added_since_head = Some(links.len() - 1 - at),
                None => summary.failures.push(Failure::Head { expected }),
            }
        }
        if let Some(last) = chain.last() {
            summary.witnessed = self.witnessed(last.checkpoint, &bundle.witnessed);
        }
        self.check_witness_views(bundle, &links, &mut summary.failures);
        if self.witnesses_required > 0 && summary.witnessed < self.witnesses_required {
            summary.failures.push(Failure::Witnesses {
                end: chain.last().map_or_else(|| "(none)".to_owned(), |l| l.checkpoint.body.end.clone()),
                found: summary.witnessed,
                required: self.witnesses_required,
            });
        }
        // Malformed checkpoints have no place in the chain, and are not valid either.
        summary.checkpoints_valid = chain.len() - bad.len();
        (chain, bad)
    }

    /// Pinned witnesses with a valid cosignature on `head` (each counted once): stored with it, or
    /// in what a witness answered `fetch` for it.
    fn witnessed(&self, head: &Checkpoint, views: &[WitnessView]) -> usize {
        if self.witnesses.is_empty() {
            return 0;
        }
        let text = head.body.note_text();
        let mut lines: Vec<SignatureLine> =
            head.cosignatures.iter().filter_map(|l| SignatureLine::parse(l).ok()).collect();
        for view in views {
            if let Ok(note) = Note::parse(&view.note)
                && note.text == text
            {
                lines.extend(note.signatures);
            }
        }
        // Each pinned key once, however often it is given.
        let keys: BTreeSet<&[u8; 32]> = self
            .witnesses
            .iter()
            .filter(|w| lines.iter().any(|l| w.verify(&text, l).is_some()))
            .map(|w| &w.public_key)
            .collect();
        keys.len()
    }

    /// What pinned witnesses said they last cosigned must be in the chain: a longer chain seen by a
    /// witness means this one was cut (or rewritten).
    fn check_witness_views(&self, bundle: &Bundle, links: &[Hash], failures: &mut Vec<Failure>) {
        for view in &bundle.witnessed {
            let Ok(note) = Note::parse(&view.note) else { continue };
            let vouched =
                self.witnesses.iter().any(|w| note.signatures.iter().any(|l| w.verify(&note.text, l).is_some()));
            let Ok(body) = crate::integrity::checkpoint::CheckpointBody::from_note_text(&note.text) else { continue };
            // Unpinned witnesses prove nothing; another log's view is not this one's.
            if !vouched || summary_origin(bundle).is_some_and(|o| o != body.origin) {
                continue;
            }
            if !links.contains(&body.link()) {
                failures.push(Failure::WitnessAhead {
                    witness: view.witness.clone(),
                    total: body.total,
                    end: body.end.clone(),
                });
            }
        }
    }

    /// Each entry against its leaf, then each period against its checkpoint.
    fn check_entries(
        &self,
        bundle: &Bundle,
        chain: &[Link],
        bad_checkpoints: &BTreeSet<usize>,
        settings: &SealSettings,
        cutoff: DateTime<Utc>,
        summary: &mut Summary,
    ) {
        let tenant = summary.tenant.clone();
        let mut seen = BTreeSet::new();
        let mut good_leaves: BTreeSet<Uuid> = BTreeSet::new();
        let mut by_period: BTreeMap<usize, Vec<&AuditLogEntry>> = BTreeMap::new();
        let mut in_good_periods: BTreeSet<Uuid> = BTreeSet::new();
        let mut with_erasures: Vec<(&AuditLogEntry, Vec<String>)> = Vec::new();
        for e in &bundle.entries {
            if !seen.insert(e.id) {
                summary.failures.push(Failure::Duplicate { id: e.id });
                continue;
            }
            // Placed (and judged overdue) by its id's time, which the seal sorts by: a timestamp
            // moved away from it would put the entry in another period.
            if uuid_v7_time(&e.id) != Some(e.timestamp) {
                summary.failures.push(Failure::Stamp { id: e.id });
                continue;
            }
            match e.verify_leaf() {
                Ok(erased) => {
                    if !erased.is_empty() {
                        with_erasures.push((e, erased));
                    }
                    good_leaves.insert(e.id);
                }
                Err(reason) => summary.failures.push(Failure::Leaf { id: e.id, reason: reason.to_string() }),
            }
            if let Some(t) = &tenant
                && e.tenant_id.as_str() != t
            {
                summary.failures.push(Failure::Tenant {
                    what: format!("entry {} is of tenant {}: the bundle mixes tenants", e.id, e.tenant_id),
                });
                continue;
            }
            // The period holding the entry: the first whose end is after it.
            let i = chain.partition_point(|l| l.end <= e.timestamp);
            match chain.get(i) {
                Some(l) if l.start <= e.timestamp => by_period.entry(i).or_default().push(e),
                Some(_) => {
                    summary.failures.push(Failure::Uncovered { id: e.id, timestamp: format_timestamp(e.timestamp) })
                }
                None => {
                    let due = settings.overdue_after(e.timestamp);
                    if due < cutoff {
                        summary.failures.push(Failure::Overdue {
                            id: e.id,
                            timestamp: format_timestamp(e.timestamp),
                            due: format_timestamp(due),
                        });
                    } else {
                        summary.unsealed += 1;
                        in_good_periods.insert(e.id);
                    }
                }
            }
        }
        let leaves_of: HashMap<&str, &PeriodLeaves> = bundle.periods.iter().map(|p| (p.end.as_str(), p)).collect();
        for (i, link) in chain.iter().enumerate() {
            let entries = by_period.remove(&i).unwrap_or_default();
            let (from, to) = self.range;
            let outside = from.is_some_and(|f| link.end <= f) || to.is_some_and(|t| link.start > t);
            if entries.is_empty() && outside {
                summary.outside_range += 1;
                continue;
            }
            // Outside the range, a period is there for a few entries (erasure records of entries
            // inside it): with its leaves, those are proven without the rest.
            let checked = match leaves_of.get(link.checkpoint.body.end.as_str()) {
                Some(leaves) => self.check_period_by_leaves(link, leaves, &entries, outside, summary),
                None => self.check_period(link, entries.clone(), summary),
            };
            if checked && !bad_checkpoints.contains(&i) {
                in_good_periods.extend(entries.iter().map(|e| e.id));
            }
        }
        // After the periods: a record counts only once it is proven itself (or not due yet).
        check_erasures(bundle, &with_erasures, &mut good_leaves, &in_good_periods, summary);
        summary.entries_valid =
            bundle.entries.iter().filter(|e| good_leaves.contains(&e.id) && in_good_periods.contains(&e.id)).count();
    }

    fn expired(&self, t: DateTime<Utc>) -> bool {
        self.expired_before.is_some_and(|h| t < h)
    }

    /// A period checked from its entries alone. Whether its entries are proven.
    fn check_period(&self, link: &Link, mut entries: Vec<&AuditLogEntry>, summary: &mut Summary) -> bool {
        let c = link.checkpoint;
        let (start, end) = (c.body.start.clone(), c.body.end.clone());
        // Wholly past retention: every entry it held may be gone (and its leaves with them). Those
        // left are checked against their own leaves only.
        if (entries.len() as u64) < c.body.size && self.expired(link.end - chrono::Duration::milliseconds(1)) {
            if entries.is_empty() {
                summary.expired_periods += 1;
            } else {
                let gone = usize::try_from(c.body.size - entries.len() as u64).unwrap_or(usize::MAX);
                summary.expired_entries = summary.expired_entries.saturating_add(gone);
                summary.unproven += entries.len();
            }
            return false;
        }
        if entries.is_empty() {
            summary.failures.push(Failure::Missing { start, end, size: c.body.size });
            return false;
        }
        if entries.len() as u64 != c.body.size {
            summary.failures.push(Failure::Count { start, end, found: entries.len() as u64, size: c.body.size });
            return false;
        }
        entries.sort_by_key(|e| e.id);
        let leaves: Vec<Hash> = entries.iter().map(|e| e.integrity.leaf_hash).collect();
        if merkle::root(&leaves) != c.body.root || ids_hash(entries.iter().map(|e| e.id.as_bytes())) != c.body.ids {
            summary.failures.push(Failure::Root { start, end });
            return false;
        }
        true
    }

    /// A period checked through its published leaves: they must hash to the checkpoint, every
    /// entry present must sit at its place with its leaf, and every place without its entry must
    /// be past retention — unless the period is outside the range (`partial`), there only for the
    /// entries present.
    fn check_period_by_leaves(
        &self,
        link: &Link,
        published: &PeriodLeaves,
        entries: &[&AuditLogEntry],
        partial: bool,
        summary: &mut Summary,
    ) -> bool {
        let c = link.checkpoint;
        let end = c.body.end.clone();
        let sound = published.ids.len() == published.leaves.len()
            && published.ids.len() as u64 == c.body.size
            && published.ids.windows(2).all(|w| w[0] < w[1])
            && ids_hash(published.ids.iter().map(Uuid::as_bytes)) == c.body.ids
            && merkle::root(&published.leaves) == c.body.root;
        if !sound {
            summary.failures.push(Failure::PeriodLeaves { end });
            return false;
        }
        let mut ok = true;
        let present: HashMap<Uuid, &AuditLogEntry> = entries.iter().map(|e| (e.id, *e)).collect();
        for (id, leaf) in published.ids.iter().zip(&published.leaves) {
            match present.get(id) {
                Some(e) if e.integrity.leaf_hash == *leaf => {}
                Some(e) => {
                    summary.failures.push(Failure::NotInPeriod { id: e.id, end: end.clone() });
                    ok = false;
                }
                None if uuid_v7_time(id).is_some_and(|t| self.expired(t)) => {
                    summary.expired_entries = summary.expired_entries.saturating_add(1)
                }
                None if partial => {}
                None => {
                    summary.failures.push(Failure::MissingEntry { id: *id, end: end.clone() });
                    ok = false;
                }
            }
        }
        let listed: BTreeSet<&Uuid> = published.ids.iter().collect();
        for e in entries.iter().filter(|e| !listed.contains(&e.id)) {
            summary.failures.push(Failure::NotInPeriod { id: e.id, end: end.clone() });
            ok = false;
        }
        ok
    }
}

/// Every erased field must be one its entry's kind may lose, and name its erasure record, which
/// must be in the bundle, proven itself (its leaf, and its period — or not due for sealing yet),
/// and name that entry and that field. An entry failing this is not valid.
fn check_erasures(
    bundle: &Bundle,
    with_erasures: &[(&AuditLogEntry, Vec<String>)],
    good_leaves: &mut BTreeSet<Uuid>,
    in_good_periods: &BTreeSet<Uuid>,
    summary: &mut Summary,
) {
    let by_id: HashMap<Uuid, &AuditLogEntry> = bundle.entries.iter().map(|e| (e.id, e)).collect();
    for (e, fields) in with_erasures {
        let mut named = Vec::with_capacity(fields.len());
        for field in fields {
            let (id, field) = (e.id, field.clone());
            let proven = |r: &AuditLogEntry| good_leaves.contains(&r.id) && in_good_periods.contains(&r.id);
            let failure = match e.integrity.erased_by.get(&field) {
                _ if !crate::erasure::erasable_in(e).contains(&field.as_str()) => {
                    Some(Failure::NotErasable { id, field: field.clone() })
                }
                None => Some(Failure::ErasedWithoutRecord { id, field: field.clone() }),
                Some(record) => match by_id.get(record) {
                    None => Some(Failure::ErasureRecordMissing { id, field: field.clone(), record: *record }),
                    Some(r) if !crate::erasure::record_names(r, e, &[field.as_str()]) => {
                        Some(Failure::ErasureRecordMismatch { id, field: field.clone(), record: *record })
                    }
                    Some(r) if !proven(r) => {
                        Some(Failure::ErasureRecordUnproven { id, field: field.clone(), record: *record })
                    }
                    Some(_) => {
                        named.push((field.clone(), *record));
                        None
                    }
                },
            };
            if let Some(failure) = failure {
                summary.failures.push(failure);
                good_leaves.remove(&e.id);
            }
        }
        if !named.is_empty() {
            summary.erased.insert(e.id, named);
        }
    }
}
