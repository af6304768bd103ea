//! The authorizer Lambda handler, fed the sample events in `events/` (with real credentials put in
//! place of their placeholders), for both APIs.

use std::sync::Arc;

use auditline::apigw::authorizer::{AuthorizerContext, authorize};
use auditline::auth::api_keys::{self, ApiKeyStore, MemoryApiKeys};
use auditline::auth::jwt::JwtVerifier;
use auditline::auth::origins::OriginPolicy;
use auditline::auth::{AuthMethod, AuthOptions, Authenticator};
use auditline::domain::TenantId;
use auditline_tests::auth::{SECRET, claims, hs256};
use auditline_tests::event;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

async fn authenticator(require_auth: bool) -> (Authenticator, String) {
    let keys = Arc::new(MemoryApiKeys::new());
    let created = api_keys::generate(
        TenantId::parse("acme").unwrap(),
        "ingest-bot",
        vec!["audit:write".into()],
        None,
        None,
        chrono::Utc::now(),
    )
    .unwrap();
    keys.insert(&created.record).await.unwrap();
    let auth = Authenticator::new(AuthOptions {
        jwt: Some(JwtVerifier::hmac(Algorithm::HS256, SECRET.as_bytes(), 0).unwrap()),
        api_keys: Some(keys),
        require_auth,
        // The sample $connect comes from this origin's page.
        origins: OriginPolicy::parse("https://dashboard.example.com").unwrap(),
        ..AuthOptions::default()
    });
    (auth, created.key.expose().to_owned())
}

fn reader_token() -> String {
    let mut c = claims("user-789", "audit:read");
    c["tenant_id"] = json!("acme");
    hs256(&c)
}

fn http_event(route: &str, authorization: Option<&str>, api_key: Option<&str>) -> Value {
    let mut e = event("authorizer-http.json");
    e["routeKey"] = json!(route);
    e["requestContext"]["routeKey"] = json!(route);
    let headers = e["headers"].as_object_mut().unwrap();
    headers.remove("authorization");
    if let Some(a) = authorization {
        headers.insert("authorization".into(), json!(a));
    }
    if let Some(k) = api_key {
        headers.insert("x-api-key".into(), json!(k));
    }
    e
}

#[tokio::test]
async fn http_routes_need_their_scope() {
    let (auth, key) = authenticator(true).await;
    let bearer = format!("Bearer {}", reader_token());
    for (route, authorization, api_key, allowed) in [
        ("GET /audit/logs", Some(bearer.as_str()), None, true),
        ("GET /audit/logs/{id}", Some(bearer.as_str()), None, true),
        ("GET /audit/stats", Some(bearer.as_str()), None, true),
        ("POST /audit/logs", Some(bearer.as_str()), None, false),
        ("POST /audit/logs", None, Some(key.as_str()), true),
        ("GET /audit/logs", None, Some(key.as_str()), false),
        ("GET /audit/logs", None, None, false),
        ("GET /audit/logs", Some("Bearer REPLACE_WITH_A_JWT"), None, false),
        ("GET /audit/health", None, None, true),
        ("GET /audit/health", Some(bearer.as_str()), None, true),
        ("GET /audit/health", Some("Bearer REPLACE_WITH_A_JWT"), None, false),
        ("DELETE /audit/logs/{id}", Some(bearer.as_str()), None, false),
    ] {
        let response = authorize(http_event(route, authorization, api_key), &auth).await.unwrap();
        assert_eq!(response["isAuthorized"], json!(allowed), "{route} {authorization:?} {api_key:?}");
        if !allowed {
            assert_eq!(response["context"], json!({}), "a denial carries no context");
        }
    }

    let response = authorize(http_event("GET /audit/logs", Some(&bearer), None), &auth).await.unwrap();
    let context: AuthorizerContext = serde_json::from_value(response["context"].clone()).unwrap();
    assert_eq!(
        context,
        AuthorizerContext {
            user_id: "user-789".into(),
            tenant_id: "acme".into(),
            scopes: "audit:read".into(),
            auth_method: "jwt".into(),
            expires_at: context.expires_at.clone(),
        }
    );
    let exp: i64 = context.expires_at.parse().expect("the token's exp travels as epoch seconds");
    assert!(exp > chrono::Utc::now().timestamp());
    let caller = context.caller().unwrap();
    assert!(caller.has_scope("audit:read") && !caller.has_scope("audit:write"));
    assert_eq!(caller.auth_method, AuthMethod::Jwt);
}

#[tokio::test]
async fn the_sample_http_event_is_denied_until_it_carries_a_real_token() {
    let (auth, _) = authenticator(true).await;
    let response = authorize(event("authorizer-http.json"), &auth).await.unwrap();
    assert_eq!(response["isAuthorized"], false);
}

