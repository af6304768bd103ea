//! The contracts of log streams' storage, one set of tests run on every adapter: the
//! [`StreamStore`] (in memory, SQLite, and DynamoDB on the local DynamoDB API) and the [`JobQueue`]
//! of the local gateway (in memory and SQLite; on AWS jobs wait in SQS).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use auditline::domain::TenantId;
use auditline::store::dynamo::DynamoStreams;
use auditline::store::dynamo::tables::STREAMS;
use auditline::streams::delivery::{Job, Outcome};
use auditline::streams::destination::{Destination, Encoding, Format, MAX_STREAMS_PER_TENANT, StreamFilter, Target};
use auditline::streams::queue::{DeadLetter, JobQueue, MemoryJobQueue};
use auditline::streams::store::{
    Failing, Figures, FiguresDelta, LAG_BUCKETS, LastError, MemoryStreams, StreamStore, StreamStoreError, lag_bucket,
    lag_bucket_bound,
};
use auditline_tests::{Backend, fresh_sqlite_store, fresh_table, local_client, tenant};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

auditline_tests::on_every_backend!(
    a_created_stream_reads_back_with_empty_figures_oldest_first,
    another_tenant_never_sees_or_changes_a_stream,
    the_twenty_first_stream_of_a_tenant_is_refused_even_when_creates_race,
    a_replace_wins_only_over_the_version_it_read,
    a_deleted_stream_takes_its_figures_and_frees_its_place,
    a_late_record_does_not_bring_back_a_deleted_streams_figures,
    records_add_up_even_when_they_race,
    a_failing_transition_is_recorded_once_however_many_race,
    failing_streams_are_counted_across_tenants,
);

/// A store of streams and, on DynamoDB, its table (to look at the items themselves).
struct Streams {
    store: Arc<dyn StreamStore>,
    dynamo: Option<(Client, String)>,
}

async fn fresh_streams(backend: Backend) -> Streams {
    match backend {
        Backend::Memory => Streams { store: Arc::new(MemoryStreams::default()), dynamo: None },
        Backend::Sqlite => Streams { store: Arc::new(fresh_sqlite_store()), dynamo: None },
        Backend::Dynamo => {
            let (client, _) = local_client();
            let table = fresh_table(&client, &STREAMS, "streams").await;
            Streams {
                store: Arc::new(DynamoStreams::new(client.clone(), table.clone())),
                dynamo: Some((client, table)),
            }
        }
    }
}

impl Streams {
    /// On DynamoDB, the sort keys of every item in a tenant's partition.
    async fn items_of(&self, tenant: &TenantId) -> Option<BTreeSet<String>> {
        let (client, table) = self.dynamo.as_ref()?;
        let out = client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(tenant.to_string()))
            .consistent_read(true)
            .send()
            .await
            .expect("query the streams table");
        Some(out.items().iter().map(|i| i["sk"].as_s().expect("a string sort key").clone()).collect())
    }
}

/// Now, to the millisecond (what every adapter keeps).
fn now_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("a valid time")
}

