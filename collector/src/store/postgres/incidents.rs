//! Incidents on PostgreSQL: opened at most once per dedup key cluster-wide,
//! SLA breaches marked once.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::super::codec::labels_from_json;
use super::super::{ChangeRefused, IncidentRecord, NewIncident, labels_json};
use super::{PgError, PgStore, parse_column};
use crate::domain::{IncidentEvent, IncidentState, Severity};

const COLUMNS: &str = "id, dedup_key, rule, metric, agent_id, host, labels, severity, state, flapping, summary, runbook,
    value, last_value, since_ms, opened_at_ms, acknowledged_at_ms, acknowledged_by, resolved_at_ms, resolved_by,
    resolve_reason, ack_due_at_ms, resolve_due_at_ms, ack_breached, resolve_breached, previous_id,
    suppressed, caused_by, problem_id, change_id, held_until_ms";

fn from_row(row: &Row) -> Result<IncidentRecord, PgError> {
    let labels: &str = row.get(6);
    let severity: &str = row.get(7);
    let state: &str = row.get(8);
    Ok(IncidentRecord {
        id: row.get(0),
        dedup_key: row.get(1),
        rule: row.get(2),
        metric: row.get(3),
        agent_id: row.get(4),
        host: row.get(5),
        labels: parse_column("incidents.labels", labels, labels_from_json)?,
        severity: parse_column("incidents.severity", severity, str::parse::<Severity>)?,
        state: parse_column("incidents.state", state, str::parse::<IncidentState>)?,
        flapping: row.get(9),
        summary: row.get(10),
        runbook: row.get(11),
        value: row.get(12),
        last_value: row.get(13),
        since_ms: row.get(14),
        opened_at_ms: row.get(15),
        acknowledged_at_ms: row.get(16),
        acknowledged_by: row.get(17),
        resolved_at_ms: row.get(18),
        resolved_by: row.get(19),
        resolve_reason: row.get(20),
        ack_due_at_ms: row.get(21),
        resolve_due_at_ms: row.get(22),
        ack_breached: row.get(23),
        resolve_breached: row.get(24),
        previous_id: row.get(25),
        suppressed: row.get(26),
        caused_by: row.get(27),
        problem_id: row.get(28),
        change_id: row.get(29),
        held_until_ms: row.get(30),
    })
}

async fn get_in(client: &impl GenericClient, id: i64) -> Result<Option<IncidentRecord>, PgError> {
    client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM incidents WHERE id = $1"),
            &[&id],
        )
        .await?
        .map(|row| from_row(&row))
        .transpose()
}

async fn add_timeline(
    client: &impl GenericClient,
    incident: i64,
    ts_ms: i64,
    kind: &str,
    actor: &str,
    detail: &str,
) -> Result<(), PgError> {
    client
        .execute(
            "INSERT INTO incident_timeline (incident_id, ts_ms, kind, actor, detail) VALUES ($1, $2, $3, $4, $5)",
            &[&incident, &ts_ms, &kind, &actor, &detail],
        )
        .await?;
    Ok(())
}

async fn journal(
    client: &impl GenericClient,
    incident: i64,
    event: IncidentEvent,
    ts_ms: i64,
) -> Result<(), PgError> {
    client
        .execute(
            "INSERT INTO incident_events (incident_id, kind, ts_ms) VALUES ($1, $2, $3)",
            &[&incident, &event.key().as_ref(), &ts_ms],
        )
        .await?;
    Ok(())
}

