//! Store: in-memory write throughput and query latency at 100,000 entries, and DynamoDB requests
//! (and estimated capacity units) per logical operation, counted on the local DynamoDB API.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use auditline::domain::{AuditAction, AuditQuery, EntityType, EntryDetails, NewEntry, PageRequest, QueryScope};
use auditline::store::MemoryStore;
use auditline::store::dynamo::entry_item;
use auditline::{AuditLogger, AuditSettings, LogOutcome};
use auditline_tests::{fresh_dynamo_store, hours_ago, stepping_clock, tenant};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;

const ENTRIES: usize = 100_000;
use crate::{micros, time_calls};

/// A realistic entry: an update with a before/after diff of a few fields and some metadata.
pub(crate) fn typical(i: usize, tenant_name: &str) -> NewEntry {
    NewEntry {
        tenant_id: tenant(tenant_name),
        action: AuditAction::ALL[i % 6],
        entity_type: EntityType::ALL[i % 7],
        entity_id: format!("entity-{}", i % 1000),
        details: EntryDetails {
            project_id: Some(format!("project-{}", i % 50)),
            user_id: Some(format!("user-{}", i % 200)),
            changes: Some(json!({
                "before": {"name": "Quarterly report", "status": "draft", "owner": "user-12", "pages": 14},
                "after": {"name": "Quarterly report (final)", "status": "published", "owner": "user-12", "pages": 15},
            })),
            ip_address: Some("203.0.113.24".into()),
            metadata: Some(json!({"request_id": "4f1c2b7e-9d3a-4c55-8a51-2e7f0c9b1d23", "user_agent": "Mozilla/5.0"})),
        },
    }
}

pub async fn run(out: &mut String) {
    memory_section(out).await;
    out.push('\n');
    dynamo_section(out).await;
}

