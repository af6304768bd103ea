//! Log streams over HTTP (`audit:admin`), each route its own function: `POST`/`GET /audit/streams`,
//! `GET`/`PATCH`/`DELETE /audit/streams/{stream_id}`, `POST …/{stream_id}/secret` (rotate a
//! webhook's signing secret) and `POST …/{stream_id}/test`. Secrets go in, and come out once
//! (a webhook's signing secret, at creation and rotation); never otherwise.

use chrono::Utc;
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ApiError, AuditApi, RequestInfo, json, json_body, path_param};
use crate::auth::scopes::AUDIT_ADMIN;
use crate::domain::AuditLogEntry;
use crate::domain::time::format_timestamp;
use crate::store::StoreError;
use crate::streams::admin::{AdminError, Changed, StreamAdmin, overlap_of};
use crate::streams::destination::{CreateStream, Format, StreamFilter, Target, UpdateStream};
use crate::streams::store::{Failing, LastError, StoredStream};
use crate::streams::trail::RecordError;
use crate::streams::transport::external_id;

/// Largest accepted body: a stream's settings with its headers and filters.
const MAX_BODY_BYTES: usize = 32 * 1024;

/// A stream as the API shows it: settings, state and figures, never a secret.
#[derive(Serialize)]
pub struct StreamView<'a> {
    id: Uuid,
    name: &'a str,
    target: TargetView<'a>,
    format: Format,
    filter: &'a StreamFilter,
    paused: bool,
    /// `active`, `paused`, or `failing` (a delivery was given up on since the last success).
    status: &'static str,
    failing: Option<&'a Failing>,
    /// While a rotated-out signing secret still signs: until when.
    previous_secret_retires_at: Option<String>,
    created_at: String,
    updated_at: String,
    version: u64,
    figures: FiguresView<'a>,
}

#[derive(Serialize)]
struct FiguresView<'a> {
    delivered: u64,
    failed: u64,
    retried: u64,
    last_error: Option<&'a LastError>,
    last_delivered_at: Option<String>,
    /// Lag from write to delivery (upper bounds of the histogram's buckets).
    lag_ms: Lag,
}

/// A target's settings, and for EventBridge the external id its role's trust policy must require.
#[derive(Serialize)]
struct TargetView<'a> {
    #[serde(flatten)]
    target: &'a Target,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
}

#[derive(Serialize)]
struct Lag {
    p50: Option<u64>,
    p99: Option<u64>,
}

impl<'a> StreamView<'a> {
    pub fn of(stored: &'a StoredStream) -> Self {
        let (stream, figures) = (&stored.stream, &stored.figures);
        let status = match (stream.paused, &figures.failing) {
            (true, _) => "paused",
            (false, Some(_)) => "failing",
            (false, None) => "active",
        };
        StreamView {
            id: stream.id,
            name: &stream.name,
            target: TargetView {
                external_id: matches!(stream.target, Target::Eventbridge { .. })
                    .then(|| external_id(&stream.tenant_id)),
                target: &stream.target,
            },
            format: stream.format,
            filter: &stream.filter,
            paused: stream.paused,
            status,
            failing: figures.failing.as_ref(),
            previous_secret_retires_at: stream
                .previous_secret_retires_at
                .filter(|t| *t > Utc::now())
                .map(format_timestamp),
            created_at: format_timestamp(stream.created_at),
            updated_at: format_timestamp(stream.updated_at),
            version: stream.version,
            figures: FiguresView {
                delivered: figures.delivered,
                failed: figures.failed,
                retried: figures.retried,
                last_error: figures.last_error.as_ref(),
                last_delivered_at: figures.last_delivered_at.map(format_timestamp),
                lag_ms: Lag { p50: figures.lag_percentile(0.5), p99: figures.lag_percentile(0.99) },
            },
        }
    }
}

#[derive(Serialize)]
struct ChangedView<'a> {
    stream: StreamView<'a>,
    /// The webhook's signing secret: shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
    record: Option<&'a AuditLogEntry>,
}

impl<'a> ChangedView<'a> {
    fn of(changed: &'a Changed) -> Self {
        ChangedView {
            stream: StreamView::of(&changed.stream),
            secret: changed.secret.as_deref(),
            record: changed.record.as_ref(),
        }
    }
}

fn admin<'a>(api: &'a AuditApi, info: &RequestInfo) -> Result<&'a StreamAdmin, ApiError> {
    api.streams.as_deref().ok_or_else(|| {
        tracing::error!(request_id = %info.request_id, "no log streams configured for this function");
        ApiError::Internal
    })
}

fn stream_id(req: &Request) -> Result<Uuid, ApiError> {
    path_param(req, "stream_id")?.parse().map_err(|_| ApiError::InvalidParameter {
        parameter: "stream_id".into(),
        message: "stream_id must be a UUID".into(),
    })
}

