//! Delivering a job: up to [`JOB_ENTRIES`] entries of one tenant to one stream. The job names
//! entries by id and the [`Deliverer`] reads them again, so the queue never holds a value and an
//! erasure made before the delivery shows in it. Each attempt's outcome: what was delivered, what
//! is to be tried again later (exponential backoff with jitter, honouring `Retry-After`, for up
//! to [`RetryPolicy::give_up_after`]), and what was given up on — dead-lettered, the stream marked
//! failing and the failure recorded in the trail.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::destination::{Destination, Secrets};
use super::secrets::{SecretBox, SecretContext, open};
use super::store::{Failing, FiguresDelta, LastError, StoredStream, StreamStore, lag_bucket};
use super::trail::Trail;
use super::transport::{EventBus, HttpAnswer, HttpSender, SendError};
use super::vendors::{Outbound, plan};
use crate::domain::{AuditAction, AuditLogEntry, EntityType, EntryDetails, NewEntry, TenantId};

/// Entries per job.
pub const JOB_ENTRIES: usize = 100;
/// How long one attempt at a job may keep sending: no request starts after it, and what was not
/// sent waits for the next attempt (not counted as a failure). A request takes at most
/// [`super::transport::HttpLimits::request`] (10 s), so a job ends well within `stream-deliver`'s
/// 60 s and the local worker's lease, however slow its receiver: a slow receiver never has the
/// function killed with other tenants' jobs of the same batch.
pub const JOB_TIME_BUDGET: Duration = Duration::from_secs(30);
/// Entries read at once while a job is prepared.
const READS_AT_ONCE: usize = 16;
/// How long opened secrets are kept in memory before they are opened again.
const SECRETS_CACHE: Duration = Duration::from_secs(300);
const LAST_ERROR_CHARS: usize = 300;

/// A batch of one stream's entries to deliver, as it waits in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub stream_id: Uuid,
    pub entry_ids: Vec<Uuid>,
    /// When its entries were first queued: the retry window counts from here.
    #[serde(with = "crate::domain::time::serde_millis")]
    pub enqueued_at: DateTime<Utc>,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not to be tried before.
    #[serde(with = "crate::domain::time::serde_millis")]
    pub due_at: DateTime<Utc>,
}

impl Job {
    pub fn new(tenant_id: TenantId, stream_id: Uuid, entry_ids: Vec<Uuid>, now: DateTime<Utc>) -> Job {
        Job { id: Uuid::now_v7(), tenant_id, stream_id, entry_ids, enqueued_at: now, attempts: 0, due_at: now }
    }

    /// The same delivery of `entries` (some of this job's), to be tried at `due_at`.
    fn follow_up(&self, entries: Vec<Uuid>, due_at: DateTime<Utc>, attempts: u32) -> Job {
        Job { id: Uuid::now_v7(), entry_ids: entries, attempts, due_at, ..self.clone() }
    }
}

/// How failed deliveries are tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first retry's delay; each next one doubles, with jitter.
    pub base: Duration,
    /// The longest delay between two attempts (a `Retry-After` may ask for more).
    pub cap: Duration,
    /// How long after a job was queued its entries are given up on.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempts + 1`: `base · 2^attempts` capped, half of it jittered
    /// ("equal jitter": retries of many jobs spread out, yet each waits at least half), or the
    /// receiver's `Retry-After` if that is longer — never longer than the retry window itself (a
    /// receiver's answer is not trusted to name a sane delay).
    pub fn delay(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        let exponential = self.base.saturating_mul(1u32 << attempts.min(20)).min(self.cap);
        let half = exponential / 2;
        let mut jitter = [0u8; 8];
        getrandom::fill(&mut jitter).expect("the system's random source");
        let fraction = u64::from_le_bytes(jitter) as f64 / u64::MAX as f64;
        let jittered = half + half.mul_f64(fraction);
        retry_after.map_or(jittered, |asked| asked.min(self.give_up_after).max(jittered))
    }

    /// When a retry `wanted` from `now` is due: never after `deadline`, whatever was asked.
    fn due(now: DateTime<Utc>, wanted: Duration, deadline: DateTime<Utc>) -> DateTime<Utc> {
        chrono::Duration::from_std(wanted)
            .ok()
            .and_then(|wanted| now.checked_add_signed(wanted))
            .map_or(deadline, |due| due.min(deadline))
    }
}

