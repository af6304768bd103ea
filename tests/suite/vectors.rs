//! One set of verification vectors, `tests/fixtures/verify-vectors.json`, that the Rust verifier
//! (here) and the viewer's (tests/browser) both run, so the two cannot drift: a valid proof, and
//! each attack on a single entry's proof — a changed field, an erased field refilled, a high-s
//! signature, another key under the pinned key's id, an unpinned key, a retired key, another
//! tenant, a changed path or checkpoint, an entry overdue for sealing.
//!
//! `AUDITLINE_WRITE_VECTORS=1 cargo test -p auditline-tests --test suite vectors` writes them again
//! (from the fixed keys in tests/fixtures/keys); every run checks them.

use std::sync::Arc;

use auditline::domain::entry::COMMITTED_FIELDS;
use auditline::domain::time::{format_timestamp, uuid_v7_at, uuid_v7_time};
use auditline::domain::{AuditAction, EntityType};
use auditline::integrity::checkpoint::encode_signature;
use auditline::integrity::signing::{self, LocalSigner, Signer, pem_der};
use auditline::seal::verify::{Unsealed, Verifier, judge_unsealed};
use auditline::seal::{EntryProof, ProofError, ProofOutcome, SealSettings, Sealer, prove};
use auditline::store::MemoryStore;
use auditline::{AuditLogger, AuditSettings, LogOutcome};
use auditline_tests::{new_entry, stepping_clock, tenant};
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{Value, json};

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/verify-vectors.json");
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/keys");

fn signer(name: &str) -> LocalSigner {
    LocalSigner::from_pem(&std::fs::read_to_string(format!("{KEYS}/{name}")).unwrap()).unwrap()
}

fn pinned(key: &LocalSigner, valid_until: Option<DateTime<Utc>>) -> Value {
    json!({
        "key_id": key.key_id(),
        "public_key_pem": signing::public_key_pem(key.public_key_der()),
        "valid_until": valid_until.map(format_timestamp),
    })
}

/// A proof route answer as JSON, as the API serves it.
fn answer(proof: &EntryProof) -> Value {
    let mut v = serde_json::to_value(proof).unwrap();
    v["sealed"] = json!(true);
    v
}

fn resign(proof: &mut Value, key: &LocalSigner) {
    let mut checkpoint: auditline::integrity::checkpoint::Checkpoint =
        serde_json::from_value(proof["checkpoint"].clone()).unwrap();
    let der = futures::executor::block_on(key.sign(&checkpoint.body.signed_bytes())).unwrap();
    checkpoint.signature = encode_signature(&der);
    proof["checkpoint"] = serde_json::to_value(checkpoint).unwrap();
}

