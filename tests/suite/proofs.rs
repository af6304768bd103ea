//! Proofs that hold against whoever can write the tables (issue 23): one test per attack, each the
//! change such a person would make to history, and the verification step that catches it. Before
//! `auditline-checkpoint/2` every one of these verified (exit 0).

use std::sync::Arc;

use auditline::domain::entry::COMMITTED_FIELDS;
use auditline::domain::{AuditAction, AuditLogEntry, EntityType, TenantId};
use auditline::integrity::Hash;
use auditline::integrity::checkpoint::{Checkpoint, encode_signature};
use auditline::integrity::leaf::Integrity;
use auditline::integrity::signing::{LocalSigner, Signer};
use auditline::seal::verify::{
    Bundle, LATEST_SEAL, MANIFEST_FORMAT, Manifest, PeriodLeaves, Summary, Unsealed, Verifier, judge_unsealed,
};
use auditline::seal::{SealSettings, SealStore, Sealer};
use auditline::store::MemoryStore;
use auditline::{AuditLogger, AuditSettings, LogOutcome};
use auditline_tests::{all_entries, new_entry, stepping_clock, tenant};
use chrono::{DateTime, Duration, DurationRound, Utc};

/// A tenant's trail: entries over `hours` whole hours ending at least an hour ago, every one sealed.
struct Trail {
    store: Arc<MemoryStore>,
    tenant: TenantId,
    signer: Arc<LocalSigner>,
    start: DateTime<Utc>,
}

async fn trail(name: &str, hours: i64, per_hour: i64) -> Trail {
    let store = Arc::new(MemoryStore::new());
    let tenant = tenant(name);
    let start = (Utc::now() - Duration::hours(hours + 1)).duration_trunc(Duration::hours(1)).unwrap();
    let (clock, _) = stepping_clock(start + Duration::seconds(30), 3_600_000 / per_hour);
    let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock);
    for i in 0..hours * per_hour {
        let i = i as usize;
        let request =
            new_entry(&tenant, AuditAction::ALL[i % 6], EntityType::ALL[i % 7], &format!("e-{i}"), None, Some("alice"));
        let Ok(LogOutcome::Stored(_)) = logger.log(request).await else { panic!("entry {i} stored") };
    }
    let signer = Arc::new(LocalSigner::generate().unwrap());
    let t = Trail { store, tenant, signer, start };
    t.sealer(t.signer.clone()).run(Utc::now()).await.unwrap();
    t
}

impl Trail {
    fn sealer(&self, signer: Arc<LocalSigner>) -> Sealer {
        Sealer::new(self.store.clone(), signer, SealSettings { lookback_hours: 48, ..SealSettings::default() })
    }

    /// The bundle as `auditline fetch` would have taken it at `fetched_at`.
    async fn bundle(&self, fetched_at: DateTime<Utc>) -> Bundle {
        let mut entries = all_entries(self.store.clone(), &self.tenant).await;
        entries.sort_by_key(|e| e.id);
        Bundle {
            entries,
            checkpoints: self.store.checkpoints(&self.tenant, None, None, 1000).await.unwrap(),
            periods: Vec::new(),
            manifest: Some(Manifest {
                format: MANIFEST_FORMAT.to_owned(),
                tenant: self.tenant.to_string(),
                fetched_at,
                seal: SealSettings::default(),
            }),
            witnessed: Vec::new(),
        }
    }

    fn verifier(&self) -> Verifier {
        Verifier::new([self.signer.public_key_der()]).with_tenant(self.tenant.as_str())
    }
}

fn messages(summary: &Summary) -> Vec<String> {
    summary.failures.iter().map(ToString::to_string).collect()
}

/// Fails unless `summary` is a failure with a message holding every one of `names`.
fn caught(case: &str, summary: &Summary, names: &[&str]) {
    assert!(!summary.is_valid(), "{case}: not caught ({summary})");
    let all = messages(summary);
    assert!(all.iter().any(|m| names.iter().all(|n| m.contains(n))), "{case}: no message names {names:?}: {all:#?}");
}

