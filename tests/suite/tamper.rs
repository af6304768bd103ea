//! The tamper matrix: a bundle of 10,080 entries over 26 sealed periods, changed one way at a time.
//! Every change is caught by the offline verifier with a message that names what was changed; the
//! untouched bundle (and harmless changes: line order) raise no alarm; an erased field verifies and
//! is reported as erased.

use std::sync::{Arc, OnceLock};

use auditline::domain::entry::COMMITTED_FIELDS;
use auditline::domain::time::{format_timestamp, uuid_v7_at};
use auditline::domain::{AuditAction, AuditLogEntry, EntityType, TenantId};
use auditline::integrity::checkpoint::{Checkpoint, encode_signature};
use auditline::integrity::leaf::Integrity;
use auditline::integrity::signing::{LocalSigner, Signer};
use auditline::seal::verify::{Bundle, PeriodLeaves, Summary, Verifier};
use auditline::seal::{SealSettings, Sealer};
use auditline::store::MemoryStore;
use auditline::{AuditLogger, AuditSettings, LogOutcome};
use auditline_tests::{all_entries, new_entry, stepping_clock, tenant};
use chrono::{Duration, DurationRound, Utc};
use serde_json::json;

pub const ENTRIES: usize = 10_080;
/// 10,080 entries 9 s apart: 25.2 hours, so 26 hourly periods.
const STEP_MS: i64 = 9_000;

pub struct Fixture {
    pub bundle: Bundle,
    pub signer: LocalSigner,
    /// A key the auditor does not trust.
    pub stranger: LocalSigner,
}

/// Built once for the whole suite: writing and sealing 10,080 entries is the slow part.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(build())
    })
}

async fn build() -> Fixture {
    let store = Arc::new(MemoryStore::new());
    let acme = tenant("acme");
    let start = (Utc::now() - Duration::hours(28)).duration_trunc(Duration::hours(1)).unwrap();
    let (clock, _) = stepping_clock(start + Duration::seconds(7), STEP_MS);
    let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock);
    for i in 0..ENTRIES {
        let mut request = new_entry(
            &acme,
            AuditAction::ALL[i % 6],
            EntityType::ALL[i % 7],
            &format!("entity-{i}"),
            (i % 3 != 0).then_some(&*format!("project-{}", i % 5)),
            Some(&format!("user-{}", i % 11)),
        );
        request.details.changes = Some(json!({"field": "amount", "old": i, "new": i + 1, "note": "é✓"}));
        request.details.metadata = (i % 2 == 0).then(|| json!({"user_agent": "Mozilla/5.0", "request": i}));
        let Ok(LogOutcome::Stored(_)) = logger.log(request).await else { panic!("entry {i} stored") };
    }
    let signer = LocalSigner::generate().unwrap();
    let sealer = Sealer::new(
        store.clone(),
        Arc::new(LocalSigner::from_pem(&signer.private_key_pem()).unwrap()),
        SealSettings { lookback_hours: 48, ..SealSettings::default() },
    );
    sealer.run(Utc::now()).await.expect("sealed");
    let checkpoints = auditline::seal::SealStore::checkpoints(store.as_ref(), &acme, None, None, 1000).await.unwrap();
    // Oldest first, so that an index says roughly when an entry was written.
    let mut entries = all_entries(store, &acme).await;
    entries.sort_by_key(|e| e.id);
    assert_eq!(entries.len(), ENTRIES);
    assert!(checkpoints.len() >= 24, "at least 24 periods: {}", checkpoints.len());
    assert_eq!(checkpoints.iter().map(|c| c.body.size).sum::<u64>(), ENTRIES as u64, "every entry is sealed");
    Fixture {
        bundle: Bundle { entries, checkpoints, ..Bundle::default() },
        signer,
        stranger: LocalSigner::generate().unwrap(),
    }
}

fn verifier(f: &Fixture) -> Verifier {
    Verifier::new([f.signer.public_key_der()])
}

/// The checkpoints in chain order.
fn chain(bundle: &Bundle) -> Vec<Checkpoint> {
    let mut c = bundle.checkpoints.clone();
    c.sort_by(|a, b| a.body.end.cmp(&b.body.end));
    c
}

