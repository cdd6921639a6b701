//! Incident timeline lines, written by every file that changes or links an
//! incident (incidents, problems, changes, the outbox), in the caller's transaction.

use rusqlite::{Transaction, params};

pub(super) fn add_timeline(
    transaction: &Transaction<'_>,
    id: i64,
    ts_ms: i64,
    kind: &str,
    actor: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    transaction
        .prepare_cached("INSERT INTO incident_timeline (incident_id, ts_ms, kind, actor, detail) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![id, ts_ms, kind, actor, detail])?;
    Ok(())
}
