//! The EventBridge adapter of log streams: `PutEvents` of up to ten events to the bus a tenant
//! names, as the role the tenant made for it (assumed through STS with the tenant's external id),
//! in the bus's region; each event's failure reported on its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::config::timeout::TimeoutConfig;
use aws_sdk_eventbridge::config::{Credentials, Region};
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::streams::transport::{BusEvent, BusFailure, BusTarget, EventBus, SendError};

/// Clients kept, one per stream's bus and role (each caches its role's credentials for their hour).
const MAX_CLIENTS: usize = 1_000;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AwsEventBus {
    /// The deployment's own identity, which assumes the tenants' roles (STS's endpoint set here).
    sts: SdkConfig,
    /// The configuration PutEvents starts from (region and credentials replaced per target).
    events: SdkConfig,
    events_endpoint: Option<String>,
    clients: Mutex<HashMap<(BusTarget, String), Arc<Client>>>,
}

impl AwsEventBus {
    /// For a Lambda function: the deployment's configuration; endpoints overridden for tests.
    pub fn from_environment(shared: &SdkConfig, events_endpoint: Option<&str>, sts_endpoint: Option<&str>) -> Self {
        let timeouts = TimeoutConfig::builder().operation_timeout(CALL_TIMEOUT).build();
        let mut sts = shared.to_builder().timeout_config(timeouts.clone());
        if let Some(endpoint) = sts_endpoint {
            sts = sts.endpoint_url(endpoint);
        }
        AwsEventBus {
            sts: sts.build(),
            events: shared.to_builder().timeout_config(timeouts).build(),
            events_endpoint: events_endpoint.map(str::to_owned),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// For the local gateway: a local EventBridge API and STS (moto serves both).
    pub async fn for_local_endpoint(events_endpoint: &str, sts_endpoint: &str) -> Self {
        let local = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "auditline-local"))
            .load()
            .await;
        Self::from_environment(&local, Some(events_endpoint), Some(sts_endpoint))
    }

    /// The client that puts on the target's bus, in its region, as its role.
    async fn client(&self, target: &BusTarget) -> Result<Arc<Client>, SendError> {
        let region = bus_region(&target.bus_arn)
            .ok_or_else(|| SendError::Failed("the event bus ARN names no region".to_owned()))?;
        let key = (target.clone(), region.to_owned());
        if let Some(client) = self.clients.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(client.clone());
        }
        if target.role_arn.is_empty() {
            return Err(SendError::Failed(
                "the stream names no role_arn to put events as: update the stream with one".to_owned(),
            ));
        }
        let role = AssumeRoleProvider::builder(&target.role_arn)
            .external_id(&target.external_id)
            .session_name(&target.session_name)
            .configure(&self.sts)
            .build()
            .await;
        let mut config = aws_sdk_eventbridge::config::Builder::from(&self.events)
            .region(Region::new(region.to_owned()))
            .credentials_provider(role);
        if let Some(endpoint) = &self.events_endpoint {
            config = config.endpoint_url(endpoint);
        }
        let client = Arc::new(Client::from_conf(config.build()));
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        Ok(clients.entry(key).or_insert(client).clone())
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
        let out = client.put_events().set_entries(Some(entries)).send().await.map_err(|e| {
            SendError::Failed(format!("EventBridge PutEvents as {}: {}", target.role_arn, DisplayErrorContext(&e)))
        })?;
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