/// What a table writer does after changing an entry: a fresh, self-consistent leaf (the seed sits
/// in the same row).
fn rewrite(e: &mut AuditLogEntry) {
    e.user_id = Some("mallory".into());
    e.integrity = Integrity::commit(&e.committed_fields()).unwrap();
}

fn sign(signer: &dyn Signer, c: &mut Checkpoint) {
    let signature = futures::executor::block_on(signer.sign(&c.body.signed_bytes())).unwrap();
    c.signature = encode_signature(&signature);
}

fn ordered(bundle: &Bundle) -> Vec<Checkpoint> {
    let mut c = bundle.checkpoints.clone();
    c.sort_by(|a, b| a.body.end.cmp(&b.body.end));
    c
}

fn at(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t).unwrap().to_utc()
}

// 1. Delete the checkpoints, then rewrite anything.
#[tokio::test]
async fn entries_without_the_checkpoints_they_should_have_are_overdue_not_unsealed() {
    let t = trail("acme", 6, 12).await;
    let honest = t.bundle(Utc::now()).await;
    assert!(t.verifier().verify(&honest).is_valid());

    let mut gutted = honest.clone();
    gutted.checkpoints.clear();
    rewrite(&mut gutted.entries[5]);
    let summary = t.verifier().verify(&gutted);
    let id = gutted.entries[5].id.to_string();
    caught("every checkpoint deleted, an entry rewritten", &summary, &[&id, "should have been sealed"]);
    assert_eq!((summary.unsealed, summary.entries_valid), (0, 0), "{summary}");

    // Only the last two checkpoints deleted: their periods' entries are overdue, the rest verify.
    let chain = ordered(&honest);
    let kept = &chain[..chain.len() - 2];
    let mut truncated = honest.clone();
    truncated.checkpoints = kept.to_vec();
    let summary = t.verifier().verify(&truncated);
    let last = truncated.entries.last().unwrap().id.to_string();
    caught("the last two checkpoints deleted", &summary, &[&last, "should have been sealed"]);
    let overdue = honest.entries.iter().filter(|e| e.timestamp >= at(&kept.last().unwrap().body.end)).count();
    assert_eq!(summary.failures.len(), overdue, "each entry of the two periods, and nothing else: {summary}");

    // Judged at the bundle's fetch time: fetched a minute after the last period ended, its entries
    // were not due yet, so the same bundle is honest then.
    let last_end = at(&chain.last().unwrap().body.end);
    let mut early = honest.clone();
    early.checkpoints.pop();
    early.checkpoints.retain(|c| c.body.end != chain.last().unwrap().body.end);
    early.manifest.as_mut().unwrap().fetched_at = last_end + Duration::minutes(1);
    let summary = t.verifier().verify(&early);
    assert!(summary.is_valid(), "{summary}: {:?}", summary.failures);
    assert_eq!(summary.unsealed, 12, "{summary}");
    // …and a bundle does not get younger by saying so: the earlier of its fetch and now counts.
    early.manifest.as_mut().unwrap().fetched_at = Utc::now() + Duration::days(30);
    caught("a fetch time in the future", &t.verifier().verify(&early), &["should have been sealed"]);

    // An entry written just now is honestly not sealed yet.
    let logger = AuditLogger::new(t.store.clone(), AuditSettings::default());
    let Ok(LogOutcome::Stored(fresh)) =
        logger.log(new_entry(&t.tenant, AuditAction::View, EntityType::File, "now", None, None)).await
    else {
        panic!("stored")
    };
    let mut with_fresh = honest.clone();
    with_fresh.entries.push(fresh);
    let summary = t.verifier().verify(&with_fresh);
    assert!(summary.is_valid(), "{summary}: {:?}", summary.failures);
    assert_eq!(summary.unsealed, 1);

    // A proof route answer that says "not sealed" is judged by the entry's own time, not the
    // service's word: an old entry is overdue, and a claimed delay of days is capped.
    assert!(matches!(judge_unsealed(t.start, None, Utc::now()), Unsealed::Overdue { .. }));
    let now = Utc::now();
    let claim = Some(now + Duration::days(9));
    assert_eq!(judge_unsealed(now, claim, now), Unsealed::Pending { until: now + LATEST_SEAL });
    let old = now - Duration::hours(5);
    assert_eq!(judge_unsealed(old, claim, now), Unsealed::Overdue { due: old + LATEST_SEAL });
}

