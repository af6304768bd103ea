//! The API Gateway Management API as a [`Pusher`]: PostToConnection, with its errors mapped to
//! what the fan-out needs to know.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::config::retry::RetryConfig;
use aws_sdk_apigatewaymanagement::config::timeout::TimeoutConfig;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::realtime::{PushError, Pusher};

/// The longest one post may take; the fan-out's budget bounds a batch as a whole.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct ApiGatewayPusher {
    client: Client,
}

impl ApiGatewayPusher {
    /// A pusher for the WebSocket API stage at `endpoint` (see `Config::websocket_endpoint`).
    pub fn from_environment(shared: &aws_config::SdkConfig, endpoint: &str) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(shared)
            .endpoint_url(endpoint)
            // The fan-out owns retries (with its own policy per failure); the SDK does not add its own.
            .retry_config(RetryConfig::disabled())
            .timeout_config(TimeoutConfig::builder().operation_timeout(OPERATION_TIMEOUT).build())
            .build();
        ApiGatewayPusher { client: Client::from_conf(config) }
    }

    pub fn new(client: Client) -> Self {
        ApiGatewayPusher { client }
    }
}

#[async_trait]
impl Pusher for ApiGatewayPusher {
    async fn push(&self, connection_id: &str, message: &[u8]) -> Result<(), PushError> {
        let result = self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(message.to_vec()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => Err(match e.as_service_error() {
                Some(s) if s.is_gone_exception() => PushError::Gone,
                Some(s) if s.is_payload_too_large_exception() => PushError::TooLarge,
                Some(s) if s.is_limit_exceeded_exception() => PushError::Throttled,
                Some(s) if s.is_forbidden_exception() => PushError::Forbidden,
                _ => PushError::Other(DisplayErrorContext(&e).to_string()),
            }),
        }
    }

    async fn close(&self, connection_id: &str) -> Result<(), PushError> {
        match self.client.delete_connection().connection_id(connection_id).send().await {
            Ok(_) => Ok(()),
            // Closed already: what was asked for.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_gone_exception()) => Ok(()),
            Err(e) => Err(PushError::Other(DisplayErrorContext(&e).to_string())),
        }
    }
}
