//! Dependency holds on PostgreSQL, with the meaning of SQLite's
//! `store/parent_hold.rs`: a child incident whose parent check has no open
//! incident yet waits (suppressed) for its hold before it pages.
//!
//! The hold lives in the incident's row (`held_until_ms`, `held_for`), so any
//! collector's tick ends it. Adoption (the parent opened in time) and expiry
//! (it did not) are both conditional on the hold still being there, so with
//! several collectors exactly one of them ends a hold, and a released child
//! pages once.

use deadpool_postgres::Transaction;

use super::super::parent_hold::{Opening, describe, seconds};
use super::incident_rows::{add_timeline, get_in, journal};
use super::retry::retrying_conflicts;
use super::{PgError, PgStore, parse_column};
use crate::domain::{IncidentEvent, IncidentRecord, IncidentState, ParentCheck};

fn is(opening: &Opening<'_>, check: &ParentCheck) -> bool {
    check.matches(opening.rule, opening.labels, opening.host, opening.agent_id)
}

/// Holds the page of the just-opened incident if it depends on parent checks
/// (none open) and has a hold. An incident that is itself one of its parent
/// checks (the gateway tagged like the hosts behind it) never waits.
pub(super) async fn hold(transaction: &Transaction<'_>, new: &Opening<'_>) -> Result<(), PgError> {
    if new.hold_ms <= 0 || new.parents.is_empty() {
        return Ok(());
    }
    if new.parents.iter().any(|parent| is(new, parent)) {
        return Ok(());
    }
    let until = new.opened_at_ms + new.hold_ms;
    let parents = serde_json::to_string(new.parents).map_err(|error| PgError::Decode {
        column: "incidents.held_for".to_string(),
        message: error.to_string(),
    })?;
    transaction
        .execute(
            "UPDATE incidents SET suppressed = true, held_until_ms = $2, held_for = $3 WHERE id = $1",
            &[&new.id, &until, &parents],
        )
        .await?;
    add_timeline(
        transaction,
        new.id,
        new.opened_at_ms,
        "waiting",
        "dependencies",
        &format!(
            "Waiting up to {} for parent {} to open before paging.",
            seconds(new.hold_ms),
            describe(new.parents)
        ),
    )
    .await
}

/// Incidents waiting for a parent that the just-opened incident `new` is:
/// they become suppressed, caused by it, and never page unless it resolves
/// while they still breach. A child whose hold another collector expired
/// meanwhile has paged already and is left alone.
pub(super) async fn adopt_waiting_children(
    transaction: &Transaction<'_>,
    new: &Opening<'_>,
) -> Result<(), PgError> {
    let parent_id = new.id;
    let waiting = transaction
        .query(
            "SELECT id, held_for FROM incidents
             WHERE held_until_ms IS NOT NULL AND state <> 'resolved' AND id <> $1 ORDER BY id",
            &[&parent_id],
        )
        .await?;
    for row in waiting {
        let (child, held_for): (i64, Option<&str>) = (row.get(0), row.get(1));
        let Some(Ok(parents)) = held_for.map(serde_json::from_str::<Vec<ParentCheck>>) else {
            continue;
        };
        if !parents.iter().any(|parent| is(new, parent)) {
            continue;
        }
        let adopted = transaction
            .execute(
                "UPDATE incidents SET caused_by = $2, held_until_ms = NULL, held_for = NULL
                 WHERE id = $1 AND held_until_ms IS NOT NULL AND state <> 'resolved'",
                &[&child, &parent_id],
            )
            .await?;
        if adopted == 0 {
            continue;
        }
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
        )
        .await?;
    }
    Ok(())
}

/// A hold that ran out, as it was before this transaction ended it.
struct Expired {
    id: i64,
    state: IncidentState,
    opened_ms: i64,
    until_ms: i64,
    held_for: Option<String>,
}

