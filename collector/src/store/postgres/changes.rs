//! Change records on PostgreSQL, as `store/changes.rs`: created with their
//! maintenance window in one transaction, linked to the incidents that open
//! on their assets during the change or soon after, and read for the change
//! failure rate. An update locks the change row (`FOR UPDATE`), so two
//! collectors recording an outcome at once apply one after the other.

use tokio_postgres::{GenericClient, Row, Transaction};

use super::super::ChangeUpdate;
use super::problems::add_timeline;
use super::{PgError, PgStore, parse_column};
use crate::domain::{ChangeOutcome, ChangeRecord, ChangeRisk, IncidentRecord};

const COLUMNS: &str =
    "id, title, description, starts_ms, ends_ms, asset_ids, tags, risk, implementer,
    outcome, window_id, created_by, created_ms, updated_ms";

fn from_row(row: &Row) -> Result<ChangeRecord, PgError> {
    let list = |column: usize, name: &str| -> Result<Vec<String>, PgError> {
        parse_column(name, row.get(column), |text| {
            serde_json::from_str::<Vec<String>>(text)
        })
    };
    let risk: &str = row.get(7);
    let outcome: Option<&str> = row.get(9);
    Ok(ChangeRecord {
        id: row.get(0),
        title: row.get(1),
        description: row.get(2),
        starts_ms: row.get(3),
        ends_ms: row.get(4),
        asset_ids: list(5, "changes.asset_ids")?,
        tags: list(6, "changes.tags")?,
        risk: parse_column("changes.risk", risk, |text| {
            ChangeRisk::parse(text).ok_or_else(|| format!("unknown risk {text:?}"))
        })?,
        implementer: row.get(8),
        outcome: outcome
            .map(|text| {
                parse_column("changes.outcome", text, |text| {
                    ChangeOutcome::parse(text).ok_or_else(|| format!("unknown outcome {text:?}"))
                })
            })
            .transpose()?,
        window_id: row.get(10),
        created_by: row.get(11),
        created_ms: row.get(12),
        updated_ms: row.get(13),
    })
}

async fn get(
    client: &impl GenericClient,
    id: i64,
    lock: bool,
) -> Result<Option<ChangeRecord>, PgError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM changes WHERE id = $1{lock}"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

fn json_list(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

impl PgStore {
    /// Records a change and the maintenance window that silences its assets.
    pub async fn create_change(&self, change: ChangeRecord) -> Result<ChangeRecord, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let created = create_in(&transaction, &change).await?;
        transaction.commit().await?;
        Ok(created)
    }

    /// An operator's change to a change record; `None` if there is none.
    /// Recording an outcome closes the change: a window still open ends now.
    pub async fn update_change(
        &self,
        id: i64,
        update: ChangeUpdate,
    ) -> Result<Option<ChangeRecord>, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let updated = update_in(&transaction, id, &update).await?;
        transaction.commit().await?;
        Ok(updated)
    }

    pub async fn change(&self, id: i64) -> Result<Option<ChangeRecord>, PgError> {
        let client = self.client().await?;
        get(&**client, id, false).await
    }

    /// Changes newest first with how many incidents each links (one query);
    /// `before_id` pages back.
    pub async fn changes(
        &self,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(ChangeRecord, i64)>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS}, (SELECT count(*) FROM incidents WHERE change_id = changes.id)
                     FROM changes WHERE ($1::BIGINT IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
                ),
                &[&before_id, &i64::from(limit.max(1))],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((from_row(row)?, row.get(14))))
            .collect()
    }

    /// Changes that started between `since_ms` and `now_ms` (both included), oldest first.
    pub async fn changes_started_between(
        &self,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<ChangeRecord>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM changes WHERE starts_ms >= $1 AND starts_ms <= $2 ORDER BY id"
                ),
                &[&since_ms, &now_ms],
            )
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// (id, opened, resolved) of the incidents linked to a change, oldest first.
    pub async fn change_incidents(&self, id: i64) -> Result<Vec<(i64, i64, Option<i64>)>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, opened_at_ms, resolved_at_ms FROM incidents WHERE change_id = $1 ORDER BY id",
                &[&id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect())
    }
}

