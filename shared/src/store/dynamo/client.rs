//! Building DynamoDB clients (once per process), and counting the requests they send.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::StalledStreamProtectionConfig;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;

/// The longest one DynamoDB operation may take, retries included. Every function's timeout in
/// `template.yaml` is longer (a test checks), so a slow DynamoDB ends in an error the function
/// reports, not in Lambda killing it half-way.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(6);

/// Time limits that keep a Lambda invocation from hanging on an unreachable endpoint.
fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// A local DynamoDB API (moto is single-process Python) can be slow to accept connections under a
/// burst; waiting longer there costs nothing, while failing would turn load into false errors.
fn local_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(15))
        .operation_attempt_timeout(Duration::from_secs(30))
        .operation_timeout(Duration::from_secs(60))
        .build()
}

/// The client a deployed function uses: the shared SDK configuration ([`crate::sdk`]), and the
/// endpoint from `endpoint_override` if one is configured (a local DynamoDB-API server).
pub fn client_from_environment(shared: &aws_config::SdkConfig, endpoint_override: Option<&str>) -> Client {
    let mut builder = aws_sdk_dynamodb::config::Builder::from(shared).timeout_config(timeouts());
    if let Some(endpoint) = endpoint_override {
        builder = builder.endpoint_url(endpoint);
    }
    Client::from_conf(builder.build())
}

/// Opens `client`'s connection to its endpoint (TCP and TLS) with one DescribeEndpoints call —
/// it reads no table — so that the first real request finds it in the pool. One attempt, no
/// retries, at most `within`; the outcome only matters as a log line, since a failure here is met
/// again, and reported, by the first real request.
pub async fn open_connection(client: &Client, within: Duration) {
    let once = aws_sdk_dynamodb::config::Builder::new()
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .timeout_config(TimeoutConfig::builder().operation_timeout(within).build());
    match client.describe_endpoints().customize().config_override(once).send().await {
        Ok(_) => tracing::debug!("DynamoDB connection opened during init"),
        Err(error) => {
            tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&error), "DynamoDB connection not opened during init")
        }
    }
}

/// A client for a local DynamoDB-API server (tests, benchmarks, the local gateway): fixed region and
/// dummy credentials, nothing read from the environment. `counter`, if given, counts every request.
pub fn client_for_local_endpoint(endpoint: &str, counter: Option<RequestCounter>) -> Client {
    let mut builder = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "auditline-local"))
        .endpoint_url(endpoint)
        .timeout_config(local_timeouts())
        // A busy local server (moto answers one request at a time) may say nothing for seconds:
        // that is load, not a stalled stream; the timeouts above bound it.
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
    if let Some(counter) = counter {
        builder = builder.interceptor(counter);
    }
    Client::from_conf(builder.build())
}

/// Counts HTTP requests sent to DynamoDB, retries included: the unit DynamoDB bills and throttles.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<AtomicU64>);

impl RequestCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    pub fn reset(&self) {
        self.0.store(0, Ordering::SeqCst);
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
