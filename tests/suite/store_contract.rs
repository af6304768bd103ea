//! The contract every store must meet, run on both: the in-memory store and the DynamoDB store
//! against the local DynamoDB-API server. Results are checked against an oracle computed in the
//! test from the entries it logged.

use std::collections::HashSet;
use std::sync::Arc;

use auditline::domain::{
    AuditAction, AuditFilter, AuditLogEntry, AuditQuery, Counts, EntityType, EntryDetails, HourBucket, PageRequest,
    QueryScope, StatsBucket, TenantId, ValidationError,
};
use auditline::store::{AuditStore, StoreError};
use auditline::{AuditError, AuditLogger, AuditSettings, LogOutcome};
use auditline_tests::{Backend, fixed_clock, fresh_store, hours_ago, new_entry, stepping_clock, tenant};
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::json;
use uuid::Uuid;

auditline_tests::on_every_backend!(
    round_trip_keeps_every_field,
    entries_are_immutable,
    every_query_path_and_filter_matches_the_oracle,
    logger_query_methods_match_the_oracle,
    pages_by_cursor_and_by_offset_cover_everything_once,
    filtered_pages_by_cursor_cover_everything_once,
    date_range_edges_are_inclusive_to_the_millisecond,
    retention_sets_expiry_and_hides_expired_entries,
    tenants_never_see_each_other,
    stats_equal_the_truth,
    invalid_entries_are_rejected_by_field_and_nothing_is_written,
    disabled_logging_stores_nothing,
    concurrent_logging_loses_nothing,
    a_batch_answers_for_each_entry_and_a_retried_batch_stores_nothing_twice,
    an_erasure_keeps_the_leaf_leaves_its_record_and_is_the_only_change,
    retention_per_tenant_and_legal_holds_set_expiry_and_holds_refuse_erasure,
    a_subjects_erasure_reaches_every_entry_a_page_per_record_and_goes_on_from_its_token,
    archived_copies_are_sealed_and_an_erasure_shreds_them_even_before_they_are_archived,
    a_holds_sweep_stopped_at_its_budget_goes_on_from_its_token,
    an_entitys_entries_narrow_to_a_project,
);

fn logger(store: Arc<dyn AuditStore>, start: DateTime<Utc>, step_ms: i64) -> AuditLogger {
    let (clock, _) = stepping_clock(start, step_ms);
    AuditLogger::with_clock(store, AuditSettings::default(), clock)
}

fn stored(outcome: Result<LogOutcome, AuditError>) -> AuditLogEntry {
    match outcome.expect("log succeeds") {
        LogOutcome::Stored(e) => e,
        LogOutcome::Disabled => panic!("logging is enabled"),
    }
}

fn ids(entries: &[AuditLogEntry]) -> Vec<Uuid> {
    entries.iter().map(|e| e.id).collect()
}

fn everything(scope: QueryScope, filter: AuditFilter) -> AuditQuery {
    AuditQuery { scope, filter, page: PageRequest::first(1000) }
}

/// What a query must return: the matching entries of one tenant, newest first.
fn oracle(all: &[AuditLogEntry], tenant: &TenantId, scope: &QueryScope, f: &AuditFilter) -> Vec<Uuid> {
    let mut matching: Vec<&AuditLogEntry> = all
        .iter()
        .filter(|e| &e.tenant_id == tenant)
        .filter(|e| match scope {
            QueryScope::Tenant => true,
            QueryScope::Entity(id) => &e.entity_id == id,
            QueryScope::Project(id) => e.project_id.as_ref() == Some(id),
        })
        .filter(|e| f.action.is_none_or(|a| e.action == a))
        .filter(|e| f.entity_type.is_none_or(|t| e.entity_type == t))
        .filter(|e| f.user_id.is_none() || e.user_id == f.user_id)
        .filter(|e| f.start_date.is_none_or(|s| e.timestamp >= s))
        .filter(|e| f.end_date.is_none_or(|end| e.timestamp <= end))
        .filter(|e| f.project_id.is_none() || e.project_id == f.project_id)
        .collect();
    matching.sort_by_key(|e| std::cmp::Reverse(e.id));
    matching.into_iter().map(|e| e.id).collect()
}

/// 72 entries over two tenants, several entities, projects and users, every action and type,
/// seven minutes apart (so they span several hour buckets).
async fn dataset(backend: Backend) -> (AuditLogger, Vec<AuditLogEntry>) {
    let logger = logger(fresh_store(backend).await, hours_ago(30), 7 * 60_000);
    let (a, b) = (tenant("acme"), tenant("globex"));
    let mut all = Vec::new();
    for i in 0..72usize {
        let t = if i % 5 == 0 { &b } else { &a };
        let project = format!("project-{}", i % 2);
        let user = format!("user-{}", i % 3);
        let request = new_entry(
            t,
            AuditAction::ALL[i % 6],
            EntityType::ALL[i % 7],
            &format!("entity-{}", i % 4),
            (i % 3 != 0).then_some(project.as_str()),
            (i % 4 != 3).then_some(user.as_str()),
        );
        all.push(stored(logger.log(request).await));
    }
    (logger, all)
}

async fn round_trip_keeps_every_field(backend: Backend) {
    let logger = logger(fresh_store(backend).await, hours_ago(1), 1);
    let t = tenant("acme");
    let details = EntryDetails {
        project_id: Some("project-456".into()),
        user_id: Some("user-789".into()),
        changes: Some(json!({
            "before": {"name": "Old Name", "tags": ["a", "b"], "count": 3, "ratio": 0.25, "active": false},
            "after": {"name": "Ñew Ñame ✓", "tags": [], "count": -7, "ratio": 1.5e10, "huge": 1e300, "big": 9007199254740992u64, "pow": 9223372036854775808u64, "active": true, "gone": null},
        })),
        ip_address: Some("2001:db8::1".into()),
        metadata: Some(json!({"request_id": "req-1", "nested": {"depth": [1, {"two": 2}]}})),
    };
    let entry = stored(logger.log_update(&t, EntityType::Entity, "entity-123", details).await);
    assert_eq!(entry.action, AuditAction::Update);
    assert_eq!(entry.ip_address, Some("2001:db8::1".parse().unwrap()));

    let fetched = logger.get_log(&t, entry.id).await.unwrap().expect("stored entry is found");
    assert_eq!(fetched, entry);
    assert_eq!(fetched.verify_leaf(), Ok(vec![]), "what is read back still matches its leaf");
    let listed = logger.get_logs(&t, &AuditQuery::new(QueryScope::Tenant)).await.unwrap();
    assert_eq!(listed.entries, vec![entry.clone()]);
    // The JSON shape is the seed's, plus tenant_id, expires_at and integrity.
    let json = serde_json::to_value(&fetched).unwrap();
    let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "action",
            "changes",
            "entity_id",
            "entity_type",
            "expires_at",
            "id",
            "integrity",
            "ip_address",
            "metadata",
            "project_id",
            "tenant_id",
            "timestamp",
            "user_id"
        ]
    );
}

