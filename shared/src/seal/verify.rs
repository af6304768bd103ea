//! Offline verification of a bundle — a tenant's entries and checkpoints — with the signer's
//! public key only: every checkpoint's signature, the chain (from genesis, no gap, no fork), every
//! entry against its leaf, and every period's root recomputed from its entries.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::AuditLogEntry;
use crate::domain::time::format_timestamp;
use crate::integrity::checkpoint::{Checkpoint, GENESIS};
use crate::integrity::signing;
use crate::integrity::{Hash, merkle};
use crate::seal::{EntryProof, ProofError};

/// What a bundle holds.
#[derive(Debug, Clone, Default)]
pub struct Bundle {
    pub entries: Vec<AuditLogEntry>,
    pub checkpoints: Vec<Checkpoint>,
}

/// One thing found wrong, named so that a person can find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Signature { end: String },
    UnknownKey { end: String, key_id: String },
    Malformed { end: String, reason: String },
    NotGenesis { end: String },
    Gap { after: String, next_start: String },
    BrokenLink { end: String },
    Fork { end: String },
    Tenant { what: String },
    Head { expected: Hash, found: Option<Hash> },
    Leaf { id: Uuid, reason: String },
    Uncovered { id: Uuid, timestamp: String },
    Count { start: String, end: String, found: u64, size: u64 },
    Missing { start: String, end: String, size: u64 },
    Root { start: String, end: String },
    Duplicate { id: Uuid },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Signature { end } => write!(f, "checkpoint ending {end}: the signature does not verify"),
            Failure::UnknownKey { end, key_id } => {
                write!(f, "checkpoint ending {end}: signed by key {key_id}, which is not among the keys given")
            }
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
                "checkpoint ending {end}: it does not name the hash of the one before (one was removed, replaced or re-signed)"
            ),
            Failure::Fork { end } => {
                write!(f, "checkpoint ending {end}: another checkpoint claims the same place in the chain (a fork)")
            }
            Failure::Tenant { what } => write!(f, "{what}: the bundle mixes tenants"),
            Failure::Head { expected, found: Some(found) } => write!(
                f,
                "the chain ends at checkpoint {found}, not at the expected head {expected} (checkpoints were removed from the end, or the head is another chain's)"
            ),
            Failure::Head { expected, found: None } => {
                write!(f, "the bundle has no checkpoints, so it cannot reach the expected head {expected}")
            }
            Failure::Leaf { id, reason } => write!(f, "entry {id}: {reason}"),
            Failure::Uncovered { id, timestamp } => write!(
                f,
                "entry {id} ({timestamp}) is older than the chain's first checkpoint: no checkpoint covers it (inserted, or back-dated)"
            ),
            Failure::Count { start, end, found, size } => write!(
                f,
                "period {start} – {end}: the bundle holds {found} entries, the checkpoint {size} (entries were removed or added)"
            ),
            Failure::Missing { start, end, size } => write!(
                f,
                "period {start} – {end}: its {size} entries are all missing, and it is not past retention (entries were removed)"
            ),
            Failure::Root { start, end } => write!(
                f,
                "period {start} – {end}: its entries do not hash to the checkpoint's root (an entry was changed, replaced or moved)"
            ),
            Failure::Duplicate { id } => write!(f, "entry {id} appears twice"),
        }
    }
}

/// What the verifier found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub checkpoints: usize,
    pub checkpoints_valid: usize,
    pub entries: usize,
    pub entries_valid: usize,
    /// Entries with erased fields, and which (valid, and reported as such).
    pub erased: BTreeMap<Uuid, Vec<String>>,
    /// Entries after the last checkpoint: not sealed yet, so not checked against a root.
    pub unsealed: usize,
    /// Checkpoints of periods past retention whose entries are all gone: signature and chain
    /// checked, root not.
    pub expired_periods: usize,
    /// Entries of the period that straddles the retention horizon, some of whose entries are gone:
    /// each checked against its leaf, but their period's root cannot be recomputed.
    pub partly_expired: usize,
    /// Periods outside the range the bundle was fetched for (see [`Verifier::with_range`]), with
    /// no entries in the bundle: signature and chain checked, entries not.
    pub outside_range: usize,
    /// The last checkpoint's end and hash: keep it, and pass it as the expected head next time to
    /// show that no checkpoint was removed from the end since.
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
            "{}/{} checkpoints valid, {}/{} entries valid",
            self.checkpoints_valid, self.checkpoints, self.entries_valid, self.entries
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
        if self.partly_expired > 0 {
            write!(f, ", {} entries in a period partly past retention (root not checked)", self.partly_expired)?;
        }
        if self.outside_range > 0 {
            let s = if self.outside_range == 1 { "" } else { "s" };
            write!(f, ", {} period{s} outside the range (entries not checked)", self.outside_range)?;
        }
        Ok(())
    }
}