/// What one attempt at a job came to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub delivered: usize,
    /// Jobs to run later: entries to try again, or a batch cut smaller.
    pub follow_ups: Vec<Job>,
    /// Entries given up on, and why.
    pub dead: Vec<Uuid>,
    pub dead_reason: Option<String>,
}

/// How a test event went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestDelivery {
    pub delivered: bool,
    /// The receiver's HTTP status, for the HTTP kinds.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: u64,
}

/// How one request went.
enum Verdict {
    Delivered,
    Retry {
        after: Option<Duration>,
        error: String,
    },
    /// The receiver will never take it as it is.
    Refused(String),
    /// Too large: cut the batch.
    TooLarge(String),
}

/// Delivers jobs; built once per process.
pub struct Deliverer {
    pub streams: Arc<dyn StreamStore>,
    pub secrets: Arc<dyn SecretBox>,
    pub trail: Arc<dyn Trail>,
    pub http: Arc<dyn HttpSender>,
    /// EventBridge, where deliveries to buses are possible (not in the local gateway without one).
    pub bus: Option<Arc<dyn EventBus>>,
    pub retry: RetryPolicy,
    opened: Mutex<HashMap<(Uuid, u64), (Instant, Secrets)>>,
}

impl Deliverer {
    pub fn new(
        streams: Arc<dyn StreamStore>,
        secrets: Arc<dyn SecretBox>,
        trail: Arc<dyn Trail>,
        http: Arc<dyn HttpSender>,
        bus: Option<Arc<dyn EventBus>>,
        retry: RetryPolicy,
    ) -> Self {
        Deliverer { streams, secrets, trail, http, bus, retry, opened: Mutex::new(HashMap::new()) }
    }