async fn entries_are_immutable(backend: Backend) {
    let store = fresh_store(backend).await;
    let logger = logger(store.clone(), hours_ago(1), 1);
    let t = tenant("acme");
    let original = stored(logger.log(new_entry(&t, AuditAction::Create, EntityType::File, "f-1", None, None)).await);

    let mut forged = original.clone();
    forged.entity_id = "something-else".into();
    forged.action = AuditAction::Delete;
    match store.put(&forged).await {
        Err(StoreError::AlreadyExists(id)) => assert_eq!(id, original.id),
        other => panic!("a second put with the same id must be rejected, got {other:?}"),
    }
    assert!(matches!(store.put(&original).await, Err(StoreError::AlreadyExists(_))));
    assert_eq!(logger.get_log(&t, original.id).await.unwrap(), Some(original.clone()));
    let stats = logger.get_stats(&t, None, None).await.unwrap();
    assert_eq!(stats.total_entries, 1, "rejected puts are not counted");
    assert_eq!(stats.by_action[&AuditAction::Delete], 0);
}

async fn every_query_path_and_filter_matches_the_oracle(backend: Backend) {
    let (logger, all) = dataset(backend).await;
    let acme = tenant("acme");
    let (early, late) = (all[20].timestamp, all[50].timestamp);
    let filters = [
        AuditFilter::default(),
        AuditFilter { action: Some(AuditAction::Delete), ..Default::default() },
        AuditFilter { entity_type: Some(EntityType::Report), ..Default::default() },
        AuditFilter { user_id: Some("user-1".into()), ..Default::default() },
        AuditFilter { action: Some(AuditAction::Create), entity_type: Some(EntityType::Project), ..Default::default() },
        AuditFilter { action: Some(AuditAction::Link), user_id: Some("user-2".into()), ..Default::default() },
        AuditFilter { start_date: Some(early), ..Default::default() },
        AuditFilter { end_date: Some(late), ..Default::default() },
        AuditFilter { start_date: Some(early), end_date: Some(late), ..Default::default() },
        AuditFilter {
            action: Some(AuditAction::View),
            entity_type: Some(EntityType::Schedule),
            user_id: Some("user-0".into()),
            start_date: Some(early),
            end_date: Some(late),
            project_id: None,
        },
        AuditFilter { user_id: Some("nobody".into()), ..Default::default() },
        AuditFilter { project_id: Some("project-1".into()), ..Default::default() },
        AuditFilter { project_id: Some("project-0".into()), action: Some(AuditAction::Create), ..Default::default() },
    ];
    let scopes = [
        QueryScope::Tenant,
        QueryScope::Entity("entity-1".into()),
        QueryScope::Project("project-0".into()),
        QueryScope::Entity("no-such-entity".into()),
    ];
    let mut non_empty = 0;
    for scope in &scopes {
        for filter in &filters {
            let page = logger.get_logs(&acme, &everything(scope.clone(), filter.clone())).await.unwrap();
            let want = oracle(&all, &acme, scope, filter);
            assert_eq!(ids(&page.entries), want, "scope {scope:?}, filter {filter:?}");
            assert!(page.entries.windows(2).all(|w| w[0].timestamp >= w[1].timestamp), "newest first");
            assert_eq!(page.next_token, None);
            non_empty += usize::from(!want.is_empty());
        }
    }
    assert!(non_empty >= 20, "the dataset exercises most combinations ({non_empty})");
}

async fn logger_query_methods_match_the_oracle(backend: Backend) {
    let (logger, all) = dataset(backend).await;
    let acme = tenant("acme");
    let page = || PageRequest::first(1000);
    let by = |scope: QueryScope, filter: AuditFilter| oracle(&all, &acme, &scope, &filter);

    let got = logger.get_logs_by_entity(&acme, "entity-2", page()).await.unwrap();
    assert_eq!(ids(&got.entries), by(QueryScope::Entity("entity-2".into()), AuditFilter::default()));
    let got = logger.get_logs_by_project(&acme, "project-1", page()).await.unwrap();
    assert_eq!(ids(&got.entries), by(QueryScope::Project("project-1".into()), AuditFilter::default()));
    let got = logger.get_logs_by_action(&acme, AuditAction::Unlink, page()).await.unwrap();
    let want = by(QueryScope::Tenant, AuditFilter { action: Some(AuditAction::Unlink), ..Default::default() });
    assert_eq!(ids(&got.entries), want);
    let got = logger.get_logs_by_user(&acme, "user-0", page()).await.unwrap();
    let want = by(QueryScope::Tenant, AuditFilter { user_id: Some("user-0".into()), ..Default::default() });
    assert_eq!(ids(&got.entries), want);
    let (start, end) = (all[10].timestamp, all[40].timestamp);
    let got = logger.get_logs_by_date_range(&acme, start, end, page()).await.unwrap();
    let want =
        by(QueryScope::Tenant, AuditFilter { start_date: Some(start), end_date: Some(end), ..Default::default() });
    assert_eq!(ids(&got.entries), want);
    assert!(!want.is_empty());
}

async fn collect_by_cursor(logger: &AuditLogger, t: &TenantId, mut query: AuditQuery) -> (Vec<Uuid>, usize) {
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = logger.get_logs(t, &query).await.unwrap();
        pages += 1;
        assert!(page.entries.len() <= query.page.limit);
        seen.extend(ids(&page.entries));
        match page.next_token {
            Some(token) => query.page.next_token = Some(token),
            None => return (seen, pages),
        }
        assert!(pages < 1000, "paging must end");
    }
}

async fn pages_by_cursor_and_by_offset_cover_everything_once(backend: Backend) {
    let logger = logger(fresh_store(backend).await, hours_ago(5), 1000);
    let t = tenant("acme");
    let mut all = Vec::new();
    for i in 0..250 {
        let request = new_entry(&t, AuditAction::View, EntityType::Report, &format!("r-{}", i % 10), None, None);
        all.push(stored(logger.log(request).await));
    }
    let want = oracle(&all, &t, &QueryScope::Tenant, &AuditFilter::default());

    let mut query = AuditQuery::new(QueryScope::Tenant);
    query.page.limit = 37;
    let (by_cursor, pages) = collect_by_cursor(&logger, &t, query.clone()).await;
    assert_eq!(by_cursor, want, "cursor pages: no gap, no duplicate, newest first");
    assert_eq!(pages, 250usize.div_ceil(37));

    let mut by_offset = Vec::new();
    for offset in (0..260).step_by(37) {
        query.page.offset = offset;
        let page = logger.get_logs(&t, &query).await.unwrap();
        by_offset.extend(ids(&page.entries));
    }
    assert_eq!(by_offset, want, "offset pages: no gap, no duplicate");

    // An offset on the first page, then the cursor.
    query.page.offset = 100;
    let (rest, _) = collect_by_cursor(&logger, &t, query).await;
    assert_eq!(rest, want[100..]);
}

