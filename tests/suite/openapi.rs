//! docs/openapi.json against the real routes and the real responses: every route documented and
//! nothing else, parameters and scopes as the handlers enforce them, and every status a handler
//! produces declared, with a body matching its schema.

use std::collections::BTreeSet;
use std::sync::Arc;

use auditline::apigw::http::{AuditApi, MAX_BODY_BYTES, Route};
use auditline::domain::{AuditAction, EntityType};
use auditline::idempotency::MemoryIdempotency;
use auditline::integrity::signing::LocalSigner;
use auditline::seal::{SealSettings, Sealer};
use auditline::store::MemoryStore;
use auditline::store::dynamo::client_for_local_endpoint;
use auditline::streams::admin::StreamAdmin;
use auditline::streams::delivery::{Deliverer, RetryPolicy};
use auditline::streams::destination::MAX_STREAMS_PER_TENANT;
use auditline::streams::outbound::Loopback;
use auditline::streams::secrets::LocalSecretBox;
use auditline::streams::store::{Failing, FiguresDelta, LastError, MemoryStreams, StreamStore};
use auditline::streams::transport::{HttpLimits, SafeHttp};
use auditline::{AuditLogger, AuditSettings, LogOutcome};
use auditline_tests::event;
use auditline_tests::http::{Reply, api_over, call, memory_api, sample, with_query};
use chrono::{Duration, Utc};
use serde_json::{Value, json};

fn spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("docs/openapi.json")).expect("valid JSON")
}

fn operation(spec: &Value, route: Route) -> &Value {
    let (method, path) = route.route_key().split_once(' ').unwrap();
    &spec["paths"][path][method.to_ascii_lowercase()]
}

fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => &spec["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    }
}

