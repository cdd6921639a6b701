//! Agent identity on PostgreSQL: enrollment tokens (hashed), certificate
//! bindings, renewal, revocation, and the identity events every collector
//! reads. Same meaning as the SQLite module (`store/identity.rs`); what the
//! one SQLite writer serialised is a lock here:
//! - a token use is spent by a conditional `UPDATE ... WHERE uses_left > 0
//!   RETURNING`, and given back by rolling back when the enrollment is
//!   refused: collectors redeeming the last use together, one wins;
//! - the decision about an agent id (live, revoked, streamed before) is
//!   taken under a transaction advisory lock on that id, so two enrollments
//!   of one id cannot both see it free;
//! - identity events are inserted under one advisory lock held to commit,
//!   so their ids become visible in order and a collector's cursor
//!   (`identity_events_after`) never passes an event that commits later;
//! - "applied" (recorded on the agent's asset) is once for the cluster,
//!   under a short claim lease, because the asset rows are shared.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::super::{
    EnrollRefusal, EnrollmentTokenRow, IdentityBinding, IdentityEvent, IssuedCertificate,
    NewEnrollmentToken,
};
use super::{PgError, PgStore};

/// Advisory lock class of agent ids being enrolled (with `hashtext(id)`);
/// a hash collision only makes two enrollments wait for each other.
const AGENT_LOCK_CLASS: i32 = 0x5354_4901;
/// Advisory lock taken to insert an identity event ("STEWARD" + 2).
const EVENT_LOCK: i64 = 0x5354_4557_4152_4402;
/// How long a collector holds the events it is recording on assets before
/// another may take them over.
const APPLY_LEASE_MS: i64 = 30_000;

const EVENT_COLUMNS: &str = "id, agent_id, ts_ms, kind, detail, tags";

fn event_from_row(row: &Row) -> IdentityEvent {
    IdentityEvent {
        id: row.get(0),
        agent_id: row.get(1),
        ts_ms: row.get(2),
        kind: row.get(3),
        detail: row.get(4),
        tags: row.get(5),
    }
}

fn uses_column(uses_left: i32) -> Result<u32, PgError> {
    u32::try_from(uses_left).map_err(|error| PgError::Decode {
        column: "enrollment_tokens.uses_left".into(),
        message: error.to_string(),
    })
}

/// The database's clock in milliseconds: one clock for the leases of
/// collectors whose own clocks may differ.
const DB_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// Records an identity event; call last in the transaction (the lock is
/// held to commit, so nothing may wait on another lock after it).
async fn insert_event(
    client: &impl GenericClient,
    agent_id: &str,
    ts_ms: i64,
    kind: &str,
    detail: &str,
    tags: &[String],
) -> Result<(), PgError> {
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&EVENT_LOCK])
        .await?;
    client
        .execute(
            "INSERT INTO agent_identity_events (agent_id, ts_ms, kind, detail, tags)
             VALUES ($1, $2, $3, $4, $5)",
            &[&agent_id, &ts_ms, &kind, &detail, &tags],
        )
        .await?;
    Ok(())
}

async fn insert_certificate(
    client: &impl GenericClient,
    certificate: &IssuedCertificate,
) -> Result<(), PgError> {
    client
        .execute(
            "INSERT INTO agent_certificates (sha256, agent_id, serial, issued_ms, not_after_ms)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &certificate.sha256,
                &certificate.agent_id,
                &certificate.serial,
                &certificate.issued_ms,
                &certificate.not_after_ms,
            ],
        )
        .await?;
    Ok(())
}

