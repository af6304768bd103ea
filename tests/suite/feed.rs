//! The live feed against the local DynamoDB API: entries written, their real stream records read
//! back, fed to the fan-out handler; posts go through the real aws-sdk-apigatewaymanagement client
//! to a stand-in endpoint that records them (and answers 410 or 500 where told).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use auditline::apigw::stream::{FeedDeps, handle_stream};
use auditline::apigw::websocket;
use auditline::auth::AuthMethod;
use auditline::domain::{AuditAction, AuditLogEntry, EntityType, EntryDetails, NewEntry};
use auditline::realtime::fanout::FanoutSettings;
use auditline::realtime::{ConnectionLimits, ConnectionManager, ConnectionStore};
use auditline::store::DynamoStore;
use auditline::store::dynamo::tables::{CONNECTIONS, COUNTERS, ENTRIES};
use auditline::store::dynamo::{DynamoConnections, RequestCounter};
use auditline::{AuditLogger, AuditSettings};
use auditline_tests::feed::{Answer, ManagementServer, connection_ids, stream_event};
use auditline_tests::{event, fresh_table, local_client, tenant};
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::dynamodb::Event;
use chrono::Utc;
use serde_json::{Value, json};

struct Feed {
    client: aws_sdk_dynamodb::Client,
    entries_table: String,
    logger: AuditLogger,
    connections: Arc<DynamoConnections>,
    server: ManagementServer,
    deps: FeedDeps,
    requests: RequestCounter,
}

async fn feed() -> Feed {
    let (client, requests) = local_client();
    let entries_table = fresh_table(&client, &ENTRIES, "entries").await;
    let counters = fresh_table(&client, &COUNTERS, "counters").await;
    let connections_table = fresh_table(&client, &CONNECTIONS, "connections").await;
    let store = DynamoStore::new(client.clone(), &entries_table, counters);
    let connections = Arc::new(DynamoConnections::new(client.clone(), connections_table));
    let server = ManagementServer::start().await;
    let deps = FeedDeps::new(
        connections.clone(),
        Arc::new(server.pusher()),
        FanoutSettings { retry_base: Duration::from_millis(1), ..FanoutSettings::default() },
    );
    let logger = AuditLogger::new(Arc::new(store), AuditSettings::default());
    Feed { client, entries_table, logger, connections, server, deps, requests }
}

fn connect_event(
    connection_id: &str,
    tenant: &str,
    scopes: &str,
    query: &[(&str, &str)],
) -> ApiGatewayWebsocketProxyRequest {
    let mut e = event("ws-connect.json");
    e["requestContext"]["connectionId"] = json!(connection_id);
    let authorizer = &mut e["requestContext"]["authorizer"];
    authorizer["tenant_id"] = json!(tenant);
    authorizer["scopes"] = json!(scopes);
    authorizer["user_id"] = json!(format!("user-of-{connection_id}"));
    let q: serde_json::Map<String, Value> = query.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    e["queryStringParameters"] = Value::Object(q);
    e["multiValueQueryStringParameters"] = json!({});
    serde_json::from_value(e).expect("a WebSocket event")
}

/// Connects a client; it connected a minute ago, so it is fully open (see `OPENING_GRACE`).
async fn connect(f: &Feed, id: &str, tenant: &str, scopes: &str, query: &[(&str, &str)]) -> ApiGatewayProxyResponse {
    let a_minute_ago = Utc::now() - chrono::Duration::minutes(1);
    websocket::connect(
        &connect_event(id, tenant, scopes, query),
        f.connections.as_ref(),
        ConnectionLimits::default(),
        a_minute_ago,
    )
    .await
}

async fn log(
    f: &Feed,
    tenant_name: &str,
    action: AuditAction,
    entity_type: EntityType,
    project: Option<&str>,
) -> AuditLogEntry {
    let request = NewEntry {
        tenant_id: tenant(tenant_name),
        action,
        entity_type,
        entity_id: format!("{entity_type}-1").to_lowercase(),
        details: EntryDetails { project_id: project.map(str::to_owned), ..EntryDetails::default() },
    };
    f.logger.log(request).await.unwrap().entry().cloned().unwrap()
}

async fn batch(f: &Feed) -> Event {
    serde_json::from_value(stream_event(&f.client, &f.entries_table).await).expect("a DynamoDB stream event")
}

fn ids(entries: &[&AuditLogEntry]) -> HashSet<String> {
    entries.iter().map(|e| e.id.to_string()).collect()
}