impl PgStore {
    /// Opens an incident unless one is unresolved for the key anywhere in the
    /// cluster; returns the incident and whether this call opened it. Two
    /// collectors racing on one key: the partial unique index lets one insert
    /// win, the other reads the winner.
    pub async fn open_incident(
        &self,
        new: &NewIncident,
    ) -> Result<(IncidentRecord, bool), PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
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
        let Some(row) = inserted else {
            // Another collector (or an earlier call) holds the key open.
            let winner = transaction
                .query_opt(
                    &format!(
                        "SELECT {COLUMNS} FROM incidents WHERE dedup_key = $1 AND state <> 'resolved'"
                    ),
                    &[&new.dedup_key],
                )
                .await?;
            transaction.commit().await?;
            return match winner {
                Some(row) => Ok((from_row(&row)?, false)),
                // Resolved between the conflict and the read: let the caller retry.
                None => Box::pin(self.open_incident(new)).await,
            };
        };
        let id: i64 = row.get(0);
        let previous_id: Option<i64> = row.get(1);
        let value = new
            .value
            .map_or_else(|| "no data".to_string(), |value| format!("value {value}"));
        let mut detail = format!("Opened by rule {} ({value}): {}", new.rule, new.summary);
        if let Some(previous) = previous_id {
            detail.push_str(&format!(" — recurrence of incident {previous}"));
        }
        add_timeline(
            &transaction,
            id,
            new.opened_at_ms,
            IncidentEvent::Opened.name(),
            "rules",
            &detail,
        )
        .await?;
        journal(&transaction, id, IncidentEvent::Opened, new.opened_at_ms).await?;
        let record = get_in(&transaction, id).await?.ok_or(PgError::Decode {
            column: "incidents.id".to_string(),
            message: format!("incident {id} vanished inside its own transaction"),
        })?;
        transaction.commit().await?;
        Ok((record, true))
    }

    /// Resolves an unresolved incident; `None` if it is unknown or already
    /// resolved (by this or another collector).
    pub async fn resolve_incident(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Option<IncidentRecord>, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let changed = transaction
            .execute(
                "UPDATE incidents SET state = 'resolved', resolved_at_ms = $2, resolved_by = $3,
                     resolve_reason = $4, flapping = false
                 WHERE id = $1 AND state <> 'resolved'",
                &[&id, &now_ms, &by, &reason],
            )
            .await?;
        if changed == 0 {
            return Ok(None);
        }
        add_timeline(
            &transaction,
            id,
            now_ms,
            IncidentEvent::Resolved.name(),
            by,
            &format!("Resolved: {reason}."),
        )
        .await?;
        journal(&transaction, id, IncidentEvent::Resolved, now_ms).await?;
        let record = get_in(&transaction, id).await?;
        transaction.commit().await?;
        Ok(record)
    }

    /// Acknowledges an open incident; the refusal says why not. Two
    /// operators acknowledging on two collectors: the row lock lets one
    /// `UPDATE` win, the other is told it is already acknowledged.
    pub async fn acknowledge_incident(
        &self,
        id: i64,
        by: &str,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<Result<IncidentRecord, ChangeRefused>, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let changed = transaction
            .execute(
                "UPDATE incidents SET state = 'acknowledged', acknowledged_at_ms = $2, acknowledged_by = $3
                 WHERE id = $1 AND state = 'open'",
                &[&id, &now_ms, &by],
            )
            .await?;
        if changed == 0 {
            let refused = match get_in(&transaction, id).await? {
                None => ChangeRefused::NotFound,
                Some(record) if record.state == IncidentState::Resolved => {
                    ChangeRefused::AlreadyResolved
                }
                Some(_) => ChangeRefused::AlreadyAcknowledged,
            };
            return Ok(Err(refused));
        }
        let detail = note.map_or_else(
            || "Acknowledged.".to_string(),
            |note| format!("Acknowledged: {note}"),
        );
        add_timeline(
            &transaction,
            id,
            now_ms,
            IncidentEvent::Acknowledged.name(),
            by,
            &detail,
        )
        .await?;
        journal(&transaction, id, IncidentEvent::Acknowledged, now_ms).await?;
        let record = get_in(&transaction, id).await?;
        transaction.commit().await?;
        Ok(record.ok_or(ChangeRefused::NotFound))
    }

    /// Every unresolved incident, oldest first: what a collector's rule
    /// engine starts from (incidents other collectors opened included).
    pub async fn unresolved_incidents(&self) -> Result<Vec<IncidentRecord>, PgError> {
        self.client()
            .await?
            .query(
                &format!("SELECT {COLUMNS} FROM incidents WHERE state <> 'resolved' ORDER BY id"),
                &[],
            )
            .await?
            .iter()
            .map(from_row)
            .collect()
    }

    pub async fn incident(&self, id: i64) -> Result<Option<IncidentRecord>, PgError> {
        let client = self.client().await?;
        get_in(&client, id).await
    }

    /// Incidents of one dedup key, oldest first.
    pub async fn incidents_by_key(&self, dedup_key: &str) -> Result<Vec<IncidentRecord>, PgError> {
        self.client()
            .await?
            .query(
                &format!("SELECT {COLUMNS} FROM incidents WHERE dedup_key = $1 ORDER BY id"),
                &[&dedup_key],
            )
            .await?
            .iter()
            .map(from_row)
            .collect()
    }

    /// Journal entries (incident, event) of one incident, in order.
    pub async fn incident_journal(&self, id: i64) -> Result<Vec<IncidentEvent>, PgError> {
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

    /// Marks SLA targets missed by `now_ms`; each breach is returned by exactly
    /// one caller cluster-wide (the `UPDATE` that flips the flag wins).
    pub async fn mark_sla_breaches(
        &self,
        now_ms: i64,
    ) -> Result<Vec<(IncidentRecord, &'static str)>, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let mut breached = Vec::new();
        for (kind, update) in [
            (
                "ack",
                "UPDATE incidents SET ack_breached = true
                 WHERE state = 'open' AND NOT ack_breached AND ack_due_at_ms <= $1 RETURNING id",
            ),
            (
                "resolve",
                "UPDATE incidents SET resolve_breached = true
                 WHERE state <> 'resolved' AND NOT resolve_breached AND resolve_due_at_ms <= $1 RETURNING id",
            ),
        ] {
            let ids: Vec<i64> = transaction
                .query(update, &[&now_ms])
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect();
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
                if let Some(record) = get_in(&transaction, id).await? {
                    breached.push((record, kind));
                }
            }
        }
        transaction.commit().await?;
        Ok(breached)
    }
}
