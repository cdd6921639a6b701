//! `GET /api/v1/agents`, one agent with its inventory, its packages and its
//! inventory changes.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::store::{DiskRecord, InterfaceRecord};
use utoipa::{IntoParams, ToSchema};

use axum::response::Response;

use super::actor::Actor;
use super::error::{ErrorBody, ErrorCode};
use super::extract::{Path, Query};
use super::{ApiError, ApiState, paging, rfc3339};

#[derive(Serialize, ToSchema)]
#[schema(as = Agent)]
pub struct AgentView {
    id: String,
    hostname: String,
    /// Whether the agent has a stream open to this collector now.
    connected: bool,
    /// RFC 3339.
    last_seen: String,
    /// Milliseconds since the epoch.
    last_seen_ms: i64,
    /// RFC 3339.
    first_seen: String,
    /// The agent's version.
    version: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Rows per page: 1 to 10000, default 1000.
    limit: Option<u32>,
    /// `X-Next-Cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /api/v1/agents`: by host name, paged (see `paging`).
#[utoipa::path(
    get,
    path = "/api/v1/agents",
    tag = "agents",
    operation_id = "list_agents",
    summary = "Agents, by host name, paged",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of agents", body = Vec<AgentView>,
            headers(("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page"))),
        (status = 400, description = "`invalid_query` or `invalid_cursor`", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<ApiState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = paging::limit(query.limit, 1000, 10_000);
    let after = match paging::decode_parts(query.cursor.as_deref())? {
        None => None,
        Some(parts) => match <[String; 2]>::try_from(parts) {
            Ok([hostname, id]) => Some((hostname, id)),
            Err(_) => {
                return Err(
                    ApiError::bad_request("invalid cursor").with_code(ErrorCode::InvalidCursor)
                );
            }
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

/// The API schema of a `store::InterfaceRecord`, which `store` owns and
/// does not describe: documentation only, kept equal by a test.
#[derive(ToSchema)]
#[schema(as = Interface)]
#[allow(dead_code)] // Read only by the OpenAPI derive.
pub struct InterfaceSchema {
    name: String,
    mac: String,
    ipv4: Vec<String>,
    ipv6: Vec<String>,
}

/// An agent's latest inventory.
#[derive(Serialize, ToSchema)]
#[schema(as = Inventory)]
pub struct InventoryView {
    /// OS, kernel, CPU, memory, DMI... as the agent reported them.
    facts: BTreeMap<String, String>,
    #[schema(value_type = Vec<crate::assets::model::DiskSchema>)]
    disks: Vec<DiskRecord>,
    #[schema(value_type = Vec<InterfaceSchema>)]
    interfaces: Vec<InterfaceRecord>,
    package_count: u64,
    /// RFC 3339.
    updated_at: String,
}

/// One agent with its latest inventory.
#[derive(Serialize, ToSchema)]
pub struct AgentDetail {
    id: String,
    hostname: String,
    /// Whether it holds a stream to the collector now.
    connected: bool,
    /// RFC 3339.
    last_seen: String,
    /// RFC 3339.
    first_seen: String,
    /// The agent's version.
    version: String,
    /// Null until the agent sent one.
    inventory: Option<InventoryView>,
}

/// `GET /api/v1/agents/{id}`: the agent plus its latest inventory.
#[utoipa::path(
    get,
    path = "/api/v1/agents/{id}",
    tag = "agents",
    operation_id = "get_agent",
    summary = "One agent with its latest inventory (facts, disks, interfaces)",
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 200, description = "The agent; `inventory` is null until the agent sent one", body = AgentDetail),
        (status = 404, description = "`not_found`: no such agent", body = ErrorBody),
    ),
)]
pub async fn detail(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<AgentDetail>, ApiError> {
    let agent = state
        .store
        .agent(&id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such agent"))?;
    let inventory = state.store.inventory(&id).await?;
    Ok(Json(AgentDetail {
        connected: state.registry.is_connected(&agent.id),
        last_seen: rfc3339(agent.last_seen_ms),
        first_seen: rfc3339(agent.first_seen_ms),
        id: agent.id,
        hostname: agent.hostname,
        version: agent.version,
        inventory: inventory.map(|inventory| InventoryView {
            facts: inventory.facts,
            disks: inventory.disks,
            interfaces: inventory.interfaces,
            package_count: inventory.package_count,
            updated_at: rfc3339(inventory.updated_ms),
        }),
    }))
}

#[derive(Serialize, ToSchema)]
#[schema(as = Package)]
pub struct PackageView {
    name: String,
    version: String,
}

/// `GET /api/v1/agents/{id}/packages`
#[utoipa::path(
    get,
    path = "/api/v1/agents/{id}/packages",
    tag = "agents",
    operation_id = "list_agent_packages",
    summary = "The agent's installed packages, by name, paged",
    params(("id" = String, Path, description = "Agent id"), PackagesQuery),
    responses(
        (status = 200, description = "A page of packages", body = Vec<PackageView>,
            headers(("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page"))),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
    ),
)]
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PackagesQuery {
    /// Rows per page: 1 to 50000, default 5000.
    limit: Option<u32>,
    /// The name of the last package of the previous page.
    cursor: Option<String>,
}

