//! `GET /api/v1/series?agent=ID&metric=NAME`: the latest value of each series;
//! `GET /api/v1/series/query`: the history of series (see [`history`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use axum::response::Response;

use super::error::{ErrorBody, ErrorCode};
use super::extract::Query;
use super::{ApiError, ApiState, paging, rfc3339};
use crate::store::{HistoryQuery, Labels, SeriesKey, StoreError, labels_json};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// Agent id.
    agent: Option<String>,
    /// Metric name.
    metric: Option<String>,
    /// Rows per page: 1 to 100000, default 10000.
    limit: Option<u32>,
    /// `X-Next-Cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = LatestValue)]
pub struct SeriesView {
    agent_id: String,
    metric: String,
    #[schema(value_type = std::collections::HashMap<String, String>)]
    labels: Labels,
    value: f64,
    /// RFC 3339.
    timestamp: String,
    timestamp_ms: i64,
}

/// Latest values ordered by (agent, metric, labels), paged (see `paging`).
#[utoipa::path(
    get,
    path = "/api/v1/series",
    tag = "series",
    operation_id = "latest_values",
    summary = "The latest value of each series, by agent, metric and labels, paged",
    params(SeriesQuery),
    responses(
        (status = 200, description = "A page of latest values", body = Vec<SeriesView>,
            headers(("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page"))),
        (status = 400, description = "`invalid_query` or `invalid_cursor`", body = ErrorBody),
    ),
)]
pub async fn latest(
    State(state): State<ApiState>,
    Query(query): Query<SeriesQuery>,
) -> Result<Response, ApiError> {
    let limit = paging::limit(query.limit, 10_000, 100_000) as usize;
    let after = match paging::decode_parts(query.cursor.as_deref())? {
        None => None,
        Some(parts) => match <[String; 3]>::try_from(parts) {
            Ok([agent_id, metric, labels]) => Some(SeriesKey {
                agent_id,
                metric,
                labels: serde_json::from_str(&labels).map_err(|_| {
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid cursor")
                        .with_code(ErrorCode::InvalidCursor)
                })?,
            }),
            Err(_) => {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid cursor")
                    .with_code(ErrorCode::InvalidCursor));
            }
        },
    };
    let mut page: Vec<_> = state
        .store
        .latest(query.agent.as_deref())
        .into_iter()
        .filter(|(key, _)| {
            query
                .metric
                .as_deref()
                .is_none_or(|metric| key.metric == metric)
        })
        .filter(|(key, _)| after.as_ref().is_none_or(|after| key > after))
        .take(limit + 1)
        .collect();
    let next = (page.len() > limit)
        .then(|| {
            page.truncate(limit);
            page.last().map(|(key, _)| {
                paging::encode_parts(&[&key.agent_id, &key.metric, &labels_json(&key.labels)])
            })
        })
        .flatten();
    Ok(paging::respond(
        page.into_iter()
            .map(|(key, latest)| SeriesView {
                agent_id: key.agent_id,
                metric: key.metric,
                labels: key.labels,
                value: latest.value,
                timestamp: rfc3339(latest.timestamp_ms),
                timestamp_ms: latest.timestamp_ms,
            })
            .collect(),
        next,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Agent id (required).
    agent: Option<String>,
    /// Metric name (required).
    metric: Option<String>,
    /// `k=v,k=v`: series carrying all of these labels.
    labels: Option<String>,
    /// Milliseconds since the epoch; default: an hour before `to`.
    from: Option<String>,
    /// Milliseconds since the epoch; default: now.
    to: Option<String>,
    /// A duration ("1m", "5m", "1h"); absent: raw points.
    step: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = SeriesHistory)]
pub struct HistoryView {
    series: Vec<SeriesHistoryView>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = SeriesPoints)]
struct SeriesHistoryView {
    metric: String,
    #[schema(value_type = std::collections::HashMap<String, String>)]
    labels: Labels,
    points: Vec<PointView>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Point)]
