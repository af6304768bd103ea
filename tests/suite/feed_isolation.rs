//! The live feed, isolated per tenant: who may connect, how many connections a tenant and a
//! principal may hold, how long a record lives, and what the fan-out does with a slow or failing
//! connection — so that one tenant or one bad client cannot hold the others back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use auditline::apigw::authorizer::AuthorizerContext;
use auditline::apigw::stream::{FeedDeps, handle_stream, insert_event};
use auditline::apigw::websocket;
use auditline::auth::{AuthMethod, Caller};
use auditline::domain::{AuditAction, AuditLogEntry, EntityType, EntryDetails, NewEntry};
use auditline::realtime::fanout::{FanoutSettings, fan_out};
use auditline::realtime::redelivery::Redeliveries;
use auditline::realtime::{
    ConnectionFilters, ConnectionLimits, ConnectionStore, MemoryConnections, PushError, Pusher, WebSocketConnectionInfo,
};
use auditline::store::dynamo::DynamoConnections;
use auditline::store::dynamo::tables::CONNECTIONS;
use auditline_tests::feed::{Answer, ManagementServer, SlowToLoad, connection_ids};
use auditline_tests::{Backend, event, fresh_table, local_client, tenant};
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

async fn connections(backend: Backend) -> Arc<dyn ConnectionStore> {
    match backend {
        // Live connections stay in memory beside a SQLite store: they die with the process.
        Backend::Memory | Backend::Sqlite => Arc::new(MemoryConnections::new()),
        Backend::Dynamo => {
            let (client, _) = local_client();
            let table = fresh_table(&client, &CONNECTIONS, "connections").await;
            Arc::new(DynamoConnections::new(client, table))
        }
    }
}

/// A `$connect` event as API Gateway hands it over after the authorizer allowed it.
fn connect_event(
    id: &str,
    tenant: &str,
    user: &str,
    scopes: &str,
    expires_at: Option<i64>,
) -> ApiGatewayWebsocketProxyRequest {
    let mut e = event("ws-connect.json");
    e["requestContext"]["connectionId"] = json!(id);
    let mut context = serde_json::to_value(AuthorizerContext {
        user_id: user.into(),
        tenant_id: tenant.into(),
        scopes: scopes.into(),
        auth_method: "jwt".into(),
        expires_at: expires_at.map(|e| e.to_string()).unwrap_or_default(),
    })
    .unwrap();
    context["principalId"] = json!(user);
    e["requestContext"]["authorizer"] = context;
    e["queryStringParameters"] = json!({});
    e["multiValueQueryStringParameters"] = json!({});
    serde_json::from_value(e).unwrap()
}

fn body(response: &aws_lambda_events::apigw::ApiGatewayProxyResponse) -> Value {
    match &response.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => serde_json::from_str(t).unwrap(),
        _ => Value::Null,
    }
}

fn entry(tenant_name: &str, entity_type: EntityType) -> AuditLogEntry {
    NewEntry {
        tenant_id: tenant(tenant_name),
        action: AuditAction::Update,
        entity_type,
        entity_id: "e-1".into(),
        details: EntryDetails::default(),
    }
    .validate()
    .unwrap()
    .stamp(Utc::now(), 90)
    .unwrap()
}

fn caller(tenant_name: &str, user: &str) -> Caller {
    Caller {
        tenant_id: tenant(tenant_name),
        user_id: Some(user.into()),
        scopes: vec!["audit:read".into()],
        auth_method: AuthMethod::Jwt,
        credential_expires_at: None,
    }
}

/// Opened a minute ago, so a 410 means gone (not still opening).
async fn open(store: &dyn ConnectionStore, id: &str, tenant_name: &str) {
    let connected = Utc::now() - chrono::Duration::minutes(1);
    let record =
        WebSocketConnectionInfo::new(id, &caller(tenant_name, "viewer"), ConnectionFilters::default(), connected);
    store.put(&record).await.unwrap();
}

auditline_tests::on_every_backend!(
    connect_needs_a_read_scope,
    tenants_and_principals_are_held_to_their_connection_limits,
    a_record_lives_no_longer_than_its_credential,
);