/// One change of an agent's inventory.
#[derive(Serialize, ToSchema)]
pub struct InventoryChange {
    /// RFC 3339.
    at: String,
    /// e.g. `package_installed`, `package_upgraded`, `fact_changed`.
    kind: String,
    /// The package or fact.
    subject: String,
    before: Option<String>,
    after: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// Rows per page: 1 to 5000, default 200.
    limit: Option<u32>,
    /// `X-Next-Cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /api/v1/agents/{id}/changes`: inventory changes, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/agents/{id}/changes",
    tag = "agents",
    operation_id = "list_agent_changes",
    summary = "The agent's inventory changes (`at`, `kind`, `subject`, `before`, `after`), newest first, paged",
    params(("id" = String, Path, description = "Agent id"), ChangesQuery),
    responses(
        (status = 200, description = "A page of inventory changes", body = Vec<InventoryChange>,
            headers(("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page"))),
        (status = 400, description = "`invalid_query` or `invalid_cursor`", body = ErrorBody),
    ),
)]
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
            .map(|event| InventoryChange {
                at: rfc3339(event.ts_ms),
                kind: event.kind,
                subject: event.subject,
                before: event.before,
                after: event.after,
            })
            .collect::<Vec<_>>(),
        next,
    ))
}

/// An agent whose certificate was just revoked.
#[derive(Serialize, ToSchema)]
pub struct AgentRevoked {
    agent_id: String,
    /// The name of the token that revoked it.
    revoked_by: String,
    /// RFC 3339.
    revoked_at: String,
}

/// `POST /api/v1/agents/{id}/revoke` (admin): like `steward-collector agent
/// revoke`, recorded as revoked by the token's name. The stream ends within seconds.
#[utoipa::path(
    post,
    path = "/api/v1/agents/{id}/revoke",
    tag = "administration",
    operation_id = "revoke_agent",
    summary = "Revoke an enrolled agent's certificate (admin); its stream ends within seconds",
    params(("id" = String, Path, description = "Agent id")),
    security(("api_token" = ["admin"])),
    responses(
        (status = 200, description = "The agent is revoked", body = AgentRevoked),
        (status = 404, description = "`not_found`: not enrolled or already revoked", body = ErrorBody),
    ),
)]
pub async fn revoke(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<AgentRevoked>, ApiError> {
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
    Ok(Json(AgentRevoked {
        agent_id: id,
        revoked_by: by,
        revoked_at: rfc3339(now_ms),
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use utoipa::PartialSchema;

    use super::*;

    /// Guards the typed agent detail of issue #14 against changing the JSON
    /// the console reads: `inventory` null, then the nested object.
    #[test]
    fn the_agent_detail_serialises_as_the_hand_built_json_did() {
        let disks = vec![DiskRecord {
            device: "/dev/sda1".to_string(),
            model: Some("SSD".to_string()),
            size_bytes: 500,
            filesystem: "ext4".to_string(),
            mount: "/".to_string(),
        }];
        let interfaces = vec![InterfaceRecord {
            name: "eno1".to_string(),
            mac: "b0:7b:25:00:00:01".to_string(),
            ipv4: vec!["10.0.0.5/24".to_string()],
            ipv6: Vec::new(),
        }];
        let facts: BTreeMap<String, String> =
            [("os_name".to_string(), "Debian".to_string())].into();
        let detail = |inventory| AgentDetail {
            id: "agent-1".to_string(),
            hostname: "web-01".to_string(),
            connected: true,
            last_seen: rfc3339(2_000),
            first_seen: rfc3339(1_000),
            version: "0.1.0".to_string(),
            inventory,
        };
        let mut old = json!({
            "id": "agent-1",
            "hostname": "web-01",
            "connected": true,
            "last_seen": rfc3339(2_000),
            "first_seen": rfc3339(1_000),
            "version": "0.1.0",
            "inventory": Value::Null,
        });
        assert_eq!(serde_json::to_value(detail(None)).unwrap(), old);
        old["inventory"] = json!({
            "facts": facts,
            "disks": disks,
            "interfaces": interfaces,
            "package_count": 42,
            "updated_at": rfc3339(3_000),
        });
        let typed = detail(Some(InventoryView {
            facts: facts.clone(),
            disks: disks.clone(),
            interfaces: interfaces.clone(),
            package_count: 42,
            updated_at: rfc3339(3_000),
        }));
        assert_eq!(serde_json::to_value(typed).unwrap(), old);

        // The documentation-only schema has the keys of the record.
        let keys =
            |value: &Value| -> Vec<String> { value.as_object().unwrap().keys().cloned().collect() };
        let schema = serde_json::to_value(InterfaceSchema::schema()).unwrap();
        assert_eq!(
            keys(&serde_json::to_value(&interfaces[0]).unwrap()),
            keys(&schema["properties"])
        );
    }
}