struct PointView {
    /// Milliseconds since the epoch (start of the step).
    t: i64,
    /// The value (the mean over the step).
    v: f64,
    /// Lowest value in the step.
    min: f64,
    /// Highest value in the step.
    max: f64,
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

fn parse_labels(text: &str) -> Result<Labels, ApiError> {
    text.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
            _ => Err(bad_request(format!(
                "invalid labels {text:?}: expected name=value pairs separated by commas"
            ))),
        })
        .collect()
}

fn parse_ms(name: &str, text: Option<&str>, default: i64) -> Result<i64, ApiError> {
    match text {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| {
            bad_request(format!(
                "invalid {name} {text:?}: expected milliseconds since the epoch"
            ))
        }),
    }
}

/// `GET /api/v1/series/query?agent=ID&metric=NAME&labels=k=v,k=v&from=MS&to=MS&step=DURATION`:
/// the history of the matching series of one agent. Raw points without a
/// step or when the step is not above the sample interval; otherwise
/// min/avg/max per step (from 5-minute rollups for steps of 5 minutes or more).
#[utoipa::path(
    get,
    path = "/api/v1/series/query",
    tag = "series",
    operation_id = "series_history",
    summary = "The history of one agent's matching series, raw or per step",
    params(HistoryParams),
    responses(
        (status = 200, description = "Matching series and their points", body = HistoryView),
        (status = 400, description = "`bad_request` (missing agent or metric, bad labels, times or step, query too large) or `invalid_query`", body = ErrorBody),
    ),
)]
pub async fn history(
    State(state): State<ApiState>,
    Query(params): Query<HistoryParams>,
) -> Result<Json<HistoryView>, ApiError> {
    let agent_id = params
        .agent
        .filter(|agent| !agent.is_empty())
        .ok_or_else(|| bad_request("agent is required"))?;
    let metric = params
        .metric
        .filter(|metric| !metric.is_empty())
        .ok_or_else(|| bad_request("metric is required"))?;
    let labels = parse_labels(params.labels.as_deref().unwrap_or(""))?;
    let to_ms = parse_ms("to", params.to.as_deref(), steward_core::now_ms())?;
    let from_ms = parse_ms(
        "from",
        params.from.as_deref(),
        to_ms.saturating_sub(3_600_000),
    )?;
    if from_ms > to_ms {
        return Err(bad_request(format!(
            "from ({from_ms}) is after to ({to_ms})"
        )));
    }
    let step_ms = match params.step.as_deref() {
        None | Some("") => None,
        Some(text) => {
            let step = humantime::parse_duration(text).map_err(|error| {
                bad_request(format!(
                    "invalid step {text:?}: {error} (expected e.g. 10s, 1m, 1h)"
                ))
            })?;
            let step_ms = i64::try_from(step.as_millis()).unwrap_or(i64::MAX);
            if step_ms < 1 {
                return Err(bad_request("step must be at least 1ms"));
            }
            Some(step_ms)
        }
    };
    let answer = state
        .store
        .history(HistoryQuery {
            agent_id,
            metric,
            labels,
            from_ms,
            to_ms,
            step_ms,
        })
        .await
        .map_err(|error| match error {
            StoreError::QueryTooLarge(reason) => bad_request(format!("query too large: {reason}")),
            error => ApiError::from(error),
        })?;
    Ok(Json(HistoryView {
        series: answer
            .into_iter()
            .map(|series| SeriesHistoryView {
                metric: series.key.metric,
                labels: series.key.labels,
                points: series
                    .points
                    .into_iter()
                    .map(|point| PointView {
                        t: point.timestamp_ms,
                        v: point.value,
                        min: point.min,
                        max: point.max,
                    })
                    .collect(),
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_as_pairs_and_bad_ones_are_refused() {
        assert_eq!(
            parse_labels("mount=/,device=sda").unwrap(),
            Labels::from([
                ("mount".to_string(), "/".to_string()),
                ("device".to_string(), "sda".to_string())
            ])
        );
        assert!(parse_labels("").unwrap().is_empty());
        assert!(parse_labels("mount").is_err());
        assert!(parse_labels("=x").is_err());
        assert_eq!(parse_ms("from", None, 5).unwrap(), 5);
        assert!(parse_ms("from", Some("yesterday"), 5).is_err());
    }
}