// 2. `--head` from an earlier verification, with the chain grown since.
#[tokio::test]
async fn a_head_recorded_earlier_passes_as_the_chain_grows_and_fails_once_history_is_rewritten() {
    let t = trail("acme", 8, 6).await;
    let chain = ordered(&t.bundle(Utc::now()).await);
    assert_eq!(chain.len(), 8);
    // What an auditor saw four hours in: the first four checkpoints, the entries up to then.
    let then = at(&chain[3].body.end) + Duration::minutes(5);
    let mut earlier = t.bundle(then).await;
    earlier.checkpoints = chain[..4].to_vec();
    earlier.entries.retain(|e| e.timestamp < at(&chain[3].body.end));
    let first = t.verifier().verify(&earlier);
    assert!(first.is_valid(), "{first}: {:?}", first.failures);
    let (_, head) = first.head.clone().unwrap();
    assert_eq!(head, chain[3].link());

    // Now: four more checkpoints. The old head is in the chain, four back.
    let now = t.bundle(Utc::now()).await;
    let summary = t.verifier().with_head(head).verify(&now);
    assert!(summary.is_valid(), "{summary}: {:?}", summary.failures);
    assert_eq!(summary.added_since_head, Some(4));
    assert!(summary.to_string().contains("4 checkpoint(s) added since the head given"), "{summary}");
    assert_eq!(t.verifier().with_head(now.checkpoints.last().unwrap().link()).verify(&now).added_since_head, Some(0));

    // History rewritten with the real key: period 2 re-sealed and every later link re-made. The
    // chain is self-consistent, and only the recorded head tells.
    let mut forged = ordered(&now);
    rewrite_entries_of(&mut forged, 1, &t.signer);
    let rewritten = Bundle { checkpoints: forged, ..now.clone() };
    let summary = t.verifier().with_head(head).verify(&rewritten);
    caught("history rewritten before the head", &summary, &[&head.to_string(), "does not contain the head"]);
    // A head of another chain entirely.
    let other = trail("acme", 2, 2).await.bundle(Utc::now()).await;
    let alien = ordered(&other).last().unwrap().link();
    caught("another chain's head", &t.verifier().with_head(alien).verify(&now), &["does not contain the head"]);
}

/// Re-seals checkpoint `k` with another root and re-links every later one, as the key's holder could.
fn rewrite_entries_of(chain: &mut [Checkpoint], k: usize, signer: &LocalSigner) {
    chain[k].body.root = Hash::of(&[b"another history"]);
    sign(signer, &mut chain[k]);
    for i in k + 1..chain.len() {
        chain[i].body.previous = chain[i - 1].link();
        sign(signer, &mut chain[i]);
    }
}

// 5. No expected tenant.
#[tokio::test]
async fn another_tenants_genuine_bundle_fails_as_yours_and_every_summary_names_its_tenant() {
    let acme = trail("acme", 2, 3).await;
    let globex = trail("globex", 2, 3).await;
    // Same key for both (one deployment signs every tenant's chain).
    let bundle = globex.bundle(Utc::now()).await;
    let shared = Verifier::new([globex.signer.public_key_der()]);
    let summary = shared.clone().verify(&bundle);
    assert!(summary.is_valid());
    assert!(summary.to_string().starts_with("tenant globex: "), "{summary}");
    caught("globex's bundle as acme's", &shared.with_tenant("acme").verify(&bundle), &["globex", "acme"]);
    // Checkpoints moved from one tenant's bundle into another's: named, not mixed in silently.
    let mut mixed = acme.bundle(Utc::now()).await;
    mixed.checkpoints.extend(bundle.checkpoints.iter().cloned());
    let summary = Verifier::new([acme.signer.public_key_der(), globex.signer.public_key_der()])
        .with_tenant("acme")
        .verify(&mixed);
    caught("another tenant's checkpoints mixed in", &summary, &["tenant globex"]);
}

