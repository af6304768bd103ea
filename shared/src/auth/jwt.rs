//! JWT verification with the algorithm pinned by configuration: signature, `exp` (required), `nbf`,
//! and `iss`/`aud` when configured (then required, and `iss` must be exactly the configured string),
//! with a small leeway. The tenant comes from the `tenant_id` claim; a token without one is refused
//! unless the operator names a default tenant. A token whose header names any other
//! algorithm is refused before its signature is looked at, which rules out `alg: none` and HS/RS
//! confusion (an RSA public key used as an HMAC secret).

use std::collections::HashSet;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::Value;
use thiserror::Error;

use super::extract::MAX_CREDENTIAL_BYTES;
use super::jwks::{JwksCache, JwksUrlError, KeyLookupError};
use crate::domain::{JsonObject, TenantId, validation};

/// Why a token was refused. For logs: it never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JwtError {
    #[error("token is larger than {MAX_CREDENTIAL_BYTES} bytes")]
    TooLarge,
    #[error("token is malformed")]
    Malformed,
    #[error("token algorithm {found} is not the configured {expected}")]
    AlgorithmNotAllowed { found: String, expected: String },
    #[error("token signing key is unknown")]
    UnknownKey,
    #[error("signing keys could not be fetched")]
    KeysUnavailable,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token lacks the {0} claim")]
    MissingClaim(String),
    #[error("token claim {0} is invalid")]
    InvalidClaim(String),
}

impl From<jsonwebtoken::errors::Error> for JwtError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        match e.kind() {
            ErrorKind::InvalidSignature => JwtError::BadSignature,
            ErrorKind::ExpiredSignature => JwtError::Expired,
            ErrorKind::ImmatureSignature => JwtError::NotYetValid,
            ErrorKind::InvalidIssuer => JwtError::WrongIssuer,
            ErrorKind::InvalidAudience => JwtError::WrongAudience,
            ErrorKind::MissingRequiredClaim(c) => JwtError::MissingClaim(c.clone()),
            ErrorKind::InvalidClaimFormat(c) => JwtError::InvalidClaim(c.clone()),
            ErrorKind::InvalidAlgorithm => {
                JwtError::AlgorithmNotAllowed { found: "another".into(), expected: "the configured".into() }
            }
            ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
                JwtError::BadSignature
            }
            _ => JwtError::Malformed,
        }
    }
}

impl From<KeyLookupError> for JwtError {
    fn from(e: KeyLookupError) -> Self {
        match e {
            KeyLookupError::UnknownKey => JwtError::UnknownKey,
            KeyLookupError::Unavailable => JwtError::KeysUnavailable,
        }
    }
}

/// A configuration that cannot work (e.g. an RS256 algorithm with no public key).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("JWT configuration: {0}")]
pub struct JwtConfigError(pub String);

impl From<JwksUrlError> for JwtConfigError {
    fn from(e: JwksUrlError) -> Self {
        JwtConfigError(e.to_string())
    }
}

/// Where verification keys come from.
#[derive(Clone)]
pub enum KeySource {
    /// One key: an HMAC secret or a PEM public key.
    Fixed(DecodingKey),
    /// A JWKS endpoint (Cognito, Auth0, Okta…), cached across invocations.
    Jwks(Arc<JwksCache>),
}

/// What a valid token says about its bearer.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    pub user_id: String,
    pub tenant_id: TenantId,
    pub scopes: Vec<String>,
    /// The `exp` claim.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub claims: JsonObject,
}

#[derive(Clone)]
pub struct JwtVerifier {
    algorithm: Algorithm,
    keys: KeySource,
    validation: Validation,
    /// The `iss` every token must carry, when configured.
    issuer: Option<String>,
    /// The tenant of tokens without a `tenant_id` claim; `None` refuses such tokens.
    default_tenant: Option<TenantId>,
}

/// Parses an algorithm name as configured (`HS256`, `RS256`, `ES256`, …).
pub fn parse_algorithm(name: &str) -> Result<Algorithm, JwtConfigError> {
    name.parse::<Algorithm>().map_err(|_| JwtConfigError(format!("unsupported algorithm {name}")))
}

impl JwtVerifier {
    /// `leeway_seconds` tolerates clock skew on `exp` and `nbf`.
    pub fn new(algorithm: Algorithm, keys: KeySource, leeway_seconds: u64) -> Result<Self, JwtConfigError> {
        if let KeySource::Fixed(key) = &keys
            && key.family() != algorithm.family()
        {
            return Err(JwtConfigError(format!("the key does not suit {algorithm:?}")));
        }
        let mut validation = Validation::new(algorithm);
        validation.leeway = leeway_seconds;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(JwtVerifier { algorithm, keys, validation, issuer: None, default_tenant: None })
    }

    /// An HMAC (HS256/384/512) verifier.
    pub fn hmac(algorithm: Algorithm, secret: &[u8], leeway_seconds: u64) -> Result<Self, JwtConfigError> {
        if secret.len() < 32 {
            return Err(JwtConfigError("the secret must be at least 32 bytes".into()));
        }
        Self::new(algorithm, KeySource::Fixed(DecodingKey::from_secret(secret)), leeway_seconds)
    }

