//! Authentication for both APIs: the counterpart of the seed's `WebSocketAuthenticator` and
//! `WebSocketAuthResult`. One [`Authenticator`] checks JWTs and API keys; the Lambda authorizer, the
//! functions' defence-in-depth checks and the local gateway all use it.

pub mod api_keys;
pub mod extract;
pub mod jwks;
pub mod jwt;
pub mod origins;
pub mod scopes;
mod secret;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use self::api_keys::{ApiKeyCheck, ApiKeyValidator};
use self::extract::{MAX_CREDENTIAL_BYTES, Presented};
use self::jwt::{JwtConfigError, JwtVerifier};
pub use self::secret::Secret;
use crate::domain::{JsonObject, TenantId};

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    Jwt,
    ApiKey,
    Anonymous,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Anonymous => "anonymous",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "jwt" => Ok(AuthMethod::Jwt),
            "api_key" => Ok(AuthMethod::ApiKey),
            "anonymous" => Ok(AuthMethod::Anonymous),
            other => Err(format!("unknown authentication method {other:?}")),
        }
    }
}

/// How callers are authenticated, as configured (see `crate::config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// HMAC secret, for HS256/384/512.
    pub jwt_secret: Option<Secret>,
    /// The one algorithm tokens must use.
    pub jwt_algorithm: String,
    /// PEM public key, for RS*/ES*.
    pub jwt_public_key: Option<String>,
    /// JWKS endpoint, for RS*/ES* tokens of an identity provider (takes precedence over a PEM key).
    pub jwt_jwks_url: Option<String>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    /// The tenant of tokens without a `tenant_id` claim; unset, such tokens are refused.
    pub jwt_default_tenant: Option<TenantId>,
    pub jwt_leeway_seconds: u64,
    pub require_auth: bool,
    pub allowed_methods: Vec<AuthMethod>,
    pub anonymous_scopes: Vec<String>,
    /// Web origins whose pages may open the live feed (and call the HTTP API).
    pub origins: origins::OriginPolicy,
}

/// A caller whose credentials were checked: what every handler knows about who is asking. Adapters
/// (the authorizer context, a connection record) translate into this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant_id: TenantId,
    pub user_id: Option<String>,
    pub scopes: Vec<String>,
    pub auth_method: AuthMethod,
    /// When the credential stops being valid (a token's `exp`, an API key's expiry), if it does.
    pub credential_expires_at: Option<DateTime<Utc>>,
}

impl Caller {
    pub fn has_scope(&self, required: &str) -> bool {
        scopes::has_scope(&self.scopes, required)
    }
}

/// The outcome of authenticating a request (the seed's `WebSocketAuthResult`, plus `tenant_id`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthResult {
    pub authenticated: bool,
    pub user_id: Option<String>,
    pub auth_method: Option<AuthMethod>,
    pub scopes: Vec<String>,
    pub claims: Option<JsonObject>,
    /// Why authentication failed, for logs. Never contains the credential; never sent to clients.
    pub error: Option<String>,
    pub tenant_id: TenantId,
    /// When the credential stops being valid, if it does.
    #[serde(skip)]
    pub expires_at: Option<DateTime<Utc>>,
}

pub type WebSocketAuthResult = AuthResult;

impl AuthResult {
    pub fn denied(reason: impl Into<String>) -> Self {
        AuthResult {
            authenticated: false,
            user_id: None,
            auth_method: None,
            scopes: Vec::new(),
            claims: None,
            error: Some(reason.into()),
            tenant_id: TenantId::default(),
            expires_at: None,
        }
    }

    pub fn anonymous(scopes: Vec<String>) -> Self {
        AuthResult { auth_method: Some(AuthMethod::Anonymous), error: None, scopes, ..Self::denied("") }
    }

    /// Whether the caller may proceed: authenticated, or anonymous where that is allowed.
    pub fn is_allowed(&self) -> bool {
        self.authenticated || (self.auth_method == Some(AuthMethod::Anonymous) && self.error.is_none())
    }

    pub fn has_scope(&self, required: &str) -> bool {
        self.is_allowed() && scopes::has_scope(&self.scopes, required)
    }
}

