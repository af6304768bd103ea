//! Every input from outside, fuzzed: query and path parameters of every route, JSON bodies (single
//! and batch, deep, wide, huge numbers, odd unicode), headers, authorizer events, WebSocket connect
//! queries, DynamoDB stream records and the command line's arguments. The property, everywhere:
//! never a panic; bad input gets a 4xx JSON error that names the parameter at fault; nothing is
//! stored for it.
//!
//! Cases per input class are [`CASES`] (times `AUDITLINE_FUZZ_SCALE`, for longer runs from the bench
//! script); BENCHMARKS.md records the volume.

use std::collections::BTreeSet;
use std::sync::Arc;

use auditline::apigw::authorizer::AuthorizerContext;
use auditline::apigw::http::{AuditApi, MAX_BATCH, Route};
use auditline::apigw::stream::{FeedDeps, handle_stream};
use auditline::apigw::websocket;
use auditline::auth::api_keys::{ApiKeyStore, MemoryApiKeys};
use auditline::auth::{AuthOptions, Authenticator, jwt::JwtVerifier};
use auditline::domain::{AuditAction, AuditQuery, EntityType, QueryScope};
use auditline::idempotency::MemoryIdempotency;
use auditline::integrity::signing::{LocalSigner, Signer};
use auditline::realtime::fanout::FanoutSettings;
use auditline::realtime::{ConnectionLimits, ConnectionStore, MemoryConnections, PushError, Pusher};
use auditline::seal::verify::{Bundle, Verifier};
use auditline::seal::{EntryProof, ProofOutcome, SealSettings, SealStore, Sealer, prove};
use auditline::store::MemoryStore;
use auditline::{AuditLogger, AuditSettings};
use auditline_tests::http::{Reply, call, sample, with_query};
use auditline_tests::{event, tenant};
use chrono::Utc;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

/// Cases per input class and test run.
pub const CASES: u32 = 256;

fn cases() -> u32 {
    let scale = std::env::var("AUDITLINE_FUZZ_SCALE").ok().and_then(|s| s.parse::<u32>().ok()).unwrap_or(1);
    CASES * scale.max(1)
}

