//! Incidents on PostgreSQL, with the meaning of the SQLite store
//! (`store/incidents.rs`), for several collectors at once:
//! - at most one unresolved incident per dedup key is the partial unique
//!   index of 0001: an opener inserts with `ON CONFLICT DO NOTHING` and reads
//!   the winner, so two collectors opening one key make one incident;
//! - every transition is a conditional `UPDATE … WHERE <state>`, so exactly
//!   one collector wins it and journals it (once, for the outbox);
//! - what the single SQLite writer serialized across incidents (a child
//!   finding its open parent, a parent adopting waiting children, recurrences
//!   opening a problem) is serialized per rule by transaction advisory locks
//!   taken before any row is touched (see [`lock_rules`]);
//! - a child suppressed under a parent holds a share lock on the parent's row
//!   until it commits, so the parent cannot resolve unseen and leave the
//!   child suppressed for ever.

use deadpool_postgres::{GenericClient, Transaction};

use super::super::codec::labels_from_json;
use super::super::incidents::contains_pattern;
use super::super::parent_hold::Opening;
use super::super::{
    AppliedChange, ChangeRefused, IncidentChange, IncidentFilter, IncidentRecord, NewIncident,
    TimelineEntry, labels_json,
};
use super::incident_rows::{COLUMNS, add_timeline, from_row, from_rows, get_in, journal, written};
use super::retry::retrying_conflicts;
use super::{PgError, PgStore, parent_hold, parse_column};
use crate::domain::{IncidentEvent, IncidentState, Recurrence, Severity};

/// Class (first key) of the per-rule advisory locks; the two-key form never
/// collides with the one-key migration lock.
const RULE_LOCK_CLASS: i32 = 0x5354_4502;

/// A stable 32-bit key for a rule's advisory lock (FNV-1a: the same on
/// every collector and build, unlike std's hasher). A collision only makes
/// two rules share a lock.
fn rule_lock_key(rule: &str) -> i32 {
    let hash = rule.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    i32::from_ne_bytes(hash.to_ne_bytes())
}

/// Locks, until the transaction ends, the rules the openings in `opening`
/// touch: each one's own rule (it may be a parent that adopts waiting
/// children; its recurrences may open a problem) and its parents' rules (it
/// looks for an open parent, or waits for one). Without this, a parent and
/// its child opening at once on two collectors would miss each other. Taken
/// in key order, before any row lock, so two transactions cannot deadlock on them.
async fn lock_rules<'a>(
    transaction: &Transaction<'_>,
    opening: impl Iterator<Item = &'a NewIncident>,
) -> Result<(), PgError> {
    let mut keys: Vec<i32> = opening
        .flat_map(|new| {
            std::iter::once(new.rule.as_str()).chain(new.parents.iter().map(|p| p.rule.as_str()))
        })
        .map(rule_lock_key)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock($1, $2)",
                &[&RULE_LOCK_CLASS, &key],
            )
            .await?;
    }
    Ok(())
}

/// Locks the unresolved incidents the changes name by key, in id order,
/// before changing any: two collectors changing the same incidents in
/// another order (a burst of resolves) then queue instead of deadlocking.
async fn lock_named(
    transaction: &Transaction<'_>,
    changes: &[IncidentChange],
) -> Result<(), PgError> {
    let keys: Vec<&str> = changes
        .iter()
        .filter_map(|change| match change {
            IncidentChange::Open(_) => None,
            IncidentChange::Resolve { dedup_key, .. }
            | IncidentChange::Flapping { dedup_key, .. } => Some(dedup_key.as_str()),
        })
        .collect();
    if keys.len() > 1 {
        transaction
            .execute(
                "SELECT id FROM incidents WHERE dedup_key = ANY($1) AND state <> 'resolved'
                 ORDER BY id FOR UPDATE",
                &[&keys],
            )
            .await?;
    }
    Ok(())
}

fn openings(changes: &[IncidentChange]) -> impl Iterator<Item = &NewIncident> {
    changes.iter().filter_map(|change| match change {
        IncidentChange::Open(new) => Some(&**new),
        _ => None,
    })
}

