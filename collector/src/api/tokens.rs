//! `/api/v1/tokens`: API token administration over HTTP (admin scope), the
//! same operations as `steward-collector token`. A created token is in the
//! response once and nowhere else.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::actor::Actor;
use super::{ApiError, ApiState, rfc3339};
use crate::access::{Scope, TokenHash, is_config_token_name, new_token, valid_token_name};

/// `GET /api/v1/tokens`: names, scopes and dates, never tokens; the
/// `[auth] api_tokens` of collector.toml are listed as `config-N`.
pub async fn list(State(state): State<ApiState>) -> Result<Json<Vec<Value>>, ApiError> {
    let time = |ms: Option<i64>| ms.map(rfc3339);
    let mut tokens: Vec<Value> = state
        .store
        .api_tokens()
        .await?
        .into_iter()
        .map(|row| {
            json!({
                "name": row.name,
                "scope": row.scope.as_str(),
                "source": "database",
                "created_at": rfc3339(row.created_ms),
                "last_used_at": time(row.last_used_ms),
                "revoked_at": time(row.revoked_ms),
            })
        })
        .collect();
    tokens.extend((1..=state.auth.config_token_count()).map(|index| {
        json!({
            "name": format!("config-{index}"),
            "scope": Scope::Admin.as_str(),
            "source": "config",
        })
    }));
    Ok(Json(tokens))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    scope: String,
}

/// `POST /api/v1/tokens {"name", "scope"}`: 201 with the token, shown once.
pub async fn create(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Json(body): Json<NewToken>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !valid_token_name(&body.name) || is_config_token_name(&body.name) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a token name is 1 to 64 letters, digits, '.', '_' or '-' (config-N is reserved)",
        ));
    }
    let scope = Scope::from_name(&body.scope).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "scope must be read, write or admin",
        )
    })?;
    let token = new_token();
    let created = state
        .store
        .create_api_token(
            body.name.clone(),
            scope,
            TokenHash::of(&token),
            steward_core::now_ms(),
        )
        .await?;
    if !created {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("an API token named {:?} already exists", body.name),
        ));
    }
    tracing::info!(message = "API token created.", name = %body.name, %scope, by = %actor.name);
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": body.name, "scope": scope.as_str(), "token": token})),
    ))
}

/// `POST /api/v1/tokens/{name}/revoke`: refused from the next request on.
pub async fn revoke(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if is_config_token_name(&name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "config-N tokens come from collector.toml: remove them there and restart",
        ));
    }
    let now = steward_core::now_ms();
    if !state.store.revoke_api_token(name.clone(), now).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no unrevoked API token named {name:?}"),
        ));
    }
    tracing::info!(message = "API token revoked.", %name, by = %actor.name);
    Ok(Json(json!({"name": name, "revoked_at": rfc3339(now)})))
}
