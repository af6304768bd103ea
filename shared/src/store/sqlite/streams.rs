//! Log streams on SQLite, in the same file as the entries: each stream's settings (its secrets
//! sealed inside them) and figures, the jobs waiting to be delivered, and the dead letters. Jobs
//! outlive a restart of the gateway, so nothing queued is lost with the process. Routing is kept
//! here too: the router reads the entries stored after its position and queues their jobs with
//! the new position in one transaction, so an entry stored is routed once, whatever stops when.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::entries::decode;
use super::{SqliteStore, WriteError};
use crate::backend::BackendError;
use crate::domain::{AuditLogEntry, TenantId};
use crate::streams::delivery::{Job, Outcome};
use crate::streams::destination::{Destination, MAX_STREAMS_PER_TENANT};
use crate::streams::queue::{DeadLetter, JobQueue, JobSink, dead_letter_of};
use crate::streams::store::{Failing, Figures, FiguresDelta, StoredStream, StreamStore, StreamStoreError};

fn corrupt(what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, what.to_owned(), rusqlite::types::Type::Text)
}

fn stored(body: &str, figures: &str) -> Result<StoredStream, rusqlite::Error> {
    Ok(StoredStream {
        stream: serde_json::from_str(body).map_err(|_| corrupt("a stream"))?,
        figures: serde_json::from_str(figures).map_err(|_| corrupt("a stream's figures"))?,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, BackendError> {
    serde_json::to_string(value).map_err(|e| BackendError::Internal(format!("to JSON: {e}")))
}

fn figures_of(conn: &Connection, tenant: &str, id: &str) -> Result<Option<Figures>, rusqlite::Error> {
    conn.prepare_cached("SELECT figures FROM streams WHERE tenant = ?1 AND id = ?2")?
        .query_row(params![tenant, id], |row| row.get::<_, String>(0))
        .optional()?
        .map(|f| serde_json::from_str(&f).map_err(|_| corrupt("a stream's figures")))
        .transpose()
}

fn put_figures(conn: &Connection, tenant: &str, id: &str, figures: &Figures) -> Result<(), WriteError> {
    let text = serde_json::to_string(figures).map_err(|_| corrupt("a stream's figures"))?;
    conn.prepare_cached("UPDATE streams SET figures = ?3, failing = ?4 WHERE tenant = ?1 AND id = ?2")?
        .execute(params![tenant, id, text, figures.failing.is_some()])?;
    Ok(())
}

#[async_trait]
impl StreamStore for SqliteStore {
    async fn create(&self, stream: &Destination) -> Result<(), StreamStoreError> {
        let (tenant, id, body) = (stream.tenant_id.as_str().to_owned(), stream.id.to_string(), to_json(stream)?);
        let version = stream.version as i64;
        let written = self
            .write::<(), ()>(move |conn| {
                let count: i64 = conn
                    .prepare_cached("SELECT count(*) FROM streams WHERE tenant = ?1")?
                    .query_row([&tenant], |row| row.get(0))?;
                if count as usize >= MAX_STREAMS_PER_TENANT {
                    return Err(WriteError::Refused(Box::new(())));
                }
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO streams (tenant, id, version, body) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![tenant, id, version, body])?;
                Ok(())
            })
            .await?;
        written.map_err(|()| StreamStoreError::Limit)
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<StoredStream>, BackendError> {
        let tenant = tenant.as_str().to_owned();
        self.read(move |conn| {
            let mut query = conn.prepare_cached("SELECT body, figures FROM streams WHERE tenant = ?1 ORDER BY id")?;
            let rows = query.query_map([tenant], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
            rows.map(|row| row.and_then(|(body, figures)| stored(&body, &figures))).collect()
        })
        .await
    }

    async fn get(&self, tenant: &TenantId, id: Uuid) -> Result<Option<StoredStream>, BackendError> {
        let (tenant, id) = (tenant.as_str().to_owned(), id.to_string());
        self.read(move |conn| {
            conn.prepare_cached("SELECT body, figures FROM streams WHERE tenant = ?1 AND id = ?2")?
                .query_row(params![tenant, id], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
                .optional()?
                .map(|(body, figures)| stored(&body, &figures))
                .transpose()
        })
        .await
    }

    async fn replace(&self, stream: &Destination) -> Result<bool, BackendError> {
        let (tenant, id, body) = (stream.tenant_id.as_str().to_owned(), stream.id.to_string(), to_json(stream)?);
        let (next, read) = (stream.version as i64, stream.version as i64 - 1);
        let written = self
            .write::<usize, ()>(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE streams SET version = ?3, body = ?4 WHERE tenant = ?1 AND id = ?2 AND version = ?5",
                    )?
                    .execute(params![tenant, id, next, body, read])?)
            })
            .await?;
        Ok(written == Ok(1))
    }

    async fn delete(&self, tenant: &TenantId, id: Uuid) -> Result<bool, BackendError> {
        let (tenant, id) = (tenant.as_str().to_owned(), id.to_string());
        let deleted = self
            .write::<usize, ()>(move |conn| {
                Ok(conn
                    .prepare_cached("DELETE FROM streams WHERE tenant = ?1 AND id = ?2")?
                    .execute(params![tenant, id])?)
            })
            .await?;
        Ok(deleted == Ok(1))
    }

    async fn record(&self, tenant: &TenantId, id: Uuid, delta: &FiguresDelta) -> Result<(), BackendError> {
        let (tenant, id, delta) = (tenant.as_str().to_owned(), id.to_string(), delta.clone());
        self.write::<(), ()>(move |conn| {
            if let Some(mut figures) = figures_of(conn, &tenant, &id)? {
                figures.apply(&delta);
                put_figures(conn, &tenant, &id, &figures)?;
            }
            Ok(())
        })
        .await?
        .map_err(|()| BackendError::Internal("figures cannot be refused".into()))
    }

    async fn set_failing(&self, tenant: &TenantId, id: Uuid, failing: Option<&Failing>) -> Result<bool, BackendError> {
        let (tenant, id, failing) = (tenant.as_str().to_owned(), id.to_string(), failing.cloned());
        let changed = self
            .write::<bool, ()>(move |conn| {
                let Some(mut figures) = figures_of(conn, &tenant, &id)? else { return Ok(false) };
                if figures.failing.is_some() == failing.is_some() {
                    return Ok(false);
                }
                figures.failing = failing;
                put_figures(conn, &tenant, &id, &figures)?;
                Ok(true)
            })
            .await?;
        Ok(changed == Ok(true))
    }

    async fn failing_count(&self) -> Result<u64, BackendError> {
        self.read(|conn| {
            conn.query_row("SELECT count(*) FROM streams WHERE failing = 1", [], |row| row.get::<_, i64>(0))
        })
        .await
        .map(|n| n as u64)
    }
}

/// Entries stored after the router's position, as [`SqliteStore::unrouted`] reads them.
#[derive(Debug)]
pub struct Unrouted {
    /// The position read from.
    pub from: i64,
    /// The position these entries take the router to.
    pub through: i64,
    /// The entries in between of tenants with streams, in the order they were stored.
    pub entries: Vec<AuditLogEntry>,
}

impl SqliteStore {
    /// The entries stored after the streams' router's position, over at most `window` rows: only
    /// those of tenants with a stream are read (the rest only move the position on).
    pub async fn unrouted(&self, window: u32) -> Result<Unrouted, BackendError> {
        self.read(move |conn| {
            let from: i64 = conn.query_row("SELECT position FROM route_cursor", [], |row| row.get(0))?;
            let last: i64 = conn.query_row("SELECT COALESCE(MAX(rowid), 0) FROM entries", [], |row| row.get(0))?;
            let through = last.min(from + i64::from(window)).max(from);
            let mut query = conn.prepare_cached(
                "SELECT body FROM entries WHERE rowid > ?1 AND rowid <= ?2 \
                 AND tenant IN (SELECT tenant FROM streams) ORDER BY rowid",
            )?;
            let entries = query
                .query_map(params![from, through], |row| row.get::<_, String>(0))?
                .map(|body| decode(&body?))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Unrouted { from, through, entries })
        })
        .await
    }

    /// Queues `jobs` and moves the router's position from `from` to `through`, together. Answers
    /// `false`, queuing nothing, if the position is no longer `from`.
    pub async fn enqueue_routed(&self, jobs: &[Job], from: i64, through: i64) -> Result<bool, BackendError> {
        let jobs = jobs.to_vec();
        let written = self
            .write::<(), ()>(move |conn| {
                let moved =
                    conn.execute("UPDATE route_cursor SET position = ?2 WHERE position = ?1", params![from, through])?;
                if moved != 1 {
                    return Err(WriteError::Refused(Box::new(())));
                }
                insert_jobs(conn, &jobs)
            })
            .await?;
        Ok(written.is_ok())
    }
}

fn insert_jobs(conn: &Connection, jobs: &[Job]) -> Result<(), WriteError> {
    let mut insert = conn
        .prepare_cached("INSERT OR REPLACE INTO stream_jobs (id, stream, visible_at, body) VALUES (?1, ?2, ?3, ?4)")?;
    for job in jobs {
        let body = serde_json::to_string(job).map_err(|_| corrupt("a job"))?;
        insert.execute(params![job.id.to_string(), job.stream_id.to_string(), job.due_at.timestamp_millis(), body])?;
    }
    Ok(())
}

#[async_trait]
impl JobSink for SqliteStore {
    async fn enqueue(&self, jobs: &[Job]) -> Result<(), BackendError> {
        let jobs = jobs.to_vec();
        self.write::<(), ()>(move |conn| insert_jobs(conn, &jobs))
            .await?
            .map_err(|()| BackendError::Internal("a job cannot be refused".into()))
    }
}

#[async_trait]
impl JobQueue for SqliteStore {
    async fn lease(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        busy: &[Uuid],
        lease: Duration,
    ) -> Result<Vec<Job>, BackendError> {
        let busy: Vec<String> = busy.iter().map(Uuid::to_string).collect();
        let (now_ms, until) = (now.timestamp_millis(), (now + lease).timestamp_millis());
        self.write::<Vec<Job>, ()>(move |conn| {
            // Each stream's oldest due job, streams in the order their jobs fell due: one stream's
            // backlog, however long, never hides another stream's due job.
            let mut query = conn.prepare_cached(
                "SELECT j.id, j.stream, j.body FROM stream_jobs j JOIN \
                 (SELECT stream, MIN(visible_at) AS due FROM stream_jobs WHERE visible_at <= ?1 \
                  GROUP BY stream ORDER BY due LIMIT ?2) d \
                 ON j.stream = d.stream AND j.visible_at = d.due ORDER BY d.due",
            )?;
            let rows = query.query_map(params![now_ms, (limit + busy.len()) as i64], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?))
            })?;
            let mut taken: Vec<Job> = Vec::new();
            let mut streams: Vec<String> = busy.clone();
            for row in rows {
                let (id, stream, body) = row?;
                if taken.len() == limit {
                    break;
                }
                if streams.contains(&stream) {
                    continue;
                }
                streams.push(stream);
                let job: Job = serde_json::from_str(&body).map_err(|_| corrupt("a job"))?;
                conn.prepare_cached("UPDATE stream_jobs SET visible_at = ?2 WHERE id = ?1")?
                    .execute(params![id, until])?;
                taken.push(job);
            }
            Ok(taken)
        })
        .await?
        .map_err(|()| BackendError::Internal("a lease cannot be refused".into()))
    }

    async fn settle(&self, job: &Job, outcome: &Outcome) -> Result<(), BackendError> {
        let (id, follow_ups) = (job.id.to_string(), outcome.follow_ups.clone());
        let dead =
            dead_letter_of(job, outcome).map(|d| Ok::<_, BackendError>((to_json(&d.job)?, d.reason))).transpose()?;
        let at = Utc::now().timestamp_millis();
        self.write::<(), ()>(move |conn| {
            conn.prepare_cached("DELETE FROM stream_jobs WHERE id = ?1")?.execute([&id])?;
            insert_jobs(conn, &follow_ups)?;
            if let Some((body, reason)) = dead {
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO stream_dead_letters (id, at, reason, body) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![id, at, reason, body])?;
            }
            Ok(())
        })
        .await?
        .map_err(|()| BackendError::Internal("an outcome cannot be refused".into()))
    }

    async fn depth(&self) -> Result<usize, BackendError> {
        self.read(|conn| conn.query_row("SELECT count(*) FROM stream_jobs", [], |row| row.get::<_, i64>(0)))
            .await
            .map(|n| n as usize)
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, BackendError> {
        self.read(|conn| {
            let mut query = conn.prepare_cached("SELECT body, reason FROM stream_dead_letters ORDER BY at")?;
            let rows = query.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
            rows.map(|row| {
                let (body, reason) = row?;
                Ok(DeadLetter { job: serde_json::from_str(&body).map_err(|_| corrupt("a dead letter"))?, reason })
            })
            .collect()
        })
        .await
    }
}