/// Whether `value` matches `schema` (the subset of OpenAPI 3.0 schemas the document uses).
fn conforms(spec: &Value, value: &Value, schema: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(spec, schema);
    if value.is_null() {
        return if schema["nullable"] == true { Ok(()) } else { Err(format!("{at}: null is not allowed")) };
    }
    // A nullable reference is written {"nullable": true, "allOf": [{"$ref": …}]} (OpenAPI 3.0).
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        for part in parts {
            conforms(spec, value, part, at)?;
        }
    }
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = options.iter().filter(|o| conforms(spec, value, o, at).is_ok()).count();
        return if matching == 1 { Ok(()) } else { Err(format!("{at}: matches {matching} of oneOf")) };
    }
    let ok = match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !ok {
        return Err(format!("{at}: {value} is not of type {}", schema["type"]));
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} is not in the enum"));
    }
    if let (Some(object), Some(properties)) = (value.as_object(), schema.get("properties").and_then(Value::as_object)) {
        for required in schema["required"].as_array().into_iter().flatten() {
            if !object.contains_key(required.as_str().unwrap()) {
                return Err(format!("{at}: required {required} is missing"));
            }
        }
        for (name, v) in object {
            match properties.get(name) {
                Some(s) => conforms(spec, v, s, &format!("{at}.{name}"))?,
                None if schema["additionalProperties"] == false => {
                    return Err(format!("{at}: {name} is not declared"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(item_schema)) = (value.as_array(), schema.get("items")) {
        for (i, v) in items.iter().enumerate() {
            conforms(spec, v, item_schema, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// The reply is declared for the route, with a body of the declared schema.
fn check(spec: &Value, route: Route, reply: &Reply) {
    let declared = &operation(spec, route)["responses"][reply.status.to_string()];
    assert!(declared.is_object(), "{route:?} answers {} which the document does not declare", reply.status);
    let schema = &declared["content"]["application/json"]["schema"];
    if let Err(e) = conforms(spec, &reply.body, schema, "body") {
        panic!("{route:?} {}: {e}\n{}", reply.status, reply.body);
    }
}

#[test]
fn every_route_is_documented_with_its_parameters_and_scope() {
    let spec = spec();
    let mut documented = BTreeSet::new();
    for (path, methods) in spec["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            documented.insert(format!("{} {path}", method.to_ascii_uppercase()));
        }
    }
    let routes: BTreeSet<String> = Route::ALL.iter().map(|r| r.route_key().to_owned()).collect();
    assert_eq!(documented, routes);
    for route in Route::ALL {
        let op = operation(&spec, route);
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let named = |place: &str| -> BTreeSet<String> {
            params.iter().filter(|p| p["in"] == place).map(|p| p["name"].as_str().unwrap().to_owned()).collect()
        };
        let query: BTreeSet<String> = route.query_parameters().iter().map(|s| s.to_string()).collect();
        assert_eq!(named("query"), query, "{route:?} query parameters");
        let template = route.route_key().split_once(' ').unwrap().1;
        let path_params: BTreeSet<String> = template
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        assert_eq!(named("path"), path_params, "{route:?} path parameters");
        assert_eq!(op["x-required-scope"].as_str(), route.required_scope(), "{route:?} scope");
        // A public route lists "no credentials" ({}) among its options; the others require one.
        let security = op["security"].as_array().unwrap();
        assert!(!security.is_empty(), "{route:?} documents its credentials");
        assert_eq!(security.contains(&json!({})), route.required_scope().is_none(), "{route:?} security");
        for option in security {
            for scheme in option.as_object().unwrap().keys() {
                assert_eq!(spec["components"]["securitySchemes"][scheme]["in"].as_str().unwrap_or("header"), "header");
            }
        }
    }
}

fn post(body: &Value, scopes: &str, key: Option<&str>) -> Value {
    sample("http-ingest.json", |e| {
        e["body"] = json!(body.to_string());
        e["requestContext"]["authorizer"]["lambda"]["scopes"] = json!(scopes);
        let headers = e["headers"].as_object_mut().unwrap();
        headers.remove("idempotency-key");
        if let Some(k) = key {
            headers.insert("idempotency-key".into(), json!(k));
        }
    })
}

#[tokio::test]
async fn every_response_matches_its_schema() {
    let spec = spec();
    let api = memory_api();
    let good = json!({"action": "CREATE", "entity_type": "FILE", "entity_id": "f-1", "project_id": "p-1", "changes": {"a": 1}});
    let bad = json!({"action": "CREATE", "entity_type": "FILE"});
    let rw = "audit:read audit:write";

    let created = call(&api, Route::Ingest, &post(&good, rw, None)).await;
    check(&spec, Route::Ingest, &created);
    let id = created.body["id"].as_str().unwrap().to_owned();
    for (body, scopes, key) in [
        (json!([good.clone(), good.clone()]), rw, None),
        (json!([good.clone(), bad.clone()]), rw, None),
        (bad.clone(), rw, None),
        (good.clone(), "audit:read", None),
        (json!({"x": "y".repeat(MAX_BODY_BYTES)}), rw, None),
        (good.clone(), rw, Some("key-1")),
        (json!([good.clone()]), rw, Some("key-1")),
    ] {
        check(&spec, Route::Ingest, &call(&api, Route::Ingest, &post(&body, scopes, key)).await);
    }
    let anonymous = sample("http-ingest.json", |e| {
        e["requestContext"].as_object_mut().unwrap().remove("authorizer");
    });
    check(&spec, Route::Ingest, &call(&api, Route::Ingest, &anonymous).await);

    let get = |id: &str| sample("http-get-log.json", |e| e["pathParameters"] = json!({ "id": id }));
    for id in [id.as_str(), "0192f7e1-0000-7000-8000-000000000000", "not-a-uuid"] {
        check(&spec, Route::GetLog, &call(&api, Route::GetLog, &get(id)).await);
    }
    for route in [Route::ListLogs, Route::EntityLogs, Route::ProjectLogs] {
        let file = match route {
            Route::EntityLogs => "http-entity-logs.json",
            Route::ProjectLogs => "http-project-logs.json",
            _ => "http-list-logs.json",
        };
        check(&spec, route, &call(&api, route, &event(file)).await);
        let invalid = sample(file, |e| with_query(e, &[("limit", "0")]));
        let reply = call(&api, route, &invalid).await;
        assert_eq!(reply.status, 400);
        check(&spec, route, &reply);
    }
    check(&spec, Route::Stats, &call(&api, Route::Stats, &event("http-stats.json")).await);
    let series = call(&api, Route::Stats, &sample("http-stats.json", |e| with_query(e, &[("bucket", "hour")]))).await;
    assert!(series.body["series"].as_array().is_some_and(|s| !s.is_empty()), "{}", series.text);
    check(&spec, Route::Stats, &series);
    let bad_bucket =
        call(&api, Route::Stats, &sample("http-stats.json", |e| with_query(e, &[("bucket", "week")]))).await;
    assert_eq!((bad_bucket.status, bad_bucket.body["error"]["parameter"].as_str()), (400, Some("bucket")));
    check(&spec, Route::Stats, &bad_bucket);
    let inverted =
        sample("http-stats.json", |e| with_query(e, &[("start_date", "2026-12-01"), ("end_date", "2026-01-01")]));
    let reply = call(&api, Route::Stats, &inverted).await;
    assert_eq!(reply.status, 400);
    check(&spec, Route::Stats, &reply);
    check(&spec, Route::Health, &call(&api, Route::Health, &event("http-health.json")).await);
    let erase = |id: &str, scopes: &str, body: Value| {
        sample("http-erase.json", |e| {
            e["pathParameters"] = json!({ "id": id });
            e["body"] = json!(body.to_string());
            e["requestContext"]["authorizer"]["lambda"]["scopes"] = json!(scopes);
        })
    };
    let fields = json!({"fields": ["changes"], "reason": "GDPR"});
    for (event, status) in [
        (erase(&id, "audit:erase", fields.clone()), 200),
        (erase(&id, "audit:erase", fields.clone()), 409),
        (erase(&id, "audit:read", fields.clone()), 403),
        (erase(&id, "audit:erase", json!({"fields": ["colour"], "reason": "x"})), 400),
        (erase("0192f7e1-0000-7000-8000-000000000000", "audit:erase", fields.clone()), 404),
        (erase(&id, "audit:erase", json!({"reason": "x".repeat(9000)})), 413),
    ] {
        let reply = call(&api, Route::Erase, &event).await;
        assert_eq!(reply.status, status, "{}", reply.text);
        check(&spec, Route::Erase, &reply);
    }

    let subject = |body: Value, scopes: &str| {
        sample("http-erase-subject.json", |e| {
            e["body"] = json!(body.to_string());
            e["requestContext"]["authorizer"]["lambda"]["scopes"] = json!(scopes);
        })
    };
    let every = json!({"user_id": "user-789", "fields": ["ip_address"], "reason": "GDPR"});
    for (event, status) in [
        (subject(every.clone(), "audit:erase"), 200),
        (subject(every.clone(), "audit:read"), 403),
        (subject(json!({"user_id": "", "fields": ["ip_address"], "reason": "x"}), "audit:erase"), 400),
        (subject(json!({"user_id": "u", "fields": ["id"], "reason": "x"}), "audit:erase"), 400),
        (
            subject(
                json!({"user_id": "u", "fields": ["ip_address"], "reason": "x", "next_token": "nope"}),
                "audit:erase",
            ),
            400,
        ),
    ] {
        let reply = call(&api, Route::EraseSubject, &event).await;
        assert_eq!(reply.status, status, "{}", reply.text);
        check(&spec, Route::EraseSubject, &reply);
    }

    // The tenant's settings and holds: each status a caller can meet, against its schema.
    let admin = |file: &str, scopes: &str, edit: &dyn Fn(&mut Value)| {
        sample(file, |e| {
            e["requestContext"]["authorizer"]["lambda"]["scopes"] = json!(scopes);
            edit(e);
        })
    };
    let body = |b: Value| move |e: &mut Value| e["body"] = json!(b.to_string());
    let none = |_: &mut Value| {};
    let reply = call(&api, Route::Settings, &admin("http-get-settings.json", "audit:admin", &none)).await;
    assert_eq!((reply.status, reply.body["retention_days"].as_u64()), (200, Some(90)), "{}", reply.text);
    check(&spec, Route::Settings, &reply);
    for (days, status) in [(json!(30), 200), (json!(0), 400), (json!("ninety"), 400)] {
        let event = admin("http-put-settings.json", "audit:admin", &body(json!({ "retention_days": days })));
        let reply = call(&api, Route::UpdateSettings, &event).await;
        assert_eq!(reply.status, status, "{}", reply.text);
        check(&spec, Route::UpdateSettings, &reply);
    }
    let forbidden = call(&api, Route::UpdateSettings, &admin("http-put-settings.json", "audit:read", &none)).await;
    assert_eq!(forbidden.status, 403);
    check(&spec, Route::UpdateSettings, &forbidden);
    let placed = call(&api, Route::PlaceHold, &admin("http-place-hold.json", "audit:admin", &none)).await;
    assert_eq!(placed.status, 201, "{}", placed.text);
    check(&spec, Route::PlaceHold, &placed);
    let bad_scope = body(json!({"scope": {"type": "user", "user_id": ""}, "reason": "x"}));
    let reply = call(&api, Route::PlaceHold, &admin("http-place-hold.json", "audit:admin", &bad_scope)).await;
    assert_eq!((reply.status, reply.body["error"]["parameter"].as_str()), (400, Some("scope.user_id")));
    check(&spec, Route::PlaceHold, &reply);
    // A sweep stopped at its budget answers a next_token; going on answers a shape of its own.
    let budgeted = AuditApi {
        logger: Arc::new(
            AuditLogger::new(Arc::new(MemoryStore::new()), AuditSettings::default())
                .with_policies(Arc::new(auditline::retention::MemoryPolicies::default()))
                .with_sweep_budget(std::time::Duration::ZERO),
        ),
        ..memory_api()
    };
    let first = call(&budgeted, Route::PlaceHold, &admin("http-place-hold.json", "audit:admin", &none)).await;
    assert_eq!(first.status, 201, "{}", first.text);
    check(&spec, Route::PlaceHold, &first);
    let token = first.body["next_token"].as_str().expect("the second pass is still to come").to_owned();
    let go_on = body(json!({ "next_token": token }));
    let rest = call(&budgeted, Route::PlaceHold, &admin("http-place-hold.json", "audit:admin", &go_on)).await;
    assert_eq!((rest.status, &rest.body["next_token"]), (200, &Value::Null), "{}", rest.text);
    check(&spec, Route::PlaceHold, &rest);
    let forged = body(json!({ "next_token": "forged" }));
    let reply = call(&budgeted, Route::PlaceHold, &admin("http-place-hold.json", "audit:admin", &forged)).await;
    assert_eq!((reply.status, reply.body["error"]["parameter"].as_str()), (400, Some("next_token")), "{}", reply.text);
    check(&spec, Route::PlaceHold, &reply);
    let budgeted_id = first.body["hold"]["id"].as_str().unwrap().to_owned();
    let release_forged = |e: &mut Value| {
        e["pathParameters"] = json!({ "hold_id": budgeted_id });
        auditline_tests::http::with_query(e, &[("next_token", "forged")]);
    };
    let reply =
        call(&budgeted, Route::ReleaseHold, &admin("http-release-hold.json", "audit:admin", &release_forged)).await;
    assert_eq!((reply.status, reply.body["error"]["parameter"].as_str()), (400, Some("next_token")), "{}", reply.text);
    check(&spec, Route::ReleaseHold, &reply);

    let hold_id = placed.body["hold"]["id"].as_str().unwrap().to_owned();
    for (id, status) in [(hold_id.as_str(), 200), (hold_id.as_str(), 404), ("not-a-uuid", 400)] {
        let edit = |e: &mut Value| e["pathParameters"] = json!({ "hold_id": id });
        let reply = call(&api, Route::ReleaseHold, &admin("http-release-hold.json", "audit:admin", &edit)).await;
        assert_eq!(reply.status, status, "{}", reply.text);
        check(&spec, Route::ReleaseHold, &reply);
    }

    // Disabled logging, and storage that cannot be reached.
    let store = Arc::new(MemoryStore::new());
    let disabled = AuditApi {
        logger: Arc::new(AuditLogger::new(store, AuditSettings { enabled: false, retention_days: 90 })),
        ..memory_api()
    };
    check(&spec, Route::Ingest, &call(&disabled, Route::Ingest, &post(&good, rw, None)).await);
    let store = auditline::store::DynamoStore::new(
        client_for_local_endpoint(&auditline_tests::unreachable_url(), None),
        "e",
        "c",
    );
    let down = api_over(Arc::new(store), Arc::new(MemoryIdempotency::new()));
    for route in [Route::Health, Route::Stats] {
        let file = if route == Route::Health { "http-health.json" } else { "http-stats.json" };
        let reply = call(&down, route, &event(file)).await;
        assert_eq!(reply.status, 503);
        check(&spec, route, &reply);
    }
}

#[tokio::test]
async fn integrity_responses_match_their_schemas() {
    let spec = spec();
    let store = Arc::new(MemoryStore::new());
    let mut api =
        auditline_tests::http::api_with_seal(store.clone(), store.clone(), Arc::new(MemoryIdempotency::new()));
    let hours_ago = Utc::now() - Duration::hours(3);
    let (clock, _) = auditline_tests::stepping_clock(hours_ago, 60_000);
    let past = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock);
    let acme = auditline_tests::tenant("acme");
    let request = auditline_tests::new_entry(&acme, AuditAction::Create, EntityType::File, "f", None, None);
    let Ok(LogOutcome::Stored(sealed)) = past.log(request).await else { panic!("stored") };
    let signer = Arc::new(LocalSigner::generate().unwrap());
    Sealer::new(store.clone(), signer, SealSettings::default()).run(Utc::now()).await.unwrap();
    api.logger = Arc::new(AuditLogger::new(store, AuditSettings::default()));
    let created = call(&api, Route::Ingest, &event("http-ingest.json")).await;
    let fresh = created.body["id"].as_str().unwrap().to_owned();

    let checkpoints = |pairs: &[(&str, &str)]| sample("http-checkpoints.json", |e| with_query(e, pairs));
    for pairs in [&[][..], &[("limit", "1")], &[("limit", "x")], &[("end_date", "2020-01-01")]] {
        check(&spec, Route::Checkpoints, &call(&api, Route::Checkpoints, &checkpoints(pairs)).await);
    }
    let proof = |id: &str| sample("http-proof.json", |e| e["pathParameters"] = json!({ "id": id }));
    let sealed_id = sealed.id.to_string();
    for (id, status) in
        [(sealed_id.as_str(), 200), (fresh.as_str(), 200), ("0192f7e1-0000-7000-8000-000000000000", 404), ("x", 400)]
    {
        let reply = call(&api, Route::Proof, &proof(id)).await;
        assert_eq!(reply.status, status, "{}", reply.body);
        check(&spec, Route::Proof, &reply);
    }
    check(&spec, Route::Keys, &call(&api, Route::Keys, &event("http-keys.json")).await);
}

/// The API with log streams as the local gateway has them (in memory; plain http to loopback
/// allowed), and the streams' store, to mark one failing.
fn api_with_streams() -> (AuditApi, Arc<MemoryStreams>) {
    let mut api = memory_api();
    let streams = Arc::new(MemoryStreams::default());
    let secrets = Arc::new(LocalSecretBox::ephemeral());
    let http = Arc::new(SafeHttp::new(Loopback::AllowedOverHttp, HttpLimits::default()));
    let deliverer = Arc::new(Deliverer::new(
        streams.clone(),
        secrets.clone(),
        api.logger.clone(),
        http,
        None,
        RetryPolicy::default(),
    ));
    api.streams = Some(Arc::new(StreamAdmin {
        streams: streams.clone(),
        secrets,
        trail: api.logger.clone(),
        deliverer,
        loopback: Loopback::AllowedOverHttp,
    }));
    (api, streams)
}

#[tokio::test]
async fn log_stream_responses_match_their_schemas() {
    let spec = spec();
    let (api, store) = api_with_streams();
    let receiver = auditline_tests::receiver::Receiver::start().await;
    let failing = auditline_tests::receiver::Receiver::start().await;
    failing.set(auditline_tests::receiver::Behaviour::FailShare(1000));
    // A stream's event: the route's sample, with this body, path id and scopes.
    let request = |route: Route, id: Option<&str>, body: Option<Value>, scopes: &str| {
        let file = auditline_tests::http::sample_file(route);
        sample(file, |e| {
            e["requestContext"]["authorizer"]["lambda"]["scopes"] = json!(scopes);
            if let Some(id) = id {
                e["pathParameters"] = json!({ "stream_id": id });
            }
            match &body {
                Some(b) => e["body"] = json!(b.to_string()),
                None => {
                    e.as_object_mut().unwrap().remove("body");
                }
            }
        })
    };
    let admin = "audit:read audit:admin";
    // Each call: the status expected, the parameter an error names, and the body against the schema.
    let expect = async |route: Route, id: Option<&str>, body: Option<Value>, status: u16, parameter: Option<&str>| {
        let reply = call(&api, route, &request(route, id, body, admin)).await;
        assert_eq!(reply.status, status, "{route:?}: {}", reply.text);
        if status >= 400 {
            assert_eq!(reply.body["error"]["parameter"].as_str(), parameter, "{route:?}: {}", reply.text);
        }
        check(&spec, route, &reply);
        reply
    };

    // Every kind of target, each to a receiver on loopback (the local gateway allows plain http there).
    let webhook = json!({"name": "  SIEM  ", "target": {"type": "webhook", "url": receiver.url(), "encoding": "jsonl",
        "headers": {"X-Receiver-Token": "t0k3n"}}, "format": "ocsf", "filter": {"actions": ["DELETE", "UPDATE"],
        "entity_types": ["LOG_STREAM", "REPORT"], "project_ids": ["p-1"]}});
    let created = expect(Route::CreateStream, None, Some(webhook), 201, None).await;
    assert!(created.body["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")), "{}", created.text);
    assert_eq!(created.body["stream"]["name"], "SIEM");
    assert_eq!(created.body["stream"]["target"]["header_names"], json!(["x-receiver-token"]));
    let hook_id = created.body["stream"]["id"].as_str().unwrap().to_owned();
    let hec = json!({"name": "HEC", "target": {"type": "splunk_hec", "url": receiver.url(), "token": "B5A79AAD-D822",
        "index": "audit"}});
    let created = expect(Route::CreateStream, None, Some(hec), 201, None).await;
    assert!(created.body.get("secret").is_none(), "only a webhook has a signing secret: {}", created.text);
    let hec_id = created.body["stream"]["id"].as_str().unwrap().to_owned();
    let datadog = json!({"name": "DD", "target": {"type": "datadog", "api_key": "abcdef0123456789", "site": "datadoghq.eu",
        "url": failing.url(), "tags": ["env:prod"]}, "paused": true});
    let created = expect(Route::CreateStream, None, Some(datadog), 201, None).await;
    let dd_id = created.body["stream"]["id"].as_str().unwrap().to_owned();
    let bus = json!({"name": "Bus", "target": {"type": "eventbridge",
        "event_bus_arn": "arn:aws:events:eu-west-1:123456789012:event-bus/audit",
        "role_arn": "arn:aws:iam::123456789012:role/auditline-put-events"}});
    let created = expect(Route::CreateStream, None, Some(bus), 201, None).await;
    let bus_id = created.body["stream"]["id"].as_str().unwrap().to_owned();
    // What the tenant's role must require of this deployment: its own tenant's id, shown.
    assert_eq!(created.body["stream"]["target"]["external_id"], "auditline:acme", "{}", created.text);

    // Refused: a URL whose host does not resolve, or reaches inside (SSRF), or is not https; and
    // each other field at fault, named.
    for url in [
        "https://siem.invalid/hook",
        "https://10.0.0.8/hook",
        "https://169.254.169.254/latest",
        "http://siem.example.com/",
    ] {
        let body = json!({"name": "x", "target": {"type": "webhook", "url": url}});
        expect(Route::CreateStream, None, Some(body), 400, Some("target.url")).await;
    }
    let url = receiver.url();
    for (target, parameter) in [
        (json!({"type": "webhook", "url": url, "headers": {"Webhook-Signature": "x"}}), Some("target.headers")),
        (json!({"type": "splunk_hec", "url": url}), Some("target.token")),
        (json!({"type": "datadog", "api_key": "k", "site": "example.com"}), Some("target.site")),
        (
            json!({"type": "eventbridge", "event_bus_arn": "arn:aws:sqs:x", "role_arn": "arn:aws:iam::123456789012:role/r"}),
            Some("target.event_bus_arn"),
        ),
        (
            json!({"type": "eventbridge", "event_bus_arn": "arn:aws:events:eu-west-1:123456789012:event-bus/audit",
            "role_arn": "arn:aws:iam::123456789012:user/someone"}),
            Some("target.role_arn"),
        ),
        (
            json!({"type": "eventbridge", "event_bus_arn": "arn:aws:events:eu-west-1:123456789012:event-bus/audit"}),
            None,
        ),
        (json!({"type": "webhook", "url": url, "secret": "s"}), None),
        (json!({"type": "ftp", "url": url}), None),
    ] {
        expect(Route::CreateStream, None, Some(json!({"name": "x", "target": target})), 400, parameter).await;
    }
    let unnamed = json!({"name": " ", "target": {"type": "webhook", "url": url}});
    expect(Route::CreateStream, None, Some(unnamed), 400, Some("name")).await;
    let huge = json!({"name": "x".repeat(40 * 1024), "target": {"type": "webhook", "url": receiver.url()}});
    expect(Route::CreateStream, None, Some(huge), 413, None).await;
    for route in [Route::CreateStream, Route::ListStreams, Route::GetStream, Route::TestStream] {
        let reply = call(&api, route, &request(route, Some(&hook_id), None, "audit:read audit:write")).await;
        assert_eq!(reply.status, 403, "{route:?}: {}", reply.text);
        check(&spec, route, &reply);
    }
    let anonymous = sample("http-list-streams.json", |e| {
        e["requestContext"].as_object_mut().unwrap().remove("authorizer");
    });
    let reply = call(&api, Route::ListStreams, &anonymous).await;
    assert_eq!(reply.status, 401);
    check(&spec, Route::ListStreams, &reply);

    // Read, change, pause, rotate, test, delete.
    let listed = expect(Route::ListStreams, None, None, 200, None).await;
    assert_eq!(listed.body["streams"].as_array().map(Vec::len), Some(4));
    expect(Route::GetStream, Some(&hook_id), None, 200, None).await;
    expect(Route::GetStream, Some("not-a-uuid"), None, 400, Some("stream_id")).await;
    expect(Route::GetStream, Some("0192f7e1-0000-7000-8000-000000000000"), None, 404, None).await;
    let paused =
        expect(Route::UpdateStream, Some(&hook_id), Some(json!({"paused": true, "version": 1})), 200, None).await;
    assert_eq!(
        (paused.body["stream"]["status"].as_str(), paused.body["stream"]["version"].as_u64()),
        (Some("paused"), Some(2))
    );
    assert_eq!(paused.body["record"]["entity_type"], "LOG_STREAM");
    expect(Route::UpdateStream, Some(&hook_id), Some(json!({"paused": false, "version": 1})), 409, Some("version"))
        .await;
    let target = json!({"type": "splunk_hec", "url": receiver.url(), "token": "t"});
    expect(Route::UpdateStream, Some(&hook_id), Some(json!({ "target": target })), 400, Some("target.type")).await;
    let change = json!({"name": null, "target": {"type": "splunk_hec", "url": receiver.url(), "token": null, "source": "app"},
        "format": "entry", "filter": {"entity_types": ["LOG_STREAM"]}, "paused": null, "version": null});
    expect(Route::UpdateStream, Some(&hec_id), Some(change), 200, None).await;
    expect(Route::UpdateStream, Some(&hec_id), Some(json!({})), 200, None).await;
    expect(Route::UpdateStream, Some(&hec_id), Some(json!({"name": "x".repeat(101)})), 400, Some("name")).await;
    expect(Route::UpdateStream, Some("0192f7e1-0000-7000-8000-000000000000"), Some(json!({})), 404, None).await;
    let rotated = expect(Route::RotateStreamSecret, Some(&hook_id), None, 200, None).await;
    assert!(rotated.body["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")), "{}", rotated.text);
    assert!(rotated.body["stream"]["previous_secret_retires_at"].is_string(), "{}", rotated.text);
    let now = json!({"overlap_seconds": 0});
    expect(Route::RotateStreamSecret, Some(&hook_id), Some(now), 200, None).await;
    let too_long = json!({"overlap_seconds": 604_801});
    expect(Route::RotateStreamSecret, Some(&hook_id), Some(too_long), 400, Some("overlap_seconds")).await;
    expect(Route::RotateStreamSecret, Some(&bus_id), None, 400, Some("stream_id")).await;
    expect(Route::RotateStreamSecret, Some("0192f7e1-0000-7000-8000-000000000000"), None, 404, None).await;
    // A test event: taken, refused with the receiver's status, or no way to send it here (no bus).
    let taken = expect(Route::TestStream, Some(&hook_id), None, 200, None).await;
    assert_eq!(
        (taken.body["delivered"].as_bool(), taken.body["status"].as_u64()),
        (Some(true), Some(200)),
        "{}",
        taken.text
    );
    let refused = expect(Route::TestStream, Some(&dd_id), None, 200, None).await;
    assert_eq!((refused.body["delivered"].as_bool(), refused.body["status"].as_u64()), (Some(false), Some(500)));
    let no_bus = expect(Route::TestStream, Some(&bus_id), None, 200, None).await;
    assert_eq!((no_bus.body["delivered"].as_bool(), &no_bus.body["status"]), (Some(false), &Value::Null));
    expect(Route::TestStream, Some("not-a-uuid"), None, 400, Some("stream_id")).await;
    expect(Route::TestStream, Some("0192f7e1-0000-7000-8000-000000000000"), None, 404, None).await;

    // A failing stream, with figures: the stream, and the health check's log_streams.
    let acme = auditline_tests::tenant("acme");
    let dd: uuid::Uuid = dd_id.parse().unwrap();
    let at = Utc::now();
    let error = LastError { at, message: "HTTP 500".into() };
    let delta = FiguresDelta {
        delivered: 2,
        failed: 1,
        retried: 3,
        lags: vec![(4, 2)],
        error: Some(error),
        delivered_at: Some(at),
    };
    store.record(&acme, dd, &delta).await.unwrap();
    store.set_failing(&acme, dd, Some(&Failing { since: at, reason: "HTTP 500".into() })).await.unwrap();
    let unpaused = expect(Route::UpdateStream, Some(&dd_id), Some(json!({"paused": false})), 200, None).await;
    assert_eq!(unpaused.body["stream"]["status"], "failing", "{}", unpaused.text);
    assert!(unpaused.body["stream"]["figures"]["lag_ms"]["p50"].is_u64(), "{}", unpaused.text);
    let health = sample("http-health.json", |e| {
        e["requestContext"]["authorizer"] = event("http-list-logs.json")["requestContext"]["authorizer"].clone();
    });
    let reply = call(&api, Route::Health, &health).await;
    assert_eq!(reply.body["log_streams"]["failing"][0]["id"].as_str(), Some(dd_id.as_str()), "{}", reply.text);
    check(&spec, Route::Health, &reply);

    let deleted = expect(Route::DeleteStream, Some(&bus_id), None, 200, None).await;
    assert_eq!(deleted.body["record"]["action"], "DELETE");
    expect(Route::DeleteStream, Some(&bus_id), None, 404, None).await;
    expect(Route::DeleteStream, Some("not-a-uuid"), None, 400, Some("stream_id")).await;

    // The tenant's limit.
    let bus = json!({"name": "Bus", "target": {"type": "eventbridge",
        "event_bus_arn": "arn:aws:events:eu-west-1:123456789012:event-bus/audit",
        "role_arn": "arn:aws:iam::123456789012:role/auditline-put-events"}});
    for _ in 3..MAX_STREAMS_PER_TENANT {
        expect(Route::CreateStream, None, Some(bus.clone()), 201, None).await;
    }
    let reply = expect(Route::CreateStream, None, Some(bus), 409, None).await;
    assert_eq!(reply.error_code(), "too_many_streams");
    expect(Route::ListStreams, None, None, 200, None).await;

    // The streams' records in the trail, and in the figures.
    let trail = call(
        &api,
        Route::ListLogs,
        &sample("http-list-logs.json", |e| with_query(e, &[("entity_type", "LOG_STREAM")])),
    )
    .await;
    assert!(trail.body["entries"].as_array().is_some_and(|e| e.len() > 5), "{}", trail.text);
    check(&spec, Route::ListLogs, &trail);
    let stats = call(&api, Route::Stats, &sample("http-stats.json", |e| with_query(e, &[]))).await;
    assert!(stats.body["by_entity_type"]["LOG_STREAM"].as_u64().is_some_and(|n| n > 5), "{}", stats.text);
    check(&spec, Route::Stats, &stats);
}

#[test]
fn the_schema_check_catches_drift() {
    let spec = spec();
    let error = json!({"error": {"code": "x", "message": "m", "request_id": "r"}});
    let schema = json!({"$ref": "#/components/schemas/Error"});
    assert!(conforms(&spec, &error, &schema, "body").is_ok());
    let mut extra = error.clone();
    extra["error"]["detail"] = json!("undeclared");
    assert!(conforms(&spec, &extra, &schema, "body").is_err());
    let mut missing = error.clone();
    missing["error"].as_object_mut().unwrap().remove("request_id");
    assert!(conforms(&spec, &missing, &schema, "body").is_err());
    let mut wrong_type = error;
    wrong_type["error"]["code"] = json!(5);
    assert!(conforms(&spec, &wrong_type, &schema, "body").is_err());
    // A nullable reference: null, or the referenced schema (checked, not skipped).
    let changed = json!({"$ref": "#/components/schemas/StreamChanged"});
    let stream = &spec["components"]["schemas"]["Stream"];
    assert!(
        conforms(&spec, &json!({"stream": {}, "record": null}), &changed, "body").unwrap_err().contains("body.stream")
    );
    let record = &spec["components"]["schemas"]["StreamChanged"]["properties"]["record"];
    assert!(conforms(&spec, &Value::Null, record, "record").is_ok());
    assert!(conforms(&spec, &json!({"id": "x"}), record, "record").is_err());
    assert!(stream["required"].as_array().is_some_and(|r| r.contains(&json!("figures"))));
}
