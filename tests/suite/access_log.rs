//! `AUDIT_LOG_READS`: with it on, every successful read of the trail leaves one VIEW entry naming
//! the caller, the route and its filters — once per caller, query and minute however often the query
//! is repeated or paged through, so the trail cannot flood itself; refused reads and reads with the
//! setting off leave none; and a read whose record cannot be written is refused, not answered.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use auditline::apigw::http::access::ACCESS_ENTITY;
use auditline::apigw::http::{AuditApi, Route};
use auditline::backend::BackendError;
use auditline::domain::{AuditAction, AuditLogEntry, EntityType};
use auditline::idempotency::MemoryIdempotency;
use auditline::store::{AuditStore, MemoryStore};
use auditline::{AuditLogger, AuditSettings};
use auditline_tests::http::{api_over, call, sample, with_query};
use auditline_tests::stores::RefusingPuts;
use auditline_tests::{Backend, all_entries, fresh_store, new_entry, stepping_clock, tenant};
use chrono::{DurationRound, TimeDelta, Utc};
use serde_json::{Value, json};

auditline_tests::on_every_backend!(reads_are_on_the_record_once_a_minute_when_enabled);

fn views(entries: &[AuditLogEntry]) -> Vec<&AuditLogEntry> {
    let (entity_type, entity_id) = ACCESS_ENTITY;
    entries
        .iter()
        .filter(|e| e.action == AuditAction::View && e.entity_type == entity_type && e.entity_id == entity_id)
        .collect()
}

async fn reads_are_on_the_record_once_a_minute_when_enabled(backend: Backend) {
    let store: Arc<dyn AuditStore> = fresh_store(backend).await;
    let start = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap() + TimeDelta::seconds(5);
    let (clock, millis) = stepping_clock(start, 0);
    let logger = Arc::new(AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock));
    let mut api = AuditApi { logger: logger.clone(), ..api_over(store.clone(), Arc::new(MemoryIdempotency::new())) };
    let acme = tenant("acme");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let entry = new_entry(&acme, AuditAction::Update, EntityType::File, "entity-123", Some("p1"), None);
        ids.push(logger.log(entry).await.unwrap().entry().unwrap().id.to_string());
    }
    let get = sample("http-get-log.json", |e| e["pathParameters"]["id"] = Value::String(ids[0].clone()));
    let reads = [
        (Route::ListLogs, sample("http-list-logs.json", |e| with_query(e, &[("action", "UPDATE")]))),
        (Route::GetLog, get),
        (Route::EntityLogs, sample("http-entity-logs.json", |_| {})),
        (Route::ProjectLogs, sample("http-project-logs.json", |_| {})),
        (Route::Stats, sample("http-stats.json", |_| {})),
        (Route::Checkpoints, sample("http-checkpoints.json", |_| {})),
    ];

    // Off (the default): every read answers and nothing is recorded.
    for (route, event) in &reads {
        assert_eq!(call(&api, *route, event).await.status, 200, "{route:?}");
    }
    assert!(views(&all_entries(store.clone(), &acme).await).is_empty(), "reads are not recorded unless enabled");

    // On: one VIEW per route, naming who, the route and what was asked.
    api.log_reads = true;
    for (route, event) in &reads {
        assert_eq!(call(&api, *route, event).await.status, 200, "{route:?}");
    }
    let entries = all_entries(store.clone(), &acme).await;
    let recorded = views(&entries);
    assert_eq!(recorded.len(), reads.len(), "one VIEW per read route");
    let list = recorded
        .iter()
        .find(|v| v.metadata.as_ref().unwrap()["route"] == "GET /audit/logs")
        .expect("the list read is recorded");
    assert_eq!(list.user_id.as_deref(), Some("user-789"), "who");
    assert!(list.ip_address.is_some(), "from where");
    let metadata = Value::Object(list.metadata.clone().unwrap());
    assert_eq!(metadata["operation"], "read");
    assert_eq!(metadata["filters"], json!({ "action": "UPDATE" }));
    let get = recorded.iter().find(|v| v.metadata.as_ref().unwrap()["route"] == "GET /audit/logs/{id}").unwrap();
    assert_eq!(get.metadata.as_ref().unwrap()["parameters"], json!({ "id": ids[0] }), "which entry was read");

    // Repeated, and paged through with other limits and tokens, within the minute: nothing more.
    for _ in 0..3 {
        for (route, event) in &reads {
            assert_eq!(call(&api, *route, event).await.status, 200, "{route:?}");
        }
    }
    let paged = sample("http-list-logs.json", |e| with_query(e, &[("action", "UPDATE"), ("limit", "1")]));
    let first = call(&api, Route::ListLogs, &paged).await;
    let token = first.body["next_token"].as_str().expect("a next page").to_owned();
    let next = sample("http-list-logs.json", |e| {
        with_query(e, &[("action", "UPDATE"), ("limit", "1"), ("next_token", &token)])
    });
    assert_eq!(call(&api, Route::ListLogs, &next).await.status, 200);
    // Listing the trail (VIEWs included) does not multiply them either.
    let everything = sample("http-list-logs.json", |e| with_query(e, &[("entity_type", "REPORT")]));
    for _ in 0..3 {
        assert_eq!(call(&api, Route::ListLogs, &everything).await.status, 200);
    }
    let after = all_entries(store.clone(), &acme).await;
    assert_eq!(
        views(&after).len(),
        reads.len() + 1,
        "repeats and pages within a minute add nothing; a new filter adds one"
    );

    // Refused reads (an unknown id, a bad parameter, no credential) record nothing.
    let unknown = sample("http-get-log.json", |_| {});
    assert_eq!(call(&api, Route::GetLog, &unknown).await.status, 404);
    let bad = sample("http-list-logs.json", |e| with_query(e, &[("action", "SHRED")]));
    assert_eq!(call(&api, Route::ListLogs, &bad).await.status, 400);
    let anonymous = sample("http-list-logs.json", |e| e["requestContext"]["authorizer"] = Value::Null);
    assert_eq!(call(&api, Route::ListLogs, &anonymous).await.status, 401);
    assert_eq!(views(&all_entries(store.clone(), &acme).await).len(), reads.len() + 1);

    // The next minute, the same read is recorded again.
    millis.fetch_add(60_000, Ordering::SeqCst);
    assert_eq!(call(&api, Route::Stats, &reads[4].1).await.status, 200);
    assert_eq!(views(&all_entries(store, &acme).await).len(), reads.len() + 2);
}

#[tokio::test]
async fn a_read_that_cannot_be_recorded_is_refused() {
    let memory = Arc::new(MemoryStore::new());
    let entry = new_entry(&tenant("acme"), AuditAction::Create, EntityType::File, "f", None, None);
    AuditLogger::new(memory.clone(), AuditSettings::default()).log(entry).await.unwrap();
    // The table reads but cannot be written.
    let store: Arc<dyn AuditStore> = Arc::new(RefusingPuts {
        inner: memory,
        refuse: Box::new(|_| Some(BackendError::Unavailable("the table is not writable".into()).into())),
    });
    let mut api = api_over(store, Arc::new(MemoryIdempotency::new()));
    let list = sample("http-list-logs.json", |e| with_query(e, &[]));
    let open = call(&api, Route::ListLogs, &list).await;
    assert_eq!((open.status, open.body["count"].as_u64()), (200, Some(1)), "not recorded, so answered");
    api.log_reads = true;
    let refused = call(&api, Route::ListLogs, &list).await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert!(!refused.text.contains("\"entries\""), "no data leaves unrecorded: {}", refused.text);
}
