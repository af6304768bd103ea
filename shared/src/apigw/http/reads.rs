//! The read routes: list (tenant, entity, project), one entry, statistics, health.

use lambda_http::{Body, Request, Response};
use serde::Serialize;

use super::{ApiError, AuditApi, RequestInfo, Route, entry_id, json, path_param, query_param};
use crate::auth::scopes::AUDIT_READ;
use crate::domain::time::parse_date_param;
use crate::domain::{AuditLogEntry, AuditQuery, QueryScope, StatsBucket};
use crate::logger::HealthReport;
use crate::seal::WitnessStatus;

/// A list page, as the seed's clients expect it plus the cursor.
#[derive(Serialize)]
struct PageBody<'a> {
    entries: &'a [AuditLogEntry],
    count: usize,
    limit: usize,
    offset: usize,
    next_token: Option<&'a str>,
}

pub(super) async fn list(
    route: Route,
    req: &Request,
    info: &RequestInfo,
    api: &AuditApi,
) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_READ)?;
    let scope = match route {
        Route::EntityLogs => QueryScope::Entity(path_param(req, "entity_id")?.to_owned()),
        Route::ProjectLogs => QueryScope::Project(path_param(req, "project_id")?.to_owned()),
        _ => QueryScope::Tenant,
    };
    let query =
        AuditQuery::from_params(scope, |name| query_param(req, name)).map_err(|e| ApiError::parameter_error(&e))?;
    let page =
        api.logger.get_logs(&caller.tenant_id, &query).await.map_err(|e| ApiError::from_query(&e, &info.request_id))?;
    Ok(json(
        200,
        &PageBody {
            entries: &page.entries,
            count: page.entries.len(),
            limit: page.limit,
            offset: page.offset,
            next_token: page.next_token.as_deref(),
        },
    ))
}

pub(super) async fn get(req: &Request, info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_READ)?;
    let id = entry_id(req)?;
    // Another tenant's id is looked up in the caller's own partition: not found, like any unknown id.
    match api.logger.get_log(&caller.tenant_id, id).await {
        Ok(Some(entry)) => Ok(json(200, &entry)),
        Ok(None) => Err(ApiError::NotFound),
        Err(e) => Err(ApiError::from_query(&e, &info.request_id)),
    }
}

pub(super) async fn stats(req: &Request, info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_READ)?;
    let date = |name: &'static str| {
        query_param(req, name)
            .filter(|v| !v.is_empty())
            .map(|v| parse_date_param(name, v))
            .transpose()
            .map_err(|e| ApiError::parameter_error(&e))
    };
    let (start, end) = (date("start_date")?, date("end_date")?);
    let bucket = query_param(req, "bucket")
        .filter(|v| !v.is_empty())
        .map(StatsBucket::parse)
        .transpose()
        .map_err(|e| ApiError::parameter_error(&e))?;
    let stats = api
        .logger
        .get_stats_series(&caller.tenant_id, start, end, bucket)
        .await
        .map_err(|e| ApiError::from_query(&e, &info.request_id))?;
    Ok(json(200, &stats))
}

#[derive(Serialize)]
struct HealthBody<'a> {
    #[serde(flatten)]
    report: &'a HealthReport,
    version: &'static str,
    auth_methods: &'a [String],
    /// What the seal last found at each witness.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    witnesses: Vec<WitnessHealth>,
    /// The caller's tenant's log streams: how many, and which are failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    log_streams: Option<StreamsHealth>,
}

#[derive(Serialize)]
struct StreamsHealth {
    streams: usize,
    failing: Vec<FailingStream>,
}

#[derive(Serialize)]
struct FailingStream {
    id: uuid::Uuid,
    name: String,
    since: String,
    reason: String,
}

/// The tenant's streams as the health check shows them; nothing if they cannot be read in time.
async fn streams_health(api: &AuditApi, tenant: &crate::domain::TenantId) -> Option<StreamsHealth> {
    let admin = api.streams.as_ref()?;
    let streams = tokio::time::timeout(api.health_timeout, admin.list(tenant)).await.ok()?.ok()?;
    let failing = streams
        .iter()
        .filter_map(|s| {
            let failing = s.figures.failing.as_ref()?;
            Some(FailingStream {
                id: s.stream.id,
                name: s.stream.name.clone(),
                since: crate::domain::time::format_timestamp(failing.since),
                reason: failing.reason.clone(),
            })
        })
        .collect();
    Some(StreamsHealth { streams: streams.len(), failing })
}

#[derive(Serialize)]
struct WitnessHealth {
    #[serde(flatten)]
    status: WitnessStatus,
    /// `ok`, `failing` (its last contact failed; the seal retries every run) or `unknown`.
    state: &'static str,
}

/// The configured witnesses and what the seal recorded about them. A witness's state never makes
/// the service degraded: sealing goes on without it.
async fn witness_health(api: &AuditApi) -> Vec<WitnessHealth> {
    if api.witnesses.is_empty() {
        return Vec::new();
    }
    let known = tokio::time::timeout(api.health_timeout, api.seal.witness_status()).await.ok().and_then(Result::ok);
    let known = known.unwrap_or_default();
    api.witnesses
        .iter()
        .map(|(url, _)| {
            let status = known.iter().find(|s| &s.witness == url).cloned();
            let state = match &status {
                None => "unknown",
                Some(s) if s.failing() => "failing",
                Some(s) if s.last_success.is_some() => "ok",
                Some(_) => "unknown",
            };
            WitnessHealth {
                status: status.unwrap_or_else(|| WitnessStatus { witness: url.clone(), ..Default::default() }),
                state,
            }
        })
        .collect()
}

/// What anyone may know: whether the service is up.
#[derive(Serialize)]
struct PublicHealth {
    status: &'static str,
}

/// Public. 200 when healthy or deliberately disabled, 503 when storage does not answer in time.
/// Only the status, unless the caller holds `audit:read`: configuration, storage latency and the
/// version are of use to an attacker and of no use to a load balancer.
pub(super) async fn health(info: &RequestInfo, api: &AuditApi) -> Response<Body> {
    let report = api.logger.health(api.health_timeout).await;
    let status = if report.status == "degraded" { 503 } else { 200 };
    if let Some(caller) = info.caller.as_ref().filter(|c| c.has_scope(AUDIT_READ)) {
        json(
            status,
            &HealthBody {
                report: &report,
                version: env!("CARGO_PKG_VERSION"),
                auth_methods: &api.auth_methods,
                witnesses: witness_health(api).await,
                log_streams: streams_health(api, &caller.tenant_id).await,
            },
        )
    } else {
        json(status, &PublicHealth { status: report.status })
    }
}
