//! `GET /api/v1/agents`, one agent with its inventory, its packages and its
//! inventory changes.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use axum::response::Response;

use super::actor::Actor;
use super::{ApiError, ApiState, paging, rfc3339};

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

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /api/v1/agents`: by host name, paged (see `paging`).
pub async fn list(
    State(state): State<ApiState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = paging::limit(query.limit, 1000, 10_000);
    let after = match paging::decode_parts(query.cursor.as_deref())? {
        None => None,
        Some(parts) => match <[String; 2]>::try_from(parts) {
            Ok([hostname, id]) => Some((hostname, id)),
            Err(_) => return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid cursor")),
        },
    };
    let agents = state.store.agents_page(after, limit).await?;
    let next = (agents.len() == limit as usize)
        .then(|| {
            agents
                .last()
                .map(|agent| paging::encode_parts(&[&agent.hostname, &agent.id]))
        })
        .flatten();
    Ok(paging::respond(
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
            .collect::<Vec<_>>(),
        next,
    ))
}

/// `GET /api/v1/agents/{id}`: the agent plus its latest inventory.
pub async fn detail(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let agent = state
        .store
        .agent(&id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such agent"))?;
    let inventory = state.store.inventory(&id).await?;
    let mut body = serde_json::json!({
        "id": agent.id,
        "hostname": agent.hostname,
        "connected": state.registry.is_connected(&agent.id),
        "last_seen": rfc3339(agent.last_seen_ms),
        "first_seen": rfc3339(agent.first_seen_ms),
        "version": agent.version,
        "inventory": Value::Null,
    });
    if let Some(inventory) = inventory {
        body["inventory"] = serde_json::json!({
            "facts": inventory.facts,
            "disks": inventory.disks,
            "interfaces": inventory.interfaces,
            "package_count": inventory.package_count,
            "updated_at": rfc3339(inventory.updated_ms),
        });
    }
    Ok(Json(body))
}

#[derive(Serialize)]
pub struct PackageView {
    name: String,
    version: String,
}

/// `GET /api/v1/agents/{id}/packages`
pub async fn packages(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(query): Query<PackagesQuery>,
) -> Result<Response, ApiError> {
    let limit = paging::limit(query.limit, 5000, 50_000) as usize;
    let packages = state.store.packages(&id).await?;
    let mut page: Vec<PackageView> = packages
        .into_iter()
        .filter(|(name, _)| query.cursor.as_ref().is_none_or(|after| name > after))
        .take(limit + 1)
        .map(|(name, version)| PackageView { name, version })
        .collect();
    let next = (page.len() > limit)
        .then(|| {
            page.truncate(limit);
            page.last().map(|package| package.name.clone())
        })
        .flatten();
    Ok(paging::respond(page, next))
}

#[derive(Deserialize)]
pub struct PackagesQuery {
    limit: Option<u32>,
    /// The name of the last package of the previous page.
    cursor: Option<String>,
}

#[derive(Deserialize)]
pub struct ChangesQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /api/v1/agents/{id}/changes`: inventory changes, newest first.
pub async fn changes(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(query): Query<ChangesQuery>,
) -> Result<Response, ApiError> {
    let limit = paging::limit(query.limit, 200, 5000);
    let events = state
        .store
        .inventory_events(
            vec![id],
            false,
            paging::id_cursor(query.cursor.as_deref())?,
            limit,
        )
        .await?;
    let next = (events.len() == limit as usize)
        .then(|| events.last().map(|event| event.id.to_string()))
        .flatten();
    Ok(paging::respond(
        events
            .into_iter()
            .map(|event| {
                serde_json::json!({
                    "at": rfc3339(event.ts_ms),
                    "kind": event.kind,
                    "subject": event.subject,
                    "before": event.before,
                    "after": event.after,
                })
            })
            .collect::<Vec<_>>(),
        next,
    ))
}

/// `POST /api/v1/agents/{id}/revoke` (admin): like `steward-collector agent
/// revoke`, recorded as revoked by the token's name. The stream ends within seconds.
pub async fn revoke(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    // Who revoked is the token's name, as for every other write.
    let by = actor.name;
    let now_ms = steward_core::now_ms();
    let revoked = state
        .store
        .revoke_agent(id.clone(), by.clone(), now_ms)
        .await?;
    if !revoked {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("agent {id} is not enrolled or already revoked"),
        ));
    }
    tracing::info!(message = "Agent certificate revoked.", agent_id = %id, %by);
    Ok(Json(serde_json::json!({
        "agent_id": id,
        "revoked_by": by,
        "revoked_at": rfc3339(now_ms),
    })))
}
