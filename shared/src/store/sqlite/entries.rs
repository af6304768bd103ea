//! Entries on SQLite: one row per entry (its JSON, and the columns the indexes need), the hourly
//! counters moved in the same transaction, the tenant's seal marker checked in it too.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::{SqliteStore, WriteError, backend};
use crate::backend::BackendError;
use crate::domain::{
    AuditLogEntry, Counts, HourBucket, HourlyCounts, IndexKey, QueryPlan, StatsRange, StoredPage, TenantId,
};
use crate::erasure::Erasure;
use crate::retention::HELD_UNTIL;
use crate::store::{AuditStore, StoreError};

/// Why a write was refused (before it changed anything).
enum Refusal {
    Exists,
    Sealed,
    NotFound,
    Changed,
}

impl Refusal {
    fn error(self, id: Uuid) -> StoreError {
        match self {
            Refusal::Exists => StoreError::AlreadyExists(id),
            Refusal::Sealed => StoreError::Sealed(id),
            Refusal::NotFound => StoreError::NotFound(id),
            Refusal::Changed => StoreError::Changed(id),
        }
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, format!("{what}: {e}").into())
}

pub(super) fn decode(body: &str) -> Result<AuditLogEntry, rusqlite::Error> {
    serde_json::from_str(body).map_err(|e| corrupt("a stored entry", e))
}

