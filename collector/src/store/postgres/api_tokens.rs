//! API tokens on PostgreSQL (same meaning as `store/api_tokens.rs`): kept as
//! SHA-256 hashes, looked up per request, never cached, so a revocation made
//! through any collector or the CLI is in force for the next request
//! everywhere. A name is unique among unrevoked tokens by a partial unique
//! index, so two collectors creating the same name: one wins.

use tokio_postgres::Row;

use super::super::{ActiveToken, ApiTokenRow};
use super::{PgError, PgStore, parse_column};
use crate::access::{Scope, TokenHash};

fn scope_column(text: &str) -> Result<Scope, PgError> {
    parse_column("api_tokens.scope", text, |name| {
        Scope::from_name(name).ok_or_else(|| format!("unknown API token scope {name:?}"))
    })
}

fn listed_row(row: &Row) -> Result<ApiTokenRow, PgError> {
    Ok(ApiTokenRow {
        name: row.get(0),
        scope: scope_column(row.get(1))?,
        created_ms: row.get(2),
        last_used_ms: row.get(3),
        revoked_ms: row.get(4),
    })
}

impl PgStore {
    /// The unrevoked token whose hash is `hash`, if any.
    pub async fn active_api_token(&self, hash: TokenHash) -> Result<Option<ActiveToken>, PgError> {
        let Some(row) = self
            .client()
            .await?
            .query_opt(
                "SELECT id, name, scope, token_sha256 FROM api_tokens
                 WHERE token_sha256 = $1 AND revoked_ms IS NULL",
                &[&&hash.0[..]],
            )
            .await?
        else {
            return Ok(None);
        };
        // The index found the row; compare once more in constant time so the
        // answer never rests on a variable-time comparison alone.
        let stored: Vec<u8> = row.get(3);
        let Ok(stored) = <[u8; 32]>::try_from(stored) else {
            return Ok(None);
        };
        if !TokenHash(stored).matches(&hash) {
            return Ok(None);
        }
        Ok(Some(ActiveToken {
            id: row.get(0),
            name: row.get(1),
            scope: scope_column(row.get(2))?,
        }))
    }

    /// Every token, revoked ones included, oldest first (never a hash).
    pub async fn api_tokens(&self) -> Result<Vec<ApiTokenRow>, PgError> {
        self.client()
            .await?
            .query(
                "SELECT name, scope, created_ms, last_used_ms, revoked_ms
                 FROM api_tokens ORDER BY id",
                &[],
            )
            .await?
            .iter()
            .map(listed_row)
            .collect()
    }

    /// Adds a token; false (nothing written) if an unrevoked one has `name`.
    pub async fn create_api_token(
        &self,
        name: String,
        scope: Scope,
        hash: TokenHash,
        now_ms: i64,
    ) -> Result<bool, PgError> {
        let inserted = self
            .client()
            .await?
            .execute(
                "INSERT INTO api_tokens (name, scope, token_sha256, created_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) WHERE revoked_ms IS NULL DO NOTHING",
                &[&name, &scope.as_str(), &&hash.0[..], &now_ms],
            )
            .await?;
        Ok(inserted > 0)
    }

    /// Revokes the unrevoked token named `name`; false if there is none.
    pub async fn revoke_api_token(&self, name: String, now_ms: i64) -> Result<bool, PgError> {
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE api_tokens SET revoked_ms = $2 WHERE name = $1 AND revoked_ms IS NULL",
                &[&name, &now_ms],
            )
            .await?;
        Ok(changed > 0)
    }

    /// Records that token `id` was used at `now_ms`. Collectors touch it
    /// concurrently, so an older time never replaces a newer one.
    pub async fn touch_api_token(&self, id: i64, now_ms: i64) -> Result<(), PgError> {
        self.client()
            .await?
            .execute(
                "UPDATE api_tokens SET last_used_ms = GREATEST(last_used_ms, $2) WHERE id = $1",
                &[&id, &now_ms],
            )
            .await?;
        Ok(())
    }
}
