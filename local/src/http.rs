//! The HTTP side of the gateway: each request routed as API Gateway would route it, through the
//! authorizer, to the route's handler; the viewer's files; CORS as API Gateway answers it.

use std::net::SocketAddr;
use std::sync::Arc;

use auditline::apigw::authorizer::authorize_http;
use auditline::apigw::http::{MAX_BODY_BYTES, Route, handle};
use auditline::auth::origins::{self, OriginPolicy};
use auditline::viewer;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::Gateway;
use crate::events::{self, HttpRequest};

pub(crate) fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("status and header are valid")
}

fn request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Every HTTP request: route it as API Gateway would, authorize it with the authorizer, then hand
/// the route's event to its handler.
pub(crate) async fn http_request(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let raw_query = parts.uri.query().unwrap_or("").to_owned();
    let method = parts.method.as_str().to_owned();
    let origin = parts.headers.get("origin").and_then(|v| v.to_str().ok()).map(str::to_owned);
    if method == "OPTIONS" && !gateway.cors.is_empty() {
        return preflight(&gateway.cors, origin.as_deref());
    }
    if method == "GET" && viewer::serves(&path) {
        let answer = viewer::respond(&path, &gateway.viewer);
        let mut response = Response::builder().status(answer.status);
        for (name, value) in answer.headers {
            response = response.header(name, value);
        }
        return response.body(Body::from(answer.body)).expect("status and headers are valid");
    }
    let Some((route, mut path_parameters)) = Route::resolve(&method, &path) else {
        return not_routed(&method, &path);
    };
    // API Gateway hands path parameters to the function decoded.
    for (_, value) in &mut path_parameters {
        *value = percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned();
    }
    let mut response = route_request(&gateway, route, &path_parameters, parts, body, peer, &raw_query).await;
    if let Some(origin) = origin.filter(|o| gateway.cors.allows(o)) {
        allow_origin(response.headers_mut(), &origin);
        let exposed = http::HeaderValue::from_str(&origins::EXPOSED_HEADERS.join(", ")).expect("ASCII");
        response.headers_mut().insert("access-control-expose-headers", exposed);
    }
    response
}

/// No route for this method and path: 405 naming the methods the path takes (`Allow`), or API
/// Gateway's 404 for a path no route has.
fn not_routed(method: &str, path: &str) -> Response {
    let allowed = Route::methods_at(path);
    if allowed.is_empty() {
        return json_response(404, &json!({"message": "Not Found"}));
    }
    let body = json!({"error": {
        "code": "method_not_allowed",
        "message": format!("{path} takes {}, not {method}", allowed.join(", ")),
        "parameter": null,
        "request_id": request_id(),
    }});
    let mut response = json_response(405, &body);
    let allow = http::HeaderValue::from_str(&allowed.join(", ")).expect("method names are ASCII");
    response.headers_mut().insert("allow", allow);
    response
}

fn allow_origin(headers: &mut http::HeaderMap, origin: &str) {
    if let Ok(value) = http::HeaderValue::from_str(origin) {
        headers.insert("access-control-allow-origin", value);
    }
    headers.insert("vary", http::HeaderValue::from_static("origin"));
}

/// A CORS preflight, answered as API Gateway answers it for an HTTP API with a CORS configuration:
/// 204, with the allowance only for an origin on the list (the browser then refuses the others).
fn preflight(cors: &OriginPolicy, origin: Option<&str>) -> Response {
    let mut response = Response::builder().status(204).body(Body::empty()).expect("a valid response");
    if let Some(origin) = origin.filter(|o| cors.allows(o)) {
        let headers = response.headers_mut();
        allow_origin(headers, origin);
        let list = |items: &[&str]| http::HeaderValue::from_str(&items.join(", ")).expect("ASCII");
        headers.insert("access-control-allow-methods", list(origins::ALLOWED_METHODS));
        headers.insert("access-control-allow-headers", list(origins::ALLOWED_HEADERS));
        headers.insert("access-control-max-age", http::HeaderValue::from(origins::MAX_AGE_SECONDS));
    }
    response
}

/// One API route: the authorizer, then the route's handler, as API Gateway runs them.
async fn route_request(
    gateway: &Gateway,
    route: Route,
    path_parameters: &[(&'static str, String)],
    parts: http::request::Parts,
    body: Body,
    peer: SocketAddr,
    raw_query: &str,
) -> Response {
    let path = parts.uri.path().to_owned();
    let method = parts.method.as_str().to_owned();
    // Read at most one byte more than the limit: enough for the handler to answer 413.
    let body = match http_body_util::Limited::new(body, MAX_BODY_BYTES + 1).collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => vec![b' '; MAX_BODY_BYTES + 1],
    };
    let request_id = request_id();
    let r = HttpRequest {
        route_key: route.route_key(),
        method: &method,
        path: &path,
        raw_query,
        headers: &parts.headers,
        source_ip: peer.ip(),
        request_id: &request_id,
    };
    // Every route has the authorizer, as deployed; the public health check lets callers without
    // credentials in and tells those with `audit:read` more.
    let event = serde_json::from_value(events::http_authorizer(&r)).unwrap_or_default();
    let decision = authorize_http(&event, &gateway.auth).await;
    if !decision.is_authorized {
        // What API Gateway answers for a denial: no reason given.
        return json_response(403, &json!({"message": "Forbidden"}));
    }
    let authorizer = Some(decision.context).filter(|c| c.as_object().is_some_and(|o| !o.is_empty()));
    let event = events::http_request(&r, path_parameters, &body, authorizer.as_ref());
    let lambda_request = match lambda_http::request::from_str(&event.to_string()) {
        Ok(request) => request,
        Err(e) => {
            tracing::error!(error = %e, "could not build the API Gateway event");
            return json_response(500, &json!({"message": "Internal Server Error"}));
        }
    };
    let response = handle(route, lambda_request, &gateway.api).await;
    let (parts, body) = response.into_parts();
    let bytes = match body {
        lambda_http::Body::Text(t) => t.into_bytes(),
        lambda_http::Body::Binary(b) => b,
        _ => Vec::new(),
    };
    Response::from_parts(parts, Body::from(bytes))
}