/// Makes `certificate` the agent id's only one, un-revoking it, and records
/// an `enrolled` event.
async fn bind(
    client: &impl GenericClient,
    certificate: &IssuedCertificate,
    token_id: Option<&str>,
    tags: &[String],
    detail: &str,
) -> Result<(), PgError> {
    client
        .execute(
            "INSERT INTO agent_identities (agent_id, enrolled_ms, token_id, tags)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (agent_id) DO UPDATE SET enrolled_ms = excluded.enrolled_ms,
                 token_id = excluded.token_id, tags = excluded.tags,
                 revoked_ms = NULL, revoked_by = NULL",
            &[
                &certificate.agent_id,
                &certificate.issued_ms,
                &token_id,
                &tags,
            ],
        )
        .await?;
    client
        .execute(
            "DELETE FROM agent_certificates WHERE agent_id = $1",
            &[&certificate.agent_id],
        )
        .await?;
    insert_certificate(client, certificate).await?;
    insert_event(
        client,
        &certificate.agent_id,
        certificate.issued_ms,
        "enrolled",
        detail,
        tags,
    )
    .await
}

/// Why `agent_id` may not be enrolled by a token created at
/// `token_created_ms`, if it may not. Locks the id for the transaction.
async fn refusal_for(
    client: &impl GenericClient,
    agent_id: &str,
    token_created_ms: i64,
    adopts_existing: bool,
) -> Result<Option<EnrollRefusal>, PgError> {
    client
        .execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&AGENT_LOCK_CLASS, &agent_id],
        )
        .await?;
    // `Some(None)`: bound to a live certificate; `Some(Some(ms))`: revoked then.
    let revoked_ms: Option<Option<i64>> = client
        .query_opt(
            "SELECT revoked_ms FROM agent_identities WHERE agent_id = $1 FOR UPDATE",
            &[&agent_id],
        )
        .await?
        .map(|row| row.get(0));
    let refusal = match revoked_ms {
        Some(None) => Some(EnrollRefusal::AlreadyEnrolled(agent_id.to_string())),
        Some(Some(revoked_ms)) if token_created_ms < revoked_ms => {
            Some(EnrollRefusal::RevokedAfterToken(agent_id.to_string()))
        }
        Some(Some(_)) => None,
        None => {
            let streamed: bool = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM agents WHERE id = $1)",
                    &[&agent_id],
                )
                .await?
                .get(0);
            (streamed && !adopts_existing)
                .then(|| EnrollRefusal::ExistingAgent(agent_id.to_string()))
        }
    };
    Ok(refusal)
}

