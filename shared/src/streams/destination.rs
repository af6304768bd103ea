//! A log stream: where a tenant's entries go (an HTTPS webhook, Splunk HEC, Datadog, an EventBridge
//! bus), in which format, and which of them. What the API accepts to create or change one, how
//! that is checked, and what is stored: settings in the clear, secrets sealed (see [`super::secrets`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use super::outbound::{Loopback, OutboundError, check_url};
use crate::domain::validation::{self, MAX_ID_CHARS};
use crate::domain::{AuditAction, AuditLogEntry, EntityType, TenantId};

/// Streams one tenant may have.
pub const MAX_STREAMS_PER_TENANT: usize = 20;
const MAX_NAME_CHARS: usize = 100;
const MAX_HEADERS: usize = 10;
const MAX_HEADER_VALUE_BYTES: usize = 1024;
const MAX_SECRET_BYTES: usize = 512;
const MAX_FILTER_VALUES: usize = 50;
const MAX_TAGS: usize = 20;
const MAX_LABEL_CHARS: usize = 200;

/// Headers a webhook's custom headers may not set: the request's own framing, its hop-by-hop
/// headers (a proxy's, an upgrade, an `Expect`: nothing that changes how the exchange goes), and
/// its signature.
const RESERVED_HEADERS: [&str; 16] = [
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-authorization",
    "proxy-connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// The Datadog sites (their logs intake is `https://http-intake.logs.<site>/api/v2/logs`).
pub const DATADOG_SITES: [&str; 7] = [
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "ddog-gov.com",
];

/// What each delivered item is: the entry as the API shows it, or an OCSF 1.3 API Activity event
/// (the export's mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Entry,
    Ocsf,
}

/// How a webhook's batch is laid out in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// `[item, item, …]`, `application/json`.
    #[default]
    JsonArray,
    /// One item per line, `application/x-ndjson`.
    Jsonl,
}

/// Which entries a stream carries; an empty list allows every value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamFilter {
    #[serde(default)]
    pub actions: Vec<AuditAction>,
    #[serde(default)]
    pub entity_types: Vec<EntityType>,
    #[serde(default)]
    pub project_ids: Vec<String>,
}

impl StreamFilter {
    pub fn matches(&self, entry: &AuditLogEntry) -> bool {
        (self.actions.is_empty() || self.actions.contains(&entry.action))
            && (self.entity_types.is_empty() || self.entity_types.contains(&entry.entity_type))
            && (self.project_ids.is_empty() || entry.project_id.as_ref().is_some_and(|p| self.project_ids.contains(p)))
    }

    /// Bounded, each project id valid; sorted and without repeats.
    pub fn check(mut self) -> Result<Self, StreamError> {
        for (field, len) in [
            ("filter.actions", self.actions.len()),
            ("filter.entity_types", self.entity_types.len()),
            ("filter.project_ids", self.project_ids.len()),
        ] {
            if len > MAX_FILTER_VALUES {
                return Err(StreamError::new(field, format!("at most {MAX_FILTER_VALUES} values")));
            }
        }
        for project in &self.project_ids {
            validation::identifier("project_id", project)
                .map_err(|e| StreamError::new("filter.project_ids", e.to_string()))?;
        }
        self.actions.sort_unstable();
        self.actions.dedup();
        self.entity_types.sort_unstable();
        self.entity_types.dedup();
        self.project_ids.sort_unstable();
        self.project_ids.dedup();
        Ok(self)
    }
}

