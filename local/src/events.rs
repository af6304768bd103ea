//! API Gateway-shaped events built from local requests, so the handlers receive exactly what Lambda
//! would hand them (they are parsed by the same deserialisers).

use std::net::IpAddr;

use aws_lambda_events::query_map::QueryMap;
use chrono::Utc;
use http::HeaderMap;
use serde_json::{Map, Value, json};

pub const STAGE: &str = "local";
pub const API_ID: &str = "local";

/// Headers as API Gateway passes them: lower-case names, repeated values joined by commas.
pub fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for name in headers.keys() {
        let values: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        map.insert(name.as_str().to_owned(), Value::from(values.join(",")));
    }
    Value::Object(map)
}

/// A decoded query string as API Gateway's `queryStringParameters` (repeated values comma-joined).
pub fn query_json(raw: &str) -> Value {
    let parsed: QueryMap = raw.parse().unwrap_or_default();
    let mut map = Map::new();
    for (name, _) in parsed.iter() {
        if !map.contains_key(name) {
            let values: Vec<&str> = parsed.all(name).unwrap_or_default();
            map.insert(name.to_owned(), Value::from(values.join(",")));
        }
    }
    Value::Object(map)
}

fn now_fields() -> (String, i64) {
    let now = Utc::now();
    (now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(), now.timestamp_millis())
}

/// What an HTTP request carries into its events.
pub struct HttpRequest<'a> {
    pub route_key: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    pub source_ip: IpAddr,
    pub request_id: &'a str,
}

fn http_context(r: &HttpRequest<'_>) -> Value {
    let (time, epoch) = now_fields();
    json!({
        "accountId": "000000000000",
        "apiId": API_ID,
        "domainName": "127.0.0.1",
        "domainPrefix": "local",
        "http": {
            "method": r.method,
            "path": r.path,
            "protocol": "HTTP/1.1",
            "sourceIp": r.source_ip.to_string(),
            "userAgent": r.headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("")
        },
        "requestId": r.request_id,
        "routeKey": r.route_key,
        "stage": "$default",
        "time": time,
        "timeEpoch": epoch
    })
}

/// The HTTP API authorizer's event (payload 2.0).
pub fn http_authorizer(r: &HttpRequest<'_>) -> Value {
    json!({
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": format!("arn:aws:execute-api:local:000000000000:{API_ID}/$default/{}", r.route_key.replacen(' ', "", 1)),
        "identitySource": [],
        "routeKey": r.route_key,
        "rawPath": r.path,
        "rawQueryString": r.raw_query,
        "headers": headers_json(r.headers),
        "queryStringParameters": query_json(r.raw_query),
        "requestContext": http_context(r),
    })
}

/// The integration's event (payload 2.0), with the authorizer's context when there is one.
pub fn http_request(
    r: &HttpRequest<'_>,
    path_parameters: &[(&str, String)],
    body: &[u8],
    authorizer: Option<&Value>,
) -> Value {
    let mut context = http_context(r);
    if let Some(a) = authorizer {
        context["authorizer"] = json!({ "lambda": a });
    }
    let params: Map<String, Value> =
        path_parameters.iter().map(|(k, v)| ((*k).to_owned(), Value::from(v.as_str()))).collect();
    let (body, base64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::Engine::encode(&base64::engine::general_purpose::STANDARD, body), true),
    };
    let mut event = json!({
        "version": "2.0",
        "routeKey": r.route_key,
        "rawPath": r.path,
        "rawQueryString": r.raw_query,
        "headers": headers_json(r.headers),
        "queryStringParameters": query_json(r.raw_query),
        "pathParameters": params,
        "requestContext": context,
        "isBase64Encoded": base64,
    });
    if !body.is_empty() {
        event["body"] = Value::from(body);
    }
    event
}

/// What a WebSocket upgrade carries into its events.
pub struct Upgrade<'a> {
    pub connection_id: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    pub source_ip: IpAddr,
}

fn websocket_context(u: &Upgrade<'_>, route: &str, event_type: &str) -> Value {
    let (time, epoch) = now_fields();
    json!({
        "routeKey": route,
        "eventType": event_type,
        "extendedRequestId": u.connection_id,
        "requestTime": time,
        "messageDirection": "IN",
        "stage": STAGE,
        "connectedAt": epoch,
        "requestTimeEpoch": epoch,
        "identity": {"sourceIp": u.source_ip.to_string()},
        "requestId": u.connection_id,
        "domainName": "127.0.0.1",
        "connectionId": u.connection_id,
        "apiId": API_ID
    })
}

/// The WebSocket `$connect` REQUEST authorizer's event.
pub fn websocket_authorizer(u: &Upgrade<'_>) -> Value {
    json!({
        "type": "REQUEST",
        "methodArn": format!("arn:aws:execute-api:local:000000000000:{API_ID}/{STAGE}/$connect"),
        "headers": headers_json(u.headers),
        "queryStringParameters": query_json(u.raw_query),
        "requestContext": websocket_context(u, "$connect", "CONNECT"),
    })
}

/// The `$connect` integration's event, with the authorizer's context as API Gateway adds it.
pub fn websocket_connect(u: &Upgrade<'_>, principal: &str, authorizer: &Value) -> Value {
    let mut context = websocket_context(u, "$connect", "CONNECT");
    let mut fields = authorizer.as_object().cloned().unwrap_or_default();
    fields.insert("principalId".into(), Value::from(principal));
    context["authorizer"] = Value::Object(fields);
    json!({
        "headers": headers_json(u.headers),
        "queryStringParameters": query_json(u.raw_query),
        "requestContext": context,
        "isBase64Encoded": false,
    })
}

/// The `$disconnect` integration's event.
pub fn websocket_disconnect(connection_id: &str) -> Value {
    let (time, epoch) = now_fields();
    json!({
        "headers": {},
        "requestContext": {
            "routeKey": "$disconnect",
            "eventType": "DISCONNECT",
            "requestTime": time,
            "messageDirection": "IN",
            "stage": STAGE,
            "connectedAt": epoch,
            "requestTimeEpoch": epoch,
            "identity": {},
            "requestId": connection_id,
            "connectionId": connection_id,
            "apiId": API_ID
        },
        "isBase64Encoded": false,
    })
}
