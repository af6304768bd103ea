//! `GET /audit/export` on both stores: every entry of a filtered set comes back exactly once across
//! byte-bounded pages in each format; CSV parses back (with a real CSV reader) to the same values,
//! formula-like cells neutralised; OCSF lines carry every attribute the class requires; and each
//! export leaves exactly one VIEW entry naming its filters and count.

use std::collections::HashMap;
use std::sync::Arc;

use auditline::apigw::http::access::ACCESS_ENTITY;
use auditline::apigw::http::export::{ENTRY_COUNT_HEADER, NEXT_TOKEN_HEADER};
use auditline::apigw::http::{AuditApi, Route};
use auditline::domain::query::PAGE_BYTE_BUDGET;
use auditline::domain::{AuditAction, AuditLogEntry, EntityType, MAX_ENTRY_BYTES};
use auditline::export::{CSV_COLUMNS, activity_id};
use auditline::idempotency::MemoryIdempotency;
use auditline::store::AuditStore;
use auditline_tests::http::{Reply, api_over, call, sample, with_query};
use auditline_tests::{Backend, all_entries, fresh_store, new_entry, tenant};
use serde_json::{Value, json};
use uuid::Uuid;

auditline_tests::on_every_backend!(
    every_format_returns_each_entry_once_across_pages,
    an_export_is_itself_on_the_record_once,
);

/// 24 small entries with awkward values and 12 of nearly the maximum size, all FILEs of acme; and
/// entries the filter or the tenant leave out.
async fn seed(api: &AuditApi) -> Vec<AuditLogEntry> {
    let acme = tenant("acme");
    let awkward = ["-1+2", "@SUM", "plain", "with.dots", "ünïcödé-名前", "a:b@c"];
    let mut stored = Vec::new();
    for i in 0..36 {
        let id = format!("{}-{i}", awkward[i % awkward.len()]);
        let mut request =
            new_entry(&acme, AuditAction::ALL[i % 6], EntityType::File, &id, Some("-project"), Some("@user"));
        request.details.metadata = Some(json!({ "note": "comma, \"quote\"\nnew line =HYPERLINK(\"x\") ✓", "i": i }));
        request.details.changes = Some(if i % 3 == 0 {
            json!({ "blob": "x\",".repeat((MAX_ENTRY_BYTES - 8192) / 4) })
        } else {
            json!({ "before": { "n": i }, "after": { "n": i + 1, "tags": ["a,b", "=1+1"] } })
        });
        if i % 5 == 0 {
            request.details.ip_address = None;
            request.details.user_id = None;
        }
        stored.push(api.logger.log(request).await.expect("stored").entry().cloned().unwrap());
    }
    for (t, entity_type) in [("acme", EntityType::Report), ("globex", EntityType::File)] {
        let request = new_entry(&tenant(t), AuditAction::Create, entity_type, "other", None, None);
        api.logger.log(request).await.expect("stored");
    }
    stored
}

fn export_event(query: &[(&str, &str)]) -> Value {
    sample("http-export.json", |e| with_query(e, query))
}

/// Every page of one export; checks each page's bounds and headers on the way.
async fn export_all(api: &AuditApi, format: &str) -> Vec<Reply> {
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut query = vec![("format", format), ("entity_type", "FILE")];
        if let Some(t) = &token {
            query.push(("next_token", t));
        }
        let reply = call(api, Route::Export, &export_event(&query)).await;
        assert_eq!(reply.status, 200, "{format}: {}", reply.text);
        assert!(reply.text.len() <= PAGE_BYTE_BUDGET, "{format}: a page of {} bytes", reply.text.len());
        let count: usize = reply.header(ENTRY_COUNT_HEADER).unwrap().parse().unwrap();
        assert!(count >= 1, "{format}: every page carries an entry");
        token = reply.header(NEXT_TOKEN_HEADER).map(str::to_owned);
        pages.push(reply);
        if token.is_none() {
            return pages;
        }
    }
}

/// A CSV cell read back: the apostrophe the export put before a formula-like value removed.
fn cell(text: &str) -> &str {
    match text.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => text,
    }
}

