//! Fan-out: deliver a batch of new entries to every connection allowed to see each.
//!
//! Per batch: entries are grouped by tenant and each tenant's connections are loaded once. Every
//! connection receives its entries in batch order (one task per connection, sending in sequence),
//! and up to `concurrency` connections are served at once, taken from the tenants in turn so that a
//! tenant with thousands of connections cannot keep another tenant's few waiting. A connection that
//! is gone (410) has its record removed and is not a failure. Other failures are retried with
//! backoff while the batch's time `budget` lasts: a connection waits its backoff out without
//! holding one of the `concurrency` places, then goes on from where it stopped.
//!
//! A connection that still missed entries gets a *strike* on its record. Below `max_strikes` its
//! missed entries are reported, so the stream redelivers them; at `max_strikes` the connection is
//! closed and forgotten instead (its client reconnects and catches up over HTTP), so one bad
//! connection cannot fail entries for everyone else nor hold the shard back for every tenant.
//! When a batch had a failure, the connections that did get its entries are remembered
//! ([`Redeliveries`]), so its redelivery reaches only the ones still missing them. Delivery is at
//! least once: clients de-duplicate by entry id.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::Either;
use serde::Serialize;
use tokio::time::Instant;

use super::redelivery::Redeliveries;
use super::{ConnectionStore, PushError, Pusher, WebSocketConnectionInfo};
use crate::domain::time::serde_millis;
use crate::domain::{AuditAction, AuditLogEntry, EntityType, TenantId};

/// API Gateway's largest WebSocket message (PostToConnection data).
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// API Gateway answers 410 to posts for a connection still inside its `$connect`; a connection this
/// young is not deleted on a 410 (it is opening, not gone), and missing one message then is no failure.
pub const OPENING_GRACE: chrono::Duration = chrono::Duration::seconds(10);

#[derive(Debug, Clone)]
pub struct FanoutSettings {
    /// Connections served at once.
    pub concurrency: usize,
    /// Attempts per message for failures a retry may cure.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub retry_base: Duration,
    /// Messages larger than this go out as a compact notice.
    pub max_message_bytes: usize,
    /// How long one batch may take; what is not delivered by then counts as missed. Keep it well
    /// under the stream function's timeout (the template test checks).
    pub budget: Duration,
    /// Batches a connection may miss before it is closed instead of failing entries again.
    pub max_strikes: u32,
}

impl FanoutSettings {
    pub const DEFAULT_BUDGET: Duration = Duration::from_secs(20);
    pub const DEFAULT_MAX_STRIKES: u32 = 3;
}

impl Default for FanoutSettings {
    fn default() -> Self {
        FanoutSettings {
            concurrency: 64,
            max_attempts: 3,
            retry_base: Duration::from_millis(50),
            max_message_bytes: MAX_MESSAGE_BYTES,
            budget: Self::DEFAULT_BUDGET,
            max_strikes: Self::DEFAULT_MAX_STRIKES,
        }
    }
}

/// The message a client receives for a new entry.
#[derive(Serialize)]
struct EntryMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    entry: &'a AuditLogEntry,
}

/// What is sent instead when an entry is too large for one WebSocket message: enough to show it in
/// a feed and to fetch it whole with `GET /audit/logs/{id}`.
#[derive(Serialize)]
struct NoticeMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    reason: &'static str,
    entry: EntrySummary<'a>,
}

#[derive(Serialize)]
struct EntrySummary<'a> {
    id: uuid::Uuid,
    #[serde(with = "serde_millis")]
    timestamp: DateTime<Utc>,
    action: AuditAction,
    entity_type: EntityType,
    entity_id: &'a str,
    project_id: Option<&'a str>,
    user_id: Option<&'a str>,
    tenant_id: &'a TenantId,
}

/// What a connection that may not read an erasure record whole receives instead: the entries to
/// drop and the fields erased, so that a client holding a copy can drop it.
#[derive(Serialize)]
struct ErasureNotice<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    record: uuid::Uuid,
    entries: &'a [uuid::Uuid],
    fields: &'a [String],
}

/// For an erasure record, its notice (`{"type": "erasure", "record", "entries", "fields"}`).
pub fn erasure_notice_for(entry: &AuditLogEntry) -> Option<Vec<u8>> {
    let (entries, fields) = crate::erasure::named_by_record(entry)?;
    let notice = ErasureNotice { kind: "erasure", record: entry.id, entries: &entries, fields: &fields };
    serde_json::to_vec(&notice).ok()
}