fn destination(tenant: &TenantId, name: &str) -> Destination {
    let now = now_ms();
    Destination {
        tenant_id: tenant.clone(),
        id: Uuid::now_v7(),
        name: name.to_owned(),
        target: Target::Webhook {
            url: "https://siem.example.com/hook".into(),
            encoding: Encoding::JsonArray,
            header_names: vec!["x-token".into()],
        },
        format: Format::Entry,
        filter: StreamFilter::default(),
        paused: false,
        sealed_secrets: format!("sealed-secrets-of-{name}"),
        previous_secret_retires_at: None,
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

/// The next version of `stream`, renamed.
fn changed(stream: &Destination, name: &str) -> Destination {
    Destination { name: name.to_owned(), version: stream.version + 1, updated_at: now_ms(), ..stream.clone() }
}

/// The lag histogram as counts per bucket, however long an adapter keeps it.
fn lags(figures: &Figures) -> Vec<u64> {
    let mut lag = figures.lag.clone();
    lag.resize(LAG_BUCKETS, 0);
    lag
}

fn failing(reason: &str) -> Failing {
    Failing { since: now_ms(), reason: reason.to_owned() }
}

async fn figures_of(store: &dyn StreamStore, tenant: &TenantId, id: Uuid) -> Figures {
    store.get(tenant, id).await.expect("get").expect("the stream is there").figures
}

async fn a_created_stream_reads_back_with_empty_figures_oldest_first(backend: Backend) {
    let streams = fresh_streams(backend).await;
    let store = streams.store.as_ref();
    let acme = tenant("acme");
    assert!(store.list(&acme).await.unwrap().is_empty());
    let mut created = Vec::new();
    for name in ["first", "second", "third"] {
        let stream = destination(&acme, name);
        store.create(&stream).await.expect("created");
        created.push(stream);
    }
    let stored = store.get(&acme, created[1].id).await.unwrap().expect("found");
    assert_eq!(stored.stream, created[1], "every field, secrets sealed as given");
    assert_eq!(stored.figures, Figures::default(), "no figures yet");
    assert!(store.get(&acme, Uuid::now_v7()).await.unwrap().is_none());
    let listed = store.list(&acme).await.unwrap();
    assert_eq!(listed.iter().map(|s| s.stream.clone()).collect::<Vec<_>>(), created, "oldest first");
    assert!(listed.iter().all(|s| s.figures == Figures::default()));
    // A create sent again (its answer lost) changes nothing and takes no second place.
    store.create(&created[0]).await.expect("the same create again");
    assert_eq!(store.list(&acme).await.unwrap().len(), 3);
    if let Some(items) = streams.items_of(&acme).await {
        assert!(items.iter().all(|sk| !sk.contains("sealed")), "secrets are never in a key: {items:?}");
    }
}

async fn another_tenant_never_sees_or_changes_a_stream(backend: Backend) {
    let streams = fresh_streams(backend).await;
    let store = streams.store.as_ref();
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let ours = destination(&acme, "ours");
    store.create(&ours).await.unwrap();
    store.record(&acme, ours.id, &FiguresDelta { delivered: 2, ..FiguresDelta::default() }).await.unwrap();
    let before = store.get(&acme, ours.id).await.unwrap().expect("ours");

    assert!(store.list(&globex).await.unwrap().is_empty(), "another tenant lists nothing");
    assert!(store.get(&globex, ours.id).await.unwrap().is_none(), "nor gets it by id");
    let taken = Destination { tenant_id: globex.clone(), ..changed(&ours, "taken") };
    assert!(!store.replace(&taken).await.unwrap(), "nor replaces it");
    assert!(!store.delete(&globex, ours.id).await.unwrap(), "nor deletes it");
    store.record(&globex, ours.id, &FiguresDelta { failed: 5, ..FiguresDelta::default() }).await.unwrap();
    assert!(!store.set_failing(&globex, ours.id, Some(&failing("not yours"))).await.unwrap(), "nor marks it failing");

    let after = store.get(&acme, ours.id).await.unwrap().expect("still ours");
    assert_eq!(after.stream, before.stream);
    assert_eq!(after.figures, before.figures);
    assert!(store.list(&globex).await.unwrap().is_empty());
    assert_eq!(store.failing_count().await.unwrap(), 0);
    // And another tenant's streams do not count toward this one's limit.
    for i in 0..MAX_STREAMS_PER_TENANT {
        store.create(&destination(&globex, &format!("g{i}"))).await.expect("globex's own places");
    }
    assert_eq!(store.list(&acme).await.unwrap().len(), 1);
}

async fn the_twenty_first_stream_of_a_tenant_is_refused_even_when_creates_race(backend: Backend) {
    let streams = fresh_streams(backend).await;
    let store = streams.store.clone();
    let acme = tenant("acme");
    for i in 0..MAX_STREAMS_PER_TENANT {
        store.create(&destination(&acme, &format!("s{i}"))).await.expect("within the limit");
    }
    let extra = destination(&acme, "one too many");
    assert!(matches!(store.create(&extra).await, Err(StreamStoreError::Limit)), "the 21st is refused");
    assert!(store.get(&acme, extra.id).await.unwrap().is_none(), "and nothing of it is kept");
    assert_eq!(store.list(&acme).await.unwrap().len(), MAX_STREAMS_PER_TENANT);

    // Creates racing for the last places: exactly as many win as there are places.
    let racing = tenant("racing");
    for i in 0..MAX_STREAMS_PER_TENANT - 3 {
        store.create(&destination(&racing, &format!("s{i}"))).await.unwrap();
    }
    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let (store, stream) = (store.clone(), destination(&racing, &format!("race{i}")));
            tokio::spawn(async move { store.create(&stream).await })
        })
        .collect();
    let (mut won, mut refused) = (0, 0);
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(()) => won += 1,
            Err(StreamStoreError::Limit) => refused += 1,
            Err(e) => panic!("a racing create failed: {e}"),
        }
    }
    assert_eq!((won, refused), (3, 5));
    assert_eq!(store.list(&racing).await.unwrap().len(), MAX_STREAMS_PER_TENANT);
}