async fn connect_needs_a_read_scope(backend: Backend) {
    let store = connections(backend).await;
    let limits = ConnectionLimits::default();
    for (scopes, want) in [
        ("audit:write", 403),
        ("", 403),
        ("admin:*", 403),
        ("audit:read", 200),
        ("reports:read", 200),
        ("files:*", 200),
        ("*", 200),
    ] {
        let response =
            websocket::connect(&connect_event("c", "acme", "u", scopes, None), store.as_ref(), limits, Utc::now())
                .await;
        assert_eq!(response.status_code, want, "scopes {scopes:?}");
        if want == 403 {
            assert!(body(&response)["error"]["message"].as_str().unwrap().contains("audit:read"));
        }
    }
    let live = store.tenant_connections(&tenant("acme"), Utc::now()).await.unwrap();
    assert_eq!(live.len(), 1, "only admitted connections are recorded (the last put wins under one id)");
}

async fn tenants_and_principals_are_held_to_their_connection_limits(backend: Backend) {
    let store = connections(backend).await;
    let limits = ConnectionLimits { per_tenant: 3, per_principal: 2 };
    let connect = |id: &'static str, tenant: &'static str, user: &'static str| {
        let store = store.clone();
        async move {
            let response = websocket::connect(
                &connect_event(id, tenant, user, "audit:read", None),
                store.as_ref(),
                limits,
                Utc::now(),
            )
            .await;
            (response.status_code, body(&response))
        }
    };
    assert_eq!(connect("a1", "acme", "alice").await.0, 200);
    assert_eq!(connect("a2", "acme", "alice").await.0, 200);
    let (status, refusal) = connect("a3", "acme", "alice").await;
    assert_eq!((status, refusal["error"]["code"].as_str()), (429, Some("connection_limit")), "alice's third");
    assert!(refusal["error"]["message"].as_str().unwrap().contains("these credentials hold 2"), "{refusal}");
    assert_eq!(connect("b1", "acme", "bob").await.0, 200, "another principal of the tenant still may");
    let (status, refusal) = connect("c1", "acme", "carol").await;
    assert_eq!(status, 429, "the tenant is at 3");
    assert!(refusal["error"]["message"].as_str().unwrap().contains("this tenant has 3"), "{refusal}");
    assert_eq!(connect("g1", "globex", "alice").await.0, 200, "another tenant is not affected");

    let disconnect: ApiGatewayWebsocketProxyRequest = {
        let mut e = event("ws-disconnect.json");
        e["requestContext"]["connectionId"] = json!("a1");
        serde_json::from_value(e).unwrap()
    };
    websocket::disconnect(&disconnect, store.as_ref()).await;
    assert_eq!(connect("a4", "acme", "alice").await.0, 200, "a closed connection frees its place");
    let live = store.tenant_connections(&tenant("acme"), Utc::now()).await.unwrap();
    assert_eq!(live.len(), 3);
}

async fn a_record_lives_no_longer_than_its_credential(backend: Backend) {
    let store = connections(backend).await;
    let now = Utc::now();
    let soon = now.timestamp() + 60;
    let limits = ConnectionLimits::default();
    assert_eq!(
        websocket::connect(&connect_event("short", "acme", "u", "audit:read", Some(soon)), store.as_ref(), limits, now)
            .await
            .status_code,
        200
    );
    assert_eq!(
        websocket::connect(&connect_event("long", "acme", "u", "audit:read", None), store.as_ref(), limits, now)
            .await
            .status_code,
        200
    );
    let far = now.timestamp() + 30 * 86_400;
    assert_eq!(
        websocket::connect(&connect_event("capped", "acme", "u", "audit:read", Some(far)), store.as_ref(), limits, now)
            .await
            .status_code,
        200
    );
    let expiries: HashMap<String, i64> = store
        .tenant_connections(&tenant("acme"), now)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.connection_id, c.expires_at))
        .collect();
    assert_eq!(expiries["short"], soon, "the token's expiry");
    assert_eq!(expiries["long"], now.timestamp() + 7200, "two hours");
    assert_eq!(expiries["capped"], now.timestamp() + 7200, "never past two hours");

    // A minute and a bit later the short-lived credential receives nothing.
    let later = DateTime::from_timestamp(soon + 1, 0).unwrap();
    let pusher = Recorder::default();
    let report = fan_out(
        &[entry("acme", EntityType::File)],
        store.as_ref(),
        &pusher,
        &FanoutSettings::default(),
        &Default::default(),
        later,
    )
    .await;
    assert_eq!(report.delivered, 2);
    assert!(!pusher.delivered_to("short"), "an expired credential stops receiving");
}