/// Where deliveries go: everything about it but its secrets, which the API never shows again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Target {
    /// An HTTPS endpoint taking signed batches (Standard Webhooks).
    Webhook {
        url: String,
        encoding: Encoding,
        /// The custom headers' names; their values are secrets.
        header_names: Vec<String>,
    },
    /// Splunk's HTTP Event Collector: its `/services/collector/event` endpoint and a token.
    SplunkHec {
        url: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        index: Option<String>,
        source: String,
        sourcetype: String,
    },
    /// Datadog's logs intake (v2) of a site, with an API key.
    Datadog { site: String, url: String, service: String, tags: Vec<String> },
    /// An EventBridge bus (PutEvents), put to as a role of the tenant's that this deployment
    /// assumes with the tenant's external id ([`super::transport::external_id`]).
    Eventbridge {
        event_bus_arn: String,
        /// Empty only in a stream stored before roles were required: its deliveries fail, saying so.
        #[serde(default)]
        role_arn: String,
    },
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Webhook { .. } => "webhook",
            Target::SplunkHec { .. } => "splunk_hec",
            Target::Datadog { .. } => "datadog",
            Target::Eventbridge { .. } => "eventbridge",
        }
    }

    /// The HTTPS URL deliveries go to, for the HTTP kinds.
    pub fn url(&self) -> Option<&str> {
        match self {
            Target::Webhook { url, .. } | Target::SplunkHec { url, .. } | Target::Datadog { url, .. } => Some(url),
            Target::Eventbridge { .. } => None,
        }
    }
}

/// A stream's secrets, sealed at rest: the webhook's signing secrets (newest first; an older one
/// signs too until it retires), its custom headers' values, or the HEC token / Datadog API key.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Secrets {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing: Vec<SigningSecret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(redacted)")
    }
}

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SigningSecret {
    /// `whsec_` and the base64 key, as the tenant was shown it.
    pub secret: String,
    /// When an older secret stops signing; `None` for the current one.
    #[serde(default, with = "crate::domain::time::serde_millis_option", skip_serializing_if = "Option::is_none")]
    pub retires_at: Option<DateTime<Utc>>,
}

impl Secrets {
    /// The signing secrets still in use at `now`.
    pub fn signing_at(&self, now: DateTime<Utc>) -> impl Iterator<Item = &str> {
        self.signing.iter().filter(move |s| s.retires_at.is_none_or(|t| t > now)).map(|s| s.secret.as_str())
    }
}

/// A stream as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Destination {
    pub tenant_id: TenantId,
    pub id: Uuid,
    pub name: String,
    pub target: Target,
    pub format: Format,
    pub filter: StreamFilter,
    pub paused: bool,
    /// The secrets, sealed by the [`super::secrets::SecretBox`] (never in the clear at rest).
    pub sealed_secrets: String,
    /// When the previous signing secret retires, during a rotation's overlap.
    #[serde(default, with = "crate::domain::time::serde_millis_option", skip_serializing_if = "Option::is_none")]
    pub previous_secret_retires_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::domain::time::serde_millis")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::domain::time::serde_millis")]
    pub updated_at: DateTime<Utc>,
    /// Raised by every change: a change names the version it was made to, and loses to another.
    pub version: u64,
}

impl Destination {
    /// Whether new entries are routed to it: active, and the entry passes its filter.
    pub fn takes(&self, entry: &AuditLogEntry) -> bool {
        !self.paused && entry.tenant_id == self.tenant_id && self.filter.matches(entry)
    }

    /// The settings a trail record shows (never a secret).
    /// A URL's query values are left out (`?token=…`): a receiver may take its credential there,
    /// and records are read with `audit:read` and delivered to every stream of the tenant.
    pub fn settings(&self) -> serde_json::Value {
        let mut target = serde_json::to_value(&self.target).expect("a target serialises");
        if let Some(url) = target.get_mut("url")
            && let Some(text) = url.as_str()
        {
            *url = serde_json::Value::from(without_query_values(text));
        }
        serde_json::json!({
            "name": self.name,
            "target": target,
            "format": self.format,
            "filter": self.filter,
            "paused": self.paused,
        })
    }
}

