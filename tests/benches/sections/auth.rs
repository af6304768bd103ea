//! Authentication: JWT verification time per call, and DynamoDB requests per API-key check.

use std::fmt::Write as _;
use std::sync::Arc;

use auditline::auth::api_keys::{self, ApiKeyStore};
use auditline::auth::jwt::JwtVerifier;
use auditline::auth::{AuthOptions, Authenticator};
use auditline::store::dynamo::DynamoApiKeys;
use auditline::store::dynamo::tables::API_KEYS;
use auditline_tests::auth::{self as creds, SECRET, claims};
use auditline_tests::{fresh_table, local_client, tenant};
use jsonwebtoken::Algorithm;

use crate::{micros, time_calls};

pub async fn run(out: &mut String) {
    let c = claims("user-789", "audit:read reports:*");
    let cases = [
        ("HS256", JwtVerifier::hmac(Algorithm::HS256, SECRET.as_bytes(), 0).unwrap(), creds::hs256(&c)),
        (
            "RS256 (2048-bit)",
            JwtVerifier::public_key_pem(Algorithm::RS256, creds::RSA_PUBLIC.as_bytes(), 0).unwrap(),
            creds::rs256(creds::RSA_PRIVATE, None, &c),
        ),
        (
            "ES256",
            JwtVerifier::public_key_pem(Algorithm::ES256, creds::EC_PUBLIC.as_bytes(), 0).unwrap(),
            creds::es256(&c),
        ),
    ];
    writeln!(out, "| JWT verification (signature, claims, identity) | p50 | p99 |\n|---|---|---|").unwrap();
    for (name, verifier, token) in &cases {
        let (p50, p99) = time_calls(|_| async {
            verifier.verify(token).await.expect("valid");
        })
        .await;
        writeln!(out, "| {name} | {} | {} |", micros(p50), micros(p99)).unwrap();
    }

    let (client, requests) = local_client();
    let table = fresh_table(&client, &API_KEYS, "bench-api-keys").await;
    let store = Arc::new(DynamoApiKeys::new(client, table));
    let now = chrono::Utc::now();
    let created = api_keys::generate(tenant("acme"), "svc", vec!["audit:read".into()], None, None, now).unwrap();
    store.insert(&created.record).await.unwrap();
    let auth = Authenticator::new(AuthOptions { api_keys: Some(store), ..AuthOptions::default() });
    let presented = [auditline::auth::extract::Presented::ApiKey {
        key: created.key.expose().to_owned(),
        source: auditline::auth::extract::CredentialSource::ApiKeyHeader,
    }];
    const CHECKS: u64 = 100;
    requests.reset();
    for _ in 0..CHECKS {
        assert!(auth.authenticate(&presented).await.authenticated);
    }
    let per_check = requests.get() as f64 / CHECKS as f64;
    writeln!(out, "\n| API-key authentication | DynamoDB requests |\n|---|---|").unwrap();
    writeln!(out, "| valid key (one strongly consistent GetItem by hash) | {per_check:.2} |").unwrap();
    requests.reset();
    let malformed = [auditline::auth::extract::Presented::ApiKey {
        key: "not-a-key".into(),
        source: auditline::auth::extract::CredentialSource::ApiKeyHeader,
    }];
    assert!(!auth.authenticate(&malformed).await.is_allowed());
    writeln!(out, "| malformed key (refused before any lookup) | {} |", requests.get()).unwrap();
}