    /// One attempt at `job`. Never fails: whatever goes wrong becomes a retry or a dead letter.
    pub async fn deliver(&self, job: &Job, now: DateTime<Utc>) -> Outcome {
        if job.due_at > now {
            // Early (a queue that cannot hold a message as long as the backoff asks): later.
            return Outcome { follow_ups: vec![job.clone()], ..Outcome::default() };
        }
        let stored = match self.streams.get(&job.tenant_id, job.stream_id).await {
            Ok(Some(stored)) => stored,
            // Deleted: nothing more goes to it.
            Ok(None) => return Outcome::default(),
            Err(e) => return self.retry_whole(job, now, format!("the stream could not be read: {e}")),
        };
        let entries = match self.read_entries(job).await {
            Ok(entries) => entries,
            Err(e) => return self.retry_whole(job, now, format!("the entries could not be read: {e}")),
        };
        let secrets = match self.secrets_of(&stored.stream).await {
            Ok(secrets) => secrets,
            Err(e) => return self.retry_whole(job, now, format!("the stream's secrets could not be opened: {e}")),
        };
        let planned = plan(&stored.stream, &secrets, &entries, now);
        let started = tokio::time::Instant::now();
        let mut unsent: Vec<Uuid> = Vec::new();
        let mut delivered: Vec<Uuid> = Vec::new();
        let mut retry: Vec<Uuid> = Vec::new();
        let mut retry_after: Option<Duration> = None;
        let mut refused: Vec<Uuid> = planned.oversized.clone();
        let mut errors: Vec<String> = Vec::new();
        if !planned.oversized.is_empty() {
            errors.push(format!("{} entries are larger than the destination takes", planned.oversized.len()));
        }
        let mut cut_smaller: Vec<Vec<Uuid>> = Vec::new();
        for request in planned.requests {
            if started.elapsed() >= JOB_TIME_BUDGET {
                unsent.extend_from_slice(request.entries());
                continue;
            }
            for (ids, verdict) in self.send(request, &secrets).await {
                match verdict {
                    Verdict::Delivered => delivered.extend(ids),
                    Verdict::Retry { after, error } => {
                        retry.extend(ids);
                        retry_after = retry_after.max(after);
                        errors.push(error);
                    }
                    Verdict::Refused(error) => {
                        refused.extend(ids);
                        errors.push(error);
                    }
                    Verdict::TooLarge(error) if ids.len() > 1 => {
                        let (a, b) = ids.split_at(ids.len() / 2);
                        cut_smaller.push(a.to_vec());
                        cut_smaller.push(b.to_vec());
                        errors.push(error);
                    }
                    Verdict::TooLarge(error) => {
                        refused.extend(ids);
                        errors.push(error);
                    }
                }
            }
        }
        let last_error = errors.last().map(|e| LastError { at: now, message: shorten(&redact(e, &secrets)) });

        let mut outcome = Outcome { delivered: delivered.len(), ..Outcome::default() };
        outcome.follow_ups.extend(cut_smaller.into_iter().map(|ids| job.follow_up(ids, now, job.attempts)));
        if !unsent.is_empty() {
            // Out of time, not failed: the rest at once, as the same attempt.
            outcome.follow_ups.push(job.follow_up(unsent, now, job.attempts));
        }
        let mut dead = refused;
        if !retry.is_empty() {
            let deadline = job.enqueued_at + self.retry.give_up_after;
            let wanted = self.retry.delay(job.attempts, retry_after);
            let due = RetryPolicy::due(now, wanted, deadline);
            if now >= deadline {
                dead.extend(retry.iter().copied());
            } else {
                outcome.follow_ups.push(job.follow_up(retry.clone(), due, job.attempts + 1));
            }
        }
        let retried =
            outcome.follow_ups.iter().filter(|f| f.attempts > job.attempts).map(|f| f.entry_ids.len()).sum::<usize>();
        let mut delta = FiguresDelta {
            delivered: delivered.len() as u64,
            failed: dead.len() as u64,
            retried: retried as u64,
            error: last_error.clone(),
            delivered_at: (!delivered.is_empty()).then_some(now),
            ..FiguresDelta::default()
        };
        // Lag to when the receiver had it: the attempt's start plus the time its requests took.
        let arrived = now + chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
        let mut buckets: HashMap<usize, u64> = HashMap::new();
        for entry in entries.iter().filter(|e| delivered.contains(&e.id)) {
            let lag = (arrived - entry.timestamp).num_milliseconds().max(0) as u64;
            *buckets.entry(lag_bucket(lag)).or_default() += 1;
        }
        delta.lags = buckets.into_iter().collect();
        if !delta.is_empty()
            && let Err(e) = self.streams.record(&job.tenant_id, job.stream_id, &delta).await
        {
            tracing::warn!(stream = %job.stream_id, error = %e, "the stream's figures were not updated");
        }
        if !dead.is_empty() {
            let reason = last_error.map_or_else(|| "undeliverable".to_owned(), |e| e.message);
            self.mark_failing(&stored, &reason, now).await;
            outcome.dead_reason = Some(reason);
        } else if !delivered.is_empty() && stored.figures.failing.is_some() {
            self.mark_recovered(&stored).await;
        }
        outcome.dead = dead;
        outcome
    }