async fn every_format_returns_each_entry_once_across_pages(backend: Backend) {
    let store: Arc<dyn AuditStore> = fresh_store(backend).await;
    let api = api_over(store, Arc::new(MemoryIdempotency::new()));
    let stored = seed(&api).await;
    let expected: HashMap<Uuid, &AuditLogEntry> = stored.iter().map(|e| (e.id, e)).collect();

    // JSON lines: the API's entry shape, each entry once, newest first.
    let pages = export_all(&api, "jsonl").await;
    assert!(pages.len() >= 2, "12 entries of ~250 KiB (3 MB) take more than one page, not {}", pages.len());
    let lines: Vec<AuditLogEntry> = pages
        .iter()
        .flat_map(|p| p.text.lines().map(|l| serde_json::from_str(l).expect("an entry per line")).collect::<Vec<_>>())
        .collect();
    assert_eq!(lines.len(), 36);
    for e in &lines {
        assert_eq!(expected.get(&e.id), Some(&e), "exported as stored");
    }
    assert!(lines.windows(2).all(|w| w[0].id > w[1].id), "newest first, no duplicates");

    // CSV: the pages concatenate into one file with one header; a CSV reader gets the values back.
    let pages = export_all(&api, "csv").await;
    assert_eq!(pages[0].header("content-type"), Some("text/csv; charset=utf-8; header=present"));
    let file: String = pages.iter().map(|p| p.text.as_str()).collect();
    let mut reader = csv::Reader::from_reader(file.as_bytes());
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), CSV_COLUMNS);
    let mut rows = 0;
    for record in reader.records() {
        let record = record.expect("RFC 4180");
        let field = |name: &str| cell(&record[CSV_COLUMNS.iter().position(|c| *c == name).unwrap()]).to_owned();
        let e = expected[&field("id").parse::<Uuid>().unwrap()];
        assert_eq!(field("entity_id"), e.entity_id);
        assert_eq!(field("project_id"), e.project_id.clone().unwrap_or_default());
        assert_eq!(field("user_id"), e.user_id.clone().unwrap_or_default());
        assert_eq!(field("ip_address"), e.ip_address.map(|ip| ip.to_string()).unwrap_or_default());
        assert_eq!(field("action"), e.action.as_str());
        let json = |text: String| serde_json::from_str::<Value>(&text).unwrap();
        assert_eq!(json(field("changes")), Value::Object(e.changes.clone().unwrap()));
        assert_eq!(json(field("metadata")), Value::Object(e.metadata.clone().unwrap()));
        assert_eq!(field("leaf_hash"), e.integrity.leaf_hash.to_string());
        rows += 1;
    }
    assert_eq!(rows, 36);
    assert!(file.contains("\r\n'-1+2-0,") || file.contains(",'-1+2-0,"), "a formula-like cell is neutralised");
    assert!(file.contains(",'@user,") && file.contains(",'-project,"));

    // OCSF: API Activity events with every attribute the class requires.
    let pages = export_all(&api, "ocsf").await;
    let events: Vec<Value> =
        pages.iter().flat_map(|p| p.text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap())).collect();
    assert_eq!(events.len(), 36);
    for event in &events {
        let e = expected[&event["metadata"]["uid"].as_str().unwrap().parse::<Uuid>().unwrap()];
        assert_ocsf_api_activity(event);
        assert_eq!(event["activity_id"], activity_id(e.action));
        assert_eq!(event["type_uid"], 600_300 + activity_id(e.action));
        assert_eq!(event["time"], e.timestamp.timestamp_millis());
        assert_eq!(event["metadata"]["tenant_uid"], "acme");
        assert_eq!(event["resources"][0]["uid"], e.entity_id.as_str());
        assert_eq!(event["resources"][0]["type"], "FILE");
        match &e.user_id {
            Some(user) => assert_eq!(event["actor"]["user"]["uid"], user.as_str()),
            None => assert!(event["actor"].as_object().is_some_and(|a| !a.is_empty())),
        }
        if let Some(ip) = e.ip_address {
            assert_eq!(event["src_endpoint"]["ip"], ip.to_string());
        }
        if matches!(e.action, AuditAction::Link | AuditAction::Unlink) {
            assert_eq!(event["unmapped"]["action"], e.action.as_str(), "the action named where OCSF has none");
        }
    }
}

