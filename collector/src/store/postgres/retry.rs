//! Running a whole transaction again when PostgreSQL aborted it only because
//! it ran into another one: two collectors changing the same rows in another
//! order (a burst of resolves, SLA marks, a batch group after a failover,
//! assets merged on both) may lock them crosswise, and the loser's work is
//! all rolled back, so running it again is safe.

use std::future::Future;

use tokio_postgres::error::SqlState;

use super::PgError;

/// Runs `attempt` (a whole transaction) up to five more times while it fails
/// with a deadlock or a serialization failure.
pub(super) async fn retrying_conflicts<T, F, Fut>(mut attempt: F) -> Result<T, PgError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PgError>>,
{
    const RETRIES: u32 = 5;
    let mut retries = 0;
    loop {
        match attempt().await {
            Err(error) if retries < RETRIES && is_conflict(&error) => {
                retries += 1;
                tracing::debug!(
                    message = "Ran into another collector's transaction; retrying.",
                    retries
                );
            }
            outcome => return outcome,
        }
    }
}

fn is_conflict(error: &PgError) -> bool {
    matches!(error, PgError::Db(error) if matches!(
        error.code(),
        Some(&SqlState::T_R_DEADLOCK_DETECTED | &SqlState::T_R_SERIALIZATION_FAILURE)
    ))
}
