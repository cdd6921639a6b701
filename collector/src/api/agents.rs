//! `GET /api/v1/agents`

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::{ApiError, ApiState, rfc3339};

#[derive(Serialize)]
pub struct AgentView {
    id: String,
    hostname: String,
    connected: bool,
    last_seen: String,
    last_seen_ms: i64,
    first_seen: String,
    version: String,
}

pub async fn list(State(state): State<ApiState>) -> Result<Json<Vec<AgentView>>, ApiError> {
    let agents = state.store.agents().await?;
    Ok(Json(
        agents
            .into_iter()
            .map(|agent| AgentView {
                connected: state.registry.is_connected(&agent.id),
                last_seen: rfc3339(agent.last_seen_ms),
                last_seen_ms: agent.last_seen_ms,
                first_seen: rfc3339(agent.first_seen_ms),
                id: agent.id,
                hostname: agent.hostname,
                version: agent.version,
            })
            .collect(),
    ))
}