/// Inserts `new` unless its key has an unresolved incident (anywhere in the
/// cluster, committed or being committed); returns (id, previous_id).
async fn insert(
    transaction: &Transaction<'_>,
    new: &NewIncident,
) -> Result<Option<(i64, Option<i64>)>, PgError> {
    let inserted = transaction
        .query_opt(
            "INSERT INTO incidents (dedup_key, rule, metric, agent_id, host, labels, severity, state, summary, runbook,
                 value, last_value, since_ms, opened_at_ms, ack_due_at_ms, resolve_due_at_ms, previous_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9, $10, $10, $11, $12, $13, $14,
                 (SELECT max(id) FROM incidents WHERE dedup_key = $1))
             ON CONFLICT (dedup_key) WHERE state <> 'resolved' DO NOTHING
             RETURNING id, previous_id",
            &[
                &new.dedup_key,
                &new.rule,
                &new.metric,
                &new.agent_id,
                &new.host,
                &labels_json(&new.labels),
                &new.severity.as_str(),
                &new.summary,
                &new.runbook,
                &new.value,
                &new.since_ms,
                &new.opened_at_ms,
                &new.ack_due_at_ms,
                &new.resolve_due_at_ms,
            ],
        )
        .await?;
    Ok(inserted.map(|row| (row.get(0), row.get(1))))
}

/// Opens an incident unless one is unresolved for the key; returns the
/// incident and whether it is new.
async fn open(
    transaction: &Transaction<'_>,
    new: &NewIncident,
) -> Result<(IncidentRecord, bool), PgError> {
    // Each turn of the loop means another collector committed a change to
    // the key (an open, then a resolve), so it cannot spin idly.
    loop {
        if let Some((id, previous_id)) = insert(transaction, new).await? {
            return Ok((opened(transaction, new, id, previous_id).await?, true));
        }
        let winner = transaction
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM incidents WHERE dedup_key = $1 AND state <> 'resolved'"
                ),
                &[&new.dedup_key],
            )
            .await?;
        if let Some(row) = winner {
            return Ok((from_row(&row)?, false));
        }
        // Resolved between the conflict and the read: the key is free again.
    }
}

/// Everything that follows a new incident's row, as in SQLite's `open`.
async fn opened(
    transaction: &Transaction<'_>,
    new: &NewIncident,
    id: i64,
    previous_id: Option<i64>,
) -> Result<IncidentRecord, PgError> {
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
    )
    .await?;
    let suppressed_by_parent = open_parent(transaction, new).await?;
    if let Some((parent, parent_host)) = &suppressed_by_parent {
        transaction
            .execute(
                "UPDATE incidents SET suppressed = true, caused_by = $2 WHERE id = $1",
                &[&id, parent],
            )
            .await?;
        add_timeline(
            transaction,
            id,
            new.opened_at_ms,
            "suppressed",
            "dependencies",
            &format!(
                "Suppressed: caused by #{parent} (on {parent_host}); no one is paged while it is open."
            ),
        )
        .await?;
    }
    let opening = Opening {
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
        parent_hold::hold(transaction, &opening).await?;
    }
    // Children that opened a moment earlier may be waiting for this one.
    parent_hold::adopt_waiting_children(transaction, &opening).await?;
    if new.recurrence.is_some() || new.change_link_after_ms.is_some() {
        let record = written(transaction, id).await?;
        if let Some(link_after_ms) = new.change_link_after_ms {
            link_change(transaction, &record, link_after_ms).await?;
        }
        if let Some(recurrence) = &new.recurrence {
            link_problem(transaction, &record, recurrence).await?;
        }
    }
    // Journaled even when suppressed: delivery reads the incident and skips it.
    journal(transaction, id, IncidentEvent::Opened, new.opened_at_ms).await?;
    written(transaction, id).await
}

