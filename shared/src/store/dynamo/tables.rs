//! The table definitions, in one place: key schema, indexes, TTL attribute and stream of every table
//! the product uses. Tests and the local gateway create tables from these; a test checks that the SAM
//! template declares the same.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, StreamSpecification, StreamViewType, TimeToLiveSpecification,
};

use super::errors::classify;
use crate::backend::BackendError;

/// A global secondary index. Entry indexes project all attributes, so a page needs no second
/// read; an index that only finds keys projects only them (and is written only when they change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: &'static str,
    pub partition_key: &'static str,
    pub sort_key: &'static str,
    pub keys_only: bool,
}

/// A table. All key attributes are strings; billing is on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpec {
    pub partition_key: &'static str,
    pub sort_key: Option<&'static str>,
    pub indexes: &'static [IndexSpec],
    pub ttl_attribute: Option<&'static str>,
    /// Whether the table streams new images (the real-time feed reads the entries table's stream).
    pub stream_new_image: bool,
}

/// Attribute names of the entries table.
pub mod entry_attr {
    pub const PK: &str = "pk";
    pub const ID: &str = "id";
    pub const ENTITY_KEY: &str = "entity_key";
    pub const PROJECT_KEY: &str = "project_key";
    pub const USER_KEY: &str = "user_key";
    pub const ACTION_KEY: &str = "action_key";
    pub const TYPE_KEY: &str = "type_key";
    pub const EXPIRES_AT: &str = "expires_at";
}

/// Index names of the entries table.
pub mod entry_index {
    pub const BY_ENTITY: &str = "by_entity";
    pub const BY_PROJECT: &str = "by_project";
    pub const BY_USER: &str = "by_user";
    pub const BY_ACTION: &str = "by_action";
    pub const BY_TYPE: &str = "by_type";
}

/// Audit entries: partition `T#<tenant>`, sort key the entry's UUIDv7 id (so: time order), one
/// index per seed query dimension. Entries are only ever put, never updated or deleted.
pub const ENTRIES: TableSpec = TableSpec {
    partition_key: entry_attr::PK,
    sort_key: Some(entry_attr::ID),
    indexes: &[
        IndexSpec {
            name: entry_index::BY_ENTITY,
            partition_key: entry_attr::ENTITY_KEY,
            sort_key: entry_attr::ID,
            keys_only: false,
        },
        IndexSpec {
            name: entry_index::BY_PROJECT,
            partition_key: entry_attr::PROJECT_KEY,
            sort_key: entry_attr::ID,
            keys_only: false,
        },
        IndexSpec {
            name: entry_index::BY_USER,
            partition_key: entry_attr::USER_KEY,
            sort_key: entry_attr::ID,
            keys_only: false,
        },
        IndexSpec {
            name: entry_index::BY_ACTION,
            partition_key: entry_attr::ACTION_KEY,
            sort_key: entry_attr::ID,
            keys_only: false,
        },
        IndexSpec {
            name: entry_index::BY_TYPE,
            partition_key: entry_attr::TYPE_KEY,
            sort_key: entry_attr::ID,
            keys_only: false,
        },
    ],
    ttl_attribute: Some(entry_attr::EXPIRES_AT),
    stream_new_image: true,
};

/// Attribute names of the counters table.
pub mod counter_attr {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const TOTAL: &str = "total";
    pub const EXPIRES_AT: &str = "expires_at";
    /// The counter's hour label, the key of `by_hour`: which tenants wrote in an hour.
    pub const HOUR: &str = "hour";
    /// On a tenant's seal item (`sk = SEAL`): entries stamped before this (epoch ms) are refused.
    pub const CLOSED_BEFORE: &str = "closed_before";
    pub const HEAD_END: &str = "head_end";
    pub const HEAD_HASH: &str = "head_hash";
    /// Entries in the chain up to the head.
    pub const HEAD_TOTAL: &str = "head_total";
    /// The end of the last checkpoint every publication sink took.
    pub const PUBLISHED: &str = "published";
    /// Witness status items (`pk = WITNESSES`, `sk` = the witness): when it last cosigned or failed.
    pub const LAST_SUCCESS: &str = "last_success";
    pub const LAST_FAILURE: &str = "last_failure";
    pub const LAST_ERROR: &str = "last_error";
}

/// Tenants by hour of activity, for the sealer: no Scan. Keys only, so it is written once per
/// tenant-hour (when the counter item is made), not once per entry.
pub const COUNTERS_BY_HOUR: &str = "by_hour";

/// Hourly statistics counters: partition `T#<tenant>`, sort key `<hour>#<shard>`. Kept apart from
/// the entries so that IAM can allow UpdateItem here while entries stay put-only.
pub const COUNTERS: TableSpec = TableSpec {
    partition_key: counter_attr::PK,
    sort_key: Some(counter_attr::SK),
    indexes: &[IndexSpec {
        name: COUNTERS_BY_HOUR,
        partition_key: counter_attr::HOUR,
        sort_key: counter_attr::PK,
        keys_only: true,
    }],
    ttl_attribute: Some(counter_attr::EXPIRES_AT),
    stream_new_image: false,
};

