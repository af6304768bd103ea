//! Configuration from the environment: the seed's settings plus table names and a DynamoDB endpoint
//! override for local servers. Read once per process (per Lambda cold start).

use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::auth::origins::OriginPolicy;
use crate::auth::{AuthMethod, AuthSettings, Secret};
use crate::domain::TenantId;
use crate::integrity::note::CosignerKey;
use crate::logger::{AuditSettings, DEFAULT_RETENTION_DAYS, MAX_RETENTION_DAYS};
use crate::realtime::ConnectionLimits;
use crate::seal::SealSettings;
use crate::streams::delivery::RetryPolicy;
use std::time::Duration;
pub const DEFAULT_ENTRIES_TABLE: &str = "auditline-entries";
pub const DEFAULT_COUNTERS_TABLE: &str = "auditline-counters";
pub const DEFAULT_API_KEYS_TABLE: &str = "auditline-api-keys";
pub const DEFAULT_IDEMPOTENCY_TABLE: &str = "auditline-idempotency";
pub const DEFAULT_CONNECTIONS_TABLE: &str = "auditline-connections";
pub const DEFAULT_CHECKPOINTS_TABLE: &str = "auditline-checkpoints";
pub const DEFAULT_PROOFS_TABLE: &str = "auditline-proofs";
pub const DEFAULT_ARCHIVE_KEYS_TABLE: &str = "auditline-archive-keys";
pub const DEFAULT_STREAMS_TABLE: &str = "auditline-streams";
/// Seven years, as SOX asks: the template's `AuditArchiveRetentionDays` default.
pub const DEFAULT_ARCHIVE_RETENTION_DAYS: u64 = 2557;
pub const DEFAULT_JWT_LEEWAY_SECONDS: u64 = 30;
pub const MAX_JWT_LEEWAY_SECONDS: u64 = 300;
/// Statistics counters per tenant-hour. More shards let one tenant write faster without transaction
/// conflicts on its counter item, at the price of that many more items read per stats hour.
pub const MAX_COUNTER_SHARDS: u8 = 16;

/// Names of every environment variable the code reads, in one place (the SAM template test checks them).
pub mod vars {
    use crate::store::dynamo::tables::{self, TableSpec};

