//! Incident persistence: rows, timelines and SLA figures. The lifecycle rules
//! live in the `incidents` module; this file only reads and writes what it is told.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use super::Labels;
use super::codec::labels_from_json;
use super::conditions::Conditions;
use super::timeline::add_timeline;
use crate::domain::{
    IncidentEvent, IncidentRecord, IncidentState, ParentCheck, Recurrence, Severity,
};

/// What `incidents` asks the store to open.
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub dedup_key: String,
    pub rule: String,
    pub metric: String,
    pub agent_id: String,
    pub host: String,
    pub labels: Labels,
    pub severity: Severity,
    pub summary: String,
    pub runbook: Option<String>,
    pub value: Option<f64>,
    pub since_ms: i64,
    pub opened_at_ms: i64,
    pub ack_due_at_ms: Option<i64>,
    pub resolve_due_at_ms: Option<i64>,
    /// Checks this incident's asset depends on: if one of them has an
    /// unresolved incident, this one opens suppressed, caused by it.
    pub parents: Vec<ParentCheck>,
    /// With no parent incident open yet, how long this one waits for one to
    /// open before it pages (suppressed meanwhile); 0: it pages at once.
    pub parent_hold_ms: i64,
    /// When recurring incidents of this rule become a problem; `None`: never.
    pub recurrence: Option<Recurrence>,
    /// How long after a change ends an incident on its assets is still
    /// linked to it; `None`: incidents are not linked to changes.
    pub change_link_after_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    pub ts_ms: i64,
    pub kind: String,
    pub actor: String,
    pub detail: String,
}

/// Filters for listing incidents; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub state: Option<IncidentState>,
    /// Only incidents not resolved (open or acknowledged); with `state`, both hold.
    pub unresolved: bool,
    pub severity: Option<Severity>,
    pub agent_id: Option<String>,
    /// Host name containing this text, any case.
    pub host_contains: Option<String>,
    /// Paging: only incidents with a smaller id (newest first).
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// `text` as a `LIKE` pattern matching it anywhere, `\` escaping the
/// wildcards it holds (both backends take `ESCAPE '\'`).
pub(super) fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Why a state change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeRefused {
    NotFound,
    AlreadyResolved,
    AlreadyAcknowledged,
}

const COLUMNS: &str = "id, dedup_key, rule, metric, agent_id, host, labels, severity, state, flapping, summary, runbook,
    value, last_value, since_ms, opened_at_ms, acknowledged_at_ms, acknowledged_by, resolved_at_ms, resolved_by,
    resolve_reason, ack_due_at_ms, resolve_due_at_ms, ack_breached, resolve_breached, previous_id,
    suppressed, caused_by, problem_id, change_id, held_until_ms";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<IncidentRecord> {
    let labels: String = row.get(6)?;
    let labels = labels_from_json(&labels).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, error.into())
    })?;
    Ok(IncidentRecord {
        id: row.get(0)?,
        dedup_key: row.get(1)?,
        rule: row.get(2)?,
        metric: row.get(3)?,
        agent_id: row.get(4)?,
        host: row.get(5)?,
        labels,
        severity: row.get(7)?,
        state: row.get(8)?,
        flapping: row.get(9)?,
        summary: row.get(10)?,
        runbook: row.get(11)?,
        value: row.get(12)?,
        last_value: row.get(13)?,
        since_ms: row.get(14)?,
        opened_at_ms: row.get(15)?,
        acknowledged_at_ms: row.get(16)?,
        acknowledged_by: row.get(17)?,
        resolved_at_ms: row.get(18)?,
        resolved_by: row.get(19)?,
        resolve_reason: row.get(20)?,
        ack_due_at_ms: row.get(21)?,
        resolve_due_at_ms: row.get(22)?,
        ack_breached: row.get(23)?,
        resolve_breached: row.get(24)?,
        previous_id: row.get(25)?,
        suppressed: row.get(26)?,
        caused_by: row.get(27)?,
        problem_id: row.get(28)?,
        change_id: row.get(29)?,
        held_until_ms: row.get(30)?,
    })
}

