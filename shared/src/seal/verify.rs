//! Offline verification of a bundle — a tenant's entries and checkpoints — with the signer's
//! public key only: every checkpoint's signature, the chain (from genesis, no gap, no fork), every
//! entry against its leaf, and every period's root recomputed from its entries.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use uuid::Uuid;

use crate::domain::AuditLogEntry;
use crate::domain::time::format_timestamp;
use crate::integrity::checkpoint::{Checkpoint, GENESIS};
use crate::integrity::merkle;
use crate::integrity::signing;

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
    OtherKey { end: String, key_id: String },
    NotGenesis { end: String },
    Gap { after: String, next_start: String },
    BrokenLink { end: String },
    Fork { end: String },
    Leaf { id: Uuid, reason: String },
    Count { start: String, end: String, found: u64, size: u64 },
    Root { start: String, end: String },
    Duplicate { id: Uuid },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Signature { end } => write!(f, "checkpoint ending {end}: the signature does not verify"),
            Failure::OtherKey { end, key_id } => {
                write!(f, "checkpoint ending {end}: signed by key {key_id}, not by the key given")
            }
            Failure::NotGenesis { end } => {
                write!(
                    f,
                    "checkpoint ending {end}: the chain does not start at genesis (an earlier checkpoint is missing)"
                )
            }
            Failure::Gap { after, next_start } => write!(
                f,
                "the chain breaks after the checkpoint ending {after}: the next starts at {next_start} (a checkpoint is missing)"
            ),
            Failure::BrokenLink { end } => write!(
                f,
                "checkpoint ending {end}: it does not name the hash of the one before (one was removed, replaced or re-signed)"
            ),
            Failure::Fork { end } => write!(f, "two checkpoints end at {end}: the chain is forked"),
            Failure::Leaf { id, reason } => write!(f, "entry {id}: {reason}"),
            Failure::Count { start, end, found, size } => write!(
                f,
                "period {start} – {end}: the bundle holds {found} entries, the checkpoint {size} (entries were removed or added)"
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
    /// Checkpoints whose entries are all absent from the bundle (expired): signature and chain
    /// checked, root not.
    pub without_entries: usize,
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
        if self.without_entries > 0 {
            write!(f, ", {} periods without entries in the bundle (expired?)", self.without_entries)?;
        }
        Ok(())
    }
}

/// Verifies `bundle` with the public key (DER) the checkpoints must be signed with.
pub fn verify_bundle(bundle: &Bundle, public_key_der: &[u8]) -> Summary {
    let key_id = signing::key_id(public_key_der);
    let mut summary =
        Summary { checkpoints: bundle.checkpoints.len(), entries: bundle.entries.len(), ..Summary::default() };

    // Checkpoints: signatures, then the chain in order of their ends.
    let mut chain: Vec<&Checkpoint> = bundle.checkpoints.iter().collect();
    chain.sort_by(|a, b| a.body.end.cmp(&b.body.end));
    let mut bad_checkpoints = BTreeSet::new();
    for (i, c) in chain.iter().enumerate() {
        let end = c.body.end.clone();
        let signed = c.signature_bytes().is_some_and(|s| signing::verify(public_key_der, &c.body.signed_bytes(), &s));
        if c.body.key_id != key_id {
            summary.failures.push(Failure::OtherKey { end: end.clone(), key_id: c.body.key_id.clone() });
            bad_checkpoints.insert(i);
        } else if !signed {
            summary.failures.push(Failure::Signature { end: end.clone() });
            bad_checkpoints.insert(i);
        }
        match i.checked_sub(1).map(|p| chain[p]) {
            None if c.body.previous != GENESIS => {
                summary.failures.push(Failure::NotGenesis { end });
                bad_checkpoints.insert(i);
            }
            None => {}
            Some(prev) if prev.body.end == c.body.end => {
                summary.failures.push(Failure::Fork { end });
                bad_checkpoints.insert(i);
            }
            Some(prev) if prev.body.end != c.body.start => {
                summary.failures.push(Failure::Gap { after: prev.body.end.clone(), next_start: c.body.start.clone() });
                bad_checkpoints.insert(i);
            }
            Some(prev) if prev.hash() != c.body.previous => {
                summary.failures.push(Failure::BrokenLink { end });
                bad_checkpoints.insert(i);
            }
            Some(_) => {}
        }
    }
    summary.checkpoints_valid = chain.len() - bad_checkpoints.len();

    // Entries: each against its leaf, then each period's tree against its checkpoint.
    let mut seen = BTreeSet::new();
    let mut good_leaves: BTreeSet<Uuid> = BTreeSet::new();
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
    }
    let mut by_period: BTreeMap<usize, Vec<&AuditLogEntry>> = BTreeMap::new();
    let mut in_good_periods: BTreeSet<Uuid> = BTreeSet::new();
    for e in &bundle.entries {
        let stamped = format_timestamp(e.timestamp);
        match chain.iter().position(|c| c.body.start <= stamped && stamped < c.body.end) {
            Some(i) => by_period.entry(i).or_default().push(e),
            None if chain.last().is_none_or(|c| stamped >= c.body.end) => {
                summary.unsealed += 1;
                in_good_periods.insert(e.id);
            }
            // Before the chain began: sealed by nothing, so proven by nothing.
            None => summary.unsealed += 1,
        }
    }
    for (i, c) in chain.iter().enumerate() {
        let Some(mut entries) = by_period.remove(&i) else {
            if c.body.size > 0 {
                summary.without_entries += 1;
            }
            continue;
        };
        entries.sort_by_key(|e| e.id);
        entries.dedup_by_key(|e| e.id);
        let (start, end) = (c.body.start.clone(), c.body.end.clone());
        if entries.len() as u64 != c.body.size {
            summary.failures.push(Failure::Count { start, end, found: entries.len() as u64, size: c.body.size });
            continue;
        }
        let leaves: Vec<_> = entries.iter().map(|e| e.integrity.leaf_hash).collect();
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
    summary
}