    pub const JWT_SECRET: &str = "JWT_SECRET";
    pub const JWT_ALGORITHM: &str = "JWT_ALGORITHM";
    pub const AUDIT_ENABLED: &str = "AUDIT_ENABLED";
    pub const AUDIT_RETENTION_DAYS: &str = "AUDIT_RETENTION_DAYS";
    pub const AUDIT_LOG_READS: &str = "AUDIT_LOG_READS";
    pub const ENTRIES_TABLE: &str = "AUDIT_ENTRIES_TABLE";
    pub const COUNTERS_TABLE: &str = "AUDIT_COUNTERS_TABLE";
    pub const COUNTER_SHARDS: &str = "AUDIT_COUNTER_SHARDS";
    pub const DYNAMODB_ENDPOINT: &str = "DYNAMODB_ENDPOINT";
    pub const API_KEYS_TABLE: &str = "API_KEYS_TABLE";
    pub const IDEMPOTENCY_TABLE: &str = "IDEMPOTENCY_TABLE";
    pub const CONNECTIONS_TABLE: &str = "CONNECTIONS_TABLE";
    pub const CHECKPOINTS_TABLE: &str = "CHECKPOINTS_TABLE";
    pub const PROOFS_TABLE: &str = "PROOFS_TABLE";
    pub const AUDIT_SEAL_PERIOD_MINUTES: &str = "AUDIT_SEAL_PERIOD_MINUTES";
    pub const AUDIT_SEAL_GRACE_SECONDS: &str = "AUDIT_SEAL_GRACE_SECONDS";
    pub const AUDIT_SEAL_SCHEDULE_SECONDS: &str = "AUDIT_SEAL_SCHEDULE_SECONDS";
    pub const AUDIT_LOG_ORIGIN: &str = "AUDIT_LOG_ORIGIN";
    pub const SEAL_KMS_KEY_ID: &str = "SEAL_KMS_KEY_ID";
    pub const SEAL_RETIRED_KMS_KEYS: &str = "SEAL_RETIRED_KMS_KEYS";
    pub const AUDIT_WITNESSES: &str = "AUDIT_WITNESSES";
    pub const CHECKPOINT_BUCKET: &str = "CHECKPOINT_BUCKET";
    pub const KMS_ENDPOINT: &str = "KMS_ENDPOINT";
    pub const ARCHIVE_BUCKET: &str = "ARCHIVE_BUCKET";
    pub const ARCHIVE_KEYS_TABLE: &str = "ARCHIVE_KEYS_TABLE";
    pub const STREAMS_TABLE: &str = "STREAMS_TABLE";
    pub const STREAMS_KMS_KEY_ID: &str = "STREAMS_KMS_KEY_ID";
    pub const DELIVERY_QUEUE_URL: &str = "DELIVERY_QUEUE_URL";
    pub const DELIVERY_DEAD_LETTER_QUEUE_URL: &str = "DELIVERY_DEAD_LETTER_QUEUE_URL";
    pub const SQS_ENDPOINT: &str = "SQS_ENDPOINT";
    pub const EVENTS_ENDPOINT: &str = "EVENTS_ENDPOINT";
    pub const STS_ENDPOINT: &str = "STS_ENDPOINT";
    pub const ARCHIVE_RETENTION_DAYS: &str = "ARCHIVE_RETENTION_DAYS";
    pub const S3_ENDPOINT: &str = "S3_ENDPOINT";
    pub const WEBSOCKET_API_ID: &str = "WEBSOCKET_API_ID";
    pub const WEBSOCKET_STAGE: &str = "WEBSOCKET_STAGE";
    pub const WEBSOCKET_ENDPOINT: &str = "WEBSOCKET_ENDPOINT";
    pub const AWS_REGION: &str = "AWS_REGION";
    pub const JWT_PUBLIC_KEY: &str = "JWT_PUBLIC_KEY";
    pub const JWT_JWKS_URL: &str = "JWT_JWKS_URL";
    pub const JWT_ISSUER: &str = "JWT_ISSUER";
    pub const JWT_AUDIENCE: &str = "JWT_AUDIENCE";
    pub const JWT_DEFAULT_TENANT: &str = "JWT_DEFAULT_TENANT";
    pub const JWT_LEEWAY_SECONDS: &str = "JWT_LEEWAY_SECONDS";
    pub const AUTH_REQUIRED: &str = "AUTH_REQUIRED";
    pub const AUTH_METHODS: &str = "AUTH_METHODS";
    pub const AUTH_ANONYMOUS_SCOPES: &str = "AUTH_ANONYMOUS_SCOPES";
    pub const CORS_ALLOWED_ORIGINS: &str = "CORS_ALLOWED_ORIGINS";
    pub const VIEWER_ORIGIN: &str = "VIEWER_ORIGIN";
    pub const FEED_MAX_CONNECTIONS_PER_TENANT: &str = "FEED_MAX_CONNECTIONS_PER_TENANT";
    pub const FEED_MAX_CONNECTIONS_PER_PRINCIPAL: &str = "FEED_MAX_CONNECTIONS_PER_PRINCIPAL";
    pub const PRIME_CONNECTIONS: &str = "PRIME_CONNECTIONS";
    pub const AUDIT_STREAM_RETRY_BASE_MS: &str = "AUDIT_STREAM_RETRY_BASE_MS";
    pub const AUDIT_STREAM_RETRY_MAX_SECONDS: &str = "AUDIT_STREAM_RETRY_MAX_SECONDS";
    pub const AUDIT_STREAM_GIVE_UP_SECONDS: &str = "AUDIT_STREAM_GIVE_UP_SECONDS";

    /// The variable naming each table, as the functions read it.
    pub const TABLES: [(&str, &TableSpec); 9] = [
        (ENTRIES_TABLE, &tables::ENTRIES),
        (COUNTERS_TABLE, &tables::COUNTERS),
        (API_KEYS_TABLE, &tables::API_KEYS),
        (IDEMPOTENCY_TABLE, &tables::IDEMPOTENCY),
        (CONNECTIONS_TABLE, &tables::CONNECTIONS),
        (CHECKPOINTS_TABLE, &tables::CHECKPOINTS),
        (PROOFS_TABLE, &tables::PROOFS),
        (ARCHIVE_KEYS_TABLE, &tables::ARCHIVE_KEYS),
        (STREAMS_TABLE, &tables::STREAMS),
    ];