// 6. `--expired-before` excuses only what is older than the horizon.
#[tokio::test]
async fn a_retention_horizon_excuses_only_entries_older_than_itself() {
    let t = trail("acme", 4, 10).await;
    let bundle = t.bundle(Utc::now()).await;
    let chain = ordered(&bundle);
    let second = &chain[1];
    let in_second: Vec<&AuditLogEntry> = bundle
        .entries
        .iter()
        .filter(|e| e.timestamp >= at(&second.body.start) && e.timestamp < at(&second.body.end))
        .collect();
    // The horizon halfway through the second period; the first period and half the second gone.
    let horizon = in_second[5].timestamp;
    let mut thinned = bundle.clone();
    thinned.entries.retain(|e| e.timestamp >= horizon);
    let leaves = period_leaves(&t, second).await;
    thinned.periods.push(leaves.clone());
    let v = t.verifier().with_expired_before(horizon);
    let summary = v.verify(&thinned);
    assert!(summary.is_valid(), "{summary}: {:?}", summary.failures);
    assert!(summary.to_string().ends_with(", 1 period past retention, 5 entries past retention"), "{summary}");

    // A live entry (after the horizon) of the straddling period removed too: caught by its leaf.
    let mut removed = thinned.clone();
    let live = in_second[7].id;
    removed.entries.retain(|e| e.id != live);
    caught("a live entry of a straddling period removed", &v.verify(&removed), &[&live.to_string(), "is missing"]);
    // Without the period's leaves the straddling period cannot be excused at all.
    let mut no_leaves = thinned.clone();
    no_leaves.periods.clear();
    caught("a straddling period without its leaves", &v.verify(&no_leaves), &[&second.body.start, "entries"]);
    // Leaves that lie about the removed entry's id (to pass it off as older) do not hash to the
    // checkpoint.
    let mut lying = removed.clone();
    let forged = &mut lying.periods[0];
    let at_live = forged.ids.iter().position(|id| *id == live).unwrap();
    forged.ids[at_live] = auditline::domain::time::uuid_v7_at(horizon - Duration::seconds(1));
    forged.ids.sort();
    caught("leaves that lie", &v.verify(&lying), &["leaves given for the period", &second.body.end]);
    // A period after the horizon that lost an entry: never excused.
    let mut later = thinned.clone();
    later.entries.pop();
    caught("an entry after the horizon removed", &v.verify(&later), &["entries were removed"]);
    // A horizon after the fetch would excuse everything: refused, before and during verification.
    let future = t.verifier().with_expired_before(Utc::now() + Duration::days(1));
    assert!(future.check_settings(&bundle).unwrap_err().contains("after the bundle was fetched"));
    caught("a horizon after the fetch", &future.verify(&bundle), &["after the bundle was fetched"]);
    let at_fetch =
        t.verifier().with_expired_before(bundle.manifest.as_ref().unwrap().fetched_at + Duration::seconds(1));
    assert!(at_fetch.check_settings(&bundle).is_err(), "judged against the fetch time, not now");
}

async fn period_leaves(t: &Trail, c: &Checkpoint) -> PeriodLeaves {
    let leaves = auditline::seal::period_leaves(t.store.as_ref(), &t.tenant, c).await.unwrap().expect("kept");
    let (ids, leaves) = leaves.into_iter().unzip();
    PeriodLeaves { end: c.body.end.clone(), ids, leaves }
}

