//! New checkpoints on the live feed: a `{"type": "checkpoint"}` frame to each of the tenant's
//! connections that may read the whole trail (`audit:read`), so dashboards and clients keep the
//! latest head without polling. Best effort: a client that misses one reads
//! `GET /audit/checkpoints/latest`.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use futures::{StreamExt, stream};
use serde::Serialize;

use super::{ConnectionStore, Pusher};
use crate::auth::scopes::AUDIT_READ;
use crate::backend::BackendError;
use crate::domain::TenantId;
use crate::integrity::checkpoint::Checkpoint;
use crate::seal::CheckpointSink;

/// Posts in flight at once.
const CONCURRENCY: usize = 64;

#[derive(Serialize)]
struct CheckpointMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    checkpoint: &'a Checkpoint,
    note: Option<String>,
}

/// The frame a client receives for a new checkpoint.
pub fn checkpoint_message(checkpoint: &Checkpoint) -> Vec<u8> {
    serde_json::to_vec(&CheckpointMessage { kind: "checkpoint", checkpoint, note: checkpoint.note() })
        .unwrap_or_default()
}

/// The live feed as a place checkpoints are published.
pub struct CheckpointFeed {
    pub connections: Arc<dyn ConnectionStore>,
    pub pusher: Arc<dyn Pusher>,
}

#[async_trait]
impl CheckpointSink for CheckpointFeed {
    fn name(&self) -> &str {
        "live feed"
    }

    /// Never fails the publication: a post that does not get through is logged.
    async fn publish(&self, checkpoint: &Checkpoint) -> Result<(), BackendError> {
        let Ok(tenant) = TenantId::parse(&checkpoint.body.tenant) else { return Ok(()) };
        let connections = match self.connections.tenant_connections(&tenant, Utc::now()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "the live feed's connections could not be read for a checkpoint");
                return Ok(());
            }
        };
        let message = checkpoint_message(checkpoint);
        let readers = connections.into_iter().filter(|c| c.has_scope(AUDIT_READ));
        let failed = stream::iter(readers)
            .map(|c| {
                let message = &message;
                async move { self.pusher.push(&c.connection_id, message).await.is_err() }
            })
            .buffer_unordered(CONCURRENCY)
            .filter(|failed| std::future::ready(*failed))
            .count()
            .await;
        if failed > 0 {
            tracing::info!(failed, tenant = %tenant, "checkpoint frames not delivered (clients catch up over HTTP)");
        }
        Ok(())
    }
}