    /// Every variable above: the SAM template may set these and no others.
    pub const ALL: &[&str] = &[
        JWT_SECRET,
        JWT_ALGORITHM,
        AUDIT_ENABLED,
        AUDIT_RETENTION_DAYS,
        AUDIT_LOG_READS,
        ENTRIES_TABLE,
        COUNTERS_TABLE,
        COUNTER_SHARDS,
        DYNAMODB_ENDPOINT,
        API_KEYS_TABLE,
        IDEMPOTENCY_TABLE,
        CONNECTIONS_TABLE,
        CHECKPOINTS_TABLE,
        PROOFS_TABLE,
        AUDIT_SEAL_PERIOD_MINUTES,
        AUDIT_SEAL_GRACE_SECONDS,
        AUDIT_SEAL_SCHEDULE_SECONDS,
        AUDIT_LOG_ORIGIN,
        SEAL_KMS_KEY_ID,
        SEAL_RETIRED_KMS_KEYS,
        AUDIT_WITNESSES,
        CHECKPOINT_BUCKET,
        KMS_ENDPOINT,
        ARCHIVE_BUCKET,
        ARCHIVE_KEYS_TABLE,
        STREAMS_TABLE,
        STREAMS_KMS_KEY_ID,
        DELIVERY_QUEUE_URL,
        DELIVERY_DEAD_LETTER_QUEUE_URL,
        SQS_ENDPOINT,
        EVENTS_ENDPOINT,
        STS_ENDPOINT,
        ARCHIVE_RETENTION_DAYS,
        S3_ENDPOINT,
        WEBSOCKET_API_ID,
        WEBSOCKET_STAGE,
        WEBSOCKET_ENDPOINT,
        AWS_REGION,
        JWT_PUBLIC_KEY,
        JWT_JWKS_URL,
        JWT_ISSUER,
        JWT_AUDIENCE,
        JWT_DEFAULT_TENANT,
        JWT_LEEWAY_SECONDS,
        AUTH_REQUIRED,
        AUTH_METHODS,
        AUTH_ANONYMOUS_SCOPES,
        CORS_ALLOWED_ORIGINS,
        VIEWER_ORIGIN,
        FEED_MAX_CONNECTIONS_PER_TENANT,
        FEED_MAX_CONNECTIONS_PER_PRINCIPAL,
        PRIME_CONNECTIONS,
        AUDIT_STREAM_RETRY_BASE_MS,
        AUDIT_STREAM_RETRY_MAX_SECONDS,
        AUDIT_STREAM_GIVE_UP_SECONDS,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("environment variable {variable} {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub auth: AuthSettings,
    pub audit: AuditSettings,
    /// Every read of the trail is itself recorded as a VIEW entry.
    pub log_reads: bool,
    pub entries_table: String,
    pub counters_table: String,
    pub counter_shards: u8,
    pub api_keys_table: String,
    pub idempotency_table: String,
    pub connections_table: String,
    pub checkpoints_table: String,
    pub proofs_table: String,
    pub seal: SealSettings,
    /// The deployment's log origin: tenant `t`'s checkpoints are the log `<origin>/<t>`.
    pub log_origin: String,
    /// The KMS key checkpoints are signed with (the seal function).
    pub seal_kms_key_id: Option<String>,
    /// KMS keys that signed checkpoints before a rotation, each with the time it was retired.
    pub seal_retired_kms_keys: Vec<(String, DateTime<Utc>)>,
    /// Witnesses the seal asks to cosign each new head.
    pub witnesses: Vec<WitnessConfig>,
    /// The Object Lock bucket every checkpoint is published to.
    pub checkpoint_bucket: Option<String>,
    pub kms_endpoint: Option<String>,
    /// The bucket the archive function writes to.
    pub archive_bucket: Option<String>,
    /// The keys the archive seals erasable values under, and how long it keeps an entry (so its keys).
    pub archive_keys_table: String,
    pub archive_retention_days: u64,
    /// Tenants' log streams and their figures.
    pub streams_table: String,
    /// The KMS key streams' secrets are sealed under (envelope encryption).
    pub streams_kms_key_id: Option<String>,
    /// The queue deliveries wait in, and the one they are given up into.
    pub delivery_queue_url: Option<String>,
    pub delivery_dead_letter_queue_url: Option<String>,
    pub sqs_endpoint: Option<String>,
    pub events_endpoint: Option<String>,
    /// Where tenants' roles are assumed (EventBridge streams); a local STS in tests.
    pub sts_endpoint: Option<String>,
    pub s3_endpoint: Option<String>,
    /// Where the fan-out posts messages: the API Gateway Management API endpoint of the WebSocket
    /// API, `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`, built from
    /// WEBSOCKET_API_ID, AWS_REGION and WEBSOCKET_STAGE (so it works behind custom domains), or given
    /// whole as WEBSOCKET_ENDPOINT.
    pub websocket_endpoint: Option<String>,
    pub dynamodb_endpoint: Option<String>,
    pub connection_limits: ConnectionLimits,
    /// Open the DynamoDB connection (TLS handshake included) during init rather than in the first
    /// invocation.
    pub prime_connections: bool,
    /// How log streams' failed deliveries are tried again, and for how long.
    pub stream_retry: RetryPolicy,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let in_range = |v: &str, low: u64, high: u64| v.parse::<u64>().ok().filter(|n| (low..=high).contains(n));

        let enabled = setting(&get, vars::AUDIT_ENABLED, true, parse_bool, "true or false")?;
        let archive_retention_days = setting(
            &get,
            vars::ARCHIVE_RETENTION_DAYS,
            DEFAULT_ARCHIVE_RETENTION_DAYS,
            |v| in_range(v, 1, 36_500),
            "a whole number of days from 1 to 36500",
        )?;
        let log_reads = setting(&get, vars::AUDIT_LOG_READS, false, parse_bool, "true or false")?;
        let prime_connections = setting(&get, vars::PRIME_CONNECTIONS, false, parse_bool, "true or false")?;
        let defaults = RetryPolicy::default();
        let stream_retry = RetryPolicy {
            base: Duration::from_millis(setting(
                &get,
                vars::AUDIT_STREAM_RETRY_BASE_MS,
                defaults.base.as_millis() as u64,
                |v| in_range(v, 10, 600_000),
                "a whole number of milliseconds from 10 to 600000",
            )?),
            cap: Duration::from_secs(setting(
                &get,
                vars::AUDIT_STREAM_RETRY_MAX_SECONDS,
                defaults.cap.as_secs(),
                |v| in_range(v, 1, 43_200),
                "a whole number of seconds from 1 to 43200",
            )?),
            give_up_after: Duration::from_secs(setting(
                &get,
                vars::AUDIT_STREAM_GIVE_UP_SECONDS,
                defaults.give_up_after.as_secs(),
                |v| in_range(v, 1, 604_800),
                "a whole number of seconds from 1 to 604800 (7 days)",
            )?),
        };
        let retention_days = setting(
            &get,
            vars::AUDIT_RETENTION_DAYS,
            u64::from(DEFAULT_RETENTION_DAYS),
            |v| in_range(v, 1, u64::from(MAX_RETENTION_DAYS)),
            &format!("a whole number of days from 1 to {MAX_RETENTION_DAYS}"),
        )? as u32;
        let counter_shards = setting(
            &get,
            vars::COUNTER_SHARDS,
            1,
            |v| in_range(v, 1, u64::from(MAX_COUNTER_SHARDS)),
            &format!("a whole number from 1 to {MAX_COUNTER_SHARDS}"),
        )? as u8;
        let jwt_leeway_seconds = setting(
            &get,
            vars::JWT_LEEWAY_SECONDS,
            DEFAULT_JWT_LEEWAY_SECONDS,
            |v| in_range(v, 0, MAX_JWT_LEEWAY_SECONDS),
            &format!("a whole number of seconds from 0 to {MAX_JWT_LEEWAY_SECONDS}"),
        )?;
        let require_auth = setting(&get, vars::AUTH_REQUIRED, true, parse_bool, "true or false")?;
        let period_minutes = setting(
            &get,
            vars::AUDIT_SEAL_PERIOD_MINUTES,
            u64::from(crate::seal::DEFAULT_PERIOD_MINUTES),
            |v| in_range(v, 1, 60).filter(|m| 60 % m == 0),
            "a whole number of minutes from 1 to 60 that divides an hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)",
        )? as u32;
        let grace_seconds = setting(
            &get,
            vars::AUDIT_SEAL_GRACE_SECONDS,
            u64::from(crate::seal::DEFAULT_GRACE_SECONDS),
            |v| in_range(v, 0, 3600),
            "a whole number of seconds from 0 to 3600",
        )? as u32;
        let schedule_seconds = setting(
            &get,
            vars::AUDIT_SEAL_SCHEDULE_SECONDS,
            u64::from(crate::seal::DEFAULT_SCHEDULE_SECONDS),
            |v| in_range(v, 1, u64::from(crate::seal::MAX_SEAL_DELAY_SECONDS)),
            "a whole number of seconds from 1 to 3600 (how often the seal runs)",
        )? as u32;
        let log_origin = get(vars::AUDIT_LOG_ORIGIN).unwrap_or_else(|| crate::seal::DEFAULT_ORIGIN.into());
        if !crate::integrity::note::valid_key_name(&log_origin) || log_origin.len() > 200 {
            return Err(ConfigError {
                variable: vars::AUDIT_LOG_ORIGIN,
                reason: "must be a name of at most 200 characters without spaces or '+', e.g. audit.example.com".into(),
            });
        }
        let seal_retired_kms_keys = parse_retired_keys(&get(vars::SEAL_RETIRED_KMS_KEYS).unwrap_or_default())
            .map_err(|reason| ConfigError { variable: vars::SEAL_RETIRED_KMS_KEYS, reason })?;
        let witnesses = parse_witnesses(&get(vars::AUDIT_WITNESSES).unwrap_or_default())
            .map_err(|reason| ConfigError { variable: vars::AUDIT_WITNESSES, reason })?;
        let connection_limit = |variable, default: usize| {
            setting(&get, variable, default as u64, |v| in_range(v, 1, 1_000_000), "a whole number from 1 to 1000000")
                .map(|n| n as usize)
        };
        let connection_limits = ConnectionLimits {
            per_tenant: connection_limit(vars::FEED_MAX_CONNECTIONS_PER_TENANT, ConnectionLimits::DEFAULT_PER_TENANT)?,
            per_principal: connection_limit(
                vars::FEED_MAX_CONNECTIONS_PER_PRINCIPAL,
                ConnectionLimits::DEFAULT_PER_PRINCIPAL,
            )?,
        };

        const ALGORITHMS: [&str; 8] = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384"];
        let jwt_algorithm = get(vars::JWT_ALGORITHM).unwrap_or_else(|| "HS256".into()).to_ascii_uppercase();
        if !ALGORITHMS.contains(&jwt_algorithm.as_str()) {
            return Err(ConfigError {
                variable: vars::JWT_ALGORITHM,
                reason: format!("must be one of {}", ALGORITHMS.join(", ")),
            });
        }
        let mut origins = OriginPolicy::parse(&get(vars::CORS_ALLOWED_ORIGINS).unwrap_or_default())
            .map_err(|e| ConfigError { variable: vars::CORS_ALLOWED_ORIGINS, reason: e.to_string() })?;
        if let Some(own) = get(vars::VIEWER_ORIGIN) {
            origins = origins.with(&own);
        }
        let allowed_methods = match get(vars::AUTH_METHODS) {
            None => vec![AuthMethod::Jwt, AuthMethod::ApiKey],
            Some(v) => v
                .split(',')
                .map(|m| m.trim().parse::<AuthMethod>().ok().filter(|m| *m != AuthMethod::Anonymous))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ConfigError {
                    variable: vars::AUTH_METHODS,
                    reason: "must list jwt and/or api_key, separated by commas".into(),
                })?,
        };

        Ok(Config {
            auth: AuthSettings {
                jwt_secret: lookup(vars::JWT_SECRET).filter(|s| !s.is_empty()).map(Secret::new),
                jwt_algorithm,
                jwt_public_key: get(vars::JWT_PUBLIC_KEY),
                jwt_jwks_url: get(vars::JWT_JWKS_URL),
                jwt_issuer: get(vars::JWT_ISSUER),
                jwt_audience: get(vars::JWT_AUDIENCE),
                jwt_default_tenant: get(vars::JWT_DEFAULT_TENANT).map(|t| TenantId::parse(&t)).transpose().map_err(
                    |e| ConfigError { variable: vars::JWT_DEFAULT_TENANT, reason: format!("is invalid: {e}") },
                )?,
                jwt_leeway_seconds,
                require_auth,
                allowed_methods,
                anonymous_scopes: get(vars::AUTH_ANONYMOUS_SCOPES)
                    .map(|v| crate::auth::scopes::parse_scope_list(&v))
                    .unwrap_or_default(),
                origins,
            },
            audit: AuditSettings { enabled, retention_days },
            log_reads,
            entries_table: get(vars::ENTRIES_TABLE).unwrap_or_else(|| DEFAULT_ENTRIES_TABLE.into()),
            counters_table: get(vars::COUNTERS_TABLE).unwrap_or_else(|| DEFAULT_COUNTERS_TABLE.into()),
            counter_shards,
            api_keys_table: get(vars::API_KEYS_TABLE).unwrap_or_else(|| DEFAULT_API_KEYS_TABLE.into()),
            connections_table: get(vars::CONNECTIONS_TABLE).unwrap_or_else(|| DEFAULT_CONNECTIONS_TABLE.into()),
            checkpoints_table: get(vars::CHECKPOINTS_TABLE).unwrap_or_else(|| DEFAULT_CHECKPOINTS_TABLE.into()),
            proofs_table: get(vars::PROOFS_TABLE).unwrap_or_else(|| DEFAULT_PROOFS_TABLE.into()),
            seal: SealSettings { period_minutes, grace_seconds, schedule_seconds, lookback_hours: retention_days * 24 },
            log_origin,
            seal_kms_key_id: get(vars::SEAL_KMS_KEY_ID),
            seal_retired_kms_keys,
            witnesses,
            checkpoint_bucket: get(vars::CHECKPOINT_BUCKET),
            kms_endpoint: get(vars::KMS_ENDPOINT),
            archive_bucket: get(vars::ARCHIVE_BUCKET),
            archive_keys_table: get(vars::ARCHIVE_KEYS_TABLE).unwrap_or_else(|| DEFAULT_ARCHIVE_KEYS_TABLE.into()),
            streams_table: get(vars::STREAMS_TABLE).unwrap_or_else(|| DEFAULT_STREAMS_TABLE.into()),
            streams_kms_key_id: get(vars::STREAMS_KMS_KEY_ID),
            delivery_queue_url: get(vars::DELIVERY_QUEUE_URL),
            delivery_dead_letter_queue_url: get(vars::DELIVERY_DEAD_LETTER_QUEUE_URL),
            sqs_endpoint: get(vars::SQS_ENDPOINT),
            events_endpoint: get(vars::EVENTS_ENDPOINT),
            sts_endpoint: get(vars::STS_ENDPOINT),
            archive_retention_days,
            s3_endpoint: get(vars::S3_ENDPOINT),
            websocket_endpoint: get(vars::WEBSOCKET_ENDPOINT).or_else(|| {
                Some(management_endpoint(
                    &get(vars::WEBSOCKET_API_ID)?,
                    &get(vars::AWS_REGION)?,
                    &get(vars::WEBSOCKET_STAGE)?,
                ))
            }),
            idempotency_table: get(vars::IDEMPOTENCY_TABLE).unwrap_or_else(|| DEFAULT_IDEMPOTENCY_TABLE.into()),
            dynamodb_endpoint: get(vars::DYNAMODB_ENDPOINT),
            connection_limits,
            prime_connections,
            stream_retry,
        })
    }
}

