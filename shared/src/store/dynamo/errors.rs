//! Turning SDK errors into [`BackendError`]s: throttling and unavailability are told apart from faults so
//! the HTTP layer can answer 429/503 with Retry-After instead of 500.

use std::error::Error;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::backend::BackendError;

const THROTTLING_CODES: [&str; 4] = [
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionConflictException",
];

pub(crate) fn classify<E, R>(operation: &'static str, err: SdkError<E, R>) -> BackendError
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let detail = format!("{operation}: {}", DisplayErrorContext(&err));
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => BackendError::Unavailable(detail),
        SdkError::ServiceError(service) => match service.err().code() {
            Some(code) if THROTTLING_CODES.contains(&code) => BackendError::Throttled(detail),
            Some("InternalServerError" | "ServiceUnavailable") => BackendError::Unavailable(detail),
            _ => BackendError::Internal(detail),
        },
        _ => BackendError::Internal(detail),
    }
}

pub(crate) fn corrupt(what: &str, err: impl std::fmt::Display) -> BackendError {
    BackendError::Internal(format!("stored {what} could not be read: {err}"))
}
