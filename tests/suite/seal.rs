//! Seals on both stores: periods closed into a signed chain that the offline verifier accepts,
//! proofs of single entries, writes racing a seal (each stored entry in exactly one tree, every
//! other write refused), and two seals racing each other (one chain, no fork).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use auditline::apigw::http::Route;
use auditline::domain::{AuditAction, AuditLogEntry, EntityType};
use auditline::idempotency::MemoryIdempotency;
use auditline::integrity::signing::{LocalSigner, Signer};
use auditline::seal::EntryProof;
use auditline::seal::verify::{Bundle, Verifier};
use auditline::seal::{ProofOutcome, SealSettings, SealStore, Sealer, StaticKeys, prove};
use auditline::store::dynamo::tables::{CHECKPOINTS, COUNTERS, ENTRIES, PROOFS};
use auditline::store::dynamo::{SealTables, client_for_local_endpoint};
use auditline::store::{AuditStore, DynamoStore, MemoryStore, StoreError};
use auditline::{AuditError, AuditLogger, AuditSettings, LogOutcome};
use auditline_tests::http::{api_with_seal, call, sample, with_query};
use auditline_tests::{Backend, all_entries, fixed_clock, fresh_table, new_entry, stepping_clock, tenant};
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::json;

/// A store that is both an audit store and a seal store, on either backend.
async fn stores(backend: Backend) -> (Arc<dyn AuditStore>, Arc<dyn SealStore>) {
    match backend {
        Backend::Memory => {
            let store = Arc::new(MemoryStore::new());
            (store.clone(), store)
        }
        Backend::Sqlite => {
            let store = Arc::new(auditline_tests::fresh_sqlite_store());
            (store.clone(), store)
        }
        Backend::Dynamo => {
            let client = client_for_local_endpoint(&auditline_tests::dynamodb_endpoint(), None);
            let tables = SealTables {
                checkpoints: fresh_table(&client, &CHECKPOINTS, "checkpoints").await,
                proofs: fresh_table(&client, &PROOFS, "proofs").await,
                retention_days: 90,
            };
            let entries = fresh_table(&client, &ENTRIES, "entries").await;
            let counters = fresh_table(&client, &COUNTERS, "counters").await;
            let store = Arc::new(DynamoStore::new(client, entries, counters).with_seal_tables(tables));
            (store.clone(), store)
        }
    }
}

fn sealer(store: Arc<dyn SealStore>, signer: Arc<LocalSigner>) -> Sealer {
    // Two days back is enough for these tests, and keeps a first run's hourly queries few.
    Sealer::new(store, signer, SealSettings { lookback_hours: 48, ..SealSettings::default() })
}

fn hours_back(h: i64) -> DateTime<Utc> {
    (Utc::now() - Duration::hours(h)).duration_trunc(Duration::hours(1)).unwrap()
}

fn stored(outcome: Result<LogOutcome, AuditError>) -> AuditLogEntry {
    match outcome.expect("stored") {
        LogOutcome::Stored(e) => e,
        LogOutcome::Disabled => unreachable!(),
    }
}

auditline_tests::on_every_backend!(
    sealed_periods_form_a_chain_the_verifier_accepts,
    writes_racing_a_seal_are_in_its_tree_or_refused,
    two_seals_at_once_make_one_chain,
    the_integrity_routes_serve_the_chain_proofs_and_keys,
    entries_past_retention_leave_a_chain_that_verifies,
);

