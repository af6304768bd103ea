//! Credentials for tests: tokens signed with test-only keys, JWK sets, and a JWKS server on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::RwLock;

use super::wire::{read_request, respond};

/// The HMAC secret tests configure (long enough for the 32-byte minimum).
pub const SECRET: &str = "auditline-test-secret-0123456789abcdef";

pub const RSA_PRIVATE: &str = include_str!("../fixtures/keys/rsa-private.pem");
pub const RSA_PUBLIC: &str = include_str!("../fixtures/keys/rsa-public.pem");
pub const RSA2_PRIVATE: &str = include_str!("../fixtures/keys/rsa2-private.pem");
pub const EC_PRIVATE: &str = include_str!("../fixtures/keys/ec-private.pem");
pub const EC_PUBLIC: &str = include_str!("../fixtures/keys/ec-public.pem");

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The tenant of the tokens [`claims`] makes.
pub const TENANT: &str = "acme";

/// Claims for `sub` in tenant `acme` with `scope` (space separated), valid for an hour.
pub fn claims(sub: &str, scope: &str) -> Value {
    json!({ "sub": sub, "tenant_id": TENANT, "scope": scope, "iat": now(), "exp": now() + 3600 })
}

pub fn sign(algorithm: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

pub fn hs256(claims: &Value) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET.as_bytes()), None, claims)
}

pub fn rs256(private_pem: &str, kid: Option<&str>, claims: &Value) -> String {
    sign(Algorithm::RS256, &EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(), kid, claims)
}

pub fn es256(claims: &Value) -> String {
    sign(Algorithm::ES256, &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(), None, claims)
}

/// The public JWK of an RSA private key, under `kid`.
pub fn rsa_jwk(private_pem: &str, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(), Algorithm::RS256)
        .expect("jwk");
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

pub fn jwk_set(keys: Vec<Jwk>) -> String {
    serde_json::to_string(&JwkSet { keys }).unwrap()
}

/// Serves a JWK set over HTTP on loopback and counts the fetches; the set can be replaced (rotation).
#[derive(Clone)]
pub struct JwksServer {
    pub url: String,
    document: Arc<RwLock<String>>,
    fetches: Arc<AtomicUsize>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl JwksServer {
    pub async fn start(document: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        let server = JwksServer {
            url,
            document: Arc::new(RwLock::new(document)),
            fetches: Arc::default(),
            failing: Arc::default(),
        };
        let shared = server.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if read_request(&mut socket).await.is_none() {
                        return;
                    }
                    shared.fetches.fetch_add(1, Ordering::SeqCst);
                    if shared.failing.load(Ordering::SeqCst) {
                        respond(&mut socket, 503, &[("content-type", "text/plain")], "down").await;
                        return;
                    }
                    let body = shared.document.read().await.clone();
                    respond(&mut socket, 200, &[("content-type", "application/json")], &body).await;
                });
            }
        });
        server
    }

    pub async fn replace(&self, document: String) {
        *self.document.write().await = document;
    }

    /// Makes the provider answer 503 (an outage) or serve its keys again.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}
