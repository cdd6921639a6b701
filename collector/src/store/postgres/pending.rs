//! Store operations not yet implemented on PostgreSQL: each answers
//! [`PgError::NotYet`]. Implementations move from here into the module of
//! their subject (`ingest`, `incidents`, `outbox`, ...).

use super::super::*;
use super::{PgError, PgStore};

impl PgStore {
    /// Never resolves: PostgreSQL has no writer thread to stop.
    pub async fn writer_stopped(&self) -> Result<(), String> {
        std::future::pending().await
    }

    /// Closes the pool's idle connections.
    pub async fn close(&self) {
        self.pool.close();
    }

    pub async fn prune(&self, before_ms: i64) -> Result<usize, PgError> {
        let _ = (before_ms,);
        Err(PgError::NotYet("prune"))
    }

    pub async fn prune_rollups(&self, before_ms: i64) -> Result<usize, PgError> {
        let _ = (before_ms,);
        Err(PgError::NotYet("prune_rollups"))
    }

    pub async fn close_head_chunks(&self) -> Result<(), PgError> {
        Err(PgError::NotYet("close_head_chunks"))
    }

    pub async fn series_points(&self, key: &SeriesKey) -> Result<Vec<(i64, f64)>, PgError> {
        let _ = (key,);
        Err(PgError::NotYet("series_points"))
    }

    pub async fn history(&self, query: HistoryQuery) -> Result<Vec<SeriesHistory>, PgError> {
        let _ = (query,);
        Err(PgError::NotYet("history"))
    }

    pub fn head_encoded_bytes(&self) -> usize {
        0
    }

    pub async fn agents(&self) -> Result<Vec<AgentRecord>, PgError> {
        Err(PgError::NotYet("agents"))
    }

    pub async fn agents_page(
        &self,
        after: Option<(String, String)>,
        limit: u32,
    ) -> Result<Vec<AgentRecord>, PgError> {
        let _ = (after, limit);
        Err(PgError::NotYet("agents_page"))
    }

    pub async fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, PgError> {
        let _ = (agent_id,);
        Err(PgError::NotYet("agent"))
    }

    pub async fn counts(&self) -> Result<(u64, u64), PgError> {
        Err(PgError::NotYet("counts"))
    }

    pub fn latest_value(&self, key: &SeriesKey) -> Option<LatestValue> {
        let _ = (key,);
        None
    }

    pub fn latest(&self, agent_id: Option<&str>) -> Vec<(SeriesKey, LatestValue)> {
        let _ = (agent_id,);
        Vec::new()
    }

    pub fn write_problem(&self) -> Option<String> {
        None
    }
}