/// The period (start) an entry is sealed in.
fn period_of(bundle: &Bundle, e: &AuditLogEntry) -> String {
    let stamped = format_timestamp(e.timestamp);
    chain(bundle).into_iter().find(|c| c.body.start <= stamped && stamped < c.body.end).unwrap().body.start
}

/// The leaves of `c`'s period as the service publishes them: ids and leaf hashes in tree order.
pub fn leaves_of(bundle: &Bundle, c: &Checkpoint) -> PeriodLeaves {
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap().to_utc();
    let mut entries: Vec<&AuditLogEntry> =
        bundle.entries.iter().filter(|e| at(&c.body.start) <= e.timestamp && e.timestamp < at(&c.body.end)).collect();
    entries.sort_by_key(|e| e.id);
    PeriodLeaves {
        end: c.body.end.clone(),
        ids: entries.iter().map(|e| e.id).collect(),
        leaves: entries.iter().map(|e| e.integrity.leaf_hash).collect(),
    }
}

fn sign(signer: &LocalSigner, c: &mut Checkpoint) {
    let signature = futures::executor::block_on(signer.sign(&c.body.signed_bytes())).unwrap();
    c.signature = encode_signature(&signature);
}

/// A field of entry `e` changed to another valid value.
fn change_field(e: &mut AuditLogEntry, field: &str) {
    match field {
        // Another id at the same millisecond: the entry stays in its period.
        "id" => e.id = uuid_v7_at(e.timestamp),
        "timestamp" => e.timestamp += Duration::milliseconds(1),
        "action" => e.action = if e.action == AuditAction::Delete { AuditAction::Create } else { AuditAction::Delete },
        "entity_type" => {
            e.entity_type = if e.entity_type == EntityType::File { EntityType::Report } else { EntityType::File }
        }
        "entity_id" => e.entity_id.push('x'),
        "project_id" => e.project_id = Some("project-elsewhere".into()),
        "user_id" => e.user_id = Some("mallory".into()),
        "changes" => {
            e.changes.as_mut().unwrap().insert("new".into(), json!(1_000_000));
        }
        "ip_address" => e.ip_address = Some("198.51.100.66".parse().unwrap()),
        "metadata" => e.metadata = Some(serde_json::from_value(json!({"user_agent": "curl/8"})).unwrap()),
        "tenant_id" => e.tenant_id = TenantId::parse("globex").unwrap(),
        other => panic!("no change defined for {other}"),
    }
}

/// What the attacker who knows the format does after a change: a fresh, self-consistent leaf.
fn recommit(e: &mut AuditLogEntry) {
    e.integrity = Integrity::commit(&e.committed_fields()).unwrap();
}

fn messages(summary: &Summary) -> Vec<String> {
    summary.failures.iter().map(ToString::to_string).collect()
}

/// Asserts the tampered bundle fails, with a message naming `names` (an entry id, a period, a
/// checkpoint's end).
fn detected(case: &str, summary: &Summary, names: &str) {
    let all = messages(summary);
    assert!(!summary.is_valid(), "{case}: not detected ({summary})");
    assert!(all.iter().any(|m| m.contains(names)), "{case}: no message names {names}: {all:#?}");
}

#[test]
fn the_untouched_bundle_verifies_with_no_false_alarm() {
    let f = fixture();
    let summary = verifier(f).verify(&f.bundle);
    assert!(summary.is_valid(), "{:#?}", messages(&summary));
    let n = f.bundle.checkpoints.len();
    assert_eq!(
        summary.to_string(),
        format!("tenant acme: {n}/{n} checkpoints valid, {ENTRIES}/{ENTRIES} entries valid")
    );
    // The order of the lines is not evidence: shuffled entries and checkpoints verify the same.
    let mut shuffled = f.bundle.clone();
    shuffled.entries.reverse();
    shuffled.entries.rotate_left(1234);
    shuffled.checkpoints.reverse();
    assert_eq!(verifier(f).verify(&shuffled), summary);
    // Pinned to the head it reported, it still verifies.
    let (_, head) = summary.head.unwrap();
    assert!(verifier(f).with_head(head).verify(&f.bundle).is_valid());
}

