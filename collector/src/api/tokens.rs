//! `/api/v1/tokens`: API token administration over HTTP (admin scope), the
//! same operations as `steward-collector token`. A created token is in the
//! response once and nowhere else.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::actor::Actor;
use super::error::{ErrorBody, ErrorCode};
use super::extract::{JsonBody, Path};
use super::{ApiError, ApiState, rfc3339};
use crate::access::{Scope, TokenHash, is_config_token_name, new_token, valid_token_name};

/// Where a token is defined.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// Created with `token create` or `POST /api/v1/tokens`.
    Database,
    /// One of `[auth] api_tokens` in collector.toml, listed as `config-N`.
    Config,
}

/// One API token, never its secret. Config tokens have no dates: the three
/// date keys are absent for them, and null on a database token only when
/// the event has not happened.
#[derive(Serialize, ToSchema)]
#[schema(as = ApiToken)]
pub struct TokenView {
    name: String,
    /// `read`, `write` or `admin`.
    scope: &'static str,
    source: TokenSource,
    /// RFC 3339; absent for config tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    /// RFC 3339, null if never used; absent for config tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    last_used_at: Option<Option<String>>,
    /// RFC 3339, null if in force; absent for config tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    revoked_at: Option<Option<String>>,
}

/// `GET /api/v1/tokens`: names, scopes and dates, never tokens; the
/// `[auth] api_tokens` of collector.toml are listed as `config-N`.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "administration",
    operation_id = "list_tokens",
    summary = "API tokens: `name`, `scope`, `source` (database or config) and dates, never the tokens",
    security(("api_token" = ["admin"])),
    responses((status = 200, description = "Every API token", body = Vec<TokenView>)),
)]
pub async fn list(State(state): State<ApiState>) -> Result<Json<Vec<TokenView>>, ApiError> {
    let time = |ms: Option<i64>| ms.map(rfc3339);
    let mut tokens: Vec<TokenView> = state
        .store
        .api_tokens()
        .await?
        .into_iter()
        .map(|row| TokenView {
            name: row.name,
            scope: row.scope.as_str(),
            source: TokenSource::Database,
            created_at: Some(rfc3339(row.created_ms)),
            last_used_at: Some(time(row.last_used_ms)),
            revoked_at: Some(time(row.revoked_ms)),
        })
        .collect();
    tokens.extend(
        (1..=state.auth.config_token_count()).map(|index| TokenView {
            name: format!("config-{index}"),
            scope: Scope::Admin.as_str(),
            source: TokenSource::Config,
            created_at: None,
            last_used_at: None,
            revoked_at: None,
        }),
    );
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn database_token(last_used_ms: Option<i64>, revoked_ms: Option<i64>) -> TokenView {
        TokenView {
            name: "ci".to_string(),
            scope: Scope::Write.as_str(),
            source: TokenSource::Database,
            created_at: Some(rfc3339(1_000)),
            last_used_at: Some(last_used_ms.map(rfc3339)),
            revoked_at: Some(revoked_ms.map(rfc3339)),
        }
    }

    /// Guards the typed token list of issue #14: database tokens carry the
    /// three dates (null when not happened), config tokens none of them.
    #[test]
    fn the_token_view_serialises_as_the_hand_built_json_did() {
        assert_eq!(
            serde_json::to_value(database_token(None, None)).unwrap(),
            json!({
                "name": "ci", "scope": "write", "source": "database",
                "created_at": rfc3339(1_000), "last_used_at": null, "revoked_at": null,
            })
        );
        assert_eq!(
            serde_json::to_value(database_token(Some(2_000), Some(3_000))).unwrap(),
            json!({
                "name": "ci", "scope": "write", "source": "database",
                "created_at": rfc3339(1_000), "last_used_at": rfc3339(2_000),
                "revoked_at": rfc3339(3_000),
            })
        );
        let config = TokenView {
            name: "config-1".to_string(),
            scope: Scope::Admin.as_str(),
            source: TokenSource::Config,
            created_at: None,
            last_used_at: None,
            revoked_at: None,
        };
        assert_eq!(
            serde_json::to_value(config).unwrap(),
            json!({"name": "config-1", "scope": "admin", "source": "config"})
        );
    }
}