/// Checks bundles against the keys an auditor trusts (and, optionally, a head recorded earlier).
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    /// Public keys (DER SubjectPublicKeyInfo) by key id.
    keys: BTreeMap<String, Vec<u8>>,
    head: Option<Hash>,
    expired_before: Option<DateTime<Utc>>,
    /// The bundle holds the entries of `[from, to]` only.
    range: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
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
        let keys = keys.into_iter().map(|k| (signing::key_id(k.as_ref()), k.as_ref().to_vec())).collect();
        Verifier { keys, ..Verifier::default() }
    }

    /// Requires the chain to end at the checkpoint with this hash.
    pub fn with_head(mut self, head: Hash) -> Self {
        self.head = Some(head);
        self
    }

    /// Accepts that entries written before `horizon` may be gone (retention: the store's TTL
    /// removes entries, never checkpoints). Periods that began before it may have lost some or
    /// all of their entries; those that remain are checked against their leaves, not their root. Without a horizon, every
    /// missing entry is a failure.
    pub fn with_expired_before(mut self, horizon: DateTime<Utc>) -> Self {
        self.expired_before = Some(horizon);
        self
    }

    /// Says the bundle holds only the entries written from `from` up to `to`, both included (an export or a
    /// fetch with dates). Periods wholly outside are checked as links of the chain, not for their
    /// entries; a period the range cuts through must be whole, like any other (fetch and export
    /// widen their dates to whole periods).
    pub fn with_range(mut self, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Self {
        self.range = (from, to);
        self
    }

    /// Checks one entry's proof with the trusted key that signed its checkpoint.
    pub fn verify_proof(&self, proof: &EntryProof) -> Result<Vec<String>, ProofError> {
        let key_id = &proof.checkpoint.body.key_id;
        match self.keys.get(key_id) {
            Some(key) => proof.verify(key),
            None => Err(ProofError::UnknownKey { found: key_id.clone() }),
        }
    }

    pub fn verify(&self, bundle: &Bundle) -> Summary {
        let mut summary =
            Summary { checkpoints: bundle.checkpoints.len(), entries: bundle.entries.len(), ..Summary::default() };
        let (chain, bad_checkpoints) = self.check_chain(bundle, &mut summary);
        self.check_entries(bundle, &chain, &bad_checkpoints, &mut summary);
        summary
    }

    /// Signatures, then the chain in order of the periods' ends. Returns the well-formed links and
    /// the positions of the bad ones among them.
    fn check_chain<'a>(&self, bundle: &'a Bundle, summary: &mut Summary) -> (Vec<Link<'a>>, BTreeSet<usize>) {
        let mut bad = BTreeSet::new();
        let mut chain = Vec::with_capacity(bundle.checkpoints.len());
        for c in &bundle.checkpoints {
            let parse = |t: &str| DateTime::parse_from_rfc3339(t).map(|t| t.to_utc());
            match (parse(&c.body.start), parse(&c.body.end)) {
                (Ok(start), Ok(end)) if start < end => chain.push(Link { checkpoint: c, start, end }),
                _ => summary.failures.push(Failure::Malformed {
                    end: c.body.end.clone(),
                    reason: "its period is not a valid time range".into(),
                }),
            }
        }
        chain.sort_by_key(|l| l.end);
        let tenant = chain.first().map(|l| l.checkpoint.body.tenant.clone());
        let mut named_previous: BTreeMap<Hash, usize> = BTreeMap::new();
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
                    let signed = c.signature_bytes().is_some_and(|s| signing::verify(key, &c.body.signed_bytes(), &s));
                    if !signed {
                        fail(Failure::Signature { end: end.clone() });
                    }
                }
            }
            if Some(&c.body.tenant) != tenant.as_ref() {
                fail(Failure::Tenant { what: format!("checkpoint ending {end} is of tenant {}", c.body.tenant) });
            }
            if named_previous.insert(c.body.previous, i).is_some() {
                fail(Failure::Fork { end: end.clone() });
                continue;
            }
            match i.checked_sub(1).map(|p| &chain[p]) {
                None if c.body.previous != GENESIS => fail(Failure::NotGenesis { end }),
                None => {}
                Some(prev) if prev.end == link.end => fail(Failure::Fork { end }),
                Some(prev) if prev.end != link.start => {
                    fail(Failure::Gap { after: prev.checkpoint.body.end.clone(), next_start: c.body.start.clone() })
                }
                Some(prev) if prev.checkpoint.hash() != c.body.previous => fail(Failure::BrokenLink { end }),
                Some(_) => {}
            }
        }
        summary.head = chain.last().map(|l| (l.checkpoint.body.end.clone(), l.checkpoint.hash()));
        if let Some(expected) = self.head
            && summary.head.as_ref().map(|(_, h)| *h) != Some(expected)
        {
            summary.failures.push(Failure::Head { expected, found: summary.head.as_ref().map(|(_, h)| *h) });
        }
        // Malformed checkpoints have no place in the chain, and are not valid either.
        summary.checkpoints_valid = chain.len() - bad.len();
        (chain, bad)
    }

    /// Each entry against its leaf, then each period's tree against its checkpoint.
    fn check_entries(&self, bundle: &Bundle, chain: &[Link], bad_checkpoints: &BTreeSet<usize>, summary: &mut Summary) {
        let tenant = chain.first().map(|l| l.checkpoint.body.tenant.as_str());
        let mut seen = BTreeSet::new();
        let mut good_leaves: BTreeSet<Uuid> = BTreeSet::new();
        let mut by_period: BTreeMap<usize, Vec<&AuditLogEntry>> = BTreeMap::new();
        let mut in_good_periods: BTreeSet<Uuid> = BTreeSet::new();
        for e in &bundle.entries {
            if !seen.insert(e.id) {
                summary.failures.push(Failure::Duplicate { id: e.id });
                continue;
            }
            match e.verify_leaf() {
                Ok(erased) => {
                    if !erased.is_empty() {
                        summary.erased.insert(e.id, erased);
                    }
                    good_leaves.insert(e.id);
                }
                Err(reason) => summary.failures.push(Failure::Leaf { id: e.id, reason: reason.to_string() }),
            }
            if let Some(t) = tenant
                && e.tenant_id.as_str() != t
            {
                summary.failures.push(Failure::Tenant { what: format!("entry {} is of tenant {}", e.id, e.tenant_id) });
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
                    summary.unsealed += 1;
                    in_good_periods.insert(e.id);
                }
            }
        }
        for (i, link) in chain.iter().enumerate() {
            let c = link.checkpoint;
            let (start, end) = (c.body.start.clone(), c.body.end.clone());
            let Some(mut entries) = by_period.remove(&i) else {
                // A period that began before the horizon may have lost all its entries.
                let expired = self.expired_before.is_some_and(|h| link.start < h);
                let (from, to) = self.range;
                let outside = from.is_some_and(|f| link.end <= f) || to.is_some_and(|t| link.start > t);
                match c.body.size {
                    0 => {}
                    _ if outside => summary.outside_range += 1,
                    _ if expired => summary.expired_periods += 1,
                    size => summary.failures.push(Failure::Missing { start, end, size }),
                }
                continue;
            };
            entries.sort_by_key(|e| e.id);
            let straddles = self.expired_before.is_some_and(|h| link.start < h);
            if straddles && (entries.len() as u64) < c.body.size {
                summary.partly_expired += entries.len();
                continue;
            }
            if entries.len() as u64 != c.body.size {
                summary.failures.push(Failure::Count { start, end, found: entries.len() as u64, size: c.body.size });
                continue;
            }
            let leaves: Vec<Hash> = entries.iter().map(|e| e.integrity.leaf_hash).collect();
            if merkle::root(&leaves) != c.body.root {
                summary.failures.push(Failure::Root { start, end });
                continue;
            }
            if !bad_checkpoints.contains(&i) {
                in_good_periods.extend(entries.iter().map(|e| e.id));
            }
        }
        summary.entries_valid =
            bundle.entries.iter().filter(|e| good_leaves.contains(&e.id) && in_good_periods.contains(&e.id)).count();
    }
}