/// The first unresolved incident (oldest) of one of `new.parents`, other
/// than one of `new`'s own key, with its host. The parent's row stays share
/// locked until this transaction ends: a parent resolving meanwhile waits,
/// then sees (and releases) this child.
async fn open_parent(
    transaction: &Transaction<'_>,
    new: &NewIncident,
) -> Result<Option<(i64, String)>, PgError> {
    for parent in &new.parents {
        let candidates = transaction
            .query(
                "SELECT id, labels, host, agent_id FROM incidents
                 WHERE rule = $1 AND state <> 'resolved' AND dedup_key <> $2 ORDER BY id",
                &[&parent.rule, &new.dedup_key],
            )
            .await?;
        for candidate in candidates {
            let (id, host, agent_id): (i64, String, &str) =
                (candidate.get(0), candidate.get(2), candidate.get(3));
            // As in SQLite: a candidate whose labels cannot be read is no parent.
            let Ok(labels) = labels_from_json(candidate.get(1)) else {
                continue;
            };
            if !parent.matches(&parent.rule, &labels, &host, agent_id) {
                continue;
            }
            let still_open = transaction
                .query_opt(
                    "SELECT 1 FROM incidents WHERE id = $1 AND state <> 'resolved' FOR SHARE",
                    &[&id],
                )
                .await?;
            if still_open.is_some() {
                return Ok(Some((id, host)));
            }
        }
    }
    Ok(None)
}

/// Releases the suppressed, unresolved children of `parent_id`: they page
/// from now on (journaled as `released`).
async fn release_children(
    transaction: &Transaction<'_>,
    parent_id: i64,
    now_ms: i64,
) -> Result<(), PgError> {
    let released = transaction
        .query(
            "UPDATE incidents SET suppressed = false
             WHERE caused_by = $1 AND suppressed AND state <> 'resolved' RETURNING id, state",
            &[&parent_id],
        )
        .await?;
    let mut children = released
        .iter()
        .map(|row| {
            let state: &str = row.get(1);
            Ok((
                row.get::<_, i64>(0),
                parse_column("incidents.state", state, str::parse::<IncidentState>)?,
            ))
        })
        .collect::<Result<Vec<_>, PgError>>()?;
    children.sort_unstable_by_key(|(id, _)| *id);
    for (child, state) in children {
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
        )
        .await?;
        if paging {
            journal(transaction, child, IncidentEvent::Released, now_ms).await?;
        }
    }
    Ok(())
}

/// Why a conditional transition of `id` changed nothing.
async fn refusal(client: &impl GenericClient, id: i64) -> Result<ChangeRefused, PgError> {
    Ok(match get_in(client, id).await? {
        None => ChangeRefused::NotFound,
        Some(record) if record.state.is_resolved() => ChangeRefused::AlreadyResolved,
        Some(_) => ChangeRefused::AlreadyAcknowledged,
    })
}

async fn acknowledge(
    transaction: &Transaction<'_>,
    id: i64,
    by: &str,
    note: Option<&str>,
    now_ms: i64,
) -> Result<Result<IncidentRecord, ChangeRefused>, PgError> {
    let changed = transaction
        .execute(
            "UPDATE incidents SET state = 'acknowledged', acknowledged_at_ms = $2, acknowledged_by = $3
             WHERE id = $1 AND state = 'open'",
            &[&id, &now_ms, &by],
        )
        .await?;
    if changed == 0 {
        return Ok(Err(refusal(transaction, id).await?));
    }
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
    )
    .await?;
    journal(transaction, id, IncidentEvent::Acknowledged, now_ms).await?;
    Ok(Ok(written(transaction, id).await?))
}

async fn resolve(
    transaction: &Transaction<'_>,
    id: i64,
    by: &str,
    reason: &str,
    value: Option<f64>,
    now_ms: i64,
) -> Result<Result<IncidentRecord, ChangeRefused>, PgError> {
    let changed = transaction
        .execute(
            "UPDATE incidents SET state = 'resolved', resolved_at_ms = $2, resolved_by = $3, resolve_reason = $4,
                 flapping = false, last_value = coalesce($5, last_value)
             WHERE id = $1 AND state <> 'resolved'",
            &[&id, &now_ms, &by, &reason, &value],
        )
        .await?;
    if changed == 0 {
        return Ok(Err(refusal(transaction, id).await?));
    }
    let value = value.map_or_else(String::new, |value| format!(" (value {value})"));
    add_timeline(
        transaction,
        id,
        now_ms,
        IncidentEvent::Resolved.name(),
        by,
        &format!("Resolved: {reason}{value}."),
    )
    .await?;
    journal(transaction, id, IncidentEvent::Resolved, now_ms).await?;
    release_children(transaction, id, now_ms).await?;
    Ok(Ok(written(transaction, id).await?))
}