async fn memory_section(out: &mut String) {
    let store = Arc::new(MemoryStore::new());
    // One entry per second of simulated time: 100,000 entries span about 28 hours.
    let (clock, _) = stepping_clock(hours_ago(30), 1000);
    let logger = Arc::new(AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock));
    let requests: Vec<NewEntry> =
        (0..ENTRIES).map(|i| typical(i, if i % 10 == 0 { "globex" } else { "acme" })).collect();

    let started = Instant::now();
    let mut ids = Vec::with_capacity(ENTRIES);
    for request in requests {
        if let LogOutcome::Stored(e) = logger.log(request).await.expect("log") {
            ids.push(e.id);
        }
    }
    let elapsed = started.elapsed();
    let rate = ENTRIES as f64 / elapsed.as_secs_f64();

    // A second store, written by 4 tasks at once, for the contended figure.
    let shared = Arc::new(AuditLogger::new(Arc::new(MemoryStore::new()), AuditSettings::default()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let logger = shared.clone();
            tokio::spawn(async move {
                for i in 0..ENTRIES / 4 {
                    logger.log(typical(i * 4 + t, "acme")).await.expect("log");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let concurrent_rate = ENTRIES as f64 / started.elapsed().as_secs_f64();

    writeln!(out, "### In-memory store, {ENTRIES} entries (validation, stamping and indexing included)\n").unwrap();
    writeln!(out, "| operation | figure |\n|---|---|").unwrap();
    writeln!(out, "| write, 1 task | {rate:.0} entries/s ({} per entry) |", micros(elapsed / ENTRIES as u32)).unwrap();
    writeln!(out, "| write, 4 concurrent tasks | {concurrent_rate:.0} entries/s |").unwrap();

    let acme = tenant("acme");
    let page = |scope: QueryScope| AuditQuery { scope, filter: Default::default(), page: PageRequest::first(100) };
    let mut second_page = page(QueryScope::Tenant);
    second_page.page.next_token = logger.get_logs(&acme, &page(QueryScope::Tenant)).await.unwrap().next_token;
    let mut by_type = page(QueryScope::Tenant);
    by_type.filter.entity_type = Some(EntityType::Report);
    let mut residual = page(QueryScope::Project("project-8".into()));
    residual.filter.action = Some(AuditAction::Delete);
    let mut hour = page(QueryScope::Tenant);
    hour.filter.start_date = Some(hours_ago(20));
    hour.filter.end_date = Some(hours_ago(19));
    let mut deep_offset = page(QueryScope::Tenant);
    deep_offset.page.offset = 5_000;

    writeln!(out, "\n| query (page of 100 unless noted) | p50 | p99 |\n|---|---|---|").unwrap();
    let cases: Vec<(&str, AuditQuery)> = vec![
        ("tenant, first page", page(QueryScope::Tenant)),
        ("tenant, next page by cursor", second_page),
        ("tenant, offset 5,000", deep_offset),
        ("one entity (≈90 entries)", page(QueryScope::Entity("entity-42".into()))),
        ("one project", page(QueryScope::Project("project-8".into()))),
        ("tenant, entity_type=REPORT", by_type),
        ("project + action=DELETE (filter beyond the index)", residual),
        ("tenant, one-hour date range", hour),
    ];
    for (name, query) in cases {
        let (p50, p99) = time_calls(|_| {
            let (logger, acme, query) = (&logger, &acme, &query);
            async move {
                let page = logger.get_logs(acme, query).await.expect("query");
                assert!(!page.entries.is_empty(), "{name} returns entries");
            }
        })
        .await;
        writeln!(out, "| {name} | {} | {} |", micros(p50), micros(p99)).unwrap();
    }
    let (p50, p99) = time_calls(|i| {
        let (logger, acme, id) = (&logger, &acme, ids[(i * 7919) % ids.len()]);
        async move {
            let _ = logger.get_log(acme, id).await.expect("get");
        }
    })
    .await;
    writeln!(out, "| get by id | {} | {} |", micros(p50), micros(p99)).unwrap();
    let (p50, p99) = time_calls(|_| {
        let (logger, acme) = (&logger, &acme);
        async move {
            let stats = logger.get_stats(acme, None, None).await.expect("stats");
            assert_eq!(stats.total_entries, 90_000);
        }
    })
    .await;
    writeln!(out, "| stats, whole retention (≈28 hourly counters) | {} | {} |", micros(p50), micros(p99)).unwrap();
    assert_eq!(store.len(), ENTRIES);
}

/// DynamoDB's item size: attribute names plus values (numbers approximated as digits/2 + 1).
pub(crate) fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    fn value(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.len() / 2 + 1,
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::M(m) => 3 + m.iter().map(|(k, v)| k.len() + value(v) + 1).sum::<usize>(),
            AttributeValue::L(l) => 3 + l.iter().map(|v| value(v) + 1).sum::<usize>(),
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

async fn dynamo_section(out: &mut String) {
    let (store, requests) = fresh_dynamo_store(1).await;
    let (clock, _) = stepping_clock(hours_ago(3), 10_000);
    let logger = AuditLogger::with_clock(Arc::new(store), AuditSettings::default(), clock);
    let acme = tenant("acme");

    let mut sample = None;
    requests.reset();
    const WRITES: usize = 300;
    for i in 0..WRITES {
        let entry = logger.log(typical(i, "acme")).await.expect("log");
        sample.get_or_insert(entry.entry().cloned().expect("stored"));
    }
    let per_write = requests.get() as f64 / WRITES as f64;
    let sample = sample.expect("an entry");
    let size = item_size(&entry_item(&sample).expect("item"));
    let kb = size.div_ceil(1024);

    let count = |what: &str, n: u64| format!("| {what} | {n} |");
    writeln!(out, "### DynamoDB store: requests per logical operation (counted by an SDK interceptor)\n").unwrap();
    writeln!(out, "| operation | DynamoDB requests |\n|---|---|").unwrap();
    writeln!(out, "| write one entry (entry + hourly counter, one TransactWriteItems) | {per_write:.2} |").unwrap();

    requests.reset();
    logger.get_log(&acme, sample.id).await.unwrap().expect("found");
    writeln!(out, "{}", count("get by id (GetItem)", requests.get())).unwrap();
    for (name, scope, action, user) in [
        ("tenant, page of 100", QueryScope::Tenant, None, None),
        ("entity, page", QueryScope::Entity("entity-5".into()), None, None),
        ("project, page", QueryScope::Project("project-8".into()), None, None),
        ("tenant + action, page", QueryScope::Tenant, Some(AuditAction::Create), None),
        ("tenant + user_id, page", QueryScope::Tenant, None, Some("user-5".to_owned())),
    ] {
        let mut query = AuditQuery::new(scope);
        query.filter.action = action;
        query.filter.user_id = user;
        requests.reset();
        logger.get_logs(&acme, &query).await.expect("query");
        writeln!(out, "{}", count(name, requests.get())).unwrap();
    }
    let mut query = AuditQuery::new(QueryScope::Tenant);
    let first = logger.get_logs(&acme, &query).await.expect("query");
    query.page.next_token = first.next_token;
    requests.reset();
    logger.get_logs(&acme, &query).await.expect("query");
    writeln!(out, "{}", count("tenant, next page by cursor", requests.get())).unwrap();
    let mut residual = AuditQuery::new(QueryScope::Project("project-8".into()));
    residual.filter.action = Some(AuditAction::Delete);
    requests.reset();
    logger.get_logs(&acme, &residual).await.expect("query");
    writeln!(out, "{}", count("project + action (filter beyond the index)", requests.get())).unwrap();
    requests.reset();
    let stats = logger.get_stats(&acme, None, None).await.expect("stats");
    assert_eq!(stats.total_entries, WRITES as u64);
    writeln!(out, "{}", count("stats (one Query over the hourly counters)", requests.get())).unwrap();

    let page_rcu = (100 * size).div_ceil(4096) as f64 / 2.0;
    writeln!(out, "\nEstimated capacity for the typical entry above ({size} bytes as stored):\n").unwrap();
    writeln!(
        out,
        "- write: {} WCU = 2 × {kb} (transactional put) + 2 × 1 (transactional counter update) + 5 × {kb} (GSIs)",
        2 * kb + 2 + 5 * kb
    )
    .unwrap();
    writeln!(out, "- page of 100 (eventually consistent Query): {page_rcu} RCU").unwrap();
    writeln!(out, "- get by id (strongly consistent GetItem): {} RCU", size.div_ceil(4096)).unwrap();
    writeln!(out, "- stats over 90 days of one counter shard: 2,160 items × ~150 B ≈ 40 RCU (eventually consistent)")
        .unwrap();
}
