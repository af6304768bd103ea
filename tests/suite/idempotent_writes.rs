//! Writes that are safe to retry: Idempotency-Keys belong to one caller, and a request cut off
//! half-way (a Lambda timeout) and retried stores every entry exactly once — on both stores.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use auditline::apigw::http::{AuditApi, Route};
use auditline::domain::{AuditQuery, QueryPlan, StatsRange, StoredPage, TenantId};
use auditline::idempotency::{IdempotencyStore, MemoryIdempotency, STALE_CLAIM};
use auditline::store::dynamo::DynamoIdempotency;
use auditline::store::dynamo::tables::IDEMPOTENCY;
use auditline::store::{AuditStore, StoreError};
use auditline::{AuditLogger, AuditSettings};
use auditline_tests::http::{call, sample};
use auditline_tests::{Backend, fresh_store, fresh_table, local_client, stepping_clock, tenant};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

async fn idempotency(backend: Backend) -> Arc<dyn IdempotencyStore> {
    match backend {
        Backend::Memory => Arc::new(MemoryIdempotency::new()),
        Backend::Sqlite => Arc::new(auditline_tests::fresh_sqlite_store()),
        Backend::Dynamo => {
            let (client, _) = local_client();
            let table = fresh_table(&client, &IDEMPOTENCY, "idempotency").await;
            Arc::new(DynamoIdempotency::new(client, table))
        }
    }
}

fn post(body: &Value, tenant: &str, user: &str, key: &str) -> Value {
    sample("http-ingest.json", |e| {
        e["body"] = json!(body.to_string());
        e["requestContext"]["authorizer"] = json!({"lambda": {"user_id": user, "tenant_id": tenant, "scopes": "audit:read audit:write", "auth_method": "jwt"}});
        e["headers"]["idempotency-key"] = json!(key);
    })
}

fn batch(n: usize) -> Value {
    Value::Array(
        (0..n).map(|i| json!({"action": "CREATE", "entity_type": "FILE", "entity_id": format!("f-{i}")})).collect(),
    )
}

/// Passes writes through to `inner` until `budget` of them have been made; after that every
/// write hangs, as a write does when its Lambda is about to be killed by its timeout.
struct CutOff {
    inner: Arc<dyn AuditStore>,
    budget: AtomicUsize,
    /// Writes that reached `inner` and finished.
    done: AtomicUsize,
}

