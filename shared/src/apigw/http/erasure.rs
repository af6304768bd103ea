//! `POST /audit/logs/{id}/erasure`: erases fields of one entry of the caller's tenant, with the
//! erasure record written into the trail first (see [`crate::erasure`]).

use lambda_http::{Body, Request, Response};
use serde::Serialize;

use super::{ApiError, AuditApi, RequestInfo, entry_id, json, json_body};
use crate::auth::scopes::AUDIT_ERASE;
use crate::domain::AuditLogEntry;
use crate::erasure::{ErasureError, ErasureRequest};
use crate::logger::EraseFailure;
use crate::{AuditError, erasure};

/// Largest accepted body: a list of field names and a reason.
const MAX_BODY_BYTES: usize = 8 * 1024;

#[derive(Serialize)]
struct Erased<'a> {
    entry: &'a AuditLogEntry,
    record: &'a AuditLogEntry,
}

pub(super) async fn erase(req: &Request, info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_ERASE)?;
    let id = entry_id(req)?;
    let shape = format!(
        "{{\"fields\": [field names], \"reason\": \"why\"}} (erasable: {})",
        erasure::ERASABLE_FIELDS.join(", ")
    );
    let request: ErasureRequest = json_body(req, MAX_BODY_BYTES, &shape)?;
    let erased = api.logger.erase(&caller.tenant_id, id, &request, &info.actor()).await.map_err(|e| match e {
        EraseFailure::NotFound => ApiError::NotFound,
        EraseFailure::Refused(refusal) => refused(&refusal, &info.request_id),
        EraseFailure::Held(hold) => ApiError::Conflict {
            code: "legal_hold",
            message: format!("legal hold {hold} covers this entry: it cannot be erased until the hold is released"),
            parameter: None,
        },
        EraseFailure::Audit(AuditError::Invalid(v)) => ApiError::entry_error(&v),
        EraseFailure::Audit(AuditError::Store(s)) => ApiError::from_store(&s, &info.request_id),
    })?;
    Ok(json(200, &Erased { entry: &erased.entry, record: &erased.record }))
}

fn refused(e: &ErasureError, request_id: &str) -> ApiError {
    let invalid =
        |parameter: &str| ApiError::InvalidEntry { parameter: Some(parameter.into()), message: e.to_string() };
    match e {
        ErasureError::NoFields
        | ErasureError::UnknownField(_)
        | ErasureError::NotErasable { .. }
        | ErasureError::Duplicate(_) => invalid("fields"),
        ErasureError::Reason => invalid("reason"),
        ErasureError::AlreadyErased { .. } => {
            ApiError::Conflict { code: "already_erased", message: e.to_string(), parameter: Some("fields".into()) }
        }
        ErasureError::NoValue(_) => {
            ApiError::Conflict { code: "nothing_to_erase", message: e.to_string(), parameter: Some("fields".into()) }
        }
        ErasureError::Leaf(reason) => {
            tracing::error!(request_id, %reason, "a stored entry does not match its leaf; not erased");
            ApiError::Internal
        }
    }
}

/// How long one subject-erasure request works before answering with where to go on from: well
/// inside API Gateway's 29 s.
const SUBJECT_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectRequest {
    user_id: String,
    fields: Vec<String>,
    reason: String,
    #[serde(default)]
    next_token: Option<String>,
}

#[derive(Serialize)]
struct SubjectAnswer<'a> {
    /// Every entry of the subject is done (or held).
    done: bool,
    erased: usize,
    held: usize,
    records: &'a [uuid::Uuid],
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a AuditLogEntry>,
}

/// `POST /audit/erasures`: erases fields from every entry of one user, a page at a time, each
/// page under its own erasure record; answers after ~20 s with a `next_token` to send back.
pub(super) async fn erase_subject(
    req: &Request,
    info: &RequestInfo,
    api: &AuditApi,
) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_ERASE)?;
    let shape =
        "{\"user_id\": id, \"fields\": [field names], \"reason\": \"why\", \"next_token\"?: from the last answer}";
    let request: SubjectRequest = json_body(req, MAX_BODY_BYTES, shape)?;
    crate::domain::validation::identifier("user_id", &request.user_id).map_err(|e| ApiError::entry_error(&e))?;
    let erasure = ErasureRequest { fields: request.fields, reason: request.reason };
    let progress = api
        .logger
        .erase_subject(&caller.tenant_id, &request.user_id, &erasure, &info.actor(), request.next_token, SUBJECT_BUDGET)
        .await
        .map_err(|e| match e {
            EraseFailure::Refused(refusal) => refused(&refusal, &info.request_id),
            EraseFailure::Audit(AuditError::Invalid(v)) => ApiError::parameter_error(&v),
            EraseFailure::Audit(AuditError::Store(s)) => ApiError::from_store(&s, &info.request_id),
            EraseFailure::NotFound | EraseFailure::Held(_) => ApiError::Internal,
        })?;
    Ok(json(
        200,
        &SubjectAnswer {
            done: progress.next_token.is_none(),
            erased: progress.erased,
            held: progress.held,
            records: &progress.records,
            next_token: progress.next_token.as_deref(),
            result: progress.result.as_ref(),
        },
    ))
}