// 7. Key windows.
#[tokio::test]
async fn a_retired_key_verifies_nothing_dated_after_its_rotation() {
    let t = trail("acme", 6, 4).await;
    // The chain sealed up to four hours in by key A; the rest by key B after a rotation.
    let store = Arc::new(MemoryStore::new());
    let entries = all_entries(t.store.clone(), &t.tenant).await;
    for e in &entries {
        auditline::store::AuditStore::put(store.as_ref(), e).await.unwrap();
    }
    let old = Arc::new(LocalSigner::generate().unwrap());
    let new = Arc::new(LocalSigner::generate().unwrap());
    let settings = SealSettings { lookback_hours: 48, ..SealSettings::default() };
    let rotation = t.start + Duration::hours(4);
    Sealer::new(store.clone(), old.clone(), settings).run(rotation + Duration::minutes(3)).await.unwrap();
    // After the rotation the seal trusts the retired key's checkpoints to sign on from (the
    // template's SealRetiredKeys); without it, it would refuse the head as not its own.
    let refused = Sealer::new(store.clone(), new.clone(), settings).run(Utc::now()).await.unwrap();
    assert_eq!((refused.refused, refused.checkpoints), (1, 0), "{refused:?}");
    Sealer::new(store.clone(), new.clone(), settings)
        .with_retired_keys(vec![old.public_key_der().to_vec()])
        .run(Utc::now())
        .await
        .unwrap();
    let checkpoints = store.checkpoints(&t.tenant, None, None, 100).await.unwrap();
    assert_eq!(checkpoints.iter().filter(|c| c.body.key_id == old.key_id()).count(), 4);
    let bundle = Bundle { checkpoints, ..t.bundle(Utc::now()).await };
    let rotated = Verifier::new([new.public_key_der()]).with_retired_key(old.public_key_der(), rotation);
    let summary = rotated.verify(&bundle);
    assert!(summary.is_valid(), "{summary}: {:?}", summary.failures);

    // Whoever kept the retired key signs a later period with it: refused, naming the key.
    let mut forged = ordered(&bundle);
    let n = forged.len();
    forged[n - 1].body.key_id = old.key_id().to_owned();
    sign(old.as_ref(), &mut forged[n - 1]);
    let end = forged[n - 1].body.end.clone();
    let summary = rotated.verify(&Bundle { checkpoints: forged.clone(), ..bundle.clone() });
    caught("a retired key signing after its rotation", &summary, &[&end, old.key_id(), "retired"]);
    // Without the window, the same forgery would pass the signature check: the window is what
    // catches it.
    let windowless = Verifier::new([new.public_key_der(), old.public_key_der()]);
    assert!(windowless.verify(&Bundle { checkpoints: forged.clone(), ..bundle.clone() }).is_valid());
    // The service's published window narrows a pinned key's (it can never widen one).
    let narrowed = windowless.clone().narrow_key_window(old.key_id(), rotation);
    caught("a published window", &narrowed.verify(&Bundle { checkpoints: forged, ..bundle.clone() }), &["retired"]);
}

// 8. No panic on any input; low s only.
#[tokio::test]
async fn crafted_checkpoints_fail_cleanly_and_high_s_signatures_are_refused() {
    let t = trail("acme", 3, 3).await;
    let bundle = t.bundle(Utc::now()).await;
    // A size past 2^53 (the old canonical JSON's limit) and at u64's end: failures, not panics.
    for size in [1u64 << 53 | 1, u64::MAX] {
        let mut huge = bundle.clone();
        huge.checkpoints[1].body.size = size;
        huge.checkpoints[1].body.total = size;
        sign(t.signer.as_ref(), &mut huge.checkpoints[1]);
        let summary = t.verifier().verify(&huge);
        assert!(!summary.is_valid(), "{summary}");
    }
    // Every signature the seal made is low-s; the high-s twin of one is refused.
    for c in &bundle.checkpoints {
        let (_, s) = auditline::integrity::signing::parse_der(&c.signature_bytes().unwrap()).unwrap();
        assert!(s[0] < 0x80, "low s");
    }
    let mut twin = bundle.clone();
    let der = twin.checkpoints[0].signature_bytes().unwrap();
    twin.checkpoints[0].signature = encode_signature(&auditline::integrity::signing::twin(&der).unwrap());
    let end = twin.checkpoints[0].body.end.clone();
    caught("a high-s signature", &t.verifier().verify(&twin), &[&end, "signature"]);
    // The chain link covers the signed text, not the signature: re-encoding one cannot break the
    // next link (no denial of verification through the links).
    assert_eq!(twin.checkpoints[0].link(), bundle.checkpoints[0].link());
}