    /// An RS*/ES* verifier with one PEM public key.
    pub fn public_key_pem(algorithm: Algorithm, pem: &[u8], leeway_seconds: u64) -> Result<Self, JwtConfigError> {
        let key = match algorithm.family() {
            jsonwebtoken::AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
            jsonwebtoken::AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
            _ => {
                return Err(JwtConfigError(format!("{algorithm:?} takes a secret, not a public key")));
            }
        }
        .map_err(|e| JwtConfigError(format!("the public key could not be read: {e}")))?;
        Self::new(algorithm, KeySource::Fixed(key), leeway_seconds)
    }

    /// Accept only tokens whose `iss` is exactly the string `issuer` (a missing, non-string or
    /// array-valued `iss` is refused).
    pub fn with_issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self.validation.required_spec_claims.insert("iss".into());
        self.issuer = Some(issuer.to_owned());
        self
    }

    /// Put tokens without a `tenant_id` claim in `tenant` (an operator's explicit choice; without it
    /// such tokens are refused, so that no two deployments' users silently share a tenant).
    pub fn with_default_tenant(mut self, tenant: TenantId) -> Self {
        self.default_tenant = Some(tenant);
        self
    }

    /// Accept only tokens whose `aud` contains `audience`.
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.validate_aud = true;
        self.validation.required_spec_claims.insert("aud".into());
        self
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, JwtError> {
        if token.len() > MAX_CREDENTIAL_BYTES {
            return Err(JwtError::TooLarge);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        if header.alg != self.algorithm {
            return Err(JwtError::AlgorithmNotAllowed {
                found: format!("{:?}", header.alg),
                expected: format!("{:?}", self.algorithm),
            });
        }
        let key = match &self.keys {
            KeySource::Fixed(key) => key.clone(),
            KeySource::Jwks(cache) => cache.key(header.kid.as_deref()).await?,
        };
        let data = jsonwebtoken::decode::<JsonObject>(token, &key, &self.validation)?;
        if let Some(issuer) = &self.issuer {
            match data.claims.get("iss") {
                Some(Value::String(iss)) if iss == issuer => {}
                None => return Err(JwtError::MissingClaim("iss".into())),
                Some(_) => return Err(JwtError::WrongIssuer),
            }
        }
        identity(data.claims, self.default_tenant.as_ref())
    }
}

/// Scopes from a claim: a space-separated string (OAuth 2 `scope`, Azure AD `scp`) or an array of
/// strings (`scopes`, Okta's `scp`).
fn scopes_of(claims: &JsonObject, claim: &str, into: &mut Vec<String>) -> Result<(), JwtError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => {
            into.extend(s.split_whitespace().map(str::to_owned));
            Ok(())
        }
        Some(Value::Array(items)) => {
            for item in items {
                match item.as_str() {
                    Some(s) if !s.is_empty() && !s.contains(char::is_whitespace) => into.push(s.to_owned()),
                    _ => return Err(JwtError::InvalidClaim(claim.to_owned())),
                }
            }
            Ok(())
        }
        Some(_) => Err(JwtError::InvalidClaim(claim.to_owned())),
    }
}

/// Reads the bearer's identity from verified claims: `sub` is the user, `tenant_id` the tenant
/// (`default_tenant` if absent and configured, else refused), scopes from `scope`, `scp` and
/// `scopes`.
fn identity(claims: JsonObject, default_tenant: Option<&TenantId>) -> Result<VerifiedToken, JwtError> {
    let user_id = match claims.get("sub") {
        Some(Value::String(s)) if validation::identifier("sub", s).is_ok() => s.clone(),
        Some(_) => return Err(JwtError::InvalidClaim("sub".into())),
        None => return Err(JwtError::MissingClaim("sub".into())),
    };
    let tenant_id = match claims.get("tenant_id") {
        None | Some(Value::Null) => {
            default_tenant.cloned().ok_or_else(|| JwtError::MissingClaim("tenant_id".into()))?
        }
        Some(Value::String(t)) => TenantId::parse(t).map_err(|_| JwtError::InvalidClaim("tenant_id".into()))?,
        Some(_) => return Err(JwtError::InvalidClaim("tenant_id".into())),
    };
    let mut scopes = Vec::new();
    for claim in ["scope", "scp", "scopes"] {
        scopes_of(&claims, claim, &mut scopes)?;
    }
    let mut seen = HashSet::new();
    scopes.retain(|s| seen.insert(s.clone()));
    let expires_at = claims.get("exp").and_then(Value::as_i64).and_then(|exp| chrono::DateTime::from_timestamp(exp, 0));
    Ok(VerifiedToken { user_id, tenant_id, scopes, expires_at, claims })
}

/// Signs claims with an HMAC secret: development tokens for the local gateway, and tests.
pub fn sign_hmac(algorithm: Algorithm, secret: &[u8], claims: &Value) -> Result<String, JwtConfigError> {
    jsonwebtoken::encode(&Header::new(algorithm), claims, &EncodingKey::from_secret(secret))
        .map_err(|e| JwtConfigError(format!("signing failed: {e}")))
}