/// Records deliveries; answers per connection as told (a delay, a failure).
#[derive(Default)]
struct Recorder {
    delays: HashMap<String, Duration>,
    broken: Vec<String>,
    log: Mutex<Vec<(String, tokio::time::Instant)>>,
    closed: Mutex<Vec<String>>,
    /// Connections whose next post is throttled (429), once.
    throttle_once: Mutex<Vec<String>>,
}

impl Recorder {
    fn delivered_to(&self, id: &str) -> bool {
        self.log.lock().unwrap().iter().any(|(c, _)| c == id)
    }
}

#[async_trait]
impl Pusher for Recorder {
    async fn push(&self, connection_id: &str, _: &[u8]) -> Result<(), PushError> {
        if let Some(delay) = self.delays.get(connection_id) {
            tokio::time::sleep(*delay).await;
        }
        if self.broken.iter().any(|b| b == connection_id) {
            return Err(PushError::Other("500".into()));
        }
        {
            let mut throttled = self.throttle_once.lock().unwrap();
            if let Some(at) = throttled.iter().position(|c| c == connection_id) {
                throttled.remove(at);
                return Err(PushError::Throttled);
            }
        }
        self.log.lock().unwrap().push((connection_id.to_owned(), tokio::time::Instant::now()));
        Ok(())
    }

    async fn close(&self, connection_id: &str) -> Result<(), PushError> {
        self.closed.lock().unwrap().push(connection_id.to_owned());
        Ok(())
    }
}

// Virtual time: the clock moves only when every task waits, so "when" is exact and no test depends
// on how busy the machine is.
#[tokio::test(start_paused = true)]
async fn a_tenant_with_many_connections_does_not_delay_another() {
    let store = MemoryConnections::new();
    for i in 0..500 {
        open(&store, &format!("big-{i:03}"), "bigcorp").await;
    }
    open(&store, "small-0", "smallco").await;
    // Every post takes 10 ms; 8 connections are served at once.
    let mut pusher = Recorder::default();
    for i in 0..500 {
        pusher.delays.insert(format!("big-{i:03}"), Duration::from_millis(10));
    }
    pusher.delays.insert("small-0".into(), Duration::from_millis(10));
    let settings = FanoutSettings { concurrency: 8, ..FanoutSettings::default() };
    let started = tokio::time::Instant::now();
    // The big tenant's entry comes first in the batch (and sorts first): the order that used to
    // queue the small tenant behind all 500.
    let batch = [entry("bigcorp", EntityType::File), entry("smallco", EntityType::File)];
    let report = fan_out(&batch, &store, &pusher, &settings, &Default::default(), Utc::now()).await;
    assert_eq!(report.delivered, 501);
    let log = pusher.log.lock().unwrap();
    let small = log.iter().find(|(c, _)| c == "small-0").unwrap().1 - started;
    let last = log.iter().map(|(_, t)| *t - started).max().unwrap();
    assert_eq!(small, Duration::from_millis(10), "the small tenant is served in the first wave");
    assert!(last >= Duration::from_millis(500 / 8 * 10), "while the big tenant takes {last:?}");
}