async fn sealed_periods_form_a_chain_the_verifier_accepts(backend: Backend) {
    let (store, seal_store) = stores(backend).await;
    let acme = tenant("acme");
    // 30 entries over three hours, 6 minutes apart, starting four hours ago.
    let start = hours_back(4);
    let (clock, _) = stepping_clock(start + Duration::minutes(1), 6 * 60_000);
    let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock);
    let mut written = Vec::new();
    for i in 0..30 {
        let request = new_entry(&acme, AuditAction::ALL[i % 6], EntityType::ALL[i % 7], &format!("e-{i}"), None, None);
        written.push(stored(logger.log(request).await));
    }
    let signer = Arc::new(LocalSigner::generate().unwrap());
    let sealer = sealer(seal_store.clone(), signer.clone());
    // The sealer as scheduled: a run after each hour and its grace.
    for h in 1..=4 {
        sealer.run(start + Duration::hours(h) + Duration::minutes(5)).await.unwrap();
    }
    let checkpoints = seal_store.checkpoints(&acme, None, None, 100).await.unwrap();
    assert_eq!(checkpoints.len(), 3, "one checkpoint per hour with entries");
    assert_eq!(checkpoints.iter().map(|c| c.body.size).sum::<u64>(), 30);
    let bundle = Bundle { entries: all_entries(store.clone(), &acme).await, checkpoints, ..Bundle::default() };
    let summary = Verifier::new([signer.public_key_der()]).verify(&bundle);
    assert!(summary.is_valid(), "{summary}: {:?}", summary.failures);
    assert_eq!(summary.to_string(), "tenant acme: 3/3 checkpoints valid, 30/30 entries valid");

    // One entry's proof: a few reads, checked offline.
    for entry in [&written[0], &written[17], &written[29]] {
        match prove(seal_store.as_ref(), entry.clone(), &SealSettings::default()).await.unwrap() {
            ProofOutcome::Proven(proof) => assert_eq!(proof.verify(signer.public_key_der()), Ok(vec![])),
            other => panic!("{} is sealed: {other:?}", entry.id),
        }
    }
    // An entry of the open hour is not sealed yet, and says when it will be.
    let now_logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), fixed_clock(Utc::now()));
    let fresh = stored(now_logger.log(new_entry(&acme, AuditAction::View, EntityType::File, "f", None, None)).await);
    match prove(seal_store.as_ref(), fresh.clone(), &SealSettings::default()).await.unwrap() {
        ProofOutcome::NotSealed { sealed_after } => assert!(sealed_after > fresh.timestamp),
        other => panic!("not sealed yet: {other:?}"),
    }
    // Each checkpoint names the tenant's log, and the totals count every entry sealed so far.
    let checkpoints = seal_store.checkpoints(&acme, None, None, 100).await.unwrap();
    let mut total = 0;
    for c in &checkpoints {
        total += c.body.size;
        assert_eq!((c.body.origin.as_str(), c.body.total), ("auditline.local/acme", total));
    }
    // The newest first, as a witness's catch-up reads them.
    let latest = seal_store.latest_checkpoints(&acme, 2).await.unwrap();
    assert_eq!(latest, vec![checkpoints[2].clone(), checkpoints[1].clone()]);
}

async fn writes_racing_a_seal_are_in_its_tree_or_refused(backend: Backend) {
    let (store, seal_store) = stores(backend).await;
    let acme = tenant("acme");
    // Writers whose clock stands in an hour that the sealer closes while they write.
    let hour = hours_back(2);
    let (clock, _) = stepping_clock(hour + Duration::minutes(30), 1);
    let logger = Arc::new(AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock));
    let signer = Arc::new(LocalSigner::generate().unwrap());
    let sealer = sealer(seal_store.clone(), signer.clone());
    let accepted = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (logger, accepted, refused, acme) = (logger.clone(), accepted.clone(), refused.clone(), acme.clone());
            tokio::spawn(async move {
                for i in 0..25 {
                    let request =
                        new_entry(&acme, AuditAction::Create, EntityType::File, &format!("w{w}-{i}"), None, None);
                    match logger.log(request).await {
                        Ok(_) => accepted.fetch_add(1, Ordering::SeqCst),
                        Err(AuditError::Store(StoreError::Sealed(_))) => refused.fetch_add(1, Ordering::SeqCst),
                        Err(e) => panic!("{e}"),
                    };
                }
            })
        })
        .collect();
    // Let some writes land first, then seal while the rest are in flight.
    while accepted.load(Ordering::SeqCst) < 20 {
        tokio::task::yield_now().await;
    }
    let report = sealer.seal_tenant(&acme, hour, hour + Duration::hours(1) + Duration::minutes(5)).await.unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let (accepted, refused) = (accepted.load(Ordering::SeqCst), refused.load(Ordering::SeqCst));
    assert_eq!(accepted + refused, 200);
    let stored = all_entries(store.clone(), &acme).await;
    assert_eq!(stored.len(), accepted, "every refused write stored nothing");
    let checkpoints = seal_store.checkpoints(&acme, None, None, 10).await.unwrap();
    assert_eq!(report.checkpoints, 1);
    assert_eq!(checkpoints[0].body.size as usize, accepted, "every stored entry is in the sealed tree");
    let summary =
        Verifier::new([signer.public_key_der()]).verify(&Bundle { entries: stored, checkpoints, ..Bundle::default() });
    assert!(summary.is_valid(), "{summary}: {:?}", summary.failures);
}

