//! Authentication, following the seed's test classes: extraction, the result, JWT, API keys,
//! rejection, configuration, convenience functions and error handling, plus the hardening cases.

use std::sync::Arc;
use std::time::Duration;

use auditline::auth::api_keys::{self, ApiKeyCheck, ApiKeyStore, ApiKeyValidator, MemoryApiKeys};
use auditline::auth::extract::{self, CredentialSource, Presented};
use auditline::auth::jwks::JwksCache;
use auditline::auth::jwt::{JwtError, JwtVerifier, KeySource};
use auditline::auth::{AuthMethod, AuthOptions, AuthResult, Authenticator, WebSocketAuthenticator};
use auditline::auth::{AuthSettings, Secret};
use auditline::domain::TenantId;
use auditline_tests::auth::{self as creds, JwksServer, SECRET, claims, hs256, now};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Duration as Days, Utc};
use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::Algorithm;
use serde_json::json;

fn hs256_verifier() -> JwtVerifier {
    JwtVerifier::hmac(Algorithm::HS256, SECRET.as_bytes(), 0).unwrap()
}

fn rs256_verifier() -> JwtVerifier {
    JwtVerifier::public_key_pem(Algorithm::RS256, creds::RSA_PUBLIC.as_bytes(), 0).unwrap()
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    pairs.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_str(v).unwrap())).collect()
}

fn no_query(_: &str) -> Option<&'static str> {
    None
}

/// An authenticator with an HS256 verifier and an in-memory key store holding one key per case.
struct Fixture {
    auth: Authenticator,
    keys: Arc<MemoryApiKeys>,
}

impl Fixture {
    fn new(options: impl FnOnce(&mut AuthOptions)) -> Self {
        let keys = Arc::new(MemoryApiKeys::new());
        let mut o = AuthOptions { jwt: Some(hs256_verifier()), api_keys: Some(keys.clone()), ..AuthOptions::default() };
        options(&mut o);
        Fixture { auth: Authenticator::new(o), keys }
    }

    async fn key(&self, scopes: &[&str], expires_in: Option<Days>) -> String {
        let created = api_keys::generate(
            TenantId::parse("acme").unwrap(),
            "svc-reporter",
            scopes.iter().map(|s| s.to_string()).collect(),
            Some("reporting".into()),
            expires_in.map(|d| Utc::now() + d),
            Utc::now(),
        )
        .unwrap();
        self.keys.insert(&created.record).await.unwrap();
        created.key.expose().to_owned()
    }
}

mod extraction {
    use super::*;

    #[test]
    fn every_seed_position_and_the_subprotocol_are_read() {
        let h = headers(&[("authorization", "Bearer h.e.der")]);
        assert_eq!(
            extract::all_presented(&h, no_query),
            [Presented::Jwt { token: "h.e.der".into(), source: CredentialSource::AuthorizationHeader }]
        );
        let q = |n: &str| (n == "token").then_some("q.u.ery");
        assert_eq!(
            extract::all_presented(&HeaderMap::new(), q),
            [Presented::Jwt { token: "q.u.ery".into(), source: CredentialSource::TokenQueryParameter }]
        );
        let h = headers(&[("x-api-key", "alk_header")]);
        assert_eq!(
            extract::all_presented(&h, no_query),
            [Presented::ApiKey { key: "alk_header".into(), source: CredentialSource::ApiKeyHeader }]
        );
        let q = |n: &str| (n == "api_key").then_some("alk_query");
        assert_eq!(
            extract::all_presented(&HeaderMap::new(), q),
            [Presented::ApiKey { key: "alk_query".into(), source: CredentialSource::ApiKeyQueryParameter }]
        );
        let h = headers(&[("sec-websocket-protocol", "bearer, s.u.b")]);
        assert_eq!(
            extract::all_presented(&h, no_query),
            [Presented::Jwt { token: "s.u.b".into(), source: CredentialSource::WebSocketProtocol }]
        );
        assert_eq!(extract::negotiated_subprotocol(&h), Some("bearer"));
    }

    #[test]
    fn empty_values_are_no_credential() {
        let h = headers(&[("authorization", "Bearer"), ("x-api-key", " ")]);
        assert!(extract::all_presented(&h, |_| Some("")).is_empty());
    }
}

mod result {
    use super::*;

