//! The HTTP API: the sample events in `events/` and their variants, fed through the real handlers
//! against the local DynamoDB API.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use auditline::apigw::http::{AuditApi, MAX_BATCH, MAX_BODY_BYTES, Route};
use auditline::backend::BackendError;
use auditline::domain::{AuditQuery, QueryPlan, StatsRange, StoredPage, TenantId};
use auditline::idempotency::{KeyOwner, MemoryIdempotency};
use auditline::store::dynamo::client_for_local_endpoint;
use auditline::store::{AuditStore, DynamoStore, MemoryStore, StoreError};
use auditline_tests::http::{Reply, api_over, call, dynamo_api, memory_api, sample, with_query};
use auditline_tests::tenant;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

fn with_caller(e: &mut Value, tenant: &str, user: &str, scopes: &str) {
    e["requestContext"]["authorizer"] =
        json!({"lambda": {"user_id": user, "tenant_id": tenant, "scopes": scopes, "auth_method": "jwt"}});
}

fn with_path(e: &mut Value, name: &str, value: &str) {
    e["pathParameters"] = json!({ name: value });
}

fn ingest_event(body: &Value, tenant: &str, key: Option<&str>) -> Value {
    sample("http-ingest.json", |e| {
        e["body"] = json!(body.to_string());
        with_caller(e, tenant, "user-789", "audit:read audit:write");
        let headers = e["headers"].as_object_mut().unwrap();
        headers.remove("idempotency-key");
        if let Some(k) = key {
            headers.insert("idempotency-key".into(), json!(k));
        }
    })
}

fn entry(action: &str, entity_type: &str, entity_id: &str, project: Option<&str>) -> Value {
    let mut e = json!({"action": action, "entity_type": entity_type, "entity_id": entity_id});
    if let Some(p) = project {
        e["project_id"] = json!(p);
    }
    e
}

async fn post(api: &AuditApi, body: &Value, tenant: &str) -> Reply {
    call(api, Route::Ingest, &ingest_event(body, tenant, None)).await
}

fn list_event(route: Route, tenant: &str, query: &[(&str, &str)]) -> Value {
    let (file, param) = match route {
        Route::EntityLogs => ("http-entity-logs.json", Some("entity_id")),
        Route::ProjectLogs => ("http-project-logs.json", Some("project_id")),
        Route::Stats => ("http-stats.json", None),
        _ => ("http-list-logs.json", None),
    };
    // A `_path` pair names the path parameter; the rest is the query string.
    let (path, query): (Vec<_>, Vec<_>) = query.iter().copied().partition(|(k, _)| *k == "_path");
    sample(file, |e| {
        with_caller(e, tenant, "user-789", "audit:read");
        with_query(e, &query);
        if let Some(p) = param {
            with_path(e, p, path.first().map_or("entity-1", |(_, v)| *v));
        }
    })
}

fn ids(reply: &Reply) -> Vec<String> {
    reply.body["entries"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

/// Writes a varied set of entries for `acme` (and a few for `globex`) through the API.
async fn seed(api: &AuditApi, n: usize) -> Vec<Value> {
    let mut stored = Vec::new();
    let actions = ["CREATE", "UPDATE", "DELETE", "LINK", "UNLINK", "VIEW"];
    let types = ["PROJECT", "ENTITY", "RELATIONSHIP", "FILE", "REPORT", "TEMPLATE", "SCHEDULE"];
    for chunk in (0..n).collect::<Vec<_>>().chunks(MAX_BATCH) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| {
                entry(actions[i % 6], types[i % 7], &format!("entity-{}", i % 3), Some(&format!("project-{}", i % 2)))
            })
            .collect();
        let reply = post(api, &json!(batch), "acme").await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        stored.extend(reply.body["results"].as_array().unwrap().iter().map(|r| r["entry"].clone()));
    }
    post(api, &entry("DELETE", "FILE", "entity-1", Some("project-0")), "globex").await;
    stored
}