/// Ends the holds that ran out by `now_ms`: the incident pages (journaled as
/// `released`) unless it was acknowledged meanwhile. Returns the ids of the
/// incidents released unacknowledged. The rows are locked and re-checked
/// (`FOR UPDATE` re-reads a row another collector changed), so each hold
/// ends once cluster-wide.
async fn expire(transaction: &Transaction<'_>, now_ms: i64) -> Result<Vec<i64>, PgError> {
    // Resolved while waiting: never paged, and stays `suppressed` to say so.
    transaction
        .execute(
            "UPDATE incidents SET held_until_ms = NULL, held_for = NULL
             WHERE held_until_ms IS NOT NULL AND held_until_ms <= $1 AND state = 'resolved'",
            &[&now_ms],
        )
        .await?;
    let rows = transaction
        .query(
            "WITH due AS (
                 SELECT id, held_until_ms, held_for FROM incidents
                 WHERE held_until_ms IS NOT NULL AND held_until_ms <= $1 AND state <> 'resolved'
                 ORDER BY id FOR UPDATE
             )
             UPDATE incidents SET suppressed = false, held_until_ms = NULL, held_for = NULL
             FROM due WHERE incidents.id = due.id
             RETURNING incidents.id, incidents.state, incidents.opened_at_ms, due.held_until_ms, due.held_for",
            &[&now_ms],
        )
        .await?;
    let mut expired = rows
        .iter()
        .map(|row| {
            let state: &str = row.get(1);
            Ok(Expired {
                id: row.get(0),
                state: parse_column("incidents.state", state, str::parse::<IncidentState>)?,
                opened_ms: row.get(2),
                until_ms: row.get(3),
                held_for: row.get(4),
            })
        })
        .collect::<Result<Vec<_>, PgError>>()?;
    expired.sort_unstable_by_key(|hold| hold.id);
    let mut released = Vec::new();
    for hold in expired {
        if released_now(transaction, &hold, now_ms).await? {
            released.push(hold.id);
        }
    }
    Ok(released)
}

/// Writes the timeline (and journal, when it pages) of one ended hold;
/// returns whether it pages.
async fn released_now(
    transaction: &Transaction<'_>,
    hold: &Expired,
    now_ms: i64,
) -> Result<bool, PgError> {
    let parents = hold
        .held_for
        .as_deref()
        .and_then(|held_for| serde_json::from_str::<Vec<ParentCheck>>(held_for).ok())
        .map_or_else(|| "its parent".into(), |parents| describe(&parents));
    let waited = seconds(hold.until_ms - hold.opened_ms);
    // Someone who acknowledged it already knows: released, but not paged.
    let paging = hold.state == IncidentState::Open;
    let detail = if paging {
        format!("Paged after waiting {waited} for parent {parents}, which did not open.")
    } else {
        format!(
            "Waited {waited} for parent {parents}, which did not open; acknowledged meanwhile, so not paged."
        )
    };
    add_timeline(
        transaction,
        hold.id,
        now_ms,
        IncidentEvent::Released.name(),
        "dependencies",
        &detail,
    )
    .await?;
    if paging {
        journal(transaction, hold.id, IncidentEvent::Released, now_ms).await?;
    }
    Ok(paging)
}

impl PgStore {
    /// Ends dependency holds that ran out: those incidents page now; returns
    /// the ones released unacknowledged (by this collector: each hold is
    /// ended by one collector only).
    pub async fn expire_parent_holds(&self, now_ms: i64) -> Result<Vec<IncidentRecord>, PgError> {
        let client = self.client().await?;
        // The common case (nothing held) costs no write transaction.
        let any_due = client
            .query_opt(
                "SELECT 1 FROM incidents WHERE held_until_ms IS NOT NULL AND held_until_ms <= $1 LIMIT 1",
                &[&now_ms],
            )
            .await?
            .is_some();
        drop(client);
        if !any_due {
            return Ok(Vec::new());
        }
        retrying_conflicts(|| self.expire_parent_holds_once(now_ms)).await
    }

    async fn expire_parent_holds_once(&self, now_ms: i64) -> Result<Vec<IncidentRecord>, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let mut released = Vec::new();
        for id in expire(&transaction, now_ms).await? {
            released.extend(get_in(&transaction, id).await?);
        }
        transaction.commit().await?;
        Ok(released)
    }
}
