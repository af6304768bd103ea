//! The tenant's retention and legal holds (`audit:admin`): `GET`/`PUT /audit/settings`,
//! `POST /audit/settings/holds`, `DELETE /audit/settings/holds/{hold_id}`. Every change is a
//! record in the trail (see [`crate::retention`]).

use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};

use super::{ApiError, AuditApi, RequestInfo, json, json_body, path_param, query_param};
use crate::AuditError;
use crate::auth::scopes::AUDIT_ADMIN;
use crate::domain::{AuditLogEntry, TenantId};
use crate::logger::{HoldChange, MAX_RETENTION_DAYS, PolicyFailure};
use crate::retention::{HoldScope, LegalHold, MIN_RETENTION_DAYS, PolicyError, TenantPolicy};

/// Largest accepted body: a number, or a scope and a reason.
const MAX_BODY_BYTES: usize = 8 * 1024;

#[derive(Serialize)]
struct Settings<'a> {
    tenant_id: &'a TenantId,
    retention_days: u32,
    default_retention_days: u32,
    min_retention_days: u32,
    max_retention_days: u32,
    holds: &'a [LegalHold],
}

impl<'a> Settings<'a> {
    fn of(tenant_id: &'a TenantId, policy: &'a TenantPolicy, default: u32) -> Self {
        Settings {
            tenant_id,
            retention_days: policy.retention_days(default),
            default_retention_days: default,
            min_retention_days: MIN_RETENTION_DAYS,
            max_retention_days: MAX_RETENTION_DAYS,
            holds: &policy.holds,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionRequest {
    retention_days: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldRequest {
    scope: HoldScope,
    reason: String,
}

/// A hold to place, or the sweep of one placed to go on with.
#[derive(Deserialize)]
#[serde(untagged)]
enum HoldBody {
    Place(HoldRequest),
    GoOn(SweepRequest),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepRequest {
    next_token: String,
}

fn failed(e: PolicyFailure, request_id: &str) -> ApiError {
    match e {
        PolicyFailure::Refused(refusal) => {
            let message = refusal.to_string();
            match refusal {
                PolicyError::RetentionOutOfBounds { .. } => {
                    ApiError::InvalidEntry { parameter: Some("retention_days".into()), message }
                }
                PolicyError::Reason => ApiError::InvalidEntry { parameter: Some("reason".into()), message },
                PolicyError::Scope { field } => {
                    ApiError::InvalidEntry { parameter: Some(format!("scope.{field}")), message }
                }
                PolicyError::TooManyHolds => ApiError::Conflict { code: "too_many_holds", message, parameter: None },
                PolicyError::NoSuchHold(_) => ApiError::NotFound,
                PolicyError::SweepToken => ApiError::InvalidParameter { parameter: "next_token".into(), message },
            }
        }
        PolicyFailure::Conflict => ApiError::Conflict { code: "changed", message: e.to_string(), parameter: None },
        PolicyFailure::Unsupported => {
            tracing::error!(request_id, "no policy store configured for this function");
            ApiError::Internal
        }
        PolicyFailure::Audit(AuditError::Invalid(v)) => ApiError::entry_error(&v),
        PolicyFailure::Audit(AuditError::Store(s)) => ApiError::from_store(&s, request_id),
    }
}

/// `GET /audit/settings`: the tenant's retention, the deployment's bounds, and its holds.
pub(super) async fn get(info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_ADMIN)?;
    let policy =
        api.logger.policy_of(&caller.tenant_id).await.map_err(|e| ApiError::from_query(&e, &info.request_id))?;
    Ok(json(200, &Settings::of(&caller.tenant_id, &policy, api.logger.settings().retention_days)))
}

/// `PUT /audit/settings`: `{"retention_days": n}` for the entries written from now on.
pub(super) async fn put(req: &Request, info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_ADMIN)?;
    let request: RetentionRequest = json_body(req, MAX_BODY_BYTES, "{\"retention_days\": days}")?;
    let change = api
        .logger
        .set_retention(&caller.tenant_id, request.retention_days, &info.actor())
        .await
        .map_err(|e| failed(e, &info.request_id))?;
    #[derive(Serialize)]
    struct Changed<'a> {
        #[serde(flatten)]
        settings: Settings<'a>,
        record: &'a AuditLogEntry,
    }
    let settings = Settings::of(&caller.tenant_id, &change.policy, api.logger.settings().retention_days);
    Ok(json(200, &Changed { settings, record: &change.record }))
}

#[derive(Serialize)]
struct HoldAnswer<'a> {
    hold: &'a LegalHold,
    record: &'a AuditLogEntry,
    /// Entries whose expiry the change set: kept (placed) or let go again (released).
    entries: usize,
    /// Set when the sweep stopped at its budget: send it back to go on.
    next_token: Option<&'a str>,
}

impl<'a> HoldAnswer<'a> {
    fn of(change: &'a HoldChange) -> Self {
        HoldAnswer {
            hold: &change.hold,
            record: &change.record,
            entries: change.entries,
            next_token: change.next_token.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct SweepAnswer<'a> {
    entries: usize,
    next_token: Option<&'a str>,
}

/// `POST /audit/settings/holds`: `{"scope": {...}, "reason": "..."}`, or `{"next_token": "..."}`
/// to go on with the sweep of a hold placed before.
pub(super) async fn place_hold(req: &Request, info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_ADMIN)?;
    let request: HoldBody = json_body(
        req,
        MAX_BODY_BYTES,
        "{\"scope\": {\"type\": \"tenant\"} or {\"type\": \"entity\"|\"project\"|\"user\", \"entity_id\"|\"project_id\"|\"user_id\": id}, \"reason\": \"why\"}, or {\"next_token\": token}",
    )?;
    let request = match request {
        HoldBody::Place(request) => request,
        HoldBody::GoOn(SweepRequest { next_token }) => {
            return go_on(&caller.tenant_id, &next_token, None, info, api).await;
        }
    };
    let placed = api
        .logger
        .place_hold(&caller.tenant_id, request.scope, &request.reason, &info.actor())
        .await
        .map_err(|e| failed(e, &info.request_id))?;
    Ok(json(201, &HoldAnswer::of(&placed)))
}

/// The rest of a sweep that stopped at its budget.
async fn go_on(
    tenant: &TenantId,
    next_token: &str,
    hold: Option<uuid::Uuid>,
    info: &RequestInfo,
    api: &AuditApi,
) -> Result<Response<Body>, ApiError> {
    let progress =
        api.logger.continue_sweep(tenant, next_token, hold).await.map_err(|e| failed(e, &info.request_id))?;
    Ok(json(200, &SweepAnswer { entries: progress.entries, next_token: progress.next_token.as_deref() }))
}

/// `DELETE /audit/settings/holds/{hold_id}`.
pub(super) async fn release_hold(
    req: &Request,
    info: &RequestInfo,
    api: &AuditApi,
) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_ADMIN)?;
    let id = path_param(req, "hold_id")?.parse().map_err(|_| ApiError::InvalidParameter {
        parameter: "hold_id".into(),
        message: "hold_id must be a hold's id (a UUID)".into(),
    })?;
    if let Some(next_token) = query_param(req, "next_token") {
        return go_on(&caller.tenant_id, next_token, Some(id), info, api).await;
    }
    let released =
        api.logger.release_hold(&caller.tenant_id, id, &info.actor()).await.map_err(|e| failed(e, &info.request_id))?;
    Ok(json(200, &HoldAnswer::of(&released)))
}
