//! Webhook signatures as the Standard Webhooks specification defines them, so that any of its
//! libraries verifies a delivery: HMAC-SHA256 over `<id>.<timestamp>.<body>` with the secret's
//! bytes, sent as `webhook-signature: v1,<base64>` beside `webhook-id` and `webhook-timestamp`.
//! During a rotation both secrets sign, and the header lists both signatures (space-separated), so
//! a receiver holding either verifies.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

/// A secret's text starts with this; the rest is the key, in base64.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a new secret (the specification asks for 24 to 64).
pub const SECRET_BYTES: usize = 32;
/// How far a receiver lets a timestamp stray from its clock, as the specification's libraries do.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// A signing secret. Its text is shown once, at creation; it never appears in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("a webhook secret is \"whsec_\" and base64 of 24 to 64 bytes")]
    BadSecret,
    #[error("the timestamp is more than five minutes from now")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

impl WebhookSecret {
    pub fn generate() -> WebhookSecret {
        let mut bytes = vec![0u8; SECRET_BYTES];
        getrandom::fill(&mut bytes).expect("the operating system provides randomness");
        WebhookSecret(bytes)
    }

    pub fn parse(text: &str) -> Result<WebhookSecret, SignatureError> {
        let encoded = text.strip_prefix(SECRET_PREFIX).ok_or(SignatureError::BadSecret)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| SignatureError::BadSecret)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(SignatureError::BadSecret);
        }
        Ok(WebhookSecret(bytes))
    }

    /// The secret as its owner keeps it: `whsec_<base64>`.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// `v1,<base64 of HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let mut context = hmac::Context::with_key(&key);
        context.update(id.as_bytes());
        context.update(b".");
        context.update(timestamp.to_string().as_bytes());
        context.update(b".");
        context.update(body);
        format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
    }
}

/// The three headers of one delivery, signed with every secret in `secrets` (two while a rotation
/// overlaps, the newest first).
pub fn headers(secrets: &[WebhookSecret], id: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 3] {
    let signatures: Vec<String> = secrets.iter().map(|s| s.sign(id, timestamp, body)).collect();
    [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signatures.join(" ")),
    ]
}

/// What a receiver checks: the timestamp within [`TOLERANCE_SECONDS`] of `now`, and one of the
/// header's `v1` signatures made with `secret` (compared in constant time).
pub fn verify(
    secret: &WebhookSecret,
    id: &str,
    timestamp: i64,
    body: &[u8],
    signature_header: &str,
    now: i64,
) -> Result<(), SignatureError> {
    if (now - timestamp).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::Stale);
    }
    let expected = secret.sign(id, timestamp, body);
    let expected = expected.strip_prefix("v1,").expect("v1 signatures").as_bytes();
    let matches = signature_header.split(' ').filter_map(|s| s.strip_prefix("v1,")).any(|given| {
        given.len() == expected.len()
            && aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), expected).is_ok()
    });
    if matches { Ok(()) } else { Err(SignatureError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's libraries: a known secret, message
    /// and timestamp give this signature.
    #[test]
    fn the_specifications_example_signs_the_same() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let signature = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_rotation_signs_with_both_and_either_verifies_until_the_old_one_goes() {
        let (old, new) = (WebhookSecret::generate(), WebhookSecret::generate());
        let body = b"[{\"id\":\"x\"}]";
        let [_, (_, ts), (_, signature)] = headers(&[new.clone(), old.clone()], "e-1", 1_000_000, body);
        assert_eq!(ts, "1000000");
        assert_eq!(signature.split(' ').count(), 2);
        for secret in [&old, &new] {
            assert_eq!(verify(secret, "e-1", 1_000_000, body, &signature, 1_000_100), Ok(()));
        }
        let [_, _, (_, only_new)] = headers(std::slice::from_ref(&new), "e-1", 1_000_000, body);
        assert_eq!(verify(&old, "e-1", 1_000_000, body, &only_new, 1_000_000), Err(SignatureError::Mismatch));
        assert_eq!(verify(&new, "e-1", 1_000_000, b"changed", &only_new, 1_000_000), Err(SignatureError::Mismatch));
        assert_eq!(verify(&new, "e-2", 1_000_000, body, &only_new, 1_000_000), Err(SignatureError::Mismatch));
        assert_eq!(verify(&new, "e-1", 1_000_000, body, &only_new, 1_000_000 + 301), Err(SignatureError::Stale));
    }

    #[test]
    fn secrets_round_trip_and_bad_ones_are_refused_without_showing_them() {
        let secret = WebhookSecret::generate();
        assert_eq!(WebhookSecret::parse(&secret.expose()).unwrap(), secret);
        assert!(!format!("{secret:?}").contains(&secret.expose()[6..]));
        for bad in ["", "whsec_", "whsec_***", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2hvcnQ="] {
            assert_eq!(WebhookSecret::parse(bad), Err(SignatureError::BadSecret), "{bad}");
        }
    }
}
