//! Scopes and how they match, as in the seed:
//!
//! - a granted scope matches the same required scope exactly;
//! - a granted `x:*` matches any required `x:…` (so `reports:*` grants `reports:read`);
//! - a granted `*` matches everything;
//! - nothing else: no prefix matching (`audit` does not grant `audit:read`, `audit:r*` is no wildcard).

use crate::domain::EntityType;

/// Reading audit entries over HTTP, and receiving every entry on the live feed.
pub const AUDIT_READ: &str = "audit:read";
/// Writing audit entries over HTTP.
pub const AUDIT_WRITE: &str = "audit:write";
/// Erasing fields of audit entries (each erasure leaves its record in the trail).
pub const AUDIT_ERASE: &str = "audit:erase";
/// The tenant's retention and legal holds (each change leaves its record in the trail).
pub const AUDIT_ADMIN: &str = "audit:admin";

/// Whether one granted scope satisfies one required scope.
pub fn scope_matches(granted: &str, required: &str) -> bool {
    if granted == "*" || granted == required {
        return true;
    }
    match granted.strip_suffix(":*") {
        Some(resource) if !resource.is_empty() => required
            .strip_prefix(resource)
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|action| !action.is_empty()),
        _ => false,
    }
}

/// Whether any granted scope satisfies `required`.
pub fn has_scope<S: AsRef<str>>(granted: &[S], required: &str) -> bool {
    granted.iter().any(|g| scope_matches(g.as_ref(), required))
}

/// Scopes as carried in authorizer contexts and OAuth 2 `scope` claims: space separated.
pub fn parse_scope_list(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

pub fn join_scope_list<S: AsRef<str>>(scopes: &[S]) -> String {
    scopes.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" ")
}

/// The scope that lets a live-feed client see entries of one entity type, e.g. `reports:read`.
pub fn read_scope_for(entity_type: EntityType) -> String {
    format!("{}:read", entity_type.scope_resource())
}

/// The scope an HTTP route needs, from its API Gateway route key (`"GET /audit/logs/{id}"`).
/// `Some(None)` is a public route; `None` is a route this service does not have (deny it).
pub fn required_for_route(route_key: &str) -> Option<Option<&'static str>> {
    let (method, path) = route_key.split_once(' ')?;
    match (method, path) {
        ("GET", "/audit/health" | "/audit/keys") => Some(None),
        ("POST", "/audit/logs") => Some(Some(AUDIT_WRITE)),
        ("POST", "/audit/logs/{id}/erasure" | "/audit/erasures") => Some(Some(AUDIT_ERASE)),
        ("GET" | "PUT", "/audit/settings")
        | ("POST", "/audit/settings/holds")
        | ("DELETE", "/audit/settings/holds/{hold_id}")
        | ("GET" | "POST", "/audit/streams")
        | ("GET" | "PATCH" | "DELETE", "/audit/streams/{stream_id}")
        | ("POST", "/audit/streams/{stream_id}/secret" | "/audit/streams/{stream_id}/test") => Some(Some(AUDIT_ADMIN)),
        (
            "GET",
            "/audit/logs"
            | "/audit/logs/{id}"
            | "/audit/logs/entity/{entity_id}"
            | "/audit/logs/project/{project_id}"
            | "/audit/logs/{id}/proof"
            | "/audit/checkpoints"
            | "/audit/checkpoints/latest"
            | "/audit/checkpoints/leaves"
            | "/audit/export"
            | "/audit/stats",
        ) => Some(Some(AUDIT_READ)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_is_exact_wildcard_or_star_and_nothing_else() {
        assert!(scope_matches("reports:read", "reports:read"));
        assert!(scope_matches("reports:*", "reports:read"));
        assert!(scope_matches("reports:*", "reports:write"));
        assert!(scope_matches("reports:*", "reports:*"));
        assert!(scope_matches("*", "admin:delete"));
        assert!(!scope_matches("reports:read", "reports:write"));
        assert!(!scope_matches("reports:*", "reportsx:read"), "no prefix surprises");
        assert!(!scope_matches("reports:*", "reports:"));
        assert!(!scope_matches("reports", "reports:read"));
        assert!(!scope_matches("audit:r*", "audit:read"));
        assert!(!scope_matches(":*", ":read"));
        assert!(!scope_matches("", "audit:read"));
        assert!(!scope_matches("admin:*", "reports:read"));
    }

    #[test]
    fn routes_need_read_write_or_nothing() {
        assert_eq!(required_for_route("GET /audit/logs"), Some(Some(AUDIT_READ)));
        assert_eq!(required_for_route("GET /audit/logs/{id}"), Some(Some(AUDIT_READ)));
        assert_eq!(required_for_route("GET /audit/stats"), Some(Some(AUDIT_READ)));
        assert_eq!(required_for_route("POST /audit/logs"), Some(Some(AUDIT_WRITE)));
        assert_eq!(required_for_route("GET /audit/health"), Some(None));
        assert_eq!(required_for_route("DELETE /audit/logs/{id}"), None);
        assert_eq!(required_for_route("$default"), None);
        assert_eq!(read_scope_for(EntityType::Report), "reports:read");
        assert_eq!(parse_scope_list("  a:b  c:* "), vec!["a:b", "c:*"]);
    }
}