/// `https://h/p?token=abc&x=1` → `https://h/p?token=…&x=…`.
fn without_query_values(text: &str) -> String {
    let Ok(mut url) = url::Url::parse(text) else { return text.to_owned() };
    if url.query().is_none() {
        return text.to_owned();
    }
    let names: Vec<String> = url.query_pairs().map(|(name, _)| name.into_owned()).collect();
    url.set_query(None);
    let query: Vec<String> = names.iter().map(|name| format!("{name}=…")).collect();
    format!("{url}?{}", query.join("&"))
}

/// A request refused: the field at fault and why, never a secret's value.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct StreamError {
    pub field: String,
    pub message: String,
}

impl StreamError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        StreamError { field: field.to_owned(), message: message.into() }
    }

    pub fn url(field: &str, e: &OutboundError) -> Self {
        StreamError::new(field, e.to_string())
    }
}

/// `POST /audit/streams`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateStream {
    pub name: String,
    pub target: TargetRequest,
    #[serde(default)]
    pub format: Format,
    #[serde(default)]
    pub filter: StreamFilter,
    #[serde(default)]
    pub paused: bool,
}

/// `PATCH /audit/streams/{stream_id}`: the fields to change. A target replaces the old one of the
/// same type; its secrets, when left out, stay as they were.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateStream {
    pub name: Option<String>,
    pub target: Option<TargetRequest>,
    pub format: Option<Format>,
    pub filter: Option<StreamFilter>,
    pub paused: Option<bool>,
    /// The version the change was made to; a stream changed since is a conflict.
    pub version: Option<u64>,
}

/// A target as requested: the settings and, in the clear this once, its secrets.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetRequest {
    Webhook {
        url: String,
        #[serde(default)]
        encoding: Encoding,
        /// Sent with every delivery (e.g. the receiver's own bearer token); values kept sealed.
        headers: Option<BTreeMap<String, String>>,
    },
    SplunkHec {
        url: String,
        token: Option<String>,
        index: Option<String>,
        source: Option<String>,
        sourcetype: Option<String>,
    },
    Datadog {
        api_key: Option<String>,
        site: Option<String>,
        /// Another intake URL (a proxy, a private link): instead of the site's.
        url: Option<String>,
        service: Option<String>,
        #[serde(default)]
        tags: Vec<String>,
    },
    Eventbridge {
        event_bus_arn: String,
        role_arn: String,
    },
}

impl std::fmt::Debug for TargetRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TargetRequest({})", self.kind())
    }
}

/// What a checked target request becomes: the target, and the secrets it brought (`None` where
/// the request left them out, so the stored ones stay).
pub struct CheckedTarget {
    pub target: Target,
    pub token: Option<String>,
    pub headers: Option<Vec<(String, String)>>,
}

