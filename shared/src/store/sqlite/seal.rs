//! Sealing on SQLite: the seal state beside the entries (the marker every put checks, in the same
//! transaction), checkpoints and cosignatures (only ever inserted), and the trees' tiles (which
//! expire with their period's entries).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::{SqliteStore, WriteError};
use crate::backend::BackendError;
use crate::domain::{HourBucket, TenantId};
use crate::integrity::Hash;
use crate::integrity::checkpoint::Checkpoint;
use crate::integrity::merkle::Tile;
use crate::seal::{Appended, Head, SealState, SealStore, SealedPeriod, StoredTile, WitnessStatus};
use crate::store::memory::merge_status;

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(ms: i64) -> Result<DateTime<Utc>, rusqlite::Error> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt("a stored time", ms))
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, format!("{what}: {e}").into())
}

fn end_of(c: &Checkpoint) -> Result<DateTime<Utc>, rusqlite::Error> {
    DateTime::parse_from_rfc3339(&c.body.end).map(|t| t.to_utc()).map_err(|e| corrupt("a checkpoint's end", e))
}

fn ids_blob(ids: &[Uuid]) -> Vec<u8> {
    ids.iter().flat_map(|id| *id.as_bytes()).collect()
}

fn ids_of(bytes: &[u8]) -> Vec<Uuid> {
    bytes.chunks_exact(16).filter_map(|c| Uuid::from_slice(c).ok()).collect()
}