/// Makes the vectors: a sealed trail of tenant acme (and one entry of globex), proofs, and the
/// attacks on them.
async fn generate() -> Value {
    let store = Arc::new(MemoryStore::new());
    let start = (Utc::now() - Duration::hours(4)).duration_trunc(Duration::hours(1)).unwrap();
    let (clock, _) = stepping_clock(start + Duration::minutes(3), 7 * 60_000);
    let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock);
    let mut entries = Vec::new();
    for (i, t) in ["acme", "acme", "acme", "acme", "acme", "globex"].iter().enumerate() {
        let mut request = new_entry(
            &tenant(t),
            AuditAction::ALL[i],
            EntityType::ALL[i],
            &format!("e-{i}"),
            Some("p-1"),
            Some("alice"),
        );
        request.details.changes = Some(json!({"amount": {"old": 1.5, "new": 2}, "note": "é ✓ \u{1F600}"}));
        let Ok(LogOutcome::Stored(e)) = logger.log(request).await else { panic!("stored") };
        entries.push(e);
    }
    let key = Arc::new(signer("seal-private.pem"));
    let impostor = signer("seal-impostor-private.pem");
    Sealer::new(store.clone(), key.clone(), SealSettings { lookback_hours: 8, ..SealSettings::default() })
        .run(Utc::now())
        .await
        .unwrap();
    let proof_of = |i: usize| {
        let (store, entry) = (store.clone(), entries[i].clone());
        async move {
            match prove(store.as_ref(), entry, &SealSettings::default()).await.unwrap() {
                ProofOutcome::Proven(p) => *p,
                other => panic!("sealed: {other:?}"),
            }
        }
    };
    let now = Utc::now();
    let mut cases = Vec::new();
    let mut case = |name: &str, about: &str, entry: &Value, proof: Value, expect: &str, extra: Value| {
        let mut c = json!({"name": name, "about": about, "entry": entry, "proof": proof, "expect": expect});
        if let Value::Object(more) = extra {
            c.as_object_mut().unwrap().extend(more);
        }
        cases.push(c);
    };
    let valid = proof_of(0).await;
    let entry = serde_json::to_value(&valid.entry).unwrap();
    case("valid", "an untouched entry and its proof", &entry, answer(&valid), "verified", json!({}));

    let mut changed = entry.clone();
    changed["user_id"] = json!("mallory");
    case(
        "field-changed",
        "the entry shown has another user_id than it was sealed with",
        &changed,
        answer(&valid),
        "failed",
        json!({}),
    );

    // The timestamp moved off its id's time (a fresh leaf to match): the overdue rule and the
    // period are judged by the id's time.
    let mut moved = valid.entry.clone();
    moved.timestamp += Duration::milliseconds(1);
    moved.integrity = auditline::integrity::leaf::Integrity::commit(&moved.committed_fields()).unwrap();
    let mut moved_proof = valid.clone();
    moved_proof.entry = moved.clone();
    case(
        "timestamp-moved",
        "the entry's timestamp moved a millisecond off its UUIDv7 id's time, its leaf recomputed",
        &serde_json::to_value(&moved).unwrap(),
        answer(&moved_proof),
        "failed",
        json!({}),
    );

    // Erased properly: value and salt gone, commitment kept.
    let mut erased_entry = valid.entry.clone();
    let value = serde_json::to_value(erased_entry.ip_address).unwrap();
    // A single proof names the erasure record; the bundle verifier requires the record itself.
    let record = uuid_v7_at(erased_entry.timestamp + Duration::minutes(5));
    erased_entry.integrity.erase("ip_address", &value, &COMMITTED_FIELDS, record).unwrap();
    erased_entry.ip_address = None;
    let mut erased_proof = valid.clone();
    erased_proof.entry = erased_entry.clone();
    let erased_value = serde_json::to_value(&erased_entry).unwrap();
    case(
        "erased-field",
        "ip_address erased (value and salt removed, commitment kept)",
        &erased_value,
        answer(&erased_proof),
        "verified",
        json!({}),
    );

    // Erased but refilled: the seed kept, the original commitment listed as erased, any value.
    let mut refilled = valid.entry.clone();
    let salt = refilled.integrity.seed.unwrap().for_field("user_id");
    let original = serde_json::to_value(&refilled.user_id).unwrap();
    refilled
        .integrity
        .erased
        .insert("user_id".into(), auditline::integrity::leaf::commitment(&salt, &original).unwrap());
    refilled.user_id = Some("mallory".into());
    let mut refilled_proof = valid.clone();
    refilled_proof.entry = refilled.clone();
    let refilled_value = serde_json::to_value(&refilled).unwrap();
    case(
        "erased-field-refilled",
        "user_id marked erased (its commitment kept) but holding a value",
        &refilled_value,
        answer(&refilled_proof),
        "failed",
        json!({}),
    );

    // The high-s twin of the checkpoint's signature.
    let mut high = answer(&valid);
    let der = valid.checkpoint.signature_bytes().unwrap();
    high["checkpoint"]["signature"] = json!(encode_signature(&signing::twin(&der).unwrap()));
    case(
        "high-s",
        "the checkpoint's signature replaced by its high-s twin (valid ECDSA, not low s)",
        &entry,
        high,
        "failed",
        json!({}),
    );

    // Signed by another key under the pinned key's id; and under its own id (not pinned).
    let mut same_id = answer(&valid);
    resign(&mut same_id, &impostor);
    case(
        "impostor-under-pinned-id",
        "signed by another key, claiming the pinned key's id",
        &entry,
        same_id,
        "failed",
        json!({}),
    );
    let mut own_id = answer(&valid);
    own_id["checkpoint"]["key_id"] = json!(impostor.key_id());
    resign(&mut own_id, &impostor);
    case(
        "unpinned-key",
        "signed by a key nobody pinned (the service could serve any key)",
        &entry,
        own_id,
        "unpinned",
        json!({}),
    );

    // The pinned key was retired before this checkpoint's period ended.
    let end = DateTime::parse_from_rfc3339(&valid.checkpoint.body.end).unwrap().to_utc();
    case(
        "retired-key",
        "the pinned key was retired an hour before the checkpoint's period ended",
        &entry,
        answer(&valid),
        "failed",
        json!({"pinned": [pinned(&key, Some(end - Duration::hours(1)))]}),
    );

    // Another tenant's genuine proof.
    let theirs = proof_of(5).await;
    case(
        "other-tenant",
        "a genuine proof of tenant globex, checked as acme's",
        &serde_json::to_value(&theirs.entry).unwrap(),
        answer(&theirs),
        "failed",
        json!({}),
    );

    // A changed audit path, a changed checkpoint body.
    let mut path = answer(&valid);
    if let Some(first) = path["proof"].get_mut(0) {
        *first = json!(auditline::integrity::Hash::of(&[b"x"]).to_hex());
    } else {
        path["leaf_index"] = json!(1);
    }
    case("path-changed", "a hash of the audit path changed", &entry, path, "failed", json!({}));
    let mut body = answer(&valid);
    body["checkpoint"]["total"] = json!(valid.checkpoint.body.total + 1);
    case(
        "checkpoint-changed",
        "the checkpoint's total changed without a new signature",
        &entry,
        body,
        "failed",
        json!({}),
    );

    // Not sealed: recent (pending), and five hours old (overdue: its checkpoint was removed).
    let fresh_id = uuid_v7_at(now - Duration::minutes(10));
    let pending = json!({"sealed": false, "id": fresh_id, "sealed_after": format_timestamp(now + Duration::minutes(52)),
        "overdue_after": format_timestamp(now + Duration::minutes(57)), "message": "not sealed yet"});
    let mut fresh_entry = entry.clone();
    fresh_entry["id"] = json!(fresh_id);
    case("not-sealed-yet", "an entry of the open period", &fresh_entry, pending, "pending", json!({}));
    let old_id = uuid_v7_at(now - Duration::hours(5));
    // The service claims a long delay; the verifier bounds it by the entry's own time.
    let overdue = json!({"sealed": false, "id": old_id, "sealed_after": format_timestamp(now + Duration::hours(1)),
        "overdue_after": format_timestamp(now + Duration::days(3)), "message": "not sealed yet"});
    let mut old_entry = entry.clone();
    old_entry["id"] = json!(old_id);
    case(
        "overdue",
        "an entry five hours old that the service says is not sealed (its checkpoint was removed)",
        &old_entry,
        overdue,
        "failed",
        json!({}),
    );

    json!({
        "about": "Verification vectors shared by the Rust verifier (tests/suite/vectors.rs) and the viewer (tests/browser). Each case: the entry as shown, the proof route's answer, and the outcome at `now` for tenant `tenant` with the keys `pinned` (a case may pin others): verified, failed, pending, or unpinned (signed by a key nobody pinned).",
        "now": format_timestamp(now),
        "tenant": "acme",
        "pinned": [pinned(&key, None)],
        "cases": cases,
    })
}

