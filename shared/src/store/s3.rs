//! The archive's S3 adapter: one PutObject per archive object.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;

use crate::archive::ArchiveSink;
use crate::backend::BackendError;

pub struct S3Archive {
    client: Client,
    bucket: String,
}

fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(25))
        .build()
}

impl S3Archive {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3Archive { client, bucket: bucket.into() }
    }

    /// The client a deployed function uses; `endpoint_override` (an S3 API such as moto's) implies
    /// path-style addressing.
    pub fn from_environment(shared: &aws_config::SdkConfig, bucket: &str, endpoint_override: Option<&str>) -> Self {
        let mut builder = aws_sdk_s3::config::Builder::from(shared).timeout_config(timeouts());
        if let Some(endpoint) = endpoint_override {
            builder = builder.endpoint_url(endpoint).force_path_style(true);
        }
        S3Archive::new(Client::from_conf(builder.build()), bucket)
    }

    /// A client for a local S3 API (tests, the local gateway): fixed region and dummy credentials.
    pub fn for_local_endpoint(endpoint: &str, bucket: &str) -> Self {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "auditline-local"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .timeout_config(timeouts())
            .build();
        S3Archive::new(Client::from_conf(config), bucket)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[async_trait]
impl ArchiveSink for S3Archive {
    async fn put(&self, key: &str, gzip_jsonl: Vec<u8>) -> Result<(), BackendError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/x-ndjson")
            .content_encoding("gzip")
            .body(ByteStream::from(gzip_jsonl))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let detail = format!("PutObject {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e));
                match e.raw_response().map(|r| r.status().as_u16()) {
                    Some(429 | 503) => BackendError::Throttled(detail),
                    _ => BackendError::Unavailable(detail),
                }
            })
    }
}