#[tokio::test]
async fn every_route_works_on_its_sample_event() {
    let (api, _) = dynamo_api().await;
    let reply = call(&api, Route::Ingest, &auditline_tests::event("http-ingest.json")).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let created = reply.body.clone();
    assert_eq!(created["tenant_id"], "acme");
    assert_eq!(created["user_id"], "user-789", "from the credentials");
    assert_eq!(created["ip_address"], "203.0.113.24", "from the request context");
    assert_eq!(created["changes"]["after"]["name"], "New Name");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 7);

    let reply = call(&api, Route::Ingest, &auditline_tests::event("http-ingest-batch.json")).await;
    assert_eq!((reply.status, reply.body["stored"].as_u64()), (201, Some(3)));

    let get = sample("http-get-log.json", |e| with_path(e, "id", &id));
    let reply = call(&api, Route::GetLog, &get).await;
    assert_eq!((reply.status, &reply.body), (200, &created));

    let reply = call(&api, Route::ListLogs, &auditline_tests::event("http-list-logs.json")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(ids(&reply), std::slice::from_ref(&id), "action=UPDATE");
    assert_eq!(reply.body["count"], 1);
    assert_eq!(reply.body["limit"], 50);
    assert_eq!(reply.body["offset"], 0);
    assert_eq!(reply.body["next_token"], Value::Null);

    let reply = call(&api, Route::EntityLogs, &auditline_tests::event("http-entity-logs.json")).await;
    assert_eq!(ids(&reply), std::slice::from_ref(&id));
    let reply = call(&api, Route::ProjectLogs, &auditline_tests::event("http-project-logs.json")).await;
    assert_eq!(ids(&reply), [id]);

    let reply = call(&api, Route::Stats, &list_event(Route::Stats, "acme", &[])).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["total_entries"], 4);
    assert_eq!(reply.body["by_action"]["UPDATE"], 1);
    assert_eq!(reply.body["by_entity_type"]["REPORT"], 1);
    let reply = call(&api, Route::Stats, &auditline_tests::event("http-stats.json")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["from"], "2026-11-01T00:00:00.000Z");

    let reply = call(&api, Route::Health, &auditline_tests::event("http-health.json")).await;
    assert_eq!((reply.status, &reply.body), (200, &json!({"status": "healthy"})), "the public answer: status only");
    let reader = sample("http-health.json", |e| with_caller(e, "acme", "user-789", "audit:read"));
    let reply = call(&api, Route::Health, &reader).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["status"], "healthy");
    assert_eq!(reply.body["storage"]["backend"], "dynamodb");
    assert_eq!(reply.body["storage"]["reachable"], true);
    assert_eq!(reply.body["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn every_filter_and_combination_matches_the_logger() {
    let (api, _) = dynamo_api().await;
    let stored = seed(&api, 84).await;
    let acme = tenant("acme");
    let middle = stored[20]["timestamp"].as_str().unwrap().to_owned();
    let later = stored[60]["timestamp"].as_str().unwrap().to_owned();
    let filters: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("action", "DELETE")],
        vec![("entity_type", "REPORT")],
        vec![("user_id", "user-789")],
        vec![("user_id", "someone-else")],
        vec![("start_date", &middle)],
        vec![("end_date", &later)],
        vec![("start_date", &middle), ("end_date", &later)],
        vec![("action", "CREATE"), ("entity_type", "PROJECT")],
        vec![("action", "VIEW"), ("user_id", "user-789"), ("start_date", &middle)],
        vec![("entity_type", "FILE"), ("end_date", &later), ("limit", "5")],
        vec![("limit", "7"), ("offset", "3")],
    ];
    let mut non_empty = 0;
    for (route, path) in
        [(Route::ListLogs, None), (Route::EntityLogs, Some("entity-1")), (Route::ProjectLogs, Some("project-0"))]
    {
        for filter in &filters {
            let mut query = filter.clone();
            if let Some(p) = path {
                query.push(("_path", p));
            }
            let event = list_event(route, "acme", &query);
            let reply = call(&api, route, &event).await;
            assert_eq!(reply.status, 200, "{route:?} {filter:?}: {}", reply.body);
            let scope = match route {
                Route::EntityLogs => auditline::domain::QueryScope::Entity("entity-1".into()),
                Route::ProjectLogs => auditline::domain::QueryScope::Project("project-0".into()),
                _ => auditline::domain::QueryScope::Tenant,
            };
            let direct =
                AuditQuery::from_params(scope, |k| filter.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)).unwrap();
            let want: Vec<String> =
                api.logger.get_logs(&acme, &direct).await.unwrap().entries.iter().map(|e| e.id.to_string()).collect();
            assert_eq!(ids(&reply), want, "{route:?} {filter:?}");
            non_empty += usize::from(!want.is_empty());
        }
    }
    assert!(non_empty > 20, "the combinations select something ({non_empty})");
}