#[test]
fn a_changed_value_in_any_field_is_detected() {
    let f = fixture();
    for (i, field) in COMMITTED_FIELDS.iter().enumerate() {
        let k = 97 + i * 911;
        // Left with its old leaf: the entry no longer matches it.
        let mut bundle = f.bundle.clone();
        change_field(&mut bundle.entries[k], field);
        let id = bundle.entries[k].id.to_string();
        detected(&format!("{field} changed"), &verifier(f).verify(&bundle), &format!("entry {id}"));

        // With a leaf recomputed to match: its period's root no longer does.
        let mut bundle = f.bundle.clone();
        let period = period_of(&bundle, &bundle.entries[k]);
        change_field(&mut bundle.entries[k], field);
        recommit(&mut bundle.entries[k]);
        let summary = verifier(f).verify(&bundle);
        if *field == "tenant_id" {
            detected("tenant_id changed, leaf recomputed", &summary, &format!("entry {}", bundle.entries[k].id));
        } else {
            detected(&format!("{field} changed, leaf recomputed"), &summary, &format!("period {period}"));
        }
    }
    // The leaf hash itself, changed to another entry's.
    let mut bundle = f.bundle.clone();
    bundle.entries[5].integrity.leaf_hash = bundle.entries[6].integrity.leaf_hash;
    detected("leaf hash replaced", &verifier(f).verify(&bundle), &format!("entry {}", bundle.entries[5].id));
}