async fn filtered_pages_by_cursor_cover_everything_once(backend: Backend) {
    let logger = logger(fresh_store(backend).await, hours_ago(5), 500);
    let t = tenant("acme");
    let mut all = Vec::new();
    for i in 0..260usize {
        let request = new_entry(
            &t,
            AuditAction::ALL[i % 6],
            EntityType::ALL[i % 7],
            &format!("e-{}", i % 2),
            Some("p"),
            Some(["ann", "bob", "cy"][i % 3]),
        );
        all.push(stored(logger.log(request).await));
    }
    for (scope, filter) in [
        (QueryScope::Entity("e-1".into()), AuditFilter { action: Some(AuditAction::Update), ..Default::default() }),
        (QueryScope::Tenant, AuditFilter { user_id: Some("bob".into()), ..Default::default() }),
        (
            QueryScope::Project("p".into()),
            AuditFilter {
                entity_type: Some(EntityType::File),
                start_date: Some(all[30].timestamp),
                ..Default::default()
            },
        ),
    ] {
        let want = oracle(&all, &t, &scope, &filter);
        let query = AuditQuery { scope, filter, page: PageRequest::first(7) };
        let (got, _) = collect_by_cursor(&logger, &t, query).await;
        assert_eq!(got, want);
        assert!(want.len() > 7);
    }
}

async fn date_range_edges_are_inclusive_to_the_millisecond(backend: Backend) {
    let t0: DateTime<Utc> = DateTime::from_timestamp_millis(hours_ago(2).timestamp_millis()).unwrap();
    let logger = logger(fresh_store(backend).await, t0, 1);
    let t = tenant("acme");
    let mut all = Vec::new();
    for i in 0..5 {
        // The clock is also read by nothing else here, so entry i is stamped at t0 + i ms.
        all.push(stored(logger.log(new_entry(&t, AuditAction::Create, EntityType::Entity, "e", None, None)).await));
        assert_eq!(all[i].timestamp, t0 + Duration::milliseconds(i as i64));
    }
    let ms = |n: i64| t0 + Duration::milliseconds(n);
    let us = |n: i64| t0 + Duration::microseconds(n);
    for (start, end, want) in [
        (ms(1), ms(3), vec![3, 2, 1]),
        (ms(2), ms(2), vec![2]),
        (us(1500), ms(3), vec![3, 2]),
        (ms(1), us(3999), vec![3, 2, 1]),
        (us(1), us(999), vec![]),
        (ms(4), ms(100), vec![4]),
    ] {
        let filter = AuditFilter { start_date: Some(start), end_date: Some(end), ..Default::default() };
        let page = logger.get_logs(&t, &everything(QueryScope::Tenant, filter)).await.unwrap();
        let want: Vec<Uuid> = want.into_iter().map(|i: usize| all[i].id).collect();
        assert_eq!(ids(&page.entries), want, "{start} ..= {end}");
    }
}

async fn retention_sets_expiry_and_hides_expired_entries(backend: Backend) {
    let store = fresh_store(backend).await;
    let t = tenant("acme");
    let thirty_days = AuditSettings { enabled: true, retention_days: 30 };
    let now = AuditLogger::with_clock(store.clone(), thirty_days, stepping_clock(hours_ago(1), 1).0);
    let fresh = stored(now.log(new_entry(&t, AuditAction::Create, EntityType::File, "kept", None, None)).await);
    assert_eq!(fresh.expires_at, fresh.timestamp.timestamp() + 30 * 86_400);

    // Logged 31 days ago with 30 days' retention: past its expiry, though DynamoDB may not have
    // removed it yet. Reads must leave it out themselves.
    let past = AuditLogger::with_clock(store.clone(), thirty_days, fixed_clock(Utc::now() - Duration::days(31)));
    let old = stored(past.log(new_entry(&t, AuditAction::Create, EntityType::File, "expired", None, None)).await);
    assert!(old.is_expired(Utc::now()));

    assert_eq!(now.get_log(&t, old.id).await.unwrap(), None);
    for scope in [QueryScope::Tenant, QueryScope::Entity("expired".into())] {
        let page = now.get_logs(&t, &AuditQuery::new(scope)).await.unwrap();
        assert!(!ids(&page.entries).contains(&old.id));
    }
    let page = now.get_logs(&t, &AuditQuery::new(QueryScope::Tenant)).await.unwrap();
    assert_eq!(ids(&page.entries), vec![fresh.id]);
}

async fn tenants_never_see_each_other(backend: Backend) {
    let (logger, all) = dataset(backend).await;
    let (acme, globex, initech) = (tenant("acme"), tenant("globex"), tenant("initech"));
    let acme_entry = all.iter().find(|e| e.tenant_id == acme).unwrap();

    assert_eq!(logger.get_log(&globex, acme_entry.id).await.unwrap(), None, "by id");
    for scope in
        [QueryScope::Tenant, QueryScope::Entity(acme_entry.entity_id.clone()), QueryScope::Project("project-0".into())]
    {
        let page = logger.get_logs(&globex, &everything(scope.clone(), AuditFilter::default())).await.unwrap();
        assert!(page.entries.iter().all(|e| e.tenant_id == globex), "{scope:?}");
        assert_eq!(ids(&page.entries), oracle(&all, &globex, &scope, &AuditFilter::default()));
        let none = logger.get_logs(&initech, &AuditQuery::new(scope)).await.unwrap();
        assert!(none.entries.is_empty());
    }

    // A cursor issued to acme is refused for globex, with a clear error.
    let mut query = AuditQuery::new(QueryScope::Tenant);
    query.page.limit = 5;
    let first = logger.get_logs(&acme, &query).await.unwrap();
    query.page.next_token = first.next_token;
    assert!(query.page.next_token.is_some());
    match logger.get_logs(&globex, &query).await {
        Err(AuditError::Invalid(ValidationError::InvalidCursor { .. })) => {}
        other => panic!("a foreign cursor must be refused, got {other:?}"),
    }
    // A tampered cursor too.
    let mut tampered = query.clone();
    let token = tampered.page.next_token.take().unwrap();
    let flipped = if token.ends_with('A') { 'B' } else { 'A' };
    tampered.page.next_token = Some(format!("{}{flipped}", &token[..token.len() - 1]));
    assert!(matches!(
        logger.get_logs(&acme, &tampered).await,
        Err(AuditError::Invalid(ValidationError::InvalidCursor { .. }))
    ));
}

fn truth(entries: &[&AuditLogEntry]) -> Counts {
    let mut c = Counts::default();
    for e in entries {
        c.add(&Counts::of(e));
    }
    c
}

