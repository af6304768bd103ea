//! Every function's real binary, its real `main`, under the Runtime API emulator, invoked with the
//! files in `events/`, against the local DynamoDB API.

use std::time::Duration;

use auditline_tests::auth::{claims, hs256};
use auditline_tests::event;
use auditline_tests::feed::ManagementServer;
use auditline_tests::runtime::{Outcome, RuntimeApi, function_environment, invoke, response_body, started_function};
use auditline_tests::tls::{TestCa, TlsTerminator};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

async fn environment() -> Vec<(&'static str, String)> {
    function_environment(&[]).await
}

#[tokio::test]
async fn the_http_functions_serve_their_sample_events() {
    let env = environment().await;
    let ingest = started_function("ingest", &env).await;
    let created = invoke(&ingest, &event("http-ingest.json")).await;
    assert_eq!(created["statusCode"], 201, "{created}");
    let entry = response_body(&created);
    assert_eq!(entry["tenant_id"], "acme");
    let replayed = invoke(&ingest, &event("http-ingest.json")).await;
    assert_eq!(response_body(&replayed)["id"], entry["id"], "the Idempotency-Key works across invocations");
    let batch = invoke(&ingest, &event("http-ingest-batch.json")).await;
    assert_eq!((batch["statusCode"].as_u64(), response_body(&batch)["stored"].as_u64()), (Some(201), Some(3)));

    let mut get = event("http-get-log.json");
    get["pathParameters"]["id"] = entry["id"].clone();
    get["rawPath"] = json!(format!("/audit/logs/{}", entry["id"].as_str().unwrap()));
    let got = invoke(&started_function("get-log", &env).await, &get).await;
    assert_eq!((got["statusCode"].as_u64(), response_body(&got)), (Some(200), entry.clone()));

    for (name, file, count) in [
        ("list-logs", "http-list-logs.json", 1),
        ("entity-logs", "http-entity-logs.json", 1),
        ("project-logs", "http-project-logs.json", 1),
    ] {
        let response = invoke(&started_function(name, &env).await, &event(file)).await;
        assert_eq!(response["statusCode"], 200, "{name}");
        assert_eq!(response_body(&response)["count"], count, "{name}: {}", response["body"]);
    }
    let mut stats = event("http-stats.json");
    stats["rawQueryString"] = json!("");
    stats.as_object_mut().unwrap().remove("queryStringParameters");
    let response = invoke(&started_function("stats", &env).await, &stats).await;
    assert_eq!(response_body(&response)["total_entries"], 4);
    let response = invoke(&started_function("health", &env).await, &event("http-health.json")).await;
    assert_eq!(
        (response["statusCode"].as_u64(), response_body(&response)["status"].as_str()),
        (Some(200), Some("healthy"))
    );
}

