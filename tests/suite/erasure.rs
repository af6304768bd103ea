//! Erasure that keeps the proofs: over HTTP (scopes, tenants, each refusal's status), through a
//! sealed trail (the bundle verifies with the field reported erased and its record named; a row
//! edited without a record fails; a range fetched before the record still proves it), and as a
//! property: any sequence of writes, seals and erasures verifies, and no erased value can be read
//! back from the store, an export or the feed.

use std::sync::{Arc, Mutex};

use auditline::apigw::http::Route;
use auditline::apigw::stream::archive_entries;
use auditline::domain::{AuditLogEntry, EntityType, EntryDetails, TenantId};
use auditline::erasure::{Erasure, ErasureRequest};
use auditline::export::ExportFormat;
use auditline::integrity::signing::{LocalSigner, Signer};
use auditline::seal::verify::{Bundle, PeriodLeaves, Verifier};
use auditline::seal::{SealSettings, SealStore, Sealer};
use auditline::store::{AuditStore, MemoryStore};
use auditline::{AuditLogger, AuditSettings, LogOutcome};
use auditline_tests::http::{call, memory_api, sample};
use auditline_tests::{all_entries, stepping_clock, tenant};
use chrono::{DateTime, Duration, DurationRound, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};
use uuid::Uuid;

fn erase_event(id: &str, tenant: &str, scopes: &str, body: &Value) -> Value {
    sample("http-erase.json", |e| {
        e["pathParameters"] = json!({ "id": id });
        e["body"] = json!(body.to_string());
        let caller = &mut e["requestContext"]["authorizer"]["lambda"];
        caller["tenant_id"] = json!(tenant);
        caller["scopes"] = json!(scopes);
    })
}

