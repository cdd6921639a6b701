//! Which collector watches which agent.
//!
//! An agent streams to one collector at a time, and only that collector sees
//! its samples, so only it can tell a breach from silence. Every collector
//! writes a heartbeat; an agent belongs to the collector it last said hello
//! to while that collector's heartbeat is fresh. When a collector dies, its
//! agents are orphans: every live collector watches them (absence rules)
//! until they say hello to one, and the unique open-incident key keeps the
//! incidents they open to one each. Heartbeats are stamped and judged by the
//! database's clock, so collectors whose clocks disagree still agree on who
//! is alive.

use super::{PgError, PgStore};

/// Milliseconds since the epoch on the database server's clock.
const DB_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// An agent and whether this collector should evaluate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentOwner {
    pub agent_id: String,
    pub hostname: String,
    /// The collector it last said hello to.
    pub collector: Option<String>,
    /// That collector's heartbeat is fresh.
    pub collector_alive: bool,
    pub last_seen_ms: i64,
}

impl PgStore {
    /// Takes this collector's name for this process: refused while another
    /// process holds it with a heartbeat under `dead_after_ms` old. A
    /// restart after a crash waits until its previous heartbeat is stale.
    pub async fn claim_instance(&self, dead_after_ms: i64) -> Result<(), PgError> {
        let deadline = std::time::Instant::now()
            + std::time::Duration::from_millis(u64::try_from(dead_after_ms).unwrap_or(0))
            + std::time::Duration::from_secs(2);
        loop {
            let claimed = self
                .client()
                .await?
                .query_opt(
                    &format!(
                        "INSERT INTO collectors (name, session, heartbeat_ms, started_ms)
                         VALUES ($1, $2, {DB_NOW_MS}, {DB_NOW_MS})
                         ON CONFLICT (name) DO UPDATE SET session = excluded.session,
                             heartbeat_ms = excluded.heartbeat_ms, started_ms = excluded.started_ms
                         WHERE collectors.session = excluded.session
                            OR collectors.heartbeat_ms <= {DB_NOW_MS} - $3
                         RETURNING name"
                    ),
                    &[&self.collector, &self.session, &dead_after_ms],
                )
                .await?;
            if claimed.is_some() {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(PgError::InstanceTaken {
                    name: self.collector.clone(),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// Records that this collector is alive now; refused if another process
    /// has taken its name meanwhile (this one was taken for dead).
    pub async fn heartbeat(&self) -> Result<(), PgError> {
        let updated = self
            .client()
            .await?
            .execute(
                &format!(
                    "UPDATE collectors SET heartbeat_ms = {DB_NOW_MS} WHERE name = $1 AND session = $2"
                ),
                &[&self.collector, &self.session],
            )
            .await?;
        if updated == 0 {
            return Err(PgError::InstanceTaken {
                name: self.collector.clone(),
            });
        }
        Ok(())
    }

    /// Every agent with its collector, which counts as alive when its
    /// heartbeat is under `dead_after_ms` old.
    pub async fn agent_owners(&self, dead_after_ms: i64) -> Result<Vec<AgentOwner>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT a.id, a.collector, COALESCE(c.heartbeat_ms > {DB_NOW_MS} - $1, false), a.last_seen_ms,
                            a.hostname
                     FROM agents a LEFT JOIN collectors c ON c.name = a.collector
                     ORDER BY a.id"
                ),
                &[&dead_after_ms],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| AgentOwner {
                agent_id: row.get(0),
                collector: row.get(1),
                collector_alive: row.get(2),
                last_seen_ms: row.get(3),
                hostname: row.get(4),
            })
            .collect())
    }

    /// The collectors whose heartbeat is under `dead_after_ms` old, by name.
    pub async fn live_collectors(&self, dead_after_ms: i64) -> Result<Vec<String>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT name FROM collectors WHERE heartbeat_ms > {DB_NOW_MS} - $1
                     ORDER BY name COLLATE \"C\""
                ),
                &[&dead_after_ms],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}