#[tokio::test]
async fn pages_by_cursor_and_by_offset_agree() {
    let (api, _) = dynamo_api().await;
    seed(&api, 130).await;
    let mut by_cursor = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut query = vec![("limit", "40")];
        if let Some(t) = &token {
            query.push(("next_token", t));
        }
        let reply = call(&api, Route::ListLogs, &list_event(Route::ListLogs, "acme", &query)).await;
        assert_eq!(reply.status, 200);
        by_cursor.extend(ids(&reply));
        match reply.body["next_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    let mut by_offset = Vec::new();
    for offset in ["0", "40", "80", "120"] {
        let reply =
            call(&api, Route::ListLogs, &list_event(Route::ListLogs, "acme", &[("limit", "40"), ("offset", offset)]))
                .await;
        assert_eq!(reply.body["offset"], offset.parse::<u64>().unwrap());
        by_offset.extend(ids(&reply));
    }
    assert_eq!(by_cursor.len(), 130);
    assert_eq!(by_cursor.iter().collect::<HashSet<_>>().len(), 130, "no duplicates");
    assert_eq!(by_cursor, by_offset);
}

#[tokio::test]
async fn invalid_parameters_get_400_naming_them() {
    let api = memory_api();
    for (query, parameter) in [
        (vec![("limit", "0")], "limit"),
        (vec![("limit", "1001")], "limit"),
        (vec![("limit", "ten")], "limit"),
        (vec![("offset", "-1")], "offset"),
        (vec![("offset", "10001")], "offset"),
        (vec![("action", "create")], "action"),
        (vec![("entity_type", "USER")], "entity_type"),
        (vec![("start_date", "yesterday")], "start_date"),
        (vec![("start_date", "2026-02-01"), ("end_date", "2026-01-01")], "start_date"),
        (vec![("next_token", "forged")], "next_token"),
        (vec![("acton", "DELETE")], "acton"),
    ] {
        let reply = call(&api, Route::ListLogs, &list_event(Route::ListLogs, "acme", &query)).await;
        assert_eq!((reply.status, reply.error_code()), (400, "invalid_parameter"), "{query:?}");
        assert_eq!(reply.body["error"]["parameter"], parameter, "{query:?}");
        assert!(reply.body["error"]["message"].as_str().unwrap().contains(parameter));
        assert!(!reply.body["error"]["request_id"].as_str().unwrap().is_empty());
    }
    let reply = call(&api, Route::Stats, &list_event(Route::Stats, "acme", &[("end_date", "soon")])).await;
    assert_eq!((reply.status, reply.body["error"]["parameter"].as_str()), (400, Some("end_date")));
    let reply = call(&api, Route::Stats, &list_event(Route::Stats, "acme", &[("limit", "5")])).await;
    assert_eq!(reply.status, 400, "stats has no limit");
    let bad_id = sample("http-get-log.json", |e| with_path(e, "id", "not-a-uuid"));
    let reply = call(&api, Route::GetLog, &bad_id).await;
    assert_eq!((reply.status, reply.body["error"]["parameter"].as_str()), (400, Some("id")));
}

#[tokio::test]
async fn invalid_entries_get_400_naming_the_field_and_nothing_is_stored() {
    let api = memory_api();
    for (body, parameter) in [
        (json!({"entity_type": "FILE", "entity_id": "f"}), Some("action")),
        (json!({"action": "NOPE", "entity_type": "FILE", "entity_id": "f"}), Some("action")),
        (json!({"action": "VIEW", "entity_type": "FILE"}), Some("entity_id")),
        (json!({"action": "VIEW", "entity_type": "FILE", "entity_id": 7}), Some("entity_id")),
        (json!({"action": "VIEW", "entity_type": "FILE", "entity_id": ""}), Some("entity_id")),
        (json!({"action": "VIEW", "entity_type": "FILE", "entity_id": "f", "changes": [1]}), Some("changes")),
        (json!({"action": "VIEW", "entity_type": "FILE", "entity_id": "f", "metadata": "x"}), Some("metadata")),
        (json!({"action": "VIEW", "entity_type": "FILE", "entity_id": "f", "user_id": "me"}), Some("user_id")),
        (json!({"action": "VIEW", "entity_type": "FILE", "entity_id": "f", "tenant_id": "globex"}), Some("tenant_id")),
        (json!({"action": "VIEW", "entity_type": "FILE", "entity_id": "f", "id": "x"}), Some("id")),
        (json!({"action": "VIEW", "entity_type": "FILE", "entity_id": "f", "colour": "red"}), Some("colour")),
        (
            json!({"action": "VIEW", "entity_type": "FILE", "entity_id": "f", "changes": {"x": "y".repeat(300_000)}}),
            Some("entry"),
        ),
        (json!([]), None),
        (json!("text"), None),
        (json!(vec![entry("VIEW", "FILE", "f", None); MAX_BATCH + 1]), None),
    ] {
        let reply = post(&api, &body, "acme").await;
        assert_eq!((reply.status, reply.error_code()), (400, "invalid_entry"), "{parameter:?}: {}", reply.body);
        assert_eq!(reply.body["error"]["parameter"].as_str(), parameter);
    }
    let not_json = sample("http-ingest.json", |e| e["body"] = json!("{\"action\": "));
    let reply = call(&api, Route::Ingest, &not_json).await;
    assert_eq!((reply.status, reply.error_code()), (400, "invalid_entry"));
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("not valid JSON"));

    let reply = call(&api, Route::Stats, &list_event(Route::Stats, "acme", &[])).await;
    assert_eq!(reply.body["total_entries"], 0, "nothing was stored");
}