async fn create_in(
    transaction: &Transaction<'_>,
    change: &ChangeRecord,
) -> Result<ChangeRecord, PgError> {
    let (asset_ids, tags) = (json_list(&change.asset_ids), json_list(&change.tags));
    let id: i64 = transaction
        .query_one(
            "INSERT INTO changes (title, description, starts_ms, ends_ms, asset_ids, tags, risk,
                 implementer, created_by, created_ms, updated_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id",
            &[
                &change.title,
                &change.description,
                &change.starts_ms,
                &change.ends_ms,
                &asset_ids,
                &tags,
                &change.risk.as_str(),
                &change.implementer,
                &change.created_by,
                &change.created_ms,
            ],
        )
        .await?
        .get(0);
    // The window is the outbox's (SQLite: `outbox::create_window`); its row
    // is written here so the change and its window commit together.
    let window: i64 = transaction
        .query_one(
            "INSERT INTO maintenance_windows (asset_ids, tags, starts_ms, ends_ms, change_ref,
                 reason, created_by, created_ms, change_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            &[
                &asset_ids,
                &tags,
                &change.starts_ms,
                &change.ends_ms,
                &format!("C-{id}"),
                &change.title,
                &change.created_by,
                &change.created_ms,
                &id,
            ],
        )
        .await?
        .get(0);
    transaction
        .execute(
            "UPDATE changes SET window_id = $2 WHERE id = $1",
            &[&id, &window],
        )
        .await?;
    let row = transaction
        .query_one(
            &format!("SELECT {COLUMNS} FROM changes WHERE id = $1"),
            &[&id],
        )
        .await?;
    from_row(&row)
}

async fn update_in(
    transaction: &Transaction<'_>,
    id: i64,
    update: &ChangeUpdate,
) -> Result<Option<ChangeRecord>, PgError> {
    let Some(current) = get(transaction, id, true).await? else {
        return Ok(None);
    };
    let closes = update.outcome.is_some() && current.ends_ms > update.now_ms;
    let ends_ms = if closes {
        update.now_ms
    } else {
        current.ends_ms
    };
    let starts_ms = current.starts_ms.min(ends_ms);
    transaction
        .execute(
            "UPDATE changes SET title = $2, description = $3, implementer = $4, outcome = $5,
                 starts_ms = $6, ends_ms = $7, updated_ms = $8 WHERE id = $1",
            &[
                &id,
                update.title.as_ref().unwrap_or(&current.title),
                &update.description.clone().or(current.description),
                &update.implementer.clone().or(current.implementer),
                &update
                    .outcome
                    .or(current.outcome)
                    .map(ChangeOutcome::as_str),
                &starts_ms,
                &ends_ms,
                &update.now_ms,
            ],
        )
        .await?;
    if closes && let Some(window) = current.window_id {
        // SQLite: `outbox::end_window`.
        transaction
            .execute(
                "UPDATE maintenance_windows
                 SET ends_ms = least(ends_ms, $2), starts_ms = least(starts_ms, $2) WHERE id = $1",
                &[&window, &update.now_ms],
            )
            .await?;
    }
    get(transaction, id, false).await
}