/// Runs `property` on `cases()` inputs from `strategy`, each inside one shared runtime.
fn fuzz<S: Strategy>(strategy: S, property: impl Fn(&tokio::runtime::Runtime, S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    if let Err(e) = runner.run(&strategy, |value| property(&runtime, value)) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Values that probe parsers: dates with six-digit and signed years, out-of-range fields, offsets;
// numbers of every size and form; the enums in every case; tokens; unicode and control characters.

/// One of `edges` half the time (the values where parsers and arithmetic break), else any in `range`.
fn edgy(edges: &[i64], range: std::ops::RangeInclusive<i64>) -> impl Strategy<Value = i64> + use<> {
    prop_oneof![proptest::sample::select(edges.to_vec()), range]
}

/// Instants where date arithmetic breaks — chrono's first and last, the epoch, the last
/// millisecond a UUIDv7 holds, the end of year 9999 — nudged by up to a second, written in each
/// form a client may use.
fn boundary_date() -> impl Strategy<Value = String> {
    let nudge = prop_oneof![proptest::sample::select(NUDGES.to_vec()), -1_000_000_000i64..=1_000_000_000];
    (proptest::sample::select(edge_instants()), nudge, 0..DATE_FORMS)
        .prop_map(|(edge, nanos, form)| nudged(edge, nanos, form))
}

/// Instants where date arithmetic breaks: chrono's first and last, the epoch, the last millisecond
/// a UUIDv7 holds, the end of year 9999.
fn edge_instants() -> Vec<chrono::DateTime<Utc>> {
    use chrono::DateTime;
    vec![
        DateTime::<Utc>::MIN_UTC,
        DateTime::<Utc>::MAX_UTC,
        DateTime::UNIX_EPOCH,
        DateTime::from_timestamp_millis((1 << 48) - 1).unwrap(),
        DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999999999Z").unwrap().to_utc(),
    ]
}

/// Nanoseconds to move an edge by: across a nanosecond, a microsecond, a millisecond, a second.
const NUDGES: [i64; 9] = [-1_000_000_000, -1_000_000, -1_000, -1, 0, 1, 1_000, 1_000_000, 1_000_000_000];
const DATE_FORMS: u8 = 4;

/// `edge` moved by `nanos` (kept at the edge where that leaves chrono's range), written in `form`.
fn nudged(edge: chrono::DateTime<Utc>, nanos: i64, form: u8) -> String {
    use chrono::SecondsFormat;
    let t = edge.checked_add_signed(chrono::Duration::nanoseconds(nanos)).unwrap_or(edge);
    match form {
        0 => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        1 => t.format("%Y-%m-%dT%H:%M:%S%.f").to_string(),
        2 => t.format("%Y-%m-%d").to_string(),
        _ => t.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
    }
}

#[test]
fn every_date_edge_on_every_route() {
    // The sweep that random cases may miss: every edge, nudge and form, as each date parameter of
    // each route that takes one. Deterministic, so this class of bug cannot slip through.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (api, _) = seeded(&runtime);
    let mut checked = 0;
    for route in [Route::ListLogs, Route::EntityLogs, Route::ProjectLogs, Route::Stats, Route::Checkpoints] {
        for edge in edge_instants() {
            for nanos in NUDGES {
                for form in 0..DATE_FORMS {
                    let value = nudged(edge, nanos, form);
                    for name in ["start_date", "end_date"] {
                        let mut e = sample(auditline_tests::http::sample_file(route), as_caller);
                        with_query(&mut e, &[(name, value.as_str())]);
                        let reply = runtime.block_on(call(&api, route, &e));
                        check_reply(&reply, &BTreeSet::from([name.to_owned()]))
                            .unwrap_or_else(|e| panic!("{route:?} {name}={value}: {e}"));
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 5 * 5 * NUDGES.len() * DATE_FORMS as usize * 2);
}

fn date_like() -> impl Strategy<Value = String> {
    prop_oneof![2 => boundary_date(), 1 => assembled_date()]
}

/// Dates assembled from parts, edge values weighted in.
fn assembled_date() -> impl Strategy<Value = String> {
    let years = [0, 1, 999, 1969, 1970, 2026, 9999, 10_000, 99_999, 262_142, 262_143, i64::from(i32::MAX)];
    (
        prop_oneof![Just(""), Just("+"), Just("-")],
        edgy(&years, 0..=300_000),
        edgy(&[0, 1, 2, 12, 13], 0..=13),
        edgy(&[0, 1, 28, 29, 30, 31, 32], 0..=32),
        proptest::option::of((
            edgy(&[0, 23, 24], 0..=25),
            edgy(&[0, 59, 60], 0..=61),
            edgy(&[0, 59, 60], 0..=61),
            proptest::option::of(prop_oneof!["9{1,12}", "[0-9]{1,12}"]),
        )),
        prop_oneof![Just(String::new()), Just("Z".to_owned()), Just("+14:00".to_owned()), "[+-][0-9]{2}:[0-9]{2}"],
        prop_oneof![Just('T'), Just(' ')],
    )
        .prop_map(|(sign, year, month, day, time, offset, separator)| {
            let mut s = format!("{sign}{year:04}-{month:02}-{day:02}");
            if let Some((h, m, sec, fraction)) = time {
                s.push_str(&format!("{separator}{h:02}:{m:02}:{sec:02}"));
                if let Some(f) = fraction {
                    s.push('.');
                    s.push_str(&f);
                }
                s.push_str(&offset);
            }
            s
        })
}

fn number_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u128>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        Just("1e400".to_owned()),
        Just("-0".to_owned()),
        Just("+5".to_owned()),
        Just(" 10 ".to_owned()),
        "[0-9]{1,40}",
    ]
}

fn enum_like() -> impl Strategy<Value = String> {
    let words: Vec<&'static str> =
        AuditAction::ALL.iter().map(|a| a.as_str()).chain(EntityType::ALL.iter().map(|t| t.as_str())).collect();
    (proptest::sample::select(words), 0..4u8).prop_map(|(w, how)| match how {
        0 => w.to_owned(),
        1 => w.to_lowercase(),
        2 => format!(" {w}"),
        _ => format!("{w}\u{0}"),
    })
}

fn odd_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "\\PC{0,300}",
        "[\\x00-\\x1f\\x7f]{1,4}",
        Just("\u{202e}\u{200b}e\u{301}\u{1F600}".to_owned()),
        "[A-Za-z0-9_-]{40,60}",
        (1usize..2000).prop_map(|n| "x".repeat(n)),
    ]
}

fn parameter_value() -> impl Strategy<Value = String> {
    prop_oneof![date_like(), number_like(), enum_like(), odd_text(), Just(String::new())]
}

/// A value for the parameter `name`: of the kind it takes three times in four (where the edge
/// cases of its parser are), anything otherwise.
fn value_for(name: &str) -> BoxedStrategy<String> {
    let kind = match name {
        "start_date" | "end_date" => date_like().boxed(),
        "limit" | "offset" => number_like().boxed(),
        "action" | "entity_type" => enum_like().boxed(),
        "next_token" => prop_oneof!["[A-Za-z0-9_-]{0,64}", odd_text()].boxed(),
        _ => parameter_value().boxed(),
    };
    prop_oneof![3 => kind, 1 => parameter_value()].boxed()
}

/// A value `name` accepts.
fn valid_value_for(name: &str) -> BoxedStrategy<String> {
    match name {
        "start_date" | "end_date" => (2020i32..2030, 1u32..=12, 1u32..=28, 0u32..24, 0u8..3)
            .prop_map(|(y, m, d, h, form)| match form {
                0 => format!("{y}-{m:02}-{d:02}"),
                1 => format!("{y}-{m:02}-{d:02}T{h:02}:00:00Z"),
                _ => format!("{y}-{m:02}-{d:02}T{h:02}:30:00.5+02:00"),
            })
            .boxed(),
        "limit" => (1u32..=1000).prop_map(|n| n.to_string()).boxed(),
        "offset" => (0u32..=50).prop_map(|n| n.to_string()).boxed(),
        "action" => proptest::sample::select(AuditAction::ALL.to_vec()).prop_map(|a| a.to_string()).boxed(),
        "entity_type" => proptest::sample::select(EntityType::ALL.to_vec()).prop_map(|t| t.to_string()).boxed(),
        "project_id" => Just("project-1".to_owned()).boxed(),
        _ => "[a-z0-9-]{1,12}".boxed(),
    }
}

/// A query: valid values for some of `known` (so that checks deep in the code are reached),
/// and, most of the time, one hostile pair — a known name with an edge value, or an unknown one.
fn parameters(known: Vec<&'static str>, most: usize) -> impl Strategy<Value = Vec<(String, String)>> {
    let valid_names: Vec<&'static str> = known.iter().copied().filter(|n| *n != "next_token").collect();
    let base = proptest::sample::subsequence(valid_names, 0..=most.min(known.len() - 1))
        .prop_flat_map(|names| names.into_iter().map(|n| (Just(n.to_owned()), valid_value_for(n))).collect::<Vec<_>>());
    let name = prop_oneof![
        6 => proptest::sample::select(known).prop_map(str::to_owned),
        1 => prop_oneof![Just("token".to_owned()), Just("api_key".to_owned()), ".{0,12}"],
    ];
    let hostile = proptest::option::weighted(0.8, name.prop_flat_map(|n| (Just(n.clone()), value_for(&n))));
    (base, hostile).prop_map(|(mut pairs, hostile)| {
        if let Some((name, value)) = hostile {
            pairs.retain(|(n, _)| *n != name);
            pairs.push((name, value));
        }
        pairs
    })
}

// ---------------------------------------------------------------------------------------------
// The HTTP API.

fn api(store: Arc<MemoryStore>) -> AuditApi {
    AuditApi {
        logger: Arc::new(AuditLogger::new(store, AuditSettings::default())),
        idempotency: Arc::new(MemoryIdempotency::new()),
        health_timeout: std::time::Duration::from_secs(1),
        auth_methods: vec!["jwt".into()],
        seal: Arc::new(auditline::store::MemoryStore::new()),
        seal_settings: Default::default(),
        keys: Arc::new(auditline::seal::StaticKeys(Vec::new())),
        witnesses: Vec::new(),
        log_reads: false,
        streams: None,
    }
}

/// An API over a store holding a few entries of `acme`.
fn seeded(runtime: &tokio::runtime::Runtime) -> (AuditApi, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let api = api(store.clone());
    runtime.block_on(async {
        for i in 0..5 {
            let request = auditline_tests::new_entry(
                &tenant("acme"),
                AuditAction::ALL[i % 6],
                EntityType::ALL[i % 7],
                "entity-1",
                Some("project-1"),
                Some("user-1"),
            );
            api.logger.log(request).await.unwrap();
        }
    });
    (api, store)
}

fn as_caller(e: &mut Value) {
    e["requestContext"]["authorizer"] = json!({"lambda": {
        "user_id": "user-1", "tenant_id": "acme", "scopes": "audit:read audit:write", "auth_method": "jwt"
    }});
}

/// Checks the one error envelope, and that a 400 names a parameter from `allowed`.
fn check_reply(reply: &Reply, allowed: &BTreeSet<String>) -> Result<(), TestCaseError> {
    prop_assert!(reply.status < 500, "a {} for input the caller could fix: {}", reply.status, reply.body);
    if reply.status >= 400 {
        let error = &reply.body["error"];
        prop_assert!(error["code"].is_string() && error["message"].is_string(), "the error envelope: {}", reply.body);
        if reply.status == 400 {
            let parameter = error["parameter"].as_str().unwrap_or("");
            prop_assert!(
                allowed.contains(parameter),
                "the 400 names {parameter:?}, not one of {allowed:?}: {}",
                reply.body
            );
        }
    }
    Ok(())
}

fn stored(runtime: &tokio::runtime::Runtime, store: &MemoryStore) -> usize {
    runtime.block_on(async { store.len() })
}

#[test]
fn query_parameters_of_every_route() {
    // Routes that read parameters twice as often as those that only refuse them.
    let routes = prop_oneof![
        2 => proptest::sample::select(vec![
            Route::ListLogs, Route::EntityLogs, Route::ProjectLogs, Route::Stats, Route::Checkpoints,
        ]),
        1 => proptest::sample::select(vec![Route::GetLog, Route::Health, Route::Ingest, Route::Proof, Route::Keys]),
    ];
    let pairs = parameters(
        vec!["action", "entity_type", "user_id", "start_date", "end_date", "limit", "offset", "next_token"],
        6,
    );
    fuzz((routes, pairs, any::<bool>()), |runtime, (route, pairs, with_token)| {
        let (api, store) = seeded(runtime);
        let before = stored(runtime, &store);
        let mut pairs = pairs;
        if with_token && route.query_parameters().contains(&"next_token") {
            // A token this service issued, for another query: the digest must refuse it.
            let page = runtime.block_on(async {
                let mut q = AuditQuery::new(QueryScope::Tenant);
                q.page.limit = 1;
                api.logger.get_logs(&tenant("acme"), &q).await.unwrap()
            });
            pairs.push(("next_token".into(), page.next_token.unwrap_or_default()));
        }
        let mut e = sample(auditline_tests::http::sample_file(route), as_caller);
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        with_query(&mut e, &borrowed);
        let reply = runtime.block_on(call(&api, route, &e));
        let named: BTreeSet<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
        check_reply(&reply, &named)?;
        if route != Route::Ingest {
            prop_assert_eq!(stored(runtime, &store), before, "a read stores nothing");
        }
        Ok(())
    });
}

#[test]
fn path_parameters() {
    let routes = proptest::sample::select(vec![Route::GetLog, Route::Proof, Route::EntityLogs, Route::ProjectLogs]);
    let values =
        prop_oneof![odd_text(), parameter_value(), any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string())];
    fuzz((routes, values), |runtime, (route, value)| {
        let (api, store) = seeded(runtime);
        let name = match route {
            Route::GetLog | Route::Proof => "id",
            Route::EntityLogs => "entity_id",
            _ => "project_id",
        };
        let mut e = sample(auditline_tests::http::sample_file(route), as_caller);
        e["pathParameters"] = json!({ name: value });
        with_query(&mut e, &[]);
        let reply = runtime.block_on(call(&api, route, &e));
        check_reply(&reply, &BTreeSet::from([name.to_owned()]))?;
        prop_assert!(matches!(reply.status, 200 | 400 | 404), "{}", reply.status);
        prop_assert_eq!(stored(runtime, &store), 5);
        Ok(())
    });
}

/// Any JSON value: deep, wide, with huge numbers and odd strings, and the entry's own field names
/// among the keys so that some inputs come close to valid entries.
fn json_value() -> impl Strategy<Value = Value> {
    json_value_of(12, 256, 12)
}

/// A JSON value at most `depth` deep, of about `nodes` nodes, `width` per object or array.
fn json_value_of(depth: u32, nodes: u32, width: usize) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        odd_text().prop_map(Value::from),
        enum_like().prop_map(Value::from),
    ];
    let key = prop_oneof![
        3 => proptest::sample::select(vec![
            "action", "entity_type", "entity_id", "project_id", "changes", "metadata", "id", "timestamp",
            "tenant_id", "user_id", "ip_address", "expires_at",
        ]).prop_map(str::to_owned),
        1 => odd_text(),
    ];
    leaf.prop_recursive(depth, nodes, width as u32, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..width).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..width)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// An entry object: valid fields mostly, one of them replaced or an extra one added at times.