#[tokio::test]
async fn the_authorizer_serves_both_apis() {
    let mut env = environment().await;
    // The sample $connect comes from this origin's page.
    env.push(("CORS_ALLOWED_ORIGINS", "https://dashboard.example.com".to_owned()));
    let authorizer = started_function("authorizer", &env).await;
    let mut c = claims("user-789", "audit:read");
    c["tenant_id"] = json!("acme");
    let token = hs256(&c);

    let mut http = event("authorizer-http.json");
    http["headers"]["authorization"] = json!(format!("Bearer {token}"));
    let response = invoke(&authorizer, &http).await;
    assert_eq!(response["isAuthorized"], true);
    assert_eq!(response["context"]["tenant_id"], "acme");
    let denied = invoke(&authorizer, &event("authorizer-http.json")).await;
    assert_eq!(denied["isAuthorized"], false, "the sample's placeholder token is refused");

    let mut ws = event("authorizer-websocket-connect.json");
    ws["queryStringParameters"]["token"] = json!(token);
    ws["multiValueQueryStringParameters"]["token"] = json!([token]);
    let response = invoke(&authorizer, &ws).await;
    assert_eq!(response["policyDocument"]["Statement"][0]["Effect"], "Allow");
    let response = invoke(&authorizer, &event("authorizer-websocket-connect.json")).await;
    assert_eq!(response["policyDocument"]["Statement"][0]["Effect"], "Deny");

    match authorizer.api.invoke(&json!({"something": "else"}), WAIT).await {
        Some(Outcome::Error(e)) => assert!(e["errorMessage"].as_str().unwrap_or("").contains("neither")),
        other => panic!("an unknown event is an invocation error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_websocket_and_stream_functions_serve_their_sample_events() {
    let mut env = environment().await;
    let management = ManagementServer::start().await;
    env.push(("WEBSOCKET_ENDPOINT", management.url.clone()));
    let connect = invoke(&started_function("ws-connect", &env).await, &event("ws-connect.json")).await;
    assert_eq!(connect["statusCode"], 200, "{connect}");
    assert_eq!(connect["headers"]["sec-websocket-protocol"], "bearer");

    let fanout = started_function("stream-fanout", &env).await;
    let response = invoke(&fanout, &event("stream-batch.json")).await;
    assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    let delivered = management.entry_ids("Jq4FvcM0oAMCLpw=");
    assert_eq!(
        delivered,
        ["019ac4a1-6f3e-7c52-9a10-4c1d2b3e4f50".to_owned()].into(),
        "the REPORT of project-456 only, as the connection's scope and filters allow"
    );

    let disconnect = invoke(&started_function("ws-disconnect", &env).await, &event("ws-disconnect.json")).await;
    assert_eq!(disconnect["statusCode"], 200);
    management.clear();
    invoke(&fanout, &event("stream-batch.json")).await;
    assert!(management.delivered().is_empty(), "a disconnected client gets nothing");
}

#[tokio::test]
async fn the_seal_and_integrity_functions_serve_their_sample_events() {
    let mut env = environment().await;
    let kms = auditline_tests::kms::local_kms();
    env.push(("SEAL_KMS_KEY_ID", auditline_tests::kms::p256_key(&kms).await));
    env.push(("KMS_ENDPOINT", auditline_tests::dynamodb_endpoint()));
    // A first run looks back over the retention, an hour per query: two days keeps this quick.
    env.push(("AUDIT_RETENTION_DAYS", "2".into()));
    let created = invoke(&started_function("ingest", &env).await, &event("http-ingest.json")).await;
    let id = response_body(&created)["id"].as_str().unwrap().to_owned();

    // A scheduled run: the entry's hour is still open, so nothing is sealed, but the key is published.
    let report = invoke(&started_function("seal", &env).await, &event("seal-schedule.json")).await;
    assert_eq!(report["checkpoints"], 0, "{report}");
    let keys = response_body(&invoke(&started_function("list-keys", &env).await, &event("http-keys.json")).await);
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(1), "{keys}");
    assert!(keys["keys"][0]["public_key_pem"].as_str().unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));

    let checkpoints = invoke(&started_function("list-checkpoints", &env).await, &event("http-checkpoints.json")).await;
    assert_eq!(
        (checkpoints["statusCode"].as_u64(), response_body(&checkpoints)["count"].as_u64()),
        (Some(200), Some(0))
    );
    let mut proof = event("http-proof.json");
    proof["pathParameters"]["id"] = json!(id);
    proof["rawPath"] = json!(format!("/audit/logs/{id}/proof"));
    let proof = invoke(&started_function("get-proof", &env).await, &proof).await;
    assert_eq!((proof["statusCode"].as_u64(), &response_body(&proof)["sealed"]), (Some(200), &json!(false)), "{proof}");
}

#[tokio::test]
async fn a_bad_configuration_is_reported_as_an_init_error() {
    let mut env = environment().await;
    env.push(("JWT_ALGORITHM", "none".into()));
    let api = RuntimeApi::start().await;
    let mut f = api.spawn_function("authorizer", &env);
    let status = tokio::task::spawn_blocking(move || {
        let status = f.child.wait().unwrap();
        (status, f)
    })
    .await
    .unwrap()
    .0;
    assert!(!status.success(), "the function stops instead of serving with a broken configuration");
    assert_eq!(api.first_poll(), None, "it never asked for an event");
    let reported = api.init_error().expect("the failure reached the Runtime API's init-error endpoint");
    assert_eq!(reported["errorType"], "Runtime.InitError");
    let message = reported["errorMessage"].as_str().unwrap();
    assert!(message.contains("JWT_ALGORITHM"), "it names the variable at fault: {message}");
    assert!(!message.contains(auditline_tests::auth::SECRET), "and no secret");
}

