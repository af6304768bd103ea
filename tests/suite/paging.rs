//! Pages are bounded in bytes as well as in entries: a listing of entries near the maximum size
//! stays well under Lambda's 6 MB response limit on every list route, and paging by `next_token`
//! returns each entry exactly once.

use std::collections::HashSet;
use std::sync::Arc;

use auditline::apigw::http::Route;
use auditline::domain::query::PAGE_BYTE_BUDGET;
use auditline::domain::{AuditAction, EntityType, MAX_ENTRY_BYTES};
use auditline::idempotency::MemoryIdempotency;
use auditline_tests::http::{api_over, call, sample, with_query};
use auditline_tests::{Backend, fresh_store, new_entry, tenant};
use serde_json::json;

/// A Lambda response payload may be at most this many bytes.
const LAMBDA_RESPONSE_LIMIT: usize = 6 * 1024 * 1024;

auditline_tests::on_every_backend!(pages_of_maximum_size_entries_stay_under_the_response_limit);

async fn pages_of_maximum_size_entries_stay_under_the_response_limit(backend: Backend) {
    let store = fresh_store(backend).await;
    let api = api_over(store, Arc::new(MemoryIdempotency::new()));
    let acme = tenant("acme");
    // 30 entries just under the maximum size, full of characters that JSON escapes (twice, once
    // in the entry and once in the response's body string): 25 of them used to make one page.
    let filler = "q\"\\".repeat((MAX_ENTRY_BYTES - 4096) / 5);
    for i in 0..30 {
        let mut request = new_entry(&acme, AuditAction::Update, EntityType::File, "big", Some("p-big"), None);
        request.details.changes = Some(json!({ "blob": filler, "i": i }));
        api.logger.log(request).await.expect("a maximum-size entry is stored");
    }
    let routes = [
        (Route::ListLogs, "http-list-logs.json", None),
        (Route::EntityLogs, "http-entity-logs.json", Some(("entity_id", "big"))),
        (Route::ProjectLogs, "http-project-logs.json", Some(("project_id", "p-big"))),
    ];
    for (route, file, path) in routes {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let event = sample(file, |e| {
                e["requestContext"]["authorizer"]["lambda"]["tenant_id"] = json!("acme");
                if let Some((name, value)) = path {
                    e["pathParameters"] = json!({ name: value });
                }
                let mut query = vec![("limit", "1000")];
                if let Some(t) = &token {
                    query.push(("next_token", t.as_str()));
                }
                with_query(e, &query);
            });
            let reply = call(&api, route, &event).await;
            assert_eq!(reply.status, 200, "{route:?}: {}", reply.body);
            pages += 1;
            let entries = reply.body["entries"].as_array().unwrap();
            assert!(!entries.is_empty(), "{route:?}: every page carries at least one entry");
            assert!(reply.text.len() <= PAGE_BYTE_BUDGET + 4096, "{route:?}: a page of {} bytes", reply.text.len());
            // The body travels as a JSON string inside Lambda's response.
            let payload = serde_json::to_string(&reply.text).unwrap().len() + 1024;
            assert!(payload < LAMBDA_RESPONSE_LIMIT, "{route:?}: a response payload of {payload} bytes");
            seen.extend(entries.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
            match reply.body["next_token"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 30, "{route:?}: every entry once");
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 30, "{route:?}: no duplicates");
        assert!(pages >= 4, "{route:?}: 30 entries of ~250 KiB take several pages, not {pages}");
    }
}
