//! Sealing on DynamoDB. What a seal touches, per tenant and run:
//!
//! - the tenant's seal item in the counters table (`sk = SEAL`): GetItem, one UpdateItem to close
//!   the period to writes (the same item every write's transaction checks);
//! - the period's leaves: a strongly consistent Query of the entries table in id order, projecting
//!   only `id` and the leaf hash (≈ 100 bytes an entry, so 1 MB pages of ≈ 10,000 leaves);
//! - the tiles: BatchWriteItem into the proofs table (25 per request);
//! - the checkpoint: one transaction that puts it (never over another) and moves the seal item's
//!   head from the previous checkpoint, so two seals cannot fork a chain;
//! - witnesses' cosignatures: one item each (`pk = W#<tenant>`, `sk = <end>#<hash of the line>`),
//!   put once, so the checkpoints table stays put-only;
//! - the publication mark and the witnesses' status: UpdateItem on the counters table.
//!
//! Tenants to seal come from the counters' `by_hour` index: no Scan.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, PutRequest, TransactWriteItem, Update, WriteRequest,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::errors::{classify, corrupt};
use super::tables::{COUNTERS_BY_HOUR, checkpoint_attr, counter_attr, entry_attr, proof_attr};
use super::{DynamoStore, SEAL_SK, SealTables, number, query_all, string, tenant_key};
use crate::backend::BackendError;
use crate::domain::time::{highest_id_at, lowest_id_at};
use crate::domain::{HourBucket, TenantId};
use crate::integrity::Hash;
use crate::integrity::checkpoint::Checkpoint;
use crate::integrity::merkle::Tile;
use crate::seal::{Appended, Head, SealState, SealStore, SealedPeriod, StoredTile, WitnessStatus};

/// The partition of the witnesses' status items in the counters table.
const WITNESSES_PK: &str = "WITNESSES";
/// The sealer's cursor, in the counters table.
const CURSOR_PK: &str = "SEAL#CURSOR";
const CURSOR_HOUR: &str = "cursor_hour";

/// Sort keys of checkpoints: the end in epoch ms, zero-padded so text order is time order.
fn end_key(end: DateTime<Utc>) -> String {
    format!("{:015}", end.timestamp_millis().max(0))
}

fn cosignatures_pk(tenant: &TenantId) -> String {
    format!("W#{tenant}")
}

fn tiles_pk(tenant: &TenantId, end: DateTime<Utc>) -> String {
    format!("T#{tenant}#{}", end_key(end))
}

fn tile_sk(level: u32, index: u64) -> String {
    format!("{level}#{index:012}")
}

fn millis(item: &HashMap<String, AttributeValue>, name: &str) -> Option<DateTime<Utc>> {
    item.get(name)?.as_n().ok()?.parse().ok().and_then(DateTime::from_timestamp_millis)
}

fn blob_of_hashes(hashes: &[Hash]) -> Blob {
    Blob::new(hashes.iter().flat_map(|h| h.0).collect::<Vec<u8>>())
}

fn hashes_of(bytes: &[u8]) -> Vec<Hash> {
    bytes.chunks_exact(32).map(|c| Hash(c.try_into().expect("32 bytes"))).collect()
}

fn blob_of_ids(ids: &[Uuid]) -> Blob {
    Blob::new(ids.iter().flat_map(|id| *id.as_bytes()).collect::<Vec<u8>>())
}

fn ids_of(bytes: &[u8]) -> Vec<Uuid> {
    bytes.chunks_exact(16).map(|c| Uuid::from_slice(c).expect("16 bytes")).collect()
}

impl DynamoStore {
    fn seal_tables(&self) -> Result<&SealTables, BackendError> {
        self.seal_tables.as_ref().ok_or_else(|| BackendError::Internal("this store has no seal tables".into()))
    }

