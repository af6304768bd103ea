//! auditline: a real-time audit trail for multi-user applications.
//!
//! - [`domain`]: entries, validation, queries and statistics, free of storage and AWS types.
//! - [`store`]: the storage port with its DynamoDB and in-memory adapters.
//! - [`logger`]: [`AuditLogger`], the service the functions call.
//! - [`config`]: settings read from the environment.

pub mod apigw;
pub mod archive;
pub mod auth;
pub mod backend;
pub mod bootstrap;
pub mod config;
pub mod domain;
pub mod erasure;
pub mod export;
pub mod idempotency;
pub mod integrity;
pub mod kms;
pub mod logger;
pub mod realtime;
pub mod retention;
pub mod sdk;
pub mod seal;
pub mod store;
pub mod streams;
pub mod viewer;
pub mod witness;

pub use config::Config;
pub use logger::{AuditError, AuditLogger, AuditSettings, LogOutcome};
