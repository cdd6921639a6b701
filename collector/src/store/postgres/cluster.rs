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
    /// Records that this collector is alive now.
    pub async fn heartbeat(&self) -> Result<(), PgError> {
        self.client()
            .await?
            .execute(
                &format!(
                    "INSERT INTO collectors (name, heartbeat_ms, started_ms) VALUES ($1, {DB_NOW_MS}, {DB_NOW_MS})
                     ON CONFLICT (name) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms"
                ),
                &[&self.collector],
            )
            .await?;
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