#[test]
fn deleted_inserted_swapped_and_back_dated_entries_are_detected() {
    let f = fixture();
    let v = verifier(f);

    let mut bundle = f.bundle.clone();
    let gone = bundle.entries.remove(4321);
    detected("deleted entry", &v.verify(&bundle), &format!("period {}", period_of(&f.bundle, &gone)));

    // A whole period's entries deleted: not mistaken for expiry, since that period is not past
    // retention — and the same deletion of the oldest periods, past the horizon, is expiry.
    let mut ordered: Vec<_> = f.bundle.checkpoints.iter().collect();
    ordered.sort_by_key(|c| c.body.end.clone());
    let (fifth, eighth) = (ordered[4], ordered[7]);
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap().to_utc();
    let in_period =
        |e: &AuditLogEntry, c: &Checkpoint| at(&c.body.start) <= e.timestamp && e.timestamp < at(&c.body.end);
    let mut bundle = f.bundle.clone();
    bundle.entries.retain(|e| !in_period(e, fifth));
    detected("deleted period", &v.verify(&bundle), &format!("period {} – {}: its", fifth.body.start, fifth.body.end));
    let mut expired = f.bundle.clone();
    let horizon = at(&fifth.body.end);
    expired.entries.retain(|e| e.timestamp >= horizon);
    let summary = v.clone().with_expired_before(horizon).verify(&expired);
    assert!(summary.is_valid(), "{summary}: {:?}", summary.failures);
    assert!(summary.to_string().ends_with(", 5 periods past retention"), "{summary}");
    // A horizon inside a period: checked through the period's leaves, its entries past the horizon
    // must all be there, and everything after it is checked as usual.
    let mut partly = f.bundle.clone();
    let inside: Vec<_> = partly.entries.iter().filter(|e| in_period(e, eighth)).map(|e| e.timestamp).collect();
    let horizon = inside[inside.len() / 2];
    partly.entries.retain(|e| e.timestamp >= horizon);
    partly.periods.push(leaves_of(&f.bundle, eighth));
    let summary = v.clone().with_expired_before(horizon).verify(&partly);
    assert!(summary.is_valid(), "{summary}: {:?}", summary.failures);
    let gone = inside.len() / 2;
    assert!(
        summary.to_string().ends_with(&format!(", 7 periods past retention, {gone} entries past retention")),
        "{summary}"
    );
    assert_eq!(summary.entries_valid, partly.entries.len());

    // An inserted entry, well formed and with a valid leaf, in a sealed period.
    let mut bundle = f.bundle.clone();
    let mut forged = bundle.entries[777].clone();
    forged.id = uuid_v7_at(forged.timestamp);
    forged.entity_id = "forged".into();
    recommit(&mut forged);
    let period = period_of(&bundle, &forged);
    bundle.entries.push(forged.clone());
    detected("inserted entry", &v.verify(&bundle), &format!("period {period}"));
    // The same entry presented twice.
    let mut bundle = f.bundle.clone();
    bundle.entries.push(bundle.entries[10].clone());
    detected("duplicated entry", &v.verify(&bundle), &format!("entry {} appears twice", bundle.entries[10].id));
    // An entry from before the chain began.
    let mut bundle = f.bundle.clone();
    let mut ancient = bundle.entries[0].clone();
    ancient.id = uuid_v7_at(ancient.timestamp - Duration::days(3));
    ancient.timestamp = auditline::domain::time::uuid_v7_time(&ancient.id).unwrap();
    recommit(&mut ancient);
    bundle.entries.push(ancient.clone());
    detected("entry before the chain", &v.verify(&bundle), &format!("entry {}", ancient.id));

    // Two entries of one period swap places (their ids), leaves recomputed to match.
    let mut bundle = f.bundle.clone();
    let (a, b) = (2000, 2003);
    let period = period_of(&bundle, &bundle.entries[a]);
    assert_eq!(period, period_of(&bundle, &bundle.entries[b]));
    let (id_a, id_b) = (bundle.entries[a].id, bundle.entries[b].id);
    let (t_a, t_b) = (bundle.entries[a].timestamp, bundle.entries[b].timestamp);
    (bundle.entries[a].id, bundle.entries[a].timestamp) = (id_b, t_b);
    (bundle.entries[b].id, bundle.entries[b].timestamp) = (id_a, t_a);
    recommit(&mut bundle.entries[a]);
    recommit(&mut bundle.entries[b]);
    detected("two entries swapped", &v.verify(&bundle), &format!("period {period}"));
    // Swapped without recomputing: both leaves fail.
    let mut bundle = f.bundle.clone();
    bundle.entries.swap(a, b);
    (bundle.entries[a].id, bundle.entries[b].id) = (bundle.entries[b].id, bundle.entries[a].id);
    detected("two ids swapped", &v.verify(&bundle), &format!("entry {}", bundle.entries[a].id));

    // Back-dated: a new id (and time) five hours earlier, leaf recomputed. Both periods notice.
    let mut bundle = f.bundle.clone();
    let k = 9000;
    let from = period_of(&bundle, &bundle.entries[k]);
    let earlier = bundle.entries[k].timestamp - Duration::hours(5);
    bundle.entries[k].id = uuid_v7_at(earlier);
    bundle.entries[k].timestamp = earlier;
    recommit(&mut bundle.entries[k]);
    let to = period_of(&bundle, &bundle.entries[k]);
    let summary = v.verify(&bundle);
    detected("back-dated entry (its old period)", &summary, &format!("period {from}"));
    detected("back-dated entry (its new period)", &summary, &format!("period {to}"));
}

