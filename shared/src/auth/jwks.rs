//! A JWKS endpoint's keys, cached for the life of the process (across Lambda invocations) and
//! fetched again when a token names a key id the cache does not know, as identity providers do
//! when they rotate keys.
//!
//! Hostile or unlucky traffic must not turn into a flood of requests to the provider, nor a broken
//! provider into accepting keys forever:
//! - a refetch happens at most every `min_refresh_interval`, counted from the last *attempt*; after
//!   failed attempts the wait doubles (up to [`MAX_BACKOFF`]);
//! - a key id the provider did not have is remembered for [`UNKNOWN_KID_TTL`], so made-up ids cost
//!   no fetch at all;
//! - through a provider outage known keys keep working, but never longer than `max_stale` after the
//!   last successful fetch;
//! - the URL must be `https`, except on loopback (tests, local identity providers).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use thiserror::Error;
use tokio::sync::{Mutex, RwLock};

/// Longest wait between fetch attempts after repeated failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a key id the provider did not list is answered from memory.
pub const UNKNOWN_KID_TTL: Duration = Duration::from_secs(300);
/// Unknown key ids remembered at most (a flood of made-up ids cannot grow memory without bound).
const MAX_UNKNOWN_KIDS: usize = 1024;

/// Why no key could be had for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeyLookupError {
    #[error("the signing key is not one the provider publishes")]
    UnknownKey,
    #[error("the provider's keys could not be fetched")]
    Unavailable,
}

/// A JWKS URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("JWKS URL {0}")]
pub struct JwksUrlError(String);

const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_JWKS_BYTES: usize = 256 * 1024;

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<bytes::Bytes>>;

#[derive(Default)]
struct Keys {
    by_id: HashMap<String, DecodingKey>,
    without_id: Vec<DecodingKey>,
    /// The last successful fetch.
    fetched_at: Option<Instant>,
    /// The last fetch attempt, successful or not, and how many attempts in a row have failed.
    attempted_at: Option<Instant>,
    failures: u32,
    /// Key ids a fresh fetch did not contain, and when that was found.
    unknown: HashMap<String, Instant>,
}

pub struct JwksCache {
    url: http::Uri,
    algorithm: Algorithm,
    /// Keys older than this are fetched again before use.
    max_age: Duration,
    /// Keys older than this are refused even when the provider cannot be reached.
    max_stale: Duration,
    /// A refetch is attempted at most this often (doubling after each failed attempt).
    min_refresh_interval: Duration,
    keys: RwLock<Keys>,
    fetching: Mutex<()>,
    client: HttpClient,
}

impl JwksCache {
    pub fn new(url: &str, algorithm: Algorithm) -> Result<Self, JwksUrlError> {
        let url = checked_url(url)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| JwksUrlError(format!("cannot be fetched: no TLS root certificates ({e})")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(JwksCache {
            url,
            algorithm,
            max_age: Duration::from_secs(3600),
            max_stale: Duration::from_secs(24 * 3600),
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

    /// Sets how long known keys may be used through a provider outage.
    pub fn with_max_stale(mut self, max_stale: Duration) -> Self {
        self.max_stale = max_stale;
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
    pub async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, KeyLookupError> {
        {
            let keys = self.keys.read().await;
            let fresh = keys.fetched_at.is_some_and(|t| t.elapsed() < self.max_age);
            if fresh && let Some(key) = Self::lookup(&keys, kid) {
                return Ok(key);
            }
            if Self::recently_unknown(&keys, kid) {
                return Err(KeyLookupError::UnknownKey);
            }
        }
        let _one_fetch_at_a_time = self.fetching.lock().await;
        if !self.fetch_due(&*self.keys.read().await) {
            // Tried moments ago (perhaps by a concurrent caller), or backing off: answer from memory.
            return self.answer_without_fetch(&*self.keys.read().await, kid);
        }
        let fetched = self.fetch().await;
        let mut keys = self.keys.write().await;
        keys.attempted_at = Some(Instant::now());
        match fetched {
            Ok(fetched) => {
                keys.by_id = fetched.by_id;
                keys.without_id = fetched.without_id;
                keys.fetched_at = keys.attempted_at;
                keys.failures = 0;
                keys.unknown.clear();
                match Self::lookup(&keys, kid) {
                    Some(key) => Ok(key),
                    None => {
                        if let Some(kid) = kid {
                            if keys.unknown.len() >= MAX_UNKNOWN_KIDS {
                                keys.unknown.clear();
                            }
                            keys.unknown.insert(kid.to_owned(), Instant::now());
                        }
                        Err(KeyLookupError::UnknownKey)
                    }
                }
            }
            Err(reason) => {
                keys.failures = keys.failures.saturating_add(1);
                tracing::warn!(url = %self.url, %reason, failures = keys.failures, "JWKS fetch failed");
                self.answer_without_fetch(&keys, kid)
            }
        }
    }

    fn recently_unknown(keys: &Keys, kid: Option<&str>) -> bool {
        kid.and_then(|k| keys.unknown.get(k)).is_some_and(|t| t.elapsed() < UNKNOWN_KID_TTL)
    }

    /// Whether a fetch may be attempted now: the interval since the last attempt has passed,
    /// doubled for every failed attempt in a row.
    fn fetch_due(&self, keys: &Keys) -> bool {
        let Some(attempted_at) = keys.attempted_at else { return true };
        let doublings = keys.failures.saturating_sub(1).min(16);
        let wait = if keys.failures == 0 {
            self.min_refresh_interval
        } else {
            self.min_refresh_interval.max(Duration::from_secs(1)).saturating_mul(1 << doublings).min(MAX_BACKOFF)
        };
        attempted_at.elapsed() >= wait
    }

    /// A known key that is not too old, even if the provider cannot be asked now.
    fn answer_without_fetch(&self, keys: &Keys, kid: Option<&str>) -> Result<DecodingKey, KeyLookupError> {
        match keys.fetched_at {
            Some(t) if t.elapsed() < self.max_stale => Self::lookup(keys, kid).ok_or(if keys.failures > 0 {
                KeyLookupError::Unavailable
            } else {
                KeyLookupError::UnknownKey
            }),
            _ => Err(KeyLookupError::Unavailable),
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
        let mut keys = Keys::default();
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

/// Parses a JWKS URL: `https`, or `http` to a loopback host only.
fn checked_url(url: &str) -> Result<http::Uri, JwksUrlError> {
    let uri: http::Uri = url.parse().map_err(|_| JwksUrlError("is not a valid URL".into()))?;
    let host = uri.host().ok_or_else(|| JwksUrlError("has no host".into()))?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback(host) => Ok(uri),
        Some("http") => Err(JwksUrlError("must use https (plain http is allowed on loopback only)".into())),
        _ => Err(JwksUrlError("must be an https URL".into())),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_except_on_loopback() {
        assert!(checked_url("https://id.example/.well-known/jwks.json").is_ok());
        for loopback in ["http://127.0.0.1:8080/jwks", "http://localhost/jwks", "http://[::1]:9/jwks"] {
            assert!(checked_url(loopback).is_ok(), "{loopback}");
        }
        for refused in ["http://id.example/jwks", "http://10.0.0.1/jwks", "ftp://id.example/jwks", "/jwks", "no url"] {
            assert!(checked_url(refused).is_err(), "{refused}");
        }
    }
}
