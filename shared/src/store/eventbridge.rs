//! The EventBridge adapter of log streams: `PutEvents` of up to ten events to the bus a tenant
//! names (in this account, or another whose bus policy lets this one put), each event's failure
//! reported on its own.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::config::timeout::TimeoutConfig;
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::streams::transport::{BusEvent, BusFailure, EventBus, SendError};

pub struct AwsEventBus {
    client: Client,
}

impl AwsEventBus {
    pub fn new(client: Client) -> Self {
        AwsEventBus { client }
    }

    /// A client for a local EventBridge API (moto's `events`), as the local gateway uses one.
    pub fn for_local_endpoint(endpoint: &str) -> Self {
        let config = aws_sdk_eventbridge::Config::builder()
            .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
            .region(aws_sdk_eventbridge::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_eventbridge::config::Credentials::new(
                "local",
                "local",
                None,
                None,
                "auditline-local",
            ))
            .endpoint_url(endpoint)
            .timeout_config(TimeoutConfig::builder().operation_timeout(Duration::from_secs(10)).build())
            .build();
        Self::new(Client::from_conf(config))
    }

    pub fn from_environment(shared: &aws_config::SdkConfig, endpoint_override: Option<&str>) -> Self {
        let mut builder = aws_sdk_eventbridge::config::Builder::from(shared)
            .timeout_config(TimeoutConfig::builder().operation_timeout(Duration::from_secs(10)).build());
        if let Some(endpoint) = endpoint_override {
            builder = builder.endpoint_url(endpoint);
        }
        Self::new(Client::from_conf(builder.build()))
    }
}

#[async_trait]
impl EventBus for AwsEventBus {
    async fn put_events(&self, bus_arn: &str, events: &[BusEvent]) -> Result<Vec<Option<BusFailure>>, SendError> {
        let entries = events
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(bus_arn)
                    .source(&e.source)
                    .detail_type(&e.detail_type)
                    .detail(&e.detail)
                    .time(DateTime::from_millis(e.time.timestamp_millis()))
                    .build()
            })
            .collect();
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| SendError::Failed(format!("EventBridge PutEvents: {}", DisplayErrorContext(&e))))?;
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