#[tokio::test]
async fn each_connection_gets_exactly_what_its_scopes_and_filters_allow() {
    let f = feed().await;
    for (id, tenant, scopes, query) in [
        ("c-audit", "acme", "audit:read", vec![]),
        ("c-reports", "acme", "reports:read", vec![]),
        ("c-reports-any", "acme", "reports:*", vec![]),
        ("c-star", "acme", "*", vec![]),
        ("c-projects", "acme", "projects:read", vec![]),
        ("c-write-only", "acme", "files:write audit:write", vec![]),
        ("c-nothing", "acme", "", vec![]),
        ("c-filtered", "acme", "audit:read", vec![("project_id", "p-1"), ("action", "DELETE")]),
        ("c-narrowed", "acme", "reports:read", vec![("entity_type", "FILE")]),
        ("c-globex", "globex", "audit:read", vec![]),
    ] {
        // Without a read scope there is nothing to receive: such a client is refused at $connect.
        let want = if id == "c-write-only" || id == "c-nothing" { 403 } else { 200 };
        assert_eq!(connect(&f, id, tenant, scopes, &query).await.status_code, want, "{id}");
    }
    let report = log(&f, "acme", AuditAction::Update, EntityType::Report, Some("p-1")).await;
    let file = log(&f, "acme", AuditAction::Delete, EntityType::File, Some("p-1")).await;
    let project = log(&f, "acme", AuditAction::Create, EntityType::Project, Some("p-2")).await;
    let report_p2 = log(&f, "acme", AuditAction::Delete, EntityType::Report, Some("p-2")).await;
    let globex = log(&f, "globex", AuditAction::View, EntityType::Report, None).await;

    let (response, fanout) = handle_stream(batch(&f).await, &f.deps).await;
    assert!(response.batch_item_failures.is_empty());
    let all_acme = ids(&[&report, &file, &project, &report_p2]);
    let expected = [
        ("c-audit", all_acme.clone()),
        ("c-reports", ids(&[&report, &report_p2])),
        ("c-reports-any", ids(&[&report, &report_p2])),
        ("c-star", all_acme),
        ("c-projects", ids(&[&project])),
        ("c-write-only", HashSet::new()),
        ("c-nothing", HashSet::new()),
        ("c-filtered", ids(&[&file])),
        ("c-narrowed", HashSet::new()),
        ("c-globex", ids(&[&globex])),
    ];
    for (id, want) in &expected {
        assert_eq!(&f.server.entry_ids(id), want, "{id}");
    }
    assert_eq!(fanout.delivered, expected.iter().map(|(_, w)| w.len()).sum::<usize>());

    // The message is the HTTP API's entry shape, wrapped; each connection gets its entries in order.
    let messages = &f.server.delivered()["c-audit"];
    assert_eq!(messages[0], json!({"type": "audit_entry", "entry": serde_json::to_value(&report).unwrap()}));
    let order: Vec<&str> = messages.iter().map(|m| m["entry"]["id"].as_str().unwrap()).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(order, sorted, "entries arrive in the order they were written");
}

#[tokio::test]
async fn a_gone_connection_is_removed_and_does_not_fail_the_batch() {
    let f = feed().await;
    connect(&f, "c-live", "acme", "audit:read", &[]).await;
    connect(&f, "c-gone", "acme", "audit:read", &[]).await;
    f.server.answer("c-gone", Answer::Gone);
    for _ in 0..3 {
        log(&f, "acme", AuditAction::View, EntityType::File, None).await;
    }
    let event = batch(&f).await;
    f.requests.reset();
    let (response, report) = handle_stream(event, &f.deps).await;
    assert!(response.batch_item_failures.is_empty(), "410 is not a failure of the entry");
    assert_eq!(report.gone, ["c-gone"]);
    assert_eq!(f.server.attempts("c-gone"), 1, "no more posts to a connection known gone");
    assert_eq!(f.server.entry_ids("c-live").len(), 3);
    assert_eq!(f.requests.get(), 2, "one Query for the tenant's connections, one DeleteItem for the gone one");

    assert_eq!(
        connection_ids(f.connections.as_ref(), "acme").await,
        ["c-live"],
        "the stale connection is removed, the live one kept"
    );
}

