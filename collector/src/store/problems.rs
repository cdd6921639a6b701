//! Problem records: opened (or joined) when an incident recurs, read and
//! edited through the API. The recurrence test runs in the transaction that
//! opens the incident, so a burst of openings cannot open two problems.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::timeline::add_timeline;
use crate::domain::{IncidentRecord, ProblemRecord, ProblemState, Recurrence};

const COLUMNS: &str = "id, rule, agent_id, host, title, state, root_cause, workaround, change_id,
    opened_ms, updated_ms, updated_by, resolved_ms";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ProblemRecord> {
    Ok(ProblemRecord {
        id: row.get(0)?,
        rule: row.get(1)?,
        agent_id: row.get(2)?,
        host: row.get(3)?,
        title: row.get(4)?,
        state: row.get(5)?,
        root_cause: row.get(6)?,
        workaround: row.get(7)?,
        change_id: row.get(8)?,
        opened_ms: row.get(9)?,
        updated_ms: row.get(10)?,
        updated_by: row.get(11)?,
        resolved_ms: row.get(12)?,
    })
}

pub(super) fn get(connection: &Connection, id: i64) -> rusqlite::Result<Option<ProblemRecord>> {
    connection
        .query_row(
            &format!("SELECT {COLUMNS} FROM problems WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()
}

fn link(
    transaction: &Transaction<'_>,
    incident_id: i64,
    problem_id: i64,
    now_ms: i64,
) -> rusqlite::Result<()> {
    transaction.execute(
        "UPDATE incidents SET problem_id = ?2 WHERE id = ?1",
        params![incident_id, problem_id],
    )?;
    add_timeline(
        transaction,
        incident_id,
        now_ms,
        "problem",
        "problems",
        &format!("Linked to problem P-{problem_id}."),
    )
}

/// Links a just-opened incident to the unresolved problem of its rule (and
/// agent), or opens one when it is the `count`th incident within the window.
pub(super) fn on_open(
    transaction: &Transaction<'_>,
    incident: &IncidentRecord,
    recurrence: &Recurrence,
) -> rusqlite::Result<()> {
    let agent = (!recurrence.across_agents).then_some(incident.agent_id.as_str());
    let existing: Option<i64> = transaction
        .query_row(
            "SELECT id FROM problems WHERE rule = ?1 AND coalesce(agent_id, '') = coalesce(?2, '')
               AND state != 'resolved'",
            params![incident.rule, agent],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(problem) = existing {
        link(transaction, incident.id, problem, incident.opened_at_ms)?;
        return transaction
            .execute(
                "UPDATE problems SET updated_ms = ?2 WHERE id = ?1",
                params![problem, incident.opened_at_ms],
            )
            .map(drop);
    }
    let since = incident.opened_at_ms - recurrence.within_ms;
    let recurring: Vec<i64> = transaction
        .prepare_cached(
            "SELECT id FROM incidents WHERE rule = ?1 AND (?2 IS NULL OR agent_id = ?2)
               AND opened_at_ms >= ?3 AND problem_id IS NULL ORDER BY id",
        )?
        .query_map(params![incident.rule, agent, since], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if (recurring.len() as u32) < recurrence.count.max(1) {
        return Ok(());
    }
    let (host, title) = match agent {
        Some(_) => (
            Some(incident.host.clone()),
            format!(
                "Recurring {} on {} ({} incidents)",
                incident.rule,
                incident.host,
                recurring.len()
            ),
        ),
        None => (
            None,
            format!(
                "Recurring {} ({} incidents)",
                incident.rule,
                recurring.len()
            ),
        ),
    };
    transaction.execute(
        "INSERT INTO problems (rule, agent_id, host, title, state, opened_ms, updated_ms, updated_by)
         VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?5, 'problems')",
        params![incident.rule, agent, host, title, incident.opened_at_ms],
    )?;
    let problem = transaction.last_insert_rowid();
    for id in recurring {
        link(transaction, id, problem, incident.opened_at_ms)?;
    }
    tracing::info!(message = "Problem opened for recurring incidents.", problem, rule = %incident.rule);
    Ok(())
}

/// Filters for listing problems, newest first.
#[derive(Debug, Clone, Default)]
pub struct ProblemFilter {
    pub state: Option<ProblemState>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// Problems with how many incidents each links, in one query (a page of
/// rows must not cost a query per row).
pub(super) fn list(
    connection: &Connection,
    filter: &ProblemFilter,
) -> rusqlite::Result<Vec<(ProblemRecord, i64)>> {
    connection
        .prepare(&format!(
            "SELECT {COLUMNS}, (SELECT count(*) FROM incidents WHERE problem_id = problems.id)
             FROM problems WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR id < ?2)
             ORDER BY id DESC LIMIT ?3"
        ))?
        .query_map(
            params![filter.state, filter.before_id, filter.limit.max(1)],
            |row| Ok((from_row(row)?, row.get(13)?)),
        )?
        .collect()
}

/// Ids of the incidents linked to a problem, oldest first.
pub(super) fn incidents_of(connection: &Connection, problem: i64) -> rusqlite::Result<Vec<i64>> {
    connection
        .prepare_cached("SELECT id FROM incidents WHERE problem_id = ?1 ORDER BY id")?
        .query_map([problem], |row| row.get(0))?
        .collect()
}

/// An operator's change to a problem; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProblemUpdate {
    pub title: Option<String>,
    pub state: Option<ProblemState>,
    pub root_cause: Option<String>,
    pub workaround: Option<String>,
    pub change_id: Option<i64>,
    pub by: String,
    pub now_ms: i64,
}

/// Why a problem update was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemRefused {
    NotFound,
    /// From the first state to the second is not allowed.
    Transition(ProblemState, ProblemState),
    /// A known error needs a workaround.
    NoWorkaround,
    UnknownChange,
}

pub(super) fn update(
    transaction: &Transaction<'_>,
    id: i64,
    update: &ProblemUpdate,
) -> rusqlite::Result<Result<ProblemRecord, ProblemRefused>> {
    let Some(current) = get(transaction, id)? else {
        return Ok(Err(ProblemRefused::NotFound));
    };
    let state = update.state.unwrap_or(current.state);
    // Editing the text of a resolved problem is fine; moving it is not.
    let moves = update.state.is_some();
    if moves && !current.state.may_become(state) {
        return Ok(Err(ProblemRefused::Transition(current.state, state)));
    }
    let workaround = update.workaround.clone().or(current.workaround.clone());
    if state == ProblemState::KnownError && workaround.as_deref().is_none_or(str::is_empty) {
        return Ok(Err(ProblemRefused::NoWorkaround));
    }
    if let Some(change) = update.change_id {
        let exists: bool = transaction.query_row(
            "SELECT EXISTS (SELECT 1 FROM changes WHERE id = ?1)",
            [change],
            |row| row.get(0),
        )?;
        if !exists {
            return Ok(Err(ProblemRefused::UnknownChange));
        }
    }
    let resolved_ms = match (current.state, state) {
        (ProblemState::Resolved, _) => current.resolved_ms,
        (_, ProblemState::Resolved) => Some(update.now_ms),
        _ => None,
    };
    transaction.execute(
        "UPDATE problems SET title = ?2, state = ?3, root_cause = ?4, workaround = ?5, change_id = ?6,
             updated_ms = ?7, updated_by = ?8, resolved_ms = ?9 WHERE id = ?1",
        params![
            id,
            update.title.as_ref().unwrap_or(&current.title),
            state,
            update.root_cause.clone().or(current.root_cause.clone()),
            workaround,
            update.change_id.or(current.change_id),
            update.now_ms,
            update.by,
            resolved_ms
        ],
    )?;
    Ok(get(transaction, id)?.ok_or(ProblemRefused::NotFound))
}