#[tokio::test]
async fn a_handler_that_names_no_function_is_reported_as_an_init_error() {
    let api = RuntimeApi::start().await;
    let mut f = api.spawn_function("ingets", &[]);
    let status = tokio::task::spawn_blocking(move || f.child.wait().unwrap()).await.unwrap();
    assert!(!status.success());
    assert_eq!(api.first_poll(), None);
    let message = api.init_error().expect("an init error")["errorMessage"].as_str().unwrap().to_owned();
    assert!(
        message.contains("\"ingets\"") && message.contains("ingest"),
        "it names the handler and the choices: {message}"
    );
}

/// Over TLS, as on AWS: the functions trust Amazon's roots and `AWS_CA_BUNDLE`, nothing else — not
/// the machine's store (`SSL_CERT_FILE` names the test CA here too, and is ignored).
#[tokio::test]
async fn over_tls_the_functions_trust_amazons_roots_and_the_ca_bundle_only() {
    let ca = TestCa::create();
    let tls = TlsTerminator::start(&ca, &auditline_tests::dynamodb_endpoint()).await;
    let mut env = environment().await;
    for (key, value) in env.iter_mut() {
        if *key == "DYNAMODB_ENDPOINT" {
            *value = tls.url.clone();
        }
    }
    env.push(("SSL_CERT_FILE", ca.ca_file.display().to_string()));
    let health = event("http-health.json");

    let untrusting = started_function("health", &env).await;
    let refused = invoke(&untrusting, &health).await;
    assert_eq!(refused["statusCode"], 503, "a server whose CA is not trusted is not talked to: {refused}");
    assert_eq!(response_body(&refused)["status"], "degraded", "{refused}");

    env.push(("AWS_CA_BUNDLE", ca.ca_file.display().to_string()));
    let trusting = started_function("health", &env).await;
    let answered = invoke(&trusting, &health).await;
    assert_eq!(
        (answered["statusCode"].as_u64(), response_body(&answered)["status"].as_str()),
        (Some(200), Some("healthy"))
    );
    let handshakes = tls.handshakes();
    assert!(handshakes >= 1);
    for _ in 0..3 {
        assert_eq!(invoke(&trusting, &health).await["statusCode"], 200);
    }
    assert_eq!(tls.handshakes(), handshakes, "later invocations reuse the connection: no new handshake");

    // A bundle that is not PEM certificates stops the start with a clear init error.
    let bad = ca.dir.join("not-a-bundle.pem");
    std::fs::write(&bad, "hello").unwrap();
    *env.iter_mut().find(|(k, _)| *k == "AWS_CA_BUNDLE").unwrap() = ("AWS_CA_BUNDLE", bad.display().to_string());
    let api = RuntimeApi::start().await;
    let mut f = api.spawn_function("health", &env);
    let status = tokio::task::spawn_blocking(move || f.child.wait().unwrap()).await.unwrap();
    assert!(!status.success());
    let message = api.init_error().expect("an init error")["errorMessage"].as_str().unwrap().to_owned();
    assert!(message.starts_with("AWS_CA_BUNDLE: "), "{message}");
}

/// With `PRIME_CONNECTIONS`, the handshake is paid in init: the terminator has seen it before the
/// first event, and the invocations that follow open no connection.
#[tokio::test]
async fn priming_opens_the_connection_during_init() {
    let ca = TestCa::create();
    let tls = TlsTerminator::start(&ca, &auditline_tests::dynamodb_endpoint()).await;
    let mut env = environment().await;
    for (key, value) in env.iter_mut() {
        if *key == "DYNAMODB_ENDPOINT" {
            *value = tls.url.clone();
        }
    }
    env.push(("AWS_CA_BUNDLE", ca.ca_file.display().to_string()));
    env.push(("PRIME_CONNECTIONS", "true".into()));
    let list = started_function("list-logs", &env).await;
    assert_eq!(tls.handshakes(), 1, "the connection is open before the first event");
    for _ in 0..3 {
        assert_eq!(invoke(&list, &event("http-list-logs.json")).await["statusCode"], 200);
    }
    assert_eq!(tls.handshakes(), 1, "and the invocations use it");
}

