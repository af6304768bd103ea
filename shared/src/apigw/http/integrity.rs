//! The integrity routes: the tenant's checkpoint chain, its latest checkpoint as a C2SP signed
//! note, a sealed period's leaves, one entry's proof, and the public keys checkpoints are signed
//! with.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use uuid::Uuid;

use super::{ApiError, AuditApi, RequestInfo, entry_id, json, query_param};
use crate::auth::scopes::AUDIT_READ;
use crate::domain::time::{format_timestamp, parse_date_param};
use crate::domain::{MAX_LIMIT, ValidationError, validation};
use crate::integrity::checkpoint::Checkpoint;
use crate::seal::verify::PeriodLeaves;
use crate::seal::{self, EntryProof, ProofOutcome, PublishedKey, SealSettings};

/// Checkpoints a page holds unless `limit` says otherwise.
const DEFAULT_CHECKPOINTS: usize = 100;

fn date(req: &Request, name: &'static str) -> Result<Option<DateTime<Utc>>, ApiError> {
    query_param(req, name).map(|v| parse_date_param(name, v)).transpose().map_err(|e| ApiError::parameter_error(&e))
}

/// `next_token` of the checkpoint list: the end (epoch ms) of the last checkpoint returned. It only
/// narrows the caller's own chain, so it needs no signature.
fn decode_after(token: &str) -> Result<DateTime<Utc>, ApiError> {
    let bad =
        || ApiError::parameter_error(&ValidationError::InvalidCursor { reason: "is not a token this service issued" });
    let bytes = URL_SAFE_NO_PAD.decode(token.as_bytes()).map_err(|_| bad())?;
    let millis = i64::from_be_bytes(bytes.try_into().map_err(|_| bad())?);
    DateTime::from_timestamp_millis(millis).ok_or_else(bad)
}

fn encode_after(end: DateTime<Utc>) -> String {
    URL_SAFE_NO_PAD.encode(end.timestamp_millis().to_be_bytes())
}

#[derive(Serialize)]
struct CheckpointPage<'a> {
    /// Whose chain this is (the caller's tenant).
    tenant: &'a str,
    checkpoints: &'a [Checkpoint],
    count: usize,
    next_token: Option<String>,
    /// The settings the chain is sealed under: a verifier judges from them when an entry should
    /// have been sealed.
    seal: &'a SealSettings,
}

/// `GET /audit/checkpoints`: the tenant's chain, oldest first, by the periods' ends.
pub(super) async fn checkpoints(req: &Request, info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_READ)?;
    let limit = query_param(req, "limit")
        .map(|v| validation::bounded_integer("limit", v, 1, MAX_LIMIT as u64))
        .transpose()
        .map_err(|e| ApiError::parameter_error(&e))?
        .map_or(DEFAULT_CHECKPOINTS, |n| n as usize);
    let (start, end) = (date(req, "start_date")?, date(req, "end_date")?);
    if let (Some(s), Some(e)) = (start, end)
        && s > e
    {
        return Err(ApiError::parameter_error(&ValidationError::InvertedDateRange));
    }
    let after = query_param(req, "next_token").map(decode_after).transpose()?;
    // A checkpoint is listed when its period ends after start_date and begins before end_date.
    let after = match (after, start) {
        (Some(a), Some(s)) => Some(a.max(s)),
        (a, s) => a.or(s),
    };
    let mut found = api
        .seal
        .checkpoints(&caller.tenant_id, after, None, limit + 1)
        .await
        .map_err(|e| ApiError::from_backend(&e, &info.request_id))?;
    if let Some(end) = end {
        let until = format_timestamp(end);
        found.retain(|c| c.body.start <= until);
    }
    let more = found.len() > limit;
    found.truncate(limit);
    let next_token = more
        .then(|| found.last().and_then(|c| DateTime::parse_from_rfc3339(&c.body.end).ok()))
        .flatten()
        .map(|end| encode_after(end.to_utc()));
    Ok(json(
        200,
        &CheckpointPage {
            tenant: caller.tenant_id.as_str(),
            checkpoints: &found,
            count: found.len(),
            next_token,
            seal: &api.seal_settings,
        },
    ))
}

#[derive(Serialize)]
struct Latest<'a> {
    checkpoint: &'a Checkpoint,
    /// The same checkpoint as a C2SP signed note (with the witnesses' cosignatures).
    note: String,
    seal: &'a SealSettings,
}

