//! KMS on the local endpoint (moto serves it beside DynamoDB).

use aws_sdk_kms::types::{KeySpec, KeyUsageType};

/// A KMS client for the local endpoint (moto serves KMS too).
pub fn local_kms() -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .region(aws_sdk_kms::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_kms::config::Credentials::new("local", "local", None, None, "test"))
            .endpoint_url(super::dynamodb_endpoint())
            .build(),
    )
}

/// A fresh P-256 signing key in the local KMS; its id.
pub async fn p256_key(kms: &aws_sdk_kms::Client) -> String {
    let key = kms
        .create_key()
        .key_spec(KeySpec::EccNistP256)
        .key_usage(KeyUsageType::SignVerify)
        .description("auditline checkpoints (test)")
        .send()
        .await
        .expect("moto creates the key");
    key.key_metadata().unwrap().key_id().to_owned()
}