async fn stats_equal_the_truth(backend: Backend) {
    let (logger, all) = dataset(backend).await;
    let acme = tenant("acme");
    let mine: Vec<&AuditLogEntry> = all.iter().filter(|e| e.tenant_id == acme).collect();

    let stats = logger.get_stats(&acme, None, None).await.unwrap();
    let want = truth(&mine);
    assert_eq!(stats.total_entries, want.total);
    for a in AuditAction::ALL {
        assert_eq!(stats.by_action[a], want.count_of_action(*a), "{a}");
    }
    for t in EntityType::ALL {
        assert_eq!(stats.by_entity_type[t], want.count_of_type(*t), "{t}");
    }
    assert_eq!((stats.from, stats.until), (None, None));

    // A range counts whole hours: every entry whose hour lies within the range's hours.
    let (start, end) = (all[15].timestamp, all[45].timestamp);
    let stats = logger.get_stats(&acme, Some(start), Some(end)).await.unwrap();
    let (first, last) = (HourBucket::of(start), HourBucket::of(end));
    let in_range: Vec<&AuditLogEntry> =
        mine.iter().copied().filter(|e| (first..=last).contains(&HourBucket::of(e.timestamp))).collect();
    assert_eq!(stats.total_entries, truth(&in_range).total);
    assert!(stats.total_entries > 0 && stats.total_entries < want.total);
    assert_eq!(stats.from, Some(first.start()));
    assert_eq!(stats.until, Some(last.end()));

    // The series by hour and by day: each bucket's counts are its entries', and they sum to the total.
    for bucket in [StatsBucket::Hour, StatsBucket::Day] {
        let stats = logger.get_stats_series(&acme, None, None, Some(bucket)).await.unwrap();
        let series = stats.series.expect("a series when a bucket is asked for");
        let start_of = |e: &AuditLogEntry| match bucket {
            StatsBucket::Hour => HourBucket::of(e.timestamp).start(),
            StatsBucket::Day => e.timestamp.duration_trunc(chrono::TimeDelta::days(1)).unwrap(),
        };
        let mut starts: Vec<_> = mine.iter().map(|e| start_of(e)).collect();
        starts.sort();
        starts.dedup();
        assert_eq!(
            series.iter().map(|p| p.start).collect::<Vec<_>>(),
            starts,
            "{bucket:?}: one point per bucket with entries, oldest first"
        );
        for point in &series {
            let in_bucket: Vec<&AuditLogEntry> = mine.iter().copied().filter(|e| start_of(e) == point.start).collect();
            let want = truth(&in_bucket);
            assert_eq!(point.total, want.total, "{bucket:?} {}", point.start);
            for a in AuditAction::ALL {
                assert_eq!(point.by_action[a], want.count_of_action(*a), "{bucket:?} {a}");
            }
            for t in EntityType::ALL {
                assert_eq!(point.by_entity_type[t], want.count_of_type(*t), "{bucket:?} {t}");
            }
        }
        assert_eq!(series.iter().map(|p| p.total).sum::<u64>(), stats.total_entries);
    }
    assert!(logger.get_stats(&acme, None, None).await.unwrap().series.is_none(), "no series unless asked");

    let globex = logger.get_stats(&tenant("globex"), None, None).await.unwrap();
    assert_eq!(globex.total_entries, all.len() as u64 - want.total);
    assert!(matches!(
        logger.get_stats(&acme, Some(end), Some(start)).await,
        Err(AuditError::Invalid(ValidationError::InvertedDateRange))
    ));
}

/// Spoils one field of a valid request.
type Breakage = Box<dyn Fn(&mut auditline::domain::NewEntry)>;

async fn invalid_entries_are_rejected_by_field_and_nothing_is_written(backend: Backend) {
    let logger = logger(fresh_store(backend).await, hours_ago(1), 1);
    let t = tenant("acme");
    let base = || new_entry(&t, AuditAction::Update, EntityType::Entity, "e-1", Some("p-1"), Some("u-1"));
    let mut deep = json!("leaf");
    for _ in 0..20 {
        deep = json!({ "k": deep });
    }
    let cases: Vec<(&str, Breakage)> = vec![
        ("entity_id", Box::new(|e| e.entity_id.clear())),
        ("entity_id", Box::new(|e| e.entity_id = "x".repeat(300))),
        ("entity_id", Box::new(|e| e.entity_id = "bad\u{0}id".into())),
        ("project_id", Box::new(|e| e.details.project_id = Some(String::new()))),
        ("user_id", Box::new(|e| e.details.user_id = Some("u\n1".into()))),
        ("ip_address", Box::new(|e| e.details.ip_address = Some("999.1.1.1".into()))),
        ("ip_address", Box::new(|e| e.details.ip_address = Some("localhost".into()))),
        ("changes", Box::new(|e| e.details.changes = Some(json!(["not", "an", "object"])))),
        ("metadata", Box::new(|e| e.details.metadata = Some(json!("text")))),
        ("changes", Box::new(move |e| e.details.changes = Some(deep.clone()))),
        ("entry", Box::new(|e| e.details.changes = Some(json!({ "blob": "x".repeat(300 * 1024) })))),
        // No canonical form (RFC 8785), so no provable leaf: refused rather than rounded.
        ("changes", Box::new(|e| e.details.changes = Some(json!({ "id": u64::MAX })))),
        ("metadata", Box::new(|e| e.details.metadata = Some(json!({ "n": [9007199254740993u64] })))),
    ];
    for (field, break_it) in cases {
        let mut request = base();
        break_it(&mut request);
        match logger.log(request).await {
            Err(AuditError::Invalid(err)) => assert_eq!(err.field(), field, "{err}"),
            other => panic!("expected a validation error for {field}, got {other:?}"),
        }
    }
    let page = logger.get_logs(&t, &AuditQuery::new(QueryScope::Tenant)).await.unwrap();
    assert!(page.entries.is_empty(), "nothing was written");
    assert_eq!(logger.get_stats(&t, None, None).await.unwrap().total_entries, 0);
    // The same request, repaired, is accepted.
    stored(logger.log(base()).await);
}

async fn disabled_logging_stores_nothing(backend: Backend) {
    let store = fresh_store(backend).await;
    let off = AuditLogger::new(store.clone(), AuditSettings { enabled: false, retention_days: 90 });
    let t = tenant("acme");
    let outcome = off.log_create(&t, EntityType::Project, "p-1", EntryDetails::default()).await.unwrap();
    assert_eq!(outcome, LogOutcome::Disabled);
    assert_eq!(outcome.entry(), None);
    // Invalid input is still reported while disabled.
    assert!(off.log_create(&t, EntityType::Project, "", EntryDetails::default()).await.is_err());
    let on = AuditLogger::new(store, AuditSettings::default());
    assert!(on.get_logs(&t, &AuditQuery::new(QueryScope::Tenant)).await.unwrap().entries.is_empty());
    assert_eq!(off.health(std::time::Duration::from_secs(2)).await.status, "disabled");
}

