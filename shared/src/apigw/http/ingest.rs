//! `POST /audit/logs`: one entry (a JSON object) or a batch (a JSON array). The server sets id and
//! timestamp, takes tenant and user from the credentials and the client IP from the request context.
//! In a batch each entry is stored or rejected on its own and the answer has one result per entry,
//! in order. An `Idempotency-Key` makes a retried POST answer with the first result.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::errors::ErrorBody;
use super::{ApiError, AuditApi, RequestInfo, body_bytes, json};
use crate::auth::Caller;
use crate::auth::scopes::AUDIT_WRITE;
use crate::domain::{AuditAction, AuditLogEntry, EntityType, EntryDetails, NewEntry, TenantId, ValidationError};
use crate::idempotency::{self, Claim, KeyOwner, StoredResponse};
use crate::{AuditError, LogOutcome};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most entries in one batch.
pub const MAX_BATCH: usize = 100;

/// Fields a client may send.
const CLIENT_FIELDS: [&str; 6] = ["action", "entity_type", "entity_id", "project_id", "changes", "metadata"];
/// Fields the server sets, and where from.
const SERVER_FIELDS: [(&str, &str); 6] = [
    ("id", "the server"),
    ("timestamp", "the server"),
    ("expires_at", "the retention setting"),
    ("tenant_id", "your credentials"),
    ("user_id", "your credentials; name other actors in metadata"),
    ("ip_address", "the request"),
];

/// What happened to one entry.
#[derive(Debug, Serialize)]
struct ItemResult {
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry: Option<AuditLogEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

impl ItemResult {
    fn of(result: Result<Option<AuditLogEntry>, ApiError>, request_id: &str) -> Self {
        match result {
            Ok(Some(entry)) => ItemResult { status: 201, entry: Some(entry), error: None },
            Ok(None) => ItemResult { status: 202, entry: None, error: None },
            Err(e) => ItemResult { status: e.status(), entry: None, error: Some(e.body(request_id)) },
        }
    }

    fn stored(&self) -> bool {
        self.entry.is_some()
    }

    fn retryable(&self) -> bool {
        self.status == 429 || self.status >= 500
    }
}

#[derive(Serialize)]
struct BatchItem<'a> {
    index: usize,
    #[serde(flatten)]
    result: &'a ItemResult,
}

#[derive(Serialize)]
struct BatchBody<'a> {
    results: Vec<BatchItem<'a>>,
    stored: usize,
    rejected: usize,
}

#[derive(Serialize)]
struct DisabledBody {
    status: &'static str,
    message: &'static str,
}

const DISABLED: DisabledBody =
    DisabledBody { status: "disabled", message: "audit logging is disabled (AUDIT_ENABLED=false); nothing was stored" };

pub(super) async fn ingest(req: &Request, info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_WRITE)?;
    let body = body_bytes(req);
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge { max: MAX_BODY_BYTES });
    }
    let key = req.headers().get("idempotency-key").map(|v| v.to_str().unwrap_or("\u{0}").trim().to_owned());
    let Some(key) = key else {
        let (response, _) = process(body, caller, info, api, None).await?;
        return Ok(response);
    };
    idempotency::check_key(&key).map_err(|e| ApiError::parameter_error(&e))?;
    let hash = idempotency::request_hash(body);
    let owner = KeyOwner { tenant: &caller.tenant_id, principal: caller.user_id.as_deref().unwrap_or("") };
    let claim = api
        .idempotency
        .claim(owner, &key, &hash, api.logger.now())
        .await
        .map_err(|e| ApiError::from_backend(&e, &info.request_id))?;
    match claim {
        Claim::Completed(first) => replay(first, &caller.tenant_id, api, info).await,
        Claim::InProgress => Err(ApiError::IdempotencyInProgress),
        Claim::Mismatch => Err(ApiError::IdempotencyKeyReused),
        Claim::Claimed { stamped_at } => {
            let once = Once { at: stamped_at, identity: owner.identity(&key) };
            let outcome = process(body, caller, info, api, Some(&once)).await;
            let finished = match &outcome {
                // Something failed that a retry may do: let the retry run again. What this attempt
                // stored keeps its derived id, so the retry finds it instead of storing it twice.
                Ok((_, Progress { retryable: true })) | Err(_) => None,
                Ok((response, _)) => Some(response),
            };
            let recorded = match finished {
                None => api.idempotency.release(owner, &key).await,
                Some(response) => {
                    let first = stored_response(response);
                    api.idempotency.complete(owner, &key, &first, api.logger.now()).await
                }
            };
            if let Err(e) = recorded {
                tracing::error!(request_id = info.request_id, error = %e, "idempotency record not updated");
            }
            outcome.map(|(response, _)| response)
        }
    }
}

/// How a keyed request stamps its entries: at the claim's time, with ids derived from the key (so
/// a retry of a request cut off half-way cannot store an entry twice).
struct Once {
    at: DateTime<Utc>,
    identity: Vec<u8>,
}

