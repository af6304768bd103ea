//! Driving the HTTP handlers with API Gateway events, exactly as Lambda does.

use std::sync::Arc;

use auditline::apigw::http::{AuditApi, Route, handle};
use auditline::idempotency::MemoryIdempotency;
use auditline::seal::{SealSettings, SealStore};
use auditline::store::dynamo::tables::{CHECKPOINTS, COUNTERS, ENTRIES, IDEMPOTENCY, PROOFS};
use auditline::store::dynamo::{DynamoIdempotency, RequestCounter, SealTables};
use auditline::store::{AuditStore, DynamoStore, MemoryStore};
use auditline::{AuditLogger, AuditSettings};
use lambda_http::Body;
use serde_json::Value;

use super::{event, fresh_table, local_client};

/// A handler's response, decoded.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    /// The body parsed as JSON (`Null` when it is not JSON).
    pub body: Value,
    /// The body as sent.
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error code of an error envelope.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// Runs `event` (an API Gateway HTTP API event) through the route's real handler.
pub async fn call(api: &AuditApi, route: Route, event: &Value) -> Reply {
    let request = lambda_http::request::from_str(&event.to_string())
        .unwrap_or_else(|e| panic!("not a valid API Gateway event ({e}): {event}"));
    let response = handle(route, request, api).await;
    let (parts, body) = response.into_parts();
    let text = match body {
        Body::Text(t) => t,
        Body::Binary(b) => String::from_utf8(b).expect("a UTF-8 body"),
        _ => String::new(),
    };
    let is_json = parts.headers.get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let body = if is_json { serde_json::from_str(&text).expect("a JSON body") } else { Value::Null };
    Reply { status: parts.status.as_u16(), headers: parts.headers, body, text }
}

/// Sets an event's query string the way API Gateway delivers it: `rawQueryString` (percent-encoded,
/// which is what lambda_http reads) and `queryStringParameters`.
pub fn with_query(e: &mut Value, pairs: &[(&str, &str)]) {
    use auditline_cli::client::encode;
    let raw: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
    e["rawQueryString"] = Value::String(raw.join("&"));
    let map: serde_json::Map<String, Value> = pairs.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect();
    if map.is_empty() {
        e.as_object_mut().expect("an event object").remove("queryStringParameters");
    } else {
        e["queryStringParameters"] = Value::Object(map);
    }
}

/// A sample event from `events/`, changed by `edit`.
pub fn sample(file: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut e = event(file);
    edit(&mut e);
    e
}

/// The API over `store`, with an empty seal store beside it (for stores that only fail, or tests
/// that do not seal).
pub fn api_over(
    store: Arc<dyn AuditStore>,
    idempotency: Arc<dyn auditline::idempotency::IdempotencyStore>,
) -> AuditApi {
    api_with_seal(store, Arc::new(MemoryStore::new()), idempotency)
}

pub fn api_with_seal(
    store: Arc<dyn AuditStore>,
    seal: Arc<dyn SealStore>,
    idempotency: Arc<dyn auditline::idempotency::IdempotencyStore>,
) -> AuditApi {
    let policies = Arc::new(auditline::retention::MemoryPolicies::default());
    api_with_policies(store, seal, idempotency, policies, std::time::Duration::ZERO)
}

/// The API with tenants' policies, which writes reuse for up to `ttl`.
pub fn api_with_policies(
    store: Arc<dyn AuditStore>,
    seal: Arc<dyn SealStore>,
    idempotency: Arc<dyn auditline::idempotency::IdempotencyStore>,
    policies: Arc<dyn auditline::retention::PolicyStore>,
    ttl: std::time::Duration,
) -> AuditApi {
    AuditApi {
        logger: Arc::new(AuditLogger::new(store, AuditSettings::default()).with_cached_policies(policies, ttl)),
        idempotency,
        health_timeout: std::time::Duration::from_millis(800),
        auth_methods: vec!["jwt".into(), "api_key".into()],
        seal,
        seal_settings: SealSettings::default(),
        keys: Arc::new(auditline::seal::StaticKeys(Vec::new())),
        witnesses: Vec::new(),
        log_reads: false,
        streams: None,
    }
}

pub fn memory_api() -> AuditApi {
    let store = Arc::new(MemoryStore::new());
    api_with_seal(store.clone(), store, Arc::new(MemoryIdempotency::new()))
}

/// The API over fresh DynamoDB tables on the local DynamoDB API, and its request counter.
pub async fn dynamo_api() -> (AuditApi, RequestCounter) {
    let (client, counter) = local_client();
    let entries = fresh_table(&client, &ENTRIES, "entries").await;
    let counters = fresh_table(&client, &COUNTERS, "counters").await;
    let idempotency = fresh_table(&client, &IDEMPOTENCY, "idempotency").await;
    let tables = SealTables {
        checkpoints: fresh_table(&client, &CHECKPOINTS, "checkpoints").await,
        proofs: fresh_table(&client, &PROOFS, "proofs").await,
        retention_days: 90,
    };
    let store = Arc::new(DynamoStore::new(client.clone(), entries, counters).with_seal_tables(tables));
    counter.reset();
    let idempotency = Arc::new(DynamoIdempotency::new(client, idempotency));
    // As deployed: writes reuse a tenant's policy for a few seconds.
    let ttl = auditline::logger::POLICY_CACHE;
    (api_with_policies(store.clone(), store.clone(), idempotency, store, ttl), counter)
}

/// The file in `events/` that is a sample request of `route`.
pub fn sample_file(route: Route) -> &'static str {
    match route {
        Route::ListLogs => "http-list-logs.json",
        Route::GetLog => "http-get-log.json",
        Route::EntityLogs => "http-entity-logs.json",
        Route::ProjectLogs => "http-project-logs.json",
        Route::Stats => "http-stats.json",
        Route::Health => "http-health.json",
        Route::Ingest => "http-ingest.json",
        Route::Checkpoints => "http-checkpoints.json",
        Route::LatestCheckpoint => "http-latest-checkpoint.json",
        Route::PeriodLeaves => "http-checkpoint-leaves.json",
        Route::Proof => "http-proof.json",
        Route::Keys => "http-keys.json",
        Route::Export => "http-export.json",
        Route::Erase => "http-erase.json",
        Route::EraseSubject => "http-erase-subject.json",
        Route::Settings => "http-get-settings.json",
        Route::UpdateSettings => "http-put-settings.json",
        Route::PlaceHold => "http-place-hold.json",
        Route::ReleaseHold => "http-release-hold.json",
        Route::CreateStream => "http-create-stream.json",
        Route::ListStreams => "http-list-streams.json",
        Route::GetStream => "http-get-stream.json",
        Route::UpdateStream => "http-update-stream.json",
        Route::DeleteStream => "http-delete-stream.json",
        Route::RotateStreamSecret => "http-rotate-stream-secret.json",
        Route::TestStream => "http-test-stream.json",
    }
}