/// DynamoDB unreachable when the function starts and when it is first invoked: it starts, and
/// answers with the usual clear error instead of crashing — with priming on or off.
#[tokio::test]
async fn a_function_whose_endpoint_is_down_starts_and_answers_clearly() {
    let mut env = environment().await;
    for (key, value) in env.iter_mut() {
        if *key == "DYNAMODB_ENDPOINT" {
            *value = "http://127.0.0.1:9".into();
        }
    }
    // Without priming init opens no connection; with it, the failed attempt is only logged.
    for prime in ["false", "true"] {
        let mut env = env.clone();
        env.push(("PRIME_CONNECTIONS", prime.into()));
        let list = started_function("list-logs", &env).await;
        let response = invoke(&list, &event("http-list-logs.json")).await;
        assert_eq!(response["statusCode"], 503, "priming {prime}: {response}");
        assert!(
            response_body(&response)["error"].is_object() || response_body(&response)["error"].is_string(),
            "{response}"
        );
        assert!(!response.to_string().contains("127.0.0.1:9"), "no internal detail in the answer: {response}");
        let again = invoke(&list, &event("http-list-logs.json")).await;
        assert_eq!(again["statusCode"], 503, "still serving: {again}");
    }
}

#[tokio::test]
async fn the_export_and_archive_functions_serve_their_sample_events() {
    let bucket = auditline_tests::unique_name("lambda-archive").to_lowercase().replace('_', "-");
    let archive = auditline::store::s3::S3Archive::for_local_endpoint(&auditline_tests::dynamodb_endpoint(), &bucket);
    archive.client().create_bucket().bucket(&bucket).send().await.expect("a bucket on the local S3 API");
    let mut env = environment().await;
    env.push(("ARCHIVE_BUCKET", bucket.clone()));
    env.push(("S3_ENDPOINT", auditline_tests::dynamodb_endpoint()));

    // The sample stream batch: its entries land in the bucket, under their partitions.
    let response = invoke(&started_function("stream-archive", &env).await, &event("stream-batch.json")).await;
    assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    let listed = archive.client().list_objects_v2().bucket(&bucket).send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(!keys.is_empty() && keys.iter().all(|k| k.starts_with("tenant=") && k.ends_with(".jsonl.gz")), "{keys:?}");

    // The sample export: CSV with its header, and the export's own VIEW entry stored.
    let export = started_function("export", &env).await;
    let ingest = started_function("ingest", &env).await;
    let mut report = event("http-ingest.json");
    report["body"] = json!(json!({"action": "UPDATE", "entity_type": "REPORT", "entity_id": "r-1"}).to_string());
    report["headers"].as_object_mut().unwrap().remove("idempotency-key");
    assert_eq!(invoke(&ingest, &report).await["statusCode"], 201);
    let exported = invoke(&export, &event("http-export.json")).await;
    assert_eq!(exported["statusCode"], 200, "{exported}");
    assert!(exported["headers"]["content-type"].as_str().unwrap().starts_with("text/csv"), "{exported}");
    let text = exported["body"].as_str().unwrap();
    assert!(text.starts_with("id,timestamp,tenant_id,action,entity_type,entity_id,"), "{text}");
    assert!(text.contains(",r-1,"), "{text}");
}