/// Adds the entries' counts to their tenant-hours' counters — one read and one write per counter,
/// however many entries it gains — each kept as long as its last entry.
fn count(conn: &Connection, entries: &[&AuditLogEntry]) -> Result<(), rusqlite::Error> {
    let mut by_hour: BTreeMap<(&str, i64), (Counts, i64)> = BTreeMap::new();
    for entry in entries {
        let key = (entry.tenant_id.as_str(), HourBucket::of(entry.timestamp).index());
        let (counts, expires_at) = by_hour.entry(key).or_insert((Counts::default(), entry.expires_at));
        counts.add(&Counts::of(entry));
        *expires_at = (*expires_at).max(entry.expires_at);
    }
    for ((tenant, hour), (added, expires_at)) in by_hour {
        let existing: Option<(String, i64)> = conn
            .prepare_cached("SELECT counts, expires_at FROM counters WHERE tenant = ?1 AND hour = ?2")?
            .query_row(params![tenant, hour], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let (mut counts, kept_until) = match existing {
            Some((text, expires)) => {
                (serde_json::from_str::<Counts>(&text).map_err(|e| corrupt("a counter", e))?, expires)
            }
            None => (Counts::default(), expires_at),
        };
        counts.add(&added);
        let text = serde_json::to_string(&counts).map_err(|e| corrupt("a counter", e))?;
        conn.prepare_cached(
            "INSERT INTO counters (tenant, hour, counts, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, hour) DO UPDATE SET counts = excluded.counts, expires_at = excluded.expires_at",
        )?
        .execute(params![tenant, hour, text, kept_until.max(expires_at)])?;
    }
    Ok(())
}

/// Stores `entry` and counts it.
fn put(conn: &Connection, entry: &AuditLogEntry, body: &str) -> Result<(), WriteError> {
    insert(conn, entry, body)?;
    count(conn, &[entry])?;
    Ok(())
}

/// Inserts `entry` as `body` (its JSON, made before the writer's turn: the writer is the one
/// thread every write waits for), uncounted. A refusal comes before any change: the seal marker
/// is only read, and a refused INSERT changes nothing.
fn insert(conn: &Connection, entry: &AuditLogEntry, body: &str) -> Result<(), WriteError> {
    let tenant = entry.tenant_id.as_str();
    let id = entry.id.as_bytes().as_slice();
    let closed_before: Option<i64> = conn
        .prepare_cached("SELECT closed_before FROM seal_state WHERE tenant = ?1")?
        .query_row([tenant], |row| row.get(0))
        .optional()?
        .flatten();
    if closed_before.is_some_and(|c| entry.timestamp.timestamp_millis() < c) {
        // An id that exists is the answer a retry needs, even in a period sealed since.
        let exists = conn
            .prepare_cached("SELECT 1 FROM entries WHERE tenant = ?1 AND id = ?2")?
            .query_row(params![tenant, id], |_| Ok(()))
            .optional()?;
        return Err(WriteError::Refused(Box::new(if exists.is_some() { Refusal::Exists } else { Refusal::Sealed })));
    }
    // The unique index refuses an id that exists: no read first.
    let inserted = conn
        .prepare_cached(
            "INSERT INTO entries (tenant, id, expires_at, entity, project, user, action, type, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            tenant,
            id,
            entry.expires_at,
            entry.entity_id,
            entry.project_id,
            entry.user_id,
            entry.action.as_str(),
            entry.entity_type.as_str(),
            body
        ]);
    match inserted {
        Ok(_) => {}
        Err(e) if e.sqlite_error().is_some_and(|f| f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE) => {
            return Err(WriteError::Refused(Box::new(Refusal::Exists)));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Removes up to `step` entries expired at `now` (epoch seconds), oldest expiry first.
pub(super) fn purge(conn: &Connection, now: i64, step: usize) -> Result<usize, WriteError> {
    let removed = conn.execute(
        "DELETE FROM entries WHERE rowid IN
           (SELECT rowid FROM entries WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)",
        params![now, step as i64],
    )?;
    // SQLite gives the next entry the largest rowid plus one: with the newest rows gone, that
    // rowid may be one the streams' router has passed. It goes back to the newest row left (every
    // row up to it was routed, none after it exists), so the next entry is ahead of it.
    conn.execute(
        "UPDATE route_cursor SET position = MIN(position, (SELECT COALESCE(MAX(rowid), 0) FROM entries))",
        [],
    )?;
    conn.execute("DELETE FROM counters WHERE expires_at <= ?1", [now])?;
    conn.execute("DELETE FROM tiles WHERE expires_at <= ?1", [now])?;
    conn.execute("DELETE FROM idempotency WHERE expires_at <= ?1", [now])?;
    Ok(removed)
}

/// How the SQL reads a plan's index: the index named (the planner, without statistics, would
/// walk the primary key newest first and filter — a scan for a rare entity), and the column and
/// value that pick its partition.
fn index_clause(index: &IndexKey) -> (&'static str, Option<String>) {
    match index {
        IndexKey::Tenant => (" INDEXED BY entries_by_id WHERE", None),
        IndexKey::Entity(v) => (" INDEXED BY entries_by_entity WHERE entity = ? AND", Some(v.clone())),
        IndexKey::Project(v) => (" INDEXED BY entries_by_project WHERE project = ? AND", Some(v.clone())),
        IndexKey::User(v) => (" INDEXED BY entries_by_user WHERE user = ? AND", Some(v.clone())),
        IndexKey::Action(a) => (" INDEXED BY entries_by_action WHERE action = ? AND", Some(a.as_str().to_owned())),
        IndexKey::EntityType(t) => (" INDEXED BY entries_by_type WHERE type = ? AND", Some(t.as_str().to_owned())),
    }
}

fn query(conn: &Connection, plan: &QueryPlan, now: i64) -> Result<StoredPage, rusqlite::Error> {
    let (index, value) = index_clause(&plan.index);
    let mut sql = format!("SELECT body FROM entries{index} tenant = ? AND id BETWEEN ? AND ? AND expires_at > ?");
    let mut args: Vec<Box<dyn rusqlite::ToSql>> =
        value.map(|v| Box::new(v) as Box<dyn rusqlite::ToSql>).into_iter().collect();
    args.extend([
        Box::new(plan.tenant.as_str().to_owned()) as Box<dyn rusqlite::ToSql>,
        Box::new(plan.lowest.as_bytes().to_vec()),
        Box::new(plan.highest.as_bytes().to_vec()),
        Box::new(now),
    ]);
    let r = &plan.residual;
    if let Some(a) = r.action {
        sql.push_str(" AND action = ?");
        args.push(Box::new(a.as_str()));
    }
    if let Some(t) = r.entity_type {
        sql.push_str(" AND type = ?");
        args.push(Box::new(t.as_str()));
    }
    if let Some(u) = &r.user_id {
        sql.push_str(" AND user = ?");
        args.push(Box::new(u.clone()));
    }
    if let Some(p) = &r.project_id {
        sql.push_str(" AND project = ?");
        args.push(Box::new(p.clone()));
    }
    sql.push_str(" ORDER BY id DESC LIMIT ? OFFSET ?");
    args.push(Box::new(plan.take as i64 + 1));
    args.push(Box::new(plan.skip as i64));
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement
        .query_map(rusqlite::params_from_iter(args.iter().map(|a| a.as_ref())), |row| row.get::<_, String>(0))?;
    let mut entries = Vec::with_capacity(plan.take.min(1000) + 1);
    for body in rows {
        entries.push(decode(&body?)?);
    }
    let more = entries.len() > plan.take;
    entries.truncate(plan.take);
    Ok(StoredPage::after_last(entries, more))
}

/// The batch job refuses nothing as a whole (each entry answers for itself).
fn unreachable_refusal(entries: &[AuditLogEntry]) -> Vec<Result<(), StoreError>> {
    let error = BackendError::Internal("a batch cannot be refused as a whole".into());
    entries.iter().map(|_| Err(error.clone().into())).collect()
}

#[async_trait]
impl AuditStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn put(&self, entry: &AuditLogEntry) -> Result<(), StoreError> {
        let owned = entry.clone();
        let body = serde_json::to_string(entry).map_err(|e| BackendError::Internal(format!("an entry: {e}")))?;
        match self.write::<(), Refusal>(move |conn| put(conn, &owned, &body)).await? {
            Ok(()) => Ok(()),
            Err(refusal) => Err(refusal.error(entry.id)),
        }
    }

    async fn put_all(&self, entries: &[AuditLogEntry]) -> Vec<Result<(), StoreError>> {
        let bodies: Result<Vec<String>, _> = entries.iter().map(serde_json::to_string).collect();
        let bodies = match bodies {
            Ok(bodies) => bodies,
            Err(e) => {
                let error = BackendError::Internal(format!("an entry: {e}"));
                return entries.iter().map(|_| Err(error.clone().into())).collect();
            }
        };
        let owned = entries.to_vec();
        // One job, one commit. No savepoint per entry: a refused entry changed nothing (see
        // `insert`), and any other failure fails the whole job, rolled back by the writer.
        let written = self
            .write::<Vec<Option<Refusal>>, ()>(move |conn| {
                let mut outcomes = Vec::with_capacity(owned.len());
                let mut stored = Vec::with_capacity(owned.len());
                for (entry, body) in owned.iter().zip(&bodies) {
                    match insert(conn, entry, body) {
                        Ok(()) => {
                            stored.push(entry);
                            outcomes.push(None);
                        }
                        Err(WriteError::Refused(reason)) => match reason.downcast::<Refusal>() {
                            Ok(refusal) => outcomes.push(Some(*refusal)),
                            Err(_) => return Err(corrupt("a refusal", "of another kind").into()),
                        },
                        Err(WriteError::Sql(e)) => return Err(e.into()),
                    }
                }
                count(conn, &stored)?;
                Ok(outcomes)
            })
            .await;
        match written {
            Ok(Ok(outcomes)) => outcomes
                .into_iter()
                .zip(entries)
                .map(|(refusal, entry)| refusal.map_or(Ok(()), |r| Err(r.error(entry.id))))
                .collect(),
            Ok(Err(())) => unreachable_refusal(entries),
            Err(e) => entries.iter().map(|_| Err(e.clone().into())).collect(),
        }
    }

    async fn erase(&self, tenant: &TenantId, id: Uuid, erasure: &Erasure) -> Result<(), StoreError> {
        let (tenant, erasure) = (tenant.as_str().to_owned(), erasure.clone());
        let now = Utc::now().timestamp();
        let refused = |r: Refusal| WriteError::Refused(Box::new(r));
        let written = self
            .write::<(), Refusal>(move |conn| {
                let row: Option<(i64, String)> = conn
                    .prepare_cached(
                        "SELECT rowid, body FROM entries INDEXED BY entries_by_id
                         WHERE tenant = ?1 AND id = ?2 AND expires_at > ?3",
                    )?
                    .query_row(params![tenant, id.as_bytes().as_slice(), now], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?;
                let Some((rowid, body)) = row else { return Err(refused(Refusal::NotFound)) };
                let mut entry = decode(&body)?;
                // A hold placed since the erasure was planned keeps the entry as it is.
                if entry.integrity != erasure.before || entry.expires_at == HELD_UNTIL {
                    return Err(refused(Refusal::Changed));
                }
                erasure.apply(&mut entry);
                let body = serde_json::to_string(&entry).map_err(|e| corrupt("an entry", e))?;
                conn.prepare_cached("UPDATE entries SET user = ?1, body = ?2 WHERE rowid = ?3")?.execute(params![
                    entry.user_id,
                    body,
                    rowid
                ])?;
                Ok(())
            })
            .await?;
        written.map_err(|r| r.error(id))
    }

    async fn set_expiry(&self, tenant: &TenantId, id: Uuid, expires_at: i64) -> Result<(), StoreError> {
        let tenant = tenant.as_str().to_owned();
        let now = Utc::now().timestamp();
        let written = self
            .write::<(), Refusal>(move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE entries INDEXED BY entries_by_id
                         SET expires_at = ?1, body = json_set(body, '$.expires_at', ?1)
                         WHERE tenant = ?2 AND id = ?3 AND expires_at > ?4",
                    )?
                    .execute(params![expires_at, tenant, id.as_bytes().as_slice(), now])?;
                if changed == 1 { Ok(()) } else { Err(WriteError::Refused(Box::new(Refusal::NotFound))) }
            })
            .await?;
        written.map_err(|r| r.error(id))
    }

    async fn get(&self, tenant: &TenantId, id: Uuid, now: DateTime<Utc>) -> Result<Option<AuditLogEntry>, StoreError> {
        let tenant = tenant.as_str().to_owned();
        let now = now.timestamp();
        let body = self
            .read(move |conn| {
                conn.query_row(
                    "SELECT body FROM entries WHERE tenant = ?1 AND id = ?2 AND expires_at > ?3",
                    params![tenant, id.as_bytes().as_slice(), now],
                    |row| row.get::<_, String>(0),
                )
                .optional()
            })
            .await?;
        Ok(body.map(|b| decode(&b)).transpose().map_err(|e| backend(&e))?)
    }

    async fn query(&self, plan: &QueryPlan, now: DateTime<Utc>) -> Result<StoredPage, StoreError> {
        if plan.is_empty() {
            return Ok(StoredPage::default());
        }
        let plan = plan.clone();
        Ok(self.read(move |conn| query(conn, &plan, now.timestamp())).await?)
    }

    async fn counts(
        &self,
        tenant: &TenantId,
        range: &StatsRange,
        now: DateTime<Utc>,
    ) -> Result<HourlyCounts, StoreError> {
        let tenant = tenant.as_str().to_owned();
        let (first, last) =
            (range.first.map_or(i64::MIN, HourBucket::index), range.last.map_or(i64::MAX, HourBucket::index));
        let now = now.timestamp();
        let rows = self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT hour, counts FROM counters WHERE tenant = ?1 AND hour BETWEEN ?2 AND ?3 AND expires_at > ?4",
                )?;
                let rows = statement.query_map(params![tenant, first, last, now], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let mut hourly = HourlyCounts::new();
        for (hour, text) in rows {
            let counts: Counts = serde_json::from_str(&text)
                .map_err(|e| BackendError::Internal(format!("a stored counter could not be read: {e}")))?;
            hourly.insert(HourBucket::from_index(hour), counts);
        }
        Ok(hourly)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(()))).await?)
    }
}
