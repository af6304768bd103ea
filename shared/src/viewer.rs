//! The viewer: a single page (plain JavaScript modules, no build step) embedded in the binary and
//! served at `/` and `/viewer/…` — by the `viewer` function on AWS and by the local gateway. Its
//! data comes from the HTTP API and the live feed with the credential the user signs in with.
//!
//! Every response carries a strict Content-Security-Policy: scripts and styles from this origin
//! only (no inline script, no `eval`), connections to this origin and the live feed's, nothing
//! framed, no forms posted anywhere.

use serde::Serialize;

/// One embedded file.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal => $kind:expr),* $(,)?) => {
        &[$(Asset {
            path: $path,
            content_type: $kind,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../viewer/", $path)),
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the page.
pub const ASSETS: &[Asset] = assets![
    "index.html" => "text/html; charset=utf-8",
    "viewer.css" => "text/css; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
    "js/main.js" => JS,
    "js/api.js" => JS,
    "js/session.js" => JS,
    "js/state.js" => JS,
    "js/dom.js" => JS,
    "js/kinds.js" => JS,
    "js/live.js" => JS,
    "js/verify.js" => JS,
    "js/pins.js" => JS,
    "js/views/signin.js" => JS,
    "js/views/filters.js" => JS,
    "js/views/table.js" => JS,
    "js/views/detail.js" => JS,
    "js/views/charts.js" => JS,
    "js/views/entity.js" => JS,
    "js/views/keys.js" => JS,
    "js/views/streams.js" => JS,
];

/// What the page learns from `/viewer/config.json` before it signs in.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ViewerConfig {
    /// The live feed's URL; `None`: the same host's `/ws` (the local gateway).
    pub websocket_url: Option<String>,
    /// Offered on the sign-in screen by the local gateway only (it prints them anyway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub development_api_key: Option<String>,
}

/// A response of the viewer, independent of the HTTP stack serving it.
pub struct ViewerResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// The policy of every viewer response; `websocket` is the live feed's origin when it is another.
pub fn content_security_policy(websocket: Option<&str>) -> String {
    let feed = websocket.map(|w| format!(" {w}")).unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'{feed}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// Whether `path` is the viewer's (`/`, `/viewer/…`).
pub fn serves(path: &str) -> bool {
    path == "/" || path == "/index.html" || path.starts_with("/viewer/")
}

/// Answers a GET of `path`.
pub fn respond(path: &str, config: &ViewerConfig) -> ViewerResponse {
    let feed_origin = config.websocket_url.as_deref().map(|u| {
        // scheme://host of the feed URL, for connect-src.
        let after = u.find("://").map_or(0, |i| i + 3);
        u[..after + u[after..].find('/').unwrap_or(u.len() - after)].to_owned()
    });
    let mut headers = vec![
        ("content-security-policy", content_security_policy(feed_origin.as_deref())),
        ("x-content-type-options", "nosniff".to_owned()),
        ("referrer-policy", "no-referrer".to_owned()),
        ("x-frame-options", "DENY".to_owned()),
    ];
    let name = match path {
        "/" | "/index.html" => "index.html",
        other => other.strip_prefix("/viewer/").unwrap_or(""),
    };
    if name == "config.json" {
        headers.push(("content-type", "application/json".to_owned()));
        headers.push(("cache-control", "no-store".to_owned()));
        let body = serde_json::to_vec(config).unwrap_or_default();
        return ViewerResponse { status: 200, headers, body };
    }
    match ASSETS.iter().find(|a| a.path == name) {
        Some(asset) => {
            headers.push(("content-type", asset.content_type.to_owned()));
            // The page and its modules change together with the deployment: revalidate.
            headers.push(("cache-control", "no-cache".to_owned()));
            ViewerResponse { status: 200, headers, body: asset.body.to_vec() }
        }
        None => {
            headers.push(("content-type", "application/json".to_owned()));
            let body = br#"{"error":{"code":"not_found","message":"no such file in the viewer"}}"#.to_vec();
            ViewerResponse { status: 404, headers, body }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_modules_are_served_with_a_strict_policy() {
        let config = ViewerConfig {
            websocket_url: Some("wss://abc.execute-api.eu-west-1.amazonaws.com/prod".into()),
            ..Default::default()
        };
        let page = respond("/", &config);
        assert_eq!(page.status, 200);
        let csp = &page.headers.iter().find(|(n, _)| *n == "content-security-policy").unwrap().1;
        assert!(csp.contains("script-src 'self';") && !csp.contains("unsafe"), "{csp}");
        assert!(csp.contains("connect-src 'self' wss://abc.execute-api.eu-west-1.amazonaws.com;"), "{csp}");
        let html = String::from_utf8(page.body).unwrap();
        assert!(!html.contains("<script>") && !html.contains("style="), "no inline script or style");
        for asset in ASSETS {
            assert_eq!(respond(&format!("/viewer/{}", asset.path), &config).status, 200, "{}", asset.path);
        }
        assert_eq!(respond("/viewer/../Cargo.toml", &config).status, 404);
        assert_eq!(respond("/viewer/config.json", &config).status, 200);
    }
}