async fn two_seals_at_once_make_one_chain(backend: Backend) {
    let (store, seal_store) = stores(backend).await;
    let acme = tenant("acme");
    let start = hours_back(5);
    let (clock, _) = stepping_clock(start, 20 * 60_000);
    let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock);
    for i in 0..12 {
        stored(
            logger.log(new_entry(&acme, AuditAction::Update, EntityType::Report, &format!("r-{i}"), None, None)).await,
        );
    }
    let signer = Arc::new(LocalSigner::generate().unwrap());
    let (a, b) = (sealer(seal_store.clone(), signer.clone()), sealer(seal_store.clone(), signer.clone()));
    let now = Utc::now();
    let (ra, rb) = tokio::join!(a.seal_tenant(&acme, start, now), b.seal_tenant(&acme, start, now));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let checkpoints = seal_store.checkpoints(&acme, None, None, 100).await.unwrap();
    assert_eq!(checkpoints.len(), 4, "four hours with entries, each sealed once ({ra:?}, {rb:?})");
    let summary = Verifier::new([signer.public_key_der()]).verify(&Bundle {
        entries: all_entries(store, &acme).await,
        checkpoints,
        ..Bundle::default()
    });
    assert!(summary.is_valid(), "no fork: {summary}: {:?}", summary.failures);
}

/// The API Gateway event of an integrity route for a caller of `tenant`.
fn integrity_event(file: &str, tenant: &str, edit: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
    sample(file, |e| {
        e["requestContext"]["authorizer"]["lambda"]["tenant_id"] = json!(tenant);
        edit(e);
    })
}

