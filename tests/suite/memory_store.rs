//! What only the in-memory store promises: a bound on its size, with statistics kept exact.

use std::sync::Arc;

use auditline::domain::{AuditAction, AuditQuery, EntityType, QueryScope};
use auditline::store::MemoryStore;
use auditline::{AuditLogger, AuditSettings, LogOutcome};
use auditline_tests::{hours_ago, new_entry, stepping_clock, tenant};

#[tokio::test]
async fn a_bounded_store_evicts_the_oldest_and_keeps_stats_exact() {
    let store = Arc::new(MemoryStore::bounded(50, usize::MAX));
    let (clock, _) = stepping_clock(hours_ago(10), 60_000);
    let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock);
    let (a, b) = (tenant("acme"), tenant("globex"));
    let mut ids = Vec::new();
    for i in 0..120usize {
        let t = if i % 2 == 0 { &a } else { &b };
        let request = new_entry(t, AuditAction::ALL[i % 6], EntityType::ALL[i % 7], &format!("e-{i}"), None, None);
        match logger.log(request).await.unwrap() {
            LogOutcome::Stored(e) => ids.push(e),
            LogOutcome::Disabled => unreachable!(),
        }
    }
    assert_eq!(store.len(), 50);
    let kept = &ids[70..];
    for t in [&a, &b] {
        let mut query = AuditQuery::new(QueryScope::Tenant);
        query.page.limit = 1000;
        let page = logger.get_logs(t, &query).await.unwrap();
        let mut want: Vec<_> = kept.iter().filter(|e| &e.tenant_id == t).map(|e| e.id).collect();
        want.reverse();
        assert_eq!(page.entries.iter().map(|e| e.id).collect::<Vec<_>>(), want);
        let stats = logger.get_stats(t, None, None).await.unwrap();
        assert_eq!(stats.total_entries, 25, "counters follow evictions");
        let creates = kept.iter().filter(|e| &e.tenant_id == t && e.action == AuditAction::Create).count();
        assert_eq!(stats.by_action[&AuditAction::Create], creates as u64);
    }
    // Evicted entries are gone from the indexes too.
    assert!(logger.get_logs_by_entity(&a, "e-0", Default::default()).await.unwrap().entries.is_empty());
    assert_eq!(logger.get_log(&a, ids[0].id).await.unwrap(), None);
}

#[tokio::test]
async fn a_store_bounded_in_bytes_keeps_under_its_bound() {
    const BOUND: usize = 256 * 1024;
    let store = Arc::new(MemoryStore::bounded(usize::MAX, BOUND));
    let logger = AuditLogger::new(store.clone(), AuditSettings::default());
    let mut last = None;
    for i in 0..100 {
        let mut request =
            new_entry(&tenant("acme"), AuditAction::Update, EntityType::File, &format!("e-{i}"), None, None);
        request.details.changes = Some(serde_json::json!({"blob": "x".repeat(10_000)}));
        if let LogOutcome::Stored(e) = logger.log(request).await.unwrap() {
            last = Some(e.id);
        }
        assert!(store.bytes() <= BOUND, "after {i} writes: {} bytes held", store.bytes());
    }
    assert!((20..=25).contains(&store.len()), "about a bound's worth of ~10 KB entries: {}", store.len());
    assert!(logger.get_log(&tenant("acme"), last.unwrap()).await.unwrap().is_some(), "the newest is kept");
}

#[tokio::test]
async fn idempotency_records_bounded_in_bytes_keep_under_their_bound() {
    use auditline::idempotency::{IdempotencyStore, KeyOwner, MemoryIdempotency, StoredResponse};
    const BOUND: usize = 256 * 1024;
    let records = MemoryIdempotency::bounded(BOUND);
    let acme = tenant("acme");
    let owner = KeyOwner { tenant: &acme, principal: "alice" };
    let response = StoredResponse { status: 201, body: "y".repeat(20_000) };
    let now = chrono::Utc::now();
    for i in 0..200 {
        let key = format!("key-{i}");
        records.claim(owner, &key, "hash", now).await.unwrap();
        records.complete(owner, &key, &response, now).await.unwrap();
        assert!(records.bytes() <= BOUND, "after {i} requests: {} bytes", records.bytes());
    }
    assert!(records.len() >= 10, "recent records are kept: {}", records.len());
}
