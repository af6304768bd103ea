//! The S3 adapters: the archive (one PutObject per archive object) and the checkpoints' publication
//! (one PutObject per checkpoint, never over an existing object, into an Object Lock bucket).

use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;

use crate::archive::ArchiveSink;
use crate::backend::BackendError;
use crate::domain::TenantId;
use crate::integrity::checkpoint::Checkpoint;
use crate::seal::CheckpointSink;
use crate::seal::publish::{publication_body, publication_key, publication_prefix, read_publication, same_checkpoint};

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

/// Checkpoints published to a bucket whose default retention is Object Lock in compliance mode
/// (the template's `CheckpointBucket`): once written, no one — root included — can change or
/// delete an object before its retention ends.
pub struct S3Checkpoints {
    client: Client,
    bucket: String,
}

impl S3Checkpoints {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3Checkpoints { client, bucket: bucket.into() }
    }

    pub fn from_environment(shared: &aws_config::SdkConfig, bucket: &str, endpoint_override: Option<&str>) -> Self {
        let archive = S3Archive::from_environment(shared, bucket, endpoint_override);
        S3Checkpoints::new(archive.client, bucket)
    }

    pub fn for_local_endpoint(endpoint: &str, bucket: &str) -> Self {
        let archive = S3Archive::for_local_endpoint(endpoint, bucket);
        S3Checkpoints::new(archive.client, bucket)
    }
}

#[async_trait]
impl CheckpointSink for S3Checkpoints {
    fn name(&self) -> &str {
        "s3"
    }

    async fn publish(&self, checkpoint: &Checkpoint) -> Result<(), BackendError> {
        let key = publication_key(checkpoint);
        let result = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            // Never over an object already there: a retry after a lost answer meets its own.
            .if_none_match("*")
            .body(ByteStream::from(publication_body(checkpoint)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
                // Published before (a retry): only if it is the same checkpoint.
                Some(412) => same_checkpoint(&self.read(&key).await?, checkpoint),
                status => {
                    let detail = format!("PutObject {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e));
                    Err(if matches!(status, Some(429 | 503)) {
                        BackendError::Throttled(detail)
                    } else {
                        BackendError::Unavailable(detail)
                    })
                }
            },
        }
    }

    /// One listing (the keys count down, so the first is the newest) and one read.
    async fn latest(&self, tenant: &TenantId) -> Result<Option<Checkpoint>, BackendError> {
        let listed = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(publication_prefix(tenant.as_str()))
            .max_keys(1)
            .send()
            .await
            .map_err(|e| {
                BackendError::Unavailable(format!("ListObjectsV2: {}", aws_sdk_s3::error::DisplayErrorContext(&e)))
            })?;
        match listed.contents().first().and_then(|o| o.key()) {
            Some(key) => Ok(Some(self.read(key).await?)),
            None => Ok(None),
        }
    }
}

impl S3Checkpoints {
    async fn read(&self, key: &str) -> Result<Checkpoint, BackendError> {
        let object = self.client.get_object().bucket(&self.bucket).key(key).send().await.map_err(|e| {
            BackendError::Unavailable(format!("GetObject {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)))
        })?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| BackendError::Unavailable(format!("GetObject {key}: {e}")))?
            .into_bytes();
        read_publication(&bytes)
    }
}