/// The full message (`{"type": "audit_entry", "entry": …}`), and the compact notice.
pub fn messages_for(entry: &AuditLogEntry) -> (Vec<u8>, Vec<u8>) {
    let full = serde_json::to_vec(&EntryMessage { kind: "audit_entry", entry }).unwrap_or_default();
    let notice = NoticeMessage {
        kind: "audit_entry_notice",
        reason: "too_large",
        entry: EntrySummary {
            id: entry.id,
            timestamp: entry.timestamp,
            action: entry.action,
            entity_type: entry.entity_type,
            entity_id: &entry.entity_id,
            project_id: entry.project_id.as_deref(),
            user_id: entry.user_id.as_deref(),
            tenant_id: &entry.tenant_id,
        },
    };
    (full, serde_json::to_vec(&notice).unwrap_or_default())
}

/// What a fan-out did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FanoutReport {
    /// Messages delivered.
    pub delivered: usize,
    /// Entries sent as a notice because they were too large.
    pub notices: usize,
    /// Connections found gone, whose records were removed.
    pub gone: Vec<String>,
    /// Connections that answered 410 while still opening (kept).
    pub opening: usize,
    /// Connections that missed entries and were struck (their entries are in `failed`).
    pub struck: Vec<String>,
    /// Connections closed and forgotten after `max_strikes` missed batches.
    pub dropped: Vec<String>,
    /// Connections the time budget ran out on before all their entries were sent.
    pub out_of_time: usize,
    /// Indexes (into the batch) of entries that could not reach some allowed connection.
    pub failed: BTreeSet<usize>,
    /// Most connections served at the same moment.
    pub peak_concurrency: usize,
    /// Messages not sent because the connection had the entry from an earlier delivery of its batch.
    pub skipped_redelivered: usize,
}

struct Prepared {
    message: Arc<Vec<u8>>,
    notice: Arc<Vec<u8>>,
    /// For an erasure record: the notice sent to connections that may not read it whole.
    erasure: Option<Arc<Vec<u8>>>,
}

/// What one connection's task achieved.
#[derive(Default)]
struct ConnectionOutcome {
    /// Entries it received (indexes into the batch).
    delivered: Vec<usize>,
    notices: usize,
    gone: bool,
    opening: bool,
    out_of_time: bool,
    /// Entries it should have had and did not get.
    missed: Vec<usize>,
    /// Stopped at a failure a retry may cure: to be resumed from here after the pass's backoff.
    retry: Option<Resume>,
}

impl ConnectionOutcome {
    /// Adds what a resumed pass achieved.
    fn absorb(&mut self, later: ConnectionOutcome) {
        self.delivered.extend(later.delivered);
        self.notices += later.notices;
        self.gone |= later.gone;
        self.opening |= later.opening;
        self.out_of_time |= later.out_of_time;
        self.missed.extend(later.missed);
        self.retry = later.retry;
    }
}

/// Where a connection's sending stands between passes: the position of its next entry, and the
/// attempts already made at it.
#[derive(Debug, Clone, Copy, Default)]
struct Resume {
    position: usize,
    attempts: u32,
}

/// One piece of a batch's work: a connection and the entries (indexes) it may receive, or the
/// entries of a tenant whose connections could not be loaded.
enum Work {
    Serve(WebSocketConnectionInfo, Vec<usize>),
    Unloaded(Vec<usize>),
}

/// What a connection's turn ended in: served (done, or stopped for a retry), or its backoff over.
#[allow(clippy::large_enum_variant, reason = "one per connection per batch, moved once")]
enum Step {
    Served(WebSocketConnectionInfo, Vec<usize>, ConnectionOutcome),
    Woke(WebSocketConnectionInfo, Vec<usize>, ConnectionOutcome),
}