/// The attributes OCSF 1.3 marks required for API Activity (its own: actor, api, src_endpoint;
/// the base event's: activity_id, category_uid, class_uid, metadata, severity_id, time, type_uid),
/// and the required attributes of the objects they hold.
fn assert_ocsf_api_activity(event: &Value) {
    for name in ["activity_id", "category_uid", "class_uid", "severity_id", "time", "type_uid"] {
        assert!(event[name].is_u64(), "{name} is an integer: {event}");
    }
    assert_eq!((event["class_uid"].as_u64(), event["category_uid"].as_u64()), (Some(6003), Some(6)));
    assert_eq!(
        event["type_uid"].as_u64(),
        Some(event["class_uid"].as_u64().unwrap() * 100 + event["activity_id"].as_u64().unwrap())
    );
    assert!([1, 2, 3, 4, 99].contains(&event["activity_id"].as_u64().unwrap()));
    assert!(event["metadata"]["version"].as_str().is_some_and(|v| v.starts_with("1.")), "metadata.version");
    assert!(event["metadata"]["product"]["vendor_name"].is_string(), "metadata.product.vendor_name");
    assert!(event["api"]["operation"].is_string(), "api.operation");
    let actor = event["actor"].as_object().expect("actor");
    assert!(
        ["user", "app_name", "process", "session"].iter().any(|k| actor.contains_key(*k)),
        "actor holds at least one of its attributes"
    );
    let src = event["src_endpoint"].as_object().expect("src_endpoint");
    assert!(["ip", "name", "hostname", "uid"].iter().any(|k| src.contains_key(*k)), "src_endpoint names the source");
}

async fn an_export_is_itself_on_the_record_once(backend: Backend) {
    let store: Arc<dyn AuditStore> = fresh_store(backend).await;
    let api = api_over(store.clone(), Arc::new(MemoryIdempotency::new()));
    seed(&api).await;
    let pages = export_all(&api, "csv").await;
    assert!(pages.len() > 1);
    let (entity_type, entity_id) = ACCESS_ENTITY;
    let views: Vec<AuditLogEntry> = all_entries(store.clone(), &tenant("acme"))
        .await
        .into_iter()
        .filter(|e| e.action == AuditAction::View && e.entity_type == entity_type && e.entity_id == entity_id)
        .collect();
    assert_eq!(views.len(), 1, "one VIEW entry for one export of {} pages", pages.len());
    let view = &views[0];
    assert_eq!(view.user_id.as_deref(), Some("user-789"), "who");
    assert_eq!(view.ip_address.map(|ip| ip.to_string()).as_deref(), Some("203.0.113.24"), "from where");
    let metadata = Value::Object(view.metadata.clone().unwrap());
    assert_eq!(metadata["operation"], "export");
    assert_eq!(metadata["format"], "csv");
    assert_eq!(metadata["filters"], json!({ "entity_type": "FILE" }));
    let first_count: u64 = pages[0].header(ENTRY_COUNT_HEADER).unwrap().parse().unwrap();
    assert_eq!((metadata["entries_returned"].as_u64(), &metadata["complete"]), (Some(first_count), &json!(false)));

    // A bad format or a bad date is named, and records nothing.
    for (query, parameter) in [
        (vec![("format", "xml")], "format"),
        (vec![("entity_id", "a"), ("start_date", "yesterday")], "start_date"),
        (vec![("limit", "5")], "limit"),
    ] {
        let reply = call(&api, Route::Export, &export_event(&query)).await;
        assert_eq!((reply.status, reply.body["error"]["parameter"].as_str()), (400, Some(parameter)), "{}", reply.text);
    }
    let after = all_entries(store, &tenant("acme")).await;
    assert_eq!(after.iter().filter(|e| e.entity_id == entity_id).count(), 1, "refused exports record nothing");
}