    #[tokio::test]
    async fn a_success_carries_identity_tenant_scopes_and_claims() {
        let f = Fixture::new(|_| {});
        let mut c = claims("user-789", "audit:read reports:*");
        c["tenant_id"] = json!("acme");
        c["scopes"] = json!(["files:read"]);
        let r = f
            .auth
            .authenticate_request(&headers(&[("authorization", &format!("Bearer {}", hs256(&c)))]), no_query)
            .await;
        assert!(r.authenticated && r.is_allowed());
        assert_eq!(r.user_id.as_deref(), Some("user-789"));
        assert_eq!(r.auth_method, Some(AuthMethod::Jwt));
        assert_eq!(r.tenant_id.as_str(), "acme");
        assert_eq!(r.scopes, ["audit:read", "reports:*", "files:read"]);
        assert_eq!(r.claims.as_ref().unwrap()["sub"], "user-789");
        assert_eq!(r.error, None);
        assert!(r.has_scope("reports:read") && r.has_scope("files:read") && !r.has_scope("audit:write"));
        assert_eq!(serde_json::to_value(&r).unwrap()["auth_method"], "jwt");
    }

    #[tokio::test]
    async fn a_token_without_tenant_is_refused_rather_than_shared() {
        let f = Fixture::new(|_| {});
        let mut c = claims("u", "audit:read");
        c.as_object_mut().unwrap().remove("tenant_id");
        let r = f.auth.authenticate(&[jwt(&hs256(&c))]).await;
        assert!(!r.is_allowed(), "no silent tenant `default` shared by every such token");
        assert_eq!(r.error.as_deref(), Some("token lacks the tenant_id claim"));
    }

    #[test]
    fn a_denial_has_a_reason_and_no_identity() {
        let r = AuthResult::denied("no credentials were presented");
        assert!(!r.authenticated && !r.is_allowed() && !r.has_scope("audit:read"));
        assert_eq!((r.user_id, r.auth_method), (None, None));
    }
}

fn jwt(token: &str) -> Presented {
    Presented::Jwt { token: token.to_owned(), source: CredentialSource::AuthorizationHeader }
}

fn api_key(key: &str) -> Presented {
    Presented::ApiKey { key: key.to_owned(), source: CredentialSource::ApiKeyHeader }
}

mod jwt_validation {
    use super::*;

    #[tokio::test]
    async fn valid_tokens_of_each_algorithm_pass() {
        let c = claims("u-1", "audit:read");
        assert_eq!(hs256_verifier().verify(&hs256(&c)).await.unwrap().user_id, "u-1");
        assert_eq!(rs256_verifier().verify(&creds::rs256(creds::RSA_PRIVATE, None, &c)).await.unwrap().user_id, "u-1");
        let es = JwtVerifier::public_key_pem(Algorithm::ES256, creds::EC_PUBLIC.as_bytes(), 0).unwrap();
        assert_eq!(es.verify(&creds::es256(&c)).await.unwrap().scopes, ["audit:read"]);
    }

    #[tokio::test]
    async fn time_claims_are_enforced_with_the_configured_leeway() {
        let expired = json!({"sub": "u", "tenant_id": "acme", "exp": now() - 120});
        assert_eq!(hs256_verifier().verify(&hs256(&expired)).await, Err(JwtError::Expired));
        let lenient = JwtVerifier::hmac(Algorithm::HS256, SECRET.as_bytes(), 300).unwrap();
        assert!(lenient.verify(&hs256(&expired)).await.is_ok(), "within leeway");

        let early = json!({"sub": "u", "tenant_id": "acme", "exp": now() + 3600, "nbf": now() + 600});
        assert_eq!(hs256_verifier().verify(&hs256(&early)).await, Err(JwtError::NotYetValid));
        let no_exp = json!({"sub": "u"});
        assert_eq!(hs256_verifier().verify(&hs256(&no_exp)).await, Err(JwtError::MissingClaim("exp".into())));
    }

    #[tokio::test]
    async fn signatures_issuers_and_audiences_are_checked() {
        let c = claims("u", "");
        let forged = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &c,
            &jsonwebtoken::EncodingKey::from_secret(b"another-secret-that-is-long-enough!!"),
        )
        .unwrap();
        assert_eq!(hs256_verifier().verify(&forged).await, Err(JwtError::BadSignature));
        let other_rsa = creds::rs256(creds::RSA2_PRIVATE, None, &c);
        assert_eq!(rs256_verifier().verify(&other_rsa).await, Err(JwtError::BadSignature));

