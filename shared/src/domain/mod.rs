//! The audit domain: entries, validation, queries, cursors and statistics. No storage or AWS types
//! appear here; adapters translate to and from these.

mod cursor;
pub use cursor::Continuation;
pub mod entry;
pub mod query;
pub mod stats;
pub mod time;
pub mod validation;

pub use entry::{
    Actor, AuditAction, AuditLogEntry, EntityType, EntryDetails, JsonObject, MAX_ENTRY_BYTES, NewEntry, TenantId,
    ValidEntry,
};
pub use query::{
    AuditFilter, AuditPage, AuditQuery, DEFAULT_LIMIT, IndexKey, MAX_LIMIT, MAX_OFFSET, PageRequest, QueryPlan,
    QueryScope, Residual, StoredPage,
};
pub use stats::{AuditStats, Counts, HourlyCounts, StatsBucket, StatsRange};
pub use time::HourBucket;
pub use validation::ValidationError;
