//! Checkpoint signatures: the KMS signer against moto's KMS on the local endpoint, verified with the
//! same code the offline verifier uses, and the local signer the gateway uses.

use auditline::integrity::signing::{LocalSigner, Signer, normalize_low_s, parse_der, verify};
use auditline::kms::KmsSigner;
use auditline_tests::kms::{local_kms, p256_key};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};

#[tokio::test]
async fn the_kms_signer_signs_what_the_public_key_verifies() {
    let kms = local_kms();
    let key = p256_key(&kms).await;
    let signer = KmsSigner::new(kms.clone(), &key).await.expect("a P-256 key");
    let message = b"auditline.local/acme\n1\n";
    // KMS does not normalise s: about half its signatures are the high twin, which verifiers
    // refuse. Normalised (as the seal does with whatever a signer returns), each verifies.
    for _ in 0..16 {
        let signature = signer.sign(message).await.unwrap();
        parse_der(&signature).expect("strict DER");
        let low = normalize_low_s(&signature).unwrap();
        assert!(verify(signer.public_key_der(), message, &low), "verifies offline against GetPublicKey's key");
        assert!(!verify(signer.public_key_der(), b"another message", &low));
        assert_eq!(verify(signer.public_key_der(), message, &signature), low == signature, "the high twin is refused");
    }
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
