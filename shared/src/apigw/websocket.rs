//! The WebSocket API's `$connect` and `$disconnect` routes.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::authorizer::AuthorizerContext;
use crate::auth::extract;
use crate::realtime::{
    ConnectRefusal, ConnectionFilters, ConnectionLimits, ConnectionStore, WebSocketConnectionInfo, admit, may_subscribe,
};

fn respond(status: i64, body: serde_json::Value) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status;
    response.headers.insert("content-type", http::HeaderValue::from_static("application/json"));
    response.body = Some(Body::Text(body.to_string()));
    response
}

fn refuse(status: i64, code: &str, message: &str, parameter: Option<&str>) -> ApiGatewayProxyResponse {
    respond(status, json!({"error": {"code": code, "message": message, "parameter": parameter}}))
}

/// `$connect`, after the authorizer allowed it: admits callers with a read scope while their tenant
/// and they themselves are under their connection limits, and records the connection with the
/// identity the authorizer established and the filters the client asked for (`project_id`,
/// `entity_type`, `action` in the query). Answers with the `bearer` subprotocol when the token came
/// that way.
pub async fn connect(
    event: &ApiGatewayWebsocketProxyRequest,
    connections: &dyn ConnectionStore,
    limits: ConnectionLimits,
    now: DateTime<Utc>,
) -> ApiGatewayProxyResponse {
    let ctx = &event.request_context;
    let Some(connection_id) = ctx.connection_id.as_deref().filter(|c| !c.is_empty()) else {
        return refuse(400, "invalid_request", "the event has no connection id", None);
    };
    let fields = serde_json::Map::from_iter(ctx.authorizer.fields.clone());
    let caller = serde_json::from_value::<AuthorizerContext>(fields.into()).ok().and_then(|c| c.caller());
    let Some(caller) = caller else {
        return refuse(401, "unauthenticated", "authentication is required", None);
    };
    if !may_subscribe(&caller.scopes) {
        return refuse(403, "forbidden", &ConnectRefusal::NoReadScope.to_string(), None);
    }
    let query = &event.query_string_parameters;
    let filters = match ConnectionFilters::from_query(|name| query.first(name)) {
        Ok(f) => f,
        Err(e) => return refuse(400, "invalid_parameter", &e.to_string(), Some(e.field())),
    };
    // Counted before the put, so concurrent connects may overshoot a limit by a few: the limits
    // bound a tenant's share, they are not exact quotas.
    let counts = match connections.count(&caller.tenant_id, caller.user_id.as_deref(), now).await {
        Ok(counts) => counts,
        Err(e) => {
            tracing::error!(connection_id, error = %e, "connections not counted");
            return refuse(503, "unavailable", "the connection could not be registered; retry later", None);
        }
    };
    if let Err(refusal) = admit(&caller, counts, limits) {
        tracing::warn!(connection_id, tenant = %caller.tenant_id, %refusal, "connection refused");
        return refuse(429, "connection_limit", &refusal.to_string(), None);
    }
    let connection = WebSocketConnectionInfo::new(connection_id, &caller, filters, now);
    if let Err(e) = connections.put(&connection).await {
        tracing::error!(connection_id, error = %e, "connection not recorded");
        return refuse(500, "internal_error", "the connection could not be registered", None);
    }
    let mut response = respond(200, json!({"connected": true}));
    if let Some(protocol) = extract::negotiated_subprotocol(&event.headers) {
        response.headers.insert("sec-websocket-protocol", http::HeaderValue::from_static(protocol));
    }
    response
}

/// `$disconnect`: forgets the connection. Idempotent, and best effort: API Gateway does not always
/// send it, which is why records also expire.
pub async fn disconnect(
    event: &ApiGatewayWebsocketProxyRequest,
    connections: &dyn ConnectionStore,
) -> ApiGatewayProxyResponse {
    if let Some(connection_id) = event.request_context.connection_id.as_deref()
        && let Err(e) = connections.remove(connection_id).await
    {
        tracing::warn!(connection_id, error = %e, "connection record not removed; its TTL will");
    }
    respond(200, json!({"disconnected": true}))
}
