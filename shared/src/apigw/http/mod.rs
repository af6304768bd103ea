//! The HTTP API: one handler per route, each a plain async function of (request, [`AuditApi`]).
//! Each route is its own Lambda function (see `functions/`); the local gateway routes to the same
//! handlers.

pub mod access;
mod erasure;
pub mod errors;
pub mod export;
mod ingest;
mod integrity;
mod reads;
mod settings;
pub mod streams;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

pub use self::errors::ApiError;
pub use self::ingest::{MAX_BATCH, MAX_BODY_BYTES};
use super::authorizer::AuthorizerContext;
use crate::AuditLogger;
use crate::auth::Caller;
use crate::auth::{extract, scopes};
use crate::idempotency::IdempotencyStore;
use crate::integrity::note::CosignerKey;
use crate::seal::{KeySource, SealSettings, SealStore};

/// What the handlers need, built once per cold start.
#[derive(Clone)]
pub struct AuditApi {
    pub logger: Arc<AuditLogger>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Health checks give storage this long before reporting it degraded.
    pub health_timeout: Duration,
    /// Accepted authentication methods, reported by the health check.
    pub auth_methods: Vec<String>,
    /// Checkpoints, proof tiles, witnesses' status.
    pub seal: Arc<dyn SealStore>,
    pub seal_settings: SealSettings,
    /// The seal's public keys: from the signer's configuration, never from a table.
    pub keys: Arc<dyn KeySource>,
    /// The witnesses the seal submits to: their URLs (for the health check) and keys (only their
    /// cosignatures are shown).
    pub witnesses: Vec<(String, CosignerKey)>,
    /// `AUDIT_LOG_READS`: every read of the trail writes a VIEW entry (see [`access`]).
    pub log_reads: bool,
    /// Log streams, for the functions that manage them (and the health check's figure).
    pub streams: Option<Arc<crate::streams::admin::StreamAdmin>>,
}

/// The routes of the HTTP API. The seed's endpoint tables, plus the write path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    ListLogs,
    GetLog,
    EntityLogs,
    ProjectLogs,
    Stats,
    Health,
    Ingest,
    Checkpoints,
    LatestCheckpoint,
    PeriodLeaves,
    Proof,
    Keys,
    Export,
    Erase,
    EraseSubject,
    Settings,
    UpdateSettings,
    PlaceHold,
    ReleaseHold,
    CreateStream,
    ListStreams,
    GetStream,
    UpdateStream,
    DeleteStream,
    RotateStreamSecret,
    TestStream,
}

impl Route {
    pub const ALL: [Route; 26] = [
        Route::ListLogs,
        Route::GetLog,
        Route::EntityLogs,
        Route::ProjectLogs,
        Route::Stats,
        Route::Health,
        Route::Ingest,
        Route::Checkpoints,
        Route::LatestCheckpoint,
        Route::PeriodLeaves,
        Route::Proof,
        Route::Keys,
        Route::Export,
        Route::Erase,
        Route::EraseSubject,
        Route::Settings,
        Route::UpdateSettings,
        Route::PlaceHold,
        Route::ReleaseHold,
        Route::CreateStream,
        Route::ListStreams,
        Route::GetStream,
        Route::UpdateStream,
        Route::DeleteStream,
        Route::RotateStreamSecret,
        Route::TestStream,
    ];