pub async fn fan_out(
    entries: &[AuditLogEntry],
    connections: &dyn ConnectionStore,
    pusher: &dyn Pusher,
    settings: &FanoutSettings,
    recent: &Redeliveries,
    now: DateTime<Utc>,
) -> FanoutReport {
    let deadline = Instant::now() + settings.budget;
    let mut report = FanoutReport::default();
    let mut by_tenant: BTreeMap<&TenantId, Vec<usize>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        by_tenant.entry(&e.tenant_id).or_default().push(i);
    }
    let prepared: Vec<Prepared> = entries
        .iter()
        .map(|e| {
            let (full, notice) = messages_for(e);
            let notice = Arc::new(notice);
            let message = if full.len() > settings.max_message_bytes { notice.clone() } else { Arc::new(full) };
            Prepared { message, notice, erasure: erasure_notice_for(e).map(Arc::new) }
        })
        .collect();

    let skipped = AtomicUsize::new(0);
    // One stream of work per tenant: its connections once loaded, each with the entries it may
    // receive. `select_all` takes from the tenants in turn as their loads complete, so a tenant
    // with thousands of connections delays neither another's load nor its place in the queue.
    let skipped = &skipped;
    let tenants = by_tenant.into_iter().map(|(tenant, indexes)| {
        futures::stream::once(async move { (tenant, connections.tenant_connections(tenant, now).await, indexes) })
            .flat_map(move |(tenant, loaded, indexes)| {
                // Lazily: a connection's entries are matched when it is taken, not all up front.
                let work: Box<dyn Iterator<Item = Work> + Send> = match loaded {
                    Ok(list) => Box::new(list.into_iter().filter_map(move |connection| {
                        let mine: Vec<usize> = indexes
                            .iter()
                            .copied()
                            .filter(|i| {
                                connection.may_receive(&entries[*i])
                                    || connection.may_receive_erasure_notice(&entries[*i])
                            })
                            .filter(|i| {
                                let had = recent.already_delivered(entries[*i].id, &connection.connection_id);
                                skipped.fetch_add(usize::from(had), Ordering::Relaxed);
                                !had
                            })
                            .collect();
                        (!mine.is_empty()).then_some(Work::Serve(connection, mine))
                    })),
                    Err(e) => {
                        tracing::error!(tenant = %tenant, error = %e, "connections could not be loaded");
                        Box::new(std::iter::once(Work::Unloaded(indexes)))
                    }
                };
                futures::stream::iter(work)
            })
            .boxed()
    });

    // Serves a connection from where it stopped (a new one from its start), adding to its outcome.
    let serve_from = |connection: WebSocketConnectionInfo, mine: Vec<usize>, mut outcome: ConnectionOutcome| {
        let prepared = &prepared;
        async move {
            let from = outcome.retry.take().unwrap_or_default();
            let later = serve(&connection, &mine, from, prepared, entries, pusher, settings, now, deadline).await;
            outcome.absorb(later);
            Step::Served(connection, mine, outcome)
        }
    };

    // Up to `concurrency` connections are served at once. One stopped by a failure a retry may
    // cure gives up its place while it waits out its backoff, then queues to resume where it
    // stopped, ahead of connections not yet started: a few throttled posts do not hold the batch.
    let limit = settings.concurrency.max(1);
    let mut work = futures::stream::select_all(tenants);
    let mut work_done = false;
    let mut pending = futures::stream::FuturesUnordered::new();
    let (mut serving, mut peak) = (0, 0);
    let mut woken: VecDeque<(WebSocketConnectionInfo, Vec<usize>, ConnectionOutcome)> = VecDeque::new();
    let mut finished: Vec<(String, ConnectionOutcome)> = Vec::new();
    loop {
        while serving < limit {
            let Some((connection, mine, outcome)) = woken.pop_front() else { break };
            pending.push(Either::Left(serve_from(connection, mine, outcome)));
            serving += 1;
            peak = peak.max(serving);
        }
        let want_work = serving < limit && !work_done;
        if !want_work && pending.is_empty() {
            break;
        }
        tokio::select! {
            next = work.next(), if want_work => match next {
                Some(Work::Serve(connection, mine)) => {
                    pending.push(Either::Left(serve_from(connection, mine, ConnectionOutcome::default())));
                    serving += 1;
                    peak = peak.max(serving);
                }
                Some(Work::Unloaded(indexes)) => report.failed.extend(indexes),
                None => work_done = true,
            },
            Some(step) = pending.next(), if !pending.is_empty() => match step {
                Step::Served(connection, mine, mut outcome) => {
                    serving -= 1;
                    match outcome.retry {
                        Some(at) => {
                            let delay = settings.retry_base * 2u32.pow(at.attempts.saturating_sub(1));
                            if Instant::now() + delay >= deadline {
                                outcome.retry = None;
                                outcome.out_of_time = true;
                                outcome.missed.extend(&mine[at.position..]);
                                finished.push((connection.connection_id, outcome));
                            } else {
                                pending.push(Either::Right(async move {
                                    tokio::time::sleep(delay).await;
                                    Step::Woke(connection, mine, outcome)
                                }));
                            }
                        }
                        None => finished.push((connection.connection_id, outcome)),
                    }
                }
                Step::Woke(connection, mine, outcome) => woken.push_back((connection, mine, outcome)),
            },
        }
    }

    let mut delivered_to: Vec<Vec<String>> = vec![Vec::new(); entries.len()];
    for (connection_id, outcome) in finished {
        report.delivered += outcome.delivered.len();
        for &i in &outcome.delivered {
            delivered_to[i].push(connection_id.clone());
        }
        report.notices += outcome.notices;
        report.opening += usize::from(outcome.opening);
        report.out_of_time += usize::from(outcome.out_of_time);
        if outcome.gone {
            // The stale connection, never the sender: there is no sender here, only the entry.
            if let Err(e) = connections.remove(&connection_id).await {
                tracing::warn!(connection_id, error = %e, "gone connection not removed; its TTL will");
            }
            report.gone.push(connection_id);
        } else if !outcome.missed.is_empty() {
            settle_missed(&connection_id, outcome.missed, connections, pusher, settings, &mut report).await;
        }
    }
    report.peak_concurrency = peak;
    report.skipped_redelivered = skipped.load(Ordering::Relaxed);
    // A batch with a failure comes again from its first failed record: remember who has what of
    // it. A batch without one will not come again: nothing of it needs remembering.
    for (entry, connections) in entries.iter().zip(delivered_to) {
        if report.failed.is_empty() {
            recent.forget(entry.id);
        } else {
            recent.remember(entry.id, connections);
        }
    }
    report
}

