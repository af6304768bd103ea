//! The live feed per tenant: how long one tenant's entries take to reach its clients while another
//! tenant holding 5,000 connections is being served in the same batch, against the same batch
//! without the big tenant.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use auditline::auth::{AuthMethod, Caller};
use auditline::domain::{AuditAction, AuditLogEntry, EntityType, EntryDetails, NewEntry};
use auditline::realtime::fanout::{FanoutSettings, fan_out};
use auditline::realtime::{
    ConnectionFilters, ConnectionStore, MemoryConnections, PushError, Pusher, WebSocketConnectionInfo,
};
use auditline_tests::feed::SlowToLoad;
use auditline_tests::tenant;
use chrono::Utc;

/// The big tenant's connections, and the small tenant's.
const BIG: usize = 5_000;
const SMALL: usize = 10;
/// A PostToConnection round trip inside an AWS region, roughly.
const POST_LATENCY: Duration = Duration::from_millis(2);
const RUNS: usize = 15;
/// Reading connection records, like a DynamoDB Query: about a 1 MB page per 3,000 small records.
const LOAD_PER_THOUSAND: Duration = Duration::from_millis(10);
/// Tenant names chosen so the big one sorts first: the order that used to put the small one last.
const BIG_TENANT: &str = "aaa-bigcorp";
const SMALL_TENANT: &str = "zzz-smallco";

/// Waits `POST_LATENCY` per post and notes when each connection got its first message.
struct Timed {
    started: Mutex<Instant>,
    first: Mutex<HashMap<String, Duration>>,
}

#[async_trait]
impl Pusher for Timed {
    async fn push(&self, connection_id: &str, _: &[u8]) -> Result<(), PushError> {
        tokio::time::sleep(POST_LATENCY).await;
        let at = self.started.lock().unwrap().elapsed();
        self.first.lock().unwrap().entry(connection_id.to_owned()).or_insert(at);
        Ok(())
    }

    async fn close(&self, _: &str) -> Result<(), PushError> {
        Ok(())
    }
}

fn entry(tenant_name: &str) -> AuditLogEntry {
    NewEntry {
        tenant_id: tenant(tenant_name),
        action: AuditAction::Update,
        entity_type: EntityType::Report,
        entity_id: "r-1".into(),
        details: EntryDetails::default(),
    }
    .validate()
    .unwrap()
    .stamp(Utc::now(), 90)
    .unwrap()
}

async fn connect(store: &dyn ConnectionStore, tenant_name: &str, count: usize) {
    let caller = Caller {
        tenant_id: tenant(tenant_name),
        user_id: Some("viewer".into()),
        scopes: vec!["audit:read".into()],
        auth_method: AuthMethod::Jwt,
        credential_expires_at: None,
    };
    let connected = Utc::now() - chrono::Duration::minutes(1);
    for i in 0..count {
        let id = format!("{tenant_name}-{i:05}");
        store.put(&WebSocketConnectionInfo::new(&id, &caller, ConnectionFilters::default(), connected)).await.unwrap();
    }
}

/// The time until the last of the small tenant's connections got its entry, and the whole batch's.
async fn deliver(batch: &[AuditLogEntry], store: &dyn ConnectionStore) -> (Duration, Duration) {
    let pusher = Timed { started: Mutex::new(Instant::now()), first: Mutex::default() };
    let settings = FanoutSettings::default();
    let report = fan_out(batch, store, &pusher, &settings, &Default::default(), Utc::now()).await;
    let whole = pusher.started.lock().unwrap().elapsed();
    assert!(report.failed.is_empty() && report.out_of_time == 0);
    let first = pusher.first.lock().unwrap();
    let small = (0..SMALL).map(|i| first[&format!("{SMALL_TENANT}-{i:05}")]).max().unwrap();
    (small, whole)
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

pub async fn run(out: &mut String) {
    let store = SlowToLoad { inner: MemoryConnections::new(), per_thousand: Duration::ZERO };
    connect(&store, BIG_TENANT, BIG).await;
    connect(&store, SMALL_TENANT, SMALL).await;
    let mut store = store;
    writeln!(
        out,
        "### One batch, two tenants: {BIG} connections of `{BIG_TENANT}`, {SMALL} of `{SMALL_TENANT}`\n\n\
         Every post waits {} (a PostToConnection round trip), 64 connections served at once (the\n\
         default). The small tenant's latency is until the last of its {SMALL} clients has its entry.\n",
        millis(POST_LATENCY)
    )
    .unwrap();
    writeln!(out, "| connection records | batch | small tenant p50 | p99 | whole batch p50 |\n|---|---|---|---|---|")
        .unwrap();
    let alone = [entry(SMALL_TENANT)];
    let shared = [entry(BIG_TENANT), entry(SMALL_TENANT)];
    for (records, per_thousand, name, batch) in [
        ("in memory", Duration::ZERO, "the small tenant's entry alone", &alone[..]),
        ("in memory", Duration::ZERO, "the big tenant's entry first, then the small tenant's", &shared[..]),
        ("read at 10 ms per 1,000", LOAD_PER_THOUSAND, "the small tenant's entry alone", &alone[..]),
        (
            "read at 10 ms per 1,000",
            LOAD_PER_THOUSAND,
            "the big tenant's entry first, then the small tenant's",
            &shared[..],
        ),
    ] {
        store.per_thousand = per_thousand;
        let mut small = Vec::new();
        let mut whole = Vec::new();
        for _ in 0..RUNS {
            let (s, w) = deliver(batch, &store).await;
            small.push(s);
            whole.push(w);
        }
        small.sort_unstable();
        whole.sort_unstable();
        writeln!(
            out,
            "| {records} | {name} | {} | {} | {} |",
            millis(small[RUNS / 2]),
            millis(small[RUNS - 1]),
            millis(whole[RUNS / 2])
        )
        .unwrap();
    }
    writeln!(
        out,
        "\nEach tenant's connections are read on their own and taken from the tenants in turn as they\n\
         arrive: the small tenant's {SMALL} are in the first wave whatever the big tenant holds and\n\
         however long its records take to read. What the small tenant still pays (the difference\n\
         between its rows) is the CPU time of reading the big tenant's records on the same core.\n\
         Served tenant by tenant, it would wait for all {BIG} ({BIG} / 64 × {} ≈ {}).",
        millis(POST_LATENCY),
        millis(POST_LATENCY * (BIG as u32).div_ceil(64))
    )
    .unwrap();
}