async fn concurrent_logging_loses_nothing(backend: Backend) {
    let logger = Arc::new(AuditLogger::new(fresh_store(backend).await, AuditSettings::default()));
    let t = tenant("acme");
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let (logger, t) = (logger.clone(), t.clone());
            tokio::spawn(async move {
                let request = new_entry(&t, AuditAction::ALL[i % 6], EntityType::ALL[i % 7], "busy", None, None);
                stored(logger.log(request).await).id
            })
        })
        .collect();
    let mut written = HashSet::new();
    for task in tasks {
        assert!(written.insert(task.await.unwrap()), "ids are distinct");
    }
    assert_eq!(written.len(), 1000);
    // What was written, by action and by type (i % 6 and i % 7 over 0..1000).
    let mut want = Counts { total: 1000, ..Counts::default() };
    for i in 0..1000 {
        want.by_action[i % 6] += 1;
        want.by_entity_type[i % 7] += 1;
    }

    let mut query = AuditQuery::new(QueryScope::Tenant);
    query.page.limit = 1000;
    let (listed, _) = collect_by_cursor(&logger, &t, query).await;
    assert_eq!(listed.iter().copied().collect::<HashSet<_>>(), written, "none lost");
    assert_eq!(listed.len(), 1000);
    let stats = logger.get_stats(&t, None, None).await.unwrap();
    assert_eq!(stats.total_entries, 1000);
    for (i, action) in AuditAction::ALL.iter().enumerate() {
        assert_eq!(stats.by_action[action], want.by_action[i], "{action}: no count lost or doubled");
    }
    for (i, kind) in EntityType::ALL.iter().enumerate() {
        assert_eq!(stats.by_entity_type[kind], want.by_entity_type[i], "{kind}");
    }
}

