//! Which web origins may use the APIs from a browser: `CORS_ALLOWED_ORIGINS`, an explicit list of
//! origins (`https://dash.example.com`), empty by default. The HTTP API answers their CORS
//! preflights (API Gateway's CORS configuration when deployed, the local gateway identically), and
//! the WebSocket authorizer refuses a `$connect` whose `Origin` header names any other origin — the
//! browser sends it and a page cannot forge it. Clients that send no `Origin` (servers, the command
//! line) are not browsers and are not concerned. The deployment's own viewer origin is always
//! allowed. There is no wildcard: credentials travel in headers, and a `*` would let any page
//! that obtained a token use it from anywhere.

use std::fmt;

/// Request headers a browser may send on a cross-origin call.
pub const ALLOWED_HEADERS: &[&str] = &["authorization", "content-type", "x-api-key", "idempotency-key"];
/// Response headers a cross-origin page may read.
pub const EXPOSED_HEADERS: &[&str] = &["x-next-token", "x-entry-count", "retry-after"];
/// Methods of the HTTP API.
pub const ALLOWED_METHODS: &[&str] = &["GET", "POST", "PATCH", "DELETE"];
/// How long a browser may cache a preflight answer, in seconds.
pub const MAX_AGE_SECONDS: u32 = 600;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    allowed: Vec<String>,
}

/// Why an origin in the list is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidOrigin(pub String);

impl fmt::Display for InvalidOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an origin: give scheme://host[:port] (e.g. https://dash.example.com), no path, no wildcard",
            self.0
        )
    }
}

/// `scheme://host[:port]` in lower case, without a trailing slash; `None` for anything else.
fn normalise(origin: &str) -> Option<String> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, rest) = origin.split_once("://")?;
    let host_ok = !rest.is_empty()
        && !rest.contains(['/', '*', '?', '#', '@', ' '])
        && rest.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    (matches!(scheme, "http" | "https") && host_ok).then_some(origin)
}

impl OriginPolicy {
    /// Parses a comma-separated list (blank: nobody from another origin).
    pub fn parse(list: &str) -> Result<Self, InvalidOrigin> {
        let allowed = list
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(|o| normalise(o).ok_or_else(|| InvalidOrigin(o.to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OriginPolicy { allowed })
    }

    /// The same list, plus `origin` (the viewer's own).
    pub fn with(mut self, origin: &str) -> Self {
        if let Some(o) = normalise(origin)
            && !self.allowed.contains(&o)
        {
            self.allowed.push(o);
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }

    pub fn origins(&self) -> &[String] {
        &self.allowed
    }

    /// Whether a page of `origin` may call the APIs.
    pub fn allows(&self, origin: &str) -> bool {
        normalise(origin).is_some_and(|o| self.allowed.contains(&o))
    }

    /// For a WebSocket `$connect`: no `Origin` (not a browser) or an allowed one.
    pub fn allows_connect(&self, origin: Option<&str>) -> bool {
        origin.is_none_or(|o| self.allows(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_exact_and_wildcards_are_refused() {
        let policy = OriginPolicy::parse(" https://Dash.example.com/ , http://localhost:3000").unwrap();
        assert!(policy.allows("https://dash.example.com"));
        assert!(policy.allows("http://localhost:3000"));
        assert!(!policy.allows("https://dash.example.com.evil.test"));
        assert!(!policy.allows("http://dash.example.com"), "the scheme is part of the origin");
        assert!(!policy.allows("null"));
        assert!(policy.allows_connect(None));
        assert!(!policy.allows_connect(Some("https://evil.test")));
        for bad in ["*", "https://*.example.com", "dash.example.com", "https://x.test/path", "ftp://x.test"] {
            assert_eq!(OriginPolicy::parse(bad), Err(InvalidOrigin(bad.to_owned())), "{bad}");
        }
        assert!(OriginPolicy::parse("").unwrap().is_empty());
        assert!(OriginPolicy::default().with("http://127.0.0.1:8080").allows("http://127.0.0.1:8080"));
    }
}
