//! A JWKS endpoint's keys, cached for the life of the process (across Lambda invocations) and
//! fetched again when a token names a key id the cache does not know, as identity providers do
//! when they rotate keys. Refetches are rate-limited so a flood of tokens with made-up key ids
//! cannot turn into a flood of requests to the provider.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use super::jwt::{JwtConfigError, JwtError};

const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_JWKS_BYTES: usize = 256 * 1024;

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<bytes::Bytes>>;

#[derive(Default)]
struct Keys {
    by_id: HashMap<String, DecodingKey>,
    without_id: Vec<DecodingKey>,
    fetched_at: Option<Instant>,
}

pub struct JwksCache {
    url: http::Uri,
    algorithm: Algorithm,
    /// Keys older than this are fetched again before use.
    max_age: Duration,
    /// An unknown key id triggers a refetch at most this often.
    min_refresh_interval: Duration,
    keys: RwLock<Keys>,
    fetching: Mutex<()>,
    client: HttpClient,
}

impl JwksCache {
    pub fn new(url: &str, algorithm: Algorithm) -> Result<Self, JwtConfigError> {
        let url: http::Uri = url.parse().map_err(|_| JwtConfigError("JWKS URL is not a valid URL".into()))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| JwtConfigError(format!("no TLS root certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(JwksCache {
            url,
            algorithm,
            max_age: Duration::from_secs(3600),
            min_refresh_interval: Duration::from_secs(30),
            keys: RwLock::default(),
            fetching: Mutex::new(()),
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Sets how often an unknown key id may cause a refetch (tests use zero).
    pub fn with_min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh_interval = interval;
        self
    }

    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    fn lookup(keys: &Keys, kid: Option<&str>) -> Option<DecodingKey> {
        match kid {
            Some(kid) => keys.by_id.get(kid).cloned(),
            // A token without `kid` is accepted only when the choice is unambiguous.
            None => match (keys.by_id.len(), keys.without_id.as_slice()) {
                (0, [only]) => Some(only.clone()),
                (1, []) => keys.by_id.values().next().cloned(),
                _ => None,
            },
        }
    }

    /// The key for a token's `kid`.
    pub async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, JwtError> {
        {
            let keys = self.keys.read().await;
            let fresh = keys.fetched_at.is_some_and(|t| t.elapsed() < self.max_age);
            if fresh && let Some(key) = Self::lookup(&keys, kid) {
                return Ok(key);
            }
        }
        let _one_fetch_at_a_time = self.fetching.lock().await;
        let stale = {
            let keys = self.keys.read().await;
            let due = keys.fetched_at.is_none_or(|t| t.elapsed() >= self.min_refresh_interval);
            if !due {
                // Fetched moments ago (perhaps by a concurrent caller): answer from that.
                return Self::lookup(&keys, kid).ok_or(JwtError::UnknownKey);
            }
            Self::lookup(&keys, kid)
        };
        match self.fetch().await {
            Ok(fetched) => {
                let mut keys = self.keys.write().await;
                *keys = fetched;
                Self::lookup(&keys, kid).ok_or(JwtError::UnknownKey)
            }
            Err(reason) => {
                tracing::warn!(url = %self.url, %reason, "JWKS fetch failed");
                // Keep serving a known key through a provider outage.
                stale.ok_or(JwtError::KeysUnavailable)
            }
        }
    }

    async fn fetch(&self) -> Result<Keys, String> {
        let request = http::Request::get(self.url.clone())
            .header("accept", "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(FETCH_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let body = tokio::time::timeout(FETCH_TIMEOUT, Limited::new(response.into_body(), MAX_JWKS_BYTES).collect())
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?
            .to_bytes();
        let document: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let entries = document.get("keys").and_then(Value::as_array).ok_or("no keys array")?;
        let mut keys = Keys { fetched_at: Some(Instant::now()), ..Keys::default() };
        // Each key on its own: one key of a kind this service does not use must not spoil the rest.
        for entry in entries {
            let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
                continue;
            };
            if let Some(key) = self.usable(&jwk) {
                match jwk.common.key_id {
                    Some(kid) => {
                        keys.by_id.insert(kid, key);
                    }
                    None => keys.without_id.push(key),
                }
            }
        }
        Ok(keys)
    }

    /// A signing key for the configured algorithm, or `None`.
    fn usable(&self, jwk: &Jwk) -> Option<DecodingKey> {
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            return None;
        }
        if jwk.common.key_algorithm.is_some_and(|a| a != self.algorithm.into()) {
            return None;
        }
        DecodingKey::from_jwk(jwk).ok().filter(|k| k.family() == self.algorithm.family())
    }
}
