//! The WebSocket side: an upgrade runs the `$connect` authorizer and integration, then forwards the
//! feed's messages until either side closes, then `$disconnect` — as API Gateway does.

use std::net::SocketAddr;
use std::sync::Arc;

use auditline::apigw::authorizer::authorize_websocket;
use auditline::apigw::websocket;
use auditline::auth::extract;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};

use crate::Gateway;
use crate::events::{self, Upgrade};
use crate::http::json_response;
use crate::sessions::Outbox;

/// A WebSocket upgrade: the `$connect` authorizer, then the `$connect` integration, then the session.
pub(crate) async fn websocket_upgrade(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: http::HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let connection_id =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &uuid::Uuid::now_v7().as_bytes()[6..]);
    let raw_query = query.unwrap_or_default();
    let u = Upgrade { connection_id: &connection_id, raw_query: &raw_query, headers: &headers, source_ip: peer.ip() };
    let event = serde_json::from_value(events::websocket_authorizer(&u)).unwrap_or_default();
    let decision = authorize_websocket(&event, &gateway.auth).await;
    let allowed = decision
        .policy_document
        .statement
        .first()
        .is_some_and(|s| s.effect == aws_lambda_events::iam::IamPolicyEffect::Allow);
    if !allowed {
        return json_response(403, &json!({"message": "Forbidden"}));
    }
    // The session's queue exists before the record does: no entry can find one without the other.
    let Some(queue) = gateway.sessions.register(&connection_id) else {
        return json_response(
            503,
            &json!({"error": {"code": "unavailable", "message": "this gateway has as many live connections as it takes; retry later"}}),
        );
    };
    let principal = decision.principal_id.unwrap_or_default();
    let connect = events::websocket_connect(&u, &principal, &decision.context);
    let connected = match serde_json::from_value(connect) {
        Ok(event) => {
            websocket::connect(&event, gateway.connections.as_ref(), gateway.connection_limits, chrono::Utc::now())
                .await
        }
        Err(_) => {
            gateway.sessions.remove(&connection_id);
            return json_response(500, &json!({"message": "Internal Server Error"}));
        }
    };
    if connected.status_code != 200 {
        gateway.sessions.remove(&connection_id);
        let body = match connected.body {
            Some(aws_lambda_events::encodings::Body::Text(t)) => serde_json::from_str(&t).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        return json_response(connected.status_code as u16, &body);
    }
    let upgrade = upgrade
        .max_frame_size(gateway.limits.max_frame_bytes)
        .max_message_size(gateway.limits.max_client_message_bytes);
    let upgrade = match extract::negotiated_subprotocol(&headers) {
        Some(protocol) => upgrade.protocols([protocol]),
        None => upgrade,
    };
    upgrade.on_upgrade(move |socket| session(socket, queue, gateway, connection_id)).into_response()
}

/// One open WebSocket: forwards the feed's messages until either side closes, then `$disconnect`.
async fn session(socket: WebSocket, mut queue: Outbox, gateway: Arc<Gateway>, connection_id: String) {
    let (mut outgoing, mut incoming) = socket.split();
    loop {
        tokio::select! {
            message = queue.next() => match message {
                Some(text) => {
                    if outgoing.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                None => {
                    let _ = outgoing.send(Message::Close(None)).await;
                    break;
                }
            },
            received = incoming.next() => match received {
                // The API routes nothing from clients: their messages are read and dropped. One
                // over the size limits is an error that ends the session.
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    gateway.sessions.remove(&connection_id);
    match serde_json::from_value(events::websocket_disconnect(&connection_id)) {
        Ok(event) => {
            websocket::disconnect(&event, gateway.connections.as_ref()).await;
        }
        Err(e) => tracing::error!(error = %e, "could not build the $disconnect event"),
    }
}