#[tokio::test]
async fn the_erasure_route_answers_each_case_with_its_status() {
    let api = memory_api();
    let created = call(&api, Route::Ingest, &auditline_tests::event("http-ingest.json")).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let erase = json!({"fields": ["ip_address", "user_id"], "reason": "GDPR art. 17, request 4711"});
    let eraser = "audit:read audit:erase";
    let bare = sample("http-ingest.json", |e| {
        e["body"] = json!(json!({"action": "VIEW", "entity_type": "FILE", "entity_id": "f-1"}).to_string());
        e["headers"].as_object_mut().unwrap().remove("idempotency-key");
    });
    let without_metadata = call(&api, Route::Ingest, &bare).await.body["id"].as_str().unwrap().to_owned();

    let cases = [
        ("without audit:erase", erase_event(&id, "acme", "audit:read audit:write", &erase), 403, "forbidden"),
        ("another tenant's entry", erase_event(&id, "globex", eraser, &erase), 404, "not_found"),
        ("an id that is no UUID", erase_event("nope", "acme", eraser, &erase), 400, "invalid_parameter"),
        (
            "an unknown field",
            erase_event(&id, "acme", eraser, &json!({"fields": ["colour"], "reason": "x"})),
            400,
            "invalid_entry",
        ),
        (
            "a field that identifies the entry",
            erase_event(&id, "acme", eraser, &json!({"fields": ["entity_id"], "reason": "x"})),
            400,
            "invalid_entry",
        ),
        ("no reason", erase_event(&id, "acme", eraser, &json!({"fields": ["user_id"]})), 400, "invalid_entry"),
        (
            "a field without a value",
            erase_event(&without_metadata, "acme", eraser, &json!({"fields": ["metadata"], "reason": "x"})),
            409,
            "nothing_to_erase",
        ),
    ];
    for (case, event, status, code) in cases {
        let reply = call(&api, Route::Erase, &event).await;
        assert_eq!((reply.status, reply.error_code()), (status, code), "{case}: {}", reply.body);
    }
    let get = sample("http-get-log.json", |e| e["pathParameters"]["id"] = json!(id));
    let unchanged = call(&api, Route::GetLog, &get).await;
    assert_eq!(unchanged.body["ip_address"], "203.0.113.24", "nothing refused changed the entry");

    let reply = call(&api, Route::Erase, &erase_event(&id, "acme", eraser, &erase)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (entry, record) = (&reply.body["entry"], &reply.body["record"]);
    assert_eq!((&entry["ip_address"], &entry["user_id"]), (&Value::Null, &Value::Null));
    assert_eq!(entry["integrity"]["erased_by"]["ip_address"], record["id"]);
    assert_eq!((record["entity_type"].as_str(), record["action"].as_str()), (Some("AUDIT_ENTRY"), Some("UPDATE")));
    assert_eq!(record["entity_id"].as_str(), Some(id.as_str()));
    assert_eq!(record["user_id"], "dpo-1", "who erased");
    assert_eq!(record["metadata"]["reason"], "GDPR art. 17, request 4711");
    assert_eq!(record["changes"]["erased"]["fields"], json!(["user_id", "ip_address"]));
    assert!(!entry.to_string().contains("user-789"), "the erased user id is gone");
    // The write replayed under its idempotency key: the entry as it is now, not as it was written
    // (the idempotency record keeps ids, never values).
    let replayed = call(&api, Route::Ingest, &auditline_tests::event("http-ingest.json")).await;
    assert_eq!((replayed.status, replayed.header("idempotent-replayed")), (201, Some("true")), "{}", replayed.body);
    assert_eq!(&replayed.body, entry, "the replay is the entry as erased");

    // A legal hold on the entry's project: its other fields cannot be erased until released.
    let hold = sample("http-place-hold.json", |e| {
        e["requestContext"]["authorizer"]["lambda"]["tenant_id"] = json!("acme");
    });
    let placed = call(&api, Route::PlaceHold, &hold).await;
    // The entry, and the record of its first erasure (in the same project).
    assert_eq!((placed.status, placed.body["entries"].as_u64()), (201, Some(2)), "{}", placed.body);
    let held = erase_event(&id, "acme", eraser, &json!({"fields": ["changes"], "reason": "GDPR"}));
    let refused = call(&api, Route::Erase, &held).await;
    assert_eq!((refused.status, refused.error_code()), (409, "legal_hold"), "{}", refused.body);
    assert!(refused.body["error"]["message"].as_str().unwrap().contains(placed.body["hold"]["id"].as_str().unwrap()));
    let release = sample("http-release-hold.json", |e| {
        e["pathParameters"]["hold_id"] = placed.body["hold"]["id"].clone();
    });
    assert_eq!(call(&api, Route::ReleaseHold, &release).await.status, 200);
    assert_eq!(call(&api, Route::Erase, &held).await.status, 200, "erasable once released");

    let twice = call(&api, Route::Erase, &erase_event(&id, "acme", eraser, &erase)).await;
    assert_eq!((twice.status, twice.error_code()), (409, "already_erased"), "{}", twice.body);
    assert!(twice.body["error"]["message"].as_str().unwrap().contains(record["id"].as_str().unwrap()));

    // Nobody writes a record of the service's own through the write path.
    let forged = sample("http-ingest.json", |e| {
        e["body"] = json!(json!({"action": "UPDATE", "entity_type": "AUDIT_ENTRY", "entity_id": id}).to_string());
        e["headers"].as_object_mut().unwrap().remove("idempotency-key");
    });
    let reply = call(&api, Route::Ingest, &forged).await;
    assert_eq!((reply.status, reply.body["error"]["parameter"].as_str()), (400, Some("entity_type")), "{}", reply.body);
}

/// A sealed trail of one tenant over `hours` hours, some of its entries erased in its last hour.
struct Sealed {
    bundle: Bundle,
    signer: LocalSigner,
    store: Arc<MemoryStore>,
    start: DateTime<Utc>,
}

async fn sealed_trail(erase: &[(usize, &[&str])]) -> Sealed {
    let store = Arc::new(MemoryStore::new());
    let acme = tenant("acme");
    let start = (Utc::now() - Duration::hours(5)).duration_trunc(Duration::hours(1)).unwrap();
    let (clock, _) = stepping_clock(start + Duration::seconds(30), 3 * 60_000);
    let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock);
    let mut written = Vec::new();
    // Two hours of entries (40), then the erasures and five more entries, in the third hour.
    for i in 0..40 {
        written.push(write(&logger, &acme, i).await);
    }
    for (i, fields) in erase {
        let request =
            ErasureRequest { fields: fields.iter().map(|f| (*f).to_owned()).collect(), reason: "GDPR".into() };
        logger.erase(&acme, written[*i].id, &request, &dpo()).await.unwrap();
    }
    // And five more entries, in the records' period.
    for i in 40..45 {
        write(&logger, &acme, i).await;
    }
    let signer = LocalSigner::generate().unwrap();
    let sealer = Sealer::new(
        store.clone(),
        Arc::new(LocalSigner::from_pem(&signer.private_key_pem()).unwrap()),
        SealSettings { lookback_hours: 24, ..SealSettings::default() },
    );
    sealer.run(Utc::now()).await.expect("sealed");
    let checkpoints = SealStore::checkpoints(store.as_ref(), &acme, None, None, 1000).await.unwrap();
    let entries = all_entries(store.clone(), &acme).await;
    Sealed { bundle: Bundle { entries, checkpoints, ..Bundle::default() }, signer, store, start }
}

