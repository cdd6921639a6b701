//! Numbered PostgreSQL schema migrations, recorded in `schema_migrations`.
//!
//! Applied at start-up while holding a session advisory lock, so collectors
//! starting together take turns: the second finds the steps done. Each step
//! runs in its own transaction with its `schema_migrations` row, so a crash
//! leaves the previous version. Append only, as for SQLite.

use deadpool_postgres::Client;

use super::PgError;

/// Migration N is `MIGRATIONS[N - 1]`; append only.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001-shared-state.sql"),
    include_str!("migrations/0002-ingest-history.sql"),
    include_str!("migrations/0003-incidents.sql"),
    include_str!("migrations/0004-outbox.sql"),
    include_str!("migrations/0005-inventory-assets-problems-changes.sql"),
    include_str!("migrations/0006-identity-tokens.sql"),
    include_str!("migrations/0007-cluster.sql"),
];

/// The PostgreSQL schema version this build writes; a database above it is refused.
pub const PG_SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The advisory lock every collector takes while migrating ("steward" + 1).
pub(super) const MIGRATION_LOCK: i64 = 0x5354_4557_4152_4401;

/// Brings the database up to [`PG_SCHEMA_VERSION`]; returns the version it had.
pub(super) async fn migrate(client: &mut Client) -> Result<u32, PgError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let applied = apply(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let found = applied?;
    unlocked?;
    Ok(found)
}

async fn apply(client: &mut Client) -> Result<u32, PgError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let found = current_version(client).await?;
    if found > PG_SCHEMA_VERSION {
        return Err(PgError::SchemaTooNew {
            found,
            supported: PG_SCHEMA_VERSION,
        });
    }
    for version in found + 1..=PG_SCHEMA_VERSION {
        let transaction = client.transaction().await?;
        transaction
            .batch_execute(MIGRATIONS[version as usize - 1])
            .await
            .map_err(|source| PgError::Migration { version, source })?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&(version as i32)],
            )
            .await?;
        transaction.commit().await?;
        tracing::info!(message = "Applied PostgreSQL schema migration.", version);
    }
    Ok(found)
}

pub(super) async fn current_version(client: &Client) -> Result<u32, PgError> {
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?;
    let version: i32 = row.get(0);
    Ok(u32::try_from(version).unwrap_or(0))
}