async fn unresolved_id(
    client: &impl GenericClient,
    dedup_key: &str,
) -> Result<Option<i64>, PgError> {
    Ok(client
        .query_opt(
            "SELECT id FROM incidents WHERE dedup_key = $1 AND state <> 'resolved'",
            &[&dedup_key],
        )
        .await?
        .map(|row| row.get(0)))
}

/// Sets the flapping flag on the unresolved incident of `dedup_key`, if any.
async fn set_flapping(
    transaction: &Transaction<'_>,
    dedup_key: &str,
    flapping: bool,
    detail: &str,
    now_ms: i64,
) -> Result<Option<IncidentRecord>, PgError> {
    let Some(row) = transaction
        .query_opt(
            "UPDATE incidents SET flapping = $2 WHERE dedup_key = $1 AND state <> 'resolved' RETURNING id",
            &[&dedup_key, &flapping],
        )
        .await?
    else {
        return Ok(None);
    };
    let id: i64 = row.get(0);
    let event = if flapping {
        IncidentEvent::FlappingStarted
    } else {
        IncidentEvent::FlappingStopped
    };
    add_timeline(transaction, id, now_ms, event.name(), "rules", detail).await?;
    get_in(transaction, id).await
}

async fn apply_change(
    transaction: &Transaction<'_>,
    change: &IncidentChange,
) -> Result<AppliedChange, PgError> {
    match change {
        IncidentChange::Open(new) => {
            let (record, created) = open(transaction, new).await?;
            Ok(created.then_some((IncidentEvent::Opened, record)))
        }
        IncidentChange::Resolve {
            dedup_key,
            reason,
            value,
            now_ms,
        } => {
            let Some(id) = unresolved_id(transaction, dedup_key).await? else {
                return Ok(None);
            };
            // Refused: another collector resolved it since the read.
            Ok(resolve(transaction, id, "rules", reason, *value, *now_ms)
                .await?
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
                set_flapping(transaction, dedup_key, *flapping, detail, *now_ms)
                    .await?
                    .map(|record| (event, record)),
            )
        }
    }
}

