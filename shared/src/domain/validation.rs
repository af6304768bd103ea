//! Input checks. Every error names the field (or parameter) at fault and never echoes its value, so
//! messages are safe to return to clients and to log.

use std::net::IpAddr;

use serde_json::{Map, Value};
use thiserror::Error;

/// A JSON object, as carried by `changes` and `metadata`.
pub type JsonObject = Map<String, Value>;

/// Longest accepted identifier (entity_id, project_id, user_id), in characters, as JSON Schema's
/// maxLength counts (at most 1 KiB of UTF-8: index keys stay far under DynamoDB's 2 KiB).
pub const MAX_ID_CHARS: usize = 256;
/// Longest accepted tenant id, in bytes.
pub const MAX_TENANT_BYTES: usize = 128;
/// Deepest accepted nesting of `changes` and `metadata`; DynamoDB allows 32 levels in all.
pub const MAX_JSON_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} is {actual} characters long; at most {max} are allowed")]
    TooLong { field: &'static str, max: usize, actual: usize },
    #[error("{field} must not contain control characters")]
    ControlCharacters { field: &'static str },
    #[error("{field} may contain only letters, digits and . _ - : @")]
    InvalidCharacters { field: &'static str },
    #[error("{field} is not a valid IPv4 or IPv6 address")]
    InvalidIpAddress { field: &'static str },
    #[error("{field} must be a JSON object")]
    NotAnObject { field: &'static str },
    #[error("{field} is nested more than {max} levels deep")]
    TooDeep { field: &'static str, max: usize },
    #[error("{field} holds a number that no IEEE-754 double represents exactly; send it as a string")]
    InexactNumber { field: &'static str },
    #[error("the entry is {actual} bytes as JSON; at most {max} are allowed")]
    EntryTooLarge { actual: usize, max: usize },
    #[error("{field} must be one of: {allowed}")]
    UnknownValue { field: &'static str, allowed: &'static str },
    #[error("{field} must be an integer from {min} to {max}")]
    OutOfRange { field: &'static str, min: u64, max: u64 },
    #[error("{field} is not a valid date or ISO 8601 date-time")]
    InvalidDateTime { field: &'static str },
    #[error("{field} must be a date in the years {min_year:04} to {max_year}")]
    DateOutOfRange { field: &'static str, min_year: i32, max_year: i32 },
    #[error("start_date must not be later than end_date")]
    InvertedDateRange,
    #[error("{field} is not a valid UUID")]
    InvalidUuid { field: &'static str },
    #[error("next_token {reason}")]
    InvalidCursor { reason: &'static str },
    #[error("{field} is required")]
    Missing { field: &'static str },
    #[error("{field} must be a string")]
    NotAString { field: &'static str },
}

impl ValidationError {
    /// The field or parameter at fault.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Empty { field }
            | Self::TooLong { field, .. }
            | Self::ControlCharacters { field }
            | Self::InvalidCharacters { field }
            | Self::InvalidIpAddress { field }
            | Self::NotAnObject { field }
            | Self::TooDeep { field, .. }
            | Self::InexactNumber { field }
            | Self::UnknownValue { field, .. }
            | Self::OutOfRange { field, .. }
            | Self::InvalidDateTime { field }
            | Self::DateOutOfRange { field, .. }
            | Self::InvalidUuid { field }
            | Self::Missing { field }
            | Self::NotAString { field } => field,
            Self::EntryTooLarge { .. } => "entry",
            Self::InvertedDateRange => "start_date",
            Self::InvalidCursor { .. } => "next_token",
        }
    }
}

/// Ids of entities, projects and users: non-empty, bounded, printable.
pub fn identifier(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::Empty { field });
    }
    let chars = value.chars().count();
    if chars > MAX_ID_CHARS {
        return Err(ValidationError::TooLong { field, max: MAX_ID_CHARS, actual: chars });
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::ControlCharacters { field });
    }
    Ok(())
}

pub(super) fn tenant_id(value: &str) -> Result<(), ValidationError> {
    let field = "tenant_id";
    if value.is_empty() {
        return Err(ValidationError::Empty { field });
    }
    if value.len() > MAX_TENANT_BYTES {
        return Err(ValidationError::TooLong { field, max: MAX_TENANT_BYTES, actual: value.len() });
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@');
    if !value.chars().all(allowed) {
        return Err(ValidationError::InvalidCharacters { field });
    }
    Ok(())
}

pub(super) fn ip_address(field: &'static str, value: &str) -> Result<IpAddr, ValidationError> {
    value.parse::<IpAddr>().map_err(|_| ValidationError::InvalidIpAddress { field })
}

pub(super) fn json_object(field: &'static str, value: Value) -> Result<JsonObject, ValidationError> {
    match value {
        Value::Object(map) => {
            if depth(&map) > MAX_JSON_DEPTH {
                return Err(ValidationError::TooDeep { field, max: MAX_JSON_DEPTH });
            }
            // Entries are hashed in canonical form (RFC 8785), which only doubles have.
            if !all_numbers_exact(&map) {
                return Err(ValidationError::InexactNumber { field });
            }
            Ok(map)
        }
        _ => Err(ValidationError::NotAnObject { field }),
    }
}

/// Nesting depth, counting the object itself as 1. Iterative, so hostile input cannot overflow the stack.
fn depth(root: &JsonObject) -> usize {
    let mut deepest = 1;
    let mut stack: Vec<(&Value, usize)> = root.values().map(|v| (v, 2)).collect();
    while let Some((value, level)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(m) => Box::new(m.values()),
            Value::Array(a) => Box::new(a.iter()),
            _ => continue,
        };
        deepest = deepest.max(level);
        if deepest > MAX_JSON_DEPTH {
            break;
        }
        stack.extend(children.map(|v| (v, level + 1)));
    }
    deepest
}

/// Whether every number in `root` is exactly a double. Iterative, as [`depth`].
fn all_numbers_exact(root: &JsonObject) -> bool {
    let mut stack: Vec<&Value> = root.values().collect();
    while let Some(value) = stack.pop() {
        match value {
            Value::Number(n) if !crate::integrity::canonical::is_exact(n) => return false,
            Value::Object(m) => stack.extend(m.values()),
            Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    true
}

/// An integer parameter within `min..=max`.
pub fn bounded_integer(field: &'static str, value: &str, min: u64, max: u64) -> Result<u64, ValidationError> {
    value.trim().parse::<u64>().ok().filter(|n| (min..=max).contains(n)).ok_or(ValidationError::OutOfRange {
        field,
        min,
        max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifiers_are_bounded_and_printable() {
        assert!(identifier("entity_id", "entity-123").is_ok());
        assert!(identifier("entity_id", "ünïcode/ok #1").is_ok());
        assert_eq!(identifier("user_id", ""), Err(ValidationError::Empty { field: "user_id" }));
        assert!(matches!(
            identifier("project_id", &"x".repeat(257)),
            Err(ValidationError::TooLong { field: "project_id", .. })
        ));
        assert_eq!(identifier("entity_id", "a\nb"), Err(ValidationError::ControlCharacters { field: "entity_id" }));
    }

    #[test]
    fn tenant_ids_cannot_carry_key_separators() {
        assert!(tenant_id("acme-corp.eu_1:prod@x").is_ok());
        assert_eq!(tenant_id("acme#E#x").unwrap_err(), ValidationError::InvalidCharacters { field: "tenant_id" });
        assert!(tenant_id("").is_err());
        assert!(tenant_id(&"t".repeat(129)).is_err());
    }

    #[test]
    fn json_objects_are_objects_of_bounded_depth() {
        assert!(json_object("changes", json!({"a": {"b": [1, {"c": 2}]}})).is_ok());
        assert_eq!(json_object("changes", json!([1])), Err(ValidationError::NotAnObject { field: "changes" }));
        assert_eq!(json_object("metadata", json!("x")), Err(ValidationError::NotAnObject { field: "metadata" }));
        let mut deep = json!(1);
        for _ in 0..MAX_JSON_DEPTH {
            deep = json!({ "k": deep });
        }
        assert!(json_object("changes", deep.clone()).is_ok());
        assert_eq!(
            json_object("changes", json!({ "k": deep })),
            Err(ValidationError::TooDeep { field: "changes", max: MAX_JSON_DEPTH })
        );
    }

    #[test]
    fn integers_name_their_parameter_and_range() {
        assert_eq!(bounded_integer("limit", "100", 1, 1000), Ok(100));
        let err = bounded_integer("limit", "0", 1, 1000).unwrap_err();
        assert_eq!(err.to_string(), "limit must be an integer from 1 to 1000");
        assert!(bounded_integer("offset", "-1", 0, 10).is_err());
        assert!(bounded_integer("offset", "ten", 0, 10).is_err());
    }
}
