//! The trail's record of who looked at it: every export writes a VIEW entry, and with
//! `AUDIT_LOG_READS=true` so does every read route. Both are written before the data leaves (a read
//! that cannot be recorded is refused with 503), name the entity `report/audit-log`, and say what
//! was asked for — never the credential.
//!
//! Reads cannot flood the trail with their own records: a read's VIEW is keyed by the minute, the
//! caller, the route and its filters (paging parameters left out), so a dashboard that polls, pages,
//! or re-reads on every live frame writes at most one VIEW per query per minute; the repeats meet
//! the first one's id and are refused by the store's conditional put.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use lambda_http::{Request, RequestExt};
use serde_json::{Map, Value, json};

use super::{ApiError, AuditApi, RequestInfo, Route};
use crate::auth::Caller;
use crate::domain::{AuditAction, AuditQuery, EntityType, EntryDetails, NewEntry, QueryScope};
use crate::export::ExportFormat;

/// What an access record names as its entity.
pub const ACCESS_ENTITY: (EntityType, &str) = (EntityType::Report, "audit-log");
/// Query parameters that only move through the same result: left out of a read's record and key.
const PAGING_PARAMETERS: [&str; 3] = ["limit", "offset", "next_token"];

impl Route {
    /// Whether the route reads the trail (and so is recorded when `AUDIT_LOG_READS` is on). The
    /// health check and the public keys say nothing about entries; ingest and export record
    /// themselves.
    pub fn reads_the_trail(self) -> bool {
        matches!(
            self,
            Route::ListLogs
                | Route::GetLog
                | Route::EntityLogs
                | Route::ProjectLogs
                | Route::Stats
                | Route::Checkpoints
                | Route::LatestCheckpoint
                | Route::PeriodLeaves
                | Route::Proof
        )
    }
}

fn access_entry(caller: &Caller, info: &RequestInfo, metadata: Value) -> NewEntry {
    let (entity_type, entity_id) = ACCESS_ENTITY;
    NewEntry {
        tenant_id: caller.tenant_id.clone(),
        action: AuditAction::View,
        entity_type,
        entity_id: entity_id.to_owned(),
        details: EntryDetails {
            project_id: None,
            user_id: caller.user_id.clone(),
            changes: None,
            ip_address: info.source_ip.clone(),
            metadata: Some(metadata),
        },
    }
}

/// Records an export (its first page): who, filters, format, entries on the page, and whether that
/// page was the whole export.
pub(super) async fn record_export(
    api: &AuditApi,
    caller: &Caller,
    info: &RequestInfo,
    query: &AuditQuery,
    format: ExportFormat,
    entries: usize,
    complete: bool,
) -> Result<(), ApiError> {
    let f = &query.filter;
    let mut filters = Map::new();
    let mut put = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            filters.insert(name.to_owned(), Value::String(v));
        }
    };
    match &query.scope {
        QueryScope::Entity(id) => put("entity_id", Some(id.clone())),
        QueryScope::Project(id) => put("project_id", Some(id.clone())),
        QueryScope::Tenant => {}
    }
    put("action", f.action.map(|a| a.as_str().to_owned()));
    put("entity_type", f.entity_type.map(|t| t.as_str().to_owned()));
    put("user_id", f.user_id.clone());
    put("start_date", f.start_date.map(crate::domain::time::format_timestamp));
    put("end_date", f.end_date.map(crate::domain::time::format_timestamp));
    let metadata = json!({
        "operation": "export",
        "format": format.name(),
        "filters": filters,
        "entries_returned": entries,
        "complete": complete,
    });
    let entry = access_entry(caller, info, metadata);
    api.logger.log(entry).await.map(|_| ()).map_err(|e| ApiError::from_query(&e, &info.request_id))
}

/// Records one read of `route` by its caller, once per minute per caller, route and filters.
/// Unauthenticated requests were refused before they read anything and are not recorded here.
pub(super) async fn record_read(
    route: Route,
    req: &Request,
    info: &RequestInfo,
    api: &AuditApi,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let Some(caller) = &info.caller else { return Ok(()) };
    let sorted = |pairs: Vec<(String, String)>| pairs.into_iter().collect::<std::collections::BTreeMap<_, _>>();
    let path = sorted(
        req.path_parameters_ref()
            .map(|p| p.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
            .unwrap_or_default(),
    );
    let filters = sorted(
        req.query_string_parameters_ref()
            .map(|q| {
                q.iter()
                    .filter(|(k, _)| !PAGING_PARAMETERS.contains(k))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default(),
    );
    let metadata = json!({
        "operation": "read",
        "route": route.route_key(),
        "parameters": path,
        "filters": filters,
    });
    // Everything that tells one query from another, and nothing that only pages through it.
    let identity = serde_json::to_vec(&json!([
        "auditline-read/1",
        caller.tenant_id.as_str(),
        caller.auth_method.as_str(),
        caller.user_id,
        metadata,
    ]))
    .unwrap_or_default();
    let minute = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now);
    let entry = access_entry(caller, info, metadata);
    api.logger
        .log_once(entry, minute, 0, &identity)
        .await
        .map(|_| ())
        .map_err(|e| ApiError::from_query(&e, &info.request_id))
}
