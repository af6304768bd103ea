//! Why a backend (a table, a key store, the connection records) could not do what was asked.
//!
//! Every port — audit entries, API keys, connections, idempotency records — reports its failures
//! with this one type. It is a leaf: the ports' modules and the adapters that implement them all
//! import it, and it imports nothing, so no port borrows an adapter's type. The text is for logs;
//! HTTP responses use fixed messages.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BackendError {
    /// The backend is shedding load; the caller may retry later.
    #[error("the backend is throttling requests: {0}")]
    Throttled(String),
    /// The backend could not be reached or did not answer in time.
    #[error("the backend is unavailable: {0}")]
    Unavailable(String),
    #[error("backend failure: {0}")]
    Internal(String),
}

impl BackendError {
    /// Whether the same request may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, BackendError::Throttled(_) | BackendError::Unavailable(_))
    }
}
