//! `GET /api/v1/series?agent=ID&metric=NAME`: the latest value of each series.

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};

use super::{ApiState, rfc3339};
use crate::store::Labels;

#[derive(Deserialize)]
pub struct SeriesQuery {
    agent: Option<String>,
    metric: Option<String>,
}

#[derive(Serialize)]
pub struct SeriesView {
    agent_id: String,
    metric: String,
    labels: Labels,
    value: f64,
    timestamp: String,
    timestamp_ms: i64,
}

pub async fn latest(
    State(state): State<ApiState>,
    Query(query): Query<SeriesQuery>,
) -> Json<Vec<SeriesView>> {
    Json(
        state
            .store
            .latest(query.agent.as_deref())
            .into_iter()
            .filter(|(key, _)| {
                query
                    .metric
                    .as_deref()
                    .is_none_or(|metric| key.metric == metric)
            })
            .map(|(key, latest)| SeriesView {
                agent_id: key.agent_id,
                metric: key.metric,
                labels: key.labels,
                value: latest.value,
                timestamp: rfc3339(latest.timestamp_ms),
                timestamp_ms: latest.timestamp_ms,
            })
            .collect(),
    )
}