/// The Rust verifier's outcome for one case.
fn outcome(vectors: &Value, case: &Value) -> (String, String) {
    let now = DateTime::parse_from_rfc3339(vectors["now"].as_str().unwrap()).unwrap().to_utc();
    let pins = case.get("pinned").unwrap_or(&vectors["pinned"]).as_array().unwrap().clone();
    let mut verifier = Verifier::new(
        pins.iter()
            .filter(|p| p["valid_until"].is_null())
            .map(|p| pem_der(p["public_key_pem"].as_str().unwrap(), "PUBLIC KEY").unwrap()),
    );
    for p in pins.iter().filter(|p| !p["valid_until"].is_null()) {
        let until = DateTime::parse_from_rfc3339(p["valid_until"].as_str().unwrap()).unwrap().to_utc();
        verifier =
            verifier.with_retired_key(&pem_der(p["public_key_pem"].as_str().unwrap(), "PUBLIC KEY").unwrap(), until);
    }
    verifier = verifier.with_tenant(vectors["tenant"].as_str().unwrap()).at(now);
    let answer = &case["proof"];
    if answer["sealed"] == json!(false) {
        let id = answer["id"].as_str().unwrap().parse().unwrap();
        let stamped = uuid_v7_time(&id).unwrap();
        let overdue = answer["overdue_after"].as_str().map(|t| DateTime::parse_from_rfc3339(t).unwrap().to_utc());
        return match judge_unsealed(stamped, overdue, now) {
            Unsealed::Pending { until } => ("pending".into(), format!("until {until}")),
            Unsealed::Overdue { due } => ("failed".into(), format!("should have been sealed by {due}")),
        };
    }
    let Ok(mut proof) = serde_json::from_value::<EntryProof>(answer.clone()) else {
        return ("failed".into(), "not a proof".into());
    };
    // The viewer checks the entry it shows against the proof's path and checkpoint.
    match serde_json::from_value(case["entry"].clone()) {
        Ok(shown) => proof.entry = shown,
        Err(e) => return ("failed".into(), format!("the entry does not parse: {e}")),
    }
    match verifier.verify_proof(&proof) {
        Ok(_) => ("verified".into(), String::new()),
        Err(ProofError::UnknownKey { found }) => ("unpinned".into(), found),
        Err(e) => ("failed".into(), e.to_string()),
    }
}

#[tokio::test]
async fn the_shared_vectors_come_out_as_they_say() {
    if std::env::var("AUDITLINE_WRITE_VECTORS").is_ok_and(|v| v == "1") {
        let text = serde_json::to_string_pretty(&generate().await).unwrap();
        std::fs::write(FILE, format!("{text}\n")).unwrap();
    }
    let vectors: Value = serde_json::from_str(&std::fs::read_to_string(FILE).expect("the vectors")).unwrap();
    let cases = vectors["cases"].as_array().unwrap();
    assert!(cases.len() >= 14, "every attack has its case");
    for case in cases {
        let (got, why) = outcome(&vectors, case);
        assert_eq!(got, case["expect"].as_str().unwrap(), "{}: {why}", case["name"]);
    }
    // Each outcome is represented, so neither verifier can pass by always saying one thing.
    for expect in ["verified", "failed", "pending", "unpinned"] {
        assert!(cases.iter().any(|c| c["expect"] == expect), "{expect}");
    }
}