/// The personal value entry `i` holds in `field`: fixed width, so none is part of another.
fn personal(i: usize, field: &str) -> String {
    match field {
        "user_id" => format!("person-{i:03}"),
        "changes" => format!("p{i:03}@example.com"),
        "ip_address" => format!("10.1{i:02}.0.1"),
        _ => format!("+44 20 7946 {i:04}"),
    }
}

async fn write(logger: &AuditLogger, t: &TenantId, i: usize) -> AuditLogEntry {
    let details = EntryDetails {
        project_id: Some(format!("project-{}", i % 3)),
        user_id: Some(personal(i, "user_id")),
        changes: Some(json!({"email": personal(i, "changes")})),
        ip_address: Some(personal(i, "ip_address")),
        metadata: i.is_multiple_of(2).then(|| json!({"phone": personal(i, "metadata")})),
    };
    let Ok(LogOutcome::Stored(e)) = logger.log_update(t, EntityType::Report, &format!("report-{i}"), details).await
    else {
        panic!("entry {i} stored")
    };
    e
}

#[tokio::test]
async fn an_erased_trail_verifies_with_each_field_named_and_its_record() {
    let trail = sealed_trail(&[(3, &["ip_address"]), (17, &["user_id", "changes"])]).await;
    let verifier = Verifier::new([trail.signer.public_key_der()]);
    let summary = verifier.verify(&trail.bundle);
    assert!(summary.is_valid(), "{summary}: {:?}", summary.failures);
    assert_eq!(summary.entries_valid, 47, "45 entries and 2 erasure records");
    assert_eq!(summary.erased.len(), 2);
    let records: Vec<&AuditLogEntry> =
        trail.bundle.entries.iter().filter(|e| e.entity_type == EntityType::AuditEntry).collect();
    let erased_17 = trail.bundle.entries.iter().find(|e| e.entity_id == "report-17").unwrap();
    let fields: Vec<&str> = summary.erased[&erased_17.id].iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["user_id", "changes"]);
    assert!(summary.erased[&erased_17.id].iter().all(|(_, r)| records.iter().any(|rec| rec.id == *r)));

    // The row edited by whoever can write the table, without a record: the field is named.
    let mut edited = trail.bundle.clone();
    let victim = edited.entries.iter_mut().find(|e| e.entity_id == "report-8").unwrap();
    Erasure::plan(victim, &["user_id"], Uuid::now_v7()).unwrap().apply(victim);
    let summary = verifier.verify(&edited);
    let failures: Vec<String> = summary.failures.iter().map(ToString::to_string).collect();
    assert!(failures.iter().any(|f| f.contains("field user_id is erased by record")), "{failures:?}");
    // …and if the record named is the one of another erasure, it does not cover this entry.
    let mut borrowed = trail.bundle.clone();
    let victim = borrowed.entries.iter_mut().find(|e| e.entity_id == "report-9").unwrap();
    Erasure::plan(victim, &["ip_address"], records[0].id).unwrap().apply(victim);
    let failures: Vec<String> = verifier.verify(&borrowed).failures.iter().map(ToString::to_string).collect();
    assert!(failures.iter().any(|f| f.contains("not an erasure record of this entry")), "{failures:?}");
    // The record removed from the bundle: named as missing.
    let mut without = trail.bundle.clone();
    without.entries.retain(|e| e.entity_type != EntityType::AuditEntry);
    let failures: Vec<String> = verifier.verify(&without).failures.iter().map(ToString::to_string).collect();
    assert!(failures.iter().any(|f| f.contains("which is not in the bundle")), "{failures:?}");
}