async fn the_integrity_routes_serve_the_chain_proofs_and_keys(backend: Backend) {
    let (store, seal_store) = stores(backend).await;
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let start = hours_back(5);
    let (clock, _) = stepping_clock(start + Duration::minutes(1), 15 * 60_000);
    let mut api = api_with_seal(store.clone(), seal_store.clone(), Arc::new(MemoryIdempotency::new()));
    api.logger = Arc::new(AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock));
    // Four hours of acme (four entries an hour), and one entry of globex.
    let mut written = Vec::new();
    for i in 0..16 {
        let request = new_entry(&acme, AuditAction::Update, EntityType::File, &format!("f-{i}"), None, None);
        written.push(stored(api.logger.log(request).await));
    }
    let theirs = stored(api.logger.log(new_entry(&globex, AuditAction::View, EntityType::File, "g", None, None)).await);
    let signer = Arc::new(LocalSigner::generate().unwrap());
    sealer(seal_store.clone(), signer.clone()).run(Utc::now()).await.unwrap();

    // The chain, paged: two, then the rest; a date range narrows it.
    let page = |query: Vec<(&'static str, String)>| {
        integrity_event("http-checkpoints.json", "acme", move |e| {
            let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            with_query(e, &pairs)
        })
    };
    let first = call(&api, Route::Checkpoints, &page(vec![("limit", "2".into())])).await;
    assert_eq!((first.status, first.body["count"].as_u64()), (200, Some(2)), "{}", first.body);
    let token = first.body["next_token"].as_str().expect("more to come").to_owned();
    let rest = call(&api, Route::Checkpoints, &page(vec![("limit", "2".into()), ("next_token", token)])).await;
    assert_eq!((rest.body["count"].as_u64(), &rest.body["next_token"]), (Some(2), &json!(null)), "{}", rest.body);
    let chain: Vec<serde_json::Value> =
        [&first, &rest].iter().flat_map(|r| r.body["checkpoints"].as_array().unwrap().clone()).collect();
    assert_eq!(chain.iter().map(|c| c["size"].as_u64().unwrap()).sum::<u64>(), 16);
    assert!(chain.iter().all(|c| c["tenant"] == "acme"), "only the caller's tenant");
    let second_hour = (start + Duration::hours(1) + Duration::minutes(30)).to_rfc3339();
    let narrowed =
        call(&api, Route::Checkpoints, &page(vec![("start_date", second_hour.clone()), ("end_date", second_hour)]))
            .await;
    assert_eq!(narrowed.body["count"].as_u64(), Some(1), "{}", narrowed.body);
    assert_eq!(narrowed.body["checkpoints"][0], chain[1]);
    for (name, value) in [("limit", "0"), ("next_token", "!!"), ("start_date", "yesterday")] {
        let reply = call(&api, Route::Checkpoints, &page(vec![(name, value.into())])).await;
        assert_eq!((reply.status, reply.body["error"]["parameter"].as_str()), (400, Some(name)), "{}", reply.body);
    }

    // A proof, checked offline from the response alone.
    let proof_of = |tenant: &'static str, id: String| {
        integrity_event("http-proof.json", tenant, move |e| e["pathParameters"] = json!({ "id": id }))
    };
    for entry in [&written[0], &written[9], &written[15]] {
        let reply = call(&api, Route::Proof, &proof_of("acme", entry.id.to_string())).await;
        assert_eq!((reply.status, &reply.body["sealed"]), (200, &json!(true)), "{}", reply.body);
        let proof: EntryProof = serde_json::from_value(reply.body.clone()).expect("a proof");
        assert_eq!(proof.entry, *entry);
        assert_eq!(proof.verify(signer.public_key_der()), Ok(vec![]));
    }
    // Another tenant's entry is not found, whoever sealed it; a bad id is named.
    let reply = call(&api, Route::Proof, &proof_of("acme", theirs.id.to_string())).await;
    assert_eq!(reply.status, 404);
    let reply = call(&api, Route::Proof, &proof_of("globex", theirs.id.to_string())).await;
    assert_eq!(reply.status, 200);
    let reply = call(&api, Route::Proof, &proof_of("acme", "nope".into())).await;
    assert_eq!((reply.status, reply.body["error"]["parameter"].as_str()), (400, Some("id")));
    // An entry of the open period: not sealed yet, and when to ask again.
    let now_logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), fixed_clock(Utc::now()));
    let fresh = stored(now_logger.log(new_entry(&acme, AuditAction::View, EntityType::File, "f", None, None)).await);
    let reply = call(&api, Route::Proof, &proof_of("acme", fresh.id.to_string())).await;
    assert_eq!((reply.status, &reply.body["sealed"]), (200, &json!(false)), "{}", reply.body);
    let after = DateTime::parse_from_rfc3339(reply.body["sealed_after"].as_str().unwrap()).unwrap();
    assert!(after > fresh.timestamp);

    // The keys, with no credentials at all: from the signer's configuration (here a fixed list),
    // never from the tables.
    api.keys = Arc::new(StaticKeys::of(signer.as_ref()));
    let anonymous = sample("http-keys.json", |e| {
        e["requestContext"].as_object_mut().unwrap().remove("authorizer");
    });
    let keys = call(&api, Route::Keys, &anonymous).await;
    assert_eq!(keys.status, 200);
    assert_eq!(keys.body["keys"].as_array().map(Vec::len), Some(1), "{}", keys.body);
    assert_eq!(keys.body["keys"][0]["key_id"].as_str(), Some(signer.key_id()));
    let pem = keys.body["keys"][0]["public_key_pem"].as_str().unwrap();
    assert_eq!(auditline::integrity::signing::pem_der(pem, "PUBLIC KEY").unwrap(), signer.public_key_der());
    assert_eq!(keys.body["keys"][0].get("valid_until"), None, "the current key's window is open");

    // The head, as JSON and as the C2SP note the seal key signed.
    let latest =
        call(&api, Route::LatestCheckpoint, &integrity_event("http-latest-checkpoint.json", "acme", |_| {})).await;
    assert_eq!(latest.status, 200);
    assert!(latest.header("content-type").is_some_and(|t| t.starts_with("text/plain")));
    let note = latest.text.clone();
    let parsed = auditline::integrity::note::Note::parse(&note).expect("a signed note");
    let head = chain.last().unwrap();
    assert!(parsed.text.starts_with("auditline.local/acme\n16\n"), "{note}");
    assert_eq!(parsed.signatures[0].name, "auditline.local/acme");
    assert!(auditline::integrity::signing::verify(
        signer.public_key_der(),
        parsed.text.as_bytes(),
        &parsed.signatures[0].signature
    ));
    let as_json = call(
        &api,
        Route::LatestCheckpoint,
        &integrity_event("http-latest-checkpoint.json", "acme", |e| {
            e["headers"]["accept"] = json!("application/json");
        }),
    )
    .await;
    assert_eq!((&as_json.body["checkpoint"], as_json.body["note"].as_str()), (head, Some(note.as_str())));
    let none =
        call(&api, Route::LatestCheckpoint, &integrity_event("http-latest-checkpoint.json", "initech", |_| {})).await;
    assert_eq!(none.status, 404, "no chain yet");

    // A period's leaves: ids and hashes in tree order, which hash to its checkpoint.
    let end = chain[1]["end"].as_str().unwrap().to_owned();
    let leaves = call(
        &api,
        Route::PeriodLeaves,
        &integrity_event("http-checkpoint-leaves.json", "acme", |e| with_query(e, &[("end", end.as_str())])),
    )
    .await;
    assert_eq!(leaves.status, 200, "{}", leaves.body);
    let leaves: auditline::seal::verify::PeriodLeaves = serde_json::from_value(leaves.body).unwrap();
    assert_eq!(leaves.ids, written[4..8].iter().map(|e| e.id).collect::<Vec<_>>());
    assert_eq!(auditline::integrity::merkle::root(&leaves.leaves).to_hex(), chain[1]["root"].as_str().unwrap());
    let elsewhere = call(
        &api,
        Route::PeriodLeaves,
        &integrity_event("http-checkpoint-leaves.json", "globex", |e| with_query(e, &[("end", end.as_str())])),
    )
    .await;
    assert_eq!(elsewhere.status, 404, "another tenant's period is not found");
}