/// A witness the seal submits checkpoints to: where, and the key its cosignatures verify with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessConfig {
    pub url: String,
    pub key: CosignerKey,
}

/// `"<url> <vkey>"` pairs separated by commas.
pub fn parse_witnesses(text: &str) -> Result<Vec<WitnessConfig>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(|w| {
            let (url, vkey) = w.split_once(' ').ok_or_else(|| format!("{w:?} is not \"<url> <vkey>\""))?;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!("{url:?} is not an http(s) URL"));
            }
            let key = CosignerKey::parse_vkey(vkey.trim()).map_err(|e| format!("the key of {url}: {e}"))?;
            Ok(WitnessConfig { url: url.to_owned(), key })
        })
        .collect()
}

/// `"<key>=<RFC 3339 time>"` pairs separated by commas: keys retired at those times.
pub fn parse_retired_keys(text: &str) -> Result<Vec<(String, DateTime<Utc>)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| {
            let (key, until) = k.rsplit_once('=').ok_or_else(|| format!("{k:?} is not <key>=<time retired>"))?;
            let until = DateTime::parse_from_rfc3339(until.trim())
                .map_err(|_| format!("{until:?} is not an RFC 3339 time"))?
                .to_utc();
            Ok((key.trim().to_owned(), until))
        })
        .collect()
}