fn hashes_blob(hashes: &[Hash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

fn hashes_of(bytes: &[u8]) -> Vec<Hash> {
    bytes.chunks_exact(32).filter_map(|c| c.try_into().ok().map(Hash)).collect()
}

fn decode_checkpoint(body: &str) -> Result<Checkpoint, rusqlite::Error> {
    serde_json::from_str(body).map_err(|e| corrupt("a stored checkpoint", e))
}

/// Fills in the cosignatures of `checkpoints`.
fn with_cosignatures(
    conn: &Connection,
    tenant: &str,
    mut checkpoints: Vec<Checkpoint>,
) -> Result<Vec<Checkpoint>, rusqlite::Error> {
    let mut statement =
        conn.prepare_cached("SELECT line FROM cosignatures WHERE tenant = ?1 AND end_ms = ?2 ORDER BY line")?;
    for c in &mut checkpoints {
        let end = millis(end_of(c)?);
        for line in statement.query_map(params![tenant, end], |row| row.get::<_, String>(0))? {
            let line = line?;
            if !c.cosignatures.contains(&line) {
                c.cosignatures.push(line);
            }
        }
    }
    Ok(checkpoints)
}

fn select_checkpoints(
    conn: &Connection,
    tenant: &str,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<Checkpoint>, rusqlite::Error> {
    let mut statement = conn.prepare_cached(sql)?;
    let found = statement
        .query_map(args, |row| row.get::<_, String>(0))?
        .map(|body| decode_checkpoint(&body?))
        .collect::<Result<Vec<_>, _>>()?;
    with_cosignatures(conn, tenant, found)
}

fn append(
    conn: &Connection,
    tenant: &str,
    period: &SealedPeriod,
    previous: Option<&Head>,
) -> Result<Appended, WriteError> {
    let head: Option<(Option<i64>, Option<Vec<u8>>)> = conn
        .query_row("SELECT head_end, head_hash FROM seal_state WHERE tenant = ?1", [tenant], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    let current = head.and_then(|(end, hash)| Some((end?, hash?)));
    let expected = previous.map(|p| (millis(p.end), p.hash.0.to_vec()));
    if current != expected {
        return Ok(Appended::HeadMoved);
    }
    let checkpoint = &period.checkpoint;
    let end = millis(end_of(checkpoint)?);
    let body = serde_json::to_string(&Checkpoint { cosignatures: Vec::new(), ..checkpoint.clone() })
        .map_err(|e| corrupt("a checkpoint", e))?;
    conn.execute(
        "INSERT INTO checkpoints (tenant, end_ms, body, first_ids) VALUES (?1, ?2, ?3, ?4)",
        params![tenant, end, body, ids_blob(&period.first_ids)],
    )?;
    // Tiles go with their period's entries: they expire with the last of them.
    let start = DateTime::parse_from_rfc3339(&checkpoint.body.start)
        .map(|t| t.to_utc())
        .map_err(|e| corrupt("a checkpoint's start", e))?;
    let expires: i64 = conn.query_row(
        "SELECT coalesce(max(expires_at), 0) FROM entries WHERE tenant = ?1 AND id BETWEEN ?2 AND ?3",
        params![
            tenant,
            crate::domain::time::lowest_id_at(start).as_bytes().as_slice(),
            crate::domain::time::highest_id_at(end_of(checkpoint)? - chrono::Duration::milliseconds(1))
                .as_bytes()
                .as_slice()
        ],
        |row| row.get(0),
    )?;
    let mut insert = conn.prepare_cached(
        "INSERT OR REPLACE INTO tiles (tenant, end_ms, level, idx, hashes, ids, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for t in &period.tiles {
        let ids = (!t.ids.is_empty()).then(|| ids_blob(&t.ids));
        insert.execute(params![
            tenant,
            end,
            t.tile.level,
            t.tile.index as i64,
            hashes_blob(&t.tile.hashes),
            ids,
            expires
        ])?;
    }
    conn.execute(
        "INSERT INTO seal_state (tenant, head_end, head_hash, head_total) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tenant) DO UPDATE SET head_end = excluded.head_end, head_hash = excluded.head_hash,
           head_total = excluded.head_total",
        params![tenant, end, checkpoint.link().0.to_vec(), checkpoint.body.total as i64],
    )?;
    Ok(Appended::Done)
}

fn infallible<T>(result: Result<T, ()>) -> Result<T, BackendError> {
    result.map_err(|()| BackendError::Internal("a seal write cannot be refused".into()))
}

/// A tenant's seal markers: columns of `seal_state` that only ever move forward.
#[derive(Clone, Copy)]
enum Marker {
    ClosedBefore,
    Published,
}

impl SqliteStore {
    /// Moves one of the tenant's seal markers forward to `to`; a marker already there or further
    /// stays: markers never move back.
    async fn advance(&self, tenant: &TenantId, marker: Marker, to: DateTime<Utc>) -> Result<(), BackendError> {
        let tenant = tenant.as_str().to_owned();
        let sql = match marker {
            Marker::ClosedBefore => {
                "INSERT INTO seal_state (tenant, closed_before) VALUES (?1, ?2)
                 ON CONFLICT (tenant) DO UPDATE SET closed_before = max(coalesce(closed_before, 0), excluded.closed_before)"
            }
            Marker::Published => {
                "INSERT INTO seal_state (tenant, published) VALUES (?1, ?2)
                 ON CONFLICT (tenant) DO UPDATE SET published = max(coalesce(published, 0), excluded.published)"
            }
        };
        infallible(
            self.write::<(), ()>(move |conn| {
                conn.execute(sql, params![tenant, millis(to)])?;
                Ok(())
            })
            .await?,
        )
    }
}

#[async_trait]
impl SealStore for SqliteStore {
    async fn active_tenants(&self, hour: HourBucket) -> Result<Vec<TenantId>, BackendError> {
        let hour = hour.index();
        let names = self
            .read(move |conn| {
                let mut statement =
                    conn.prepare_cached("SELECT tenant FROM counters WHERE hour = ?1 ORDER BY tenant")?;
                let rows = statement.query_map([hour], |row| row.get::<_, String>(0))?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        Ok(names.iter().filter_map(|t| TenantId::parse(t).ok()).collect())
    }

    async fn seal_state(&self, tenant: &TenantId) -> Result<SealState, BackendError> {
        let tenant = tenant.as_str().to_owned();
        self.read(move |conn| {
            let row: Option<(Option<i64>, Option<i64>, Option<Vec<u8>>, Option<i64>, Option<i64>)> = conn
                .query_row(
                    "SELECT closed_before, head_end, head_hash, head_total, published FROM seal_state WHERE tenant = ?1",
                    [tenant],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)),
                )
                .optional()?;
            let Some((closed, end, hash, total, published)) = row else { return Ok(SealState::default()) };
            let head = match (end, hash, total) {
                (Some(end), Some(hash), Some(total)) => Some(Head {
                    end: time(end)?,
                    hash: Hash(hash.try_into().map_err(|_| corrupt("a head", "not 32 bytes"))?),
                    total: total as u64,
                }),
                _ => None,
            };
            Ok(SealState { closed_before: closed.map(time).transpose()?, head, published: published.map(time).transpose()? })
        })
        .await
    }

    async fn close_before(&self, tenant: &TenantId, before: DateTime<Utc>) -> Result<(), BackendError> {
        self.advance(tenant, Marker::ClosedBefore, before).await
    }

    async fn leaves(
        &self,
        tenant: &TenantId,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, Hash)>, BackendError> {
        let tenant = tenant.as_str().to_owned();
        let low = crate::domain::time::lowest_id_at(start);
        let high = crate::domain::time::highest_id_at(end - chrono::Duration::milliseconds(1));
        let bodies = self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT id, json_extract(body, '$.integrity.leaf_hash') FROM entries
                     WHERE tenant = ?1 AND id BETWEEN ?2 AND ?3 ORDER BY id",
                )?;
                let rows = statement
                    .query_map(params![tenant, low.as_bytes().as_slice(), high.as_bytes().as_slice()], |row| {
                        Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, String>(1)?))
                    })?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        bodies
            .into_iter()
            .map(|(id, leaf)| {
                let id = Uuid::from_slice(&id).map_err(|e| BackendError::Internal(format!("a stored id: {e}")))?;
                let leaf = leaf.parse().map_err(|_| BackendError::Internal("a stored leaf hash".into()))?;
                Ok((id, leaf))
            })
            .collect()
    }

    async fn append(
        &self,
        tenant: &TenantId,
        period: &SealedPeriod,
        previous: Option<&Head>,
    ) -> Result<Appended, BackendError> {
        let (tenant, period, previous) = (tenant.as_str().to_owned(), period.clone(), previous.copied());
        infallible(self.write::<Appended, ()>(move |conn| append(conn, &tenant, &period, previous.as_ref())).await?)
    }

    async fn checkpoints(
        &self,
        tenant: &TenantId,
        after: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<Checkpoint>, BackendError> {
        let tenant = tenant.as_str().to_owned();
        let (after, until) = (after.map_or(i64::MIN, millis), until.map_or(i64::MAX, millis));
        self.read(move |conn| {
            select_checkpoints(
                conn,
                &tenant,
                "SELECT body FROM checkpoints WHERE tenant = ?1 AND end_ms > ?2 AND end_ms <= ?3 ORDER BY end_ms LIMIT ?4",
                &[&tenant, &after, &until, &(limit as i64)],
            )
        })
        .await
    }

    async fn latest_checkpoints(&self, tenant: &TenantId, limit: usize) -> Result<Vec<Checkpoint>, BackendError> {
        let tenant = tenant.as_str().to_owned();
        self.read(move |conn| {
            select_checkpoints(
                conn,
                &tenant,
                "SELECT body FROM checkpoints WHERE tenant = ?1 ORDER BY end_ms DESC LIMIT ?2",
                &[&tenant, &(limit as i64)],
            )
        })
        .await
    }

    async fn add_cosignatures(
        &self,
        tenant: &TenantId,
        end: DateTime<Utc>,
        lines: &[String],
    ) -> Result<(), BackendError> {
        let (tenant, lines) = (tenant.as_str().to_owned(), lines.to_vec());
        infallible(
            self.write::<(), ()>(move |conn| {
                let mut insert = conn
                    .prepare_cached("INSERT OR IGNORE INTO cosignatures (tenant, end_ms, line) VALUES (?1, ?2, ?3)")?;
                for line in &lines {
                    insert.execute(params![tenant, millis(end), line])?;
                }
                Ok(())
            })
            .await?,
        )
    }

    async fn mark_published(&self, tenant: &TenantId, through: DateTime<Utc>) -> Result<(), BackendError> {
        self.advance(tenant, Marker::Published, through).await
    }

    async fn checkpoint_covering(
        &self,
        tenant: &TenantId,
        t: DateTime<Utc>,
    ) -> Result<Option<(Checkpoint, Vec<Uuid>)>, BackendError> {
        let tenant = tenant.as_str().to_owned();
        self.read(move |conn| {
            let found: Option<(String, Vec<u8>)> = conn
                .query_row(
                    "SELECT body, first_ids FROM checkpoints WHERE tenant = ?1 AND end_ms > ?2 ORDER BY end_ms LIMIT 1",
                    params![tenant, millis(t)],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let Some((body, first_ids)) = found else { return Ok(None) };
            let checkpoint = decode_checkpoint(&body)?;
            let starts = DateTime::parse_from_rfc3339(&checkpoint.body.start).is_ok_and(|s| s.to_utc() <= t);
            Ok(starts.then(|| (checkpoint, ids_of(&first_ids))))
        })
        .await
    }

    async fn tiles(
        &self,
        tenant: &TenantId,
        end: DateTime<Utc>,
        wanted: &[(u32, u64)],
    ) -> Result<Vec<StoredTile>, BackendError> {
        let (tenant, wanted) = (tenant.as_str().to_owned(), wanted.to_vec());
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT hashes, ids FROM tiles WHERE tenant = ?1 AND end_ms = ?2 AND level = ?3 AND idx = ?4",
            )?;
            let mut found = Vec::new();
            for (level, index) in wanted {
                let tile: Option<(Vec<u8>, Option<Vec<u8>>)> = statement
                    .query_row(params![tenant, millis(end), level, index as i64], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?;
                if let Some((hashes, ids)) = tile {
                    found.push(StoredTile {
                        tile: Tile { level, index, hashes: hashes_of(&hashes) },
                        ids: ids.map(|b| ids_of(&b)).unwrap_or_default(),
                    });
                }
            }
            Ok(found)
        })
        .await
    }

    async fn witness_status(&self) -> Result<Vec<WitnessStatus>, BackendError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT witness, last_success, last_failure, last_error FROM witness_status ORDER BY witness",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<i64>>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                    row.get(3)?,
                ))
            })?;
            rows.map(|row| {
                let (witness, ok, failed, last_error) = row?;
                Ok(WitnessStatus {
                    witness,
                    last_success: ok.map(time).transpose()?,
                    last_failure: failed.map(time).transpose()?,
                    last_error,
                })
            })
            .collect()
        })
        .await
    }

    async fn record_witness_status(&self, status: &WitnessStatus) -> Result<(), BackendError> {
        let mut kept = self
            .witness_status()
            .await?
            .into_iter()
            .find(|s| s.witness == status.witness)
            .unwrap_or_else(|| WitnessStatus { witness: status.witness.clone(), ..WitnessStatus::default() });
        merge_status(&mut kept, status);
        infallible(
            self.write::<(), ()>(move |conn| {
                conn.execute(
                    "INSERT OR REPLACE INTO witness_status (witness, last_success, last_failure, last_error) VALUES (?1, ?2, ?3, ?4)",
                    params![kept.witness, kept.last_success.map(millis), kept.last_failure.map(millis), kept.last_error],
                )?;
                Ok(())
            })
            .await?,
        )
    }

    async fn cursor(&self) -> Result<Option<HourBucket>, BackendError> {
        let hour: Option<i64> = self
            .read(|conn| conn.query_row("SELECT hour FROM seal_cursor WHERE only = 1", [], |row| row.get(0)).optional())
            .await?;
        Ok(hour.map(HourBucket::from_index))
    }

    async fn set_cursor(&self, hour: HourBucket) -> Result<(), BackendError> {
        let hour = hour.index();
        infallible(
            self.write::<(), ()>(move |conn| {
                conn.execute("INSERT OR REPLACE INTO seal_cursor (only, hour) VALUES (1, ?1)", [hour])?;
                Ok(())
            })
            .await?,
        )
    }
}