    /// The API Gateway route key.
    pub fn route_key(self) -> &'static str {
        match self {
            Route::ListLogs => "GET /audit/logs",
            Route::GetLog => "GET /audit/logs/{id}",
            Route::EntityLogs => "GET /audit/logs/entity/{entity_id}",
            Route::ProjectLogs => "GET /audit/logs/project/{project_id}",
            Route::Stats => "GET /audit/stats",
            Route::Health => "GET /audit/health",
            Route::Ingest => "POST /audit/logs",
            Route::Checkpoints => "GET /audit/checkpoints",
            Route::LatestCheckpoint => "GET /audit/checkpoints/latest",
            Route::PeriodLeaves => "GET /audit/checkpoints/leaves",
            Route::Proof => "GET /audit/logs/{id}/proof",
            Route::Keys => "GET /audit/keys",
            Route::Export => "GET /audit/export",
            Route::Erase => "POST /audit/logs/{id}/erasure",
            Route::EraseSubject => "POST /audit/erasures",
            Route::Settings => "GET /audit/settings",
            Route::UpdateSettings => "PUT /audit/settings",
            Route::PlaceHold => "POST /audit/settings/holds",
            Route::ReleaseHold => "DELETE /audit/settings/holds/{hold_id}",
            Route::CreateStream => "POST /audit/streams",
            Route::ListStreams => "GET /audit/streams",
            Route::GetStream => "GET /audit/streams/{stream_id}",
            Route::UpdateStream => "PATCH /audit/streams/{stream_id}",
            Route::DeleteStream => "DELETE /audit/streams/{stream_id}",
            Route::RotateStreamSecret => "POST /audit/streams/{stream_id}/secret",
            Route::TestStream => "POST /audit/streams/{stream_id}/test",
        }
    }

    /// The Lambda function (binary) that serves the route.
    pub fn function(self) -> &'static str {
        match self {
            Route::ListLogs => "list-logs",
            Route::GetLog => "get-log",
            Route::EntityLogs => "entity-logs",
            Route::ProjectLogs => "project-logs",
            Route::Stats => "stats",
            Route::Health => "health",
            Route::Ingest => "ingest",
            Route::Checkpoints => "list-checkpoints",
            Route::LatestCheckpoint => "latest-checkpoint",
            Route::PeriodLeaves => "checkpoint-leaves",
            Route::Proof => "get-proof",
            Route::Keys => "list-keys",
            Route::Export => "export",
            Route::Erase => "erase",
            Route::EraseSubject => "erase-subject",
            Route::Settings => "get-settings",
            Route::UpdateSettings => "put-settings",
            Route::PlaceHold => "place-hold",
            Route::ReleaseHold => "release-hold",
            Route::CreateStream => "create-stream",
            Route::ListStreams => "list-streams",
            Route::GetStream => "get-stream",
            Route::UpdateStream => "update-stream",
            Route::DeleteStream => "delete-stream",
            Route::RotateStreamSecret => "rotate-stream-secret",
            Route::TestStream => "test-stream",
        }
    }

    /// The query parameters the route accepts; any other is refused.
    pub fn query_parameters(self) -> &'static [&'static str] {
        match self {
            Route::ListLogs | Route::EntityLogs | Route::ProjectLogs => {
                &["action", "entity_type", "user_id", "start_date", "end_date", "limit", "offset", "next_token"]
            }
            Route::Stats => &["start_date", "end_date", "bucket"],
            Route::Checkpoints => &["start_date", "end_date", "limit", "next_token"],
            Route::LatestCheckpoint => &["format"],
            Route::PeriodLeaves => &["end"],
            Route::Export => &[
                "format",
                "action",
                "entity_type",
                "user_id",
                "entity_id",
                "project_id",
                "start_date",
                "end_date",
                "next_token",
            ],
            Route::GetLog
            | Route::Health
            | Route::Ingest
            | Route::Proof
            | Route::Keys
            | Route::Erase
            | Route::EraseSubject
            | Route::Settings
            | Route::UpdateSettings
            | Route::PlaceHold
            | Route::CreateStream
            | Route::ListStreams
            | Route::GetStream
            | Route::UpdateStream
            | Route::DeleteStream
            | Route::RotateStreamSecret
            | Route::TestStream => &[],
            // Going on with the release's sweep from where it stopped.
            Route::ReleaseHold => &["next_token"],
        }
    }

    /// The routes that manage log streams.
    pub fn manages_streams(self) -> bool {
        matches!(
            self,
            Route::CreateStream
                | Route::ListStreams
                | Route::GetStream
                | Route::UpdateStream
                | Route::DeleteStream
                | Route::RotateStreamSecret
                | Route::TestStream
        )
    }

    /// The scope a caller needs; `None` for the public health check.
    pub fn required_scope(self) -> Option<&'static str> {
        scopes::required_for_route(self.route_key()).flatten()
    }

    /// The route and path parameters for a method and path (for the local gateway).
    pub fn resolve(method: &str, path: &str) -> Option<(Route, Vec<(&'static str, String)>)> {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        Route::ALL.into_iter().find_map(|route| {
            let (route_method, template) = route.route_key().split_once(' ')?;
            let pattern: Vec<&'static str> = template.split('/').skip(1).collect();
            if route_method != method || pattern.len() != segments.len() {
                return None;
            }
            let mut params = Vec::new();
            for (want, got) in pattern.iter().zip(&segments) {
                match want.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
                    Some(name) if !got.is_empty() => params.push((name, (*got).to_owned())),
                    Some(_) => return None,
                    None if want == got => {}
                    None => return None,
                }
            }
            Some((route, params))
        })
    }

    /// The methods some route takes at `path`: what a 405 for another method names in `Allow`.
    pub fn methods_at(path: &str) -> Vec<&'static str> {
        let mut methods: Vec<&'static str> = Route::ALL
            .into_iter()
            .filter_map(|route| route.route_key().split_once(' ').map(|(m, _)| m))
            .filter(|m| Route::resolve(m, path).is_some())
            .collect();
        methods.sort_unstable();
        methods.dedup();
        methods
    }
}

