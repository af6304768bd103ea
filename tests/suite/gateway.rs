//! End to end through the local gateway, with real HTTP and WebSocket clients on real sockets.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use auditline::Config;
use auditline_local::{Limits, Options, Running, SealOptions, Storage, start};
use auditline_tests::auth::{SECRET, claims, hs256};
use auditline_tests::client::{HttpReply, Socket, http, receive, websocket};
use auditline_tests::{tenant, unique_name};
use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Deliveries must arrive within this (they take milliseconds; the bound only catches losses).
/// How long a test waits for something that should happen at once (generous: a busy 2-core machine
/// may stall for seconds; passing tests never wait this long).
const DELIVERY: Duration = Duration::from_secs(20);

fn config(extra: &[(&str, String)]) -> Config {
    let mut vars: Vec<(&str, String)> = vec![("JWT_SECRET", SECRET.to_owned())];
    vars.extend(extra.iter().cloned());
    Config::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())).unwrap()
}

async fn gateway(storage: Storage, config: Config) -> Running {
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    start(Options {
        bind,
        storage,
        config,
        limits: Limits::default(),
        seal: SealOptions::default(),
        archive: None,
        push_faults_per_mille: 0,
        streams: Default::default(),
    })
    .await
    .expect("the gateway starts")
}

/// The gateway on its default store: SQLite, in a new data directory.
fn sqlite() -> Storage {
    Storage::Sqlite { dir: auditline_tests::fresh_dir("gateway-data") }
}

async fn default_gateway() -> Running {
    gateway(sqlite(), config(&[])).await
}

fn token(tenant: &str, scope: &str) -> String {
    let mut c = claims(&format!("user-of-{tenant}"), scope);
    c["tenant_id"] = json!(tenant);
    hs256(&c)
}

async fn post(g: &Running, token: &str, body: &Value) -> HttpReply {
    let auth = format!("Bearer {token}");
    http("POST", &format!("{}/audit/logs", g.http_url()), &[("authorization", &auth)], Some(body)).await
}

async fn open(g: &Running, query: &str, headers: &[(&str, &str)]) -> Socket {
    let url = format!("{}{query}", g.websocket_url());
    websocket(&url, headers).await.expect("the connection is accepted").0
}

