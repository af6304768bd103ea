//! The EventBridge adapter of log streams: `PutEvents` of up to ten events to the bus a tenant
//! names, as the role the tenant made for it, in the bus's region; each event's failure reported
//! on its own.
//!
//! The role is assumed through STS with the tenant's external id and a session policy that allows
//! `events:PutEvents` on that one bus and nothing else. Before that, the role is asked for with an
//! external id nobody was given: a role that grants it does not require the id, so any tenant of
//! the deployment could use it, and it is refused. Credentials are kept per stream until five
//! minutes before they expire; a refusal is kept a minute, so a misconfigured role costs STS a
//! call a minute, not one per delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::config::timeout::TimeoutConfig;
use aws_sdk_eventbridge::config::{Credentials, Region};
use aws_sdk_eventbridge::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde_json::json;
use uuid::Uuid;

use crate::streams::transport::{BusEvent, BusFailure, BusTarget, EventBus, SendError};

/// Streams whose credentials are kept (the least recently prepared go first).
const MAX_KEPT: usize = 1_000;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Credentials asked for: an hour (the most a role allows unless raised), renewed 5 minutes early.
const SESSION: Duration = Duration::from_secs(3600);
const RENEW_BEFORE: Duration = Duration::from_secs(300);
/// How long a refusal (the role's or STS's) is answered without asking STS again.
const REFUSAL_KEPT: Duration = Duration::from_secs(60);

/// What is kept for a stream's target and region.
enum Kept {
    Ready { client: Arc<Client>, renew_at: Instant, prepared_at: Instant },
    Refused { reason: String, until: Instant, prepared_at: Instant },
}

impl Kept {
    fn prepared_at(&self) -> Instant {
        match self {
            Kept::Ready { prepared_at, .. } | Kept::Refused { prepared_at, .. } => *prepared_at,
        }
    }
}

type Key = (BusTarget, String);

/// Whether a role is first asked for with an id nobody was given (and refused if it grants it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustProbe {
    Require,
    /// For a local STS emulator, which grants any external id (moto does not read trust policies).
    Skip,
}

pub struct AwsEventBus {
    sts: aws_sdk_sts::Client,
    probe: TrustProbe,
    /// The configuration PutEvents starts from (region and credentials replaced per target).
    events: SdkConfig,
    events_endpoint: Option<String>,
    kept: Mutex<HashMap<Key, Kept>>,
}

impl AwsEventBus {
    /// For a Lambda function: the deployment's configuration; endpoints overridden for tests.
    pub fn from_environment(shared: &SdkConfig, events_endpoint: Option<&str>, sts_endpoint: Option<&str>) -> Self {
        let timeouts = TimeoutConfig::builder().operation_timeout(CALL_TIMEOUT).build();
        let mut sts = aws_sdk_sts::config::Builder::from(shared).timeout_config(timeouts.clone());
        if let Some(endpoint) = sts_endpoint {
            sts = sts.endpoint_url(endpoint);
        }
        AwsEventBus {
            sts: aws_sdk_sts::Client::from_conf(sts.build()),
            probe: TrustProbe::Require,
            events: shared.to_builder().timeout_config(timeouts).build(),
            events_endpoint: events_endpoint.map(str::to_owned),
            kept: Mutex::new(HashMap::new()),
        }
    }

