//! The Lambda authorizer of both APIs: the WebSocket API's `$connect` REQUEST authorizer (IAM policy
//! response) and the HTTP API's authorizer (payload 2.0, simple response). Both pass the caller's
//! identity on as context, which API Gateway hands to the integrations.
//!
//! A denial tells the client nothing (API Gateway answers 403); the log says why, never with the
//! credential.

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::extract;
use crate::auth::scopes::{self, join_scope_list, parse_scope_list};
use crate::auth::{AuthMethod, AuthResult, Authenticator, Caller};
use crate::domain::TenantId;

/// What the authorizer tells the integrations about the caller. API Gateway allows only string,
/// number and boolean values here, so scopes travel space separated and the credential's expiry
/// as epoch seconds in a string (REST-style contexts turn every value into a string anyway).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizerContext {
    pub user_id: String,
    pub tenant_id: String,
    pub scopes: String,
    pub auth_method: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expires_at: String,
}

impl AuthorizerContext {
    pub fn from_result(result: &AuthResult) -> Self {
        AuthorizerContext {
            user_id: result.user_id.clone().unwrap_or_default(),
            tenant_id: result.tenant_id.to_string(),
            scopes: join_scope_list(&result.scopes),
            auth_method: result.auth_method.map(AuthMethod::as_str).unwrap_or_default().to_owned(),
            expires_at: result.expires_at.map(|t| t.timestamp().to_string()).unwrap_or_default(),
        }
    }

    /// The caller as the functions see it; `None` if the context is not one this authorizer wrote.
    pub fn caller(&self) -> Option<Caller> {
        Some(Caller {
            tenant_id: TenantId::parse(&self.tenant_id).ok()?,
            user_id: Some(self.user_id.clone()).filter(|u| !u.is_empty()),
            scopes: parse_scope_list(&self.scopes),
            auth_method: self.auth_method.parse().ok()?,
            credential_expires_at: match self.expires_at.as_str() {
                "" => None,
                seconds => Some(DateTime::from_timestamp(seconds.parse().ok()?, 0)?),
            },
        })
    }
}

/// The caller's context for an allowed request; an empty object for a denied one.
fn context_if(allowed: bool, result: &AuthResult) -> Value {
    let context = allowed.then(|| serde_json::to_value(AuthorizerContext::from_result(result)).ok()).flatten();
    context.unwrap_or_else(|| Value::Object(Default::default()))
}

fn log_denial(api: &str, result: &AuthResult) {
    tracing::warn!(api, reason = result.error.as_deref().unwrap_or("missing scope"), "authorization denied");
}

/// HTTP API (payload 2.0): authenticate from the headers (never the query string), then require
/// the route's scope. A public route (the health check) lets a caller without credentials in, with
/// no identity; one whose credentials fail is refused there too.
pub async fn authorize_http(
    event: &ApiGatewayV2CustomAuthorizerV2Request,
    auth: &Authenticator,
) -> ApiGatewayV2CustomAuthorizerSimpleResponse {
    let route = event.route_key.as_deref().or(event.request_context.route_key.as_deref()).unwrap_or("");
    let presented = extract::in_headers(&event.headers);
    let result = auth.authenticate(&presented).await;
    let allowed = match scopes::required_for_route(route) {
        None => false,
        Some(None) => presented.is_empty() || result.is_allowed(),
        Some(Some(scope)) => result.has_scope(scope),
    };
    if !allowed {
        log_denial("http", &result);
    }
    let mut response = ApiGatewayV2CustomAuthorizerSimpleResponse::default();
    response.is_authorized = allowed;
    response.context = context_if(allowed && result.is_allowed(), &result);
    response
}

/// WebSocket API `$connect`: authenticate; allow or deny invoking the method.
pub async fn authorize_websocket(
    event: &ApiGatewayCustomAuthorizerRequestTypeRequest,
    auth: &Authenticator,
) -> ApiGatewayCustomAuthorizerResponse {
    let query = &event.query_string_parameters;
    let origin = event.headers.get("origin").and_then(|v| v.to_str().ok());
    let result = auth.authenticate_request(&event.headers, |name| query.first(name)).await;
    // A page of an origin not on the list may hold a valid token (a user's, stolen by that page):
    // it is refused whatever the credential.
    let from_allowed_origin = auth.options().origins.allows_connect(origin);
    let allowed = result.is_allowed() && from_allowed_origin;
    if !from_allowed_origin {
        tracing::warn!(api = "websocket", reason = "origin not in CORS_ALLOWED_ORIGINS", "authorization denied");
    } else if !allowed {
        log_denial("websocket", &result);
    }
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".to_owned()];
    statement.effect = if allowed { IamPolicyEffect::Allow } else { IamPolicyEffect::Deny };
    statement.resource = vec![event.method_arn.clone().unwrap_or_else(|| "*".to_owned())];
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    policy.version = Some("2012-10-17".to_owned());
    policy.statement = vec![statement];
    let mut response = ApiGatewayCustomAuthorizerResponse::default();
    response.principal_id = Some(result.user_id.clone().unwrap_or_else(|| "anonymous".to_owned()));
    response.policy_document = policy;
    response.context = context_if(allowed, &result);
    response
}

/// Why an event could not be handled at all.
#[derive(Debug, thiserror::Error)]
#[error("the event is neither an HTTP API (2.0) nor a WebSocket REQUEST authorizer event")]
pub struct UnknownAuthorizerEvent;

/// The one authorizer function: HTTP API events carry `"version": "2.0"`, WebSocket ones a `methodArn`.
pub async fn authorize(event: Value, auth: &Authenticator) -> Result<Value, UnknownAuthorizerEvent> {
    let response = if event.get("version").and_then(Value::as_str) == Some("2.0") {
        let event: ApiGatewayV2CustomAuthorizerV2Request =
            serde_json::from_value(event).map_err(|_| UnknownAuthorizerEvent)?;
        serde_json::to_value(authorize_http(&event, auth).await)
    } else if event.get("methodArn").is_some() {
        let event: ApiGatewayCustomAuthorizerRequestTypeRequest =
            serde_json::from_value(event).map_err(|_| UnknownAuthorizerEvent)?;
        serde_json::to_value(authorize_websocket(&event, auth).await)
    } else {
        return Err(UnknownAuthorizerEvent);
    };
    response.map_err(|_| UnknownAuthorizerEvent)
}