fn entry_ids(messages: &[Value]) -> HashSet<String> {
    messages.iter().map(|m| m["entry"]["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn credentials_are_accepted_in_every_position() {
    let g = default_gateway().await;
    let t = token("acme", "audit:read");
    let key = g.credentials.api_key.expose().to_owned();
    let bearer = format!("Bearer {t}");
    let protocol = format!("bearer, {t}");
    for (query, headers) in [
        (String::new(), vec![("authorization", bearer.as_str())]),
        (format!("?token={t}"), vec![]),
        (String::new(), vec![("sec-websocket-protocol", protocol.as_str())]),
        (String::new(), vec![("x-api-key", key.as_str())]),
        (format!("?api_key={key}"), vec![]),
    ] {
        let url = format!("{}{query}", g.websocket_url());
        let (mut socket, response) =
            websocket(&url, &headers).await.unwrap_or_else(|s| panic!("{headers:?} {query}: {s}"));
        if headers.iter().any(|(k, _)| *k == "sec-websocket-protocol") {
            assert_eq!(response.get("sec-websocket-protocol").unwrap(), "bearer", "the subprotocol is answered");
        }
        socket.close(None).await.unwrap();
    }
    assert!(g.credentials.token.is_none(), "configured with a JWT secret, the gateway mints no token with it");
    g.shutdown().await;
}

#[tokio::test]
async fn missing_or_bad_credentials_are_refused() {
    let g = default_gateway().await;
    let url = g.websocket_url();
    assert_eq!(websocket(&url, &[]).await.err(), Some(403));
    assert_eq!(websocket(&format!("{url}?token=not.a.token"), &[]).await.err(), Some(403));
    let expired = hs256(&json!({"sub": "u", "exp": 1_000_000}));
    assert_eq!(websocket(&format!("{url}?token={expired}"), &[]).await.err(), Some(403));
    let forged = format!("alk_{}", "A".repeat(43));
    assert_eq!(websocket(&url, &[("x-api-key", &forged)]).await.err(), Some(403));
    let bad_filter = format!("{url}?token={}&entity_type=GADGET", token("acme", "audit:read"));
    assert_eq!(websocket(&bad_filter, &[]).await.err(), Some(400), "$connect refuses a bad filter");

    let list = format!("{}/audit/logs", g.http_url());
    assert_eq!(http("GET", &list, &[], None).await.status, 403);
    assert_eq!(http("GET", &list, &[("authorization", "Bearer nope")], None).await.status, 403);
    let writer = format!("Bearer {}", token("acme", "audit:write"));
    assert_eq!(http("GET", &list, &[("authorization", &writer)], None).await.status, 403, "scope per route");
    assert_eq!(http("GET", &format!("{}/nowhere", g.http_url()), &[], None).await.status, 404);
    assert_eq!(http("GET", &format!("{}/audit/health", g.http_url()), &[], None).await.status, 200);
    g.shutdown().await;
}

#[tokio::test]
async fn posted_entries_reach_exactly_the_clients_allowed_to_see_them() {
    let g = default_gateway().await;
    let everything = open(&g, &format!("?token={}", token("acme", "audit:read")), &[]).await;
    let reports = open(&g, &format!("?token={}", token("acme", "reports:read")), &[]).await;
    let project = open(&g, &format!("?token={}&project_id=p-1", token("acme", "audit:read")), &[]).await;
    let other_tenant = open(&g, &format!("?token={}", token("globex", "*")), &[]).await;
    let writer = token("acme", "audit:write");

    let mut stored = Vec::new();
    for (entity_type, project_id) in [("REPORT", "p-1"), ("FILE", "p-1"), ("REPORT", "p-2"), ("PROJECT", "p-2")] {
        let body =
            json!({"action": "UPDATE", "entity_type": entity_type, "entity_id": "e-1", "project_id": project_id});
        let reply = post(&g, &writer, &body).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        stored.push(reply.body);
    }
    let batch = json!([{"action": "VIEW", "entity_type": "FILE", "entity_id": "f"}, {"action": "VIEW", "entity_type": "REPORT", "entity_id": "r"}]);
    let batch_reply = post(&g, &writer, &batch).await;
    stored.extend(batch_reply.body["results"].as_array().unwrap().iter().map(|r| r["entry"].clone()));
    let id = |i: usize| stored[i]["id"].as_str().unwrap().to_owned();

    let cases = [
        (everything, (0..6).map(id).collect::<HashSet<_>>()),
        (reports, [0, 2, 5].into_iter().map(id).collect()),
        (project, [0, 1].into_iter().map(id).collect()),
        (other_tenant, HashSet::new()),
    ];
    let mut sockets = Vec::new();
    for (i, (mut socket, want)) in cases.into_iter().enumerate() {
        let messages = receive(&mut socket, want.len(), DELIVERY).await;
        assert_eq!(entry_ids(&messages), want, "client {i}");
        if i == 0 {
            assert_eq!(messages[0], json!({"type": "audit_entry", "entry": stored[0]}), "the HTTP API's entry shape");
        }
        sockets.push(socket);
    }
    for (i, socket) in sockets.iter_mut().enumerate() {
        let extra = receive(socket, 1, Duration::from_millis(300)).await;
        assert!(extra.is_empty(), "client {i} got nothing else, nothing twice: {extra:?}");
    }
    g.shutdown().await;
}

#[tokio::test]
async fn a_disconnect_removes_the_connection() {
    let g = default_gateway().await;
    let mut socket = open(&g, &format!("?token={}", token("acme", "audit:read")), &[]).await;
    let acme = tenant("acme");
    assert_eq!(g.connections().tenant_connections(&acme, chrono::Utc::now()).await.unwrap().len(), 1);
    socket.send(Message::Text("clients may talk; nothing is routed".into())).await.unwrap();
    socket.close(None).await.unwrap();
    let deadline = Instant::now() + DELIVERY;
    while !g.connections().tenant_connections(&acme, chrono::Utc::now()).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the record is gone after $disconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    g.shutdown().await;
}

#[tokio::test]
async fn with_a_dynamodb_api_the_gateway_follows_the_table_stream() {
    let name = unique_name("gw");
    let tables: Vec<(&str, String)> = vec![
        ("AUDIT_ENTRIES_TABLE", format!("{name}-entries")),
        ("AUDIT_COUNTERS_TABLE", format!("{name}-counters")),
        ("API_KEYS_TABLE", format!("{name}-keys")),
        ("IDEMPOTENCY_TABLE", format!("{name}-idempotency")),
        ("CONNECTIONS_TABLE", format!("{name}-connections")),
    ];
    let endpoint = auditline_tests::dynamodb_endpoint();
    let g = gateway(Storage::DynamoDb { endpoint }, config(&tables)).await;
    let mut socket = open(&g, "", &[("x-api-key", g.credentials.api_key.expose())]).await;
    let key = g.credentials.api_key.expose().to_owned();
    let url = format!("{}/audit/logs", g.http_url());
    let reply = http(
        "POST",
        &url,
        &[("x-api-key", &key)],
        Some(&json!({"action": "DELETE", "entity_type": "FILE", "entity_id": "f-1"})),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let messages = receive(&mut socket, 1, Duration::from_secs(10)).await;
    assert_eq!(entry_ids(&messages), HashSet::from([reply.body["id"].as_str().unwrap().to_owned()]));
    let listed = http("GET", &url, &[("x-api-key", &key)], None).await;
    assert_eq!(listed.body["count"], 1);
    g.shutdown().await;
}

#[tokio::test]
async fn the_binary_runs_prints_working_credentials_and_stops_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut child = Command::new(auditline_tests::binary("auditline-local"))
        .env("AUDITLINE_PORT", "0")
        .env("AUDITLINE_DATA_DIR", auditline_tests::fresh_dir("binary-data"))
        .env_remove("DYNAMODB_ENDPOINT")
        .env_remove("AUDITLINE_SEAL_KEY_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the local gateway binary runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut key) = (None, None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("HTTP API") {
            url = rest.split_whitespace().next().map(|u| u.trim_end_matches("/audit/logs").to_owned());
        }
        if let Some(rest) = line.trim().strip_prefix("api key") {
            key = rest.split_whitespace().next().map(str::to_owned);
            break;
        }
    }
    let (url, key) = (url.expect("the URL is printed"), key.expect("an API key is printed"));
    let health = http("GET", &format!("{url}/audit/health"), &[], None).await;
    assert_eq!((health.status, health.body["status"].as_str()), (200, Some("healthy")));
    let body = json!({"action": "CREATE", "entity_type": "ENTITY", "entity_id": "entity-123"});
    assert_eq!(http("POST", &format!("{url}/audit/logs"), &[("x-api-key", &key)], Some(&body)).await.status, 201);

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    // A guard against hanging forever, not a measure of speed.
    let exited = tokio::time::timeout(Duration::from_secs(120), tokio::task::spawn_blocking(move || child.wait()))
        .await
        .expect("the gateway exits on Ctrl-C");
    let status = exited.unwrap().unwrap();
    assert!(status.success(), "a clean exit on Ctrl-C: {status}");
}

async fn gateway_with(limits: Limits, config: Config) -> Running {
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    start(Options {
        bind,
        storage: sqlite(),
        config,
        limits,
        seal: SealOptions::default(),
        archive: None,
        push_faults_per_mille: 0,
        streams: Default::default(),
    })
    .await
    .expect("the gateway starts")
}

#[tokio::test]
async fn the_development_token_is_signed_only_with_a_secret_the_gateway_made() {
    let own = gateway_with(Limits::default(), Config::from_lookup(|_| None).unwrap()).await;
    let dev = own.credentials.token.as_ref().expect("no JWT key configured: a token is minted").expose().to_owned();
    let list = format!("{}/audit/logs", own.http_url());
    assert_eq!(http("GET", &list, &[("authorization", &format!("Bearer {dev}"))], None).await.status, 200);
    // Signed with the gateway's own random secret: worthless to a deployment with another key.
    let configured = gateway(sqlite(), config(&[])).await;
    let other = format!("{}/audit/logs", configured.http_url());
    assert_eq!(http("GET", &other, &[("authorization", &format!("Bearer {dev}"))], None).await.status, 403);
    assert!(configured.credentials.token.is_none(), "and a configured secret never signs one");
    own.shutdown().await;
    configured.shutdown().await;
}

#[tokio::test]
async fn sessions_are_capped_and_a_client_that_never_reads_holds_a_bounded_buffer() {
    let limits = Limits { max_sessions: 3, session_buffer_bytes: 128 * 1024, ..Limits::default() };
    let g = gateway_with(limits, config(&[])).await;
    let reader = format!("?token={}", token("acme", "audit:read"));
    let mut healthy = open(&g, &reader, &[]).await;
    let _never_reads = open(&g, &reader, &[]).await;
    let third = open(&g, &reader, &[]).await;
    assert_eq!(websocket(&format!("{}{reader}", g.websocket_url()), &[]).await.err(), Some(503), "the fourth");
    drop(third);

    // ~16 MB of entries: far more than the kernel's socket buffers hold for the sleeper.
    let writer = token("acme", "audit:write");
    let blob = "z".repeat(100_000);
    let mut most_queued = 0;
    for i in 0..160 {
        let body = json!({"action": "UPDATE", "entity_type": "FILE", "entity_id": format!("f-{i}"), "changes": {"blob": blob}});
        assert_eq!(post(&g, &writer, &body).await.status, 201);
        most_queued = most_queued.max(g.sessions().queued_bytes());
        if i % 20 == 19 {
            let got = receive(&mut healthy, 20, DELIVERY).await;
            assert_eq!(got.len(), 20, "the reader keeps up, whatever the sleeper does");
        }
    }
    assert!(most_queued <= 2 * 128 * 1024, "at most a buffer per session waits: {most_queued} bytes");
    g.shutdown().await;
}

#[tokio::test]
async fn a_client_frame_over_the_limit_ends_only_that_session() {
    let g = gateway_with(Limits::default(), config(&[])).await;
    let reader = format!("?token={}", token("acme", "audit:read"));
    let mut big = open(&g, &reader, &[]).await;
    let mut other = open(&g, &reader, &[]).await;
    let _ = big.send(Message::Text("x".repeat(200 * 1024).into())).await;
    let closed = tokio::time::timeout(DELIVERY, async {
        while let Some(Ok(message)) = futures::StreamExt::next(&mut big).await {
            if message.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the oversized sender is disconnected");
    let body = json!({"action": "VIEW", "entity_type": "FILE", "entity_id": "f"});
    assert_eq!(post(&g, &token("acme", "audit:write"), &body).await.status, 201);
    assert_eq!(receive(&mut other, 1, DELIVERY).await.len(), 1, "the others are served as before");
    g.shutdown().await;
}
