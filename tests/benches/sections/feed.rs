//! Live feed: one batch of 100 entries fanned out to 1,000 matching connections.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use auditline::apigw::stream::{FeedDeps, handle_stream, insert_event};
use auditline::auth::AuthMethod;
use auditline::auth::Caller;
use auditline::domain::{AuditAction, EntityType, EntryDetails, NewEntry};
use auditline::realtime::fanout::FanoutSettings;
use auditline::realtime::{
    ConnectionFilters, ConnectionStore, MemoryConnections, PushError, Pusher, WebSocketConnectionInfo,
};
use auditline::store::dynamo::DynamoConnections;
use auditline::store::dynamo::tables::CONNECTIONS;
use auditline_tests::{fresh_table, local_client, tenant};
use aws_lambda_events::dynamodb::Event;
use chrono::Utc;

const ENTRIES: usize = 100;
const CONNECTIONS_PER_BATCH: usize = 1000;
const RUNS: usize = 20;

/// Counts messages; optionally waits `latency` per message, like a network round trip.
struct InProcess {
    latency: Duration,
    pushed: AtomicUsize,
}

#[async_trait]
impl Pusher for InProcess {
    async fn push(&self, _: &str, message: &[u8]) -> Result<(), PushError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        std::hint::black_box(message);
        self.pushed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn close(&self, _: &str) -> Result<(), PushError> {
        Ok(())
    }
}

fn batch() -> Event {
    let entries: Vec<_> = (0..ENTRIES)
        .map(|i| {
            NewEntry {
                tenant_id: tenant("acme"),
                action: AuditAction::ALL[i % 6],
                entity_type: EntityType::ALL[i % 7],
                entity_id: format!("entity-{i}"),
                details: EntryDetails {
                    project_id: Some("project-1".into()),
                    user_id: Some("user-1".into()),
                    ..EntryDetails::default()
                },
            }
            .validate()
            .unwrap()
            .stamp(Utc::now(), 90)
            .unwrap()
        })
        .collect();
    insert_event(&entries, 1)
}

async fn connect_all(store: &dyn ConnectionStore, gone: usize) {
    let caller = Caller {
        tenant_id: tenant("acme"),
        user_id: Some("viewer".into()),
        scopes: vec!["audit:read".into()],
        auth_method: AuthMethod::Jwt,
        credential_expires_at: None,
    };
    for i in 0..CONNECTIONS_PER_BATCH + gone {
        let id = if i < CONNECTIONS_PER_BATCH { format!("conn-{i:04}") } else { format!("gone-{i:04}") };
        // Connected a minute ago: past the opening grace, so a 410 means gone.
        let connected = Utc::now() - chrono::Duration::minutes(1);
        store.put(&WebSocketConnectionInfo::new(&id, &caller, ConnectionFilters::default(), connected)).await.unwrap();
    }
}

pub async fn run(out: &mut String) {
    let connections = Arc::new(MemoryConnections::new());
    connect_all(connections.as_ref(), 0).await;
    let event = batch();
    writeln!(
        out,
        "### {ENTRIES} entries × {CONNECTIONS_PER_BATCH} matching connections = {} messages per batch\n",
        ENTRIES * CONNECTIONS_PER_BATCH
    )
    .unwrap();
    writeln!(out, "| pusher | handler time p50 | p99 | peak concurrency | messages/s |\n|---|---|---|---|---|")
        .unwrap();
    for (name, latency) in
        [("in-process, no latency", Duration::ZERO), ("in-process, 1 ms per message", Duration::from_millis(1))]
    {
        let pusher = Arc::new(InProcess { latency, pushed: AtomicUsize::new(0) });
        let deps = FeedDeps::new(connections.clone(), pusher.clone(), FanoutSettings::default());
        let runs = if latency.is_zero() { RUNS } else { 3 };
        let mut times = Vec::new();
        let mut peak = 0;
        for _ in 0..runs {
            let e = event.clone();
            let started = Instant::now();
            let (response, report) = handle_stream(e, &deps).await;
            times.push(started.elapsed());
            assert!(response.batch_item_failures.is_empty());
            assert_eq!(report.delivered, ENTRIES * CONNECTIONS_PER_BATCH);
            peak = peak.max(report.peak_concurrency);
        }
        times.sort_unstable();
        let p50 = times[times.len() / 2];
        let p99 = times[times.len() - 1];
        let rate = (ENTRIES * CONNECTIONS_PER_BATCH) as f64 / p50.as_secs_f64();
        writeln!(
            out,
            "| {name} | {:.1} ms | {:.1} ms | {peak} | {rate:.0} |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        )
        .unwrap();
        assert_eq!(pusher.pushed.load(Ordering::Relaxed), runs * ENTRIES * CONNECTIONS_PER_BATCH);
    }
    writeln!(out, "\nPeak concurrency is bounded by `FanoutSettings::concurrency` (64): connections served at once, each receiving its entries in order.").unwrap();

    // DynamoDB requests per batch, with the connection records on the local DynamoDB API.
    let (client, requests) = local_client();
    let table = fresh_table(&client, &CONNECTIONS, "bench-connections").await;
    let store = Arc::new(DynamoConnections::new(client, table));
    const GONE: usize = 10;
    connect_all(store.as_ref(), GONE).await;
    struct SomeGone;
    #[async_trait]
    impl Pusher for SomeGone {
        async fn push(&self, id: &str, _: &[u8]) -> Result<(), PushError> {
            if id.starts_with("gone-") { Err(PushError::Gone) } else { Ok(()) }
        }

        async fn close(&self, _: &str) -> Result<(), PushError> {
            Ok(())
        }
    }
    let deps = FeedDeps::new(store.clone(), Arc::new(SomeGone), FanoutSettings::default());
    requests.reset();
    let (response, report) = handle_stream(batch(), &deps).await;
    assert!(response.batch_item_failures.is_empty());
    let first = requests.get();
    requests.reset();
    handle_stream(batch(), &deps).await;
    let second = requests.get();
    writeln!(
        out,
        "\n| DynamoDB requests per batch (one tenant, connection records on DynamoDB) | requests |\n|---|---|"
    )
    .unwrap();
    writeln!(out, "| {CONNECTIONS_PER_BATCH} live + {GONE} gone connections ({} removed) | {first} (1 Query + {GONE} DeleteItem) |", report.gone.len()).unwrap();
    writeln!(out, "| the next batch, the gone ones now removed | {second} |").unwrap();
    assert_eq!(first as usize, 1 + GONE);
    assert_eq!(second, 1);
}