    /// Sends `entry` to `stream` now, outside the queue (a test event), and says how it went.
    pub async fn test(&self, stream: &Destination, entry: &AuditLogEntry, now: DateTime<Utc>) -> TestDelivery {
        let started = Instant::now();
        let failed = |error: String, status: Option<u16>| TestDelivery {
            delivered: false,
            status,
            error: Some(error),
            latency_ms: started.elapsed().as_millis() as u64,
        };
        let secrets = match self.secrets_of(stream).await {
            Ok(secrets) => secrets,
            Err(e) => return failed(format!("the stream's secrets could not be opened: {e}"), None),
        };
        let planned = plan(stream, &secrets, std::slice::from_ref(entry), now);
        let Some(request) = planned.requests.into_iter().next() else {
            return failed("the test event is larger than the destination takes".into(), None);
        };
        // The HTTP kinds answer with a status worth showing; EventBridge with a verdict per event.
        let answer = match request {
            Outbound::Http { request, .. } => {
                self.http.send(request).await.map(|a| (Some(a.status), judge(&redacted(a, &secrets))))
            }
            events => {
                let mut verdicts = self.send(events, &secrets).await;
                Ok((None, verdicts.pop().map_or(Verdict::Delivered, |(_, v)| v)))
            }
        };
        match answer {
            Ok((status, Verdict::Delivered)) => {
                TestDelivery { delivered: true, status, error: None, latency_ms: started.elapsed().as_millis() as u64 }
            }
            Ok((status, Verdict::Retry { error, .. } | Verdict::Refused(error) | Verdict::TooLarge(error))) => {
                failed(redact(&error, &secrets), status)
            }
            Err(e) => failed(redact(&e.to_string(), &secrets), None),
        }
    }

    /// The whole job again later (nothing was sent), or given up on once its time is out.
    fn retry_whole(&self, job: &Job, now: DateTime<Utc>, error: String) -> Outcome {
        tracing::warn!(stream = %job.stream_id, error = %error, "a delivery could not be prepared");
        let deadline = job.enqueued_at + self.retry.give_up_after;
        if now >= deadline {
            return Outcome { dead: job.entry_ids.clone(), dead_reason: Some(error), ..Outcome::default() };
        }
        let due = RetryPolicy::due(now, self.retry.delay(job.attempts, None), deadline);
        Outcome { follow_ups: vec![job.follow_up(job.entry_ids.clone(), due, job.attempts + 1)], ..Outcome::default() }
    }

    async fn read_entries(&self, job: &Job) -> Result<Vec<AuditLogEntry>, crate::backend::BackendError> {
        let mut entries = Vec::with_capacity(job.entry_ids.len());
        for chunk in job.entry_ids.chunks(READS_AT_ONCE) {
            let reads = chunk.iter().map(|id| self.trail.entry(&job.tenant_id, *id));
            // An entry gone (expired) has nothing left to deliver.
            for read in futures::future::join_all(reads).await {
                entries.extend(read?);
            }
        }
        Ok(entries)
    }

    async fn secrets_of(&self, stream: &Destination) -> Result<Secrets, crate::backend::BackendError> {
        let key = (stream.id, stream.version);
        if let Some((at, secrets)) = self.opened.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && at.elapsed() < SECRETS_CACHE
        {
            return Ok(secrets.clone());
        }
        let context = SecretContext { tenant: &stream.tenant_id, stream: stream.id };
        let secrets = open(self.secrets.as_ref(), context, &stream.sealed_secrets).await?;
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        opened.retain(|_, (at, _)| at.elapsed() < SECRETS_CACHE);
        opened.insert(key, (Instant::now(), secrets.clone()));
        Ok(secrets)
    }

    /// Sends one planned request; answers a verdict per group of its entries (EventBridge judges
    /// each event on its own). A receiver's answer is judged with the stream's secrets taken out.
    async fn send(&self, request: Outbound, secrets: &Secrets) -> Vec<(Vec<Uuid>, Verdict)> {
        match request {
            Outbound::Http { request, entries } => {
                let verdict = match self.http.send(request).await {
                    Ok(answer) => judge(&redacted(answer, secrets)),
                    Err(e) => judge_error(&e),
                };
                vec![(entries, verdict)]
            }
            Outbound::Events { bus: target, events, entries } => {
                let Some(bus) = &self.bus else {
                    let error = "EventBridge is not available to this deployment".to_owned();
                    return vec![(entries, Verdict::Retry { after: None, error })];
                };
                match bus.put_events(&target, &events).await {
                    Ok(results) => entries
                        .into_iter()
                        .zip(results)
                        .map(|(id, failure)| {
                            let verdict = match failure {
                                None => Verdict::Delivered,
                                Some(f) => judge_bus_failure(&f.code, &f.message),
                            };
                            (vec![id], verdict)
                        })
                        .collect(),
                    Err(e) => vec![(entries, judge_error(&e))],
                }
            }
        }
    }

