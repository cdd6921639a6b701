//! Problem records on PostgreSQL, as `store/problems.rs`: opened (or joined)
//! when an incident recurs, read and edited through the API.
//!
//! On SQLite the one writer thread makes "count the recurrences, then open
//! the problem" atomic. Here openers of one scope (rule, and agent unless
//! the rule counts across agents) take a transaction lock on that scope
//! before counting, so the collector that opens the Nth incident sees the
//! other N-1 even if another collector opened them a moment before; the
//! partial unique index `problems_one_unresolved_per_scope` backs it. An
//! operator's update locks the problem row (`FOR UPDATE`).

use tokio_postgres::{GenericClient, Row, Transaction};

use super::super::{ProblemFilter, ProblemRefused, ProblemUpdate};
use super::{PgError, PgStore, parse_column};
use crate::domain::{IncidentRecord, ProblemRecord, ProblemState, Recurrence};

const COLUMNS: &str = "id, rule, agent_id, host, title, state, root_cause, workaround, change_id,
    opened_ms, updated_ms, updated_by, resolved_ms";

/// First key of the per-scope recurrence lock (`pg_advisory_xact_lock(int, int)`).
const RECURRENCE_LOCK: i32 = 0x5354_0006;

fn from_row(row: &Row) -> Result<ProblemRecord, PgError> {
    let state: &str = row.get(5);
    Ok(ProblemRecord {
        id: row.get(0),
        rule: row.get(1),
        agent_id: row.get(2),
        host: row.get(3),
        title: row.get(4),
        state: parse_column("problems.state", state, str::parse::<ProblemState>)?,
        root_cause: row.get(6),
        workaround: row.get(7),
        change_id: row.get(8),
        opened_ms: row.get(9),
        updated_ms: row.get(10),
        updated_by: row.get(11),
        resolved_ms: row.get(12),
    })
}

async fn get(
    client: &impl GenericClient,
    id: i64,
    lock: bool,
) -> Result<Option<ProblemRecord>, PgError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM problems WHERE id = $1{lock}"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

impl PgStore {
    pub async fn problem(&self, id: i64) -> Result<Option<ProblemRecord>, PgError> {
        let client = self.client().await?;
        get(&**client, id, false).await
    }

    /// Problems newest first, with how many incidents each links (one query).
    pub async fn problems(
        &self,
        filter: ProblemFilter,
    ) -> Result<Vec<(ProblemRecord, i64)>, PgError> {
        let state = filter.state.map(ProblemState::as_str);
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS}, (SELECT count(*) FROM incidents WHERE problem_id = problems.id)
                     FROM problems WHERE ($1::TEXT IS NULL OR state = $1)
                       AND ($2::BIGINT IS NULL OR id < $2)
                     ORDER BY id DESC LIMIT $3"
                ),
                &[&state, &filter.before_id, &i64::from(filter.limit.max(1))],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((from_row(row)?, row.get(13))))
            .collect()
    }

    /// Ids of the incidents linked to a problem, oldest first.
    pub async fn problem_incidents(&self, id: i64) -> Result<Vec<i64>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id FROM incidents WHERE problem_id = $1 ORDER BY id",
                &[&id],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// An operator's change to a problem, refused as on SQLite.
    pub async fn update_problem(
        &self,
        id: i64,
        update: ProblemUpdate,
    ) -> Result<Result<ProblemRecord, ProblemRefused>, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let result = update_in(&transaction, id, &update).await?;
        transaction.commit().await?;
        Ok(result)
    }
}

/// Applies `update` to the locked problem row; a refusal writes nothing.
async fn update_in(
    transaction: &Transaction<'_>,
    id: i64,
    update: &ProblemUpdate,
) -> Result<Result<ProblemRecord, ProblemRefused>, PgError> {
    let Some(current) = get(transaction, id, true).await? else {
        return Ok(Err(ProblemRefused::NotFound));
    };
    let state = update.state.unwrap_or(current.state);
    // Editing the text of a resolved problem is fine; moving it is not.
    if update.state.is_some() && !current.state.may_become(state) {
        return Ok(Err(ProblemRefused::Transition(current.state, state)));
    }
    let workaround = update.workaround.clone().or(current.workaround.clone());
    if state == ProblemState::KnownError && workaround.as_deref().is_none_or(str::is_empty) {
        return Ok(Err(ProblemRefused::NoWorkaround));
    }
    if let Some(change) = update.change_id {
        // Changes are never deleted, so the answer cannot go stale before commit.
        let exists: bool = transaction
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM changes WHERE id = $1)",
                &[&change],
            )
            .await?
            .get(0);
        if !exists {
            return Ok(Err(ProblemRefused::UnknownChange));
        }
    }
    let resolved_ms = match (current.state, state) {
        (ProblemState::Resolved, _) => current.resolved_ms,
        (_, ProblemState::Resolved) => Some(update.now_ms),
        _ => None,
    };
    transaction
        .execute(
            "UPDATE problems SET title = $2, state = $3, root_cause = $4, workaround = $5,
                 change_id = $6, updated_ms = $7, updated_by = $8, resolved_ms = $9
             WHERE id = $1",
            &[
                &id,
                update.title.as_ref().unwrap_or(&current.title),
                &state.as_str(),
                &update.root_cause.clone().or(current.root_cause.clone()),
                &workaround,
                &update.change_id.or(current.change_id),
                &update.now_ms,
                &update.by,
                &resolved_ms,
            ],
        )
        .await?;
    Ok(get(transaction, id, false)
        .await?
        .ok_or(ProblemRefused::NotFound))
}