/// The API Gateway Management API endpoint of a WebSocket API stage.
pub fn management_endpoint(api_id: &str, region: &str, stage: &str) -> String {
    format!("https://{api_id}.execute-api.{region}.amazonaws.com/{stage}")
}

/// A variable's value through `parse`, or `default` when unset; a value `parse` refuses is an error
/// that names the variable and the `rule` it breaks.
fn setting<T>(
    get: &dyn Fn(&str) -> Option<String>,
    variable: &'static str,
    default: T,
    parse: impl Fn(&str) -> Option<T>,
    rule: &str,
) -> Result<T, ConfigError> {
    match get(variable) {
        None => Ok(default),
        Some(v) => parse(&v).ok_or_else(|| ConfigError { variable, reason: format!("must be {rule}") }),
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
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_seed() {
        let c = config(&[]).unwrap();
        assert_eq!(c.audit, AuditSettings { enabled: true, retention_days: 90 });
        assert_eq!(c.auth.jwt_algorithm, "HS256");
        assert_eq!(c.auth.jwt_secret, None);
        assert!(c.auth.require_auth);
        assert_eq!(c.auth.allowed_methods, [AuthMethod::Jwt, AuthMethod::ApiKey]);
        assert_eq!(c.auth.jwt_leeway_seconds, 30);
        assert_eq!(c.entries_table, DEFAULT_ENTRIES_TABLE);
        assert_eq!(c.dynamodb_endpoint, None);
        assert_eq!(c.websocket_endpoint, None);
    }

    #[test]
    fn the_management_endpoint_is_built_from_api_region_and_stage() {
        let c = config(&[("WEBSOCKET_API_ID", "f6g7h8i9j0"), ("AWS_REGION", "eu-west-1"), ("WEBSOCKET_STAGE", "prod")])
            .unwrap();
        assert_eq!(
            c.websocket_endpoint.as_deref(),
            Some("https://f6g7h8i9j0.execute-api.eu-west-1.amazonaws.com/prod")
        );
        let c = config(&[("WEBSOCKET_API_ID", "x"), ("WEBSOCKET_ENDPOINT", "http://127.0.0.1:9001")]).unwrap();
        assert_eq!(c.websocket_endpoint.as_deref(), Some("http://127.0.0.1:9001"));
    }

    #[test]
    fn settings_are_read_and_checked() {
        let c = config(&[
            ("AUDIT_ENABLED", "false"),
            ("AUDIT_RETENTION_DAYS", "30"),
            ("JWT_SECRET", "s3cret"),
            ("JWT_ALGORITHM", "rs256"),
            ("DYNAMODB_ENDPOINT", "http://127.0.0.1:8000"),
            ("AUTH_METHODS", "api_key"),
            ("AUTH_REQUIRED", "false"),
            ("AUTH_ANONYMOUS_SCOPES", "reports:read"),
            ("JWT_ISSUER", "https://issuer.example"),
        ])
        .unwrap();
        assert!(!c.audit.enabled);
        assert_eq!(c.audit.retention_days, 30);
        assert_eq!(c.auth.jwt_algorithm, "RS256");
        assert_eq!(c.dynamodb_endpoint.as_deref(), Some("http://127.0.0.1:8000"));
        assert!(!format!("{c:?}").contains("s3cret"), "secrets never reach Debug output");

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
