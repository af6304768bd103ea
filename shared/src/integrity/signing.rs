//! Signing checkpoints: ECDSA with P-256 and SHA-256, signatures DER-encoded. One port, [`Signer`],
//! with two adapters: [`LocalSigner`] (a key in the process: the local gateway, tests) here, and
//! KMS (`crate::kms`) on AWS, where the private key never leaves the service.
//!
//! Keys are named by fingerprint: the first 16 bytes of SHA-256 of the public key's DER
//! SubjectPublicKeyInfo, in hex. A verifier given a public key computes its fingerprint and so
//! knows, offline, which checkpoints it must have signed.
//!
//! Signatures are *low-s* only: ECDSA accepts both `(r, s)` and `(r, n − s)`, so anyone could
//! re-encode a signature without the key. The seal normalises what the signer (KMS included)
//! returns, and [`verify`] refuses the high form, so one checkpoint has one signature.

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

/// Whether `signature` (strict DER, low s) is the key's signature of `message`.
pub fn verify(public_key_der: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let low_s = parse_der(signature).is_some_and(|(_, s)| !is_high(&s));
    low_s && UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public_key_der).verify(message, signature).is_ok()
}

/// The order of P-256's group, big-endian.
const ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];
/// ⌊ORDER / 2⌋: an `s` above it is "high".
const HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xde, 0x73, 0x7d,
    0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

fn is_high(s: &[u8; 32]) -> bool {
    s > &HALF_ORDER
}

/// `(r, s)` of a strict DER `SEQUENCE { INTEGER r, INTEGER s }` with both in `1..ORDER`, each as
/// 32 big-endian bytes; `None` for anything else (long forms, padding, trailing bytes, zero).
pub fn parse_der(der: &[u8]) -> Option<([u8; 32], [u8; 32])> {
    let (&tag, rest) = der.split_first()?;
    let (&len, body) = rest.split_first()?;
    if tag != 0x30 || len >= 0x80 || usize::from(len) != body.len() {
        return None;
    }
    let (r, rest) = der_integer(body)?;
    let (s, rest) = der_integer(rest)?;
    rest.is_empty().then_some((r, s))
}

fn der_integer(bytes: &[u8]) -> Option<([u8; 32], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    if tag != 0x02 || len == 0 || len > 33 || rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    // Minimal: a leading zero only before a byte with its top bit set; never negative.
    if value[0] & 0x80 != 0 || (value.len() > 1 && value[0] == 0 && value[1] & 0x80 == 0) {
        return None;
    }
    let value = if value[0] == 0 { &value[1..] } else { value };
    if value.len() > 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out[32 - value.len()..].copy_from_slice(value);
    (out != [0; 32] && out < ORDER).then_some((out, rest))
}

fn push_der_integer(out: &mut Vec<u8>, value: &[u8; 32]) {
    let first = value.iter().position(|b| *b != 0).unwrap_or(31);
    let digits = &value[first..];
    let pad = digits[0] & 0x80 != 0;
    out.push(0x02);
    out.push((digits.len() + usize::from(pad)) as u8);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(digits);
}

/// `ORDER − s`, big-endian with borrow.
fn negate(s: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(ORDER[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = (d + 256 * borrow) as u8;
    }
    out
}

fn encode_der(r: &[u8; 32], s: &[u8; 32]) -> Vec<u8> {
    let mut body = Vec::with_capacity(70);
    push_der_integer(&mut body, r);
    push_der_integer(&mut body, s);
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// The low-s form of a DER signature (itself if already low); `None` if it is not strict DER.
pub fn normalize_low_s(der: &[u8]) -> Option<Vec<u8>> {
    let (r, s) = parse_der(der)?;
    Some(encode_der(&r, &if is_high(&s) { negate(&s) } else { s }))
}

/// The other encoding of the same signature, `(r, ORDER − s)`: plain ECDSA accepts both, which is
/// why [`verify`] accepts only the low one. (Tests make high-s signatures with it.)
pub fn twin(der: &[u8]) -> Option<Vec<u8>> {
    let (r, s) = parse_der(der)?;
    Some(encode_der(&r, &negate(&s)))
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
        normalize_low_s(signature.as_ref()).ok_or_else(|| SignError::Key("the signature is not DER".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_strict_der_is_refused() {
        let mut one = [0u8; 32];
        one[31] = 1;
        let good = encode_der(&one, &one);
        assert!(parse_der(&good).is_some());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(parse_der(&trailing).is_none());
        // A padded integer (0x00 0x01), zero, and the order itself.
        assert!(parse_der(&[0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01]).is_none());
        assert!(parse_der(&[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01]).is_none());
        let mut order = vec![0x30, 0x26, 0x02, 0x21, 0x00];
        order.extend(ORDER);
        order.extend([0x02, 0x01, 0x01]);
        assert!(parse_der(&order).is_none());
        for cut in 0..good.len() {
            assert!(parse_der(&good[..cut]).is_none());
        }
    }

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
        // Low s only: the high form of the same signature is refused, and normalising it gives
        // back the low one.
        let (_, s) = parse_der(&signature).unwrap();
        assert!(!is_high(&s));
        let high = twin(&signature).unwrap();
        assert!(is_high(&parse_der(&high).unwrap().1));
        assert!(
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, signer.public_key_der())
                .verify(b"checkpoint", &high)
                .is_ok()
        );
        assert!(!verify(signer.public_key_der(), b"checkpoint", &high), "the high-s form is refused");
        assert_eq!(normalize_low_s(&high).unwrap(), signature);
        let pem = public_key_pem(signer.public_key_der());
        assert_eq!(pem_der(&pem, "PUBLIC KEY").unwrap(), signer.public_key_der());
        assert_eq!(key_id(&pem_der(&pem, "PUBLIC KEY").unwrap()), signer.key_id());
    }
}