/// What a request achieved, for the idempotency record.
struct Progress {
    /// Some part failed in a way a retry may fix.
    retryable: bool,
}

async fn process(
    body: &[u8],
    caller: &Caller,
    info: &RequestInfo,
    api: &AuditApi,
    once: Option<&Once>,
) -> Result<(Response<Body>, Progress), ApiError> {
    let parsed: Value = serde_json::from_slice(body).map_err(|e| ApiError::InvalidEntry {
        parameter: None,
        message: format!("the body is not valid JSON (line {}, column {})", e.line(), e.column()),
    })?;
    match parsed {
        Value::Object(item) => {
            let result = store_one(Value::Object(item), 0, caller, info, api, once).await;
            let progress = Progress { retryable: result.as_ref().is_err_and(|e| e.retry_after().is_some()) };
            let response = match result {
                Ok(Some(entry)) => json(201, &entry),
                Ok(None) => json(202, &DISABLED),
                Err(e) => e.into_response(&info.request_id),
            };
            Ok((response, progress))
        }
        Value::Array(items) if !items.is_empty() && items.len() <= MAX_BATCH => {
            // A batch is an array of objects; what is in each object is judged entry by entry.
            if let Some(i) = items.iter().position(|item| !item.is_object()) {
                return Err(ApiError::InvalidEntry {
                    parameter: None,
                    message: format!(
                        "entry {i} of the batch is not a JSON object; a batch is an array of entry objects"
                    ),
                });
            }
            let results = store_all(items, caller, info, api, once).await;
            let stored = results.iter().filter(|r| r.stored()).count();
            let retryable = results.iter().any(ItemResult::retryable);
            let status = if stored == results.len() { 201 } else { 207 };
            let body = BatchBody {
                results: results.iter().enumerate().map(|(index, result)| BatchItem { index, result }).collect(),
                stored,
                rejected: results.len() - stored,
            };
            let mut response = json(status, &body);
            if retryable {
                response.headers_mut().insert("retry-after", 1.into());
            }
            Ok((response, Progress { retryable }))
        }
        _ => Err(ApiError::InvalidEntry {
            parameter: None,
            message: format!("the body must be an entry object or an array of 1 to {MAX_BATCH} entry objects"),
        }),
    }
}

/// Validates and stores one entry, the `position`th of its request: `Ok(None)` when logging is
/// disabled.
async fn store_one(
    item: Value,
    position: u16,
    caller: &Caller,
    info: &RequestInfo,
    api: &AuditApi,
    once: Option<&Once>,
) -> Result<Option<AuditLogEntry>, ApiError> {
    let entry = new_entry(item, caller, info)?;
    let logged = match once {
        Some(once) => api.logger.log_once(entry, once.at, position, &once.identity).await,
        None => api.logger.log(entry).await,
    };
    logged_outcome(logged, info)
}

/// Validates a batch's items and stores the valid ones together (one write where the store
/// can), answering each item's result in order.
async fn store_all(
    items: Vec<Value>,
    caller: &Caller,
    info: &RequestInfo,
    api: &AuditApi,
    once: Option<&Once>,
) -> Vec<ItemResult> {
    let mut results: Vec<Option<ItemResult>> = Vec::with_capacity(items.len());
    let mut valid = Vec::with_capacity(items.len());
    for (item, position) in items.into_iter().zip(0u16..) {
        match new_entry(item, caller, info) {
            Ok(entry) => {
                valid.push((position, entry));
                results.push(None);
            }
            Err(e) => results.push(Some(ItemResult::of(Err(e), &info.request_id))),
        }
    }
    let logged = api.logger.log_all(valid, once.map(|o| (o.at, o.identity.as_slice()))).await;
    let mut logged = logged.into_iter();
    results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| {
                let outcome =
                    logged.next().map_or_else(|| Err(ApiError::Internal), |logged| logged_outcome(logged, info));
                ItemResult::of(outcome, &info.request_id)
            })
        })
        .collect()
}

/// An entry's outcome as the API answers it: `Ok(None)` when logging is disabled.
fn logged_outcome(
    logged: Result<LogOutcome, AuditError>,
    info: &RequestInfo,
) -> Result<Option<AuditLogEntry>, ApiError> {
    match logged {
        Ok(LogOutcome::Stored(entry)) => Ok(Some(entry)),
        Ok(LogOutcome::Disabled) => Ok(None),
        Err(AuditError::Invalid(e)) => Err(ApiError::entry_error(&e)),
        Err(AuditError::Store(e)) => Err(ApiError::from_store(&e, &info.request_id)),
    }
}

fn string_field(item: &mut Map<String, Value>, field: &'static str) -> Result<Option<String>, ApiError> {
    match item.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::entry_error(&ValidationError::NotAString { field })),
    }
}