async fn a_replace_wins_only_over_the_version_it_read(backend: Backend) {
    let streams = fresh_streams(backend).await;
    let store = streams.store.clone();
    let acme = tenant("acme");
    let v1 = destination(&acme, "v1");
    store.create(&v1).await.unwrap();
    let delta = FiguresDelta { delivered: 4, delivered_at: Some(now_ms()), ..FiguresDelta::default() };
    store.record(&acme, v1.id, &delta).await.unwrap();
    let figures = figures_of(store.as_ref(), &acme, v1.id).await;

    let v2 = Destination { paused: true, sealed_secrets: "rotated".into(), ..changed(&v1, "v2") };
    assert!(store.replace(&v2).await.unwrap(), "over the version read");
    let stale = changed(&v1, "stale");
    assert!(!store.replace(&stale).await.unwrap(), "a change made to version 1 loses to version 2");
    let skipping = Destination { version: 4, ..changed(&v2, "skipping") };
    assert!(!store.replace(&skipping).await.unwrap(), "nor may a change skip a version");
    let stored = store.get(&acme, v1.id).await.unwrap().expect("there");
    assert_eq!(stored.stream, v2);
    assert_eq!(stored.figures, figures, "a replace leaves the figures as they are");

    // Two changes made to the same version: one wins.
    let racing: Vec<_> = (0..4)
        .map(|i| {
            let (store, next) = (store.clone(), changed(&v2, &format!("v3-{i}")));
            tokio::spawn(async move { (store.replace(&next).await.unwrap(), next) })
        })
        .collect();
    let mut winners = Vec::new();
    for race in racing {
        let (won, next) = race.await.unwrap();
        if won {
            winners.push(next);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one change over version 2");
    assert_eq!(store.get(&acme, v1.id).await.unwrap().unwrap().stream, winners[0]);

    let gone = destination(&acme, "never created");
    assert!(!store.replace(&changed(&gone, "x")).await.unwrap(), "no stream, nothing replaced");
    assert!(store.get(&acme, gone.id).await.unwrap().is_none(), "and none made");
}

async fn a_deleted_stream_takes_its_figures_and_frees_its_place(backend: Backend) {
    let streams = fresh_streams(backend).await;
    let store = streams.store.as_ref();
    let acme = tenant("acme");
    let all: Vec<Destination> = (0..MAX_STREAMS_PER_TENANT).map(|i| destination(&acme, &format!("s{i}"))).collect();
    for stream in &all {
        store.create(stream).await.unwrap();
    }
    let victim = &all[7];
    let delta = FiguresDelta { delivered: 9, lags: vec![(lag_bucket(12), 9)], ..FiguresDelta::default() };
    store.record(&acme, victim.id, &delta).await.unwrap();
    assert!(store.set_failing(&acme, victim.id, Some(&failing("HTTP 500"))).await.unwrap());

    assert!(store.delete(&acme, victim.id).await.unwrap());
    assert!(!store.delete(&acme, victim.id).await.unwrap(), "a second delete finds none");
    assert!(store.get(&acme, victim.id).await.unwrap().is_none());
    let listed = store.list(&acme).await.unwrap();
    assert_eq!(listed.len(), MAX_STREAMS_PER_TENANT - 1);
    assert!(listed.iter().all(|s| s.stream.id != victim.id));
    assert_eq!(store.failing_count().await.unwrap(), 0, "its failing went with it");
    if let Some(items) = streams.items_of(&acme).await {
        assert!(items.iter().all(|sk| !sk.contains(&victim.id.to_string())), "no item of it is left: {items:?}");
    }

    // Its place is free again, and only that one.
    store.create(&destination(&acme, "in its place")).await.expect("the freed place");
    assert!(matches!(store.create(&destination(&acme, "one too many")).await, Err(StreamStoreError::Limit)));
    assert!(!store.delete(&acme, Uuid::now_v7()).await.unwrap(), "a stream never created");
    let refused = store.create(&destination(&acme, "still no room")).await;
    assert!(matches!(refused, Err(StreamStoreError::Limit)), "a delete that found nothing frees nothing");
}

async fn a_late_record_does_not_bring_back_a_deleted_streams_figures(backend: Backend) {
    let streams = fresh_streams(backend).await;
    let store = streams.store.as_ref();
    let acme = tenant("acme");
    let stream = destination(&acme, "short-lived");
    store.create(&stream).await.unwrap();
    assert!(store.delete(&acme, stream.id).await.unwrap());

    // Deliveries that were under way when it was deleted.
    let error = LastError { at: now_ms(), message: "HTTP 503".into() };
    let delta = FiguresDelta {
        delivered: 1,
        failed: 1,
        retried: 1,
        lags: vec![(3, 1)],
        error: Some(error),
        delivered_at: Some(now_ms()),
    };
    store.record(&acme, stream.id, &delta).await.expect("a late record is no error");
    assert!(!store.set_failing(&acme, stream.id, Some(&failing("gave up"))).await.unwrap(), "nothing to mark");
    assert!(!store.set_failing(&acme, stream.id, None).await.unwrap());

    assert!(store.get(&acme, stream.id).await.unwrap().is_none());
    assert!(store.list(&acme).await.unwrap().is_empty());
    assert_eq!(store.failing_count().await.unwrap(), 0);
    if let Some(items) = streams.items_of(&acme).await {
        assert!(items.iter().all(|sk| !sk.starts_with("stream#")), "no figures item made again: {items:?}");
    }
    // Nor does a stream created afterwards inherit anything.
    let next = destination(&acme, "next");
    store.create(&next).await.unwrap();
    assert_eq!(figures_of(store, &acme, next.id).await, Figures::default());
}

async fn records_add_up_even_when_they_race(backend: Backend) {
    let streams = fresh_streams(backend).await;
    let store = streams.store.clone();
    let acme = tenant("acme");
    let stream = destination(&acme, "busy");
    store.create(&stream).await.unwrap();
    let (fast, slow) = (lag_bucket(40), lag_bucket(3000));

    let delivered_at = now_ms();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (store, tenant) = (store.clone(), acme.clone());
            let delta = if i % 4 == 3 {
                FiguresDelta {
                    failed: 2,
                    retried: 1,
                    error: Some(LastError { at: delivered_at, message: "HTTP 500".into() }),
                    ..FiguresDelta::default()
                }
            } else {
                FiguresDelta {
                    delivered: 5,
                    // One bucket named twice in a delta counts twice.
                    lags: vec![(fast, 2), (fast, 2), (slow, 1)],
                    delivered_at: Some(delivered_at),
                    ..FiguresDelta::default()
                }
            };
            tokio::spawn(async move { store.record(&tenant, stream.id, &delta).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().expect("recorded");
    }
    store.record(&acme, stream.id, &FiguresDelta::default()).await.expect("an empty delta is no error");

    let figures = figures_of(store.as_ref(), &acme, stream.id).await;
    assert_eq!((figures.delivered, figures.failed, figures.retried), (45, 6, 3), "every record counted once");
    let mut want = vec![0; LAG_BUCKETS];
    want[fast] = 36;
    want[slow] = 9;
    assert_eq!(lags(&figures), want);
    assert_eq!(figures.lag_percentile(0.5), Some(lag_bucket_bound(fast)));
    assert_eq!(figures.lag_percentile(1.0), Some(lag_bucket_bound(slow)));
    assert_eq!(figures.last_error, Some(LastError { at: delivered_at, message: "HTTP 500".into() }));
    assert_eq!(figures.last_delivered_at, Some(delivered_at));
    assert_eq!(figures.failing, None, "records never mark a stream failing");
    assert_eq!(store.get(&acme, stream.id).await.unwrap().unwrap().stream, stream, "nor touch its settings");
}

async fn a_failing_transition_is_recorded_once_however_many_race(backend: Backend) {
    let streams = fresh_streams(backend).await;
    let store = streams.store.clone();
    let acme = tenant("acme");
    let stream = destination(&acme, "flaky");
    store.create(&stream).await.unwrap();
    assert!(!store.set_failing(&acme, stream.id, None).await.unwrap(), "healthy already");

    let marks: Vec<_> = (0..8)
        .map(|i| {
            let (store, tenant, mark) = (store.clone(), acme.clone(), failing(&format!("dead letter {i}")));
            tokio::spawn(async move { (store.set_failing(&tenant, stream.id, Some(&mark)).await.unwrap(), mark) })
        })
        .collect();
    let mut changed_it = Vec::new();
    for mark in marks {
        let (changed, mark) = mark.await.unwrap();
        if changed {
            changed_it.push(mark);
        }
    }
    assert_eq!(changed_it.len(), 1, "one transition to failing");
    let figures = figures_of(store.as_ref(), &acme, stream.id).await;
    assert_eq!(figures.failing.as_ref(), Some(&changed_it[0]), "the one that changed it is kept");
    assert!(!store.set_failing(&acme, stream.id, Some(&failing("again"))).await.unwrap());
    store.record(&acme, stream.id, &FiguresDelta { failed: 1, ..FiguresDelta::default() }).await.unwrap();
    assert_eq!(figures_of(store.as_ref(), &acme, stream.id).await.failing.as_ref(), Some(&changed_it[0]));
    assert_eq!(store.failing_count().await.unwrap(), 1);

    let recoveries: Vec<_> = (0..8)
        .map(|_| {
            let (store, tenant) = (store.clone(), acme.clone());
            tokio::spawn(async move { store.set_failing(&tenant, stream.id, None).await.unwrap() })
        })
        .collect();
    let mut recovered = 0;
    for recovery in recoveries {
        recovered += usize::from(recovery.await.unwrap());
    }
    assert_eq!(recovered, 1, "one transition back to healthy");
    let figures = figures_of(store.as_ref(), &acme, stream.id).await;
    assert_eq!(figures.failing, None);
    assert_eq!(figures.failed, 1, "the counters stay");
    assert_eq!(store.failing_count().await.unwrap(), 0);
    assert!(store.set_failing(&acme, stream.id, Some(&failing("once more"))).await.unwrap(), "and it may fail again");
}

async fn failing_streams_are_counted_across_tenants(backend: Backend) {
    let streams = fresh_streams(backend).await;
    let store = streams.store.as_ref();
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let a: Vec<Destination> = (0..3).map(|i| destination(&acme, &format!("a{i}"))).collect();
    let g: Vec<Destination> = (0..2).map(|i| destination(&globex, &format!("g{i}"))).collect();
    for stream in a.iter().chain(&g) {
        store.create(stream).await.unwrap();
    }
    assert_eq!(store.failing_count().await.unwrap(), 0);
    for stream in [&a[0], &a[2], &g[1]] {
        assert!(store.set_failing(&stream.tenant_id, stream.id, Some(&failing("HTTP 410"))).await.unwrap());
    }
    assert_eq!(store.failing_count().await.unwrap(), 3, "every tenant's");
    assert!(store.set_failing(&acme, a[0].id, None).await.unwrap());
    assert_eq!(store.failing_count().await.unwrap(), 2, "a recovered stream no longer counts");
    assert!(store.delete(&globex, g[1].id).await.unwrap());
    assert_eq!(store.failing_count().await.unwrap(), 1, "nor a deleted one");
    let listed = store.list(&acme).await.unwrap();
    let failing_ids: Vec<Uuid> = listed.iter().filter(|s| s.figures.failing.is_some()).map(|s| s.stream.id).collect();
    assert_eq!(failing_ids, vec![a[2].id], "the list shows which");
}

// The job queue: in memory and SQLite (on AWS, SQS is the queue).

/// Runs each named `async fn(Backend)` on the job queues, as `queue_memory::name` and
/// `queue_sqlite::name`.
macro_rules! on_every_queue {
    ($($name:ident),* $(,)?) => {
        mod queue_memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(auditline_tests::Backend::Memory).await
            })*
        }
        mod queue_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(auditline_tests::Backend::Sqlite).await
            })*
        }
    };
}