/// `GET /audit/checkpoints/latest`: the tenant's head, as JSON or (`format=note`, or `Accept:
/// text/plain`) as the signed note itself. 404 before the first seal.
pub(super) async fn latest(req: &Request, info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_READ)?;
    let as_note = match query_param(req, "format") {
        Some("note") => true,
        Some("json") => false,
        Some(_) => {
            return Err(ApiError::InvalidParameter {
                parameter: "format".into(),
                message: "format must be json or note".into(),
            });
        }
        None => req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/plain") && !a.contains("application/json")),
    };
    let mut head = api
        .seal
        .latest_checkpoints(&caller.tenant_id, 1)
        .await
        .map_err(|e| ApiError::from_backend(&e, &info.request_id))?
        .pop()
        .ok_or(ApiError::NotFound)?;
    // Only the configured witnesses' cosignatures, verified: a line added to the table is not one.
    let keys: Vec<_> = api.witnesses.iter().map(|(_, k)| k.clone()).collect();
    head.retain_cosignatures(&keys);
    let note = head.note().ok_or_else(|| ApiError::from_backend(&corrupt_checkpoint(), &info.request_id))?;
    if as_note {
        return Ok(Response::builder()
            .status(200)
            .header("content-type", "text/plain; charset=utf-8")
            .header("cache-control", "no-store")
            .body(Body::Text(note))
            .expect("status and headers are valid"));
    }
    Ok(json(200, &Latest { checkpoint: &head, note, seal: &api.seal_settings }))
}

fn corrupt_checkpoint() -> crate::backend::BackendError {
    crate::backend::BackendError::Internal("a stored checkpoint cannot be rendered as a note".into())
}

/// `GET /audit/checkpoints/leaves?end=…`: the ids and leaf hashes of the sealed period whose
/// checkpoint ends at `end`, in tree order — what a verifier checks a period against when
/// retention removed some of its entries. 404 when no checkpoint ends there, or its leaves are
/// past retention too.
pub(super) async fn leaves(req: &Request, info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_READ)?;
    let end = date(req, "end")?.ok_or_else(|| ApiError::InvalidParameter {
        parameter: "end".into(),
        message: "end is required: the end of a checkpoint's period (RFC 3339)".into(),
    })?;
    let backend = |e: crate::backend::BackendError| ApiError::from_backend(&e, &info.request_id);
    let found = api
        .seal
        .checkpoints(&caller.tenant_id, Some(end - chrono::Duration::milliseconds(1)), Some(end), 1)
        .await
        .map_err(backend)?;
    let checkpoint = found.into_iter().next().ok_or(ApiError::NotFound)?;
    let leaves = seal::period_leaves(api.seal.as_ref(), &caller.tenant_id, &checkpoint)
        .await
        .map_err(backend)?
        .ok_or(ApiError::NotFound)?;
    let (ids, hashes) = leaves.into_iter().unzip();
    Ok(json(200, &PeriodLeaves { end: checkpoint.body.end.clone(), ids, leaves: hashes }))
}

#[derive(Serialize)]
struct Sealed<'a> {
    sealed: bool,
    #[serde(flatten)]
    proof: &'a EntryProof,
}

#[derive(Serialize)]
struct NotSealed {
    sealed: bool,
    id: Uuid,
    #[serde(with = "crate::domain::time::serde_millis")]
    sealed_after: DateTime<Utc>,
    /// Still not sealed after this, the entry's checkpoint was removed: verifiers fail it.
    #[serde(with = "crate::domain::time::serde_millis")]
    overdue_after: DateTime<Utc>,
    message: &'static str,
}

/// `GET /audit/logs/{id}/proof`: the entry, its leaf's place in its period's tree, the audit path
/// and the signed checkpoint; or when it will be sealed.
pub(super) async fn proof(req: &Request, info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_READ)?;
    let id = entry_id(req)?;
    let entry = api
        .logger
        .get_log(&caller.tenant_id, id)
        .await
        .map_err(|e| ApiError::from_query(&e, &info.request_id))?
        .ok_or(ApiError::NotFound)?;
    match seal::prove(api.seal.as_ref(), entry, &api.seal_settings).await {
        Ok(ProofOutcome::Proven(proof)) => Ok(json(200, &Sealed { sealed: true, proof: &proof })),
        Ok(ProofOutcome::NotSealed { sealed_after }) => Ok(json(
            200,
            &NotSealed {
                sealed: false,
                id,
                sealed_after,
                overdue_after: sealed_after + chrono::Duration::seconds(i64::from(api.seal_settings.schedule_seconds)),
                message: "the entry's period is not sealed yet; ask again after sealed_after",
            },
        )),
        Err(e) => Err(ApiError::from_backend(&e, &info.request_id)),
    }
}

#[derive(Serialize)]
struct Keys {
    keys: Vec<PublishedKey>,
}

/// `GET /audit/keys` (public): the keys checkpoints are signed with, from the signer's
/// configuration (KMS on AWS), each with the window it signs in. Pin one by its fingerprint
/// (`key_id`), compared with the operator's published value; never trust it for being served here.
pub(super) async fn keys(info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let keys = api.keys.keys().await.map_err(|e| ApiError::from_backend(&e, &info.request_id))?;
    Ok(json(200, &Keys { keys }))
}