pub(super) fn get_in(
    transaction: &Connection,
    id: i64,
) -> rusqlite::Result<Option<IncidentRecord>> {
    transaction
        .query_row(
            &format!("SELECT {COLUMNS} FROM incidents WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()
}

/// Opens an incident unless one is already unresolved for the key; returns
/// the incident and whether it is new.
pub(super) fn open(
    transaction: &Transaction<'_>,
    new: &NewIncident,
) -> rusqlite::Result<(IncidentRecord, bool)> {
    let existing: Option<i64> = transaction
        .query_row(
            "SELECT id FROM incidents WHERE dedup_key = ?1 AND state != 'resolved'",
            [&new.dedup_key],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(id) = existing {
        let record = get_in(transaction, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        return Ok((record, false));
    }
    let previous_id: Option<i64> = transaction.query_row(
        "SELECT max(id) FROM incidents WHERE dedup_key = ?1",
        [&new.dedup_key],
        |row| row.get(0),
    )?;
    transaction.execute(
        "INSERT INTO incidents (dedup_key, rule, metric, agent_id, host, labels, severity, state, summary, runbook,
             value, last_value, since_ms, opened_at_ms, ack_due_at_ms, resolve_due_at_ms, previous_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'open', ?8, ?9, ?10, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            new.dedup_key,
            new.rule,
            new.metric,
            new.agent_id,
            new.host,
            super::labels_json(&new.labels),
            new.severity,
            new.summary,
            new.runbook,
            new.value,
            new.since_ms,
            new.opened_at_ms,
            new.ack_due_at_ms,
            new.resolve_due_at_ms,
            previous_id
        ],
    )?;
    let id = transaction.last_insert_rowid();
    let value = new
        .value
        .map_or_else(|| "no data".to_string(), |value| format!("value {value}"));
    let mut detail = format!("Opened by rule {} ({value}): {}", new.rule, new.summary);
    if let Some(previous) = previous_id {
        detail.push_str(&format!(" — recurrence of incident {previous}"));
    }
    add_timeline(
        transaction,
        id,
        new.opened_at_ms,
        IncidentEvent::Opened.name(),
        "rules",
        &detail,
    )?;
    let suppressed_by_parent = open_parent(transaction, new)?;
    if let Some((parent, parent_host)) = &suppressed_by_parent {
        transaction.execute(
            "UPDATE incidents SET suppressed = 1, caused_by = ?2 WHERE id = ?1",
            params![id, parent],
        )?;
        add_timeline(
            transaction,
            id,
            new.opened_at_ms,
            "suppressed",
            "dependencies",
            &format!(
                "Suppressed: caused by #{parent} (on {parent_host}); no one is paged while it is open."
            ),
        )?;
    }
    let opening = super::parent_hold::Opening {
        id,
        rule: &new.rule,
        labels: &new.labels,
        host: &new.host,
        agent_id: &new.agent_id,
        opened_at_ms: new.opened_at_ms,
        parents: &new.parents,
        hold_ms: new.parent_hold_ms,
    };
    if suppressed_by_parent.is_none() {
        super::parent_hold::hold(transaction, &opening)?;
    }
    // Children that opened a moment earlier may be waiting for this one.
    super::parent_hold::adopt_waiting_children(transaction, &opening)?;
    if new.recurrence.is_some() || new.change_link_after_ms.is_some() {
        let record = get_in(transaction, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        if let Some(link_after_ms) = new.change_link_after_ms {
            super::changes::on_open(transaction, &record, link_after_ms)?;
        }
        if let Some(recurrence) = &new.recurrence {
            super::problems::on_open(transaction, &record, recurrence)?;
        }
    }
    // Journaled even when suppressed: delivery reads the incident and skips it.
    super::outbox::journal(transaction, id, IncidentEvent::Opened, new.opened_at_ms)?;
    let record = get_in(transaction, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    Ok((record, true))
}

/// The first unresolved incident (oldest) of one of `new.parents`, other
/// than one of `new`'s own key, with its host.
fn open_parent(
    transaction: &Transaction<'_>,
    new: &NewIncident,
) -> rusqlite::Result<Option<(i64, String)>> {
    let mut statement = transaction.prepare_cached(
        "SELECT id, labels, host, agent_id, dedup_key FROM incidents
         WHERE rule = ?1 AND state != 'resolved' ORDER BY id",
    )?;
    for parent in &new.parents {
        let candidates = statement.query_map([&parent.rule], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
            ))
        })?;
        for candidate in candidates {
            let (id, labels, host, agent_id, dedup_key) = candidate?;
            if dedup_key == new.dedup_key {
                continue;
            }
            let Ok(labels) = labels_from_json(&labels) else {
                continue;
            };
            if parent.matches(&parent.rule, &labels, &host, &agent_id) {
                return Ok(Some((id, host)));
            }
        }
    }
    Ok(None)
}

/// Releases the suppressed, unresolved children of `parent_id`: they page
/// from now on (journaled as `released`).
fn release_children(
    transaction: &Transaction<'_>,
    parent_id: i64,
    now_ms: i64,
) -> rusqlite::Result<()> {
    let children: Vec<(i64, IncidentState)> = transaction
        .prepare_cached(
            "SELECT id, state FROM incidents WHERE caused_by = ?1 AND suppressed = 1 AND state != 'resolved'",
        )?
        .query_map([parent_id], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (child, state) in children {
        transaction.execute("UPDATE incidents SET suppressed = 0 WHERE id = ?1", [child])?;
        // Someone who acknowledged it already knows: released, but not paged.
        let paging = state == IncidentState::Open;
        add_timeline(
            transaction,
            child,
            now_ms,
            IncidentEvent::Released.name(),
            "dependencies",
            &format!(
                "Released: parent #{parent_id} resolved while this still breaches{}.",
                if paging { "; paging" } else { "" }
            ),
        )?;
        if paging {
            super::outbox::journal(transaction, child, IncidentEvent::Released, now_ms)?;
        }
    }
    Ok(())
}

fn unresolved(
    transaction: &Transaction<'_>,
    id: i64,
) -> rusqlite::Result<Result<IncidentRecord, ChangeRefused>> {
    Ok(match get_in(transaction, id)? {
        None => Err(ChangeRefused::NotFound),
        Some(record) if record.state.is_resolved() => Err(ChangeRefused::AlreadyResolved),
        Some(record) => Ok(record),
    })
}

pub(super) fn acknowledge(
    transaction: &Transaction<'_>,
    id: i64,
    by: &str,
    note: Option<&str>,
    now_ms: i64,
) -> rusqlite::Result<Result<IncidentRecord, ChangeRefused>> {
    let record = match unresolved(transaction, id)? {
        Ok(record) if record.state == IncidentState::Acknowledged => {
            return Ok(Err(ChangeRefused::AlreadyAcknowledged));
        }
        Ok(record) => record,
        Err(refused) => return Ok(Err(refused)),
    };
    transaction.execute(
        "UPDATE incidents SET state = 'acknowledged', acknowledged_at_ms = ?2, acknowledged_by = ?3 WHERE id = ?1",
        params![record.id, now_ms, by],
    )?;
    let detail = note.map_or_else(
        || "Acknowledged.".to_string(),
        |note| format!("Acknowledged: {note}"),
    );
    add_timeline(
        transaction,
        id,
        now_ms,
        IncidentEvent::Acknowledged.name(),
        by,
        &detail,
    )?;
    super::outbox::journal(transaction, id, IncidentEvent::Acknowledged, now_ms)?;
    Ok(get_in(transaction, id)?.ok_or(ChangeRefused::NotFound))
}

pub(super) fn resolve(
    transaction: &Transaction<'_>,
    id: i64,
    by: &str,
    reason: &str,
    value: Option<f64>,
    now_ms: i64,
) -> rusqlite::Result<Result<IncidentRecord, ChangeRefused>> {
    let record = match unresolved(transaction, id)? {
        Ok(record) => record,
        Err(refused) => return Ok(Err(refused)),
    };
    transaction.execute(
        "UPDATE incidents SET state = 'resolved', resolved_at_ms = ?2, resolved_by = ?3, resolve_reason = ?4,
             flapping = 0, last_value = coalesce(?5, last_value) WHERE id = ?1",
        params![record.id, now_ms, by, reason, value],
    )?;
    let value = value.map_or_else(String::new, |value| format!(" (value {value})"));
    add_timeline(
        transaction,
        id,
        now_ms,
        IncidentEvent::Resolved.name(),
        by,
        &format!("Resolved: {reason}{value}."),
    )?;
    super::outbox::journal(transaction, id, IncidentEvent::Resolved, now_ms)?;
    release_children(transaction, id, now_ms)?;
    Ok(get_in(transaction, id)?.ok_or(ChangeRefused::NotFound))
}

pub(super) fn add_note(
    transaction: &Transaction<'_>,
    id: i64,
    by: &str,
    text: &str,
    now_ms: i64,
) -> rusqlite::Result<Result<IncidentRecord, ChangeRefused>> {
    let Some(record) = get_in(transaction, id)? else {
        return Ok(Err(ChangeRefused::NotFound));
    };
    add_timeline(transaction, id, now_ms, "note", by, text)?;
    Ok(Ok(record))
}

/// One change the rules asked for, applied with others in one transaction.
#[derive(Debug, Clone)]
pub enum IncidentChange {
    Open(Box<NewIncident>),
    Resolve {
        dedup_key: String,
        reason: String,
        value: Option<f64>,
        now_ms: i64,
    },
    Flapping {
        dedup_key: String,
        flapping: bool,
        detail: String,
        now_ms: i64,
    },
}

/// What a change did: the incident and the event to announce, if any.
pub type AppliedChange = Option<(IncidentEvent, IncidentRecord)>;

pub(super) fn apply_changes(
    transaction: &Transaction<'_>,
    changes: &[IncidentChange],
) -> rusqlite::Result<Vec<AppliedChange>> {
    changes
        .iter()
        .map(|change| match change {
            IncidentChange::Open(new) => {
                let (record, created) = open(transaction, new)?;
                Ok(created.then_some((IncidentEvent::Opened, record)))
            }
            IncidentChange::Resolve {
                dedup_key,
                reason,
                value,
                now_ms,
            } => {
                let Some(id) = unresolved_by_key(transaction, dedup_key)?.map(|record| record.id)
                else {
                    return Ok(None);
                };
                Ok(resolve(transaction, id, "rules", reason, *value, *now_ms)?
                    .ok()
                    .map(|record| (IncidentEvent::Resolved, record)))
            }
            IncidentChange::Flapping {
                dedup_key,
                flapping,
                detail,
                now_ms,
            } => {
                let event = if *flapping {
                    IncidentEvent::FlappingStarted
                } else {
                    IncidentEvent::FlappingStopped
                };
                Ok(
                    set_flapping(transaction, dedup_key, *flapping, detail, *now_ms)?
                        .map(|record| (event, record)),
                )
            }
        })
        .collect()
}

/// Sets the flapping flag on the unresolved incident of `dedup_key`, if any.
pub(super) fn set_flapping(
    transaction: &Transaction<'_>,
    dedup_key: &str,
    flapping: bool,
    detail: &str,
    now_ms: i64,
) -> rusqlite::Result<Option<IncidentRecord>> {
    let id: Option<i64> = transaction
        .query_row(
            "SELECT id FROM incidents WHERE dedup_key = ?1 AND state != 'resolved'",
            [dedup_key],
            |row| row.get(0),
        )
        .optional()?;
    let Some(id) = id else { return Ok(None) };
    transaction.execute(
        "UPDATE incidents SET flapping = ?2 WHERE id = ?1",
        params![id, flapping],
    )?;
    let event = if flapping {
        IncidentEvent::FlappingStarted
    } else {
        IncidentEvent::FlappingStopped
    };
    add_timeline(transaction, id, now_ms, event.name(), "rules", detail)?;
    get_in(transaction, id)
}

/// Marks SLA targets that passed unmet; returns (incident, "ack"|"resolve") for each new breach.
pub(super) fn mark_sla_breaches(
    transaction: &Transaction<'_>,
    now_ms: i64,
) -> rusqlite::Result<Vec<(IncidentRecord, &'static str)>> {
    let mut breached = Vec::new();
    for (kind, select, update) in [
        (
            "ack",
            "SELECT id FROM incidents WHERE state = 'open' AND ack_breached = 0 AND ack_due_at_ms IS NOT NULL AND ack_due_at_ms <= ?1",
            "UPDATE incidents SET ack_breached = 1 WHERE id = ?1",
        ),
        (
            "resolve",
            "SELECT id FROM incidents WHERE state != 'resolved' AND resolve_breached = 0 AND resolve_due_at_ms IS NOT NULL AND resolve_due_at_ms <= ?1",
            "UPDATE incidents SET resolve_breached = 1 WHERE id = ?1",
        ),
    ] {
        let ids: Vec<i64> = transaction
            .prepare_cached(select)?
            .query_map([now_ms], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for id in ids {
            transaction.execute(update, [id])?;
            let detail = format!("SLA time-to-{kind} target missed.");
            add_timeline(
                transaction,
                id,
                now_ms,
                IncidentEvent::SlaBreached.name(),
                "sla",
                &detail,
            )?;
            if let Some(record) = get_in(transaction, id)? {
                breached.push((record, kind));
            }
        }
    }
    Ok(breached)
}

pub(super) fn unresolved_by_key(
    connection: &Connection,
    dedup_key: &str,
) -> rusqlite::Result<Option<IncidentRecord>> {
    connection
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM incidents WHERE dedup_key = ?1 AND state != 'resolved'"
            ),
            [dedup_key],
            from_row,
        )
        .optional()
}

pub(super) fn list(
    connection: &Connection,
    filter: &IncidentFilter,
) -> rusqlite::Result<Vec<IncidentRecord>> {
    let limit = if filter.limit == 0 { 500 } else { filter.limit };
    let mut conditions = Conditions::default();
    if let Some(state) = filter.state {
        conditions.bind("state = ?", state.as_str().to_string());
    }
    if filter.unresolved {
        conditions.fixed("state IN ('open', 'acknowledged')");
    }
    if let Some(severity) = filter.severity {
        conditions.bind("severity = ?", severity.as_str().to_string());
    }
    if let Some(agent_id) = &filter.agent_id {
        conditions.bind("agent_id = ?", agent_id.clone());
    }
    if let Some(host) = &filter.host_contains {
        // LIKE ignores ASCII case in SQLite.
        conditions.bind("host LIKE ? ESCAPE '\\'", contains_pattern(host));
    }
    if let Some(before_id) = filter.before_id {
        conditions.bind("id < ?", before_id);
    }
    // Not cached: the text varies with the filters given and the limit.
    let mut statement = connection.prepare(&format!(
        "SELECT {COLUMNS} FROM incidents {} ORDER BY id DESC LIMIT {limit}",
        conditions.where_clause()
    ))?;
    let rows = statement.query_map(conditions.params(), from_row)?;
    rows.collect()
}

pub(super) fn unresolved_all(connection: &Connection) -> rusqlite::Result<Vec<IncidentRecord>> {
    let mut statement = connection.prepare(&format!(
        "SELECT {COLUMNS} FROM incidents WHERE state != 'resolved' ORDER BY id"
    ))?;
    let rows = statement.query_map([], from_row)?;
    rows.collect()
}

pub(super) fn timeline(connection: &Connection, id: i64) -> rusqlite::Result<Vec<TimelineEntry>> {
    let mut statement = connection
        .prepare("SELECT ts_ms, kind, actor, detail FROM incident_timeline WHERE incident_id = ?1 ORDER BY id")?;
    let rows = statement.query_map([id], |row| {
        Ok(TimelineEntry {
            ts_ms: row.get(0)?,
            kind: row.get(1)?,
            actor: row.get(2)?,
            detail: row.get(3)?,
        })
    })?;
    rows.collect()
}

/// Incidents opened at or after `since_ms` (for MTTA/MTTR and SLA reports).
pub(super) fn opened_since(
    connection: &Connection,
    since_ms: i64,
) -> rusqlite::Result<Vec<IncidentRecord>> {
    let mut statement = connection.prepare(&format!(
        "SELECT {COLUMNS} FROM incidents WHERE opened_at_ms >= ?1 ORDER BY id"
    ))?;
    let rows = statement.query_map([since_ms], from_row)?;
    rows.collect()
}