on_every_queue!(
    a_lease_takes_due_jobs_one_per_stream_skips_busy_streams_and_hides_them_until_it_ends,
    a_settled_job_leaves_its_follow_ups_and_dead_letters,
    one_streams_backlog_never_hides_another_streams_due_job,
);

fn fresh_queue(backend: Backend) -> Arc<dyn JobQueue> {
    match backend {
        Backend::Memory => Arc::new(MemoryJobQueue::default()),
        Backend::Sqlite => Arc::new(fresh_sqlite_store()),
        Backend::Dynamo => unreachable!("jobs wait in SQS on AWS"),
    }
}

fn job(stream: Uuid, due_at: DateTime<Utc>) -> Job {
    let mut job = Job::new(tenant("acme"), stream, vec![Uuid::now_v7(), Uuid::now_v7()], due_at);
    job.enqueued_at = due_at - Duration::seconds(5);
    job
}

fn ids(jobs: &[Job]) -> BTreeSet<Uuid> {
    jobs.iter().map(|j| j.id).collect()
}

const LEASE: StdDuration = StdDuration::from_secs(30);

async fn a_lease_takes_due_jobs_one_per_stream_skips_busy_streams_and_hides_them_until_it_ends(backend: Backend) {
    let queue = fresh_queue(backend);
    let now = now_ms();
    let (s1, s2, s3, s4) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let first = job(s1, now - Duration::seconds(2));
    let second = job(s1, now - Duration::seconds(1));
    let other = job(s2, now - Duration::seconds(1));
    let later = job(s3, now + Duration::seconds(60));
    let busy = job(s4, now);
    queue.enqueue(&[first.clone(), second.clone(), other.clone(), later.clone(), busy.clone()]).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), 5);

    let leased = queue.lease(now, 10, &[s4], LEASE).await.unwrap();
    assert_eq!(ids(&leased), ids(&[first.clone(), other.clone()]), "due only, the oldest of a stream, no busy one");
    assert_eq!(leased.iter().find(|j| j.id == first.id), Some(&first), "a job comes back as it was queued");
    let leased = queue.lease(now, 10, &[], LEASE).await.unwrap();
    assert_eq!(ids(&leased), ids(&[second.clone(), busy.clone()]), "leased jobs are hidden; the rest are due");
    assert!(queue.lease(now, 10, &[], LEASE).await.unwrap().is_empty(), "everything due is leased");
    assert!(queue.lease(now + Duration::seconds(29), 10, &[], LEASE).await.unwrap().is_empty(), "until the lease ends");
    assert_eq!(queue.depth().await.unwrap(), 5, "leased jobs still wait");

    // A lease that ran out (its worker died): the jobs are seen again, still one per stream.
    let again = now + Duration::seconds(31);
    let leased = queue.lease(again, 10, &[], LEASE).await.unwrap();
    let streams: Vec<Uuid> = leased.iter().map(|j| j.stream_id).collect();
    assert_eq!(streams.len(), 3, "{streams:?}");
    assert_eq!(streams.iter().collect::<BTreeSet<_>>(), BTreeSet::from([&s1, &s2, &s4]));
    let rest = queue.lease(again, 10, &[], LEASE).await.unwrap();
    assert_eq!(rest.len(), 1, "the other job of the first stream");
    assert_eq!(rest[0].stream_id, s1);

    let much_later = now + Duration::seconds(120);
    let leased = queue.lease(much_later, 10, &[s1, s2, s4], LEASE).await.unwrap();
    assert_eq!(ids(&leased), ids(std::slice::from_ref(&later)), "a job comes due in time");
    assert_eq!(queue.lease(much_later, 1, &[], LEASE).await.unwrap().len(), 1, "no more than the limit");
}