/// An erased field refilled, checked by the proof verifier as the viewer checks it (the shared
/// vectors, `tests/fixtures/verify-vectors.json`, hold the same case for the browser).
#[tokio::test]
async fn a_value_in_a_field_marked_erased_fails_even_with_its_commitment_kept() {
    let t = trail("acme", 2, 2).await;
    let bundle = t.bundle(Utc::now()).await;
    let mut e = bundle.entries[1].clone();
    let original = serde_json::to_value(&e.user_id).unwrap();
    // The seed stays (so every other field still verifies), the commitment of the original value
    // is listed as erased, and the field holds anything.
    let salt = e.integrity.seed.unwrap().for_field("user_id");
    e.integrity.erased.insert("user_id".into(), auditline::integrity::leaf::commitment(&salt, &original).unwrap());
    e.user_id = Some("mallory".into());
    let summary = t.verifier().verify(&Bundle { entries: vec![e.clone()], ..bundle.clone() });
    caught("an erased field refilled", &summary, &[&e.id.to_string(), "marked erased but has a value"]);
    assert!(COMMITTED_FIELDS.contains(&"user_id"));
}

// The review's findings: a manifest's fetch time moved back, a witness key given twice, a
// timestamp moved off its id, counts that would overflow, a pinned origin.
#[tokio::test]
async fn a_bundle_cannot_excuse_entries_by_its_manifest_its_timestamps_or_repeated_keys() {
    let t = trail("acme", 3, 6).await;
    let honest = t.bundle(Utc::now()).await;
    // Every checkpoint deleted, and the fetch time moved before every entry: refused as bad input,
    // and a failure if verified anyway.
    let mut backdated = honest.clone();
    backdated.checkpoints.clear();
    backdated.manifest.as_mut().unwrap().fetched_at = t.start - Duration::hours(1);
    let refused = t.verifier().check_settings(&backdated).unwrap_err();
    assert!(refused.contains("its manifest is not the fetch's"), "{refused}");
    caught(
        "a fetch time before the bundle's own data",
        &t.verifier().verify(&backdated),
        &["manifest is not the fetch's"],
    );

    // One witness pinned twice counts once, and is refused as input.
    let w = auditline::integrity::note::Cosigner::generate("witness.test/w").unwrap().public_key();
    let twice = t.verifier().with_witnesses(vec![w.clone(), w.clone()], 2);
    assert!(twice.check_settings(&honest).unwrap_err().contains("twice"));

    // A timestamp moved off its id's time (with a fresh leaf), as if to move it out of a sealed
    // period: named.
    let mut moved = honest.clone();
    let last = moved.entries.len() - 1;
    moved.entries[last].timestamp += Duration::minutes(30);
    moved.entries[last].integrity = Integrity::commit(&moved.entries[last].committed_fields()).unwrap();
    let id = moved.entries[last].id.to_string();
    caught("a timestamp moved off the id", &t.verifier().verify(&moved), &[&id, "not its id's time"]);

    // Sizes that would overflow the counts of a period past retention: a failure, never a panic.
    let mut huge = honest.clone();
    for c in &mut huge.checkpoints {
        c.body.size = (1 << 63) + 5;
    }
    let summary = t.verifier().with_expired_before(Utc::now() - Duration::minutes(1)).verify(&huge);
    assert!(!summary.is_valid());

    // A pinned deployment origin: a chain of another origin (same key) fails.
    assert!(t.verifier().with_origin("auditline.local").verify(&honest).is_valid());
    caught(
        "another origin",
        &t.verifier().with_origin("audit.example.com").verify(&honest),
        &["its origin is not audit.example.com/<tenant>"],
    );
}