    async fn mark_failing(&self, stored: &StoredStream, reason: &str, now: DateTime<Utc>) {
        let failing = Failing { since: now, reason: reason.to_owned() };
        let stream = &stored.stream;
        match self.streams.set_failing(&stream.tenant_id, stream.id, Some(&failing)).await {
            Ok(true) => {
                let changes = json!({"status": {"old": "healthy", "new": "failing"}, "reason": reason});
                self.record_status(stream, changes).await;
            }
            Ok(false) => {}
            Err(e) => tracing::error!(stream = %stream.id, error = %e, "the stream could not be marked failing"),
        }
    }

    async fn mark_recovered(&self, stored: &StoredStream) {
        let stream = &stored.stream;
        match self.streams.set_failing(&stream.tenant_id, stream.id, None).await {
            Ok(true) => self.record_status(stream, json!({"status": {"old": "failing", "new": "healthy"}})).await,
            Ok(false) => {}
            Err(e) => tracing::error!(stream = %stream.id, error = %e, "the stream could not be marked healthy"),
        }
    }

    async fn record_status(&self, stream: &Destination, changes: serde_json::Value) {
        let record = NewEntry {
            tenant_id: stream.tenant_id.clone(),
            action: AuditAction::Update,
            entity_type: EntityType::LogStream,
            entity_id: stream.id.to_string(),
            details: EntryDetails {
                changes: Some(changes),
                metadata: Some(json!({"name": stream.name})),
                ..EntryDetails::default()
            },
        };
        if let Err(e) = self.trail.record(record).await {
            tracing::error!(stream = %stream.id, error = %e, "a stream's change of status was not recorded");
        }
    }
}

/// What a secret of the stream becomes in any text kept or shown.
const REDACTED: &str = "[redacted]";
/// Secrets this short are not looked for (they would blank out ordinary words); a header value's
/// words are looked for from this length.
const MIN_REDACTED_CHARS: usize = 4;
const MIN_REDACTED_WORD_CHARS: usize = 8;

/// `text` with every secret of the stream taken out: the HEC token or Datadog key, the custom
/// headers' values (whole, each of their words, and as JSON would escape them) and the signing
/// secrets. A receiver that shows the request back in its error (echo services, some proxies'
/// error pages) would otherwise put them in `last_error`, the failing reason, the trail's record
/// and the health check, which other admins and `audit:read` callers see.
pub fn redact(text: &str, secrets: &Secrets) -> String {
    let mut needles: Vec<String> = Vec::new();
    let values = secrets
        .token
        .iter()
        .map(String::as_str)
        .chain(secrets.headers.iter().map(|(_, v)| v.as_str()))
        .chain(secrets.signing.iter().map(|s| s.secret.as_str()));
    for value in values {
        let value = value.trim();
        if value.chars().count() >= MIN_REDACTED_CHARS {
            needles.push(value.to_owned());
            let escaped = serde_json::to_string(value).unwrap_or_default();
            needles.push(escaped.trim_matches('"').to_owned());
        }
        needles.extend(
            value
                .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
                .filter(|w| w.chars().count() >= MIN_REDACTED_WORD_CHARS)
                .map(str::to_owned),
        );
    }
    // The longest first, so a value is taken out whole before its words are looked for.
    needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    needles.dedup();
    let mut text = text.to_owned();
    for needle in needles.iter().filter(|n| !n.is_empty()) {
        if text.contains(needle.as_str()) {
            text = text.replace(needle.as_str(), REDACTED);
        }
    }
    text
}