impl PgStore {
    /// Spends one use of the token and binds `certificate.agent_id` to
    /// `certificate`; a refusal rolls back, so it spends nothing.
    pub async fn redeem_enrollment(
        &self,
        secret_sha256: String,
        certificate: IssuedCertificate,
        now_ms: i64,
    ) -> Result<Result<Vec<String>, EnrollRefusal>, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // The row lock this takes makes a concurrent redeemer of the same
        // token wait, then re-check `uses_left > 0` against our outcome.
        let token = transaction
            .query_opt(
                "UPDATE enrollment_tokens SET uses_left = uses_left - 1
                 WHERE secret_sha256 = $1 AND revoked_ms IS NULL AND uses_left > 0
                   AND expires_ms > $2
                 RETURNING id, tags, created_ms, adopts_existing",
                &[&secret_sha256, &now_ms],
            )
            .await?;
        let Some(token) = token else {
            return Ok(Err(EnrollRefusal::InvalidToken));
        };
        let (token_id, tags): (String, Vec<String>) = (token.get(0), token.get(1));
        let refusal = refusal_for(
            &transaction,
            &certificate.agent_id,
            token.get(2),
            token.get(3),
        )
        .await?;
        if let Some(refusal) = refusal {
            transaction.rollback().await?;
            return Ok(Err(refusal));
        }
        bind(
            &transaction,
            &certificate,
            Some(&token_id),
            &tags,
            &format!("enrolled with token {token_id}"),
        )
        .await?;
        transaction.commit().await?;
        Ok(Ok(tags))
    }

    /// Whether a token with this secret could be redeemed now: a cheap read
    /// before the CA signs; [`Self::redeem_enrollment`] decides.
    pub async fn enrollment_token_usable(
        &self,
        secret_sha256: String,
        now_ms: i64,
    ) -> Result<bool, PgError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT 1 FROM enrollment_tokens
                 WHERE secret_sha256 = $1 AND revoked_ms IS NULL AND uses_left > 0
                   AND expires_ms > $2",
                &[&secret_sha256, &now_ms],
            )
            .await?;
        Ok(row.is_some())
    }

    /// Adds a renewed certificate if `presented_sha256` is a current
    /// certificate of a live identity; returns whether it was added.
    pub async fn renew_certificate(
        &self,
        presented_sha256: String,
        certificate: IssuedCertificate,
    ) -> Result<bool, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // Locking the identity row orders renewals of one id (a copied
        // certificate renewing beside the genuine agent) and makes a
        // concurrent revocation either wait for us or be seen.
        let current = transaction
            .query_opt(
                "SELECT 1 FROM agent_identities i
                 JOIN agent_certificates c ON c.agent_id = i.agent_id
                 WHERE i.agent_id = $2 AND i.revoked_ms IS NULL AND c.sha256 = $1
                 FOR UPDATE OF i",
                &[&presented_sha256, &certificate.agent_id],
            )
            .await?
            .is_some();
        if !current {
            return Ok(false);
        }
        // Only the presented certificate (still in use until the agent
        // switches) and the new one stay valid, as on SQLite.
        transaction
            .execute(
                "DELETE FROM agent_certificates WHERE agent_id = $1 AND sha256 <> $2",
                &[&certificate.agent_id, &presented_sha256],
            )
            .await?;
        insert_certificate(&transaction, &certificate).await?;
        transaction.commit().await?;
        Ok(true)
    }

    pub async fn identity_binding(
        &self,
        agent_id: &str,
    ) -> Result<Option<IdentityBinding>, PgError> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(
                "SELECT revoked_ms IS NOT NULL FROM agent_identities WHERE agent_id = $1",
                &[&agent_id],
            )
            .await?
        else {
            return Ok(None);
        };
        let certificates = client
            .query(
                "SELECT sha256 FROM agent_certificates WHERE agent_id = $1",
                &[&agent_id],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        Ok(Some(IdentityBinding {
            revoked: row.get(0),
            certificates,
        }))
    }

    /// Events after `after_id`, oldest first (at most 1000); every collector
    /// polls this with its own cursor.
    pub async fn identity_events_after(
        &self,
        after_id: i64,
    ) -> Result<Vec<IdentityEvent>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM agent_identity_events
                     WHERE id > $1 ORDER BY id LIMIT 1000"
                ),
                &[&after_id],
            )
            .await?;
        Ok(rows.iter().map(event_from_row).collect())
    }

    pub async fn last_identity_event(&self) -> Result<i64, PgError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT COALESCE(MAX(id), 0)::bigint FROM agent_identity_events",
                &[],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Events not yet recorded on their asset, claimed by this collector for
    /// a lease. Recording is once for the cluster (the asset rows are
    /// shared), so another collector skips them while the lease runs; this
    /// one gets them again each poll (retrying one whose agent has no asset
    /// here yet) without extending the lease. When it lapses, the other
    /// collectors have one lease to take the event (the agent may have its
    /// asset there) before this one may claim it again.
    pub async fn unapplied_identity_events(&self) -> Result<Vec<IdentityEvent>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "WITH now AS (SELECT {DB_NOW_MS} AS ms)
                     UPDATE agent_identity_events e
                     SET claimed_until_ms = CASE
                             WHEN e.claimed_by = $1 AND e.claimed_until_ms > now.ms
                             THEN e.claimed_until_ms ELSE now.ms + $2 END,
                         claimed_by = $1
                     FROM now
                     WHERE e.id IN (
                         SELECT id FROM agent_identity_events, now
                         WHERE applied_ms IS NULL
                           AND (claimed_until_ms IS NULL
                                OR (claimed_by = $1 AND claimed_until_ms > now.ms)
                                OR (claimed_by <> $1 AND claimed_until_ms <= now.ms)
                                OR claimed_until_ms <= now.ms - $2)
                         ORDER BY id
                         LIMIT 100
                         FOR UPDATE OF agent_identity_events SKIP LOCKED)
                     RETURNING e.id, e.agent_id, e.ts_ms, e.kind, e.detail, e.tags"
                ),
                &[&self.collector, &APPLY_LEASE_MS],
            )
            .await?;
        let mut events: Vec<IdentityEvent> = rows.iter().map(event_from_row).collect();
        events.sort_by_key(|event| event.id);
        Ok(events)
    }

    pub async fn mark_identity_event_applied(&self, id: i64) -> Result<(), PgError> {
        self.client()
            .await?
            .execute(
                &format!(
                    "UPDATE agent_identity_events
                     SET applied_ms = {DB_NOW_MS}, claimed_by = NULL, claimed_until_ms = NULL
                     WHERE id = $1 AND applied_ms IS NULL"
                ),
                &[&id],
            )
            .await?;
        Ok(())
    }

    /// Marks the agent id revoked and drops its certificates; false if it
    /// was not enrolled or already revoked (the conditional update decides
    /// between collectors revoking together).
    pub async fn revoke_agent(
        &self,
        agent_id: String,
        by: String,
        now_ms: i64,
    ) -> Result<bool, PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let changed = transaction
            .execute(
                "UPDATE agent_identities SET revoked_ms = $2, revoked_by = $3
                 WHERE agent_id = $1 AND revoked_ms IS NULL",
                &[&agent_id, &now_ms, &by],
            )
            .await?;
        if changed == 0 {
            return Ok(false);
        }
        transaction
            .execute(
                "DELETE FROM agent_certificates WHERE agent_id = $1",
                &[&agent_id],
            )
            .await?;
        let when = jiff::Timestamp::from_millisecond(now_ms)
            .map(|at| at.to_string())
            .unwrap_or_default();
        insert_event(
            &transaction,
            &agent_id,
            now_ms,
            "revoked",
            &format!("certificate revoked by {by} at {when}"),
            &[],
        )
        .await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// Administration (`enroll-token create`): stores a new token.
    pub async fn create_enrollment_token(&self, token: &NewEnrollmentToken) -> Result<(), PgError> {
        let uses = i32::try_from(token.uses).unwrap_or(i32::MAX);
        self.client()
            .await?
            .execute(
                "INSERT INTO enrollment_tokens
                     (id, secret_sha256, created_ms, expires_ms, uses_left, tags, adopts_existing)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &token.id,
                    &token.secret_sha256,
                    &token.created_ms,
                    &token.expires_ms,
                    &uses,
                    &token.tags,
                    &token.adopts_existing,
                ],
            )
            .await?;
        Ok(())
    }

    /// Administration (`enroll-token list`): every token, oldest first.
    pub async fn enrollment_tokens(&self) -> Result<Vec<EnrollmentTokenRow>, PgError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, created_ms, expires_ms, uses_left, tags, revoked_ms
                 FROM enrollment_tokens ORDER BY created_ms, id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(EnrollmentTokenRow {
                    id: row.get(0),
                    created_ms: row.get(1),
                    expires_ms: row.get(2),
                    uses_left: uses_column(row.get(3))?,
                    tags: row.get(4),
                    revoked_ms: row.get(5),
                })
            })
            .collect()
    }

    /// Administration (`enroll-token revoke`): false when no unrevoked
    /// token has this id.
    pub async fn revoke_enrollment_token(&self, id: &str, now_ms: i64) -> Result<bool, PgError> {
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE enrollment_tokens SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL",
                &[&id, &now_ms],
            )
            .await?;
        Ok(changed > 0)
    }

    /// Binds a certificate signed without a token (as `init` does for the
    /// local agent).
    pub async fn bind_certificate(&self, certificate: &IssuedCertificate) -> Result<(), PgError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        bind(
            &transaction,
            certificate,
            None,
            &[],
            "certificate signed by init",
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }
}