#[test]
fn removed_replaced_forked_and_re_signed_checkpoints_are_detected() {
    let f = fixture();
    let v = verifier(f);
    let ordered = chain(&f.bundle);
    let without = |end: &str| Bundle {
        entries: f.bundle.entries.clone(),
        checkpoints: f.bundle.checkpoints.iter().filter(|c| c.body.end != end).cloned().collect(),
        ..Bundle::default()
    };
    // A checkpoint deleted from the middle, from the start, and from the end (with a pinned head).
    let middle = &ordered[10];
    detected("deleted checkpoint", &v.verify(&without(&middle.body.end)), &ordered[9].body.end);
    detected("deleted first checkpoint", &v.verify(&without(&ordered[0].body.end)), &ordered[1].body.end);
    let last = ordered.last().unwrap();
    let head = last.link();
    detected("deleted last checkpoint", &v.clone().with_head(head).verify(&without(&last.body.end)), &head.to_string());

    let edit = |k: usize, change: &dyn Fn(&mut Checkpoint)| {
        let mut bundle = f.bundle.clone();
        let c = bundle.checkpoints.iter_mut().find(|c| c.body.end == ordered[k].body.end).unwrap();
        change(c);
        bundle
    };
    let end = |k: usize| format!("checkpoint ending {}", ordered[k].body.end);
    // Re-signed with another key, under its own id or under the real key's id.
    let resigned = edit(12, &|c| {
        c.body.key_id = f.stranger.key_id().to_owned();
        sign(&f.stranger, c);
    });
    detected("re-signed with another key", &v.verify(&resigned), &end(12));
    let impostor = edit(12, &|c| sign(&f.stranger, c));
    detected("signed by another key under the real key's id", &v.verify(&impostor), &end(12));
    // One bit of the signature flipped.
    let flipped = edit(3, &|c| {
        let mut der = c.signature_bytes().unwrap();
        let last = der.len() - 1;
        der[last] ^= 1;
        c.signature = encode_signature(&der);
    });
    detected("flipped signature bit", &v.verify(&flipped), &end(3));
    // The body changed without signing again.
    let resized = edit(7, &|c| c.body.size -= 1);
    detected("checkpoint body changed", &v.verify(&resized), &end(7));

    // A fork: a second checkpoint for the same period, properly signed (a compromised sealer).
    let mut forked = f.bundle.clone();
    let mut rival = ordered[15].clone();
    rival.body.root = ordered[14].body.root;
    sign(&f.signer, &mut rival);
    forked.checkpoints.push(rival);
    detected("forked chain", &v.verify(&forked), &end(15));
    // A rewritten history: a period re-sealed with the real key, and the chain re-linked after it.
    let mut rewritten = f.bundle.clone();
    let c = rewritten.checkpoints.iter_mut().find(|c| c.body.end == ordered[20].body.end).unwrap();
    c.body.root = ordered[19].body.root;
    sign(&f.signer, c);
    detected("re-sealed period", &v.verify(&rewritten), &end(21));
}

#[test]
fn an_erased_field_verifies_only_with_its_erasure_record() {
    let f = fixture();
    let mut bundle = f.bundle.clone();
    let target = bundle.entries[1234].clone();
    // The record: made now, after the fixture's last checkpoint (not yet due for sealing).
    let fields = ["ip_address"];
    let record = auditline::erasure::record(&target, &fields, "GDPR #12", Some("dpo".into()), None)
        .validate()
        .unwrap()
        .stamp(chrono::Utc::now(), 90)
        .unwrap();
    let erasure = auditline::erasure::Erasure::plan(&target, &fields, record.id).unwrap();
    erasure.apply(&mut bundle.entries[1234]);
    let id = target.id;

    // Edited directly, without the record: the field is named.
    let summary = verifier(f).verify(&bundle);
    detected("erasure without its record", &summary, &format!("entry {id}: field ip_address is erased by record"));
    assert!(!summary.erased.contains_key(&id));

    bundle.entries.push(record.clone());
    let summary = verifier(f).verify(&bundle);
    assert!(summary.is_valid(), "{:#?}", messages(&summary));
    assert_eq!(summary.erased.get(&id), Some(&vec![("ip_address".to_owned(), record.id)]));
    assert!(summary.to_string().contains(", 1 with erased fields"), "{summary}");

    // The seed kept instead, the field listed as erased with no record named: caught.
    let mut unnamed = bundle.clone();
    unnamed.entries[1234].integrity.erased_by.clear();
    detected("erasure naming no record", &verifier(f).verify(&unnamed), "erased without an erasure record");
    // A record of another entry, or of another field, does not cover it.
    let mut other = bundle.clone();
    other.entries[1234].integrity.erased_by.insert("ip_address".into(), bundle.entries[1].id);
    detected("another entry as the record", &verifier(f).verify(&other), "not an erasure record of this entry");
    // An erased field cannot be filled back in with another value.
    bundle.entries[1234].ip_address = Some("203.0.113.9".parse().unwrap());
    detected("erased field refilled", &verifier(f).verify(&bundle), &format!("entry {id}"));
}
