//! Signing checkpoints: ECDSA with P-256 and SHA-256, signatures DER-encoded. One port, [`Signer`],
//! with two adapters: [`LocalSigner`] (a key in the process: the local gateway, tests) here, and
//! KMS (`crate::kms`) on AWS, where the private key never leaves the service.
//!
//! Keys are named by fingerprint: the first 16 bytes of SHA-256 of the public key's DER
//! SubjectPublicKeyInfo, in hex. A verifier given a public key computes its fingerprint and so
//! knows, offline, which checkpoints it must have signed.

use async_trait::async_trait;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

use super::Hash;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignError {
    #[error("the signing key could not be used: {0}")]
    Key(String),
    #[error("the signer is unavailable: {0}")]
    Unavailable(String),
}

/// Signs messages with one P-256 key.
#[async_trait]
pub trait Signer: Send + Sync {
    /// The key's fingerprint.
    fn key_id(&self) -> &str;
    /// The public key, DER SubjectPublicKeyInfo.
    fn public_key_der(&self) -> &[u8];
    /// An ECDSA P-256 SHA-256 signature of `message`, DER-encoded.
    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// A public key's fingerprint.
pub fn key_id(public_key_der: &[u8]) -> String {
    Hash::of(&[public_key_der]).0[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `signature` (DER) is the key's signature of `message`.
pub fn verify(public_key_der: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public_key_der).verify(message, signature).is_ok()
}

/// `der` as a PEM `PUBLIC KEY` block.
pub fn public_key_pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64")).collect();
    format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"))
}

/// The DER inside a PEM block of `label` (`PUBLIC KEY`, `PRIVATE KEY`).
pub fn pem_der(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let inner = pem.split(&begin).nth(1)?.split(&end).next()?;
    let body: String = inner.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(body).ok()
}

/// A P-256 key held in this process.
pub struct LocalSigner {
    pair: EcdsaKeyPair,
    public_der: Vec<u8>,
    key_id: String,
    pkcs8: Vec<u8>,
}

impl LocalSigner {
    /// A new random key.
    pub fn generate() -> Result<Self, SignError> {
        let document = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
            .map_err(|e| SignError::Key(e.to_string()))?;
        Self::from_pkcs8(document.as_ref())
    }

    /// A key from PKCS#8 DER.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, SignError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8)
            .map_err(|e| SignError::Key(format!("not a P-256 PKCS#8 key: {e}")))?;
        let public_der = pair.public_key().as_der().map_err(|e| SignError::Key(e.to_string()))?.as_ref().to_vec();
        Ok(LocalSigner { key_id: key_id(&public_der), public_der, pair, pkcs8: pkcs8.to_vec() })
    }

    /// A key from a PEM `PRIVATE KEY` (PKCS#8) block.
    pub fn from_pem(pem: &str) -> Result<Self, SignError> {
        let der = pem_der(pem, "PRIVATE KEY").ok_or_else(|| SignError::Key("no PKCS#8 PRIVATE KEY block".into()))?;
        Self::from_pkcs8(&der)
    }

    /// The private key as PEM, to keep it between runs.
    pub fn private_key_pem(&self) -> String {
        public_key_pem(&self.pkcs8).replace("PUBLIC KEY", "PRIVATE KEY")
    }
}

#[async_trait]
impl Signer for LocalSigner {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn public_key_der(&self) -> &[u8] {
        &self.public_der
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let signature = self.pair.sign(&SystemRandom::new(), message).map_err(|e| SignError::Key(e.to_string()))?;
        Ok(signature.as_ref().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_key_signs_what_its_public_key_verifies() {
        let signer = LocalSigner::generate().unwrap();
        let signature = signer.sign(b"checkpoint").await.unwrap();
        assert!(verify(signer.public_key_der(), b"checkpoint", &signature));
        assert!(!verify(signer.public_key_der(), b"checkpoinT", &signature));
        let other = LocalSigner::generate().unwrap();
        assert!(!verify(other.public_key_der(), b"checkpoint", &signature));
        assert_ne!(signer.key_id(), other.key_id());
        // Kept as PEM and loaded again: the same key.
        let again = LocalSigner::from_pem(&signer.private_key_pem()).unwrap();
        assert_eq!(again.key_id(), signer.key_id());
        let pem = public_key_pem(signer.public_key_der());
        assert_eq!(pem_der(&pem, "PUBLIC KEY").unwrap(), signer.public_key_der());
        assert_eq!(key_id(&pem_der(&pem, "PUBLIC KEY").unwrap()), signer.key_id());
    }
}
