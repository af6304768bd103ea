//! Checkpoint signatures: the KMS signer against moto's KMS on the local endpoint, verified with the
//! same code the offline verifier uses, and the local signer the gateway uses.

use auditline::integrity::signing::{LocalSigner, Signer, verify};
use auditline::kms::KmsSigner;
use aws_sdk_kms::types::{KeySpec, KeyUsageType};

/// A KMS client for the local endpoint (moto serves KMS too).
pub fn local_kms() -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .region(aws_sdk_kms::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_kms::config::Credentials::new("local", "local", None, None, "test"))
            .endpoint_url(auditline_tests::dynamodb_endpoint())
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

#[tokio::test]
async fn the_kms_signer_signs_what_the_public_key_verifies() {
    let kms = local_kms();
    let key = p256_key(&kms).await;
    let signer = KmsSigner::new(kms.clone(), &key).await.expect("a P-256 key");
    let message = br#"{"format":"auditline-checkpoint/1","tenant":"acme"}"#;
    let signature = signer.sign(message).await.unwrap();
    assert!(verify(signer.public_key_der(), message, &signature), "verifies offline against GetPublicKey's key");
    assert!(!verify(signer.public_key_der(), b"another message", &signature));
    assert_eq!(signer.key_id().len(), 32);

    // A key of the wrong kind is refused when the signer is made, not at the first seal.
    let rsa = kms
        .create_key()
        .key_spec(KeySpec::Rsa2048)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned();
    assert!(KmsSigner::new(kms, &rsa).await.is_err());
}

#[tokio::test]
async fn kms_and_local_signatures_are_interchangeable_for_the_verifier() {
    let local = LocalSigner::generate().unwrap();
    let signature = local.sign(b"m").await.unwrap();
    assert!(verify(local.public_key_der(), b"m", &signature));
}
