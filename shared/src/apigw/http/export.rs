//! `GET /audit/export`: the list route's filters (plus `entity_id` or `project_id`) in JSON lines,
//! CSV or OCSF, newest first, in pages bounded by bytes; `x-next-token` continues. Every export is
//! itself on the record: its first page writes a VIEW entry (who, filters, format, entries).

use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{ApiError, AuditApi, RequestInfo};
use crate::auth::Caller;
use crate::auth::scopes::AUDIT_READ;
use crate::domain::query::PAGE_BYTE_BUDGET;
use crate::domain::{
    AuditAction, AuditQuery, Continuation, EntityType, EntryDetails, MAX_LIMIT, NewEntry, PageRequest, QueryScope,
};
use crate::export::ExportFormat;

/// Entries one export page carries at most (its bytes are bounded by [`PAGE_BYTE_BUDGET`] too).
pub const MAX_EXPORT_PAGE_ENTRIES: usize = 10_000;
/// The header that carries the token of the next page; absent on the last.
pub const NEXT_TOKEN_HEADER: &str = "x-next-token";
/// The header that says how many entries the page holds.
pub const ENTRY_COUNT_HEADER: &str = "x-entry-count";
/// What an export's VIEW entry names as its entity.
pub const EXPORT_ENTITY: (EntityType, &str) = (EntityType::Report, "audit-log");

fn query_param<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.query_string_parameters_ref().and_then(|q| q.first(name)).filter(|v| !v.is_empty())
}

/// The export's query: the list filters, one scope, and pages read as large as the store allows.
fn export_query(req: &Request) -> Result<AuditQuery, ApiError> {
    let scope = match (query_param(req, "entity_id"), query_param(req, "project_id")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidParameter {
                parameter: "project_id".into(),
                message: "give entity_id or project_id, not both".into(),
            });
        }
        (Some(entity), None) => QueryScope::Entity(entity.to_owned()),
        (None, Some(project)) => QueryScope::Project(project.to_owned()),
        (None, None) => QueryScope::Tenant,
    };
    let mut query = AuditQuery::from_params(scope, |name| match name {
        "limit" | "offset" => None,
        other => query_param(req, other),
    })
    .map_err(|e| ApiError::parameter_error(&e))?;
    query.page = PageRequest { next_token: query.page.next_token.take(), ..PageRequest::first(MAX_LIMIT) };
    Ok(query)
}

pub(super) async fn export(req: &Request, info: &RequestInfo, api: &AuditApi) -> Result<Response<Body>, ApiError> {
    let caller = info.caller_with(AUDIT_READ)?;
    let format = query_param(req, "format")
        .map(ExportFormat::parse)
        .transpose()
        .map_err(|e| ApiError::parameter_error(&e))?
        .unwrap_or_default();
    let mut query = export_query(req)?;
    let first_page = query.page.next_token.is_none();
    let plan = query.plan(&caller.tenant_id).map_err(|e| ApiError::parameter_error(&e))?;

    let mut body = if first_page { format.header().unwrap_or_default() } else { String::new() };
    let mut count = 0;
    let mut last: Option<Uuid> = None;
    let mut next_token = None;
    'pages: loop {
        let page = api
            .logger
            .get_logs(&caller.tenant_id, &query)
            .await
            .map_err(|e| ApiError::from_query(&e, &info.request_id))?;
        for entry in &page.entries {
            let line = format.line(entry);
            let full = body.len() + line.len() > PAGE_BYTE_BUDGET || count == MAX_EXPORT_PAGE_ENTRIES;
            if let (true, Some(after)) = (full, last) {
                next_token = Some(plan.next_token(Continuation { after, skip: 0 }));
                break 'pages;
            }
            body.push_str(&line);
            count += 1;
            last = Some(entry.id);
        }
        match page.next_token {
            Some(token) => query.page.next_token = Some(token),
            None => break,
        }
    }
    if first_page {
        record_export(api, caller, info, &query, format, count, next_token.is_none()).await?;
    }
    let mut response = Response::builder()
        .status(200)
        .header("content-type", format.content_type())
        .header("cache-control", "no-store")
        .header(ENTRY_COUNT_HEADER, count);
    if let Some(token) = &next_token {
        response = response.header(NEXT_TOKEN_HEADER, token.as_str());
    }
    Ok(response.body(Body::Text(body)).expect("status and headers are valid"))
}

/// The export's own entry. Written before the data leaves: an export that cannot be recorded is
/// refused (503), so the trail always knows who took data out.
async fn record_export(
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
    let (entity_type, entity_id) = EXPORT_ENTITY;
    let entry = NewEntry {
        tenant_id: caller.tenant_id.clone(),
        action: AuditAction::View,
        entity_type,
        entity_id: entity_id.to_owned(),
        details: EntryDetails {
            project_id: None,
            user_id: caller.user_id.clone(),
            changes: None,
            ip_address: info.source_ip.clone(),
            metadata: Some(json!({
                "operation": "export",
                "format": format.name(),
                "filters": filters,
                "entries_returned": entries,
                "complete": complete,
            })),
        },
    };
    api.logger.log(entry).await.map(|_| ()).map_err(|e| ApiError::from_query(&e, &info.request_id))
}