    /// Moves one of the tenant's seal markers (`attribute`, epoch milliseconds) forward to `to`;
    /// a marker already there or further stays: markers never move back.
    async fn advance(&self, tenant: &TenantId, attribute: &str, to: DateTime<Utc>) -> Result<(), BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.counters_table)
            .set_key(Some(self.seal_key(tenant)))
            .update_expression("SET #marker = :to")
            .condition_expression("attribute_not_exists(#marker) OR #marker < :to")
            .expression_attribute_names("#marker", attribute)
            .expression_attribute_values(":to", number(to.timestamp_millis()))
            .send()
            .await;
        match result {
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            other => other.map(|_| ()).map_err(|e| classify("UpdateItem", e)),
        }
    }

    fn seal_key(&self, tenant: &TenantId) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (counter_attr::PK.to_owned(), string(tenant_key(tenant))),
            (counter_attr::SK.to_owned(), string(SEAL_SK)),
        ])
    }

    fn checkpoint_from(item: &HashMap<String, AttributeValue>) -> Result<Checkpoint, BackendError> {
        let attribute =
            item.get(checkpoint_attr::CHECKPOINT).cloned().ok_or_else(|| corrupt("checkpoint", "missing"))?;
        let map = attribute.as_m().map_err(|_| corrupt("checkpoint", "not a map"))?.clone();
        serde_dynamo::from_item(map).map_err(|e| corrupt("checkpoint", e))
    }

    /// Up to `limit` checkpoints `query` finds, page after page, with their cosignatures.
    async fn read_checkpoints(
        &self,
        tenant: &TenantId,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        limit: usize,
    ) -> Result<Vec<Checkpoint>, BackendError> {
        let mut found = Vec::new();
        let mut start_key = None;
        while found.len() < limit {
            let out = query
                .clone()
                .limit(i32::try_from(limit - found.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|e| classify("Query", e))?;
            for item in out.items.unwrap_or_default() {
                found.push(Self::checkpoint_from(&item)?);
            }
            match out.last_evaluated_key {
                Some(key) => start_key = Some(key),
                None => break,
            }
        }
        self.attach_cosignatures(tenant, &mut found).await?;
        Ok(found)
    }

    /// Fills in the cosignatures of `checkpoints` (any order): one Query over their ends.
    async fn attach_cosignatures(&self, tenant: &TenantId, checkpoints: &mut [Checkpoint]) -> Result<(), BackendError> {
        let tables = self.seal_tables()?;
        let ends: Vec<String> = checkpoints
            .iter()
            .map(|c| {
                DateTime::parse_from_rfc3339(&c.body.end).map(|t| end_key(t.to_utc())).map_err(|e| corrupt("end", e))
            })
            .collect::<Result<_, _>>()?;
        let (Some(low), Some(high)) = (ends.iter().min(), ends.iter().max()) else { return Ok(()) };
        let query = self
            .client
            .query()
            .table_name(&tables.checkpoints)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :lo AND :hi")
            .expression_attribute_names("#pk", checkpoint_attr::PK)
            .expression_attribute_names("#sk", checkpoint_attr::SK)
            .expression_attribute_values(":pk", string(cosignatures_pk(tenant)))
            .expression_attribute_values(":lo", string(format!("{low}#")))
            // '$' sorts after '#': every line of the last end.
            .expression_attribute_values(":hi", string(format!("{high}$")));
        let items: Vec<CosignatureItem> = query_all(query, "cosignature").await?;
        for item in items {
            let Some((end, _)) = item.sk.split_once('#') else { continue };
            if let Some(i) = ends.iter().position(|e| e == end)
                && !checkpoints[i].cosignatures.contains(&item.cosignature)
            {
                checkpoints[i].cosignatures.push(item.cosignature);
            }
        }
        Ok(())
    }

    async fn write_tiles(&self, tenant: &TenantId, period: &SealedPeriod) -> Result<(), BackendError> {
        let tables = self.seal_tables()?;
        let end = DateTime::parse_from_rfc3339(&period.checkpoint.body.end).map_err(|e| corrupt("end", e))?.to_utc();
        let expires = (end + chrono::Duration::days(i64::from(tables.retention_days))).timestamp();
        let requests: Vec<WriteRequest> = period
            .tiles
            .iter()
            .map(|t| {
                let mut item = HashMap::from([
                    (proof_attr::PK.to_owned(), string(tiles_pk(tenant, end))),
                    (proof_attr::SK.to_owned(), string(tile_sk(t.tile.level, t.tile.index))),
                    (proof_attr::HASHES.to_owned(), AttributeValue::B(blob_of_hashes(&t.tile.hashes))),
                    (proof_attr::EXPIRES_AT.to_owned(), number(expires)),
                ]);
                if !t.ids.is_empty() {
                    item.insert(proof_attr::IDS.to_owned(), AttributeValue::B(blob_of_ids(&t.ids)));
                }
                let put = PutRequest::builder().set_item(Some(item)).build().expect("an item is set");
                WriteRequest::builder().put_request(put).build()
            })
            .collect();
        for chunk in requests.chunks(25) {
            let mut pending = HashMap::from([(tables.proofs.clone(), chunk.to_vec())]);
            for attempt in 0u32.. {
                let out = self
                    .client
                    .batch_write_item()
                    .set_request_items(Some(pending))
                    .send()
                    .await
                    .map_err(|e| classify("BatchWriteItem", e))?;
                pending = out.unprocessed_items.unwrap_or_default();
                if pending.values().all(Vec::is_empty) {
                    break;
                }
                if attempt == 8 {
                    return Err(BackendError::Throttled("BatchWriteItem: tiles left unprocessed".into()));
                }
                tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Keyed {
    pk: String,
}

#[derive(Deserialize)]
struct CosignatureItem {
    sk: String,
    cosignature: String,
}

#[derive(Deserialize)]
struct LeafItem {
    id: Uuid,
    integrity: LeafOnly,
}

#[derive(Deserialize)]
struct LeafOnly {
    leaf_hash: Hash,
}

#[async_trait]
impl SealStore for DynamoStore {
    async fn active_tenants(&self, hour: HourBucket) -> Result<Vec<TenantId>, BackendError> {
        let query = self
            .client
            .query()
            .table_name(&self.counters_table)
            .index_name(COUNTERS_BY_HOUR)
            .key_condition_expression("#hour = :hour")
            .expression_attribute_names("#hour", counter_attr::HOUR)
            .expression_attribute_values(":hour", string(hour.label()));
        let keyed: Vec<Keyed> = query_all(query, "counter key").await?;
        // One counter item per shard: a tenant may appear more than once.
        let tenants: BTreeSet<TenantId> =
            keyed.into_iter().filter_map(|k| k.pk.strip_prefix("T#").and_then(|t| TenantId::parse(t).ok())).collect();
        Ok(tenants.into_iter().collect())
    }

    async fn seal_state(&self, tenant: &TenantId) -> Result<SealState, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.counters_table)
            .set_key(Some(self.seal_key(tenant)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        let Some(item) = out.item else { return Ok(SealState::default()) };
        let head_hash = item.get(counter_attr::HEAD_HASH).and_then(|v| v.as_s().ok()).and_then(|h| h.parse().ok());
        let head_total = item.get(counter_attr::HEAD_TOTAL).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok());
        let head = match (millis(&item, counter_attr::HEAD_END), head_hash, head_total) {
            (Some(end), Some(hash), Some(total)) => Some(Head { end, hash, total }),
            (None, None, None) => None,
            _ => return Err(corrupt("seal item", "a head without its end, link or total")),
        };
        Ok(SealState {
            closed_before: millis(&item, counter_attr::CLOSED_BEFORE),
            head,
            published: millis(&item, counter_attr::PUBLISHED),
        })
    }

    async fn close_before(&self, tenant: &TenantId, before: DateTime<Utc>) -> Result<(), BackendError> {
        self.advance(tenant, counter_attr::CLOSED_BEFORE, before).await
    }

    async fn leaves(
        &self,
        tenant: &TenantId,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, Hash)>, BackendError> {
        let query = self
            .client
            .query()
            .table_name(&self.entries_table)
            .key_condition_expression("#pk = :pk AND #id BETWEEN :lo AND :hi")
            .projection_expression("#id, #integrity.#leaf")
            .expression_attribute_names("#pk", entry_attr::PK)
            .expression_attribute_names("#id", entry_attr::ID)
            .expression_attribute_names("#integrity", "integrity")
            .expression_attribute_names("#leaf", "leaf_hash")
            .expression_attribute_values(":pk", string(tenant_key(tenant)))
            .expression_attribute_values(":lo", string(lowest_id_at(start).to_string()))
            .expression_attribute_values(
                ":hi",
                string(highest_id_at(end - chrono::Duration::milliseconds(1)).to_string()),
            )
            // Strongly consistent: every write that beat the marker is seen.
            .consistent_read(true);
        let items: Vec<LeafItem> = query_all(query, "leaf").await?;
        Ok(items.into_iter().map(|i| (i.id, i.integrity.leaf_hash)).collect())
    }

    async fn append(
        &self,
        tenant: &TenantId,
        period: &SealedPeriod,
        previous: Option<&Head>,
    ) -> Result<Appended, BackendError> {
        let tables = self.seal_tables()?;
        // Tiles first: if the transaction below loses a race, they are rewritten identically by
        // whoever wins; if it succeeds, a proof finds them.
        self.write_tiles(tenant, period).await?;
        let checkpoint = &period.checkpoint;
        let end = DateTime::parse_from_rfc3339(&checkpoint.body.end).map_err(|e| corrupt("end", e))?.to_utc();
        let body = serde_dynamo::to_item(checkpoint).map_err(|e| BackendError::Internal(e.to_string()))?;
        let put = Put::builder()
            .table_name(&tables.checkpoints)
            .item(checkpoint_attr::PK, string(tenant_key(tenant)))
            .item(checkpoint_attr::SK, string(end_key(end)))
            .item(checkpoint_attr::CHECKPOINT, AttributeValue::M(body))
            .item(checkpoint_attr::FIRST_IDS, AttributeValue::B(blob_of_ids(&period.first_ids)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", checkpoint_attr::PK)
            .build()
            .map_err(|e| BackendError::Internal(e.to_string()))?;
        let mut head = Update::builder()
            .table_name(&self.counters_table)
            .set_key(Some(self.seal_key(tenant)))
            .update_expression("SET #end = :end, #hash = :hash, #total = :total")
            .expression_attribute_names("#end", counter_attr::HEAD_END)
            .expression_attribute_names("#hash", counter_attr::HEAD_HASH)
            .expression_attribute_names("#total", counter_attr::HEAD_TOTAL)
            .expression_attribute_values(":end", number(end.timestamp_millis()))
            .expression_attribute_values(":hash", string(checkpoint.link().to_hex()))
            .expression_attribute_values(":total", AttributeValue::N(checkpoint.body.total.to_string()));
        head = match previous {
            None => head.condition_expression("attribute_not_exists(#end)"),
            Some(p) => head
                .condition_expression("#end = :previous_end AND #hash = :previous_hash")
                .expression_attribute_values(":previous_end", number(p.end.timestamp_millis()))
                .expression_attribute_values(":previous_hash", string(p.hash.to_hex())),
        };
        let head = head.build().map_err(|e| BackendError::Internal(e.to_string()))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(head).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Appended::Done),
            Err(e) => {
                let lost = matches!(
                    e.as_service_error(),
                    Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c))
                        if c.cancellation_reasons().iter().any(|r| r.code() == Some("ConditionalCheckFailed"))
                );
                if lost { Ok(Appended::HeadMoved) } else { Err(classify("TransactWriteItems", e)) }
            }
        }
    }

    async fn checkpoints(
        &self,
        tenant: &TenantId,
        after: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<Checkpoint>, BackendError> {
        let tables = self.seal_tables()?;
        let low =
            after.map_or_else(|| end_key(DateTime::UNIX_EPOCH), |a| end_key(a + chrono::Duration::milliseconds(1)));
        let high = until.map_or_else(|| "9".repeat(15), end_key);
        let query = self
            .client
            .query()
            .table_name(&tables.checkpoints)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :lo AND :hi")
            .expression_attribute_names("#pk", checkpoint_attr::PK)
            .expression_attribute_names("#sk", checkpoint_attr::SK)
            .expression_attribute_values(":pk", string(tenant_key(tenant)))
            .expression_attribute_values(":lo", string(low))
            .expression_attribute_values(":hi", string(high));
        self.read_checkpoints(tenant, query, limit).await
    }

    async fn latest_checkpoints(&self, tenant: &TenantId, limit: usize) -> Result<Vec<Checkpoint>, BackendError> {
        let tables = self.seal_tables()?;
        let query = self
            .client
            .query()
            .table_name(&tables.checkpoints)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", checkpoint_attr::PK)
            .expression_attribute_values(":pk", string(tenant_key(tenant)))
            .scan_index_forward(false);
        self.read_checkpoints(tenant, query, limit).await
    }

    async fn add_cosignatures(
        &self,
        tenant: &TenantId,
        end: DateTime<Utc>,
        lines: &[String],
    ) -> Result<(), BackendError> {
        let tables = self.seal_tables()?;
        for line in lines {
            let sk = format!("{}#{}", end_key(end), &Hash::of(&[line.as_bytes()]).to_hex()[..32]);
            let result = self
                .client
                .put_item()
                .table_name(&tables.checkpoints)
                .item(checkpoint_attr::PK, string(cosignatures_pk(tenant)))
                .item(checkpoint_attr::SK, string(sk))
                .item(checkpoint_attr::COSIGNATURE, string(line.clone()))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", checkpoint_attr::PK)
                .send()
                .await;
            match result {
                // The same line kept before: put-only, so nothing to do.
                Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                other => {
                    other.map_err(|e| classify("PutItem", e))?;
                }
            }
        }
        Ok(())
    }

    async fn mark_published(&self, tenant: &TenantId, through: DateTime<Utc>) -> Result<(), BackendError> {
        self.advance(tenant, counter_attr::PUBLISHED, through).await
    }

    async fn witness_status(&self) -> Result<Vec<WitnessStatus>, BackendError> {
        let out = self
            .client
            .query()
            .table_name(&self.counters_table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", counter_attr::PK)
            .expression_attribute_values(":pk", string(WITNESSES_PK))
            .send()
            .await
            .map_err(|e| classify("Query", e))?;
        Ok(out
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| WitnessStatus {
                witness: item.get(counter_attr::SK).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default(),
                last_success: millis(item, counter_attr::LAST_SUCCESS),
                last_failure: millis(item, counter_attr::LAST_FAILURE),
                last_error: item.get(counter_attr::LAST_ERROR).and_then(|v| v.as_s().ok()).cloned(),
            })
            .collect())
    }

    async fn record_witness_status(&self, status: &WitnessStatus) -> Result<(), BackendError> {
        let mut sets = Vec::new();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.counters_table)
            .key(counter_attr::PK, string(WITNESSES_PK))
            .key(counter_attr::SK, string(status.witness.clone()));
        if let Some(ok) = status.last_success {
            sets.push("#ok = :ok");
            update = update
                .expression_attribute_names("#ok", counter_attr::LAST_SUCCESS)
                .expression_attribute_values(":ok", number(ok.timestamp_millis()));
        }
        if let Some(failed) = status.last_failure {
            sets.push("#failed = :failed, #error = :error");
            update = update
                .expression_attribute_names("#failed", counter_attr::LAST_FAILURE)
                .expression_attribute_names("#error", counter_attr::LAST_ERROR)
                .expression_attribute_values(":failed", number(failed.timestamp_millis()))
                .expression_attribute_values(":error", string(status.last_error.clone().unwrap_or_default()));
        }
        if sets.is_empty() {
            return Ok(());
        }
        update
            .update_expression(format!("SET {}", sets.join(", ")))
            .send()
            .await
            .map_err(|e| classify("UpdateItem", e))?;
        Ok(())
    }

    async fn checkpoint_covering(
        &self,
        tenant: &TenantId,
        t: DateTime<Utc>,
    ) -> Result<Option<(Checkpoint, Vec<Uuid>)>, BackendError> {
        let tables = self.seal_tables()?;
        let out = self
            .client
            .query()
            .table_name(&tables.checkpoints)
            .key_condition_expression("#pk = :pk AND #sk > :t")
            .expression_attribute_names("#pk", checkpoint_attr::PK)
            .expression_attribute_names("#sk", checkpoint_attr::SK)
            .expression_attribute_values(":pk", string(tenant_key(tenant)))
            .expression_attribute_values(":t", string(end_key(t)))
            .limit(1)
            .send()
            .await
            .map_err(|e| classify("Query", e))?;
        let Some(item) = out.items.unwrap_or_default().into_iter().next() else { return Ok(None) };
        let checkpoint = Self::checkpoint_from(&item)?;
        let starts_before = DateTime::parse_from_rfc3339(&checkpoint.body.start).is_ok_and(|s| s.to_utc() <= t);
        let first_ids = item.get(checkpoint_attr::FIRST_IDS).and_then(|v| v.as_b().ok()).map(|b| ids_of(b.as_ref()));
        Ok(starts_before.then(|| (checkpoint, first_ids.unwrap_or_default())))
    }

    async fn tiles(
        &self,
        tenant: &TenantId,
        end: DateTime<Utc>,
        wanted: &[(u32, u64)],
    ) -> Result<Vec<StoredTile>, BackendError> {
        let tables = self.seal_tables()?;
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<HashMap<String, AttributeValue>> = wanted
            .iter()
            .map(|(level, index)| {
                HashMap::from([
                    (proof_attr::PK.to_owned(), string(tiles_pk(tenant, end))),
                    (proof_attr::SK.to_owned(), string(tile_sk(*level, *index))),
                ])
            })
            .collect();
        let mut pending = Some(HashMap::from([(
            tables.proofs.clone(),
            KeysAndAttributes::builder().set_keys(Some(keys)).consistent_read(true).build().expect("keys are set"),
        )]));
        let mut tiles = Vec::new();
        while let Some(request) = pending.take().filter(|r| !r.is_empty()) {
            let out = self
                .client
                .batch_get_item()
                .set_request_items(Some(request))
                .send()
                .await
                .map_err(|e| classify("BatchGetItem", e))?;
            for item in out.responses.unwrap_or_default().into_values().flatten() {
                let sk = item.get(proof_attr::SK).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                let (level, index) = sk.split_once('#').ok_or_else(|| corrupt("tile", "a bad sort key"))?;
                let hashes = item.get(proof_attr::HASHES).and_then(|v| v.as_b().ok()).map(|b| hashes_of(b.as_ref()));
                let ids = item.get(proof_attr::IDS).and_then(|v| v.as_b().ok()).map(|b| ids_of(b.as_ref()));
                tiles.push(StoredTile {
                    tile: Tile {
                        level: level.parse().map_err(|e| corrupt("tile", e))?,
                        index: index.parse().map_err(|e| corrupt("tile", e))?,
                        hashes: hashes.unwrap_or_default(),
                    },
                    ids: ids.unwrap_or_default(),
                });
            }
            pending = out.unprocessed_keys;
        }
        Ok(tiles)
    }

    async fn cursor(&self) -> Result<Option<HourBucket>, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.counters_table)
            .key(counter_attr::PK, string(CURSOR_PK))
            .key(counter_attr::SK, string(CURSOR_PK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        let hour = out.item.and_then(|i| i.get(CURSOR_HOUR)?.as_n().ok()?.parse::<i64>().ok());
        Ok(hour.map(HourBucket::from_index))
    }

    async fn set_cursor(&self, hour: HourBucket) -> Result<(), BackendError> {
        self.client
            .put_item()
            .table_name(&self.counters_table)
            .item(counter_attr::PK, string(CURSOR_PK))
            .item(counter_attr::SK, string(CURSOR_PK))
            // Not `hour`: the cursor is no counter and stays out of `by_hour`.
            .item(CURSOR_HOUR, number(hour.index()))
            .send()
            .await
            .map_err(|e| classify("PutItem", e))?;
        Ok(())
    }
}