        let strict = hs256_verifier().with_issuer("https://id.example").with_audience("auditline");
        let mut good = claims("u", "");
        good["iss"] = json!("https://id.example");
        good["aud"] = json!("auditline");
        assert!(strict.verify(&hs256(&good)).await.is_ok());
        let mut wrong_iss = good.clone();
        wrong_iss["iss"] = json!("https://evil.example");
        assert_eq!(strict.verify(&hs256(&wrong_iss)).await, Err(JwtError::WrongIssuer));
        let mut wrong_aud = good.clone();
        wrong_aud["aud"] = json!("someone-else");
        assert_eq!(strict.verify(&hs256(&wrong_aud)).await, Err(JwtError::WrongAudience));
        let mut no_aud = good;
        no_aud.as_object_mut().unwrap().remove("aud");
        assert!(strict.verify(&hs256(&no_aud)).await.is_err());
    }

    #[tokio::test]
    async fn a_configured_issuer_is_required_as_exactly_that_string() {
        let strict = hs256_verifier().with_issuer("https://id.example");
        let mut c = claims("u", "");
        assert_eq!(strict.verify(&hs256(&c)).await, Err(JwtError::MissingClaim("iss".into())), "no iss");
        for wrong in [json!(42), json!(["https://id.example"]), json!(null), json!("https://id.example/")] {
            c["iss"] = wrong.clone();
            assert!(strict.verify(&hs256(&c)).await.is_err(), "iss {wrong} is refused");
        }
        c["iss"] = json!("https://id.example");
        assert!(strict.verify(&hs256(&c)).await.is_ok());
    }

    #[tokio::test]
    async fn a_token_without_a_tenant_is_refused_unless_a_default_tenant_is_configured() {
        let mut c = claims("u", "audit:read");
        c.as_object_mut().unwrap().remove("tenant_id");
        let token = hs256(&c);
        assert_eq!(hs256_verifier().verify(&token).await, Err(JwtError::MissingClaim("tenant_id".into())));
        let lenient = hs256_verifier().with_default_tenant(TenantId::parse("shared").unwrap());
        assert_eq!(lenient.verify(&token).await.unwrap().tenant_id.as_str(), "shared");
        c["tenant_id"] = json!("acme");
        assert_eq!(lenient.verify(&hs256(&c)).await.unwrap().tenant_id.as_str(), "acme", "a named tenant wins");

        // Through the configuration: JWT_DEFAULT_TENANT.
        let config = |pairs: &[(&str, &str)]| {
            let map: std::collections::HashMap<String, String> =
                pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            auditline::Config::from_lookup(|k| map.get(k).cloned())
        };
        let settings = config(&[("JWT_SECRET", SECRET), ("AUTH_METHODS", "jwt")]).unwrap().auth;
        let refused = Authenticator::from_settings(&settings, None).unwrap().authenticate(&[jwt(&token)]).await;
        assert_eq!(refused.error.as_deref(), Some("token lacks the tenant_id claim"));
        let settings =
            config(&[("JWT_SECRET", SECRET), ("AUTH_METHODS", "jwt"), ("JWT_DEFAULT_TENANT", "shared")]).unwrap().auth;
        let admitted = Authenticator::from_settings(&settings, None).unwrap().authenticate(&[jwt(&token)]).await;
        assert_eq!(admitted.tenant_id.as_str(), "shared");
        assert_eq!(config(&[("JWT_DEFAULT_TENANT", "bad#tenant")]).unwrap_err().variable, "JWT_DEFAULT_TENANT");
    }

    #[tokio::test]
    async fn scopes_are_read_from_scope_scp_and_scopes() {
        let v = hs256_verifier();
        let mut c = claims("u", "audit:read");
        c["scp"] = json!(["reports:read", "files:*"]);
        c["scopes"] = json!(["audit:read", "schedules:read"]);
        let scopes = v.verify(&hs256(&c)).await.unwrap().scopes;
        assert_eq!(scopes, ["audit:read", "reports:read", "files:*", "schedules:read"], "merged, duplicates dropped");
        let mut azure = claims("u", "");
        azure["scp"] = json!("reports:read templates:read");
        assert_eq!(v.verify(&hs256(&azure)).await.unwrap().scopes, ["reports:read", "templates:read"]);
    }

    #[tokio::test]
    async fn the_algorithm_is_pinned() {
        let c = claims("u", "audit:read");
        // alg "none": a token with no signature at all.
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        for unsigned in [format!("{header}.{body}."), format!("{header}.{body}")] {
            assert!(hs256_verifier().verify(&unsigned).await.is_err());
            assert!(rs256_verifier().verify(&unsigned).await.is_err());
        }
        // HS/RS confusion: an HS256 token "signed" with the RSA public key as its secret.
        let confused = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &c,
            &jsonwebtoken::EncodingKey::from_secret(creds::RSA_PUBLIC.as_bytes()),
        )
        .unwrap();
        assert!(matches!(rs256_verifier().verify(&confused).await, Err(JwtError::AlgorithmNotAllowed { .. })));
        // And the reverse: an RS256 token presented to an HS256 configuration.
        let rs = creds::rs256(creds::RSA_PRIVATE, None, &c);
        assert!(matches!(hs256_verifier().verify(&rs).await, Err(JwtError::AlgorithmNotAllowed { .. })));
        // Same family, other algorithm: HS512 against HS256.
        let hs512 = creds::sign(Algorithm::HS512, &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()), None, &c);
        assert!(matches!(hs256_verifier().verify(&hs512).await, Err(JwtError::AlgorithmNotAllowed { .. })));
    }

    #[tokio::test]
    async fn malformed_tokens_are_refused() {
        let v = hs256_verifier();
        let bad_json = format!("{}.{}.sig", URL_SAFE_NO_PAD.encode(b"{not json"), URL_SAFE_NO_PAD.encode(b"{}"));
        let good_header = hs256(&claims("u", "")).split('.').next().unwrap().to_owned();
        let bad_claims = format!("{good_header}.{}.sig", URL_SAFE_NO_PAD.encode(b"[1,2"));
        for token in ["", "abc", "a.b", "!!!.@@@.###", "a.b.c.d", &bad_json, &bad_claims] {
            let err = v.verify(token).await.unwrap_err();
            assert!(matches!(err, JwtError::Malformed | JwtError::BadSignature), "{token:?}: {err:?}");
        }
    }

    #[tokio::test]
    async fn oversized_tokens_are_refused_before_parsing() {
        let mut c = claims("u", "");
        c["padding"] = json!("x".repeat(9000));
        let big = hs256(&c);
        assert!(big.len() > 8 * 1024);
        assert_eq!(hs256_verifier().verify(&big).await, Err(JwtError::TooLarge), "even correctly signed");
        let f = Fixture::new(|_| {});
        let r = f.auth.authenticate(&[api_key(&"k".repeat(9000))]).await;
        assert_eq!(r.error.as_deref(), Some("API key is too large"));
    }

    #[tokio::test]
    async fn identity_claims_must_be_present_and_well_formed() {
        let v = hs256_verifier();
        let no_sub = json!({"exp": now() + 60});
        assert_eq!(v.verify(&hs256(&no_sub)).await, Err(JwtError::MissingClaim("sub".into())));
        for (claim, value) in [
            ("sub", json!("")),
            ("sub", json!(42)),
            ("tenant_id", json!("evil#E#x")),
            ("tenant_id", json!(7)),
            ("scope", json!(7)),
            ("scp", json!({"audit": "read"})),
            ("scopes", json!(["has space"])),
            ("scp", json!([""])),
        ] {
            let mut c = claims("u", "");
            c[claim] = value;
            let err = v.verify(&hs256(&c)).await.unwrap_err();
            // jsonwebtoken itself reports an empty `sub` as missing; either way it is refused by name.
            assert!(
                matches!(&err, JwtError::InvalidClaim(c) | JwtError::MissingClaim(c) if c == claim),
                "{claim}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn jwks_keys_are_cached_and_refetched_on_an_unknown_kid() {
        let server = JwksServer::start(creds::jwk_set(vec![creds::rsa_jwk(creds::RSA_PRIVATE, "key-1")])).await;
        let cache =
            Arc::new(JwksCache::new(&server.url, Algorithm::RS256).unwrap().with_min_refresh_interval(Duration::ZERO));
        let verifier = JwtVerifier::new(Algorithm::RS256, KeySource::Jwks(cache), 0).unwrap();
        let c = claims("u", "audit:read");

        for _ in 0..3 {
            verifier.verify(&creds::rs256(creds::RSA_PRIVATE, Some("key-1"), &c)).await.unwrap();
        }
        assert_eq!(server.fetches(), 1, "keys are cached across calls");

        // The provider rotates: a new key signs new tokens.
        server.replace(creds::jwk_set(vec![creds::rsa_jwk(creds::RSA2_PRIVATE, "key-2")])).await;
        let rotated = creds::rs256(creds::RSA2_PRIVATE, Some("key-2"), &c);
        assert_eq!(verifier.verify(&rotated).await.unwrap().user_id, "u");
        assert_eq!(server.fetches(), 2, "an unknown kid triggers one refetch");

        // A kid the provider does not have: refused, and the old key is gone after rotation.
        let unknown = creds::rs256(creds::RSA_PRIVATE, Some("key-9"), &c);
        assert_eq!(verifier.verify(&unknown).await, Err(JwtError::UnknownKey));
        let retired = creds::rs256(creds::RSA_PRIVATE, Some("key-1"), &c);
        assert_eq!(verifier.verify(&retired).await, Err(JwtError::UnknownKey));
    }

    #[tokio::test]
    async fn jwks_refetches_are_rate_limited() {
        let server = JwksServer::start(creds::jwk_set(vec![creds::rsa_jwk(creds::RSA_PRIVATE, "key-1")])).await;
        let cache = Arc::new(JwksCache::new(&server.url, Algorithm::RS256).unwrap());
        let verifier = JwtVerifier::new(Algorithm::RS256, KeySource::Jwks(cache), 0).unwrap();
        let c = claims("u", "");
        verifier.verify(&creds::rs256(creds::RSA_PRIVATE, Some("key-1"), &c)).await.unwrap();
        for i in 0..20 {
            let made_up = creds::rs256(creds::RSA_PRIVATE, Some(&format!("made-up-{i}")), &c);
            assert_eq!(verifier.verify(&made_up).await, Err(JwtError::UnknownKey));
        }
        assert_eq!(server.fetches(), 1, "made-up key ids cannot flood the provider");
    }

    #[tokio::test]
    async fn an_unreachable_jwks_fails_closed() {
        let url = format!("{}/jwks.json", auditline_tests::unreachable_url());
        let cache = Arc::new(JwksCache::new(&url, Algorithm::RS256).unwrap());
        let verifier = JwtVerifier::new(Algorithm::RS256, KeySource::Jwks(cache), 0).unwrap();
        let token = creds::rs256(creds::RSA_PRIVATE, Some("key-1"), &claims("u", ""));
        assert_eq!(verifier.verify(&token).await, Err(JwtError::KeysUnavailable));
    }

    #[tokio::test]
    async fn failed_fetches_back_off_instead_of_hammering_the_provider() {
        let server = JwksServer::start(creds::jwk_set(vec![creds::rsa_jwk(creds::RSA_PRIVATE, "key-1")])).await;
        server.set_failing(true);
        let cache = Arc::new(JwksCache::new(&server.url, Algorithm::RS256).unwrap());
        let verifier = JwtVerifier::new(Algorithm::RS256, KeySource::Jwks(cache), 0).unwrap();
        let token = creds::rs256(creds::RSA_PRIVATE, Some("key-1"), &claims("u", ""));
        for _ in 0..20 {
            assert_eq!(verifier.verify(&token).await, Err(JwtError::KeysUnavailable));
        }
        assert_eq!(server.fetches(), 1, "one attempt, then a back-off: attempts count, not only successes");
        server.set_failing(false);
        assert_eq!(verifier.verify(&token).await, Err(JwtError::KeysUnavailable), "still backing off");
        assert_eq!(server.fetches(), 1);
    }

    #[tokio::test]
    async fn unknown_key_ids_are_remembered_briefly() {
        let server = JwksServer::start(creds::jwk_set(vec![creds::rsa_jwk(creds::RSA_PRIVATE, "key-1")])).await;
        let cache =
            Arc::new(JwksCache::new(&server.url, Algorithm::RS256).unwrap().with_min_refresh_interval(Duration::ZERO));
        let verifier = JwtVerifier::new(Algorithm::RS256, KeySource::Jwks(cache), 0).unwrap();
        let made_up = creds::rs256(creds::RSA_PRIVATE, Some("made-up"), &claims("u", ""));
        for _ in 0..10 {
            assert_eq!(verifier.verify(&made_up).await, Err(JwtError::UnknownKey));
        }
        assert_eq!(server.fetches(), 1, "even with no refresh interval, a known-unknown kid costs no fetch");
        let good = creds::rs256(creds::RSA_PRIVATE, Some("key-1"), &claims("u", ""));
        assert!(verifier.verify(&good).await.is_ok());
    }

    #[tokio::test]
    async fn stale_keys_are_refused_past_their_absolute_age() {
        let server = JwksServer::start(creds::jwk_set(vec![creds::rsa_jwk(creds::RSA_PRIVATE, "key-1")])).await;
        let cache = JwksCache::new(&server.url, Algorithm::RS256)
            .unwrap()
            .with_min_refresh_interval(Duration::ZERO)
            .with_max_age(Duration::ZERO)
            .with_max_stale(Duration::from_secs(3));
        let verifier = JwtVerifier::new(Algorithm::RS256, KeySource::Jwks(Arc::new(cache)), 0).unwrap();
        let token = creds::rs256(creds::RSA_PRIVATE, Some("key-1"), &claims("u", ""));
        assert!(verifier.verify(&token).await.is_ok());
        server.set_failing(true);
        assert!(verifier.verify(&token).await.is_ok(), "a known key rides out a short outage");
        tokio::time::sleep(Duration::from_millis(3200)).await;
        assert_eq!(verifier.verify(&token).await, Err(JwtError::KeysUnavailable), "but not past max_stale");
    }

    #[test]
    fn jwks_urls_must_be_https_except_on_loopback() {
        let mut s = auditline::Config::from_lookup(|_| None).unwrap().auth;
        s.jwt_algorithm = "RS256".into();
        s.allowed_methods = vec![AuthMethod::Jwt];
        s.jwt_jwks_url = Some("http://id.example/.well-known/jwks.json".into());
        let refused = Authenticator::from_settings(&s, None).err().expect("plain http to a remote host is refused");
        assert!(refused.to_string().contains("https"), "{refused}");
        s.jwt_jwks_url = Some("http://127.0.0.1:8080/jwks.json".into());
        assert!(Authenticator::from_settings(&s, None).is_ok());
    }
}

mod api_key_authentication {
    use super::*;

    #[tokio::test]
    async fn a_valid_key_authenticates_as_its_user_tenant_and_scopes() {
        let f = Fixture::new(|_| {});
        let key = f.key(&["audit:write", "reports:*"], None).await;
        for presented in [
            f.auth.authenticate_request(&headers(&[("x-api-key", &key)]), no_query).await,
            f.auth.authenticate_request(&HeaderMap::new(), |n| (n == "api_key").then_some(key.as_str())).await,
        ] {
            assert!(presented.authenticated);
            assert_eq!(presented.auth_method, Some(AuthMethod::ApiKey));
            assert_eq!(presented.user_id.as_deref(), Some("svc-reporter"));
            assert_eq!(presented.tenant_id.as_str(), "acme");
            assert!(presented.has_scope("reports:read"));
            assert_eq!(presented.claims, None);
        }
    }

    #[tokio::test]
    async fn unknown_revoked_and_expired_keys_are_refused() {
        let f = Fixture::new(|_| {});
        let good = f.key(&["audit:read"], None).await;
        let (_, unknown_body) = good.split_at(4);
        let unknown = format!("alk_{}", unknown_body.chars().rev().collect::<String>());
        assert_eq!(f.keys.check(&unknown, Utc::now()).await.unwrap(), ApiKeyCheck::Unknown);
        assert_eq!(f.auth.authenticate(&[api_key(&unknown)]).await.error.as_deref(), Some("API key is unknown"));
        assert_eq!(
            f.auth.authenticate(&[api_key("not-even-a-key")]).await.error.as_deref(),
            Some("API key is unknown")
        );

        assert!(f.keys.revoke(&api_keys::key_id(&good)).await.unwrap());
        assert_eq!(f.auth.authenticate(&[api_key(&good)]).await.error.as_deref(), Some("API key is revoked"));

        let expired = f.key(&["audit:read"], Some(Days::seconds(-1))).await;
        assert_eq!(f.auth.authenticate(&[api_key(&expired)]).await.error.as_deref(), Some("API key has expired"));
        let later = f.key(&["audit:read"], Some(Days::days(1))).await;
        assert!(f.auth.authenticate(&[api_key(&later)]).await.authenticated);
    }
}

mod rejection {
    use super::*;

    #[tokio::test]
    async fn no_credentials_are_refused_when_auth_is_required() {
        let f = Fixture::new(|_| {});
        let r = f.auth.authenticate_request(&HeaderMap::new(), no_query).await;
        assert!(!r.is_allowed());
        assert_eq!(r.error.as_deref(), Some("no credentials were presented"));
    }

    #[tokio::test]
    async fn a_bad_credential_is_never_downgraded_to_anonymous() {
        let f = Fixture::new(|o| o.require_auth = false);
        let r = f.auth.authenticate(&[jwt("garbage")]).await;
        assert!(!r.is_allowed());
        assert_eq!(r.auth_method, None);
    }

    #[tokio::test]
    async fn errors_never_contain_the_credential() {
        let f = Fixture::new(|_| {});
        let key = f.key(&[], None).await;
        f.keys.revoke(&api_keys::key_id(&key)).await.unwrap();
        let expired = hs256(&json!({"sub": "u", "exp": now() - 999}));
        for r in [f.auth.authenticate(&[api_key(&key)]).await, f.auth.authenticate(&[jwt(&expired)]).await] {
            let error = r.error.unwrap();
            assert!(!error.contains(&key) && !error.contains(&expired), "{error}");
        }
    }
}

mod configuration {
    use super::*;

    #[tokio::test]
    async fn anonymous_mode_admits_callers_without_credentials() {
        let f = Fixture::new(|o| {
            o.require_auth = false;
            o.anonymous_scopes = vec!["reports:read".into()];
        });
        let r = f.auth.authenticate_request(&HeaderMap::new(), no_query).await;
        assert!(r.is_allowed() && !r.authenticated);
        assert_eq!(r.auth_method, Some(AuthMethod::Anonymous));
        assert!(r.has_scope("reports:read") && !r.has_scope("audit:read"));
        assert_eq!(r.tenant_id, TenantId::default());
    }

    #[tokio::test]
    async fn allowed_methods_limit_what_is_accepted() {
        let jwt_only = Fixture::new(|o| o.allowed_methods = vec![AuthMethod::Jwt]);
        let key = jwt_only.key(&["audit:read"], None).await;
        let r = jwt_only.auth.authenticate(&[api_key(&key)]).await;
        assert!(!r.is_allowed(), "an API key is refused when only JWTs are allowed");
        let token = hs256(&claims("u", ""));
        assert!(jwt_only.auth.authenticate(&[api_key(&key), jwt(&token)]).await.authenticated);

        let keys_only = Fixture::new(|o| o.allowed_methods = vec![AuthMethod::ApiKey]);
        let key = keys_only.key(&["audit:read"], None).await;
        assert!(!keys_only.auth.authenticate(&[jwt(&token)]).await.is_allowed());
        assert!(keys_only.auth.authenticate(&[jwt(&token), api_key(&key)]).await.authenticated);
    }

    fn settings() -> AuthSettings {
        auditline::Config::from_lookup(|_| None).unwrap().auth
    }

    #[test]
    fn settings_that_cannot_work_are_refused_at_start() {
        let keys: Option<Arc<dyn ApiKeyValidator>> = Some(Arc::new(MemoryApiKeys::new()));
        let no_jwt_key = Authenticator::from_settings(&settings(), keys.clone());
        assert!(no_jwt_key.is_err(), "jwt allowed but no secret, public key or JWKS");

        let mut s = settings();
        s.jwt_secret = Some(Secret::new("short"));
        assert!(Authenticator::from_settings(&s, keys.clone()).is_err(), "a short HMAC secret");

        s.jwt_secret = Some(Secret::new(SECRET));
        assert!(Authenticator::from_settings(&s, None).is_err(), "api_key allowed but no key store");
        assert!(Authenticator::from_settings(&s, keys.clone()).is_ok());

        let mut rs = settings();
        rs.jwt_algorithm = "RS256".into();
        rs.jwt_public_key = Some(creds::RSA_PUBLIC.replace('\n', "\\n"));
        assert!(Authenticator::from_settings(&rs, keys.clone()).is_ok(), "escaped PEM line breaks are read");
        rs.jwt_public_key = Some("not a key".into());
        assert!(Authenticator::from_settings(&rs, keys.clone()).is_err());

        let mut jwks = settings();
        jwks.jwt_jwks_url = Some("https://id.example/.well-known/jwks.json".into());
        assert!(Authenticator::from_settings(&jwks, keys.clone()).is_err(), "JWKS with an HMAC algorithm");
        jwks.jwt_algorithm = "RS256".into();
        assert!(Authenticator::from_settings(&jwks, keys).is_ok());
    }

    #[tokio::test]
    async fn issuer_and_audience_settings_are_applied() {
        let mut s = settings();
        s.jwt_secret = Some(Secret::new(SECRET));
        s.allowed_methods = vec![AuthMethod::Jwt];
        s.jwt_issuer = Some("https://id.example".into());
        s.jwt_audience = Some("auditline".into());
        let auth = Authenticator::from_settings(&s, None).unwrap();
        let mut c = claims("u", "");
        assert!(!auth.authenticate(&[jwt(&hs256(&c))]).await.is_allowed());
        c["iss"] = json!("https://id.example");
        c["aud"] = json!(["auditline", "other"]);
        assert!(auth.authenticate(&[jwt(&hs256(&c))]).await.authenticated);
    }
}

mod convenience {
    use super::*;

    #[tokio::test]
    async fn the_seed_names_work_and_tokens_can_be_minted_for_development() {
        let f = Fixture::new(|_| {});
        let auth: &WebSocketAuthenticator = &f.auth;
        let token = auditline::auth::jwt::sign_hmac(
            Algorithm::HS256,
            SECRET.as_bytes(),
            &json!({"sub": "dev", "tenant_id": "acme", "scope": "*", "exp": now() + 60}),
        )
        .unwrap();
        let r = auth
            .authenticate_request(&headers(&[("sec-websocket-protocol", &format!("bearer, {token}"))]), no_query)
            .await;
        assert!(r.authenticated && r.has_scope("anything:at-all"));
    }
}

mod error_handling {
    use super::*;

    #[tokio::test]
    async fn a_failing_key_store_denies_without_panicking() {
        struct Broken;
        #[async_trait::async_trait]
        impl ApiKeyValidator for Broken {
            async fn check(
                &self,
                _: &str,
                _: chrono::DateTime<Utc>,
            ) -> Result<ApiKeyCheck, auditline::backend::BackendError> {
                Err(auditline::backend::BackendError::Unavailable("down".into()))
            }
        }
        let auth = Authenticator::new(AuthOptions { api_keys: Some(Arc::new(Broken)), ..AuthOptions::default() });
        let r = auth.authenticate(&[api_key("alk_whatever")]).await;
        assert!(!r.is_allowed());
        assert_eq!(r.error.as_deref(), Some("API key could not be checked"));
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

        /// Arbitrary bytes in any credential position never panic and never authenticate.
        #[test]
        fn arbitrary_credentials_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), position in 0usize..5) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let f = Fixture::new(|_| {});
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let mut h = HeaderMap::new();
                let (name, value) = match position {
                    0 => ("authorization", format!("Bearer {text}")),
                    1 => ("x-api-key", text.clone()),
                    2 => ("sec-websocket-protocol", format!("bearer, {text}")),
                    _ => ("x-unused", String::new()),
                };
                if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
                    h.insert(HeaderName::from_static(name), v);
                }
                let query = |n: &str| match (position, n) {
                    (3, "token") | (4, "api_key") => Some(text.as_str()),
                    _ => None,
                };
                let r = f.auth.authenticate_request(&h, query).await;
                prop_assert!(!r.authenticated);
                let _ = hs256_verifier().verify(&text).await;
                let _ = rs256_verifier().verify(&text).await;
                let _ = f.keys.check(&text, Utc::now()).await;
                Ok(())
            })?;
        }
    }
}