#[tokio::test]
async fn a_connection_still_opening_is_kept_on_a_410() {
    let f = feed().await;
    let just_now = connect_event("c-opening", "acme", "audit:read", &[]);
    websocket::connect(&just_now, f.connections.as_ref(), ConnectionLimits::default(), Utc::now()).await;
    f.server.answer("c-opening", Answer::Gone);
    log(&f, "acme", AuditAction::View, EntityType::File, None).await;
    let (response, report) = handle_stream(batch(&f).await, &f.deps).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((report.opening, report.gone.len()), (1, 0));
    assert_eq!(f.connections.tenant_connections(&tenant("acme"), Utc::now()).await.unwrap().len(), 1, "kept");
}

#[tokio::test]
async fn an_undeliverable_entry_is_reported_by_its_sequence_number() {
    let f = feed().await;
    connect(&f, "c-ok", "acme", "audit:read", &[]).await;
    connect(&f, "c-broken", "acme", "files:read", &[]).await;
    f.server.answer("c-broken", Answer::Broken);
    log(&f, "acme", AuditAction::View, EntityType::Report, None).await;
    log(&f, "acme", AuditAction::View, EntityType::File, None).await;
    log(&f, "acme", AuditAction::View, EntityType::Report, None).await;
    let event = batch(&f).await;
    let file_sequence = event.records[1].change.sequence_number.clone();
    let (response, report) = handle_stream(event, &f.deps).await;
    let failed: Vec<Option<String>> = response.batch_item_failures.iter().map(|b| b.item_identifier.clone()).collect();
    assert_eq!(failed, [file_sequence], "only the entry the broken connection should have had");
    assert_eq!(f.server.attempts("c-broken"), 3, "retried with backoff before giving up");
    assert_eq!(report.failed.len(), 1);
    assert_eq!(f.server.entry_ids("c-ok").len(), 3, "other connections are served regardless");
    assert_eq!(f.connections.tenant_connections(&tenant("acme"), Utc::now()).await.unwrap().len(), 2, "kept");
}

#[tokio::test]
async fn ttl_removals_and_other_changes_are_ignored() {
    let f = feed().await;
    connect(&f, "c-1", "acme", "audit:read", &[]).await;
    let sample: Event = serde_json::from_value(event("stream-batch.json")).unwrap();
    assert_eq!(sample.records.len(), 3);
    let (response, report) = handle_stream(sample, &f.deps).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(report.delivered, 2, "the two INSERTs; not the TTL removal");
    let delivered = f.server.entry_ids("c-1");
    assert!(delivered.contains("019ac4a1-6f3e-7c52-9a10-4c1d2b3e4f50"));
    assert!(!delivered.contains("0197a000-0000-7000-8000-000000000001"));
    let messages = &f.server.delivered()["c-1"];
    assert_eq!(messages[0]["entry"]["changes"]["after"]["status"], "published");

    // A MODIFY (which the product never makes) and a REMOVE by anyone are no news either.
    let mut odd = event("stream-batch.json");
    odd["Records"][0]["eventName"] = json!("MODIFY");
    odd["Records"][1]["eventName"] = json!("REMOVE");
    f.server.clear();
    let (_, report) = handle_stream(serde_json::from_value(odd).unwrap(), &f.deps).await;
    assert_eq!(report.delivered, 0);
}

#[tokio::test]
async fn a_malformed_record_fails_alone() {
    let f = feed().await;
    connect(&f, "c-1", "acme", "audit:read", &[]).await;
    let mut e = event("stream-batch.json");
    e["Records"][0]["dynamodb"]["NewImage"]["action"] = json!({"S": "EXPLODE"});
    let bad_sequence = e["Records"][0]["dynamodb"]["SequenceNumber"].as_str().unwrap().to_owned();
    let (response, report) = handle_stream(serde_json::from_value(e).unwrap(), &f.deps).await;
    let failed: Vec<Option<String>> = response.batch_item_failures.iter().map(|b| b.item_identifier.clone()).collect();
    assert_eq!(failed, [Some(bad_sequence)]);
    assert_eq!(report.delivered, 1, "the good record is still delivered");
}