async fn a_batch_answers_for_each_entry_and_a_retried_batch_stores_nothing_twice(backend: Backend) {
    let store = fresh_store(backend).await;
    let logger = logger(store.clone(), hours_ago(1), 1);
    let t = tenant("acme");
    let original = stored(logger.log(new_entry(&t, AuditAction::Create, EntityType::File, "f-1", None, None)).await);
    let fresh = |id: &str| {
        let request = new_entry(&t, AuditAction::Update, EntityType::Report, id, None, Some("u-1"));
        request.validate().unwrap().stamp(Utc::now(), 90).unwrap()
    };
    let (a, b) = (fresh("r-a"), fresh("r-b"));
    // A new entry, one that exists, another new one, and the first again within the batch.
    let results = store.put_all(&[a.clone(), original.clone(), b.clone(), a.clone()]).await;
    assert!(results[2].is_ok(), "{results:?}");
    assert!(matches!(results[1], Err(StoreError::AlreadyExists(id)) if id == original.id), "{results:?}");
    // The two copies of one id may be written at once (DynamoDB): exactly one of them is stored.
    let copies = [&results[0], &results[3]];
    assert_eq!(copies.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(copies.iter().any(|r| matches!(r, Err(StoreError::AlreadyExists(id)) if *id == a.id)), "{results:?}");
    for entry in [&original, &a, &b] {
        assert_eq!(logger.get_log(&t, entry.id).await.unwrap().as_ref(), Some(entry));
    }
    assert_eq!(logger.get_stats(&t, None, None).await.unwrap().total_entries, 3, "refused puts are not counted");

    // Through the logger, a keyed batch (ids derived from the request) sent twice: the second
    // time every entry is answered with the one stored the first time, and nothing is added.
    let at = Utc::now();
    let batch = || {
        vec![
            (0, new_entry(&t, AuditAction::Link, EntityType::Project, "p-1", None, None)),
            (2, new_entry(&t, AuditAction::Unlink, EntityType::Project, "p-2", None, None)),
        ]
    };
    let first: Vec<AuditLogEntry> =
        logger.log_all(batch(), Some((at, b"request-1"))).await.into_iter().map(stored).collect();
    let again: Vec<AuditLogEntry> =
        logger.log_all(batch(), Some((at, b"request-1"))).await.into_iter().map(stored).collect();
    assert_eq!(first, again);
    assert_ne!(first[0].id, first[1].id);
    assert_eq!(logger.get_stats(&t, None, None).await.unwrap().total_entries, 5);
    // An invalid item is answered alone; the others are stored.
    let mixed = vec![
        (0, new_entry(&t, AuditAction::View, EntityType::File, "", None, None)),
        (1, new_entry(&t, AuditAction::View, EntityType::File, "f-2", None, None)),
    ];
    let outcomes = logger.log_all(mixed, None).await;
    assert!(matches!(outcomes[0], Err(AuditError::Invalid(_))), "{outcomes:?}");
    assert!(matches!(outcomes[1], Ok(LogOutcome::Stored(_))), "{outcomes:?}");
    assert_eq!(logger.get_stats(&t, None, None).await.unwrap().total_entries, 6);
}

async fn an_erasure_keeps_the_leaf_leaves_its_record_and_is_the_only_change(backend: Backend) {
    use auditline::erasure::{Erasure, ErasureError, ErasureRequest, record_names};
    use auditline::logger::EraseFailure;
    let store = fresh_store(backend).await;
    let logger = logger(store.clone(), hours_ago(1), 1);
    let (t, other) = (tenant("acme"), tenant("globex"));
    let details = |user: &str| EntryDetails {
        user_id: Some(user.into()),
        ip_address: Some("10.1.2.3".into()),
        changes: Some(json!({"email": "alice@example.com"})),
        ..EntryDetails::default()
    };
    let target = stored(logger.log_update(&t, EntityType::Report, "report-7", details("alice")).await);
    let kept = stored(logger.log_update(&t, EntityType::Report, "report-8", details("alice")).await);
    let request = |fields: &[&str]| ErasureRequest {
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        reason: "GDPR art. 17, request 4711".into(),
    };

    // Another tenant's entry is not found; nothing is written.
    let refused = logger.erase(&other, target.id, &request(&["user_id"]), &dpo()).await;
    assert!(matches!(refused, Err(EraseFailure::NotFound)), "{refused:?}");

    let erased = logger.erase(&t, target.id, &request(&["user_id", "ip_address", "changes"]), &dpo()).await.unwrap();
    let read = logger.get_log(&t, target.id).await.unwrap().expect("still there");
    assert_eq!(read, erased.entry);
    assert_eq!((read.user_id.as_deref(), read.ip_address, read.changes.as_ref()), (None, None, None));
    assert_eq!(read.integrity.leaf_hash, target.integrity.leaf_hash, "the leaf is unchanged");
    assert_eq!(read.verify_leaf().unwrap(), ["user_id", "changes", "ip_address"]);
    assert!(read.integrity.erased_by.values().all(|r| *r == erased.record.id));
    let record = logger.get_log(&t, erased.record.id).await.unwrap().expect("the record is in the trail");
    assert!(record_names(&record, &target, &["user_id", "changes", "ip_address"]));
    assert_eq!(record.user_id.as_deref(), Some("dpo"));
    // No erased value can be read back: not from the entry, not from its record.
    for text in [serde_json::to_string(&read).unwrap(), serde_json::to_string(&record).unwrap()] {
        for value in ["alice", "10.1.2.3", "alice@example.com"] {
            assert!(!text.contains(value), "{value} is still readable: {text}");
        }
    }
    // Gone from the user index; the other entry of that user stays.
    let by_user = logger.get_logs_by_user(&t, "alice", PageRequest::first(100)).await.unwrap();
    assert_eq!(ids(&by_user.entries), [kept.id]);

    // Twice is refused, naming the record.
    let again = logger.erase(&t, target.id, &request(&["ip_address"]), &auditline::logger::Actor::default()).await;
    assert!(
        matches!(&again, Err(EraseFailure::Refused(ErasureError::AlreadyErased { record, .. })) if *record == erased.record.id),
        "{again:?}"
    );
    // A plan made from a stale read is refused by the store: the entry changed meanwhile.
    let stale = Erasure::plan(&kept, &["ip_address"], Uuid::now_v7()).unwrap();
    let mut changed = stale.clone();
    changed.before.leaf_hash = target.integrity.leaf_hash;
    assert!(matches!(store.erase(&t, kept.id, &changed).await, Err(StoreError::Changed(_))));
    assert!(matches!(store.erase(&other, kept.id, &stale).await, Err(StoreError::NotFound(_))));

    // A record written by a request that stopped before its erasure is taken up, not written twice.
    let pending = auditline::erasure::record(&kept, &["ip_address"], "stopped", Some("dpo".into()), None);
    let pending = logger.log_service_record(pending).await.unwrap();
    let resumed = logger.erase(&t, kept.id, &request(&["ip_address"]), &dpo()).await.unwrap();
    assert_eq!(resumed.record.id, pending.id);
    let records = logger.get_logs_by_entity(&t, &kept.id.to_string(), PageRequest::first(100)).await.unwrap();
    assert_eq!(ids(&records.entries), [pending.id]);
    // The records count in the statistics like any entry: four entries in all.
    assert_eq!(logger.get_stats(&t, None, None).await.unwrap().total_entries, 4);
}

fn dpo() -> auditline::logger::Actor {
    auditline::logger::Actor { user_id: Some("dpo".into()), ip_address: None }
}

async fn retention_per_tenant_and_legal_holds_set_expiry_and_holds_refuse_erasure(backend: Backend) {
    use auditline::erasure::ErasureRequest;
    use auditline::logger::{Actor, EraseFailure, PolicyFailure};
    use auditline::retention::{HELD_UNTIL, HoldScope, PolicyError};
    let (store, policies) = auditline_tests::fresh_store_with_policies(backend).await;
    // Written six days and 23 hours ago: with a retention of 7 days, an hour from expiring.
    let (clock, millis) = stepping_clock(Utc::now() - Duration::days(7) + Duration::hours(1), 1);
    let logger =
        AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock).with_policies(policies.clone());
    let (t, other) = (tenant("acme"), tenant("globex"));
    let admin = Actor { user_id: Some("admin".into()), ip_address: None };
    let write = |user: &'static str| {
        let logger = &logger;
        let (t, other) = (t.clone(), other.clone());
        async move {
            let tenant = if user == "carol" { other } else { t };
            stored(
                logger.log(new_entry(&tenant, AuditAction::Update, EntityType::Report, "r-1", None, Some(user))).await,
            )
        }
    };
    let old = write("alice").await;
    assert_eq!(old.expires_at, old.timestamp.timestamp() + 90 * 86_400, "the default retention");

    // Retention: bounded, recorded, and for new entries only.
    assert!(matches!(
        logger.set_retention(&t, 0, &admin).await,
        Err(PolicyFailure::Refused(PolicyError::RetentionOutOfBounds { .. }))
    ));
    let change = logger.set_retention(&t, 7, &admin).await.unwrap();
    assert_eq!(change.record.entity_type, EntityType::AuditSettings);
    assert_eq!(change.record.changes.as_ref().unwrap()["retention_days"], json!({"old": 90, "new": 7}));
    let (alice, bob, carol) = (write("alice").await, write("bob").await, write("carol").await);
    assert_eq!(alice.expires_at, alice.timestamp.timestamp() + 7 * 86_400);
    assert_eq!(carol.expires_at, carol.timestamp.timestamp() + 90 * 86_400, "another tenant keeps its own");
    assert_eq!(
        logger.get_log(&t, old.id).await.unwrap().unwrap().expires_at,
        old.expires_at,
        "stored entries keep theirs"
    );

    // A hold on alice: her stored entries are kept, and so is the next one; bob's are not.
    let placed = logger.place_hold(&t, HoldScope::User { user_id: "alice".into() }, "case 117", &admin).await.unwrap();
    assert_eq!(placed.entries, 2);
    assert_eq!(placed.record.entity_type, EntityType::LegalHold);
    let later = write("alice").await;
    assert_eq!(later.expires_at, HELD_UNTIL, "written under the hold");
    let in_two_days = Utc::now() + Duration::days(2);
    assert!(store.get(&t, alice.id, in_two_days).await.unwrap().is_some(), "a held entry outlives its retention");
    assert!(store.get(&t, bob.id, in_two_days).await.unwrap().is_none(), "bob's expires as set");
    let erase = ErasureRequest { fields: vec!["ip_address".into()], reason: "GDPR".into() };
    match logger.erase(&t, alice.id, &erase, &admin).await {
        Err(EraseFailure::Held(hold)) => assert_eq!(hold, placed.hold.id),
        other => panic!("a held entry is not erased: {other:?}"),
    }
    // Changes at once: the second, at a stale version, is refused by the store.
    let (policy, version) = policies.policy(&t).await.unwrap();
    assert!(policies.put_policy(&t, &policy, version).await.unwrap());
    assert!(!policies.put_policy(&t, &policy, version).await.unwrap());

    // Released: her entries expire again by the retention (a week after each was written).
    let released = logger.release_hold(&t, placed.hold.id, &admin).await.unwrap();
    assert_eq!(released.entries, 3);
    assert!(store.get(&t, alice.id, in_two_days).await.unwrap().is_none(), "after release it expires");
    assert_eq!(
        logger.get_log(&t, later.id).await.unwrap().unwrap().expires_at,
        later.timestamp.timestamp() + 7 * 86_400
    );
    logger.erase(&t, alice.id, &erase, &admin).await.expect("erasable once released");
    assert!(matches!(
        logger.release_hold(&t, placed.hold.id, &admin).await,
        Err(PolicyFailure::Refused(PolicyError::NoSuchHold(_)))
    ));
    // Another tenant cannot release this tenant's hold.
    let tenant_hold = logger.place_hold(&t, HoldScope::Tenant, "audit", &admin).await.unwrap();
    assert!(matches!(
        logger.release_hold(&other, tenant_hold.hold.id, &admin).await,
        Err(PolicyFailure::Refused(PolicyError::NoSuchHold(_)))
    ));
    drop(millis);
}

