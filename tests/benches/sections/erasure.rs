//! Erasure of one subject across 10,000 entries (issue 27): `user_id` and `ip_address` erased from
//! every entry of one user among 12,000, through the logger's subject erasure (the user index, a
//! page of 100 per erasure record, 8 updates at a time) — time, records, and on the local DynamoDB
//! API the requests it took.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditline::domain::{AuditLogEntry, TenantId};
use auditline::erasure::ErasureRequest;
use auditline::logger::Actor;
use auditline::retention::{MemoryPolicies, PolicyStore};
use auditline::store::{AuditStore, MemoryStore};
use auditline::{AuditLogger, AuditSettings};
use auditline_tests::{fresh_dynamo_store, fresh_sqlite_store, hours_ago, tenant};

use super::store::typical;

const SUBJECT_ENTRIES: usize = 10_000;
/// Entries of other users in the same tenant, interleaved.
const OTHERS: usize = 2_000;
const SUBJECT: &str = "subject-1";

/// The tenant's 12,000 entries over the last ten hours, one in six of another user.
fn entries(t: &TenantId) -> Vec<AuditLogEntry> {
    let start = hours_ago(10);
    let step = 10 * 3_600_000 / (SUBJECT_ENTRIES + OTHERS) as i64;
    (0..SUBJECT_ENTRIES + OTHERS)
        .map(|i| {
            let mut request = typical(i, t.as_str());
            if i % 6 != 5 {
                request.details.user_id = Some(SUBJECT.into());
            }
            let at = start + chrono::Duration::milliseconds(step * i as i64);
            request.validate().unwrap().stamp(at, 90).unwrap()
        })
        .collect()
}

struct Figures {
    erased: usize,
    records: usize,
    calls: usize,
    time: Duration,
}

async fn erase(logger: &AuditLogger, t: &TenantId) -> Figures {
    let request = ErasureRequest { fields: vec!["user_id".into(), "ip_address".into()], reason: "GDPR art. 17".into() };
    let dpo = Actor { user_id: Some("dpo".into()), ip_address: None };
    let started = Instant::now();
    let (mut token, mut erased, mut records, mut calls) = (None, 0, 0, 0);
    loop {
        // The route's budget: 20 s a call, then it answers with where to go on from.
        let p = logger.erase_subject(t, SUBJECT, &request, &dpo, token, Duration::from_secs(20)).await.unwrap();
        erased += p.erased;
        records += p.records.len();
        calls += 1;
        match p.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    Figures { erased, records, calls, time: started.elapsed() }
}

async fn loaded(store: Arc<dyn AuditStore>, entries: &[AuditLogEntry]) {
    for chunk in entries.chunks(100) {
        assert!(store.put_all(chunk).await.iter().all(Result::is_ok));
    }
}

pub async fn run(out: &mut String) {
    let t = tenant("acme");
    let all = entries(&t);
    let subject = all.iter().filter(|e| e.user_id.as_deref() == Some(SUBJECT)).count();
    assert_eq!(subject, SUBJECT_ENTRIES);
    writeln!(
        out,
        "### Erasure of one subject: `user_id` and `ip_address` from {SUBJECT_ENTRIES} entries (of {})\n",
        all.len()
    )
    .unwrap();
    writeln!(out, "| store | entries erased | erasure records | calls (20 s each at most) | time | per entry | DynamoDB requests |").unwrap();
    writeln!(out, "|---|---|---|---|---|---|---|").unwrap();
    let row = |out: &mut String, name: &str, f: &Figures, requests: String| {
        let per = f.time.as_secs_f64() * 1e6 / f.erased.max(1) as f64;
        writeln!(
            out,
            "| {name} | {} | {} | {} | {:.2} s | {per:.0} µs | {requests} |",
            f.erased,
            f.records,
            f.calls,
            f.time.as_secs_f64()
        )
        .unwrap();
    };

    let memory = Arc::new(MemoryStore::new());
    loaded(memory.clone(), &all).await;
    let logger = AuditLogger::new(memory, AuditSettings::default()).with_policies(Arc::new(MemoryPolicies::default()));
    let f = erase(&logger, &t).await;
    assert_eq!(f.erased, SUBJECT_ENTRIES);
    row(out, "in memory", &f, "—".into());

    let sqlite = Arc::new(fresh_sqlite_store());
    loaded(sqlite.clone(), &all).await;
    let policies: Arc<dyn PolicyStore> = sqlite.clone();
    let logger = AuditLogger::new(sqlite, AuditSettings::default()).with_policies(policies);
    let f = erase(&logger, &t).await;
    assert_eq!(f.erased, SUBJECT_ENTRIES);
    row(out, "SQLite (the local gateway's file)", &f, "—".into());

    let (dynamo, requests) = fresh_dynamo_store(1).await;
    super::integrity::load(dynamo.client(), dynamo.entries_table(), &all).await;
    let dynamo = Arc::new(dynamo);
    let logger = AuditLogger::new(dynamo.clone(), AuditSettings::default())
        .with_cached_policies(dynamo, auditline::logger::POLICY_CACHE);
    requests.reset();
    let f = erase(&logger, &t).await;
    assert_eq!(f.erased, SUBJECT_ENTRIES);
    let n = requests.get();
    let detail =
        format!("{n} ({:.2} per entry: a query and a record per 100, an UpdateItem each)", n as f64 / f.erased as f64);
    row(out, "DynamoDB API (moto, loopback)", &f, detail);
    writeln!(
        out,
        "\nThe DynamoDB time is moto's (one Python process answering on loopback), not DynamoDB's; the requests are what a deployment sends."
    )
    .unwrap();
}