fn required(value: Option<String>, field: &'static str) -> Result<String, ApiError> {
    value.ok_or_else(|| ApiError::entry_error(&ValidationError::Missing { field }))
}

/// An entry request from one JSON object, with the server-owned fields filled in.
fn new_entry(item: Value, caller: &Caller, info: &RequestInfo) -> Result<NewEntry, ApiError> {
    let Value::Object(mut item) = item else {
        return Err(ApiError::InvalidEntry { parameter: None, message: "each entry must be a JSON object".into() });
    };
    if let Some((field, source)) = SERVER_FIELDS.iter().find(|(f, _)| item.contains_key(*f)) {
        return Err(ApiError::InvalidEntry {
            parameter: Some((*field).to_owned()),
            message: format!("{field} is set from {source}, not by the client"),
        });
    }
    if let Some(unknown) = item.keys().find(|k| !CLIENT_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::InvalidEntry {
            parameter: Some(unknown.clone()),
            message: format!("{unknown} is not a field of an audit entry"),
        });
    }
    let action = required(string_field(&mut item, "action")?, "action")?;
    let entity_type = required(string_field(&mut item, "entity_type")?, "entity_type")?;
    let entity_id = required(string_field(&mut item, "entity_id")?, "entity_id")?;
    let project_id = string_field(&mut item, "project_id")?;
    let parse_error = |e: ValidationError| ApiError::entry_error(&e);
    let action: AuditAction = action.parse().map_err(parse_error)?;
    let entity_type: EntityType = entity_type.parse().map_err(parse_error)?;
    if entity_type.is_service_record() {
        return Err(ApiError::InvalidEntry {
            parameter: Some("entity_type".into()),
            message: format!("{entity_type} entries are the service's own records; they cannot be written here"),
        });
    }
    Ok(NewEntry {
        tenant_id: caller.tenant_id.clone(),
        action,
        entity_type,
        entity_id,
        details: EntryDetails {
            project_id,
            user_id: caller.user_id.clone(),
            changes: item.remove("changes").filter(|v| !v.is_null()),
            ip_address: info.source_ip.clone(),
            metadata: item.remove("metadata").filter(|v| !v.is_null()),
        },
    })
}

/// The record of a first response, its entries cut to their ids: the idempotency table holds no
/// entry values (an erasure could not reach them there), and a replay reads the entries again.
fn stored_response(response: &Response<Body>) -> StoredResponse {
    let status = response.status().as_u16();
    let body = match response.body() {
        Body::Text(t) => t.clone(),
        _ => String::new(),
    };
    let mut value: Value = match serde_json::from_str(&body) {
        Ok(value) => value,
        Err(_) => return StoredResponse { status, body },
    };
    for entry in replayed_entries(&mut value) {
        *entry = serde_json::json!({ "id": entry.get("id").cloned().unwrap_or(Value::Null) });
    }
    StoredResponse { status, body: value.to_string() }
}

/// The entries of a write's answer: the body itself (one entry), or each result's `entry`.
fn replayed_entries(body: &mut Value) -> Vec<&mut Value> {
    if body.get("results").is_some_and(Value::is_array) {
        return body["results"].as_array_mut().into_iter().flatten().filter_map(|r| r.get_mut("entry")).collect();
    }
    if body.get("id").is_some() && body.get("error").is_none() { vec![body] } else { vec![] }
}

/// Entries read again at once by a replay.
const REPLAY_READS_AT_ONCE: usize = 16;

/// The first answer again, each entry as it is now (an erased field stays erased in a replay).
async fn replay(
    first: StoredResponse,
    tenant: &TenantId,
    api: &AuditApi,
    info: &RequestInfo,
) -> Result<Response<Body>, ApiError> {
    let mut body: Value = serde_json::from_str(&first.body).unwrap_or(Value::Null);
    let ids: Vec<Option<Uuid>> = replayed_entries(&mut body)
        .iter()
        .map(|e| e.get("id").and_then(Value::as_str).and_then(|id| id.parse().ok()))
        .collect();
    let reads: Vec<_> = ids
        .iter()
        .map(|id| async move {
            match id {
                Some(id) => {
                    api.logger.get_log(tenant, *id).await.map_err(|e| ApiError::from_query(&e, &info.request_id))
                }
                None => Ok(None),
            }
        })
        .collect();
    let read: Vec<Result<Option<AuditLogEntry>, ApiError>> =
        futures::stream::iter(reads).buffered(REPLAY_READS_AT_ONCE).collect().await;
    for (slot, now) in replayed_entries(&mut body).into_iter().zip(read) {
        // Expired since (retention shorter than a day): the id is what remains.
        if let Some(entry) = now? {
            *slot = serde_json::to_value(entry).expect("an entry serialises");
        }
    }
    Ok(Response::builder()
        .status(first.status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .header("idempotent-replayed", "true")
        .body(Body::Text(if body.is_null() { first.body } else { body.to_string() }))
        .expect("status and headers are valid"))
}