/// `nodes` sizes its free-form values (small in batches, where a hundred entries share one body).
fn entry_like(nodes: u32) -> impl Strategy<Value = Value> {
    let value = move || json_value_of(6, nodes, 8);
    let action =
        prop_oneof![3 => proptest::sample::select(AuditAction::ALL.to_vec()).prop_map(|a| json!(a)), 1 => value()];
    let kind =
        prop_oneof![3 => proptest::sample::select(EntityType::ALL.to_vec()).prop_map(|t| json!(t)), 1 => value()];
    let id = prop_oneof![3 => "[a-z0-9-]{1,20}".prop_map(Value::from), 1 => value()];
    let extra = proptest::option::of((prop_oneof![Just("ip_address".to_owned()), ".{1,8}"], value()));
    (action, kind, id, proptest::option::of(value()), proptest::option::of(value()), extra).prop_map(
        |(action, kind, id, changes, metadata, extra)| {
            let mut e = json!({"action": action, "entity_type": kind, "entity_id": id});
            if let Some(c) = changes {
                e["changes"] = c;
            }
            if let Some(m) = metadata {
                e["metadata"] = m;
            }
            if let Some((k, v)) = extra {
                e[k] = v;
            }
            e
        },
    )
}

/// Bodies as bytes: JSON of entries and batches, any JSON, deeply nested text, huge numbers, and
/// bytes that are not JSON (or not UTF-8) at all.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => entry_like(64).prop_map(|v| v.to_string().into_bytes()),
        3 => proptest::collection::vec(entry_like(4), 0..(MAX_BATCH + 3)).prop_map(|v| Value::Array(v).to_string().into_bytes()),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => (1usize..400).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
        1 => (1usize..400).prop_map(|depth| format!("{}1{}", "{\"changes\":".repeat(depth), "}".repeat(depth)).into_bytes()),
        1 => Just(br#"{"action":"CREATE","entity_type":"FILE","entity_id":"f","changes":{"n":1e400}}"#.to_vec()),
        1 => Just(br#"{"action":"CREATE","entity_type":"FILE","entity_id":"f","changes":{"n":123456789012345678901234567890}}"#.to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

#[test]
fn json_bodies_single_and_batch() {
    fuzz(body(), |runtime, bytes| {
        let (api, store) = seeded(runtime);
        let before = stored(runtime, &store);
        let mut e = sample("http-ingest.json", as_caller);
        e.as_object_mut().unwrap().remove("body");
        e["headers"].as_object_mut().unwrap().remove("idempotency-key");
        match std::str::from_utf8(&bytes) {
            Ok(text) => e["body"] = json!(text),
            Err(_) => {
                e["body"] = json!(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bytes));
                e["isBase64Encoded"] = json!(true);
            }
        }
        let reply = runtime.block_on(call(&api, Route::Ingest, &e));
        prop_assert!(matches!(reply.status, 201 | 207 | 400), "{}: {}", reply.status, reply.body);
        let after = stored(runtime, &store);
        match reply.status {
            201 if reply.body["results"].is_array() => {
                prop_assert_eq!(after - before, reply.body["stored"].as_u64().unwrap() as usize);
            }
            201 => prop_assert_eq!(after, before + 1),
            207 => {
                let results = reply.body["results"].as_array().unwrap();
                prop_assert_eq!(
                    after - before,
                    reply.body["stored"].as_u64().unwrap() as usize,
                    "exactly the reported"
                );
                for r in results.iter().filter(|r| r["status"] == 400) {
                    prop_assert!(r["error"]["code"] == "invalid_entry", "{r}");
                }
            }
            _ => {
                prop_assert_eq!(after, before, "a refused body stores nothing");
                prop_assert!(reply.body["error"]["code"] == "invalid_entry", "{}", reply.body);
            }
        }
        Ok(())
    });
}

#[test]
fn idempotency_keys_and_other_headers() {
    let key = prop_oneof![
        odd_text(),
        "[A-Za-z0-9._:-]{1,140}",
        proptest::collection::vec(any::<u8>(), 0..60).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
    ];
    // Only values HTTP can carry: anything else never reaches a function (API Gateway refuses it).
    let deliverable = |v: &String| http::HeaderValue::from_str(v).is_ok();
    let key = key.prop_filter("an HTTP header value", deliverable);
    let content_type = proptest::option::of(odd_text().prop_filter("an HTTP header value", deliverable));
    fuzz((key, content_type), |runtime, (key, content_type)| {
        let (api, store) = seeded(runtime);
        let mut e = sample("http-ingest.json", as_caller);
        e["headers"]["idempotency-key"] = json!(key);
        if let Some(ct) = content_type {
            e["headers"]["content-type"] = json!(ct);
        }
        let reply = runtime.block_on(call(&api, Route::Ingest, &e));
        check_reply(&reply, &BTreeSet::from(["Idempotency-Key".to_owned()]))?;
        match reply.status {
            201 => prop_assert_eq!(stored(runtime, &store), 6),
            _ => prop_assert_eq!(stored(runtime, &store), 5, "a refused key stores nothing"),
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// The authorizer, the WebSocket `$connect` and the stream.

fn authenticator() -> Authenticator {
    let verifier =
        JwtVerifier::hmac(jsonwebtoken::Algorithm::HS256, auditline_tests::auth::SECRET.as_bytes(), 0).unwrap();
    Authenticator::new(AuthOptions {
        jwt: Some(verifier),
        api_keys: Some(Arc::new(MemoryApiKeys::new())),
        ..AuthOptions::default()
    })
}

/// Mutates `value` at a random path: replaces, removes or adds.
fn mutate(mut value: Value, path: &[usize], replacement: Value, how: u8) -> Value {
    mutate_at(&mut value, path, replacement, how);
    value
}

fn mutate_at(at: &mut Value, path: &[usize], replacement: Value, how: u8) {
    let child = match (path.first(), &mut *at) {
        (Some(step), Value::Object(m)) if !m.is_empty() => {
            let key = m.keys().nth(step % m.len()).unwrap().clone();
            m.get_mut(&key)
        }
        (Some(step), Value::Array(a)) if !a.is_empty() => {
            let n = a.len();
            a.get_mut(step % n)
        }
        _ => None,
    };
    if let Some(child) = child {
        return mutate_at(child, &path[1..], replacement, how);
    }
    match (how, &mut *at) {
        (0, Value::Object(m)) if !m.is_empty() => {
            let key = m.keys().next().unwrap().clone();
            m.remove(&key);
        }
        (1, Value::Object(m)) => {
            m.insert("fuzz".into(), replacement);
        }
        _ => *at = replacement,
    }
}

#[test]
fn authorizer_events() {
    let samples = proptest::sample::select(vec!["authorizer-http.json", "authorizer-websocket-connect.json"]);
    let credential =
        prop_oneof![odd_text(), Just(format!("Bearer {}", "a".repeat(9000))), Just("Bearer a.b.c".to_owned())];
    let shape = prop_oneof![
        3 => (samples, proptest::collection::vec(any::<usize>(), 0..5), json_value(), 0u8..3, credential).prop_map(
            |(file, path, replacement, how, credential)| {
                let mut e = event(file);
                e["headers"]["authorization"] = json!(credential);
                mutate(e, &path, replacement, how)
            }
        ),
        1 => json_value(),
    ];
    let auth = authenticator();
    fuzz(shape, |runtime, e| {
        if let Ok(response) = runtime.block_on(auditline::apigw::authorize(e, &auth)) {
            let allowed =
                response["isAuthorized"] == true || response["policyDocument"]["Statement"][0]["Effect"] == "Allow";
            // No input here carries a valid credential; only the public health check lets such in.
            let public = response["context"] == json!({});
            prop_assert!(!allowed || public, "allowed without a credential: {response}");
        }
        Ok(())
    });
}

#[test]
fn websocket_connect_queries() {
    // Unknown names are ignored at $connect (credentials and other clients' parameters arrive
    // there too); the filters are checked.
    let pairs = parameters(vec!["project_id", "entity_type", "action"], 3);
    fuzz(pairs, |runtime, pairs| {
        let store = MemoryConnections::new();
        let mut e = event("ws-connect.json");
        e["requestContext"]["authorizer"] = serde_json::to_value(AuthorizerContext {
            user_id: "u".into(),
            tenant_id: "acme".into(),
            scopes: "audit:read".into(),
            auth_method: "jwt".into(),
            expires_at: String::new(),
        })
        .unwrap();
        let query: Map<String, Value> = pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let multi: Map<String, Value> = pairs.iter().map(|(k, v)| (k.clone(), json!([v]))).collect();
        e["queryStringParameters"] = Value::Object(query);
        e["multiValueQueryStringParameters"] = Value::Object(multi);
        let request = serde_json::from_value(e).unwrap();
        let response = runtime.block_on(websocket::connect(&request, &store, ConnectionLimits::default(), Utc::now()));
        let recorded = runtime.block_on(store.tenant_connections(&tenant("acme"), Utc::now())).unwrap().len();
        match response.status_code {
            200 => prop_assert_eq!(recorded, 1),
            400 => {
                let body: Value = match &response.body {
                    Some(aws_lambda_events::encodings::Body::Text(t)) => serde_json::from_str(t).unwrap(),
                    _ => Value::Null,
                };
                let parameter = body["error"]["parameter"].as_str().unwrap_or("");
                prop_assert!(pairs.iter().any(|(k, _)| k == parameter), "names {parameter:?}: {body}");
                prop_assert_eq!(recorded, 0, "a refused connection is not recorded");
            }
            other => prop_assert!(false, "status {other}"),
        }
        Ok(())
    });
}

/// Counts pushes; never fails.
struct Counting(std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl Pusher for Counting {
    async fn push(&self, _: &str, _: &[u8]) -> Result<(), PushError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    async fn close(&self, _: &str) -> Result<(), PushError> {
        Ok(())
    }
}

/// A DynamoDB attribute value in the stream's JSON form, of any type, with any content.
fn attribute() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        odd_text().prop_map(|s| json!({"S": s})),
        number_like().prop_map(|n| json!({"N": n})),
        any::<bool>().prop_map(|b| json!({"BOOL": b})),
        Just(json!({"NULL": true})),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(|l| json!({ "L": l })),
            proptest::collection::btree_map(".{0,8}", inner, 0..6).prop_map(|m| json!({ "M": m })),
        ]
    })
}

/// A stream record: a real entry's image, damaged at one attribute at times, or any image at all.
fn record() -> impl Strategy<Value = Value> {
    let names = prop_oneof![
        4 => Just("INSERT".to_owned()),
        1 => Just("MODIFY".to_owned()),
        1 => Just("REMOVE".to_owned()),
        1 => ".{0,8}",
    ];
    let image = prop_oneof![
        2 => (0usize..14, attribute(), any::<bool>()).prop_map(|(field, value, drop)| {
            let entry = auditline_tests::new_entry(&tenant("acme"), AuditAction::Create, EntityType::File, "f-1", Some("p"), Some("u"))
                .validate()
                .unwrap()
                .stamp(Utc::now(), 90)
                .unwrap();
            let mut image: Value = serde_json::to_value(serde_dynamo::Item::from(auditline::store::dynamo::entry_item(&entry).unwrap())).unwrap();
            let map = image.as_object_mut().unwrap();
            if field < map.len() {
                let key = map.keys().nth(field).unwrap().clone();
                if drop { map.remove(&key); } else { map.insert(key, value); }
            }
            image
        }),
        1 => proptest::collection::btree_map(".{0,10}", attribute(), 0..8).prop_map(|m| json!(m)),
    ];
    (names, image, any::<u32>()).prop_map(|(name, image, sequence)| {
        json!({
            "eventID": "1",
            "eventName": name,
            "eventSource": "aws:dynamodb",
            "dynamodb": {"NewImage": image, "SequenceNumber": sequence.to_string(), "StreamViewType": "NEW_IMAGE"}
        })
    })
}

#[test]
fn dynamodb_stream_records() {
    fuzz(proptest::collection::vec(record(), 1..12), |runtime, records| {
        let connections = Arc::new(MemoryConnections::new());
        let caller = auditline::auth::Caller {
            tenant_id: tenant("acme"),
            user_id: Some("viewer".into()),
            scopes: vec!["*".into()],
            auth_method: auditline::auth::AuthMethod::Jwt,
            credential_expires_at: None,
        };
        let connected = Utc::now() - chrono::Duration::minutes(1);
        let record = auditline::realtime::WebSocketConnectionInfo::new("c", &caller, Default::default(), connected);
        runtime.block_on(connections.put(&record)).unwrap();
        let pusher = Arc::new(Counting(Default::default()));
        let deps = FeedDeps::new(connections, pusher.clone(), FanoutSettings::default());
        let Ok(event) = serde_json::from_value(json!({ "Records": records })) else {
            // Not a stream event at all: the runtime reports it before any handler runs.
            return Ok(());
        };
        let (response, report) = runtime.block_on(handle_stream(event, &deps));
        let inserts = records.iter().filter(|r| r["eventName"] == "INSERT").count();
        let failed = response.batch_item_failures.len();
        prop_assert!(failed <= inserts, "only INSERT records can fail");
        prop_assert_eq!(report.delivered + failed, inserts, "every INSERT is delivered or reported, never lost");
        prop_assert_eq!(pusher.0.load(std::sync::atomic::Ordering::SeqCst), report.delivered);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// The command line.

#[test]
fn command_line_arguments() {
    use clap::Parser;
    let word = prop_oneof![
        3 => proptest::sample::select(vec![
            "create", "list", "revoke", "--tenant", "--user", "--scope", "--name", "--expires-in-days",
            "--table", "--endpoint", "--help", "acme", "audit:read", "30", "0", "4294967295", "-1",
        ]).prop_map(str::to_owned),
        1 => odd_text(),
        1 => number_like(),
    ];
    fuzz(proptest::collection::vec(word, 0..10), |runtime, words| {
        let argv = ["auditline", "keys"].into_iter().map(str::to_owned).chain(words);
        let Ok(cli) = auditline_cli::Cli::try_parse_from(argv) else { return Ok(()) };
        let auditline_cli::Command::Keys(args) = cli.command else { unreachable!("the keys subcommand") };
        let store = MemoryApiKeys::new();
        let mut out = Vec::new();
        let result = runtime.block_on(auditline_cli::keys::run(args.command, &store, Utc::now(), &mut out));
        let created = runtime.block_on(store.list(&tenant("acme"))).map(|l| l.len()).unwrap_or(0);
        if result.is_err() {
            prop_assert_eq!(created, 0, "a refused command stores nothing");
        }
        Ok(())
    });
}

#[test]
fn the_fuzzers_reach_the_interesting_answers() {
    // A fuzzer that only ever sees 400s (or only 200s) proves little: the generators above reach
    // both sides of the line. Checked here on a fixed seed, with the same strategies.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut runner = TestRunner::deterministic();
    let mut statuses = BTreeSet::new();
    for _ in 0..150 {
        let bytes = body().new_tree(&mut runner).unwrap().current();
        let (api, _) = seeded(&runtime);
        let mut e = sample("http-ingest.json", as_caller);
        e["headers"].as_object_mut().unwrap().remove("idempotency-key");
        e["body"] = json!(String::from_utf8_lossy(&bytes));
        statuses.insert(runtime.block_on(call(&api, Route::Ingest, &e)).status);
    }
    assert!(statuses.is_superset(&BTreeSet::from([201, 207, 400])), "bodies reach {statuses:?}");
    let mut statuses = BTreeSet::new();
    for _ in 0..300 {
        let date = date_like().new_tree(&mut runner).unwrap().current();
        let (api, _) = seeded(&runtime);
        let mut e = sample("http-list-logs.json", as_caller);
        with_query(&mut e, &[("start_date", &date)]);
        statuses.insert(runtime.block_on(call(&api, Route::ListLogs, &e)).status);
    }
    assert_eq!(statuses, BTreeSet::from([200, 400]), "dates reach both sides");
}

// ---------------------------------------------------------------------------------------------
// What `auditline verify` and a witness read: bundles, proofs, checkpoints, notes, vkeys,
// signatures, add-checkpoint bodies. Whatever they hold, an answer, never a panic.

/// A small sealed trail of acme: its bundle, one proof (as the route answers it) and the seal key.
fn sealed_trail() -> &'static (Bundle, Value, Vec<u8>) {
    static TRAIL: std::sync::OnceLock<(Bundle, Value, Vec<u8>)> = std::sync::OnceLock::new();
    TRAIL.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store = Arc::new(MemoryStore::new());
            let start = Utc::now() - chrono::Duration::hours(4);
            let (clock, _) = auditline_tests::stepping_clock(start, 15 * 60_000);
            let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock);
            for i in 0..12 {
                let e = auditline_tests::new_entry(
                    &tenant("acme"),
                    AuditAction::ALL[i % 6],
                    EntityType::ALL[i % 7],
                    "x",
                    None,
                    None,
                );
                logger.log(e).await.unwrap();
            }
            let key = Arc::new(LocalSigner::generate().unwrap());
            let settings = SealSettings { lookback_hours: 8, ..SealSettings::default() };
            Sealer::new(store.clone(), key.clone(), settings).run(Utc::now()).await.unwrap();
            let entries = auditline_tests::all_entries(store.clone(), &tenant("acme")).await;
            let checkpoints = store.checkpoints(&tenant("acme"), None, None, 100).await.unwrap();
            let ProofOutcome::Proven(proof) = prove(store.as_ref(), entries[3].clone(), &settings).await.unwrap()
            else {
                panic!("sealed")
            };
            let bundle = Bundle { entries, checkpoints, ..Bundle::default() };
            (bundle, serde_json::to_value(&*proof).unwrap(), key.public_key_der().to_vec())
        })
    })
}

