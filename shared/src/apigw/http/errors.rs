//! The one error envelope of the HTTP API:
//! `{"error": {"code", "message", "parameter"?, "request_id"}}`, with the right status and, where
//! a retry will help, `Retry-After`. Internal details are logged, never returned.

use lambda_http::{Body, Response};
use serde::Serialize;

use crate::AuditError;
use crate::backend::BackendError;
use crate::domain::ValidationError;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: a query or path parameter, or a header, is invalid.
    InvalidParameter { parameter: String, message: String },
    /// 400: the body, or a field of an entry in it, is invalid.
    InvalidEntry { parameter: Option<String>, message: String },
    /// 401: no authenticated caller reached the function.
    Unauthenticated,
    /// 403: the caller lacks the scope.
    Forbidden { scope: &'static str },
    /// 404: no such entry for this caller (also another tenant's).
    NotFound,
    /// 409: a request with the same Idempotency-Key is still running.
    IdempotencyInProgress,
    /// 409: a retried request's entries were first stamped in a period sealed since.
    PeriodSealed,
    /// 409: the request conflicts with the entry's state (a field already erased, a legal hold),
    /// which `code` names.
    Conflict { code: &'static str, message: String, parameter: Option<String> },
    /// 413: the body is larger than allowed.
    PayloadTooLarge { max: usize },
    /// 422: the Idempotency-Key was used for a different request.
    IdempotencyKeyReused,
    /// 429: storage is throttling.
    Throttled,
    /// 503: storage cannot be reached.
    Unavailable,
    /// 500: anything else; details are in the log under the request id.
    Internal,
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::InvalidParameter { .. } | ApiError::InvalidEntry { .. } => 400,
            ApiError::Unauthenticated => 401,
            ApiError::Forbidden { .. } => 403,
            ApiError::NotFound => 404,
            ApiError::IdempotencyInProgress | ApiError::PeriodSealed | ApiError::Conflict { .. } => 409,
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::IdempotencyKeyReused => 422,
            ApiError::Throttled => 429,
            ApiError::Unavailable => 503,
            ApiError::Internal => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidParameter { .. } => "invalid_parameter",
            ApiError::InvalidEntry { .. } => "invalid_entry",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::IdempotencyInProgress => "idempotency_in_progress",
            ApiError::PeriodSealed => "period_sealed",
            ApiError::Conflict { code, .. } => code,
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::Throttled => "throttled",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal => "internal_error",
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::InvalidParameter { message, .. }
            | ApiError::InvalidEntry { message, .. }
            | ApiError::Conflict { message, .. } => message.clone(),
            ApiError::Unauthenticated => "authentication is required".into(),
            ApiError::Forbidden { scope } => format!("the {scope} scope is required"),
            ApiError::NotFound => "no such audit entry".into(),
            ApiError::IdempotencyInProgress => "a request with this Idempotency-Key is still in progress".into(),
            ApiError::PeriodSealed => "this request was first stamped in a period that is sealed since; send the entries it did not store again, under a new Idempotency-Key".into(),
            ApiError::PayloadTooLarge { max } => {
                format!("the request body is larger than {max} bytes")
            }
            ApiError::IdempotencyKeyReused => "this Idempotency-Key was used for a different request".into(),
            ApiError::Throttled => "too many requests; retry later".into(),
            ApiError::Unavailable => "the service is temporarily unavailable; retry later".into(),
            ApiError::Internal => "internal error; quote the request_id when reporting it".into(),
        }
    }

    pub fn parameter(&self) -> Option<&str> {
        match self {
            ApiError::InvalidParameter { parameter, .. } => Some(parameter),
            ApiError::InvalidEntry { parameter, .. } | ApiError::Conflict { parameter, .. } => parameter.as_deref(),
            _ => None,
        }
    }

    /// Seconds a client should wait before retrying, for errors a retry can cure.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            ApiError::Throttled | ApiError::IdempotencyInProgress => Some(1),
            ApiError::Unavailable => Some(2),
            _ => None,
        }
    }

    pub fn parameter_error(e: &ValidationError) -> Self {
        ApiError::InvalidParameter { parameter: e.field().to_owned(), message: e.to_string() }
    }

    pub fn entry_error(e: &ValidationError) -> Self {
        ApiError::InvalidEntry { parameter: Some(e.field().to_owned()), message: e.to_string() }
    }

    /// Maps a backend failure, logging its detail (which never reaches the client).
    pub fn from_backend(e: &BackendError, request_id: &str) -> Self {
        match e {
            BackendError::Throttled(detail) => {
                tracing::warn!(request_id, detail, "storage throttled");
                ApiError::Throttled
            }
            BackendError::Unavailable(detail) => {
                tracing::error!(request_id, detail, "storage unavailable");
                ApiError::Unavailable
            }
            BackendError::Internal(detail) => {
                tracing::error!(request_id, detail, "storage failure");
                ApiError::Internal
            }
        }
    }

    /// Maps an audit store failure. An existing id is a fault here: ids are unique by construction.
    pub fn from_store(e: &StoreError, request_id: &str) -> Self {
        match e {
            StoreError::Backend(b) => Self::from_backend(b, request_id),
            StoreError::Sealed(id) => {
                tracing::warn!(request_id, %id, "write refused: its period is sealed");
                ApiError::PeriodSealed
            }
            StoreError::AlreadyExists(id) => {
                tracing::error!(request_id, %id, "entry id already taken");
                ApiError::Internal
            }
            StoreError::NotFound(_) => ApiError::NotFound,
            StoreError::Changed(id) => ApiError::Conflict {
                code: "changed",
                message: format!("entry {id} changed while this request ran; send it again"),
                parameter: None,
            },
        }
    }

    /// Maps a logger failure for a query (validation errors name the query parameter).
    pub fn from_query(e: &AuditError, request_id: &str) -> Self {
        match e {
            AuditError::Invalid(v) => ApiError::parameter_error(v),
            AuditError::Store(s) => ApiError::from_store(s, request_id),
        }
    }

    pub fn body(&self, request_id: &str) -> ErrorBody {
        ErrorBody {
            code: self.code(),
            message: self.message(),
            parameter: self.parameter().map(str::to_owned),
            request_id: request_id.to_owned(),
        }
    }

    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let mut response = super::json(self.status(), &Envelope { error: self.body(request_id) });
        if let Some(seconds) = self.retry_after() {
            response.headers_mut().insert("retry-after", seconds.into());
        }
        response
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    pub request_id: String,
}

#[derive(Serialize)]
struct Envelope {
    error: ErrorBody,
}