async fn one_streams_backlog_never_hides_another_streams_due_job(backend: Backend) {
    let queue = fresh_queue(backend);
    let now = now_ms();
    let (slow, other) = (Uuid::now_v7(), Uuid::now_v7());
    let backlog: Vec<Job> =
        (0..500).map(|i| job(slow, now - Duration::seconds(600) + Duration::milliseconds(i))).collect();
    queue.enqueue(&backlog).await.unwrap();
    let waiting = job(other, now - Duration::seconds(1));
    queue.enqueue(std::slice::from_ref(&waiting)).await.unwrap();
    let leased = queue.lease(now, 2, &[], LEASE).await.unwrap();
    assert_eq!(leased.iter().map(|j| j.stream_id).collect::<BTreeSet<_>>(), BTreeSet::from([slow, other]));
    let leased = queue.lease(now, 2, &[slow], LEASE).await.unwrap();
    assert!(leased.is_empty(), "the slow stream is busy, the other one's job is leased: {leased:?}");
}

async fn a_settled_job_leaves_its_follow_ups_and_dead_letters(backend: Backend) {
    let queue = fresh_queue(backend);
    let now = now_ms();
    let stream = Uuid::now_v7();
    let queued = job(stream, now);
    queue.enqueue(std::slice::from_ref(&queued)).await.unwrap();
    let leased = queue.lease(now, 10, &[], LEASE).await.unwrap();
    assert_eq!(leased, vec![queued.clone()]);

    // One entry delivered, one to try again in ten seconds, one given up on.
    let entries = vec![Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    let sent = Job { entry_ids: entries.clone(), ..queued.clone() };
    let retry = Job {
        id: Uuid::now_v7(),
        entry_ids: vec![entries[1]],
        attempts: 1,
        due_at: now + Duration::seconds(10),
        ..sent.clone()
    };
    let outcome = Outcome {
        delivered: 1,
        follow_ups: vec![retry.clone()],
        dead: vec![entries[2]],
        dead_reason: Some("HTTP 400: refused".into()),
    };
    queue.settle(&sent, &outcome).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), 1, "the job is gone, its follow-up waits");
    let dead = queue.dead_letters().await.unwrap();
    let want =
        DeadLetter { job: Job { entry_ids: vec![entries[2]], ..sent.clone() }, reason: "HTTP 400: refused".into() };
    assert_eq!(dead, vec![want], "the dead entries, kept with their reason");

    assert!(queue.lease(now + Duration::seconds(9), 10, &[], LEASE).await.unwrap().is_empty(), "not due yet");
    let leased = queue.lease(now + Duration::seconds(10), 10, &[], LEASE).await.unwrap();
    assert_eq!(leased, vec![retry.clone()]);
    let delivered = Outcome { delivered: 1, ..Outcome::default() };
    queue.settle(&retry, &delivered).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), 0);
    assert_eq!(queue.dead_letters().await.unwrap().len(), 1, "a delivery leaves no dead letter");
    assert!(queue.lease(now + Duration::seconds(3600), 10, &[], LEASE).await.unwrap().is_empty(), "nothing left");
}
