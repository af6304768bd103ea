//! Configuration from the environment: the seed's settings plus table names and a DynamoDB endpoint
//! override for local servers. Read once per process (per Lambda cold start).

use std::fmt;

use thiserror::Error;

use crate::logger::AuditSettings;

pub const DEFAULT_RETENTION_DAYS: u32 = 90;
pub const MAX_RETENTION_DAYS: u32 = 3650;
pub const DEFAULT_ENTRIES_TABLE: &str = "auditline-entries";
pub const DEFAULT_COUNTERS_TABLE: &str = "auditline-counters";
/// Statistics counters per tenant-hour. More shards let one tenant write faster without transaction
/// conflicts on its counter item, at the price of that many more items read per stats hour.
pub const MAX_COUNTER_SHARDS: u8 = 16;

/// Names of every environment variable the code reads, in one place (the SAM template test checks them).
pub mod vars {
    pub const JWT_SECRET: &str = "JWT_SECRET";
    pub const JWT_ALGORITHM: &str = "JWT_ALGORITHM";
    pub const AUDIT_ENABLED: &str = "AUDIT_ENABLED";
    pub const AUDIT_RETENTION_DAYS: &str = "AUDIT_RETENTION_DAYS";
    pub const ENTRIES_TABLE: &str = "AUDIT_ENTRIES_TABLE";
    pub const COUNTERS_TABLE: &str = "AUDIT_COUNTERS_TABLE";
    pub const COUNTER_SHARDS: &str = "AUDIT_COUNTER_SHARDS";
    pub const DYNAMODB_ENDPOINT: &str = "DYNAMODB_ENDPOINT";
}

/// A value that must never reach a log or a response: `Debug` and `Display` print a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("environment variable {variable} {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub jwt_secret: Option<Secret>,
    pub jwt_algorithm: String,
    pub audit: AuditSettings,
    pub entries_table: String,
    pub counters_table: String,
    pub counter_shards: u8,
    pub dynamodb_endpoint: Option<String>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let enabled = match get(vars::AUDIT_ENABLED) {
            None => true,
            Some(v) => parse_bool(&v).ok_or_else(|| ConfigError {
                variable: vars::AUDIT_ENABLED,
                reason: "must be true or false".into(),
            })?,
        };
        let retention_days = match get(vars::AUDIT_RETENTION_DAYS) {
            None => DEFAULT_RETENTION_DAYS,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|d| (1..=MAX_RETENTION_DAYS).contains(d))
                .ok_or_else(|| ConfigError {
                    variable: vars::AUDIT_RETENTION_DAYS,
                    reason: format!(
                        "must be a whole number of days from 1 to {MAX_RETENTION_DAYS}"
                    ),
                })?,
        };
        let counter_shards = match get(vars::COUNTER_SHARDS) {
            None => 1,
            Some(v) => v
                .parse::<u8>()
                .ok()
                .filter(|n| (1..=MAX_COUNTER_SHARDS).contains(n))
                .ok_or_else(|| ConfigError {
                    variable: vars::COUNTER_SHARDS,
                    reason: format!("must be a whole number from 1 to {MAX_COUNTER_SHARDS}"),
                })?,
        };
        let jwt_algorithm = get(vars::JWT_ALGORITHM)
            .unwrap_or_else(|| "HS256".into())
            .to_ascii_uppercase();
        const ALGORITHMS: [&str; 8] = [
            "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384",
        ];
        if !ALGORITHMS.contains(&jwt_algorithm.as_str()) {
            return Err(ConfigError {
                variable: vars::JWT_ALGORITHM,
                reason: format!("must be one of {}", ALGORITHMS.join(", ")),
            });
        }
        Ok(Config {
            jwt_secret: lookup(vars::JWT_SECRET)
                .filter(|s| !s.is_empty())
                .map(Secret),
            jwt_algorithm,
            audit: AuditSettings {
                enabled,
                retention_days,
            },
            entries_table: get(vars::ENTRIES_TABLE).unwrap_or_else(|| DEFAULT_ENTRIES_TABLE.into()),
            counters_table: get(vars::COUNTERS_TABLE)
                .unwrap_or_else(|| DEFAULT_COUNTERS_TABLE.into()),
            counter_shards,
            dynamodb_endpoint: get(vars::DYNAMODB_ENDPOINT),
        })
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_seed() {
        let c = config(&[]).unwrap();
        assert_eq!(
            c.audit,
            AuditSettings {
                enabled: true,
                retention_days: 90
            }
        );
        assert_eq!(c.jwt_algorithm, "HS256");
        assert_eq!(c.jwt_secret, None);
        assert_eq!(c.entries_table, DEFAULT_ENTRIES_TABLE);
        assert_eq!(c.dynamodb_endpoint, None);
    }

    #[test]
    fn settings_are_read_and_checked() {
        let c = config(&[
            ("AUDIT_ENABLED", "false"),
            ("AUDIT_RETENTION_DAYS", "30"),
            ("JWT_SECRET", "s3cret"),
            ("JWT_ALGORITHM", "rs256"),
            ("DYNAMODB_ENDPOINT", "http://127.0.0.1:8000"),
        ])
        .unwrap();
        assert!(!c.audit.enabled);
        assert_eq!(c.audit.retention_days, 30);
        assert_eq!(c.jwt_algorithm, "RS256");
        assert_eq!(
            c.dynamodb_endpoint.as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "secrets never reach Debug output"
        );

        for (var, value) in [
            ("AUDIT_ENABLED", "maybe"),
            ("AUDIT_RETENTION_DAYS", "0"),
            ("JWT_ALGORITHM", "none"),
            ("AUDIT_COUNTER_SHARDS", "17"),
        ] {
            assert_eq!(config(&[(var, value)]).unwrap_err().variable, var);
        }
    }
}