/// The fan-out binary under the Runtime API emulator while the Management API fails a share of its
/// posts (429 and 500) and says one connection is gone: with the stream's redelivery from the first
/// reported record (as Lambda does), every live connection gets every entry its scope allows, none
/// it may not see, and only the gone connection's record is removed.
#[tokio::test]
async fn the_fan_out_binary_under_management_api_faults_delivers_what_each_connection_may_see() {
    use auditline::auth::{AuthMethod, Caller};
    use auditline::domain::{AuditAction, EntityType};
    use auditline::realtime::{ConnectionFilters, ConnectionStore, WebSocketConnectionInfo};
    use auditline::store::DynamoStore;
    use auditline::store::dynamo::DynamoConnections;
    use auditline::{AuditLogger, AuditSettings};
    use auditline_tests::feed::{Answer, stream_event};
    use auditline_tests::{local_client, new_entry, tenant};

    let mut env = environment().await;
    let management = ManagementServer::start().await;
    management.flaky(200);
    management.answer("gone-1", Answer::Gone);
    env.push(("WEBSOCKET_ENDPOINT", management.url.clone()));
    let table = |name: &str| env.iter().find(|(k, _)| *k == name).unwrap().1.clone();
    let (client, _) = local_client();
    let connections = DynamoConnections::new(client.clone(), table("CONNECTIONS_TABLE"));
    // Connected a while ago: a 410 right after $connect is forgiven (the connect race), not this one.
    let now = chrono::Utc::now() - chrono::Duration::minutes(5);
    let caller = |t: &str, scope: &str| Caller {
        tenant_id: tenant(t),
        user_id: Some(format!("user-{t}")),
        scopes: vec![scope.to_owned()],
        auth_method: AuthMethod::Jwt,
        credential_expires_at: None,
    };
    // (connection, tenant, scope): what each may see follows from tenant and scope.
    let clients = [
        ("a-all", "ta", "audit:read"),
        ("a-files", "ta", "files:read"),
        ("b-all", "tb", "audit:read"),
        ("gone-1", "ta", "audit:read"),
    ];
    for (id, t, scope) in clients {
        connections
            .put(&WebSocketConnectionInfo::new(id, &caller(t, scope), ConnectionFilters::default(), now))
            .await
            .unwrap();
    }
    let store = DynamoStore::new(client.clone(), table("AUDIT_ENTRIES_TABLE"), table("AUDIT_COUNTERS_TABLE"));
    let logger = AuditLogger::new(std::sync::Arc::new(store), AuditSettings::default());
    let mut written = Vec::new();
    for i in 0..24 {
        let t = if i % 3 == 2 { "tb" } else { "ta" };
        let entity_type = if i % 2 == 0 { EntityType::File } else { EntityType::Report };
        let entry = new_entry(&tenant(t), AuditAction::Create, entity_type, &format!("e-{i}"), None, None);
        let stored = logger.log(entry).await.unwrap().entry().cloned().unwrap();
        written.push((stored.id.to_string(), t, entity_type));
    }

    // Lambda's loop: invoke, and on reported failures deliver again from the first one reported.
    let fanout = started_function("stream-fanout", &env).await;
    let mut batch = stream_event(&client, &table("AUDIT_ENTRIES_TABLE")).await;
    assert_eq!(batch["Records"].as_array().unwrap().len(), 24);
    let mut invocations = 0;
    loop {
        invocations += 1;
        assert!(invocations <= 20, "the batch is delivered within 20 invocations");
        let response = invoke(&fanout, &batch).await;
        let Some(first) = response["batchItemFailures"].as_array().and_then(|f| f.first()).cloned() else { break };
        let sequence = first["itemIdentifier"].clone();
        let records = batch["Records"].as_array().unwrap().clone();
        let from = records.iter().position(|r| r["dynamodb"]["SequenceNumber"] == sequence).expect("a reported record");
        batch["Records"] = json!(records[from..].to_vec());
    }

    for (id, t, scope) in clients.iter().take(3) {
        let got = management.entry_ids(id);
        let allowed: std::collections::HashSet<String> = written
            .iter()
            .filter(|(_, et, ty)| et == t && (*scope == "audit:read" || *ty == EntityType::File))
            .map(|(e, _, _)| e.clone())
            .collect();
        assert_eq!(got, allowed, "{id} gets exactly what its tenant and scope allow");
    }
    let live: Vec<String> = auditline_tests::feed::connection_ids(&connections, "ta").await.into_iter().collect();
    assert_eq!(live, ["a-all", "a-files"], "the gone connection's record is removed, and only it");
    assert!(
        management.attempts("a-all") > management.entry_ids("a-all").len(),
        "the stand-in did fail posts (retried)"
    );
}