#[tokio::test]
async fn missing_credentials_401_missing_scope_403_large_bodies_413() {
    let api = memory_api();
    let anonymous = sample("http-list-logs.json", |e| {
        e["requestContext"].as_object_mut().unwrap().remove("authorizer");
    });
    let reply = call(&api, Route::ListLogs, &anonymous).await;
    assert_eq!((reply.status, reply.error_code()), (401, "unauthenticated"));
    let forged = sample("http-list-logs.json", |e| with_caller(e, "bad#tenant", "u", "audit:read"));
    assert_eq!(call(&api, Route::ListLogs, &forged).await.status, 401, "an unreadable context is no caller");

    let writer_only = sample("http-list-logs.json", |e| with_caller(e, "acme", "u", "audit:write"));
    let reply = call(&api, Route::ListLogs, &writer_only).await;
    assert_eq!((reply.status, reply.error_code()), (403, "forbidden"));
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("audit:read"));
    let reader_only = sample("http-ingest.json", |e| with_caller(e, "acme", "u", "audit:read"));
    assert_eq!(call(&api, Route::Ingest, &reader_only).await.status, 403);
    let wildcard = sample("http-ingest.json", |e| with_caller(e, "acme", "u", "audit:*"));
    assert_eq!(call(&api, Route::Ingest, &wildcard).await.status, 201);

    let huge = json!({"action": "VIEW", "entity_type": "FILE", "entity_id": "f", "changes": {"x": "y".repeat(MAX_BODY_BYTES)}});
    let reply = post(&api, &huge, "acme").await;
    assert_eq!((reply.status, reply.error_code()), (413, "payload_too_large"));
}