/// Attribute names of the API keys table.
pub mod api_key_attr {
    pub const KEY_ID: &str = "key_id";
    pub const TENANT_ID: &str = "tenant_id";
    pub const CREATED_AT: &str = "created_at";
    pub const REVOKED: &str = "revoked";
}

pub const API_KEYS_BY_TENANT: &str = "by_tenant";

/// API keys: partition `key_id`, the SHA-256 of the key, so checking a key is one GetItem. Records
/// are kept after revocation, for the audit trail of who had access.
pub const API_KEYS: TableSpec = TableSpec {
    partition_key: api_key_attr::KEY_ID,
    sort_key: None,
    indexes: &[IndexSpec {
        name: API_KEYS_BY_TENANT,
        partition_key: api_key_attr::TENANT_ID,
        sort_key: api_key_attr::CREATED_AT,
        keys_only: false,
    }],
    ttl_attribute: None,
    stream_new_image: false,
};

/// Attribute names of the idempotency table.
pub mod idempotency_attr {
    pub const PK: &str = "pk";
    pub const REQUEST_HASH: &str = "request_hash";
    pub const CLAIMED_AT: &str = "claimed_at";
    /// When the request's entries are stamped: the first claim's time, kept by takeovers.
    pub const STAMPED_AT: &str = "stamped_at";
    pub const STATUS: &str = "status";
    pub const BODY: &str = "body";
    pub const EXPIRES_AT: &str = "expires_at";
    /// A random token per claim: a claim whose reply was lost and that the SDK sent again finds
    /// its own token on the record, and is its own claim, not another request's.
    pub const CLAIM_TOKEN: &str = "claim_token";
}

/// Idempotency records of writes: partition `T#<tenant>#C#<hash of principal and key>`, kept for a
/// day (TTL).
pub const IDEMPOTENCY: TableSpec = TableSpec {
    partition_key: idempotency_attr::PK,
    sort_key: None,
    indexes: &[],
    ttl_attribute: Some(idempotency_attr::EXPIRES_AT),
    stream_new_image: false,
};

/// Attribute names of the connections table.
pub mod connection_attr {
    pub const CONNECTION_ID: &str = "connection_id";
    pub const TENANT_ID: &str = "tenant_id";
    pub const USER_ID: &str = "user_id";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const STRIKES: &str = "strikes";
}

pub const CONNECTIONS_BY_TENANT: &str = "by_tenant";

/// Open WebSocket connections: partition `connection_id` (what `$disconnect` and a 410 know), GSI
/// `by_tenant` for the fan-out's one Query per tenant, TTL at the earlier of the credential's expiry
/// and API Gateway's 2-hour limit.
pub const CONNECTIONS: TableSpec = TableSpec {
    partition_key: connection_attr::CONNECTION_ID,
    sort_key: None,
    indexes: &[IndexSpec {
        name: CONNECTIONS_BY_TENANT,
        partition_key: connection_attr::TENANT_ID,
        sort_key: connection_attr::CONNECTION_ID,
        keys_only: false,
    }],
    ttl_attribute: Some(connection_attr::EXPIRES_AT),
    stream_new_image: false,
};

/// Attribute names of the checkpoints table.
pub mod checkpoint_attr {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const CHECKPOINT: &str = "checkpoint";
    pub const FIRST_IDS: &str = "first_ids";
    /// On a cosignature item (`pk = W#<tenant>`, `sk = <end>#<line's hash>`): the line.
    pub const COSIGNATURE: &str = "cosignature";
}

/// Checkpoints: partition `T#<tenant>`, sort key the period's end (epoch ms, 15 digits), so a
/// tenant's chain reads in order and "the checkpoint covering t" is the first with end > t; and
/// published keys under partition `KEYS`. Put-only and never expiring: retention removes entries,
/// never the proof that they were there.
pub const CHECKPOINTS: TableSpec = TableSpec {
    partition_key: checkpoint_attr::PK,
    sort_key: Some(checkpoint_attr::SK),
    indexes: &[],
    ttl_attribute: None,
    stream_new_image: false,
};

/// Attribute names of the proofs table.
pub mod proof_attr {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const HASHES: &str = "hashes";
    pub const IDS: &str = "ids";
    pub const EXPIRES_AT: &str = "expires_at";
}

/// The tiles of sealed trees: partition `T#<tenant>#<end>`, sort key `<level>#<index>`. Derived
/// from the entries (a seal rewrites the same tiles if it is run again), so they expire with them.
pub const PROOFS: TableSpec = TableSpec {
    partition_key: proof_attr::PK,
    sort_key: Some(proof_attr::SK),
    indexes: &[],
    ttl_attribute: Some(proof_attr::EXPIRES_AT),
    stream_new_image: false,
};