async fn entries_past_retention_leave_a_chain_that_verifies(backend: Backend) {
    let (store, seal_store) = stores(backend).await;
    let acme = tenant("acme");
    let settings = AuditSettings { retention_days: 1, ..AuditSettings::default() };
    // Ten entries that reach the end of their day's retention three seconds from now, and ten from
    // the last three hours that stay.
    let (expiring, _) = stepping_clock(Utc::now() - Duration::days(1) + Duration::seconds(3), 1);
    let logger = AuditLogger::with_clock(store.clone(), settings, expiring);
    let mut old = Vec::new();
    for i in 0..10 {
        old.push(stored(
            logger.log(new_entry(&acme, AuditAction::Create, EntityType::File, &format!("o-{i}"), None, None)).await,
        ));
    }
    let (recent, _) = stepping_clock(hours_back(3) + Duration::minutes(1), 10 * 60_000);
    let logger = AuditLogger::with_clock(store.clone(), settings, recent);
    for i in 0..10 {
        stored(
            logger.log(new_entry(&acme, AuditAction::Update, EntityType::File, &format!("r-{i}"), None, None)).await,
        );
    }
    let signer = Arc::new(LocalSigner::generate().unwrap());
    sealer(seal_store.clone(), signer.clone()).run(Utc::now()).await.unwrap();
    let sealed = seal_store.checkpoints(&acme, None, None, 100).await.unwrap();
    assert_eq!(sealed.iter().map(|c| c.body.size).sum::<u64>(), 20, "all twenty sealed before any expired");

    // The store's TTL takes the old ten (a read no longer returns them); checkpoints stay.
    let last_expiry = old.iter().map(|e| e.expires_at).max().unwrap();
    while Utc::now().timestamp() <= last_expiry {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let bundle = Bundle {
        entries: all_entries(store.clone(), &acme).await,
        checkpoints: seal_store.checkpoints(&acme, None, None, 100).await.unwrap(),
        ..Bundle::default()
    };
    assert_eq!(bundle.entries.len(), 10);
    assert_eq!(bundle.checkpoints, sealed, "retention never removes a checkpoint");
    let verifier = Verifier::new([signer.public_key_der()]);
    let horizon = Utc::now() - Duration::days(1);
    // The horizon cuts through the old entries' period: without its leaves, the verifier cannot
    // tell entries past retention from removed ones, and says so.
    let summary = verifier.clone().with_expired_before(horizon).verify(&bundle);
    assert!(summary.failures.iter().any(|f| f.to_string().contains("are all missing")), "{summary}");
    // With the leaves the service keeps with the checkpoint (as `auditline fetch` downloads them),
    // each missing entry is seen to be older than the horizon.
    let mut with_leaves = bundle.clone();
    for c in &sealed {
        if let Some(leaves) = auditline::seal::period_leaves(seal_store.as_ref(), &acme, c).await.unwrap() {
            let (ids, leaves) = leaves.into_iter().unzip();
            with_leaves.periods.push(auditline::seal::verify::PeriodLeaves { end: c.body.end.clone(), ids, leaves });
        }
    }
    let summary = verifier.clone().with_expired_before(horizon).verify(&with_leaves);
    assert!(summary.is_valid(), "{summary}: {:?}", summary.failures);
    let n = sealed.len();
    assert_eq!(
        summary.to_string(),
        format!("tenant acme: {n}/{n} checkpoints valid, 10/10 entries valid, 10 entries past retention")
    );
    // Told of no retention, the verifier calls the same gap a removal.
    let summary = verifier.verify(&with_leaves);
    assert!(summary.failures.iter().any(|f| f.to_string().contains("is missing")), "{summary}");

    // A proof of a gone entry: not found, like the entry itself.
    let api = api_with_seal(store.clone(), seal_store.clone(), Arc::new(MemoryIdempotency::new()));
    let event =
        integrity_event("http-proof.json", "acme", |e| e["pathParameters"] = json!({ "id": old[0].id.to_string() }));
    let reply = call(&api, Route::Proof, &event).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
}