#[tokio::test]
async fn unknown_and_foreign_ids_are_404_alike() {
    let (api, _) = dynamo_api().await;
    let reply = post(&api, &entry("VIEW", "REPORT", "r-1", None), "acme").await;
    let acme_id = reply.body["id"].as_str().unwrap().to_owned();
    let as_globex = sample("http-get-log.json", |e| {
        with_path(e, "id", &acme_id);
        with_caller(e, "globex", "g", "audit:read");
    });
    let foreign = call(&api, Route::GetLog, &as_globex).await;
    let unknown_id = Uuid::now_v7().to_string();
    let unknown = call(&api, Route::GetLog, &sample("http-get-log.json", |e| with_path(e, "id", &unknown_id))).await;
    assert_eq!((foreign.status, unknown.status), (404, 404));
    assert_eq!(foreign.body["error"]["message"], unknown.body["error"]["message"], "no hint that it exists");
    assert_eq!(foreign.error_code(), "not_found");
}

#[tokio::test]
async fn tenants_are_isolated_end_to_end() {
    let (api, _) = dynamo_api().await;
    seed(&api, 20).await;
    let globex = call(&api, Route::ListLogs, &list_event(Route::ListLogs, "globex", &[])).await;
    assert_eq!(globex.body["count"], 1);
    assert!(globex.body["entries"].as_array().unwrap().iter().all(|e| e["tenant_id"] == "globex"));
    let acme = call(&api, Route::ListLogs, &list_event(Route::ListLogs, "acme", &[("limit", "5")])).await;
    let token = acme.body["next_token"].as_str().unwrap().to_owned();
    let stolen = call(&api, Route::ListLogs, &list_event(Route::ListLogs, "globex", &[("next_token", &token)])).await;
    assert_eq!((stolen.status, stolen.body["error"]["parameter"].as_str()), (400, Some("next_token")));
    let stats = call(&api, Route::Stats, &list_event(Route::Stats, "initech", &[])).await;
    assert_eq!(stats.body["total_entries"], 0);
    // An entity and a project that both tenants have: each sees only its own entries of them.
    for (route, id) in [(Route::EntityLogs, "entity-1"), (Route::ProjectLogs, "project-0")] {
        let globex = call(&api, route, &list_event(route, "globex", &[("_path", id)])).await;
        let acme = call(&api, route, &list_event(route, "acme", &[("_path", id)])).await;
        let tenants = |reply: &auditline_tests::http::Reply| -> Vec<String> {
            reply.body["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["tenant_id"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(tenants(&globex), ["globex"], "{route:?} {id}: globex's one entry, none of acme's");
        assert!(tenants(&acme).len() > 1 && tenants(&acme).iter().all(|t| t == "acme"), "{route:?} {id}: acme's only");
    }
}

#[tokio::test]
async fn an_idempotent_retry_returns_the_first_result_and_stores_once() {
    let (api, requests) = dynamo_api().await;
    let body = entry("DELETE", "FILE", "f-9", Some("p"));
    let first = call(&api, Route::Ingest, &ingest_event(&body, "acme", Some("retry-me-1"))).await;
    assert_eq!(first.status, 201);
    assert_eq!(requests.get(), 4, "claim, the tenant's policy (its first write in a while), write, complete");
    requests.reset();
    let again = call(&api, Route::Ingest, &ingest_event(&body, "acme", Some("retry-me-1"))).await;
    assert_eq!(requests.get(), 2, "a replay is the claim and a read of the entry as it is now");
    assert_eq!(again.status, 201);
    assert_eq!(again.body["id"], first.body["id"], "the same entry id");
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    let other =
        call(&api, Route::Ingest, &ingest_event(&entry("VIEW", "FILE", "f-9", None), "acme", Some("retry-me-1"))).await;
    assert_eq!((other.status, other.error_code()), (422, "idempotency_key_reused"));
    // Keys are per tenant: another tenant's identical key is its own.
    let globex = call(&api, Route::Ingest, &ingest_event(&body, "globex", Some("retry-me-1"))).await;
    assert_eq!(globex.status, 201);
    assert_ne!(globex.body["id"], first.body["id"]);

    let list = call(&api, Route::ListLogs, &list_event(Route::ListLogs, "acme", &[])).await;
    assert_eq!(list.body["count"], 1, "stored exactly once");

    // A claim still held by a request in flight: retry later.
    api.idempotency
        .claim(
            KeyOwner { tenant: &tenant("acme"), principal: "user-789" },
            "in-flight",
            &auditline::idempotency::request_hash(body.to_string().as_bytes()),
            Utc::now(),
        )
        .await
        .unwrap();
    let busy = call(&api, Route::Ingest, &ingest_event(&body, "acme", Some("in-flight"))).await;
    assert_eq!(
        (busy.status, busy.error_code(), busy.header("retry-after")),
        (409, "idempotency_in_progress", Some("1"))
    );
    let bad_key = call(&api, Route::Ingest, &ingest_event(&body, "acme", Some(&"k".repeat(200)))).await;
    assert_eq!((bad_key.status, bad_key.body["error"]["parameter"].as_str()), (400, Some("Idempotency-Key")));
}

#[tokio::test]
async fn a_batch_with_a_bad_item_reports_it_and_stores_the_rest_once() {
    let (api, _) = dynamo_api().await;
    let batch = json!([
        entry("CREATE", "FILE", "f-1", None),
        {"action": "CREATE", "entity_type": "FILE", "entity_id": "f-2", "ip_address": "1.2.3.4"},
        entry("UPDATE", "FILE", "f-3", None),
        {"action": "UPDATE", "entity_type": "GADGET", "entity_id": "f-4"},
        entry("DELETE", "FILE", "f-5", None),
    ]);
    let reply = call(&api, Route::Ingest, &ingest_event(&batch, "acme", Some("batch-1"))).await;
    assert_eq!(reply.status, 207);
    assert_eq!((reply.body["stored"].as_u64(), reply.body["rejected"].as_u64()), (Some(3), Some(2)));
    let results = reply.body["results"].as_array().unwrap();
    let statuses: Vec<u64> = results.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [201, 400, 201, 400, 201]);
    assert_eq!(results[1]["error"]["parameter"], "ip_address");
    assert_eq!(results[3]["error"]["parameter"], "entity_type");
    assert_eq!(results.iter().map(|r| r["index"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    assert_eq!(results[2]["entry"]["entity_id"], "f-3");

    let again = call(&api, Route::Ingest, &ingest_event(&batch, "acme", Some("batch-1"))).await;
    assert_eq!((again.status, &again.body), (207, &reply.body), "the retry replays the first answer");
    let list = call(&api, Route::ListLogs, &list_event(Route::ListLogs, "acme", &[])).await;
    let entities: HashSet<&str> =
        list.body["entries"].as_array().unwrap().iter().map(|e| e["entity_id"].as_str().unwrap()).collect();
    assert_eq!(list.body["count"], 3, "each good entry stored exactly once");
    assert_eq!(entities, HashSet::from(["f-1", "f-3", "f-5"]));
}

/// A store that fails every call the way it is told, to cover each route's mapping of each failure
/// (the real SDK's throttling and server errors are covered in `dynamo_faults`).
struct Failing(fn() -> StoreError);

#[async_trait]
impl AuditStore for Failing {
    fn backend(&self) -> &'static str {
        "failing"
    }
    async fn put(&self, _: &auditline::domain::AuditLogEntry) -> Result<(), StoreError> {
        Err((self.0)())
    }
    async fn erase(&self, _: &TenantId, _: Uuid, _: &auditline::erasure::Erasure) -> Result<(), StoreError> {
        Err((self.0)())
    }
    async fn set_expiry(&self, _: &TenantId, _: Uuid, _: i64) -> Result<(), StoreError> {
        Err((self.0)())
    }
    async fn get(
        &self,
        _: &TenantId,
        _: Uuid,
        _: DateTime<Utc>,
    ) -> Result<Option<auditline::domain::AuditLogEntry>, StoreError> {
        Err((self.0)())
    }
    async fn query(&self, _: &QueryPlan, _: DateTime<Utc>) -> Result<StoredPage, StoreError> {
        Err((self.0)())
    }
    async fn counts(
        &self,
        _: &TenantId,
        _: &StatsRange,
        _: DateTime<Utc>,
    ) -> Result<auditline::domain::HourlyCounts, StoreError> {
        Err((self.0)())
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Err((self.0)())
    }
}

fn failing_api(error: fn() -> StoreError) -> AuditApi {
    api_over(Arc::new(Failing(error)), Arc::new(MemoryIdempotency::new()))
}

#[tokio::test]
async fn storage_trouble_gets_429_503_or_500_without_internals() {
    let throttled = failing_api(|| {
        StoreError::from(BackendError::Throttled("ProvisionedThroughputExceededException on table x".into()))
    });
    let reply = call(&throttled, Route::ListLogs, &list_event(Route::ListLogs, "acme", &[])).await;
    assert_eq!((reply.status, reply.error_code(), reply.header("retry-after")), (429, "throttled", Some("1")));
    let reply = post(&throttled, &entry("VIEW", "FILE", "f", None), "acme").await;
    assert_eq!(reply.status, 429);

    // A real DynamoDB client pointed at a port where nothing listens.
    let unreachable =
        DynamoStore::new(client_for_local_endpoint(&auditline_tests::unreachable_url(), None), "entries", "counters");
    let down = api_over(Arc::new(unreachable), Arc::new(MemoryIdempotency::new()));
    let reply = call(&down, Route::GetLog, &sample("http-get-log.json", |_| {})).await;
    assert_eq!((reply.status, reply.error_code(), reply.header("retry-after")), (503, "unavailable", Some("2")));
    let health = call(&down, Route::Health, &auditline_tests::event("http-health.json")).await;
    assert_eq!((health.status, health.body["status"].as_str()), (503, Some("degraded")));

    let broken = failing_api(|| {
        StoreError::from(BackendError::Internal("item at T#acme failed: SerializationException {secret}".into()))
    });
    let reply = call(&broken, Route::Stats, &list_event(Route::Stats, "acme", &[])).await;
    assert_eq!((reply.status, reply.error_code()), (500, "internal_error"));
    let text = reply.body.to_string();
    assert!(!text.contains("Serialization") && !text.contains("T#acme") && !text.contains("secret"), "{text}");
    assert_eq!(reply.body["error"]["request_id"], "Jq3kRgHxoAMEV0w=");

    // A failed write with an Idempotency-Key releases the key, so the retry runs for real.
    let idempotency = Arc::new(MemoryIdempotency::new());
    let flaky =
        api_over(Arc::new(Failing(|| StoreError::from(BackendError::Unavailable("down".into())))), idempotency.clone());
    let body = entry("VIEW", "FILE", "f", None);
    assert_eq!(call(&flaky, Route::Ingest, &ingest_event(&body, "acme", Some("k1"))).await.status, 503);
    let healthy = api_over(Arc::new(MemoryStore::new()), idempotency);
    assert_eq!(call(&healthy, Route::Ingest, &ingest_event(&body, "acme", Some("k1"))).await.status, 201);
}

#[tokio::test]
async fn disabled_logging_answers_202_and_stores_nothing() {
    let store = Arc::new(MemoryStore::new());
    let mut api = api_over(store.clone(), Arc::new(MemoryIdempotency::new()));
    api.logger = Arc::new(auditline::AuditLogger::new(
        store.clone(),
        auditline::AuditSettings { enabled: false, retention_days: 90 },
    ));
    let reply = post(&api, &entry("VIEW", "FILE", "f", None), "acme").await;
    assert_eq!((reply.status, reply.body["status"].as_str()), (202, Some("disabled")));
    assert!(store.is_empty());
    let health = call(&api, Route::Health, &auditline_tests::event("http-health.json")).await;
    assert_eq!((health.status, health.body["status"].as_str()), (200, Some("disabled")));
}

#[test]
fn routes_resolve_paths_for_the_local_gateway() {
    assert_eq!(Route::resolve("GET", "/audit/logs"), Some((Route::ListLogs, vec![])));
    assert_eq!(Route::resolve("POST", "/audit/logs"), Some((Route::Ingest, vec![])));
    assert_eq!(Route::resolve("GET", "/audit/logs/abc"), Some((Route::GetLog, vec![("id", "abc".into())])));
    assert_eq!(
        Route::resolve("GET", "/audit/logs/entity/e-1"),
        Some((Route::EntityLogs, vec![("entity_id", "e-1".into())]))
    );
    assert_eq!(Route::resolve("GET", "/audit/stats/"), Some((Route::Stats, vec![])));
    assert_eq!(Route::resolve("GET", "/audit/logs/abc/proof"), Some((Route::Proof, vec![("id", "abc".into())])));
    assert_eq!(Route::resolve("GET", "/audit/checkpoints"), Some((Route::Checkpoints, vec![])));
    assert_eq!(Route::resolve("GET", "/audit/keys"), Some((Route::Keys, vec![])));
    assert_eq!(Route::resolve("DELETE", "/audit/logs/abc"), None);
    assert_eq!(Route::resolve("GET", "/audit/logs/entity/"), Some((Route::GetLog, vec![("id", "entity".into())])));
    assert_eq!(Route::resolve("GET", "/audit/logs/entity//x"), None);
    assert_eq!(Route::resolve("GET", "/other"), None);
    for route in Route::ALL {
        // Public: the health check and the verification keys (an auditor needs no account).
        assert_eq!(route.required_scope().is_none(), matches!(route, Route::Health | Route::Keys), "{route:?}");
    }
}

#[tokio::test]
async fn a_date_past_the_representable_years_is_a_400_not_a_panic() {
    // Once a panic in the handler (DateTime + TimeDelta overflow): the gateway dropped the
    // connection and a Lambda answered 500.
    let api = auditline_tests::http::memory_api();
    for route in [Route::ListLogs, Route::EntityLogs, Route::ProjectLogs, Route::Stats] {
        for (name, value) in [("start_date", "+262142-12-31T23:59:59.9995"), ("end_date", "+10000-01-01")] {
            let reply = call(&api, route, &list_event(route, "acme", &[(name, value)])).await;
            assert_eq!((reply.status, reply.body["error"]["parameter"].as_str()), (400, Some(name)), "{route:?}");
            assert!(reply.body["error"]["message"].as_str().unwrap().contains("9999"), "{}", reply.body);
        }
    }
}

#[tokio::test]
async fn credentials_in_the_query_string_are_refused_by_name() {
    let api = auditline_tests::http::memory_api();
    for route in [Route::ListLogs, Route::GetLog, Route::Stats, Route::Health, Route::Ingest] {
        for name in ["token", "api_key"] {
            let mut e = match route {
                Route::Ingest => ingest_event(&entry("VIEW", "FILE", "f", None), "acme", None),
                Route::GetLog => sample("http-get-log.json", |e| with_caller(e, "acme", "u", "audit:read")),
                Route::Health => auditline_tests::event("http-health.json"),
                _ => list_event(route, "acme", &[]),
            };
            with_query(&mut e, &[(name, "eyJhbGciOi.secret.value")]);
            let reply = call(&api, route, &e).await;
            assert_eq!((reply.status, reply.body["error"]["parameter"].as_str()), (400, Some(name)), "{route:?}");
            let message = reply.body["error"]["message"].as_str().unwrap();
            assert!(message.contains("Authorization") && !message.contains("secret"), "{message}");
        }
    }
    let stored = call(&api, Route::ListLogs, &list_event(Route::ListLogs, "acme", &[])).await;
    assert_eq!(stored.body["count"], 0, "the refused POST stored nothing");
}