/// A receiver's answer with the stream's secrets taken out of its body (before it is cut short,
/// so no part of one survives the cut).
fn redacted(mut answer: HttpAnswer, secrets: &Secrets) -> HttpAnswer {
    answer.body = redact(&answer.body, secrets);
    answer
}

fn shorten(text: &str) -> String {
    let mut short: String = text.chars().filter(|c| !c.is_control()).take(LAST_ERROR_CHARS).collect();
    if text.chars().count() > LAST_ERROR_CHARS {
        short.push('…');
    }
    short
}

/// A receiver's answer judged: 2xx delivered; 408, 425, 429 and 5xx retried (after its
/// `Retry-After`); 413 cut smaller; 400 and 422 refused for good; anything else — a redirect (never
/// followed), 401/403/404 (a setting the tenant can fix) — retried until the time is out.
fn judge(answer: &HttpAnswer) -> Verdict {
    let status = answer.status;
    let excerpt = shorten(answer.body.trim());
    let error = if excerpt.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {excerpt}") };
    match status {
        200..=299 => Verdict::Delivered,
        413 => Verdict::TooLarge(error),
        400 | 422 => Verdict::Refused(error),
        300..=399 => Verdict::Retry {
            after: None,
            error: format!("HTTP {status}: the receiver redirected; redirects are not followed"),
        },
        _ => Verdict::Retry { after: answer.retry_after.as_deref().and_then(retry_after), error },
    }
}

fn judge_error(e: &SendError) -> Verdict {
    Verdict::Retry { after: None, error: e.to_string() }
}

/// EventBridge's per-event error codes: throttling and internal failures are retried, a malformed
/// event refused; access and missing-bus errors are retried (the tenant can fix its bus policy).
fn judge_bus_failure(code: &str, message: &str) -> Verdict {
    let error = shorten(&format!("EventBridge {code}: {message}"));
    if code.contains("Malformed") || code.contains("InvalidArgument") || code.contains("Validation") {
        Verdict::Refused(error)
    } else {
        Verdict::Retry { after: None, error }
    }
}

/// `Retry-After`: seconds, or an HTTP date.
pub fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.to_utc();
    Some((at - Utc::now()).to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        let policy =
            RetryPolicy { base: Duration::from_secs(1), cap: Duration::from_secs(60), ..RetryPolicy::default() };
        for attempts in 0..10 {
            let full = Duration::from_secs(1 << attempts).min(Duration::from_secs(60));
            let delay = policy.delay(attempts, None);
            assert!(
                delay >= full / 2 && delay <= full,
                "attempt {attempts}: {delay:?} within [{:?}, {full:?}]",
                full / 2
            );
        }
        assert_eq!(policy.delay(0, Some(Duration::from_secs(30))), Duration::from_secs(30));
        assert!(policy.delay(30, None) <= Duration::from_secs(60));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO), "a date passed");
        let later = (Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
        let read = retry_after(&later).expect("a date");
        assert!(read > Duration::from_secs(85) && read <= Duration::from_secs(90));
        assert_eq!(retry_after("soon"), None);
    }

    #[test]
    fn answers_are_judged_by_status() {
        let answer =
            |status: u16| HttpAnswer { status, retry_after: Some("7".into()), location: None, body: String::new() };
        assert!(matches!(judge(&answer(202)), Verdict::Delivered));
        assert!(matches!(judge(&answer(429)), Verdict::Retry { after: Some(d), .. } if d == Duration::from_secs(7)));
        assert!(matches!(judge(&answer(503)), Verdict::Retry { .. }));
        assert!(matches!(judge(&answer(400)), Verdict::Refused(_)));
        assert!(matches!(judge(&answer(413)), Verdict::TooLarge(_)));
        assert!(matches!(judge(&answer(302)), Verdict::Retry { error, .. } if error.contains("not followed")));
        assert!(matches!(judge(&answer(401)), Verdict::Retry { .. }));
    }
}