#[async_trait]
impl AuditStore for CutOff {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn put(&self, entry: &auditline::domain::AuditLogEntry) -> Result<(), StoreError> {
        if self.budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1)).is_err() {
            std::future::pending::<()>().await;
        }
        let result = self.inner.put(entry).await;
        self.done.fetch_add(1, Ordering::SeqCst);
        result
    }
    async fn erase(&self, t: &TenantId, id: Uuid, erasure: &auditline::erasure::Erasure) -> Result<(), StoreError> {
        self.inner.erase(t, id, erasure).await
    }
    async fn set_expiry(&self, tenant: &TenantId, id: Uuid, expires_at: i64) -> Result<(), StoreError> {
        self.inner.set_expiry(tenant, id, expires_at).await
    }
    async fn get(
        &self,
        t: &TenantId,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<auditline::domain::AuditLogEntry>, StoreError> {
        self.inner.get(t, id, now).await
    }
    async fn query(&self, plan: &QueryPlan, now: DateTime<Utc>) -> Result<StoredPage, StoreError> {
        self.inner.query(plan, now).await
    }
    async fn counts(
        &self,
        t: &TenantId,
        range: &StatsRange,
        now: DateTime<Utc>,
    ) -> Result<auditline::domain::HourlyCounts, StoreError> {
        self.inner.counts(t, range, now).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

auditline_tests::on_every_backend!(keys_belong_to_one_caller, a_batch_cut_off_and_retried_stores_each_entry_once);

async fn keys_belong_to_one_caller(backend: Backend) {
    let store = fresh_store(backend).await;
    let api = AuditApi {
        logger: Arc::new(AuditLogger::new(store, AuditSettings::default())),
        idempotency: idempotency(backend).await,
        health_timeout: Duration::from_secs(1),
        auth_methods: vec![],
        seal: Arc::new(auditline::store::MemoryStore::new()),
        seal_settings: Default::default(),
        keys: Arc::new(auditline::seal::StaticKeys(Vec::new())),
        witnesses: Vec::new(),
        log_reads: false,
        streams: None,
    };
    let alice_body = json!({"action": "CREATE", "entity_type": "FILE", "entity_id": "alice-file"});
    let bob_body = json!({"action": "DELETE", "entity_type": "FILE", "entity_id": "bob-file"});
    let alice = call(&api, Route::Ingest, &post(&alice_body, "acme", "alice", "shared-key")).await;
    assert_eq!(alice.status, 201);
    // The same key from another user of the tenant: their own request, not a replay of alice's,
    // not a 422 that would tell bob alice used the key.
    let bob = call(&api, Route::Ingest, &post(&bob_body, "acme", "bob", "shared-key")).await;
    assert_eq!(bob.status, 201, "{}", bob.body);
    assert_eq!(bob.body["entity_id"], "bob-file");
    let bob_same_as_alice = call(&api, Route::Ingest, &post(&alice_body, "acme", "bob", "shared-key-2")).await;
    assert_ne!(bob_same_as_alice.body["id"], alice.body["id"]);
    let again = call(&api, Route::Ingest, &post(&alice_body, "acme", "alice", "shared-key")).await;
    assert_eq!(
        (again.body["id"].clone(), again.header("idempotent-replayed")),
        (alice.body["id"].clone(), Some("true"))
    );
}

async fn a_batch_cut_off_and_retried_stores_each_entry_once(backend: Backend) {
    const SIZE: usize = 20;
    const STORED_BEFORE_THE_CUT: usize = 7;
    let store = fresh_store(backend).await;
    let idempotency = idempotency(backend).await;
    let (clock, millis) = stepping_clock(Utc::now(), 0);
    let api_over = |store: Arc<dyn AuditStore>| AuditApi {
        logger: Arc::new(AuditLogger::with_clock(store, AuditSettings::default(), clock.clone())),
        idempotency: idempotency.clone(),
        health_timeout: Duration::from_secs(1),
        auth_methods: vec![],
        seal: Arc::new(auditline::store::MemoryStore::new()),
        seal_settings: Default::default(),
        keys: Arc::new(auditline::seal::StaticKeys(Vec::new())),
        witnesses: Vec::new(),
        log_reads: false,
        streams: None,
    };
    let request = post(&batch(SIZE), "acme", "alice", "nightly-import-1");

    // The first attempt stores 7 entries, then hangs until its time is up: no response, no
    // completed record, as when Lambda kills the function.
    let cut_store = Arc::new(CutOff {
        inner: store.clone(),
        budget: AtomicUsize::new(STORED_BEFORE_THE_CUT),
        done: AtomicUsize::new(0),
    });
    let cut = api_over(cut_store.clone());
    let first = {
        let request = request.clone();
        tokio::spawn(async move { call(&cut, Route::Ingest, &request).await })
    };
    for _ in 0..6000 {
        if cut_store.done.load(Ordering::SeqCst) == STORED_BEFORE_THE_CUT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!first.is_finished(), "the first attempt never answered");
    first.abort();
    let logger = AuditLogger::new(store.clone(), AuditSettings::default());
    let mut everything = AuditQuery::new(auditline::domain::QueryScope::Tenant);
    everything.page.limit = 1000;
    let before = logger.get_logs(&tenant("acme"), &everything).await.unwrap().entries;
    assert_eq!(before.len(), STORED_BEFORE_THE_CUT);

    // While the claim is fresh, a retry is told to wait; once it is stale, a retry takes it over.
    let api = api_over(store.clone());
    assert_eq!(call(&api, Route::Ingest, &request).await.status, 409);
    millis.fetch_add(STALE_CLAIM.num_milliseconds() + 1_000, Ordering::SeqCst);
    let retried = call(&api, Route::Ingest, &request).await;
    assert_eq!((retried.status, retried.body["stored"].as_u64()), (201, Some(SIZE as u64)), "{}", retried.body);

    let after = logger.get_logs(&tenant("acme"), &everything).await.unwrap().entries;
    assert_eq!(after.len(), SIZE, "every entry once: the first attempt's are not stored again");
    let ids: HashSet<Uuid> = after.iter().map(|e| e.id).collect();
    assert!(before.iter().all(|e| ids.contains(&e.id)), "the first attempt's entries keep their ids");
    let reported: HashSet<String> = retried.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["entry"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(reported, ids.iter().map(Uuid::to_string).collect(), "the answer names the stored entries");
    assert_eq!(logger.get_stats(&tenant("acme"), None, None).await.unwrap().total_entries, SIZE as u64, "counted once");

    let replay = call(&api, Route::Ingest, &request).await;
    assert_eq!((replay.status, replay.header("idempotent-replayed")), (201, Some("true")));
}

/// DynamoDB did the claim but its reply was lost, so the SDK sent the same PutItem again and met
/// its own record: that is this request's claim, not another's "in progress" (found by the soak).
#[tokio::test]
async fn a_claim_whose_reply_was_lost_is_still_ours() {
    use auditline::idempotency::{Claim, KeyOwner};
    use auditline_tests::fault_proxy::{FaultMix, FaultProxy};
    let proxy = FaultProxy::start(&auditline_tests::dynamodb_endpoint(), FaultMix::default(), 1).await;
    let (direct, _) = local_client();
    let table = fresh_table(&direct, &IDEMPOTENCY, "idempotency").await;
    let store = DynamoIdempotency::new(auditline::store::dynamo::client_for_local_endpoint(&proxy.url, None), table);
    let acme = tenant("acme");
    let owner = KeyOwner { tenant: &acme, principal: "user-1" };
    proxy.lose_next_reply("PutItem");
    let now = Utc::now();
    let claim = store.claim(owner, "key-1", "hash-1", now).await.expect("the SDK retries the lost reply");
    assert!(matches!(claim, Claim::Claimed { .. }), "{claim:?}");
    assert_eq!(proxy.counts.dropped_after.load(Ordering::Relaxed), 1, "the reply was lost once");
    // A second request with the same key is another request: in progress.
    let again = store.claim(owner, "key-1", "hash-1", now).await.unwrap();
    assert!(matches!(again, Claim::InProgress), "{again:?}");
}

/// A batch with one item throttled answers 207; retried with its key, it stores that item and
/// replays the others, each once (before, the 207 was kept and replayed: the item was never stored).
#[tokio::test]
async fn a_batch_with_a_throttled_item_retried_with_its_key_completes_once() {
    let inner: Arc<dyn AuditStore> = Arc::new(auditline::store::MemoryStore::new());
    // The write of f-3 is throttled once, then goes through.
    let tripped = std::sync::atomic::AtomicBool::new(false);
    let store = Arc::new(auditline_tests::stores::RefusingPuts {
        inner: inner.clone(),
        refuse: Box::new(move |entry| {
            (entry.entity_id == "f-3" && !tripped.swap(true, Ordering::SeqCst))
                .then(|| auditline::backend::BackendError::Throttled("scripted".into()).into())
        }),
    });
    let api = AuditApi {
        logger: Arc::new(AuditLogger::new(store, AuditSettings::default())),
        ..auditline_tests::http::api_over(inner.clone(), Arc::new(MemoryIdempotency::new()))
    };
    let request = post(&batch(6), "acme", "alice", "import-7");
    let first = call(&api, Route::Ingest, &request).await;
    assert_eq!((first.status, first.body["stored"].as_u64()), (207, Some(5)), "{}", first.body);
    let retry = call(&api, Route::Ingest, &request).await;
    assert_eq!((retry.status, retry.body["stored"].as_u64()), (201, Some(6)), "{}", retry.body);
    let entries = auditline_tests::all_entries(inner, &tenant("acme")).await;
    let mut ids: Vec<&str> = entries.iter().map(|e| e.entity_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["f-0", "f-1", "f-2", "f-3", "f-4", "f-5"], "each entry once");
    let mut compared = 0;
    for (a, b) in first.body["results"].as_array().unwrap().iter().zip(retry.body["results"].as_array().unwrap()) {
        if a["status"] == 201 {
            assert_eq!(a["entry"]["id"], b["entry"]["id"], "the retry returns the entries stored the first time");
            compared += 1;
        }
    }
    assert_eq!(compared, 5);
}
