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
use crate::domain::{ProblemRecord, ProblemState};

const COLUMNS: &str = "id, rule, agent_id, host, title, state, root_cause, workaround, change_id,
    opened_ms, updated_ms, updated_by, resolved_ms";

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