/// What a handler reads from the API Gateway request context.
pub(crate) struct RequestInfo {
    pub request_id: String,
    pub caller: Option<Caller>,
    pub source_ip: Option<String>,
}

impl RequestInfo {
    fn of(req: &Request) -> Self {
        match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => RequestInfo {
                request_id: ctx.request_id.clone().unwrap_or_default(),
                caller: ctx.authorizer.as_ref().and_then(|a| {
                    let fields = serde_json::Map::from_iter(a.fields.clone());
                    serde_json::from_value::<AuthorizerContext>(fields.into()).ok()?.caller()
                }),
                source_ip: ctx.http.source_ip.clone(),
            },
            _ => RequestInfo { request_id: String::new(), caller: None, source_ip: None },
        }
    }

    /// Who is calling, from where, as the records of their changes name them.
    pub fn actor(&self) -> crate::logger::Actor {
        crate::logger::Actor {
            user_id: self.caller.as_ref().and_then(|c| c.user_id.clone()),
            ip_address: self.source_ip.clone(),
        }
    }

    /// The caller, if it holds `scope` (checked again here although the authorizer already did).
    pub fn caller_with(&self, scope: &'static str) -> Result<&Caller, ApiError> {
        let caller = self.caller.as_ref().ok_or(ApiError::Unauthenticated)?;
        if caller.has_scope(scope) { Ok(caller) } else { Err(ApiError::Forbidden { scope }) }
    }
}

/// A query parameter's value; an empty one counts as absent.
pub(super) fn query_param<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.query_string_parameters_ref().and_then(|q| q.first(name)).filter(|v| !v.is_empty())
}

/// A path parameter; a route without it is one this service does not have.
pub(super) fn path_param<'r>(req: &'r Request, name: &'static str) -> Result<&'r str, ApiError> {
    req.path_parameters_ref().and_then(|p| p.first(name)).filter(|v| !v.is_empty()).ok_or(ApiError::NotFound)
}

/// The `{id}` of an entry's route.
pub(super) fn entry_id(req: &Request) -> Result<uuid::Uuid, ApiError> {
    path_param(req, "id")?
        .parse()
        .map_err(|_| ApiError::parameter_error(&crate::domain::ValidationError::InvalidUuid { field: "id" }))
}

/// The request body's bytes.
pub(super) fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

/// The body read as `T` (at most `max` bytes); a body of another shape is a 400 that shows `shape`.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(req: &Request, max: usize, shape: &str) -> Result<T, ApiError> {
    let bytes = body_bytes(req);
    if bytes.len() > max {
        return Err(ApiError::PayloadTooLarge { max });
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::InvalidEntry { parameter: None, message: format!("the body must be {shape}: {e}") })
}

/// A JSON response.
pub(crate) fn json(status: u16, body: &impl Serialize) -> Response<Body> {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Body::Text(text))
        .expect("status and headers are valid")
}

