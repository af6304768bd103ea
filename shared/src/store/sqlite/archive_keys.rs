//! The archive's keys on SQLite, in the same file as the entries: a row per entry and sealed
//! field, holding its key or, once destroyed, the erasure record that destroyed it.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::params;
use uuid::Uuid;

use super::SqliteStore;
use crate::archive::shred::{ArchiveKeys, EntryKeys, FieldKey, KEY_BYTES, KeySlot};
use crate::backend::BackendError;
use crate::domain::TenantId;

fn slot(key: Option<Vec<u8>>, record: Option<String>) -> Result<KeySlot, rusqlite::Error> {
    let corrupt = |what: &str| rusqlite::Error::InvalidColumnType(0, what.to_owned(), rusqlite::types::Type::Blob);
    match (key, record) {
        (Some(key), None) => {
            Ok(KeySlot::Key(FieldKey(<[u8; KEY_BYTES]>::try_from(key.as_slice()).map_err(|_| corrupt("key"))?)))
        }
        (None, Some(record)) => Ok(KeySlot::Shredded(record.parse().map_err(|_| corrupt("record"))?)),
        _ => Err(corrupt("slot")),
    }
}

/// Every slot of entry `id`.
fn slots(conn: &rusqlite::Connection, tenant: &str, id: &str) -> Result<EntryKeys, rusqlite::Error> {
    let mut query = conn.prepare_cached("SELECT field, key, record FROM archive_keys WHERE tenant = ?1 AND id = ?2")?;
    let rows = query.query_map(params![tenant, id], |row| Ok((row.get::<_, String>(0)?, row.get(1)?, row.get(2)?)))?;
    let mut out = EntryKeys::new();
    for row in rows {
        let (field, key, record) = row?;
        out.insert(field, slot(key, record)?);
    }
    Ok(out)
}

#[async_trait]
impl ArchiveKeys for SqliteStore {
    async fn issue(
        &self,
        tenant: &TenantId,
        wanted: &[(Uuid, Vec<&'static str>)],
    ) -> Result<Vec<EntryKeys>, BackendError> {
        let tenant = tenant.as_str().to_owned();
        let wanted: Vec<(String, Vec<&'static str>)> =
            wanted.iter().map(|(id, f)| (id.to_string(), f.clone())).collect();
        let issued = self
            .write::<Vec<EntryKeys>, ()>(move |conn| {
                let mut out = Vec::with_capacity(wanted.len());
                for (id, fields) in &wanted {
                    for field in fields {
                        // A key or tombstone already there wins.
                        conn.prepare_cached(
                            "INSERT OR IGNORE INTO archive_keys (tenant, id, field, key) VALUES (?1, ?2, ?3, ?4)",
                        )?
                        .execute(params![
                            tenant,
                            id,
                            field,
                            FieldKey::random().0.as_slice()
                        ])?;
                    }
                    out.push(slots(conn, &tenant, id)?);
                }
                Ok(out)
            })
            .await?;
        issued.map_err(|()| BackendError::Internal("archive keys refused".into()))
    }

    async fn keys(&self, tenant: &TenantId, ids: &[Uuid]) -> Result<HashMap<Uuid, EntryKeys>, BackendError> {
        let tenant = tenant.as_str().to_owned();
        let ids = ids.to_vec();
        self.read(move |conn| {
            let mut out = HashMap::new();
            for id in ids {
                let found = slots(conn, &tenant, &id.to_string())?;
                if !found.is_empty() {
                    out.insert(id, found);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn shred(&self, tenant: &TenantId, id: Uuid, fields: &[&str], record: Uuid) -> Result<(), BackendError> {
        let (tenant, id, record) = (tenant.as_str().to_owned(), id.to_string(), record.to_string());
        let fields: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
        self.write::<(), ()>(move |conn| {
            for field in &fields {
                conn.prepare_cached(
                    "INSERT INTO archive_keys (tenant, id, field, record) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (tenant, id, field) DO UPDATE SET key = NULL, record = excluded.record",
                )?
                .execute(params![tenant, id, field, record])?;
            }
            Ok(())
        })
        .await?
        .map_err(|()| BackendError::Internal("archive keys refused".into()))
    }
}
