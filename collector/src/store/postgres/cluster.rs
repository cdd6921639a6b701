//! Which collector watches which agent.
//!
//! An agent streams to one collector at a time, and only that collector sees
//! its samples, so only it can tell a breach from silence. Every collector
//! writes a heartbeat; an agent belongs to the collector it last said hello
//! to while that collector's heartbeat is fresh. When a collector dies, its
//! agents are orphans: every live collector watches them (absence rules)
//! until they say hello to one, and the unique open-incident key keeps the
//! incidents they open to one each.

use super::{PgError, PgStore};

/// An agent and whether this collector should evaluate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentOwner {
    pub agent_id: String,
    /// The collector it last said hello to.
    pub collector: Option<String>,
    /// That collector's heartbeat is fresh.
    pub collector_alive: bool,
    pub last_seen_ms: i64,
}

impl PgStore {
    /// Records that this collector is alive at `now_ms`.
    pub async fn heartbeat(&self, now_ms: i64) -> Result<(), PgError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO collectors (name, heartbeat_ms, started_ms) VALUES ($1, $2, $2)
                 ON CONFLICT (name) DO UPDATE SET heartbeat_ms = GREATEST(collectors.heartbeat_ms, excluded.heartbeat_ms)",
                &[&self.collector, &now_ms],
            )
            .await?;
        Ok(())
    }

    /// Every agent with its collector, which counts as alive when its
    /// heartbeat is newer than `alive_after_ms`.
    pub async fn agent_owners(&self, alive_after_ms: i64) -> Result<Vec<AgentOwner>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT a.id, a.collector, COALESCE(c.heartbeat_ms > $1, false), a.last_seen_ms
                 FROM agents a LEFT JOIN collectors c ON c.name = a.collector
                 ORDER BY a.id",
                &[&alive_after_ms],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| AgentOwner {
                agent_id: row.get(0),
                collector: row.get(1),
                collector_alive: row.get(2),
                last_seen_ms: row.get(3),
            })
            .collect())
    }

    /// The collectors whose heartbeat is newer than `alive_after_ms`, by name.
    pub async fn live_collectors(&self, alive_after_ms: i64) -> Result<Vec<String>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT name FROM collectors WHERE heartbeat_ms > $1 ORDER BY name COLLATE \"C\"",
                &[&alive_after_ms],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}
