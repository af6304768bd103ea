//! `GET /audit/export`: the list route's filters (plus `entity_id` or `project_id`) in JSON lines,
//! CSV or OCSF, newest first, in pages bounded by bytes; `x-next-token` continues. Every export is
//! itself on the record: its first page writes a VIEW entry (who, filters, format, entries).

use lambda_http::{Body, Request, Response};
use uuid::Uuid;

use super::access::record_export;
use super::{ApiError, AuditApi, RequestInfo, query_param};
use crate::auth::scopes::AUDIT_READ;
use crate::domain::query::PAGE_BYTE_BUDGET;
use crate::domain::{AuditQuery, Continuation, MAX_LIMIT, PageRequest, QueryScope};
use crate::export::ExportFormat;

/// Entries one export page carries at most (its bytes are bounded by [`PAGE_BYTE_BUDGET`] too).
pub const MAX_EXPORT_PAGE_ENTRIES: usize = 10_000;
/// The header that carries the token of the next page; absent on the last.
pub const NEXT_TOKEN_HEADER: &str = "x-next-token";
/// The header that says how many entries the page holds.
pub const ENTRY_COUNT_HEADER: &str = "x-entry-count";

/// The export's query: the list filters, one scope (an entity's entries, narrowed to a project
/// when both are given), and pages read as large as the store allows.
fn export_query(req: &Request) -> Result<AuditQuery, ApiError> {
    let (entity, project) = (query_param(req, "entity_id"), query_param(req, "project_id"));
    let scope = match (entity, project) {
        (Some(entity), _) => QueryScope::Entity(entity.to_owned()),
        (None, Some(project)) => QueryScope::Project(project.to_owned()),
        (None, None) => QueryScope::Tenant,
    };
    let mut query = AuditQuery::from_params(scope, |name| match name {
        "limit" | "offset" => None,
        other => query_param(req, other),
    })
    .map_err(|e| ApiError::parameter_error(&e))?;
    if entity.is_some() {
        query.filter.project_id = project.map(str::to_owned);
    }
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
