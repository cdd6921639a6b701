//! Dependency holds: a child incident whose parent check has no open
//! incident yet waits (suppressed) for `hold` before it pages, because child
//! and parent usually breach together and the child is often first.
//!
//! Everything lives in the incident's row (`held_until_ms`, `held_for`), so a
//! hold survives a restart: the incidents task's tick ends holds that ran out
//! while the collector was down exactly as if it had stayed up, and an
//! incident that should page still pages.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::timeline::add_timeline;
use crate::domain::{IncidentEvent, IncidentState, Labels, ParentCheck};

/// The incident that just opened, as holds need it (`incidents` builds it;
/// this file must not import `incidents`, which calls it).
#[derive(Debug, Clone, Copy)]
pub(super) struct Opening<'a> {
    pub id: i64,
    pub rule: &'a str,
    pub labels: &'a Labels,
    pub host: &'a str,
    pub agent_id: &'a str,
    pub opened_at_ms: i64,
    /// Parent checks it depends on, and how long it waits for one.
    pub parents: &'a [ParentCheck],
    pub hold_ms: i64,
}

impl Opening<'_> {
    fn is(&self, check: &ParentCheck) -> bool {
        check.matches(self.rule, self.labels, self.host, self.agent_id)
    }
}

/// "gw-down{target="a"} or pdu-down".
pub(super) fn describe(parents: &[ParentCheck]) -> String {
    parents
        .iter()
        .map(ParentCheck::describe)
        .collect::<Vec<_>>()
        .join(" or ")
}

pub(super) fn seconds(ms: i64) -> String {
    let seconds = ms as f64 / 1000.0;
    if seconds.fract() == 0.0 {
        format!("{seconds:.0}s")
    } else {
        format!("{seconds:.1}s")
    }
}

/// Holds the page of the just-opened incident `id` if it depends on parent
/// checks (none open) and has a hold. An incident that is itself one of its
/// parent checks (the gateway tagged like the hosts behind it) never waits.
pub(super) fn hold(transaction: &Transaction<'_>, new: &Opening<'_>) -> rusqlite::Result<()> {
    if new.hold_ms <= 0 || new.parents.is_empty() {
        return Ok(());
    }
    if new.parents.iter().any(|parent| new.is(parent)) {
        return Ok(());
    }
    let id = new.id;
    let until = new.opened_at_ms + new.hold_ms;
    let parents = serde_json::to_string(&new.parents)
        .map_err(|error| rusqlite::Error::ToSqlConversionFailure(error.into()))?;
    transaction.execute(
        "UPDATE incidents SET suppressed = 1, held_until_ms = ?2, held_for = ?3 WHERE id = ?1",
        params![id, until, parents],
    )?;
    add_timeline(
        transaction,
        id,
        new.opened_at_ms,
        "waiting",
        "dependencies",
        &format!(
            "Waiting up to {} for parent {} to open before paging.",
            seconds(new.hold_ms),
            describe(new.parents)
        ),
    )
}

/// Incidents waiting for a parent that the just-opened incident `parent_id`
/// (described by `new`) is: they become suppressed, caused by it, and never
/// page unless it resolves while they still breach.
pub(super) fn adopt_waiting_children(
    transaction: &Transaction<'_>,
    new: &Opening<'_>,
) -> rusqlite::Result<()> {
    let parent_id = new.id;
    let waiting: Vec<(i64, String)> = transaction
        .prepare_cached(
            "SELECT id, held_for FROM incidents
             WHERE held_until_ms IS NOT NULL AND state != 'resolved' AND id != ?1",
        )?
        .query_map([parent_id], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (child, held_for) in waiting {
        let Ok(parents) = serde_json::from_str::<Vec<ParentCheck>>(&held_for) else {
            continue;
        };
        if !parents.iter().any(|parent| new.is(parent)) {
            continue;
        }
        transaction.execute(
            "UPDATE incidents SET caused_by = ?2, held_until_ms = NULL, held_for = NULL WHERE id = ?1",
            params![child, parent_id],
        )?;
        add_timeline(
            transaction,
            child,
            new.opened_at_ms,
            "suppressed",
            "dependencies",
            &format!(
                "Suppressed: caused by #{parent_id} (on {}), which opened while this waited for it; no one is paged.",
                new.host
            ),
        )?;
    }
    Ok(())
}

/// Whether a hold has run out by `now_ms` (or a resolved incident's hold is left to clear).
pub(super) fn any_due(connection: &Connection, now_ms: i64) -> rusqlite::Result<bool> {
    Ok(connection
        .query_row(
            "SELECT 1 FROM incidents WHERE held_until_ms IS NOT NULL AND held_until_ms <= ?1 LIMIT 1",
            [now_ms],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Ends the holds that ran out by `now_ms`: the incident pages (journaled as
/// `released`, delivered as its opening) unless it was acknowledged meanwhile.
/// Returns the ids of incidents released unacknowledged, to announce.
pub(super) fn expire(transaction: &Transaction<'_>, now_ms: i64) -> rusqlite::Result<Vec<i64>> {
    // Resolved while waiting: never paged, and stays `suppressed` to say so.
    transaction.execute(
        "UPDATE incidents SET held_until_ms = NULL, held_for = NULL
         WHERE held_until_ms IS NOT NULL AND held_until_ms <= ?1 AND state = 'resolved'",
        [now_ms],
    )?;
    let due: Vec<(i64, IncidentState, i64, i64, String)> = transaction
        .prepare_cached(
            "SELECT id, state, opened_at_ms, held_until_ms, held_for FROM incidents
             WHERE held_until_ms IS NOT NULL AND held_until_ms <= ?1 ORDER BY id",
        )?
        .query_map([now_ms], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut released = Vec::new();
    for (id, state, opened_ms, until_ms, held_for) in due {
        transaction.execute(
            "UPDATE incidents SET suppressed = 0, held_until_ms = NULL, held_for = NULL WHERE id = ?1",
            [id],
        )?;
        let parents = serde_json::from_str::<Vec<ParentCheck>>(&held_for)
            .map(|parents| describe(&parents))
            .unwrap_or_else(|_| "its parent".into());
        // Someone who acknowledged it already knows: released, but not paged.
        let paging = state == IncidentState::Open;
        let detail = if paging {
            format!(
                "Paged after waiting {} for parent {parents}, which did not open.",
                seconds(until_ms - opened_ms)
            )
        } else {
            format!(
                "Waited {} for parent {parents}, which did not open; acknowledged meanwhile, so not paged.",
                seconds(until_ms - opened_ms)
            )
        };
        add_timeline(
            transaction,
            id,
            now_ms,
            IncidentEvent::Released.name(),
            "dependencies",
            &detail,
        )?;
        if paging {
            super::outbox::journal(transaction, id, IncidentEvent::Released, now_ms)?;
            released.push(id);
        }
    }
    Ok(released)
}
