//! What only the DynamoDB store promises: its item layout, its request budget per operation, and
//! graceful failure when DynamoDB cannot be reached.

use std::sync::Arc;
use std::time::Duration;

use auditline::domain::{AuditAction, AuditQuery, EntityType, QueryScope};
use auditline::store::DynamoStore;
use auditline::store::dynamo::client_for_local_endpoint;
use auditline::{AuditLogger, AuditSettings, LogOutcome};
use auditline_tests::{fresh_dynamo_store, hours_ago, new_entry, stepping_clock, tenant};
use aws_sdk_dynamodb::types::AttributeValue;

#[tokio::test]
async fn one_request_per_write_per_page_per_lookup_and_per_stats_call() {
    let (store, requests) = fresh_dynamo_store(1).await;
    let (clock, _) = stepping_clock(hours_ago(3), 1000);
    let logger = AuditLogger::with_clock(Arc::new(store), AuditSettings::default(), clock);
    let t = tenant("acme");
    let mut last = None;
    for i in 0..150usize {
        let before = requests.get();
        let request = new_entry(&t, AuditAction::ALL[i % 6], EntityType::ALL[i % 7], "e-1", Some("p-1"), Some("u-1"));
        last = logger.log(request).await.unwrap().entry().cloned();
        assert_eq!(requests.get() - before, 1, "a write (entry + counters) is one TransactWriteItems");
    }
    let last = last.unwrap();

    requests.reset();
    assert!(logger.get_log(&t, last.id).await.unwrap().is_some());
    assert_eq!(requests.get(), 1, "a lookup is one GetItem");

    // Pages whose filters are all in the index key: one Query each, cursor included.
    for scope in [QueryScope::Tenant, QueryScope::Entity("e-1".into()), QueryScope::Project("p-1".into())] {
        let mut query = AuditQuery::new(scope.clone());
        query.page.limit = 100;
        requests.reset();
        let first = logger.get_logs(&t, &query).await.unwrap();
        assert_eq!((first.entries.len(), requests.get()), (100, 1), "{scope:?}: first page");
        query.page.next_token = first.next_token;
        requests.reset();
        let second = logger.get_logs(&t, &query).await.unwrap();
        assert_eq!((second.entries.len(), requests.get()), (50, 1), "{scope:?}: last page");
        assert_eq!(second.next_token, None);
    }
    for (action, user) in [(Some(AuditAction::Delete), None), (None, Some("u-1".to_owned()))] {
        let mut query = AuditQuery::new(QueryScope::Tenant);
        query.filter.action = action;
        query.filter.user_id = user;
        requests.reset();
        logger.get_logs(&t, &query).await.unwrap();
        assert_eq!(requests.get(), 1, "a tenant-wide filter reads its own index");
    }

    requests.reset();
    let stats = logger.get_stats(&t, None, None).await.unwrap();
    assert_eq!(stats.total_entries, 150);
    assert_eq!(requests.get(), 1, "stats read a few counter items in one Query");
}

#[tokio::test]
async fn items_carry_ttl_and_index_keys_and_sharded_counters_sum_up() {
    let (store, _) = fresh_dynamo_store(4).await;
    let client = store.client().clone();
    let entries_table = store.entries_table().to_owned();
    let logger = AuditLogger::new(Arc::new(store), AuditSettings { enabled: true, retention_days: 7 });
    let t = tenant("acme");
    let mut entries = Vec::new();
    for i in 0..40usize {
        let request = new_entry(&t, AuditAction::Link, EntityType::ALL[i % 7], "e-9", Some("p-9"), Some("u-9"));
        if let LogOutcome::Stored(e) = logger.log(request).await.unwrap() {
            entries.push(e);
        }
    }
    let stats = logger.get_stats(&t, None, None).await.unwrap();
    assert_eq!(stats.total_entries, 40, "shards are summed");
    assert_eq!(stats.by_action[&AuditAction::Link], 40);

    // The raw item: TTL attribute in epoch seconds, and every index key in its tenant's namespace.
    let e = &entries[0];
    let item = client
        .get_item()
        .table_name(&entries_table)
        .key("pk", AttributeValue::S("T#acme".into()))
        .key("id", AttributeValue::S(e.id.to_string()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the item exists");
    let s = |name: &str| item[name].as_s().unwrap().clone();
    assert_eq!(item["expires_at"].as_n().unwrap(), &(e.timestamp.timestamp() + 7 * 86_400).to_string());
    assert_eq!(s("entity_key"), "T#acme#E#e-9");
    assert_eq!(s("project_key"), "T#acme#P#p-9");
    assert_eq!(s("user_key"), "T#acme#U#u-9");
    assert_eq!(s("action_key"), "T#acme#A#LINK");
    assert_eq!(s("type_key"), format!("T#acme#Y#{}", e.entity_type));
    assert_eq!(s("timestamp"), auditline::domain::time::format_timestamp(e.timestamp));

    // Optional fields left out leave sparse indexes sparse: no NULL key attributes.
    let request = new_entry(&t, AuditAction::View, EntityType::File, "e-10", None, None);
    let bare = logger.log(request).await.unwrap().entry().cloned().unwrap();
    let item = client
        .get_item()
        .table_name(&entries_table)
        .key("pk", AttributeValue::S("T#acme".into()))
        .key("id", AttributeValue::S(bare.id.to_string()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(!item.contains_key("project_key") && !item.contains_key("user_key"));
}

#[tokio::test]
async fn an_unreachable_dynamodb_is_reported_not_hung() {
    // A server that accepts connections and never answers: only the health check's own time limit
    // can end the wait, so the report shows that limit was applied (no wall-clock measurement).
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = format!("http://{}", black_hole.local_addr().unwrap());
    let accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = black_hole.accept().await {
            held.push(socket);
        }
    });
    let store = DynamoStore::new(client_for_local_endpoint(&silent, None), "entries", "counters");
    let logger = AuditLogger::new(Arc::new(store), AuditSettings::default());
    let report = tokio::time::timeout(Duration::from_secs(60), logger.health(Duration::from_millis(500)))
        .await
        .expect("the health check ends on its own");
    assert_eq!(report.status, "degraded");
    assert!(!report.storage.reachable);
    assert_eq!(report.storage.error.as_deref(), Some("storage did not answer within 500 ms"));
    accepting.abort();

    // Nothing listens at all: a write fails as unavailable (retryable), not as an internal error.
    let refused = DynamoStore::new(client_for_local_endpoint(&auditline_tests::unreachable_url(), None), "e", "c");
    let logger = AuditLogger::new(Arc::new(refused), AuditSettings::default());
    match logger.log(new_entry(&tenant("acme"), AuditAction::View, EntityType::File, "f", None, None)).await {
        Err(auditline::AuditError::Store(auditline::store::StoreError::Backend(
            auditline::backend::BackendError::Unavailable(_),
        ))) => {}
        other => panic!("expected an unavailable store, got {other:?}"),
    }
}
