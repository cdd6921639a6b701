//! `/api/v1/tokens`: API token administration over HTTP (admin scope), the
//! same operations as `steward-collector token`. A created token is in the
//! response once and nowhere else.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::actor::Actor;
use super::error::{ErrorBody, ErrorCode};
use super::extract::{JsonBody, Path};
use super::{ApiError, ApiState, rfc3339};
use crate::access::{Scope, TokenHash, is_config_token_name, new_token, valid_token_name};

/// `GET /api/v1/tokens`: names, scopes and dates, never tokens; the
/// `[auth] api_tokens` of collector.toml are listed as `config-N`.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "administration",
    operation_id = "list_tokens",
    summary = "API tokens: `name`, `scope`, `source` (database or config) and dates, never the tokens",
    security(("api_token" = ["admin"])),
    responses((status = 200, description = "Every API token", body = Vec<Object>)),
)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// 1 to 64 letters, digits, '.', '_' or '-'; `config-N` is reserved.
    name: String,
    /// `read`, `write` or `admin`.
    scope: String,
}

/// A token just created: the only time it is shown.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    name: String,
    /// `read`, `write` or `admin`.
    scope: &'static str,
    /// The bearer token; only its SHA-256 is kept.
    token: String,
}

/// `POST /api/v1/tokens {"name", "scope"}`: 201 with the token, shown once.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "administration",
    operation_id = "create_token",
    summary = "Create an API token; the response is the only place it is ever shown",
    request_body = NewToken,
    security(("api_token" = ["admin"])),
    responses(
        (status = 201, description = "The token, shown this once", body = CreatedToken),
        (status = 400, description = "`bad_request`: invalid name or scope; `invalid_json`", body = ErrorBody),
        (status = 409, description = "`already_exists`: a token has this name", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_body`: missing or unknown fields", body = ErrorBody),
    ),
)]
pub async fn create(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    JsonBody(body): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
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
        )
        .with_code(ErrorCode::AlreadyExists));
    }
    tracing::info!(message = "API token created.", name = %body.name, %scope, by = %actor.name);
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            name: body.name,
            scope: scope.as_str(),
            token,
        }),
    ))
}

/// A token just revoked.
#[derive(Serialize, ToSchema)]
pub struct TokenRevoked {
    name: String,
    /// RFC 3339.
    revoked_at: String,
}

/// `POST /api/v1/tokens/{name}/revoke`: refused from the next request on.
#[utoipa::path(
    post,
    path = "/api/v1/tokens/{name}/revoke",
    tag = "administration",
    operation_id = "revoke_token",
    summary = "Revoke an API token: refused from the next request on",
    params(("name" = String, Path, description = "Token name")),
    security(("api_token" = ["admin"])),
    responses(
        (status = 200, description = "The token is revoked", body = TokenRevoked),
        (status = 404, description = "`not_found`: no unrevoked token has this name", body = ErrorBody),
        (status = 409, description = "`conflict`: `config-N` tokens live in collector.toml", body = ErrorBody),
    ),
)]
pub async fn revoke(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<Json<TokenRevoked>, ApiError> {
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
    Ok(Json(TokenRevoked {
        name,
        revoked_at: rfc3339(now),
    }))
}