impl TargetRequest {
    pub fn kind(&self) -> &'static str {
        match self {
            TargetRequest::Webhook { .. } => "webhook",
            TargetRequest::SplunkHec { .. } => "splunk_hec",
            TargetRequest::Datadog { .. } => "datadog",
            TargetRequest::Eventbridge { .. } => "eventbridge",
        }
    }

    /// Checks the form of every field (URLs here; their addresses when the service resolves them).
    pub fn check(self, loopback: Loopback) -> Result<CheckedTarget, StreamError> {
        match self {
            TargetRequest::Webhook { url, encoding, headers } => {
                let url = check_url(&url, loopback).map_err(|e| StreamError::url("target.url", &e))?.to_string();
                let headers = headers.map(check_headers).transpose()?;
                let header_names = headers.iter().flatten().map(|(n, _)| n.clone()).collect();
                Ok(CheckedTarget { target: Target::Webhook { url, encoding, header_names }, token: None, headers })
            }
            TargetRequest::SplunkHec { url, token, index, source, sourcetype } => {
                let mut url = check_url(&url, loopback).map_err(|e| StreamError::url("target.url", &e))?;
                // The event endpoint, whether the base URL or the full path was given.
                if matches!(url.path(), "" | "/") {
                    url.set_path("/services/collector/event");
                }
                let label = |field: &str, v: Option<String>, default: &str| -> Result<String, StreamError> {
                    let v = v.unwrap_or_else(|| default.to_owned());
                    check_label(field, &v)?;
                    Ok(v)
                };
                if let Some(index) = &index {
                    check_label("target.index", index)?;
                }
                let target = Target::SplunkHec {
                    url: url.to_string(),
                    index,
                    source: label("target.source", source, "auditline")?,
                    sourcetype: label("target.sourcetype", sourcetype, "auditline:entry")?,
                };
                Ok(CheckedTarget {
                    target,
                    token: token.map(|t| check_secret("target.token", t)).transpose()?,
                    headers: None,
                })
            }
            TargetRequest::Datadog { api_key, site, url, service, tags } => {
                let site = site.unwrap_or_else(|| DATADOG_SITES[0].to_owned());
                if !DATADOG_SITES.contains(&site.as_str()) {
                    return Err(StreamError::new("target.site", format!("one of {}", DATADOG_SITES.join(", "))));
                }
                let url = match url {
                    Some(url) => check_url(&url, loopback).map_err(|e| StreamError::url("target.url", &e))?.to_string(),
                    None => format!("https://http-intake.logs.{site}/api/v2/logs"),
                };
                let service = service.unwrap_or_else(|| "auditline".to_owned());
                check_label("target.service", &service)?;
                if tags.len() > MAX_TAGS {
                    return Err(StreamError::new("target.tags", format!("at most {MAX_TAGS} tags")));
                }
                for tag in &tags {
                    check_label("target.tags", tag)?;
                    if tag.contains(',') {
                        return Err(StreamError::new("target.tags", "a tag may not contain a comma"));
                    }
                }
                let token = api_key.map(|k| check_secret("target.api_key", k)).transpose()?;
                Ok(CheckedTarget { target: Target::Datadog { site, url, service, tags }, token, headers: None })
            }
            TargetRequest::Eventbridge { event_bus_arn, role_arn } => {
                check_bus_arn(&event_bus_arn)?;
                check_role_arn(&role_arn)?;
                Ok(CheckedTarget {
                    target: Target::Eventbridge { event_bus_arn, role_arn },
                    token: None,
                    headers: None,
                })
            }
        }
    }
}

/// A stream's name: 1 to 100 characters, no control characters.
pub fn check_name(name: &str) -> Result<String, StreamError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(StreamError::new("name", format!("1 to {MAX_NAME_CHARS} characters")));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(StreamError::new("name", "no control characters"));
    }
    Ok(trimmed.to_owned())
}

fn check_label(field: &str, value: &str) -> Result<(), StreamError> {
    if value.is_empty() || value.chars().count() > MAX_LABEL_CHARS || value.chars().any(char::is_control) {
        return Err(StreamError::new(field, format!("1 to {MAX_LABEL_CHARS} characters, no control characters")));
    }
    Ok(())
}

/// A token or key: printable ASCII (it goes into a header), never echoed in the error.
fn check_secret(field: &str, value: String) -> Result<String, StreamError> {
    if value.is_empty() || value.len() > MAX_SECRET_BYTES || !value.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(StreamError::new(field, format!("1 to {MAX_SECRET_BYTES} printable ASCII characters, no spaces")));
    }
    Ok(value)
}

fn check_headers(headers: BTreeMap<String, String>) -> Result<Vec<(String, String)>, StreamError> {
    if headers.len() > MAX_HEADERS {
        return Err(StreamError::new("target.headers", format!("at most {MAX_HEADERS} headers")));
    }
    let mut checked = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || name.len() > MAX_ID_CHARS || !name.chars().all(token) {
            return Err(StreamError::new(
                "target.headers",
                "a header name is a token (letters, digits, - and the like)",
            ));
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(StreamError::new("target.headers", format!("{name} is set by the delivery itself")));
        }
        if value.len() > MAX_HEADER_VALUE_BYTES || !value.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            return Err(StreamError::new(
                "target.headers",
                format!("the value of {name}: at most {MAX_HEADER_VALUE_BYTES} printable ASCII characters"),
            ));
        }
        if checked.iter().any(|(n, _)| n == &lower) {
            return Err(StreamError::new("target.headers", format!("{name} is given twice (names ignore case)")));
        }
        checked.push((lower, value));
    }
    Ok(checked)
}

