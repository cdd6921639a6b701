//! Incident rows on PostgreSQL: reading them into records, and the timeline
//! and journal lines every change writes. Shared by `incidents` and
//! `parent_hold`, which both change incidents.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::super::IncidentRecord;
use super::super::codec::labels_from_json;
use super::{PgError, parse_column};
use crate::domain::{IncidentEvent, IncidentState, Severity};

pub(super) const COLUMNS: &str = "id, dedup_key, rule, metric, agent_id, host, labels, severity, state, flapping, summary, runbook,
    value, last_value, since_ms, opened_at_ms, acknowledged_at_ms, acknowledged_by, resolved_at_ms, resolved_by,
    resolve_reason, ack_due_at_ms, resolve_due_at_ms, ack_breached, resolve_breached, previous_id,
    suppressed, caused_by, problem_id, change_id, held_until_ms";

pub(super) fn from_row(row: &Row) -> Result<IncidentRecord, PgError> {
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

pub(super) fn from_rows(rows: &[Row]) -> Result<Vec<IncidentRecord>, PgError> {
    rows.iter().map(from_row).collect()
}

pub(super) async fn get_in(
    client: &impl GenericClient,
    id: i64,
) -> Result<Option<IncidentRecord>, PgError> {
    client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM incidents WHERE id = $1"),
            &[&id],
        )
        .await?
        .map(|row| from_row(&row))
        .transpose()
}

/// The incident `id`, which this transaction just wrote.
pub(super) async fn written(
    client: &impl GenericClient,
    id: i64,
) -> Result<IncidentRecord, PgError> {
    get_in(client, id).await?.ok_or_else(|| PgError::Decode {
        column: "incidents.id".to_string(),
        message: format!("incident {id} vanished inside its own transaction"),
    })
}

pub(super) async fn add_timeline(
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

/// Appends the journal entry the outbox routes (`incident_events`).
pub(super) async fn journal(
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
