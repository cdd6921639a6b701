//! Numbered schema migrations, with the version in SQLite's `PRAGMA user_version`.
//!
//! Owns the shape of the database; must never change a migration once it is
//! released (append a new one), because databases in the field were built by
//! the old text. Each step runs in its own `BEGIN IMMEDIATE` transaction
//! together with its version bump, so a crash leaves the previous version in
//! place and two processes opening one file cannot apply a step twice.
//!
//! SQLite ignores `PRAGMA foreign_keys` inside a transaction: a later
//! migration that rebuilds a table must not rely on switching it off here.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Migration N is `MIGRATIONS[N - 1]`; append only.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001-initial.sql"),
    include_str!("migrations/0002-sample-log-and-chunks.sql"),
    include_str!("migrations/0003-agent-identity.sql"),
    include_str!("migrations/0004-api-tokens.sql"),
    include_str!("migrations/0005-problems-changes.sql"),
    include_str!("migrations/0006-dependency-hold.sql"),
    include_str!("migrations/0007-token-adopts-existing.sql"),
    include_str!("migrations/0008-outbox-by-incident.sql"),
];

/// The schema version this build writes; a database above it is refused.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database at `path` up to [`SCHEMA_VERSION`]; returns the version it had.
pub(super) fn migrate(connection: &mut Connection, path: &Path) -> Result<u32, StoreError> {
    let found = version(connection, path)?;
    if found == SCHEMA_VERSION {
        return Ok(found);
    }
    loop {
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Read again under the write lock: another process may have migrated meanwhile.
        let current = version(&transaction, path)?;
        if current == SCHEMA_VERSION {
            return Ok(found);
        }
        let next = current + 1;
        transaction
            .execute_batch(MIGRATIONS[current as usize])
            .map_err(|source| StoreError::Migration {
                path: path.to_path_buf(),
                version: next,
                source,
            })?;
        if current == 0 {
            // IF NOT EXISTS keeps a pre-existing table whatever its shape;
            // only a database that really has migration 1's columns may be
            // stamped with its number, or later steps would build on sand.
            same_columns_as_migration_1(&transaction, path)?;
        }
        transaction.pragma_update(None, "user_version", next)?;
        transaction.commit()?;
        tracing::info!(
            message = "Applied schema migration.",
            version = next,
            database = %path.display()
        );
    }
}

fn version(connection: &Connection, path: &Path) -> Result<u32, StoreError> {
    let raw: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    match u32::try_from(raw) {
        Ok(found) if found <= SCHEMA_VERSION => Ok(found),
        Ok(found) => Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        }),
        Err(_) => Err(StoreError::UnknownSchema {
            path: path.to_path_buf(),
            detail: format!("user_version is {raw}"),
        }),
    }
}

fn same_columns_as_migration_1(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let reference = Connection::open_in_memory()?;
    reference.execute_batch(MIGRATIONS[0])?;
    let tables: Vec<String> = reference
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for table in tables {
        let expected = columns(&reference, &table)?;
        let found = columns(connection, &table)?;
        if found != expected {
            return Err(StoreError::UnknownSchema {
                path: path.to_path_buf(),
                detail: format!(
                    "table {table} has columns ({}) where ({}) were expected",
                    found.join(", "),
                    expected.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// `name type` of each column, in declaration order.
fn columns(connection: &Connection, table: &str) -> Result<Vec<String>, rusqlite::Error> {
    connection
        .prepare("SELECT name || ' ' || type FROM pragma_table_info(?1) ORDER BY cid")?
        .query_map([table], |row| row.get(0))?
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_version(connection: &Connection) -> i64 {
        connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn a_new_database_gets_every_migration_and_reopening_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut connection = Connection::open(&path).unwrap();
        assert_eq!(migrate(&mut connection, &path).unwrap(), 0);
        assert_eq!(user_version(&connection), i64::from(SCHEMA_VERSION));
        assert_eq!(migrate(&mut connection, &path).unwrap(), SCHEMA_VERSION);
        assert_eq!(user_version(&connection), i64::from(SCHEMA_VERSION));
    }

    #[test]
    fn a_newer_database_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut connection = Connection::open(&path).unwrap();
        connection
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let error = migrate(&mut connection, &path).unwrap_err();
        assert!(
            matches!(error, StoreError::SchemaTooNew { found, supported, .. }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{error:?}"
        );
        let tables: i64 = connection
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .unwrap();
        assert_eq!(tables, 0, "nothing may be created in a newer database");
    }

    #[test]
    fn an_unversioned_database_of_another_shape_is_refused_and_left_at_version_0() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut connection = Connection::open(&path).unwrap();
        connection
            .execute_batch("CREATE TABLE agents (id TEXT PRIMARY KEY, name TEXT)")
            .unwrap();
        let error = migrate(&mut connection, &path).unwrap_err();
        let shown = error.to_string();
        assert!(
            matches!(error, StoreError::UnknownSchema { .. }) && shown.contains("table agents"),
            "{shown}"
        );
        assert_eq!(user_version(&connection), 0);
        let tables: i64 = connection
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1, "the failed step must be rolled back");
    }
}