/// How an [`Authenticator`] behaves (the seed's `WebSocketAuthenticator` parameters).
#[derive(Clone)]
pub struct AuthOptions {
    pub jwt: Option<JwtVerifier>,
    pub api_keys: Option<Arc<dyn ApiKeyValidator>>,
    /// When false, a request without credentials is let in as anonymous.
    pub require_auth: bool,
    /// Which of `jwt` and `api_key` are accepted.
    pub allowed_methods: Vec<AuthMethod>,
    /// Scopes of anonymous callers (none by default: anonymous callers can connect but see nothing).
    pub anonymous_scopes: Vec<String>,
    /// Web origins whose pages may open the live feed.
    pub origins: origins::OriginPolicy,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            jwt: None,
            api_keys: None,
            require_auth: true,
            allowed_methods: vec![AuthMethod::Jwt, AuthMethod::ApiKey],
            anonymous_scopes: Vec::new(),
            origins: origins::OriginPolicy::default(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticator {
    options: AuthOptions,
}

pub type WebSocketAuthenticator = Authenticator;

impl Authenticator {
    pub fn new(options: AuthOptions) -> Self {
        Authenticator { options }
    }

    /// Builds the authenticator a deployment's configuration describes. `api_keys` is the key store
    /// (DynamoDB when deployed). Fails when an allowed method has nothing to check it with.
    pub fn from_settings(
        settings: &AuthSettings,
        api_keys: Option<Arc<dyn ApiKeyValidator>>,
    ) -> Result<Self, JwtConfigError> {
        let algorithm = jwt::parse_algorithm(&settings.jwt_algorithm)?;
        let leeway = settings.jwt_leeway_seconds;
        let verifier = if let Some(url) = &settings.jwt_jwks_url {
            if algorithm.family() == jsonwebtoken::AlgorithmFamily::Hmac {
                return Err(JwtConfigError("a JWKS URL needs an RS* or ES* JWT_ALGORITHM".into()));
            }
            let cache = Arc::new(jwks::JwksCache::new(url, algorithm)?);
            Some(JwtVerifier::new(algorithm, jwt::KeySource::Jwks(cache), leeway)?)
        } else if let Some(pem) = &settings.jwt_public_key {
            // Environment variables often carry PEM line breaks escaped as \n.
            let pem = pem.replace("\\n", "\n");
            Some(JwtVerifier::public_key_pem(algorithm, pem.as_bytes(), leeway)?)
        } else if let Some(secret) = &settings.jwt_secret {
            Some(JwtVerifier::hmac(algorithm, secret.expose().as_bytes(), leeway)?)
        } else {
            None
        };
        let verifier = verifier.map(|mut v| {
            if let Some(issuer) = &settings.jwt_issuer {
                v = v.with_issuer(issuer);
            }
            if let Some(audience) = &settings.jwt_audience {
                v = v.with_audience(audience);
            }
            if let Some(tenant) = &settings.jwt_default_tenant {
                v = v.with_default_tenant(tenant.clone());
            }
            v
        });
        if settings.allowed_methods.contains(&AuthMethod::Jwt) && verifier.is_none() {
            return Err(JwtConfigError(
                "jwt is an allowed method but none of JWT_SECRET, JWT_PUBLIC_KEY, JWT_JWKS_URL is set".into(),
            ));
        }
        if settings.allowed_methods.contains(&AuthMethod::ApiKey) && api_keys.is_none() {
            return Err(JwtConfigError("api_key is an allowed method but no API key store is configured".into()));
        }
        Ok(Authenticator::new(AuthOptions {
            jwt: verifier,
            api_keys,
            require_auth: settings.require_auth,
            allowed_methods: settings.allowed_methods.clone(),
            anonymous_scopes: settings.anonymous_scopes.clone(),
            origins: settings.origins.clone(),
        }))
    }

    pub fn options(&self) -> &AuthOptions {
        &self.options
    }

    fn allows(&self, method: AuthMethod) -> bool {
        self.options.allowed_methods.contains(&method)
    }

    /// Authenticates a WebSocket `$connect` from its headers and query parameters.
    pub async fn authenticate_request<'q>(
        &self,
        headers: &HeaderMap,
        query: impl Fn(&str) -> Option<&'q str>,
    ) -> AuthResult {
        self.authenticate(&extract::all_presented(headers, query)).await
    }

    /// Authenticates the first credential of an accepted kind among those presented. A credential
    /// that is presented but bad is a failure, also when anonymous access is allowed: a caller who
    /// tried to log in and failed is never silently let in as someone else.
    pub async fn authenticate(&self, presented: &[Presented]) -> AuthResult {
        let accepted = presented.iter().find(|p| match p {
            Presented::Jwt { .. } => self.allows(AuthMethod::Jwt) && self.options.jwt.is_some(),
            Presented::ApiKey { .. } => self.allows(AuthMethod::ApiKey) && self.options.api_keys.is_some(),
            Presented::Nothing => false,
        });
        match accepted {
            Some(Presented::Jwt { token, .. }) => self.with_jwt(token).await,
            Some(Presented::ApiKey { key, .. }) => self.with_api_key(key).await,
            _ if !presented.is_empty() => {
                AuthResult::denied("the credential presented is of a kind that is not accepted")
            }
            _ if self.options.require_auth => AuthResult::denied("no credentials were presented"),
            _ => AuthResult::anonymous(self.options.anonymous_scopes.clone()),
        }
    }

    async fn with_jwt(&self, token: &str) -> AuthResult {
        let Some(verifier) = &self.options.jwt else {
            return AuthResult::denied("JWTs are not accepted");
        };
        match verifier.verify(token).await {
            Ok(v) => AuthResult {
                authenticated: true,
                user_id: Some(v.user_id),
                auth_method: Some(AuthMethod::Jwt),
                scopes: v.scopes,
                claims: Some(v.claims),
                error: None,
                tenant_id: v.tenant_id,
                expires_at: v.expires_at,
            },
            Err(e) => AuthResult::denied(e.to_string()),
        }
    }

    async fn with_api_key(&self, key: &str) -> AuthResult {
        let Some(validator) = &self.options.api_keys else {
            return AuthResult::denied("API keys are not accepted");
        };
        if key.len() > MAX_CREDENTIAL_BYTES {
            return AuthResult::denied("API key is too large");
        }
        match validator.check(key, Utc::now()).await {
            Ok(ApiKeyCheck::Valid(record)) => AuthResult {
                authenticated: true,
                user_id: Some(record.user_id),
                auth_method: Some(AuthMethod::ApiKey),
                scopes: record.scopes,
                claims: None,
                error: None,
                expires_at: record.expires_at,
                tenant_id: record.tenant_id,
            },
            Ok(ApiKeyCheck::Unknown) => AuthResult::denied("API key is unknown"),
            Ok(ApiKeyCheck::Revoked) => AuthResult::denied("API key is revoked"),
            Ok(ApiKeyCheck::Expired) => AuthResult::denied("API key has expired"),
            Err(e) => {
                tracing::error!(error = %e, "API key lookup failed");
                AuthResult::denied("API key could not be checked")
            }
        }
    }
}