#[tokio::test]
async fn a_range_before_the_record_is_proven_with_the_records_period_leaves() {
    let trail = sealed_trail(&[(5, &["ip_address"])]).await;
    let verifier = |b: &Bundle| {
        Verifier::new([trail.signer.public_key_der()])
            .with_range(Some(trail.start), Some(trail.start + Duration::minutes(119)))
            .verify(b)
    };
    let record = trail.bundle.entries.iter().find(|e| e.entity_type == EntityType::AuditEntry).unwrap().clone();
    let in_range: Vec<AuditLogEntry> =
        trail.bundle.entries.iter().filter(|e| e.timestamp < trail.start + Duration::hours(2)).cloned().collect();
    assert_eq!(in_range.len(), 40);
    let period = trail
        .bundle
        .checkpoints
        .iter()
        .find(|c| {
            let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().to_utc();
            at(&c.body.start) <= record.timestamp && record.timestamp < at(&c.body.end)
        })
        .expect("the record's period is sealed");
    let mut period_entries: Vec<&AuditLogEntry> = trail
        .bundle
        .entries
        .iter()
        .filter(|e| {
            e.timestamp.duration_trunc(Duration::hours(1)).unwrap()
                == record.timestamp.duration_trunc(Duration::hours(1)).unwrap()
        })
        .collect();
    period_entries.sort_by_key(|e| e.id);
    let leaves = PeriodLeaves {
        end: period.body.end.clone(),
        ids: period_entries.iter().map(|e| e.id).collect(),
        leaves: period_entries.iter().map(|e| e.integrity.leaf_hash).collect(),
    };
    // As fetch writes it: the range's entries, the record, and the record's period's leaves.
    let mut bundle =
        Bundle { entries: in_range.clone(), checkpoints: trail.bundle.checkpoints.clone(), ..Bundle::default() };
    bundle.entries.push(record.clone());
    bundle.periods.push(leaves);
    let summary = verifier(&bundle);
    assert!(summary.is_valid(), "{summary}: {:?}", summary.failures);
    assert_eq!(summary.erased.len(), 1);
    // Without the leaves the record's period cannot be checked from one entry of it.
    bundle.periods.clear();
    assert!(!verifier(&bundle).is_valid());
    // A forged record in the record's place (changed after sealing) is not in its period.
    let mut forged = Bundle { entries: in_range, checkpoints: trail.bundle.checkpoints.clone(), ..Bundle::default() };
    let mut fake = record.clone();
    fake.metadata = Some(serde_json::from_value(json!({"reason": "nothing to see"})).unwrap());
    forged.entries.push(fake);
    forged.periods = trail_leaves(&trail, &record);
    assert!(!verifier(&forged).is_valid());
    drop(trail.store);
}