const CHECKPOINT_FIELDS: [&str; 13] = [
    "format",
    "origin",
    "tenant",
    "start",
    "end",
    "size",
    "total",
    "root",
    "ids",
    "previous",
    "key_id",
    "signature",
    "cosignatures",
];

#[test]
fn crafted_bundles_checkpoints_and_proofs_never_panic_the_verifier() {
    let (bundle, proof, key) = sealed_trail();
    let field = prop_oneof![
        proptest::sample::select(CHECKPOINT_FIELDS.to_vec()),
        proptest::sample::select(auditline::domain::entry::COMMITTED_FIELDS.to_vec()),
        Just("integrity"),
    ];
    let verifier = Verifier::new([key.as_slice()]).with_tenant("acme");
    fuzz((any::<usize>(), field, json_value(), 0..3u8), |_, (i, name, value, target)| {
        let mut b = bundle.clone();
        match target {
            0 => {
                let k = i % b.checkpoints.len();
                let mut v = serde_json::to_value(&b.checkpoints[k]).unwrap();
                v[name] = value.clone();
                if let Ok(c) = serde_json::from_value(v) {
                    b.checkpoints[k] = c;
                }
            }
            1 => {
                let k = i % b.entries.len();
                let mut v = serde_json::to_value(&b.entries[k]).unwrap();
                v[name] = value.clone();
                if let Ok(e) = serde_json::from_value(v) {
                    b.entries[k] = e;
                }
            }
            _ => {
                let mut p = proof.clone();
                p["checkpoint"][name] = value.clone();
                p["entry"][name] = value.clone();
                if let Ok(p) = serde_json::from_value::<EntryProof>(p) {
                    let _ = verifier.verify_proof(&p);
                }
            }
        }
        // With a retention horizon too: a period past it is counted apart, whatever its size says.
        for v in [verifier.clone(), verifier.clone().with_expired_before(Utc::now() - chrono::Duration::minutes(1))] {
            let summary = v.verify(&b);
            let _ = summary.to_string();
            for f in &summary.failures {
                let _ = f.to_string();
            }
        }
        Ok(())
    });
    // Sizes and totals at the edges of what JSON and u64 hold.
    for n in [0u64, 1 << 53, (1 << 53) + 1, 1 << 63, u64::MAX - 1, u64::MAX] {
        let mut b = bundle.clone();
        b.checkpoints[0].body.size = n;
        b.checkpoints[1].body.total = n;
        assert!(!verifier.verify(&b).is_valid());
        b.entries.truncate(1);
        let horizon = verifier.clone().with_expired_before(Utc::now() - chrono::Duration::minutes(1));
        assert!(!horizon.verify(&b).is_valid());
    }
}