    /// For the local gateway: a local EventBridge API and STS (moto serves both).
    pub async fn for_local_endpoint(events_endpoint: &str, sts_endpoint: &str, probe: TrustProbe) -> Self {
        let local = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "auditline-local"))
            .load()
            .await;
        AwsEventBus { probe, ..Self::from_environment(&local, Some(events_endpoint), Some(sts_endpoint)) }
    }

    /// The client that puts on the target's bus, in its region, as its role.
    async fn client(&self, target: &BusTarget) -> Result<Arc<Client>, SendError> {
        let region = bus_region(&target.bus_arn)
            .ok_or_else(|| SendError::Failed("the event bus ARN names no region".to_owned()))?;
        let key = (target.clone(), region.to_owned());
        let now = Instant::now();
        match self.kept.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            Some(Kept::Ready { client, renew_at, .. }) if *renew_at > now => return Ok(client.clone()),
            Some(Kept::Refused { reason, until, .. }) if *until > now => return Err(SendError::Failed(reason.clone())),
            _ => {}
        }
        let kept = match self.prepare(target, region).await {
            Ok(kept) => kept,
            // STS did not answer: nothing learnt about the role, nothing kept.
            Err(Unanswered(reason)) => return Err(SendError::Failed(reason)),
        };
        let answer = match &kept {
            Kept::Ready { client, .. } => Ok(client.clone()),
            Kept::Refused { reason, .. } => Err(SendError::Failed(reason.clone())),
        };
        let mut all = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if all.len() >= MAX_KEPT && !all.contains_key(&key) {
            let oldest = all.iter().min_by_key(|(_, k)| k.prepared_at()).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                all.remove(&oldest);
            }
        }
        all.insert(key, kept);
        answer
    }

    /// Checks the role requires the external id, then assumes it for this bus alone.
    async fn prepare(&self, target: &BusTarget, region: &str) -> Result<Kept, Unanswered> {
        let prepared_at = Instant::now();
        let refused = |reason: String| Kept::Refused { reason, until: prepared_at + REFUSAL_KEPT, prepared_at };
        let assuming = format!("assuming {} (external id {})", short(&target.role_arn), target.external_id);
        if target.role_arn.is_empty() {
            return Ok(refused("the stream names no role_arn to put events as: update the stream with one".into()));
        }
        let probe = format!("{}:probe-{}", target.external_id, Uuid::now_v7().simple());
        let probed = match self.probe {
            TrustProbe::Require => Some(self.assume(target, &probe, Duration::from_secs(900)).await),
            TrustProbe::Skip => None,
        };
        match probed {
            None => {}
            Some(Ok(_)) => {
                return Ok(refused(format!(
                    "{assuming}: the role's trust policy does not require the external id (it granted another): \
                     add the condition sts:ExternalId = {}",
                    target.external_id
                )));
            }
            Some(Err(e)) if e.as_service_error().is_some() => {}
            Some(Err(e)) => return Err(Unanswered(format!("{assuming}: {}", brief(&e)))),
        }
        let assumed = match self.assume(target, &target.external_id, SESSION).await {
            Ok(assumed) => assumed,
            Err(e) if e.as_service_error().is_some() => return Ok(refused(format!("{assuming}: {}", brief(&e)))),
            Err(e) => return Err(Unanswered(format!("{assuming}: {}", brief(&e)))),
        };
        let Some(credentials) = assumed.credentials else {
            return Err(Unanswered(format!("{assuming}: STS answered without credentials")));
        };
        let expires = std::time::SystemTime::try_from(credentials.expiration)
            .unwrap_or_else(|_| std::time::SystemTime::now() + Duration::from_secs(900));
        let lasts = expires.duration_since(std::time::SystemTime::now()).unwrap_or_default();
        let credentials = Credentials::new(
            credentials.access_key_id,
            credentials.secret_access_key,
            Some(credentials.session_token),
            Some(expires),
            "auditline-stream-role",
        );
        let mut config = aws_sdk_eventbridge::config::Builder::from(&self.events)
            .region(Region::new(region.to_owned()))
            .credentials_provider(credentials);
        if let Some(endpoint) = &self.events_endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(Kept::Ready {
            client: Arc::new(Client::from_conf(config.build())),
            renew_at: prepared_at + lasts.saturating_sub(RENEW_BEFORE),
            prepared_at,
        })
    }

    async fn assume(
        &self,
        target: &BusTarget,
        external_id: &str,
        lasting: Duration,
    ) -> Result<
        aws_sdk_sts::operation::assume_role::AssumeRoleOutput,
        SdkError<aws_sdk_sts::operation::assume_role::AssumeRoleError>,
    > {
        // Whatever else the role may do, these credentials may only put on this bus.
        let only_this_bus = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "events:PutEvents", "Resource": target.bus_arn}]});
        self.sts
            .assume_role()
            .role_arn(&target.role_arn)
            .external_id(external_id)
            .role_session_name(&target.session_name)
            .policy(only_this_bus.to_string())
            .duration_seconds(i32::try_from(lasting.as_secs()).unwrap_or(900))
            .send()
            .await
    }
}

/// STS gave no answer (a timeout, no connection): try again later, nothing learnt.
struct Unanswered(String);

/// What went wrong, from the service's code and message (never the raw response, which names
/// the deployment's own role and account).
fn brief<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> String {
    match e {
        SdkError::ServiceError(service) => {
            let error = service.err();
            let text = format!("{}: {}", error.code().unwrap_or("error"), error.message().unwrap_or("no message"));
            text.chars().take(200).collect()
        }
        SdkError::TimeoutError(_) => "no answer in time".to_owned(),
        SdkError::DispatchFailure(_) => "could not connect".to_owned(),
        SdkError::ResponseError(_) => "an answer that could not be read".to_owned(),
        _ => "the request could not be made".to_owned(),
    }
}

/// A role ARN in a message: its start, when long.
fn short(arn: &str) -> String {
    if arn.chars().count() <= 120 {
        arn.to_owned()
    } else {
        format!("{}…", arn.chars().take(120).collect::<String>())
    }
}

/// `arn:<partition>:events:<region>:<account>:event-bus/<name>` → its region.
fn bus_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

#[async_trait]
impl EventBus for AwsEventBus {
    async fn put_events(&self, target: &BusTarget, events: &[BusEvent]) -> Result<Vec<Option<BusFailure>>, SendError> {
        let client = self.client(target).await?;
        let entries = events
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&target.bus_arn)
                    .source(&e.source)
                    .detail_type(&e.detail_type)
                    .detail(&e.detail)
                    .time(DateTime::from_millis(e.time.timestamp_millis()))
                    .build()
            })
            .collect();
        let out = client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| SendError::Failed(format!("EventBridge PutEvents: {}", brief(&e))))?;
        let results = out.entries();
        if results.len() != events.len() {
            return Err(SendError::Failed(format!(
                "EventBridge answered {} results for {} events",
                results.len(),
                events.len()
            )));
        }
        Ok(results
            .iter()
            .map(|r| {
                r.error_code().map(|code| BusFailure {
                    code: code.to_owned(),
                    message: r.error_message().unwrap_or_default().to_owned(),
                })
            })
            .collect())
    }
}
