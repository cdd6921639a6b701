//! The `api_tokens` table: named, scoped API tokens kept as SHA-256 hashes.
//!
//! Unlike every other table, this one is also written from outside the
//! collector process: `steward-collector token create|revoke` and `init`
//! open the same WAL database through [`ApiTokenTable`] while the collector
//! may be running. The collector only reads it (one indexed lookup per
//! request, on the API readers), so a revocation is in force for the very
//! next request. Plaintext tokens never reach this module.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use crate::access::{Scope, TokenHash};

/// A token as listed (never its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRow {
    pub name: String,
    pub scope: Scope,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

/// An unrevoked token found by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveToken {
    pub id: i64,
    pub name: String,
    pub scope: Scope,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenTableError {
    #[error("an API token named {0:?} already exists; revoke it first or pick another name")]
    NameTaken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn scope_column(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Scope> {
    let name: String = row.get(index)?;
    Scope::from_name(&name).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("unknown API token scope {name:?}").into(),
        )
    })
}

/// The unrevoked token whose hash is `hash`, if any.
pub(super) fn find_active(
    connection: &Connection,
    hash: &TokenHash,
) -> rusqlite::Result<Option<ActiveToken>> {
    connection
        .query_row(
            "SELECT id, name, scope, token_sha256 FROM api_tokens
             WHERE token_sha256 = ?1 AND revoked_ms IS NULL",
            [&hash.0[..]],
            |row| {
                let stored: Vec<u8> = row.get(3)?;
                Ok((
                    ActiveToken {
                        id: row.get(0)?,
                        name: row.get(1)?,
                        scope: scope_column(row, 2)?,
                    },
                    stored,
                ))
            },
        )
        .optional()
        .map(|found| {
            // The index found the row; compare once more in constant time so
            // the answer never rests on a variable-time comparison alone.
            found.and_then(|(token, stored)| {
                let stored = TokenHash(stored.try_into().ok()?);
                stored.matches(hash).then_some(token)
            })
        })
}

/// Records that token `id` was used at `now_ms`.
pub(super) fn touch(
    transaction: &rusqlite::Transaction<'_>,
    id: i64,
    now_ms: i64,
) -> rusqlite::Result<()> {
    transaction.execute(
        "UPDATE api_tokens SET last_used_ms = ?2 WHERE id = ?1",
        params![id, now_ms],
    )?;
    Ok(())
}

/// Adds a token; false (nothing written) if an unrevoked one has `name`.
pub(super) fn insert(
    connection: &Connection,
    name: &str,
    scope: Scope,
    hash: &TokenHash,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let taken = connection
        .query_row(
            "SELECT 1 FROM api_tokens WHERE name = ?1 AND revoked_ms IS NULL",
            [name],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if taken {
        return Ok(false);
    }
    connection.execute(
        "INSERT INTO api_tokens (name, scope, token_sha256, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![name, scope.as_str(), &hash.0[..], now_ms],
    )?;
    Ok(true)
}

/// Revokes the unrevoked token named `name`; false if there is none.
pub(super) fn revoke(connection: &Connection, name: &str, now_ms: i64) -> rusqlite::Result<bool> {
    let changed = connection.execute(
        "UPDATE api_tokens SET revoked_ms = ?2 WHERE name = ?1 AND revoked_ms IS NULL",
        params![name, now_ms],
    )?;
    Ok(changed > 0)
}

/// Every token, revoked ones included, oldest first.
pub(super) fn list(connection: &Connection) -> rusqlite::Result<Vec<ApiTokenRow>> {
    let mut statement = connection.prepare(
        "SELECT name, scope, created_ms, last_used_ms, revoked_ms FROM api_tokens ORDER BY id",
    )?;
    statement
        .query_map([], |row| {
            Ok(ApiTokenRow {
                name: row.get(0)?,
                scope: scope_column(row, 1)?,
                created_ms: row.get(2)?,
                last_used_ms: row.get(3)?,
                revoked_ms: row.get(4)?,
            })
        })?
        .collect()
}

/// Read-write access to `api_tokens` for the token CLI and `init`: a
/// connection of its own (migrating a new or older database first).
pub struct ApiTokenTable {
    connection: Connection,
}

impl std::fmt::Debug for ApiTokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiTokenTable { .. }")
    }
}

impl ApiTokenTable {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            connection: super::open_for_administration(path)?,
        })
    }

    /// Adds a token; its name must not belong to an unrevoked one.
    pub fn create(
        &self,
        name: &str,
        scope: Scope,
        hash: &TokenHash,
        now_ms: i64,
    ) -> Result<(), TokenTableError> {
        if insert(&self.connection, name, scope, hash, now_ms).map_err(StoreError::from)? {
            Ok(())
        } else {
            Err(TokenTableError::NameTaken(name.to_string()))
        }
    }

    /// Revokes the unrevoked token named `name`; false if there is none.
    pub fn revoke(&self, name: &str, now_ms: i64) -> Result<bool, StoreError> {
        Ok(revoke(&self.connection, name, now_ms)?)
    }

    /// Every token, revoked ones included, oldest first.
    pub fn list(&self) -> Result<Vec<ApiTokenRow>, StoreError> {
        Ok(list(&self.connection)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_find_revoke_and_reuse_a_name() {
        let dir = tempfile::tempdir().unwrap();
        let table = ApiTokenTable::open(&dir.path().join("t.db")).unwrap();
        let first = TokenHash::of("first-token-value");
        table.create("ci", Scope::Write, &first, 1).unwrap();
        assert!(matches!(
            table.create("ci", Scope::Read, &TokenHash::of("x"), 2),
            Err(TokenTableError::NameTaken(name)) if name == "ci"
        ));
        let found = find_active(&table.connection, &first).unwrap().unwrap();
        assert_eq!((found.name.as_str(), found.scope), ("ci", Scope::Write));
        assert!(table.revoke("ci", 3).unwrap());
        assert!(!table.revoke("ci", 4).unwrap(), "already revoked");
        assert_eq!(find_active(&table.connection, &first).unwrap(), None);
        // A revoked name can be given to a new token.
        table
            .create("ci", Scope::Read, &TokenHash::of("second"), 5)
            .unwrap();
        let listed = table.list().unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].revoked_ms, Some(3));
        assert_eq!(listed[1].revoked_ms, None);
    }
}
