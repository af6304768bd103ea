//! HTTP API: handler time per route without I/O (in-memory store), and DynamoDB requests per HTTP
//! request (local DynamoDB API).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use auditline::apigw::http::{AuditApi, Route, handle};
use auditline_tests::event;
use auditline_tests::http::{call, dynamo_api, memory_api, with_query};
use serde_json::{Value, json};

const SAMPLES: usize = 2_000;
const SEEDED: usize = 10_000;

fn request(e: &Value) -> lambda_http::Request {
    lambda_http::request::from_str(&e.to_string()).expect("event")
}

/// p50 and p99 of `handle` alone (the event is parsed beforehand, as the runtime does).
async fn time_route(api: &AuditApi, route: Route, events: &[Value]) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let req = request(&events[i % events.len()]);
        let started = Instant::now();
        let response = handle(route, req, api).await;
        samples.push(started.elapsed());
        assert!(response.status().as_u16() < 300, "{route:?}: {}", response.status());
    }
    samples.sort_unstable();
    let pick = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    (pick(0.5), pick(0.99))
}

fn with_body(e: &Value, body: Value) -> Value {
    let mut e = e.clone();
    e["body"] = json!(body.to_string());
    e.as_object_mut().unwrap()["headers"].as_object_mut().unwrap().remove("idempotency-key");
    e
}

fn batch(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"action": "VIEW", "entity_type": "REPORT", "entity_id": format!("entity-{}", i % 100), "project_id": "project-456"}))
            .collect(),
    )
}

pub async fn run(out: &mut String) {
    let api = memory_api();
    let ingest = event("http-ingest.json");
    for _ in 0..SEEDED / 100 {
        let reply = call(&api, Route::Ingest, &with_body(&ingest, batch(100))).await;
        assert_eq!(reply.status, 201);
    }
    let one = call(&api, Route::Ingest, &with_body(&ingest, batch(1)[0].clone())).await;
    let id = one.body["id"].as_str().unwrap().to_owned();
    let mut get = event("http-get-log.json");
    get["pathParameters"]["id"] = json!(id);
    let mut list = event("http-list-logs.json");
    with_query(&mut list, &[("limit", "100")]);
    let mut entity = event("http-entity-logs.json");
    entity["pathParameters"]["entity_id"] = json!("entity-7");
    let mut project = event("http-project-logs.json");
    with_query(&mut project, &[("entity_type", "REPORT"), ("limit", "100")]);
    let mut stats = event("http-stats.json");
    with_query(&mut stats, &[]);
    let unique_ingest: Vec<Value> = (0..SAMPLES)
        .map(|i| {
            with_body(&ingest, json!({"action": "UPDATE", "entity_type": "ENTITY", "entity_id": format!("e-{i}")}))
        })
        .collect();

    writeln!(out, "### Handler time per route, in-memory store with {SEEDED} entries (no I/O)\n").unwrap();
    writeln!(out, "| route | p50 | p99 |\n|---|---|---|").unwrap();
    let cases: Vec<(Route, &str, Vec<Value>)> = vec![
        (Route::Ingest, "POST /audit/logs (one entry)", unique_ingest),
        (Route::Ingest, "POST /audit/logs (batch of 100)", vec![with_body(&ingest, batch(100))]),
        (Route::GetLog, "GET /audit/logs/{id}", vec![get]),
        (Route::ListLogs, "GET /audit/logs?limit=100", vec![list]),
        (Route::EntityLogs, "GET /audit/logs/entity/{entity_id} (100 entries)", vec![entity]),
        (Route::ProjectLogs, "GET /audit/logs/project/{project_id}?entity_type=REPORT", vec![project]),
        (Route::Stats, "GET /audit/stats", vec![stats]),
        (Route::Health, "GET /audit/health", vec![event("http-health.json")]),
    ];
    for (route, name, events) in &cases {
        let (p50, p99) = time_route(&api, *route, events).await;
        writeln!(out, "| {name} | {} | {} |", crate::micros(p50), crate::micros(p99)).unwrap();
    }

    let (api, requests) = dynamo_api().await;
    writeln!(out, "\n### DynamoDB requests per HTTP request (counted by an SDK interceptor)\n").unwrap();
    writeln!(out, "| request | DynamoDB requests |\n|---|---|").unwrap();
    let mut count = async |name: &str, route: Route, e: &Value| {
        requests.reset();
        let reply = call(&api, route, e).await;
        assert!(reply.status < 300, "{name}: {}", reply.body);
        writeln!(out, "| {name} | {} |", requests.get()).unwrap();
        reply
    };
    for _ in 0..3 {
        call(&api, Route::Ingest, &with_body(&ingest, batch(100))).await;
    }
    let reply = count("POST one entry", Route::Ingest, &with_body(&ingest, batch(1)[0].clone())).await;
    let mut other_tenant = with_body(&ingest, batch(1)[0].clone());
    other_tenant["requestContext"]["authorizer"]["lambda"]["tenant_id"] = json!("globex");
    count(
        "POST one entry, its tenant's first in 5 s (its retention and holds read once, then reused)",
        Route::Ingest,
        &other_tenant,
    )
    .await;
    count("POST one entry with Idempotency-Key (claim, write, complete)", Route::Ingest, &event("http-ingest.json"))
        .await;
    count("POST the same again (replayed)", Route::Ingest, &event("http-ingest.json")).await;
    count("POST a batch of 10", Route::Ingest, &with_body(&ingest, batch(10))).await;
    let mut get = event("http-get-log.json");
    get["pathParameters"]["id"] = reply.body["id"].clone();
    count("GET /audit/logs/{id}", Route::GetLog, &get).await;
    let mut list = event("http-list-logs.json");
    with_query(&mut list, &[("limit", "100")]);
    let first = count("GET /audit/logs?limit=100", Route::ListLogs, &list).await;
    let token = first.body["next_token"].as_str().expect("more than one page").to_owned();
    with_query(&mut list, &[("limit", "100"), ("next_token", &token)]);
    count("GET /audit/logs?limit=100&next_token=…", Route::ListLogs, &list).await;
    let mut entity = event("http-entity-logs.json");
    entity["pathParameters"]["entity_id"] = json!("entity-7");
    count("GET /audit/logs/entity/{entity_id}", Route::EntityLogs, &entity).await;
    count(
        "GET /audit/logs/project/{project_id}?entity_type=ENTITY",
        Route::ProjectLogs,
        &event("http-project-logs.json"),
    )
    .await;
    count("GET /audit/stats", Route::Stats, &event("http-stats.json")).await;
    count("GET /audit/health", Route::Health, &event("http-health.json")).await;
    writeln!(out, "\nCapacity per written entry and per page of 100: see the store section above.").unwrap();
}