/// Refuses query parameters the route does not know: a typo (`acton=DELETE`) must not silently
/// widen a query. Credentials get their own answer: the HTTP API reads them from headers only.
fn only_known_parameters(req: &Request, known: &[&str]) -> Result<(), ApiError> {
    let Some(query) = req.query_string_parameters_ref() else {
        return Ok(());
    };
    match query.iter().map(|(name, _)| name).find(|name| !known.contains(name)) {
        Some(credential) if extract::QUERY_CREDENTIALS.contains(&credential) => Err(ApiError::InvalidParameter {
            parameter: credential.to_owned(),
            message: format!(
                "{credential} is not accepted in the query string, where URLs are logged; send Authorization: Bearer <token> or X-API-Key"
            ),
        }),
        Some(unknown) => Err(ApiError::InvalidParameter {
            parameter: unknown.to_owned(),
            message: if known.is_empty() {
                format!("{unknown} is not a parameter of this route; it takes none")
            } else {
                format!("{unknown} is not a parameter of this route; known: {}", known.join(", "))
            },
        }),
        // An empty value is refused rather than taken as absent: a form that sends every field
        // should leave out the empty ones, and the document declares none as empty.
        None => match query.iter().find(|(_, value)| value.is_empty()) {
            Some((name, _)) => Err(ApiError::InvalidParameter {
                parameter: name.to_owned(),
                message: format!("{name} is empty: leave it out, or give it a value"),
            }),
            None => Ok(()),
        },
    }
}

/// Serves one request of `route`. Never fails: every error becomes its HTTP response.
pub async fn handle(route: Route, req: Request, api: &AuditApi) -> Response<Body> {
    let info = RequestInfo::of(&req);
    if let Err(e) = only_known_parameters(&req, route.query_parameters()) {
        return e.into_response(&info.request_id);
    }
    let result = match route {
        Route::ListLogs | Route::EntityLogs | Route::ProjectLogs => reads::list(route, &req, &info, api).await,
        Route::GetLog => reads::get(&req, &info, api).await,
        Route::Stats => reads::stats(&req, &info, api).await,
        Route::Health => Ok(reads::health(&info, api).await),
        Route::Ingest => ingest::ingest(&req, &info, api).await,
        Route::Checkpoints => integrity::checkpoints(&req, &info, api).await,
        Route::LatestCheckpoint => integrity::latest(&req, &info, api).await,
        Route::PeriodLeaves => integrity::leaves(&req, &info, api).await,
        Route::Proof => integrity::proof(&req, &info, api).await,
        Route::Keys => integrity::keys(&info, api).await,
        Route::Export => export::export(&req, &info, api).await,
        Route::Erase => erasure::erase(&req, &info, api).await,
        Route::EraseSubject => erasure::erase_subject(&req, &info, api).await,
        Route::Settings => settings::get(&info, api).await,
        Route::UpdateSettings => settings::put(&req, &info, api).await,
        Route::PlaceHold => settings::place_hold(&req, &info, api).await,
        Route::ReleaseHold => settings::release_hold(&req, &info, api).await,
        Route::CreateStream => streams::create(&req, &info, api).await,
        Route::ListStreams => streams::list(&info, api).await,
        Route::GetStream => streams::get(&req, &info, api).await,
        Route::UpdateStream => streams::update(&req, &info, api).await,
        Route::DeleteStream => streams::delete(&req, &info, api).await,
        Route::RotateStreamSecret => streams::rotate(&req, &info, api).await,
        Route::TestStream => streams::test(&req, &info, api).await,
    };
    // Recorded after the read succeeded and before its answer leaves: if the record cannot be
    // written, the data does not go out.
    let result = match result {
        Ok(response) if api.log_reads && route.reads_the_trail() && response.status().is_success() => {
            access::record_read(route, &req, &info, api, api.logger.now()).await.map(|()| response)
        }
        other => other,
    };
    result.unwrap_or_else(|e| e.into_response(&info.request_id))
}

/// The Lambda entry point of one route's function.
pub async fn run(route: Route, api: AuditApi) -> Result<(), lambda_http::Error> {
    let api = &api;
    lambda_http::run(lambda_http::service_fn(move |req: Request| async move {
        Ok::<_, Infallible>(handle(route, req, api).await)
    }))
    .await
}