/// For the incidents' `apply_incident_changes` (SQLite: `changes::on_open`),
/// in the transaction that inserted `incident`: links it to the change whose
/// assets include its agent's asset, if it opened during the change or up to
/// `link_after_ms` after it ended (the most recent such change), with a line
/// in its timeline. Writes only the incident's own row and timeline.
// Called by `apply_incident_changes` once the incidents' PostgreSQL side is wired.
#[allow(dead_code)]
pub(super) async fn on_open(
    transaction: &Transaction<'_>,
    incident: &IncidentRecord,
    link_after_ms: i64,
) -> Result<(), PgError> {
    let opened = incident.opened_at_ms;
    let candidates: Vec<ChangeRecord> = transaction
        .query(
            &format!(
                "SELECT {COLUMNS} FROM changes WHERE starts_ms <= $1 AND ends_ms + $2 >= $1
                 ORDER BY starts_ms DESC, id DESC"
            ),
            &[&opened, &link_after_ms],
        )
        .await?
        .iter()
        .map(from_row)
        .collect::<Result<_, _>>()?;
    if candidates.is_empty() {
        return Ok(());
    }
    let Some(asset) = transaction
        .query_opt(
            "SELECT l.asset_id, a.record FROM asset_agents l
             LEFT JOIN assets a ON a.id = l.asset_id WHERE l.agent_id = $1",
            &[&incident.agent_id],
        )
        .await?
    else {
        return Ok(());
    };
    let asset_id: String = asset.get(0);
    let record: Option<String> = asset.get(1);
    // The asset record is the asset task's JSON; only its tags matter here.
    let tags: Vec<String> = record
        .and_then(|record| serde_json::from_str::<serde_json::Value>(&record).ok())
        .and_then(|record| serde_json::from_value(record["tags"].clone()).ok())
        .unwrap_or_default();
    let Some(change) = candidates
        .iter()
        .find(|change| change.affects(&asset_id, &tags))
    else {
        return Ok(());
    };
    transaction
        .execute(
            "UPDATE incidents SET change_id = $2 WHERE id = $1",
            &[&incident.id, &change.id],
        )
        .await?;
    let detail = if opened < change.ends_ms {
        format!(
            "Opened during change {}: {}.",
            change.reference(),
            change.title
        )
    } else {
        format!(
            "Opened {}s after change {} ended: {}.",
            (opened - change.ends_ms) / 1000,
            change.reference(),
            change.title
        )
    };
    add_timeline(
        transaction,
        incident.id,
        opened,
        "change",
        "changes",
        &detail,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::testdb::TestDb;
    use crate::store::{AssetLink, AssetRow, AssetWrite};

    fn change(asset_ids: &[&str], tags: &[&str], starts_ms: i64, ends_ms: i64) -> ChangeRecord {
        ChangeRecord {
            id: 0,
            title: "kernel".into(),
            description: None,
            starts_ms,
            ends_ms,
            asset_ids: asset_ids.iter().map(|id| id.to_string()).collect(),
            tags: tags.iter().map(|tag| tag.to_string()).collect(),
            risk: ChangeRisk::Low,
            implementer: None,
            outcome: None,
            window_id: None,
            created_by: "ops".into(),
            created_ms: 0,
            updated_ms: 0,
        }
    }

    async fn asset(store: &PgStore, id: &str, agent: &str, tags: &[&str]) {
        let record = serde_json::json!({ "id": id, "tags": tags }).to_string();
        store
            .write_assets(vec![AssetWrite {
                row: AssetRow {
                    id: id.into(),
                    record,
                    status: "active".into(),
                    hostname: agent.into(),
                    updated_ms: 0,
                },
                events: Vec::new(),
                links: vec![AssetLink {
                    agent_id: agent.into(),
                    asset_id: id.into(),
                    confidence: 1.0,
                    reasons: String::new(),
                    matched_ms: 0,
                }],
                removed: Vec::new(),
            }])
            .await
            .unwrap();
    }

    /// Opens an incident on `agent` at `at` and runs `on_open`; returns its
    /// change and timeline.
    async fn open(store: &PgStore, agent: &str, at: i64) -> (Option<i64>, Vec<String>) {
        let mut client = store.client().await.unwrap();
        let transaction = client.transaction().await.unwrap();
        let id: i64 = transaction
            .query_one(
                "INSERT INTO incidents (dedup_key, rule, metric, agent_id, host, labels, severity,
                     state, summary, since_ms, opened_at_ms)
                 VALUES ($1, 'disk', 'disk.used_percent', $2, $2, '{}', 'critical', 'open', 'full', $3, $3)
                 RETURNING id",
                &[&format!("disk|{agent}|{at}"), &agent, &at],
            )
            .await
            .unwrap()
            .get(0);
        let incident = IncidentRecord {
            id,
            agent_id: agent.into(),
            opened_at_ms: at,
            ..super::super::problems::tests::test_incident()
        };
        on_open(&transaction, &incident, 60_000).await.unwrap();
        transaction.commit().await.unwrap();
        let change = client
            .query_one("SELECT change_id FROM incidents WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        let timeline = client
            .query(
                "SELECT detail FROM incident_timeline WHERE incident_id = $1 ORDER BY id",
                &[&id],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        (change, timeline)
    }

    #[tokio::test]
    async fn an_incident_on_a_changed_asset_links_to_the_change() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let store = PgStore::open(&db.settings(), "collector-a").await.unwrap();
        asset(&store, "asset-a", "a1", &[]).await;
        asset(&store, "asset-b", "a2", &["env:prod"]).await;
        asset(&store, "asset-c", "a3", &[]).await;
        let by_id = store
            .create_change(change(&["asset-a"], &[], 1_000, 10_000))
            .await
            .unwrap();
        let by_tag = store
            .create_change(change(&[], &["env:prod"], 2_000, 3_000))
            .await
            .unwrap();

        let (linked, timeline) = open(&store, "a1", 5_000).await;
        assert_eq!(linked, Some(by_id.id));
        assert_eq!(
            timeline,
            [format!("Opened during change C-{}: kernel.", by_id.id)]
        );
        let (linked, timeline) = open(&store, "a2", 33_000).await;
        assert_eq!(linked, Some(by_tag.id), "by tag, 30 s after it ended");
        assert_eq!(
            timeline,
            [format!(
                "Opened 30s after change C-{} ended: kernel.",
                by_tag.id
            )]
        );
        assert_eq!(
            open(&store, "a3", 5_000).await,
            (None, Vec::new()),
            "another asset"
        );
        assert_eq!(
            open(&store, "a9", 5_000).await,
            (None, Vec::new()),
            "no asset"
        );
        assert_eq!(open(&store, "a1", 80_000).await.0, None, "too long after");
        assert_eq!(store.change_incidents(by_id.id).await.unwrap().len(), 1);
    }
}