#[tokio::test]
async fn a_redelivered_batch_is_harmless() {
    let f = feed().await;
    connect(&f, "c-1", "acme", "audit:read", &[]).await;
    for _ in 0..4 {
        log(&f, "acme", AuditAction::Link, EntityType::Relationship, None).await;
    }
    let event = batch(&f).await;
    let again: Event = serde_json::from_value(serde_json::to_value(&event).unwrap()).unwrap();
    let (first, _) = handle_stream(event, &f.deps).await;
    let (second, _) = handle_stream(again, &f.deps).await;
    assert!(first.batch_item_failures.is_empty() && second.batch_item_failures.is_empty());
    let messages = &f.server.delivered()["c-1"];
    assert_eq!(messages.len(), 8, "delivered again: at least once");
    assert_eq!(f.server.entry_ids("c-1").len(), 4, "the same four entries; clients de-duplicate by id");
    assert_eq!(f.connections.tenant_connections(&tenant("acme"), Utc::now()).await.unwrap().len(), 1);
    let stats = f.logger.get_stats(&tenant("acme"), None, None).await.unwrap();
    assert_eq!(stats.total_entries, 4, "nothing else changes");
}

#[tokio::test]
async fn entries_too_large_for_one_message_go_out_as_a_notice() {
    let f = feed().await;
    connect(&f, "c-1", "acme", "audit:read", &[]).await;
    let request = NewEntry {
        tenant_id: tenant("acme"),
        action: AuditAction::Update,
        entity_type: EntityType::Template,
        entity_id: "template-1".into(),
        details: EntryDetails { changes: Some(json!({"body": "x".repeat(200 * 1024)})), ..EntryDetails::default() },
    };
    let big = f.logger.log(request).await.unwrap().entry().cloned().unwrap();
    let small = log(&f, "acme", AuditAction::View, EntityType::File, None).await;
    // The endpoint also refuses anything over 10 KB, as a connection behind a smaller limit would.
    f.server.limit_messages_to(10 * 1024);
    let (response, report) = handle_stream(batch(&f).await, &f.deps).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(report.notices, 1);
    let messages = &f.server.delivered()["c-1"];
    assert_eq!(messages[0]["type"], "audit_entry_notice");
    assert_eq!(messages[0]["reason"], "too_large");
    assert_eq!(messages[0]["entry"]["id"], big.id.to_string());
    assert_eq!(messages[0]["entry"]["entity_id"], "template-1");
    assert!(messages[0]["entry"].get("changes").is_none());
    assert_eq!(messages[1]["type"], "audit_entry");
    assert_eq!(messages[1]["entry"]["id"], small.id.to_string());
}