#[tokio::test(start_paused = true)]
async fn a_tenant_whose_connections_take_long_to_read_does_not_delay_another() {
    // 5,000 records read at 10 ms per 1,000, as a paged Query: 50 ms before the big tenant's
    // first post. The small tenant's are read and served meanwhile.
    let store = SlowToLoad { inner: MemoryConnections::new(), per_thousand: Duration::from_millis(10) };
    for i in 0..5_000 {
        open(&store, &format!("big-{i:04}"), "aaa-bigcorp").await;
    }
    open(&store, "small-0", "zzz-smallco").await;
    let mut pusher = Recorder::default();
    pusher.delays.insert("small-0".into(), Duration::from_millis(2));
    let started = tokio::time::Instant::now();
    let batch = [entry("aaa-bigcorp", EntityType::File), entry("zzz-smallco", EntityType::File)];
    let report = fan_out(&batch, &store, &pusher, &FanoutSettings::default(), &Default::default(), Utc::now()).await;
    assert_eq!(report.delivered, 5_001);
    let log = pusher.log.lock().unwrap();
    let small = log.iter().find(|(c, _)| c == "small-0").unwrap().1 - started;
    let first_big = log.iter().filter(|(c, _)| c.starts_with("big-")).map(|(_, t)| *t - started).min().unwrap();
    assert_eq!(first_big, Duration::from_millis(50), "the big tenant's records took 50 ms to read");
    assert_eq!(
        small,
        Duration::from_millis(12),
        "the small tenant's: read in 10 ms, posted in 2, not after the big one's"
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_stops_at_its_time_budget_and_strikes_the_slow_connection() {
    let store = MemoryConnections::new();
    open(&store, "fast", "acme").await;
    open(&store, "stuck", "acme").await;
    let mut pusher = Recorder::default();
    pusher.delays.insert("stuck".into(), Duration::from_secs(3600));
    let settings = FanoutSettings { budget: Duration::from_secs(5), ..FanoutSettings::default() };
    let started = tokio::time::Instant::now();
    let batch = [entry("acme", EntityType::File), entry("acme", EntityType::Report)];
    let report = fan_out(&batch, &store, &pusher, &settings, &Default::default(), Utc::now()).await;
    // Under virtual time, the hour-long post would take an hour: the batch ended at its budget.
    let took = tokio::time::Instant::now() - started;
    assert!(took < Duration::from_secs(3600), "the batch did not wait for the stuck post ({took:?})");
    assert_eq!(report.delivered, 2, "the fast connection got both entries");
    assert_eq!(report.out_of_time, 1);
    assert_eq!(report.struck, ["stuck"]);
    assert_eq!(report.failed.len(), 2, "below the strike limit the stuck connection's entries come again");
}

#[tokio::test(start_paused = true)]
async fn a_redelivered_batch_goes_only_to_the_connections_that_missed_it() {
    let store = MemoryConnections::new();
    for id in ["fast-1", "fast-2", "broken"] {
        open(&store, id, "acme").await;
    }
    open(&store, "other-tenant", "globex").await;
    let mut failing = Recorder { broken: vec!["broken".into()], ..Recorder::default() };
    let settings = FanoutSettings { retry_base: Duration::from_millis(1), ..FanoutSettings::default() };
    let memory = Redeliveries::default();
    let batch = [entry("acme", EntityType::File), entry("globex", EntityType::File), entry("acme", EntityType::Report)];
    let first = fan_out(&batch, &store, &failing, &settings, &memory, Utc::now()).await;
    assert_eq!(first.delivered, 5, "two fast connections × two entries, and the other tenant's one");
    assert_eq!(first.failed.len(), 2, "the broken connection's entries come again");

    // The stream redelivers from the first failed record — here the whole batch; the broken
    // connection has recovered.
    failing.broken.clear();
    failing.log.lock().unwrap().clear();
    let again = fan_out(&batch, &store, &failing, &settings, &memory, Utc::now()).await;
    let log: Vec<String> = failing.log.lock().unwrap().iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(log, ["broken", "broken"], "only what was missing was sent again");
    assert_eq!(again.skipped_redelivered, 5);
    assert!(again.failed.is_empty());
    assert!(memory.is_empty(), "a batch that went through is forgotten");

    // Without the memory (a cold instance), a redelivery is a duplicate for everyone: still at
    // least once, which clients absorb by entry id.
    failing.log.lock().unwrap().clear();
    let cold = fan_out(&batch, &store, &failing, &settings, &Redeliveries::default(), Utc::now()).await;
    assert_eq!(cold.delivered, 7);
}

/// Found by the soak (1 % of posts throttled, 1,000 clients): each throttled connection slept out
/// its backoff inside one of the `concurrency` places, so a batch took (throttled ÷ concurrency) ×
/// backoff and the feed fell behind. Now they wait it out together, then go on where they stopped.
#[tokio::test(start_paused = true)]
async fn throttled_connections_wait_out_one_backoff_together_not_in_turn() {
    let store = MemoryConnections::new();
    let ids: Vec<String> = (0..40).map(|i| format!("c-{i:02}")).collect();
    for id in &ids {
        open(&store, id, "acme").await;
    }
    let pusher = Recorder::default();
    pusher.throttle_once.lock().unwrap().extend(ids.iter().cloned());
    let settings =
        FanoutSettings { concurrency: 4, retry_base: Duration::from_millis(100), ..FanoutSettings::default() };
    let started = tokio::time::Instant::now();
    let batch = [entry("acme", EntityType::File), entry("acme", EntityType::Report)];
    let report = fan_out(&batch, &store, &pusher, &settings, &Default::default(), Utc::now()).await;
    assert_eq!(report.delivered, 80, "every connection got both entries");
    assert!(report.failed.is_empty() && report.struck.is_empty());
    assert_eq!(
        tokio::time::Instant::now() - started,
        Duration::from_millis(100),
        "one backoff for all forty, not ten in a row"
    );
    assert!(report.peak_concurrency <= 4);
}

/// A connection waiting out a backoff gives its place to the next: with one place, a throttled
/// connection does not keep the others waiting for its retry.
#[tokio::test(start_paused = true)]
async fn a_connection_in_backoff_gives_its_place_to_the_next() {
    let store = MemoryConnections::new();
    for id in ["c-0", "c-1", "c-2"] {
        open(&store, id, "acme").await;
    }
    let pusher = Recorder::default();
    pusher.throttle_once.lock().unwrap().push("c-0".into());
    let settings =
        FanoutSettings { concurrency: 1, retry_base: Duration::from_millis(100), ..FanoutSettings::default() };
    let started = tokio::time::Instant::now();
    let report =
        fan_out(&[entry("acme", EntityType::File)], &store, &pusher, &settings, &Default::default(), Utc::now()).await;
    assert_eq!(report.delivered, 3);
    let log = pusher.log.lock().unwrap();
    let at = |id: &str| log.iter().find(|(c, _)| c == id).map(|(_, t)| *t - started).unwrap();
    assert_eq!(at("c-1"), Duration::ZERO, "not held behind c-0's backoff");
    assert_eq!(at("c-2"), Duration::ZERO);
    assert_eq!(at("c-0"), Duration::from_millis(100), "c-0 after its one backoff");
}

#[tokio::test(start_paused = true)]
async fn a_budget_that_ends_inside_a_post_still_ends_the_batch() {
    let store = MemoryConnections::new();
    open(&store, "stuck", "acme").await;
    let mut pusher = Recorder::default();
    pusher.delays.insert("stuck".into(), Duration::from_secs(3600));
    let settings = FanoutSettings { budget: Duration::from_secs(5), ..FanoutSettings::default() };
    let started = tokio::time::Instant::now();
    fan_out(&[entry("acme", EntityType::File)], &store, &pusher, &settings, &Default::default(), Utc::now()).await;
    assert!(tokio::time::Instant::now() - started <= Duration::from_secs(6), "the budget bounds even one post");
}

#[tokio::test]
async fn a_connection_that_keeps_failing_is_dropped_instead_of_stalling_the_stream() {
    let (client, _) = local_client();
    let table = fresh_table(&client, &CONNECTIONS, "connections").await;
    let store = Arc::new(DynamoConnections::new(client, table));
    open(store.as_ref(), "healthy", "acme").await;
    open(store.as_ref(), "broken", "acme").await;
    let server = ManagementServer::start().await;
    server.answer("broken", Answer::Broken);
    let settings = FanoutSettings { retry_base: Duration::from_millis(1), ..FanoutSettings::default() };
    let deps = FeedDeps::new(store.clone(), Arc::new(server.pusher()), settings.clone());
    let entries = [entry("acme", EntityType::File)];
    let batch = insert_event(&entries, 1);

    for attempt in 1..settings.max_strikes {
        let (response, report) = handle_stream(batch.clone(), &deps).await;
        assert_eq!(response.batch_item_failures.len(), 1, "attempt {attempt}: the entry comes again");
        assert_eq!(report.struck, ["broken"]);
    }
    let (response, report) = handle_stream(batch.clone(), &deps).await;
    assert!(response.batch_item_failures.is_empty(), "at the strike limit the stream moves on");
    assert_eq!(report.dropped, ["broken"]);
    assert_eq!(server.closed(), ["broken"], "the client is told: its connection is closed");
    assert_eq!(connection_ids(store.as_ref(), "acme").await, ["healthy"]);
    assert_eq!(server.entry_ids("healthy").len(), 1);
    assert_eq!(server.delivered()["healthy"].len(), 1, "once: the redeliveries went only to the broken connection");
}