fn failed(e: AdminError, request_id: &str) -> ApiError {
    let message = e.to_string();
    match e {
        AdminError::Invalid(invalid) => {
            ApiError::InvalidEntry { parameter: Some(invalid.field.clone()), message: invalid.message }
        }
        AdminError::NotFound => ApiError::NotFound,
        AdminError::Conflict(_) => ApiError::Conflict { code: "changed", message, parameter: Some("version".into()) },
        AdminError::Limit => ApiError::Conflict { code: "too_many_streams", message, parameter: None },
        AdminError::Backend(b) => ApiError::from_store(&StoreError::Backend(b), request_id),
        AdminError::Record(RecordError::Invalid(v)) => ApiError::entry_error(&v),
        AdminError::Record(RecordError::Backend(b)) => ApiError::from_store(&StoreError::Backend(b), request_id),
    }
}

const CREATE_SHAPE: &str = "{\"name\": text, \"target\": {\"type\": \"webhook\"|\"splunk_hec\"|\"datadog\"|\"eventbridge\", …}, \"format\": \"entry\"|\"ocsf\", \"filter\": {…}, \"paused\": bool}";

/// `POST /audit/streams`.
pub(super) async fn create(req: &Request, info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_ADMIN)?;
    let request: CreateStream = json_body(req, MAX_BODY_BYTES, CREATE_SHAPE)?;
    let changed = admin(api, info)?
        .create(&caller.tenant_id, request, &info.actor())
        .await
        .map_err(|e| failed(e, &info.request_id))?;
    Ok(json(201, &ChangedView::of(&changed)))
}

/// `GET /audit/streams`.
pub(super) async fn list(info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_ADMIN)?;
    let streams = admin(api, info)?.list(&caller.tenant_id).await.map_err(|e| failed(e, &info.request_id))?;
    #[derive(Serialize)]
    struct Listed<'a> {
        streams: Vec<StreamView<'a>>,
    }
    Ok(json(200, &Listed { streams: streams.iter().map(StreamView::of).collect() }))
}

/// `GET /audit/streams/{stream_id}`.
pub(super) async fn get(req: &Request, info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_ADMIN)?;
    let id = stream_id(req)?;
    let stream = admin(api, info)?.get(&caller.tenant_id, id).await.map_err(|e| failed(e, &info.request_id))?;
    Ok(json(200, &StreamView::of(&stream)))
}

/// `PATCH /audit/streams/{stream_id}`: the fields to change (`paused` pauses and resumes).
pub(super) async fn update(req: &Request, info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_ADMIN)?;
    let id = stream_id(req)?;
    let patch: UpdateStream = json_body(req, MAX_BODY_BYTES, "an object of the fields to change")?;
    let changed = admin(api, info)?
        .update(&caller.tenant_id, id, patch, &info.actor())
        .await
        .map_err(|e| failed(e, &info.request_id))?;
    Ok(json(200, &ChangedView::of(&changed)))
}

/// `DELETE /audit/streams/{stream_id}`.
pub(super) async fn delete(req: &Request, info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_ADMIN)?;
    let id = stream_id(req)?;
    let record = admin(api, info)?
        .delete(&caller.tenant_id, id, &info.actor())
        .await
        .map_err(|e| failed(e, &info.request_id))?;
    #[derive(Serialize)]
    struct Deleted<'a> {
        deleted: Uuid,
        record: &'a AuditLogEntry,
    }
    Ok(json(200, &Deleted { deleted: id, record: &record }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    /// How long the current secret keeps signing beside the new one (default a day, at most 7).
    overlap_seconds: Option<u64>,
}

/// `POST /audit/streams/{stream_id}/secret`: a new signing secret, shown once.
pub(super) async fn rotate(req: &Request, info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_ADMIN)?;
    let id = stream_id(req)?;
    let request: RotateRequest = if super::body_bytes(req).is_empty() {
        RotateRequest::default()
    } else {
        json_body(req, MAX_BODY_BYTES, "{\"overlap_seconds\": seconds} or nothing")?
    };
    let changed = admin(api, info)?
        .rotate(&caller.tenant_id, id, overlap_of(request.overlap_seconds), &info.actor())
        .await
        .map_err(|e| failed(e, &info.request_id))?;
    Ok(json(200, &ChangedView::of(&changed)))
}

/// `POST /audit/streams/{stream_id}/test`: a test event sent now; how the receiver took it.
pub(super) async fn test(req: &Request, info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_ADMIN)?;
    let id = stream_id(req)?;
    let result =
        admin(api, info)?.test(&caller.tenant_id, id, &info.actor()).await.map_err(|e| failed(e, &info.request_id))?;
    Ok(json(200, &result))
}