#[tokio::test]
async fn connect_records_identity_and_filters_and_disconnect_forgets() {
    let f = feed().await;
    let response = websocket::connect(
        &serde_json::from_value(event("ws-connect.json")).unwrap(),
        f.connections.as_ref(),
        ConnectionLimits::default(),
        Utc::now(),
    )
    .await;
    assert_eq!(response.status_code, 200);
    assert_eq!(response.headers["sec-websocket-protocol"], "bearer", "the offered subprotocol is answered");
    let stored = f.connections.tenant_connections(&tenant("acme"), Utc::now()).await.unwrap();
    assert_eq!(stored.len(), 1);
    let c = &stored[0];
    assert_eq!(c.connection_id, "Jq4FvcM0oAMCLpw=");
    assert_eq!((c.user_id.as_deref(), c.auth_method), (Some("user-789"), AuthMethod::Jwt));
    assert_eq!(c.filters.project_id.as_deref(), Some("project-456"));
    assert_eq!(c.filters.entity_type, Some(EntityType::Report));
    assert!(c.is_authenticated() && c.has_scope("reports:read") && !c.has_scope("audit:read"));
    let ttl = c.expires_at - c.connected_at.timestamp();
    assert_eq!(ttl, 7200, "a credential without expiry: API Gateway's 2-hour limit");

    let bad = connect(&f, "c-bad", "acme", "audit:read", &[("entity_type", "GADGET")]).await;
    assert_eq!(bad.status_code, 400);
    let mut anonymous = event("ws-connect.json");
    anonymous["requestContext"].as_object_mut().unwrap().remove("authorizer");
    let response = websocket::connect(
        &serde_json::from_value(anonymous).unwrap(),
        f.connections.as_ref(),
        ConnectionLimits::default(),
        Utc::now(),
    )
    .await;
    assert_eq!(response.status_code, 401);

    let disconnect: ApiGatewayWebsocketProxyRequest = serde_json::from_value(event("ws-disconnect.json")).unwrap();
    assert_eq!(websocket::disconnect(&disconnect, f.connections.as_ref()).await.status_code, 200);
    assert_eq!(websocket::disconnect(&disconnect, f.connections.as_ref()).await.status_code, 200, "idempotent");
    assert!(f.connections.tenant_connections(&tenant("acme"), Utc::now()).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_seed_connection_queries_work_per_tenant() {
    let f = feed().await;
    connect(&f, "a1", "acme", "audit:read", &[]).await;
    connect(&f, "a2", "acme", "admin:* reports:read", &[]).await;
    connect(&f, "g1", "globex", "admin:* audit:read", &[]).await;
    let mut anonymous = connect_event("a3", "acme", "files:read", &[]);
    anonymous.request_context.authorizer.fields.insert("auth_method".into(), json!("anonymous"));
    anonymous.request_context.authorizer.fields.insert("user_id".into(), json!(""));
    websocket::connect(&anonymous, f.connections.as_ref(), ConnectionLimits::default(), Utc::now()).await;

    let manager = ConnectionManager::new(f.connections.as_ref());
    let acme = tenant("acme");
    let names = |v: Vec<auditline::realtime::WebSocketConnectionInfo>| {
        let mut n: Vec<String> = v.into_iter().map(|c| c.connection_id).collect();
        n.sort();
        n
    };
    assert_eq!(names(manager.get_authenticated_connections(&acme).await.unwrap()), ["a1", "a2"]);
    assert_eq!(names(manager.get_connections_by_user_id(&acme, "user-of-a2").await.unwrap()), ["a2"]);
    assert_eq!(names(manager.get_connections_with_scope(&acme, "admin:delete").await.unwrap()), ["a2"]);
    assert_eq!(names(manager.get_connections_with_scope(&tenant("globex"), "admin:*").await.unwrap()), ["g1"]);
    let a3 = f
        .connections
        .tenant_connections(&acme, Utc::now())
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.connection_id == "a3")
        .unwrap();
    assert!(!a3.is_authenticated());
    assert_eq!(a3.auth_info().auth_method, AuthMethod::Anonymous);
}

/// An erasure reaches every connection that may hold a copy of the erased entry: `audit:read`
/// connections receive its record whole; others of the tenant, whatever their scope and filters,
/// a notice of ids and field names only. Another tenant hears nothing.
#[tokio::test]
async fn an_erasure_is_announced_to_every_connection_of_the_tenant_and_only_there() {
    let f = feed().await;
    for (id, tenant, scopes, query) in [
        ("c-audit", "acme", "audit:read", vec![]),
        ("c-reports", "acme", "reports:read", vec![]),
        ("c-files", "acme", "files:read", vec![]),
        ("c-filtered", "acme", "audit:read", vec![("project_id", "p-9")]),
        ("c-globex", "globex", "audit:read", vec![]),
    ] {
        assert_eq!(connect(&f, id, tenant, scopes, &query).await.status_code, 200, "{id}");
    }
    let mut request = NewEntry {
        tenant_id: tenant("acme"),
        action: AuditAction::Update,
        entity_type: EntityType::Report,
        entity_id: "report-1".into(),
        details: EntryDetails { ip_address: Some("10.9.8.7".into()), ..EntryDetails::default() },
    };
    request.details.project_id = Some("p-1".into());
    let report = f.logger.log(request).await.unwrap().entry().cloned().unwrap();
    let erasure = auditline::erasure::ErasureRequest { fields: vec!["ip_address".into()], reason: "GDPR".into() };
    let erased = f.logger.erase(&tenant("acme"), report.id, &erasure, &Default::default()).await.unwrap();
    let (response, _) = handle_stream(batch(&f).await, &f.deps).await;
    assert!(response.batch_item_failures.is_empty());

    let delivered = f.server.delivered();
    let notice =
        json!({"type": "erasure", "record": erased.record.id, "entries": [report.id], "fields": ["ip_address"]});
    let audit = &delivered["c-audit"];
    assert_eq!(audit.len(), 2, "the entry, then its erasure record: {audit:?}");
    assert_eq!(audit[1]["entry"]["id"], json!(erased.record.id));
    assert_eq!(delivered["c-reports"], vec![json!({"type": "audit_entry", "entry": report}), notice.clone()]);
    assert_eq!(delivered["c-files"], vec![notice.clone()], "it never saw the entry, but may hold nothing to drop");
    assert_eq!(delivered["c-filtered"], vec![notice], "filters narrow entries, not erasures");
    assert!(!delivered.contains_key("c-globex"), "another tenant hears nothing");
    for frames in delivered.values() {
        for frame in frames.iter().skip_while(|m| m["entry"]["id"] == json!(report.id)) {
            assert!(!frame.to_string().contains("10.9.8.7"), "no erased value after the erasure: {frame}");
        }
    }
}
