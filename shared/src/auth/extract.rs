//! Finding the credential in a request: `Authorization: Bearer <token>` for JWTs, `X-API-Key` for
//! API keys. Browsers cannot set headers on a WebSocket, so a token may also be offered as the
//! subprotocol pair `Sec-WebSocket-Protocol: bearer, <token>`; the server then answers with the
//! subprotocol `bearer` (see [`negotiated_subprotocol`]).
//!
//! The seed also reads `?token=` and `?api_key=`. URLs end up in access logs, browser history and
//! proxies, so the HTTP API takes credentials from headers only ([`in_headers`]); the WebSocket
//! `$connect` still accepts the query forms ([`all_presented`]) for clients that can do nothing
//! else, and the subprotocol is the way to prefer.

use http::HeaderMap;

/// Credentials longer than this are refused before any parsing (API Gateway's authorizer context is
/// 8 KB in all; no legitimate token or key comes near it).
pub const MAX_CREDENTIAL_BYTES: usize = 8 * 1024;

/// Query parameters that carry credentials on a WebSocket `$connect`; the HTTP API refuses them.
pub const QUERY_CREDENTIALS: [&str; 2] = ["token", "api_key"];

/// The subprotocol name that announces a token in `Sec-WebSocket-Protocol`.
pub const BEARER_SUBPROTOCOL: &str = "bearer";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    AuthorizationHeader,
    TokenQueryParameter,
    WebSocketProtocol,
    ApiKeyHeader,
    ApiKeyQueryParameter,
}

/// What the request offered. Its `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Presented {
    Jwt { token: String, source: CredentialSource },
    ApiKey { key: String, source: CredentialSource },
    Nothing,
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::Jwt { token, source } => write!(f, "Jwt({source:?}, {} bytes)", token.len()),
            Presented::ApiKey { key, source } => {
                write!(f, "ApiKey({source:?}, {} bytes)", key.len())
            }
            Presented::Nothing => f.write_str("Nothing"),
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = header(headers, "authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// The subprotocol name that announces an API key in `Sec-WebSocket-Protocol` (a browser can set
/// no header but this one, and a key must stay out of the URL).
pub const API_KEY_SUBPROTOCOL: &str = "api-key";

/// The value after `name` in `Sec-WebSocket-Protocol: <name>, <value>`.
fn subprotocol_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let value = header(headers, "sec-websocket-protocol")?;
    let mut offered = value.split(',').map(str::trim);
    offered.find(|p| p.eq_ignore_ascii_case(name))?;
    offered.next().filter(|t| !t.is_empty())
}

/// The token of `Sec-WebSocket-Protocol: bearer, <token>`.
pub fn subprotocol_token(headers: &HeaderMap) -> Option<&str> {
    subprotocol_value(headers, BEARER_SUBPROTOCOL)
}

/// The key of `Sec-WebSocket-Protocol: api-key, <key>`.
pub fn subprotocol_api_key(headers: &HeaderMap) -> Option<&str> {
    subprotocol_value(headers, API_KEY_SUBPROTOCOL)
}

/// The subprotocol a WebSocket server must answer with: `bearer` (or `api-key`) when the client
/// offered its credential that way (API Gateway and browsers drop a connection whose offered
/// subprotocol goes unanswered).
pub fn negotiated_subprotocol(headers: &HeaderMap) -> Option<&'static str> {
    match (subprotocol_token(headers), subprotocol_api_key(headers)) {
        (Some(_), _) => Some(BEARER_SUBPROTOCOL),
        (None, Some(_)) => Some(API_KEY_SUBPROTOCOL),
        (None, None) => None,
    }
}

pub fn api_key_header(headers: &HeaderMap) -> Option<&str> {
    header(headers, "x-api-key")
}

fn jwt(token: &str, source: CredentialSource) -> Presented {
    Presented::Jwt { token: token.to_owned(), source }
}

fn key(key: &str, source: CredentialSource) -> Presented {
    Presented::ApiKey { key: key.to_owned(), source }
}

/// The credentials in the headers (HTTP API requests): JWT before API key.
pub fn in_headers(headers: &HeaderMap) -> Vec<Presented> {
    [
        bearer_token(headers).map(|t| jwt(t, CredentialSource::AuthorizationHeader)),
        api_key_header(headers).map(|k| key(k, CredentialSource::ApiKeyHeader)),
        subprotocol_token(headers).map(|t| jwt(t, CredentialSource::WebSocketProtocol)),
        subprotocol_api_key(headers).map(|k| key(k, CredentialSource::WebSocketProtocol)),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Every credential a WebSocket `$connect` carries, in the order they are tried: headers before
/// query parameters, JWT before API key.
pub fn all_presented<'q>(headers: &HeaderMap, query: impl Fn(&str) -> Option<&'q str>) -> Vec<Presented> {
    let query = |name: &str| query(name).map(str::trim).filter(|v| !v.is_empty());
    let mut presented = in_headers(headers);
    presented.extend(query("token").map(|t| jwt(t, CredentialSource::TokenQueryParameter)));
    presented.extend(query("api_key").map(|k| key(k, CredentialSource::ApiKeyQueryParameter)));
    presented
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    #[test]
    fn bearer_tokens_come_from_the_authorization_header() {
        assert_eq!(bearer_token(&headers(&[("authorization", "Bearer abc.def.ghi")])), Some("abc.def.ghi"));
        assert_eq!(bearer_token(&headers(&[("authorization", "bearer   abc")])), Some("abc"));
        assert_eq!(bearer_token(&headers(&[("authorization", "Basic dXNlcjpwYXNz")])), None);
        assert_eq!(bearer_token(&headers(&[("authorization", "Bearer ")])), None);
        assert_eq!(bearer_token(&headers(&[])), None);
    }

    #[test]
    fn subprotocol_tokens_follow_the_bearer_marker() {
        let h = headers(&[("sec-websocket-protocol", "bearer, eyJ.x.y")]);
        assert_eq!(subprotocol_token(&h), Some("eyJ.x.y"));
        assert_eq!(negotiated_subprotocol(&h), Some("bearer"));
        let h = headers(&[("sec-websocket-protocol", "graphql-ws")]);
        assert_eq!(subprotocol_token(&h), None);
        assert_eq!(negotiated_subprotocol(&h), None);
        assert_eq!(subprotocol_token(&headers(&[("sec-websocket-protocol", "bearer")])), None);
    }

    #[test]
    fn credentials_are_tried_headers_first() {
        let h = headers(&[("x-api-key", "alk_key")]);
        let q = |name: &str| match name {
            "token" => Some("query.jwt.token"),
            "api_key" => Some("alk_query"),
            _ => None,
        };
        let all = all_presented(&h, q);
        assert_eq!(all[0], Presented::ApiKey { key: "alk_key".into(), source: CredentialSource::ApiKeyHeader });
        assert_eq!(
            all[1],
            Presented::Jwt { token: "query.jwt.token".into(), source: CredentialSource::TokenQueryParameter }
        );
        assert_eq!(all.len(), 3);
        assert!(!format!("{all:?}").contains("alk_key"), "Debug hides secrets");
        assert!(all_presented(&HeaderMap::new(), |_| None).is_empty());
    }
}