/// A connection missed entries: strike it, and either report the entries (so they come again) or,
/// at the limit, close the connection and let the entries go for it.
async fn settle_missed(
    connection_id: &str,
    missed: Vec<usize>,
    connections: &dyn ConnectionStore,
    pusher: &dyn Pusher,
    settings: &FanoutSettings,
    report: &mut FanoutReport,
) {
    let strikes = match connections.strike(connection_id).await {
        Ok(strikes) => strikes,
        Err(e) => {
            tracing::warn!(connection_id, error = %e, "strike not recorded");
            0
        }
    };
    if strikes >= settings.max_strikes {
        tracing::warn!(connection_id, strikes, "connection keeps failing: closed and forgotten");
        if let Err(e) = pusher.close(connection_id).await {
            tracing::warn!(connection_id, error = ?e, "connection not closed; its record is removed anyway");
        }
        if let Err(e) = connections.remove(connection_id).await {
            tracing::warn!(connection_id, error = %e, "dropped connection's record not removed; its TTL will");
        }
        report.dropped.push(connection_id.to_owned());
    } else {
        report.failed.extend(missed);
        report.struck.push(connection_id.to_owned());
    }
}

/// Sends one connection its entries in order, from `from`, until done, gone, out of time, or
/// stopped by a failure a retry may cure (`retry`: the caller waits, then resumes it).
#[allow(clippy::too_many_arguments, reason = "the batch's shared state, passed down as borrowed")]
async fn serve(
    connection: &WebSocketConnectionInfo,
    indexes: &[usize],
    from: Resume,
    prepared: &[Prepared],
    entries: &[AuditLogEntry],
    pusher: &dyn Pusher,
    settings: &FanoutSettings,
    now: DateTime<Utc>,
    deadline: Instant,
) -> ConnectionOutcome {
    let connection_id = connection.connection_id.as_str();
    let mut outcome = ConnectionOutcome::default();
    for (position, &i) in indexes.iter().enumerate().skip(from.position) {
        let p = &prepared[i];
        // An erasure record the connection may not read whole: its notice instead.
        let mut message = match &p.erasure {
            Some(erasure) if !connection.may_receive(&entries[i]) => erasure,
            _ => &p.message,
        };
        let mut attempt = if position == from.position { from.attempts } else { 0 };
        loop {
            attempt += 1;
            // The budget bounds every post too: one that hangs must not hold the batch.
            let Ok(pushed) = tokio::time::timeout_at(deadline, pusher.push(connection_id, message)).await else {
                outcome.out_of_time = true;
                outcome.missed.extend(&indexes[position..]);
                return outcome;
            };
            match pushed {
                Ok(()) => {
                    outcome.delivered.push(i);
                    outcome.notices += usize::from(Arc::ptr_eq(message, &p.notice));
                    break;
                }
                Err(PushError::Gone) if now - connection.connected_at < OPENING_GRACE => {
                    outcome.opening = true;
                    return outcome;
                }
                Err(PushError::Gone) => {
                    outcome.gone = true;
                    return outcome;
                }
                Err(PushError::TooLarge) if !Arc::ptr_eq(message, &p.notice) => message = &p.notice,
                Err(e) if e.is_retryable() && attempt < settings.max_attempts => {
                    outcome.retry = Some(Resume { position, attempts: attempt });
                    return outcome;
                }
                Err(e) => {
                    tracing::warn!(connection_id, error = ?e, attempts = attempt, "entry not delivered");
                    outcome.missed.push(i);
                    break;
                }
            }
        }
    }
    outcome
}