fn websocket_event(token: Option<&str>, protocol_header: Option<&str>) -> Value {
    let mut e = event("authorizer-websocket-connect.json");
    let query = e["queryStringParameters"].as_object_mut().unwrap();
    query.remove("token");
    if let Some(t) = token {
        query.insert("token".into(), json!(t));
    }
    e["multiValueQueryStringParameters"] = json!({});
    if let Some(p) = protocol_header {
        e["headers"]["Sec-WebSocket-Protocol"] = json!(p);
    }
    e
}

fn effect(response: &Value) -> &str {
    response["policyDocument"]["Statement"][0]["Effect"].as_str().unwrap()
}

#[tokio::test]
async fn websocket_connect_is_allowed_only_with_a_good_credential() {
    let (auth, _) = authenticator(true).await;
    let token = reader_token();
    let method_arn = "arn:aws:execute-api:eu-west-1:123456789012:f6g7h8i9j0/prod/$connect";

    // A page of an origin not on the list is refused, whatever credential it holds; a client that
    // is no browser (no Origin) is let in on its credential.
    let mut foreign = websocket_event(Some(&token), None);
    foreign["headers"]["Origin"] = json!("https://evil.example");
    foreign["multiValueHeaders"]["Origin"] = json!(["https://evil.example"]);
    assert_eq!(effect(&authorize(foreign, &auth).await.unwrap()), "Deny", "an origin not on the list");
    let mut no_browser = websocket_event(Some(&token), None);
    no_browser["headers"].as_object_mut().unwrap().remove("Origin");
    no_browser["multiValueHeaders"].as_object_mut().unwrap().remove("Origin");
    let open = OriginPolicy::default();
    let strict = Authenticator::new(AuthOptions { origins: open, ..auth.options().clone() });
    assert_eq!(
        effect(&authorize(no_browser.clone(), &strict).await.unwrap()),
        "Allow",
        "no Origin, no list: not a browser"
    );
    assert_eq!(effect(&authorize(no_browser, &auth).await.unwrap()), "Allow", "no Origin: not a browser");

    for e in [websocket_event(Some(&token), None), websocket_event(None, Some(&format!("bearer, {token}")))] {
        let response = authorize(e, &auth).await.unwrap();
        assert_eq!(effect(&response), "Allow");
        assert_eq!(response["policyDocument"]["Statement"][0]["Resource"], json!([method_arn]));
        assert_eq!(response["policyDocument"]["Statement"][0]["Action"], json!(["execute-api:Invoke"]));
        assert_eq!(response["principalId"], "user-789");
        assert_eq!(response["context"]["tenant_id"], "acme");
        assert_eq!(response["context"]["scopes"], "audit:read");
    }
    for e in [
        websocket_event(None, None),
        websocket_event(Some("REPLACE_WITH_A_JWT"), None),
        event("authorizer-websocket-connect.json"),
    ] {
        let response = authorize(e, &auth).await.unwrap();
        assert_eq!(effect(&response), "Deny");
        assert_eq!(response["context"], json!({}));
    }

    let (anonymous, _) = authenticator(false).await;
    let response = authorize(websocket_event(None, None), &anonymous).await.unwrap();
    assert_eq!(effect(&response), "Allow");
    assert_eq!(response["context"]["auth_method"], "anonymous");
}

#[tokio::test]
async fn other_events_are_an_error_not_a_panic() {
    let (auth, _) = authenticator(true).await;
    for e in [json!({}), json!({"version": "2.0"}), json!("text"), json!({"methodArn": 5})] {
        assert!(authorize(e, &auth).await.is_err());
    }
}

#[tokio::test]
async fn the_http_authorizer_reads_credentials_from_headers_only() {
    let (auth, key) = authenticator(true).await;
    for (name, value) in [("token", reader_token()), ("api_key", key)] {
        let mut e = http_event("GET /audit/logs", None, None);
        e["queryStringParameters"] = json!({ name: value });
        e["rawQueryString"] = json!(format!("{name}={value}"));
        let response = authorize(e, &auth).await.unwrap();
        assert_eq!(response["isAuthorized"], false, "a {name} in the URL is not a credential of the HTTP API");
    }
}

#[tokio::test]
async fn the_health_check_carries_an_identity_only_for_callers_who_present_one() {
    let (auth, _) = authenticator(true).await;
    let anonymous = authorize(http_event("GET /audit/health", None, None), &auth).await.unwrap();
    assert_eq!((anonymous["isAuthorized"].as_bool(), &anonymous["context"]), (Some(true), &json!({})));
    let bearer = format!("Bearer {}", reader_token());
    let reader = authorize(http_event("GET /audit/health", Some(&bearer), None), &auth).await.unwrap();
    assert_eq!(reader["context"]["scopes"], "audit:read");
}