async fn a_subjects_erasure_reaches_every_entry_a_page_per_record_and_goes_on_from_its_token(backend: Backend) {
    use auditline::erasure::ErasureRequest;
    use auditline::logger::Actor;
    use auditline::retention::HoldScope;
    let (store, policies) = auditline_tests::fresh_store_with_policies(backend).await;
    let (clock, _) = stepping_clock(hours_ago(2), 1);
    let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock).with_policies(policies);
    let t = tenant("acme");
    let dpo = Actor { user_id: Some("dpo".into()), ip_address: None };
    let mut alices = Vec::new();
    for i in 0..230 {
        let user = if i % 10 == 9 { "bob" } else { "alice" };
        let entity = if i == 3 { "held-report" } else { "report" };
        let e =
            stored(logger.log(new_entry(&t, AuditAction::Update, EntityType::Report, entity, None, Some(user))).await);
        if user == "alice" {
            alices.push(e);
        }
    }
    logger.place_hold(&t, HoldScope::Entity { entity_id: "held-report".into() }, "case 9", &dpo).await.unwrap();
    let request = ErasureRequest { fields: vec!["user_id".into(), "ip_address".into()], reason: "GDPR".into() };
    // A budget of nothing: one page per call, each call going on from the last one's token.
    let (mut token, mut erased, mut records, mut calls) = (None, 0, Vec::new(), 0);
    let result = loop {
        let p = logger.erase_subject(&t, "alice", &request, &dpo, token, std::time::Duration::ZERO).await.unwrap();
        erased += p.erased;
        records.extend(p.records);
        calls += 1;
        match p.next_token {
            Some(next) => token = Some(next),
            None => break p.result.expect("a result when done"),
        }
    };
    assert_eq!(erased, alices.len() - 1, "every entry of alice but the held one");
    assert!(calls >= 3 && records.len() >= 3, "{calls} calls, {} records", records.len());
    assert_eq!(result.changes.as_ref().unwrap()["subject_erasure"]["done"], json!(true));
    assert!(!serde_json::to_string(&result).unwrap().contains("alice"), "the result never names the subject");
    for a in &alices {
        let now = logger.get_log(&t, a.id).await.unwrap().unwrap();
        if a.entity_id == "held-report" {
            assert_eq!(now.user_id.as_deref(), Some("alice"), "held");
            continue;
        }
        assert_eq!((now.user_id.as_deref(), now.ip_address), (None, None));
        let record = logger.get_log(&t, now.integrity.erased_by["user_id"]).await.unwrap().expect("its record");
        assert!(auditline::erasure::record_names(&record, a, &["user_id", "ip_address"]));
    }
    let by_user = logger.get_logs_by_user(&t, "alice", PageRequest::first(1000)).await.unwrap();
    assert_eq!(by_user.entries.len(), 1, "only the held entry still names alice");
    assert_eq!(logger.get_logs_by_user(&t, "bob", PageRequest::first(1000)).await.unwrap().entries.len(), 23);
    // Again: nothing left to erase, and the result says so.
    let again =
        logger.erase_subject(&t, "alice", &request, &dpo, None, std::time::Duration::from_secs(5)).await.unwrap();
    assert_eq!((again.erased, again.held, again.records.len()), (0, 1, 0));
}

async fn archived_copies_are_sealed_and_an_erasure_shreds_them_even_before_they_are_archived(backend: Backend) {
    use auditline::apigw::stream::archive_entries;
    use auditline::erasure::ErasureRequest;
    use auditline::logger::Actor;
    let (store, keys) = auditline_tests::fresh_store_with_archive_keys(backend).await;
    let (clock, _) = stepping_clock(hours_ago(2), 1);
    let logger =
        AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock).with_archive_keys(keys.clone());
    let t = tenant("acme");
    let dpo = Actor { user_id: Some("dpo".into()), ip_address: None };
    let mut written = Vec::new();
    for i in 0..4 {
        let mut request = new_entry(&t, AuditAction::Update, EntityType::Report, &format!("r-{i}"), None, None);
        request.details.user_id = Some(format!("person-{i}@example.com"));
        request.details.ip_address = Some(format!("203.0.113.{}", 10 + i));
        request.details.changes = Some(json!({"name": format!("Secret Name {i}")}));
        written.push(stored(logger.log(request).await));
    }
    let batch = |entries: &[AuditLogEntry], from: usize| -> Vec<(String, AuditLogEntry)> {
        entries.iter().enumerate().map(|(i, e)| ((from + i).to_string(), e.clone())).collect()
    };
    let sink = auditline_tests::MemorySink::default();
    assert!(!archive_entries(batch(&written[..3], 100), &sink, keys.as_ref()).await.retried);

    // Sealed: no erasable value in the object; opened with the keys, each entry as stored, verifying.
    let raw = sink.raw_text();
    for i in 0..3 {
        for secret in [format!("person-{i}"), format!("203.0.113.{}", 10 + i), format!("Secret Name {i}")] {
            assert!(!raw.contains(&secret), "{secret} in the archive object");
        }
    }
    let opened = sink.opened(keys.as_ref()).await;
    assert_eq!(opened.len(), 3);
    for (a, e) in opened.iter().zip(&written) {
        assert_eq!(a.committed_fields(), e.committed_fields());
        assert_eq!(a.integrity.leaf_hash, e.integrity.leaf_hash);
        assert!(a.integrity.verify(&a.committed_fields()).unwrap().is_empty());
    }
    assert!(keys.keys(&tenant("globex"), &[written[0].id]).await.unwrap().is_empty(), "keys are per tenant");

    // An erasure after the archive: the archived field reads as erased, naming its record; a
    // redelivered batch (its stream images still hold the value) does not bring it back.
    let erase = |f: &str| ErasureRequest { fields: vec![f.to_owned()], reason: "GDPR".into() };
    let done = logger.erase(&t, written[0].id, &erase("user_id"), &dpo).await.unwrap();
    assert!(!archive_entries(batch(&written[..3], 100), &sink, keys.as_ref()).await.retried);
    let opened = sink.opened(keys.as_ref()).await;
    assert_eq!(opened[0].user_id, None);
    assert_eq!(opened[0].integrity.erased_by.get("user_id"), Some(&done.record.id));
    assert_eq!(opened[0].ip_address, written[0].ip_address, "the other fields stay readable");
    assert_eq!(opened[1], {
        let mut e = written[1].clone();
        e.integrity = opened[1].integrity.clone();
        e
    });

    // An erasure before the archive got the entry: nothing of the field is sealed at all.
    let early = logger.erase(&t, written[3].id, &erase("ip_address"), &dpo).await.unwrap();
    assert!(!archive_entries(batch(&written[3..], 200), &sink, keys.as_ref()).await.retried);
    let opened = sink.opened(keys.as_ref()).await;
    let last = opened.iter().find(|e| e.id == written[3].id).unwrap();
    assert_eq!((last.ip_address, last.integrity.erased_by.get("ip_address")), (None, Some(&early.record.id)));
    assert_eq!(last.user_id, written[3].user_id);
    assert!(last.integrity.verify(&last.committed_fields()).unwrap() == ["ip_address"]);
    assert!(!sink.raw_text().contains("203.0.113.13"));
}