#[test]
fn notes_vkeys_signatures_and_witness_requests_never_panic() {
    let (bundle, _, key) = sealed_trail();
    let note = bundle.checkpoints[1].note().unwrap();
    let dir = std::env::temp_dir().join(auditline_tests::unique_name("fuzz-witness"));
    let logs = vec![auditline::witness::TrustedLog { origin: "auditline.local/*".into(), public_key_der: key.clone() }];
    let witness = auditline::witness::Witness::open(
        auditline::integrity::note::Cosigner::generate("fuzz/w").unwrap(),
        logs,
        &dir,
    )
    .unwrap();
    let texts = prop_oneof![
        odd_text(),
        // A genuine note with one character replaced, inserted or cut.
        (any::<usize>(), any::<char>(), 0..3u8).prop_map(move |(at, c, how)| {
            let mut chars: Vec<char> = note.chars().collect();
            let at = at % chars.len();
            match how {
                0 => chars[at] = c,
                1 => chars.insert(at, c),
                _ => chars.truncate(at),
            }
            chars.into_iter().collect()
        }),
    ];
    fuzz((texts, proptest::collection::vec(any::<u8>(), 0..120), any::<u64>()), |_, (text, bytes, old)| {
        let _ = auditline::integrity::note::Note::parse(&text);
        let _ = auditline::integrity::checkpoint::CheckpointBody::from_note_text(&text);
        let _ = auditline::integrity::note::CosignerKey::parse_vkey(&text);
        let _ = auditline::integrity::note::SignatureLine::parse(&text);
        let _ = auditline::integrity::signing::parse_der(&bytes);
        let _ = auditline::integrity::signing::normalize_low_s(&bytes);
        let _ = auditline::integrity::signing::verify(key, &bytes, &bytes);
        let answer = witness.add_checkpoint(format!("old {old}\n\n{text}").as_bytes(), 1);
        prop_assert!(answer.status != 200 || text.contains('\u{2014}'), "cosigned without a signature: {text:?}");
        let _ = witness.add_checkpoint(text.as_bytes(), 1);
        let _ = witness.add_checkpoint(&bytes, 1);
        Ok(())
    });
}