/// `arn:<partition>:events:<region>:<account>:event-bus/<name>`.
fn check_bus_arn(arn: &str) -> Result<(), StreamError> {
    let refuse = || {
        StreamError::new(
            "target.event_bus_arn",
            "an event bus ARN: arn:aws:events:<region>:<account id>:event-bus/<name>",
        )
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [arn_word, partition, service, region, account, resource] = parts[..] else {
        return Err(refuse());
    };
    let name = resource.strip_prefix("event-bus/").ok_or_else(refuse)?;
    let region_ok =
        !region.is_empty() && region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let name_ok =
        !name.is_empty() && name.len() <= 256 && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    if arn_word != "arn"
        || !partition.starts_with("aws")
        || service != "events"
        || !region_ok
        || account.len() != 12
        || !account.bytes().all(|b| b.is_ascii_digit())
        || !name_ok
    {
        return Err(refuse());
    }
    Ok(())
}

/// An IAM role's ARN: `arn:<partition>:iam::<account id>:role/<path/><name>`.
fn check_role_arn(arn: &str) -> Result<(), StreamError> {
    let refuse = || {
        StreamError::new(
            "target.role_arn",
            "an IAM role ARN: arn:aws:iam::<account id>:role/<name>, a role of yours that may put on the bus \
             and trusts this deployment with your external id",
        )
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [arn_word, partition, service, region, account, resource] = parts[..] else {
        return Err(refuse());
    };
    let name = resource.strip_prefix("role/").ok_or_else(refuse)?;
    // A path of segments, then the role's name (at most 64): letters, digits and +=,.@_-.
    let segment_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    let name_ok =
        arn.len() <= 2048 && name.split('/').all(segment_ok) && name.rsplit('/').next().is_some_and(|n| n.len() <= 64);
    if arn_word != "arn"
        || !partition.starts_with("aws")
        || service != "iam"
        || !region.is_empty()
        || account.len() != 12
        || !account.bytes().all(|b| b.is_ascii_digit())
        || !name_ok
    {
        return Err(refuse());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(url: &str) -> TargetRequest {
        TargetRequest::Webhook { url: url.into(), encoding: Encoding::JsonArray, headers: None }
    }

    #[test]
    fn a_request_names_the_field_at_fault() {
        let bad = |t: TargetRequest| t.check(Loopback::Refused).err().map(|e| e.field);
        assert_eq!(bad(webhook("http://example.com/hook")).as_deref(), Some("target.url"));
        assert_eq!(bad(webhook("https://169.254.169.254/latest")).as_deref(), Some("target.url"));
        assert!(webhook("https://example.com/hook").check(Loopback::Refused).is_ok());
        let headers = |k: &str, v: &str| TargetRequest::Webhook {
            url: "https://example.com".into(),
            encoding: Encoding::Jsonl,
            headers: Some(BTreeMap::from([(k.to_owned(), v.to_owned())])),
        };
        assert_eq!(bad(headers("Webhook-Signature", "x")).as_deref(), Some("target.headers"));
        assert_eq!(bad(headers("X-Token", "a\nb")).as_deref(), Some("target.headers"));
        assert_eq!(bad(headers("bad name", "x")).as_deref(), Some("target.headers"));
        let hec = TargetRequest::SplunkHec {
            url: "https://splunk.example.com:8088".into(),
            token: Some("has space".into()),
            index: None,
            source: None,
            sourcetype: None,
        };
        let error = hec.check(Loopback::Refused).err().expect("refused");
        assert_eq!(error.field, "target.token");
        assert!(!error.message.contains("has space"), "a secret is never echoed");
        let role = "arn:aws:iam::123456789012:role/auditline-stream";
        let bus = |arn: &str| {
            TargetRequest::Eventbridge { event_bus_arn: arn.into(), role_arn: role.into() }.check(Loopback::Refused)
        };
        assert!(bus("arn:aws:events:eu-west-1:123456789012:event-bus/audit").is_ok());
        assert!(bus("arn:aws:events:eu-west-1:1234:event-bus/audit").is_err());
        assert!(bus("arn:aws:sqs:eu-west-1:123456789012:event-bus/audit").is_err());
        assert!(bus("arn:aws:events:eu-west-1:123456789012:rule/audit").is_err());
        let role = |arn: &str| {
            let bus = "arn:aws:events:eu-west-1:123456789012:event-bus/audit";
            TargetRequest::Eventbridge { event_bus_arn: bus.into(), role_arn: arn.into() }
                .check(Loopback::Refused)
                .err()
                .map(|e| e.field)
        };
        assert_eq!(role("arn:aws:iam::123456789012:role/service/auditline-put"), None);
        for wrong in [
            "",
            "arn:aws:iam::123456789012:user/someone",
            "arn:aws:iam:eu-west-1:123456789012:role/put",
            "arn:aws:iam::1234:role/put",
            "arn:aws:sts::123456789012:role/put",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/has space",
            "arn:aws:iam::123456789012:role/path//double",
        ] {
            assert_eq!(role(wrong).as_deref(), Some("target.role_arn"), "{wrong:?}");
        }
    }

    #[test]
    fn splunk_and_datadog_get_their_endpoints() {
        let hec = TargetRequest::SplunkHec {
            url: "https://splunk.example.com:8088".into(),
            token: Some("B5A79AAD-D822-46CC-80D1-819F80D7BFB0".into()),
            index: None,
            source: None,
            sourcetype: None,
        };
        let checked = hec.check(Loopback::Refused).expect("valid");
        assert_eq!(checked.target.url(), Some("https://splunk.example.com:8088/services/collector/event"));
        let dd = TargetRequest::Datadog {
            api_key: Some("abcdef0123456789abcdef0123456789".into()),
            site: Some("datadoghq.eu".into()),
            url: None,
            service: None,
            tags: vec!["env:prod".into()],
        };
        let checked = dd.check(Loopback::Refused).expect("valid");
        assert_eq!(checked.target.url(), Some("https://http-intake.logs.datadoghq.eu/api/v2/logs"));
        let unknown = TargetRequest::Datadog {
            api_key: None,
            site: Some("example.com".into()),
            url: None,
            service: None,
            tags: vec![],
        };
        assert_eq!(unknown.check(Loopback::Refused).err().map(|e| e.field).as_deref(), Some("target.site"));
    }

    #[test]
    fn unknown_fields_and_types_are_refused() {
        let parse = |v: serde_json::Value| serde_json::from_value::<CreateStream>(v).err().map(|e| e.to_string());
        assert!(parse(serde_json::json!({"name": "x", "target": {"type": "ftp", "url": "x"}})).is_some());
        assert!(
            parse(serde_json::json!({"name": "x", "target": {"type": "webhook", "url": "x", "secret": "s"}})).is_some()
        );
        assert!(
            parse(serde_json::json!({"name": "x", "target": {"type": "webhook", "url": "x"}, "extra": 1})).is_some()
        );
        assert!(parse(serde_json::json!({"name": "x", "target": {"type": "webhook", "url": "x"}})).is_none());
    }

    #[test]
    fn records_show_a_urls_query_names_never_its_values() {
        assert_eq!(without_query_values("https://h.example/p?token=abc&x=1"), "https://h.example/p?token=…&x=…");
        assert_eq!(without_query_values("https://h.example/p"), "https://h.example/p");
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(check_name("  SIEM  ").as_deref(), Ok("SIEM"));
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(101)).is_err());
        assert!(check_name("a\u{7}b").is_err());
    }
}