async fn a_holds_sweep_stopped_at_its_budget_goes_on_from_its_token(backend: Backend) {
    use auditline::logger::{Actor, PolicyFailure};
    use auditline::retention::{HELD_UNTIL, HoldScope, PolicyError};
    let (store, policies) = auditline_tests::fresh_store_with_policies(backend).await;
    let (clock, _) = stepping_clock(hours_ago(3), 1);
    // A budget of nothing: each call does one page (or one pass) and answers where to go on from.
    let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock)
        .with_policies(policies)
        .with_sweep_budget(std::time::Duration::ZERO);
    let t = tenant("acme");
    let admin = Actor { user_id: Some("admin".into()), ip_address: None };
    let mut covered = Vec::new();
    for i in 0..12 {
        let project = if i % 3 == 0 { "other" } else { "case" };
        let e =
            stored(logger.log(new_entry(&t, AuditAction::Update, EntityType::Report, "r", Some(project), None)).await);
        if project == "case" {
            covered.push(e.id);
        }
    }
    let placed =
        logger.place_hold(&t, HoldScope::Project { project_id: "case".into() }, "case 9", &admin).await.unwrap();
    assert_eq!(placed.entries, covered.len(), "the first pass");
    let token = placed.next_token.expect("the second pass is still to come");
    // A token is the tenant's and the hold's own; nothing else goes on from it.
    for (tenant, hold, garbage) in
        [(tenant("globex"), None, false), (t.clone(), Some(uuid::Uuid::now_v7()), false), (t.clone(), None, true)]
    {
        let token = if garbage { "not-a-token" } else { token.as_str() };
        assert!(matches!(
            logger.continue_sweep(&tenant, token, hold).await,
            Err(PolicyFailure::Refused(PolicyError::SweepToken))
        ));
    }
    let rest = logger.continue_sweep(&t, &token, Some(placed.hold.id)).await.unwrap();
    assert_eq!((rest.entries, rest.next_token), (0, None), "nothing new was written meanwhile");
    for id in &covered {
        assert_eq!(logger.get_log(&t, *id).await.unwrap().unwrap().expires_at, HELD_UNTIL);
    }
    // A token of a hold released since keeps nothing more.
    let released = logger.release_hold(&t, placed.hold.id, &admin).await.unwrap();
    assert_eq!((released.entries, released.next_token), (covered.len(), None));
    let again = logger.continue_sweep(&t, &token, None).await.unwrap();
    assert_eq!(again.entries, 0, "a released hold's sweep holds nothing");
    for id in &covered {
        assert_ne!(logger.get_log(&t, *id).await.unwrap().unwrap().expires_at, HELD_UNTIL);
    }
}

/// A hold over more entries than a page, with a budget of nothing: a page per call, and each
/// entry held once every token is followed.
#[tokio::test]
async fn a_holds_sweep_over_many_pages_goes_on_a_page_per_call() {
    use auditline::logger::Actor;
    use auditline::retention::{HELD_UNTIL, HoldScope, MemoryPolicies};
    let store = Arc::new(auditline::store::MemoryStore::new());
    let (clock, _) = stepping_clock(hours_ago(3), 1);
    let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock)
        .with_policies(Arc::new(MemoryPolicies::default()))
        .with_sweep_budget(std::time::Duration::ZERO);
    let t = tenant("acme");
    let requests: Vec<_> =
        (0..2500).map(|i| (i as u16, new_entry(&t, AuditAction::Create, EntityType::File, "f", None, None))).collect();
    for chunk in requests.chunks(100) {
        let logged = logger.log_all(chunk.to_vec(), None).await;
        assert!(logged.iter().all(Result::is_ok));
    }
    let admin = Actor { user_id: Some("admin".into()), ip_address: None };
    let placed = logger.place_hold(&t, HoldScope::Tenant, "everything", &admin).await.unwrap();
    let (mut entries, mut token, mut calls) = (placed.entries, placed.next_token, 1);
    while let Some(next) = token {
        let progress = logger.continue_sweep(&t, &next, Some(placed.hold.id)).await.unwrap();
        entries += progress.entries;
        token = progress.next_token;
        calls += 1;
    }
    assert_eq!(entries, 2500, "each entry once (the hold's own record was written held)");
    assert!(calls >= 4, "a page of 1,000 per call, then the second pass: {calls} calls");
    let page = logger
        .get_logs(
            &t,
            &AuditQuery { scope: QueryScope::Tenant, filter: AuditFilter::default(), page: PageRequest::first(1000) },
        )
        .await
        .unwrap();
    assert!(page.entries.iter().all(|e| e.expires_at == HELD_UNTIL));
}

/// An entity's entries narrowed to one project (the export's `entity_id` with `project_id`), page
/// by page with the query's token.
async fn an_entitys_entries_narrow_to_a_project(backend: Backend) {
    let store = fresh_store(backend).await;
    let logger = logger(store, hours_ago(2), 1);
    let t = tenant("acme");
    let mut want = Vec::new();
    for i in 0..9 {
        let project = ["p-1", "p-2", "p-3"][i % 3];
        let entity = if i % 2 == 0 { "shared" } else { "other" };
        let e =
            stored(logger.log(new_entry(&t, AuditAction::Update, EntityType::File, entity, Some(project), None)).await);
        if entity == "shared" && project == "p-1" {
            want.push(e.id);
        }
    }
    want.reverse();
    let filter = AuditFilter { project_id: Some("p-1".into()), ..AuditFilter::default() };
    let mut query = AuditQuery { scope: QueryScope::Entity("shared".into()), filter, page: PageRequest::first(1) };
    let mut got = Vec::new();
    loop {
        let page = logger.get_logs(&t, &query).await.unwrap();
        got.extend(page.entries.iter().map(|e| e.id));
        match page.next_token {
            Some(token) => query.page = PageRequest { next_token: Some(token), ..PageRequest::first(1) },
            None => break,
        }
    }
    assert_eq!(got, want, "the entity's entries in p-1, newest first");
    query.filter.project_id = Some("bad\u{1}".into());
    query.page = PageRequest::first(10);
    assert!(logger.get_logs(&t, &query).await.is_err(), "the project is checked like any id");
}