/// One line of an incident's timeline, in the caller's transaction.
pub(super) async fn add_timeline(
    transaction: &Transaction<'_>,
    incident_id: i64,
    ts_ms: i64,
    kind: &str,
    actor: &str,
    detail: &str,
) -> Result<(), PgError> {
    transaction
        .execute(
            "INSERT INTO incident_timeline (incident_id, ts_ms, kind, actor, detail)
             VALUES ($1, $2, $3, $4, $5)",
            &[&incident_id, &ts_ms, &kind, &actor, &detail],
        )
        .await?;
    Ok(())
}

async fn link(
    transaction: &Transaction<'_>,
    incident_id: i64,
    problem_id: i64,
    now_ms: i64,
) -> Result<(), PgError> {
    transaction
        .execute(
            "UPDATE incidents SET problem_id = $2 WHERE id = $1",
            &[&incident_id, &problem_id],
        )
        .await?;
    add_timeline(
        transaction,
        incident_id,
        now_ms,
        "problem",
        "problems",
        &format!("Linked to problem P-{problem_id}."),
    )
    .await
}

/// For the incidents' `apply_incident_changes` (SQLite: `problems::on_open`),
/// in the transaction that inserted `incident` (already in `incidents`):
/// links it to the unresolved problem of its rule (and agent), or opens one
/// when it is the `count`th incident within `within_ms`, linking them all.
///
/// Takes a transaction lock on the scope until the caller commits, so call
/// it after the incident's insert and commit soon after; two collectors
/// opening incidents of one scope then count each other's, and one problem
/// opens.
// Called by `apply_incident_changes` once the incidents' PostgreSQL side is wired.
#[allow(dead_code)]
pub(super) async fn on_open(
    transaction: &Transaction<'_>,
    incident: &IncidentRecord,
    recurrence: &Recurrence,
) -> Result<(), PgError> {
    let agent = (!recurrence.across_agents).then_some(incident.agent_id.as_str());
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2::TEXT || '|' || coalesce($3::TEXT, '')))",
            &[&RECURRENCE_LOCK, &incident.rule, &agent],
        )
        .await?;
    let opened = incident.opened_at_ms;
    // Joining is a conditional write: an operator may resolve the problem
    // at any moment, and then the incident counts towards a new one.
    let joined = transaction
        .query_opt(
            "UPDATE problems SET updated_ms = $3
             WHERE rule = $1 AND coalesce(agent_id, '') = coalesce($2::TEXT, '')
               AND state <> 'resolved'
             RETURNING id",
            &[&incident.rule, &agent, &opened],
        )
        .await?;
    if let Some(row) = joined {
        return link(transaction, incident.id, row.get(0), opened).await;
    }
    let recurring: Vec<i64> = transaction
        .query(
            "SELECT id FROM incidents WHERE rule = $1 AND ($2::TEXT IS NULL OR agent_id = $2)
               AND opened_at_ms >= $3 AND problem_id IS NULL ORDER BY id",
            &[&incident.rule, &agent, &(opened - recurrence.within_ms)],
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
            &[&incident.rule, &agent, &host, &title, &opened],
        )
        .await?
        .get(0);
    for id in recurring {
        link(transaction, id, problem, opened).await?;
    }
    tracing::info!(message = "Problem opened for recurring incidents.", problem, rule = %incident.rule);
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::postgres::testdb::TestDb;

    /// Inserts an open incident of rule `disk` on `agent` as the incidents
    /// code would (only the columns recurrence reads matter here).
    async fn insert_incident(
        transaction: &Transaction<'_>,
        key: &str,
        agent: &str,
        opened_ms: i64,
    ) -> IncidentRecord {
        let id: i64 = transaction
            .query_one(
                "INSERT INTO incidents (dedup_key, rule, metric, agent_id, host, labels, severity,
                     state, summary, since_ms, opened_at_ms)
                 VALUES ($1, 'disk', 'disk.used_percent', $2, 'web-1', '{}', 'critical', 'resolved',
                     'full', $3, $3)
                 RETURNING id",
                &[&key, &agent, &opened_ms],
            )
            .await
            .unwrap()
            .get(0);
        IncidentRecord {
            id,
            rule: "disk".into(),
            agent_id: agent.into(),
            host: "web-1".into(),
            opened_at_ms: opened_ms,
            ..test_incident()
        }
    }

    /// An incident with every field empty, for tests to fill in.
    pub(in crate::store::postgres) fn test_incident() -> IncidentRecord {
        IncidentRecord {
            id: 0,
            dedup_key: String::new(),
            rule: String::new(),
            metric: String::new(),
            agent_id: String::new(),
            host: String::new(),
            labels: Default::default(),
            severity: crate::domain::Severity::Critical,
            state: crate::domain::IncidentState::Open,
            flapping: false,
            summary: String::new(),
            runbook: None,
            value: None,
            last_value: None,
            since_ms: 0,
            opened_at_ms: 0,
            acknowledged_at_ms: None,
            acknowledged_by: None,
            resolved_at_ms: None,
            resolved_by: None,
            resolve_reason: None,
            ack_due_at_ms: None,
            resolve_due_at_ms: None,
            ack_breached: false,
            resolve_breached: false,
            previous_id: None,
            suppressed: false,
            caused_by: None,
            problem_id: None,
            change_id: None,
            held_until_ms: None,
        }
    }

    const THREE_IN_TEN_SECONDS: Recurrence = Recurrence {
        count: 3,
        within_ms: 10_000,
        across_agents: false,
    };

    async fn open_one(store: &PgStore, key: &str, agent: &str, at: i64) {
        let mut client = store.client().await.unwrap();
        let transaction = client.transaction().await.unwrap();
        let incident = insert_incident(&transaction, key, agent, at).await;
        on_open(&transaction, &incident, &THREE_IN_TEN_SECONDS)
            .await
            .unwrap();
        transaction.commit().await.unwrap();
    }

    #[tokio::test]
    async fn the_nth_recurrence_opens_a_problem_and_later_ones_join_it() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let store = PgStore::open(&db.settings(), "collector-a").await.unwrap();
        for (key, agent, at) in [("k1", "a1", 0), ("k2", "a1", 20_000), ("k3", "a2", 21_000)] {
            open_one(&store, key, agent, at).await;
        }
        open_one(&store, "k4", "a1", 25_000).await;
        assert!(
            store
                .problems(ProblemFilter {
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap()
                .is_empty(),
            "two of a1's within the window, one of a2's: no problem yet"
        );
        open_one(&store, "k5", "a1", 27_000).await;
        let problems = store
            .problems(ProblemFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(problems.len(), 1);
        let (problem, count) = &problems[0];
        assert_eq!(problem.agent_id.as_deref(), Some("a1"));
        assert_eq!(problem.title, "Recurring disk on web-1 (3 incidents)");
        assert_eq!(*count, 3);
        open_one(&store, "k6", "a1", 28_000).await;
        assert_eq!(store.problem_incidents(problem.id).await.unwrap().len(), 4);
        assert_eq!(
            store.problem(problem.id).await.unwrap().unwrap().updated_ms,
            28_000
        );
    }

    #[tokio::test]
    async fn two_collectors_opening_the_nth_recurrence_together_open_one_problem() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let a = PgStore::open(&db.settings(), "collector-a").await.unwrap();
        let b = PgStore::open(&db.settings(), "collector-b").await.unwrap();
        open_one(&a, "k1", "a1", 1_000).await;
        // Each collector inserts its incident; neither has committed when
        // they count, yet the second to count must see the first's.
        let mut client_a = a.client().await.unwrap();
        let mut client_b = b.client().await.unwrap();
        let transaction_a = client_a.transaction().await.unwrap();
        let transaction_b = client_b.transaction().await.unwrap();
        let incident_a = insert_incident(&transaction_a, "k2", "a1", 2_000).await;
        let incident_b = insert_incident(&transaction_b, "k3", "a1", 2_001).await;
        let opened_a = async {
            on_open(&transaction_a, &incident_a, &THREE_IN_TEN_SECONDS)
                .await
                .unwrap();
            transaction_a.commit().await.unwrap();
        };
        let opened_b = async {
            on_open(&transaction_b, &incident_b, &THREE_IN_TEN_SECONDS)
                .await
                .unwrap();
            transaction_b.commit().await.unwrap();
        };
        tokio::join!(opened_a, opened_b);
        let problems = a
            .problems(ProblemFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].1, 3, "all three recurrences are linked");
    }
}