/// Links a just-opened incident to the unresolved problem of its rule (and
/// agent), or opens one when it is the `count`th incident within the window
/// (SQLite's `problems::on_open`). The `problems` table is migration 0005's;
/// the rule's advisory lock keeps two collectors from opening two problems.
async fn link_problem(
    transaction: &Transaction<'_>,
    incident: &IncidentRecord,
    recurrence: &Recurrence,
) -> Result<(), PgError> {
    let agent = (!recurrence.across_agents).then_some(incident.agent_id.as_str());
    let existing = transaction
        .query_opt(
            "SELECT id FROM problems WHERE rule = $1 AND coalesce(agent_id, '') = coalesce($2::text, '')
               AND state <> 'resolved'",
            &[&incident.rule, &agent],
        )
        .await?;
    if let Some(row) = existing {
        let problem: i64 = row.get(0);
        link_to_problem(transaction, incident.id, problem, incident.opened_at_ms).await?;
        transaction
            .execute(
                "UPDATE problems SET updated_ms = $2 WHERE id = $1",
                &[&problem, &incident.opened_at_ms],
            )
            .await?;
        return Ok(());
    }
    let since = incident.opened_at_ms - recurrence.within_ms;
    let recurring: Vec<i64> = transaction
        .query(
            "SELECT id FROM incidents WHERE rule = $1 AND ($2::text IS NULL OR agent_id = $2)
               AND opened_at_ms >= $3 AND problem_id IS NULL ORDER BY id",
            &[&incident.rule, &agent, &since],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if (recurring.len() as u32) < recurrence.count.max(1) {
        return Ok(());
    }
    let (host, title) = match agent {
        Some(_) => (
            Some(incident.host.as_str()),
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
    let problem: i64 = transaction
        .query_one(
            "INSERT INTO problems (rule, agent_id, host, title, state, opened_ms, updated_ms, updated_by)
             VALUES ($1, $2, $3, $4, 'open', $5, $5, 'problems') RETURNING id",
            &[&incident.rule, &agent, &host, &title, &incident.opened_at_ms],
        )
        .await?
        .get(0);
    for id in recurring {
        link_to_problem(transaction, id, problem, incident.opened_at_ms).await?;
    }
    tracing::info!(message = "Problem opened for recurring incidents.", problem, rule = %incident.rule);
    Ok(())
}

async fn link_to_problem(
    transaction: &Transaction<'_>,
    incident: i64,
    problem: i64,
    now_ms: i64,
) -> Result<(), PgError> {
    transaction
        .execute(
            "UPDATE incidents SET problem_id = $2 WHERE id = $1",
            &[&incident, &problem],
        )
        .await?;
    add_timeline(
        transaction,
        incident,
        now_ms,
        "problem",
        "problems",
        &format!("Linked to problem P-{problem}."),
    )
    .await
}

fn json_list(column: &str, text: &str) -> Result<Vec<String>, PgError> {
    parse_column(column, text, |text| {
        serde_json::from_str::<Vec<String>>(text)
    })
}

/// Links a just-opened incident to the change on its asset that was under
/// way when it opened, or ended at most `link_after_ms` before (SQLite's
/// `changes::on_open`). The tables are migration 0005's; JSON columns are
/// read `::text` so TEXT and JSONB both do.
async fn link_change(
    transaction: &Transaction<'_>,
    incident: &IncidentRecord,
    link_after_ms: i64,
) -> Result<(), PgError> {
    let opened = incident.opened_at_ms;
    let candidates = transaction
        .query(
            "SELECT id, title, ends_ms, asset_ids::text, tags::text FROM changes
             WHERE starts_ms <= $1 AND ends_ms + $2 >= $1 ORDER BY starts_ms DESC, id DESC",
            &[&opened, &link_after_ms],
        )
        .await?;
    if candidates.is_empty() {
        return Ok(());
    }
    let Some(asset) = transaction
        .query_opt(
            "SELECT asset_id::text FROM asset_agents WHERE agent_id = $1",
            &[&incident.agent_id],
        )
        .await?
    else {
        return Ok(());
    };
    let asset_id: String = asset.get(0);
    let record: Option<String> = transaction
        .query_opt(
            "SELECT record::text FROM assets WHERE id = $1",
            &[&asset_id],
        )
        .await?
        .map(|row| row.get(0));
    // The asset record is the asset task's JSON; only its tags matter here.
    let tags: Vec<String> = record
        .and_then(|record| serde_json::from_str::<serde_json::Value>(&record).ok())
        .and_then(|record| serde_json::from_value(record["tags"].clone()).ok())
        .unwrap_or_default();
    for candidate in candidates {
        let asset_ids = json_list("changes.asset_ids", candidate.get(3))?;
        let change_tags = json_list("changes.tags", candidate.get(4))?;
        let affects = asset_ids.contains(&asset_id) || change_tags.iter().any(|t| tags.contains(t));
        if !affects {
            continue;
        }
        let (change, title, ends_ms): (i64, &str, i64) =
            (candidate.get(0), candidate.get(1), candidate.get(2));
        transaction
            .execute(
                "UPDATE incidents SET change_id = $2 WHERE id = $1",
                &[&incident.id, &change],
            )
            .await?;
        let detail = if opened < ends_ms {
            format!("Opened during change C-{change}: {title}.")
        } else {
            format!(
                "Opened {}s after change C-{change} ended: {title}.",
                (opened - ends_ms) / 1000
            )
        };
        return add_timeline(
            transaction,
            incident.id,
            opened,
            "change",
            "changes",
            &detail,
        )
        .await;
    }
    Ok(())
}

impl PgStore {
    /// Applies rule decisions in one transaction, in order, with the
    /// outcomes of SQLite's `apply_changes`. An open of a key another
    /// collector holds open is `None` (it is that collector's incident).
    pub async fn apply_incident_changes(
        &self,
        changes: Vec<IncidentChange>,
    ) -> Result<Vec<AppliedChange>, PgError> {
        retrying_conflicts(|| self.apply_incident_changes_once(&changes)).await
    }

    async fn apply_incident_changes_once(
        &self,
        changes: &[IncidentChange],
    ) -> Result<Vec<AppliedChange>, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        lock_rules(&transaction, openings(changes)).await?;
        lock_named(&transaction, changes).await?;
        let mut applied = Vec::with_capacity(changes.len());
        for change in changes {
            applied.push(apply_change(&transaction, change).await?);
        }
        transaction.commit().await?;
        Ok(applied)
    }

    /// Opens one incident (as an `Open` change would); returns it and whether
    /// this call opened it, for tests that race openers.
    #[cfg(test)]
    pub(super) async fn open_incident(
        &self,
        new: &NewIncident,
    ) -> Result<(IncidentRecord, bool), PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        lock_rules(&transaction, std::iter::once(new)).await?;
        let opened = open(&transaction, new).await?;
        transaction.commit().await?;
        Ok(opened)
    }

    /// Acknowledges an open incident; the refusal says why not. Two
    /// operators acknowledging on two collectors: the row lock lets one
    /// `UPDATE` win, the other is told it is already acknowledged.
    pub async fn acknowledge_incident(
        &self,
        id: i64,
        by: String,
        note: Option<String>,
        now_ms: i64,
    ) -> Result<Result<IncidentRecord, ChangeRefused>, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let outcome = acknowledge(&transaction, id, &by, note.as_deref(), now_ms).await?;
        transaction.commit().await?;
        Ok(outcome)
    }

    /// Resolves an unresolved incident (releasing its suppressed children,
    /// whose rows a rule burst may be changing too: retried on deadlock);
    /// refused if it is unknown or already resolved, here or elsewhere.
    pub async fn resolve_incident(
        &self,
        id: i64,
        by: String,
        reason: String,
        value: Option<f64>,
        now_ms: i64,
    ) -> Result<Result<IncidentRecord, ChangeRefused>, PgError> {
        retrying_conflicts(|| async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await?;
            let outcome = resolve(&transaction, id, &by, &reason, value, now_ms).await?;
            transaction.commit().await?;
            Ok(outcome)
        })
        .await
    }

    pub async fn add_incident_note(
        &self,
        id: i64,
        by: String,
        text: String,
        now_ms: i64,
    ) -> Result<Result<IncidentRecord, ChangeRefused>, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let Some(record) = get_in(&transaction, id).await? else {
            return Ok(Err(ChangeRefused::NotFound));
        };
        add_timeline(&transaction, id, now_ms, "note", &by, &text).await?;
        transaction.commit().await?;
        Ok(Ok(record))
    }

    /// Marks SLA targets missed by `now_ms`; each breach is returned by exactly
    /// one caller cluster-wide: the rows are locked in id order and re-checked
    /// (`FOR UPDATE` re-reads a row another collector flagged meanwhile).
    pub async fn mark_sla_breaches(
        &self,
        now_ms: i64,
    ) -> Result<Vec<(IncidentRecord, &'static str)>, PgError> {
        retrying_conflicts(|| self.mark_sla_breaches_once(now_ms)).await
    }

    async fn mark_sla_breaches_once(
        &self,
        now_ms: i64,
    ) -> Result<Vec<(IncidentRecord, &'static str)>, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let mut breached = Vec::new();
        for (kind, update) in [
            (
                "ack",
                "WITH due AS (
                     SELECT id FROM incidents
                     WHERE state = 'open' AND NOT ack_breached AND ack_due_at_ms IS NOT NULL
                       AND ack_due_at_ms <= $1
                     ORDER BY id FOR UPDATE
                 )
                 UPDATE incidents SET ack_breached = true FROM due WHERE incidents.id = due.id
                 RETURNING incidents.id",
            ),
            (
                "resolve",
                "WITH due AS (
                     SELECT id FROM incidents
                     WHERE state <> 'resolved' AND NOT resolve_breached AND resolve_due_at_ms IS NOT NULL
                       AND resolve_due_at_ms <= $1
                     ORDER BY id FOR UPDATE
                 )
                 UPDATE incidents SET resolve_breached = true FROM due WHERE incidents.id = due.id
                 RETURNING incidents.id",
            ),
        ] {
            let mut ids: Vec<i64> = transaction
                .query(update, &[&now_ms])
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect();
            ids.sort_unstable();
            for id in ids {
                add_timeline(
                    &transaction,
                    id,
                    now_ms,
                    IncidentEvent::SlaBreached.name(),
                    "sla",
                    &format!("SLA time-to-{kind} target missed."),
                )
                .await?;
                breached.push((written(&transaction, id).await?, kind));
            }
        }
        transaction.commit().await?;
        Ok(breached)
    }

    pub async fn incident(&self, id: i64) -> Result<Option<IncidentRecord>, PgError> {
        let client = self.client().await?;
        get_in(&client, id).await
    }

    /// Incidents matching `filter`, newest first (at most 500 when no limit).
    pub async fn incidents(&self, filter: IncidentFilter) -> Result<Vec<IncidentRecord>, PgError> {
        let limit = i64::from(if filter.limit == 0 { 500 } else { filter.limit });
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM incidents
                     WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR severity = $2)
                       AND ($3::text IS NULL OR agent_id = $3) AND ($5::bigint IS NULL OR id < $5)
                       AND (NOT $6 OR state <> 'resolved')
                       AND ($7::text IS NULL OR host ILIKE $7 ESCAPE '\\')
                     ORDER BY id DESC LIMIT $4"
                ),
                &[
                    &filter.state.map(IncidentState::as_str),
                    &filter.severity.map(Severity::as_str),
                    &filter.agent_id,
                    &limit,
                    &filter.before_id,
                    &filter.unresolved,
                    &filter.host_contains.as_deref().map(contains_pattern),
                ],
            )
            .await?;
        from_rows(&rows)
    }

    /// Every unresolved incident, oldest first: what a collector's rule
    /// engine starts from (incidents other collectors opened included).
    pub async fn unresolved_incidents(&self) -> Result<Vec<IncidentRecord>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {COLUMNS} FROM incidents WHERE state <> 'resolved' ORDER BY id"),
                &[],
            )
            .await?;
        from_rows(&rows)
    }

    pub async fn incident_timeline(&self, id: i64) -> Result<Vec<TimelineEntry>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT ts_ms, kind, actor, detail FROM incident_timeline WHERE incident_id = $1 ORDER BY id",
                &[&id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| TimelineEntry {
                ts_ms: row.get(0),
                kind: row.get(1),
                actor: row.get(2),
                detail: row.get(3),
            })
            .collect())
    }

    /// Incidents opened at or after `since_ms` (for MTTA/MTTR and SLA reports).
    pub async fn incidents_opened_since(
        &self,
        since_ms: i64,
    ) -> Result<Vec<IncidentRecord>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {COLUMNS} FROM incidents WHERE opened_at_ms >= $1 ORDER BY id"),
                &[&since_ms],
            )
            .await?;
        from_rows(&rows)
    }

    /// Incidents of one dedup key, oldest first.
    #[cfg(test)]
    pub(super) async fn incidents_by_key(
        &self,
        dedup_key: &str,
    ) -> Result<Vec<IncidentRecord>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {COLUMNS} FROM incidents WHERE dedup_key = $1 ORDER BY id"),
                &[&dedup_key],
            )
            .await?;
        from_rows(&rows)
    }

    /// Journal entries of one incident, in order.
    #[cfg(test)]
    pub(super) async fn incident_journal(&self, id: i64) -> Result<Vec<IncidentEvent>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT kind FROM incident_events WHERE incident_id = $1 ORDER BY id",
                &[&id],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let kind: &str = row.get(0);
                parse_column("incident_events.kind", kind, IncidentEvent::from_key)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_lock_keys_are_stable_across_builds() {
        // FNV-1a of "" and "a": a changed hash would split the lock between
        // collectors of two builds.
        assert_eq!(rule_lock_key(""), 0x811c_9dc5_u32 as i32);
        assert_eq!(rule_lock_key("a"), 0xe40c_292c_u32 as i32);
    }
}