/// Attribute names of the archive keys table (besides one per sealed field).
pub mod archive_key_attr {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const EXPIRES_AT: &str = "expires_at";
}

/// The keys the archive seals erasable values under: partition `T#<tenant>`, sort key the entry's
/// id; expiring with the archive's copy of the entry.
pub const ARCHIVE_KEYS: TableSpec = TableSpec {
    partition_key: archive_key_attr::PK,
    sort_key: Some(archive_key_attr::SK),
    indexes: &[],
    ttl_attribute: Some(archive_key_attr::EXPIRES_AT),
    stream_new_image: false,
};

/// Attribute names of the streams table.
pub mod stream_attr {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    /// On a stream item: its version (every replace conditions on it) and its JSON.
    pub const VERSION: &str = "version";
    pub const BODY: &str = "body";
    /// On a tenant's `count` item: how many streams it has.
    pub const COUNT: &str = "n";
    /// On a figures item: counters, and a `lag_<k>` counter per lag bucket.
    pub const DELIVERED: &str = "delivered";
    pub const FAILED: &str = "failed";
    pub const RETRIED: &str = "retried";
    pub const LAG_PREFIX: &str = "lag_";
    pub const LAST_ERROR: &str = "last_error";
    pub const LAST_ERROR_AT: &str = "last_error_at";
    pub const LAST_DELIVERED_AT: &str = "last_delivered_at";
    /// `"failing"` while the stream is failing, absent otherwise: the key of `by_failing`.
    pub const FAILING: &str = "failing";
    pub const FAILING_SINCE: &str = "failing_since";
    pub const FAILING_REASON: &str = "failing_reason";
}

/// Failing streams of every tenant, for the health check's count: sparse (only a failing stream's
/// figures item has the key) and keys only, so it is written only when a stream starts or stops
/// failing.
pub const STREAMS_BY_FAILING: &str = "by_failing";

/// Log streams: partition the tenant id; sort key `stream#<id>` for a stream (settings and sealed
/// secrets as JSON, never in a key), `stream#<id>#figures` for its delivery figures, and `count`
/// for how many streams the tenant has (kept in the same transaction as every create and delete).
pub const STREAMS: TableSpec = TableSpec {
    partition_key: stream_attr::PK,
    sort_key: Some(stream_attr::SK),
    indexes: &[IndexSpec {
        name: STREAMS_BY_FAILING,
        partition_key: stream_attr::FAILING,
        sort_key: stream_attr::SK,
        keys_only: true,
    }],
    ttl_attribute: None,
    stream_new_image: false,
};

/// Every table the product uses.
pub const ALL: [&TableSpec; 9] =
    [&ENTRIES, &COUNTERS, &API_KEYS, &IDEMPOTENCY, &CONNECTIONS, &CHECKPOINTS, &PROOFS, &ARCHIVE_KEYS, &STREAMS];

fn key(name: &str, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().expect("name and type are set")
}

fn string_attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("name and type are set")
}

/// Creates `table_name` as `spec` describes, with TTL enabled. For tests and local servers;
/// deployed tables come from the SAM template.
pub async fn create_table(client: &Client, spec: &TableSpec, table_name: &str) -> Result<(), BackendError> {
    let mut attributes: Vec<&str> = vec![spec.partition_key];
    attributes.extend(spec.sort_key);
    for index in spec.indexes {
        attributes.extend([index.partition_key, index.sort_key]);
    }
    attributes.sort_unstable();
    attributes.dedup();

    let mut request = client
        .create_table()
        .table_name(table_name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(attributes.into_iter().map(string_attribute).collect()))
        .key_schema(key(spec.partition_key, KeyType::Hash));
    if let Some(sort_key) = spec.sort_key {
        request = request.key_schema(key(sort_key, KeyType::Range));
    }
    for index in spec.indexes {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index.name)
                .key_schema(key(index.partition_key, KeyType::Hash))
                .key_schema(key(index.sort_key, KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(if index.keys_only { ProjectionType::KeysOnly } else { ProjectionType::All })
                        .build(),
                )
                .build()
                .expect("name, keys and projection are set"),
        );
    }
    if spec.stream_new_image {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .expect("enabled is set"),
        );
    }
    match request.send().await {
        Ok(_) => {}
        // A retried create whose first answer was lost, or another creator: the table is there.
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(classify("CreateTable", e)),
    }

    if let Some(ttl) = spec.ttl_attribute {
        let enabled = client
            .update_time_to_live()
            .table_name(table_name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder().enabled(true).attribute_name(ttl).build().expect("fields are set"),
            )
            .send()
            .await;
        match enabled {
            Ok(_) => {}
            // Enabled by the first of two attempts.
            Err(e) if e.message().is_some_and(|m| m.contains("already enabled")) => {}
            Err(e) => return Err(classify("UpdateTimeToLive", e)),
        }
    }
    Ok(())
}
