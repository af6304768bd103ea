//! DynamoDB failures the local DynamoDB API cannot produce, through the real SDK client against a
//! scripted endpoint: transaction conflicts, duplicate ids, throttling and server errors, down to
//! the HTTP statuses callers see.

use std::sync::Arc;

use auditline::apigw::http::Route;
use auditline::backend::BackendError;
use auditline::domain::{AuditAction, EntityType};
use auditline::idempotency::MemoryIdempotency;
use auditline::store::dynamo::{RequestCounter, client_for_local_endpoint};
use auditline::store::{AuditStore, DynamoStore, StoreError};
use auditline::{AuditError, AuditLogger, AuditSettings};
use auditline_tests::dynamo_faults::{FaultyDynamo, cancelled, error};
use auditline_tests::http::{api_over, call};
use auditline_tests::{event, new_entry, tenant};

async fn logger() -> (AuditLogger, FaultyDynamo, RequestCounter) {
    let server = FaultyDynamo::start().await;
    let counter = RequestCounter::default();
    let client = client_for_local_endpoint(&server.url, Some(counter.clone()));
    let store = DynamoStore::new(client, "entries", "counters");
    (AuditLogger::new(Arc::new(store), AuditSettings::default()), server, counter)
}

fn request() -> auditline::domain::NewEntry {
    new_entry(&tenant("acme"), AuditAction::Update, EntityType::File, "f-1", None, None)
}

#[tokio::test]
async fn counter_conflicts_are_retried_until_the_write_goes_through() {
    let (logger, server, _) = logger().await;
    server.script("TransactWriteItems", vec![cancelled(&["None", "TransactionConflict"]); 2]);
    assert!(logger.log(request()).await.unwrap().entry().is_some());
    assert_eq!(server.calls("TransactWriteItems"), 3, "two conflicts, then the write");
}

#[tokio::test]
async fn persistent_conflicts_end_as_throttling_after_bounded_retries() {
    let (logger, server, _) = logger().await;
    server.script("TransactWriteItems", vec![cancelled(&["None", "TransactionConflict"]); 20]);
    match logger.log(request()).await {
        Err(AuditError::Store(StoreError::Backend(BackendError::Throttled(_)))) => {}
        other => panic!("expected throttling, got {other:?}"),
    }
    assert_eq!(server.calls("TransactWriteItems"), 6, "the first try and five retries");
}

#[tokio::test]
async fn a_failed_condition_on_the_entry_is_a_duplicate_id() {
    let server = FaultyDynamo::start().await;
    let store = DynamoStore::new(client_for_local_endpoint(&server.url, None), "entries", "counters");
    server.script("TransactWriteItems", vec![cancelled(&["ConditionalCheckFailed", "None"])]);
    let entry = request().validate().unwrap().stamp(chrono::Utc::now(), 90).unwrap();
    assert!(matches!(store.put(&entry).await, Err(StoreError::AlreadyExists(id)) if id == entry.id));
}

#[tokio::test]
async fn throttling_and_server_errors_become_429_and_503_with_retry_after() {
    let server = FaultyDynamo::start().await;
    let store = DynamoStore::new(client_for_local_endpoint(&server.url, None), "entries", "counters");
    let api = api_over(Arc::new(store), Arc::new(MemoryIdempotency::new()));

    server.script("Query", vec![error("ProvisionedThroughputExceededException", 400, ""); 10]);
    let reply = call(&api, Route::ListLogs, &event("http-list-logs.json")).await;
    assert_eq!((reply.status, reply.error_code(), reply.header("retry-after")), (429, "throttled", Some("1")));
    assert!(server.calls("Query") > 1, "the SDK retried before giving up");
    assert!(!reply.body.to_string().contains("ProvisionedThroughput"), "no internals in the body");

    server.script("GetItem", vec![error("InternalServerError", 500, ""); 10]);
    let reply = call(&api, Route::GetLog, &event("http-get-log.json")).await;
    assert_eq!((reply.status, reply.error_code(), reply.header("retry-after")), (503, "unavailable", Some("2")));

    // After the storm, the same store serves normally.
    server.script("Query", vec![]);
    let reply = call(&api, Route::ListLogs, &event("http-list-logs.json")).await;
    assert_eq!(reply.status, 200);
}