fn trail_leaves(trail: &Sealed, record: &AuditLogEntry) -> Vec<PeriodLeaves> {
    let hour = record.timestamp.duration_trunc(Duration::hours(1)).unwrap();
    let c = trail
        .bundle
        .checkpoints
        .iter()
        .find(|c| DateTime::parse_from_rfc3339(&c.body.start).unwrap().to_utc() == hour)
        .unwrap();
    let mut entries: Vec<&AuditLogEntry> = trail
        .bundle
        .entries
        .iter()
        .filter(|e| e.timestamp.duration_trunc(Duration::hours(1)).unwrap() == hour)
        .collect();
    entries.sort_by_key(|e| e.id);
    vec![PeriodLeaves {
        end: c.body.end.clone(),
        ids: entries.iter().map(|e| e.id).collect(),
        leaves: entries.iter().map(|e| e.integrity.leaf_hash).collect(),
    }]
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Step {
    Write,
    /// Erase these fields (by index into the erasable ones) of the n-th entry written so far.
    Erase(usize, Vec<usize>),
    Seal,
    /// Place a legal hold on the project of the n-th entry written so far.
    Hold(usize),
    /// Release the n-th hold standing.
    Release(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => Just(Step::Write),
        3 => (0usize..64, proptest::collection::vec(0usize..4, 1..3)).prop_map(|(n, f)| Step::Erase(n, f)),
        1 => Just(Step::Seal),
        1 => (0usize..64).prop_map(Step::Hold),
        1 => (0usize..8).prop_map(Step::Release),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any sequence of writes, seals, erasures and legal holds verifies — from the store and from
    /// the archive; no erased value can be read back from the store, an export (every format), the
    /// archive (its objects, or opened with its keys) or the feed's frames after the erasure; and a
    /// held entry is refused erasure and does not expire.
    #[test]
    fn any_history_of_writes_seals_erasures_and_holds_verifies_and_forgets_what_was_erased(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(history(steps))?;
    }
}

async fn history(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let store = Arc::new(MemoryStore::new());
    let acme = tenant("acme");
    let start = (Utc::now() - Duration::hours(6)).duration_trunc(Duration::hours(1)).unwrap();
    // A minute each time the clock is read: a history of 60 steps spans a few hours, so seals cut
    // through it.
    let (clock, millis) = stepping_clock(start, 60_000);
    let now = move || DateTime::from_timestamp_millis(millis.load(std::sync::atomic::Ordering::SeqCst)).unwrap();
    let archive_keys = Arc::new(auditline::archive::shred::MemoryArchiveKeys::default());
    let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock)
        .with_policies(Arc::new(auditline::retention::MemoryPolicies::default()))
        .with_archive_keys(archive_keys.clone());
    let feed: Arc<Mutex<Vec<String>>> = Arc::default();
    let heard = feed.clone();
    // Every entry stored (records too) also goes to the archive, after each step, as its stream does.
    let to_archive: Arc<Mutex<Vec<AuditLogEntry>>> = Arc::default();
    let stream = to_archive.clone();
    logger.add_listener(move |e| {
        heard.lock().unwrap().push(serde_json::to_string(e).unwrap());
        stream.lock().unwrap().push(e.clone());
    });
    let archive = auditline_tests::MemorySink::default();
    let mut sequence = 0usize;
    let mut holds: Vec<Uuid> = Vec::new();
    let signer = LocalSigner::generate().unwrap();
    let sealer = Sealer::new(
        store.clone(),
        Arc::new(LocalSigner::from_pem(&signer.private_key_pem()).unwrap()),
        SealSettings { lookback_hours: 24, ..SealSettings::default() },
    );
    let erasable = auditline::erasure::ERASABLE_FIELDS;
    // Each entry written, with the number its values were made from.
    let mut written: Vec<(AuditLogEntry, usize)> = Vec::new();
    let mut erased_values: Vec<String> = Vec::new();
    for (i, step) in steps.into_iter().enumerate() {
        match step {
            Step::Write => written.push((write(&logger, &acme, i).await, i)),
            Step::Erase(n, fields) if !written.is_empty() => {
                let (target, made_from) = written[n % written.len()].clone();
                let mut names: Vec<String> = fields.iter().map(|f| erasable[*f].to_owned()).collect();
                names.dedup();
                let request = ErasureRequest { fields: names.clone(), reason: "GDPR".into() };
                let current = logger.get_log(&acme, target.id).await.unwrap().unwrap();
                let heard_before = feed.lock().unwrap().len();
                match logger.erase(&acme, target.id, &request, &dpo()).await {
                    Ok(_) => {
                        erased_values.extend(names.iter().map(|name| personal(made_from, name)));
                        // The frames since carry the record only: no value of the erased fields.
                        for frame in &feed.lock().unwrap()[heard_before..] {
                            for v in &erased_values {
                                prop_assert!(!frame.contains(v.as_str()), "{v} in a frame after its erasure");
                            }
                        }
                    }
                    // Erasing twice, or a field with no value: refused, and nothing changed.
                    Err(auditline::logger::EraseFailure::Refused(_)) => {
                        prop_assert_eq!(logger.get_log(&acme, target.id).await.unwrap().unwrap(), current);
                    }
                    // Under a hold: refused, nothing changed, and the entry does not expire.
                    Err(auditline::logger::EraseFailure::Held(hold)) => {
                        prop_assert!(holds.contains(&hold));
                        prop_assert_eq!(&logger.get_log(&acme, target.id).await.unwrap().unwrap(), &current);
                        prop_assert_eq!(current.expires_at, auditline::retention::HELD_UNTIL);
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("erasure failed: {e}"))),
                }
            }
            Step::Erase(..) => {}
            Step::Seal => {
                sealer.run(now()).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Step::Hold(n) if !written.is_empty() => {
                let project = written[n % written.len()].0.project_id.clone().unwrap();
                let scope = auditline::retention::HoldScope::Project { project_id: project };
                match logger.place_hold(&acme, scope, "case 1", &dpo()).await {
                    Ok(placed) => holds.push(placed.hold.id),
                    // More holds than a tenant may have: refused, nothing changed.
                    Err(auditline::logger::PolicyFailure::Refused(auditline::retention::PolicyError::TooManyHolds)) => {
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("hold failed: {e}"))),
                }
            }
            Step::Release(n) if !holds.is_empty() => {
                let hold = holds.remove(n % holds.len());
                logger.release_hold(&acme, hold, &dpo()).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Step::Hold(_) | Step::Release(_) => {}
        }
        let batch: Vec<(String, AuditLogEntry)> = std::mem::take(&mut *to_archive.lock().unwrap())
            .into_iter()
            .map(|e| {
                sequence += 1;
                (sequence.to_string(), e)
            })
            .collect();
        let archived = archive_entries(batch, &archive, archive_keys.as_ref()).await;
        prop_assert!(!archived.retried);
    }
    // Everything closed is sealed at the end, as the verifier (on the real clock) expects.
    sealer.run(Utc::now()).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
    let checkpoints = SealStore::checkpoints(store.as_ref(), &acme, None, None, 1000).await.unwrap();
    let entries = all_entries(store.clone() as Arc<dyn AuditStore>, &acme).await;
    let bundle = Bundle { entries: entries.clone(), checkpoints, ..Bundle::default() };
    let summary = Verifier::new([signer.public_key_der()]).verify(&bundle);
    prop_assert!(summary.is_valid(), "{}: {:?}", summary, summary.failures);
    // Read back: the store, and every export format.
    let stored = serde_json::to_string(&entries).unwrap();
    let exports: Vec<String> = [ExportFormat::Jsonl, ExportFormat::Csv, ExportFormat::Ocsf]
        .into_iter()
        .map(|f| entries.iter().map(|e| f.line(e)).collect::<String>())
        .collect();
    // The archive: every entry there once, and its bundle verifies as the store's does.
    let archived = archive.opened(archive_keys.as_ref()).await;
    let mut stored_ids: Vec<Uuid> = entries.iter().map(|e| e.id).collect();
    stored_ids.sort();
    prop_assert_eq!(archived.iter().map(|e| e.id).collect::<Vec<_>>(), stored_ids);
    let from_archive = Bundle { entries: archived.clone(), ..bundle };
    let summary = Verifier::new([signer.public_key_der()]).verify(&from_archive);
    prop_assert!(summary.is_valid(), "the archive: {}: {:?}", summary, summary.failures);
    let archived_text = serde_json::to_string(&archived).unwrap();
    let archive_raw = archive.raw_text();
    for v in &erased_values {
        prop_assert!(!stored.contains(v), "{} readable from the store", v);
        for export in &exports {
            prop_assert!(!export.contains(v), "{} readable from an export", v);
        }
        prop_assert!(!archived_text.contains(v), "{} readable from the archive with its keys", v);
        prop_assert!(!archive_raw.contains(v), "{} in an archive object", v);
    }
    // What stands held does not expire; what was released has its retention back.
    let policy_holds = holds.len();
    for e in &entries {
        let held = e.expires_at == auditline::retention::HELD_UNTIL;
        prop_assert!(held || e.expires_at < auditline::retention::HELD_UNTIL);
        if policy_holds == 0 {
            prop_assert!(!held, "{} still held after every hold was released", e.id);
        }
    }
    Ok(())
}

fn dpo() -> auditline::logger::Actor {
    auditline::logger::Actor { user_id: Some("dpo".into()), ip_address: None }
}

#[tokio::test]
async fn a_record_forged_into_a_sealed_period_or_a_field_no_erasure_may_remove_fails() {
    let trail = sealed_trail(&[]).await;
    let verifier = Verifier::new([trail.signer.public_key_der()]);
    // A record inserted into the first (sealed) hour, naming an entry of that hour: the period no
    // longer matches its checkpoint, so the record is not proven, and neither is the erasure.
    let mut forged = trail.bundle.clone();
    let victim_at = forged.entries.iter().position(|e| e.entity_id == "report-2").unwrap();
    let victim = forged.entries[victim_at].clone();
    let record = auditline::erasure::record(&victim, &["user_id"], "cover-up", Some("insider".into()), None)
        .validate()
        .unwrap()
        .stamp(victim.timestamp + Duration::seconds(1), 90)
        .unwrap();
    Erasure::plan(&victim, &["user_id"], record.id).unwrap().apply(&mut forged.entries[victim_at]);
    forged.entries.push(record);
    let failures: Vec<String> = verifier.verify(&forged).failures.iter().map(ToString::to_string).collect();
    assert!(failures.iter().any(|f| f.contains("which is not proven itself")), "{failures:?}");
    // A field that places the entry (its project) cannot be erased, record or not.
    let mut moved = trail.bundle.clone();
    let e = moved.entries.iter_mut().find(|e| e.entity_id == "report-3").unwrap();
    let value = serde_json::to_value(&e.project_id).unwrap();
    e.integrity.erase("project_id", &value, &auditline::domain::entry::COMMITTED_FIELDS, Uuid::now_v7()).unwrap();
    e.project_id = None;
    let failures: Vec<String> = verifier.verify(&moved).failures.iter().map(ToString::to_string).collect();
    assert!(
        failures.iter().any(|f| f.contains("field project_id is erased, but no erasure may remove it")),
        "{failures:?}"
    );
}
