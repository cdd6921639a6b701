//! [`Store`]: the one storage API the rest of the collector uses, over
//! either backend: the embedded SQLite file ([`SqliteStore`], one collector,
//! the default) or PostgreSQL ([`PgStore`], the state several collectors
//! share; README "Scaling out"). Every method has the same meaning on both;
//! `store/tests.rs` runs the same suite against each.

use std::collections::BTreeMap;
use std::path::Path;

use super::postgres::{PgSettings, PgStore};
use super::*;

pub struct Store {
    backend: Backend,
}

enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Sqlite(store) => store.fmt(f),
            Backend::Postgres(store) => store.fmt(f),
        }
    }
}

impl Store {
    /// Opens (creating if needed) the embedded database and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Sqlite(SqliteStore::open(path)?),
        })
    }

    /// Connects to the shared PostgreSQL database and brings its schema up
    /// to date; `collector` names this collector in claims and leases.
    pub async fn open_postgres(settings: &PgSettings, collector: &str) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Postgres(PgStore::open(settings, collector).await?),
        })
    }

    /// The embedded backend, for tests that look at its tables.
    #[cfg(test)]
    pub(crate) fn sqlite(&self) -> &SqliteStore {
        match &self.backend {
            Backend::Sqlite(store) => store,
            Backend::Postgres(_) => panic!("this test needs the SQLite backend"),
        }
    }

    /// Which backend this is, for logs: `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Finishes queued writes and releases the database.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(store) => store.close().await,
            Backend::Postgres(store) => store.close().await,
        }
    }

    /// Stores a batch; resolves after the transaction holding it has committed.
    pub async fn commit_batch(&self, batch: SampleBatch) -> Result<CommitOutcome, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.commit_batch(batch).await,
            Backend::Postgres(store) => Ok(store.commit_batch(batch).await?),
        }
    }

    /// Applies an inventory update; resolves after it has committed.
    pub async fn commit_inventory(
        &self,
        update: InventoryUpdate,
    ) -> Result<InventoryOutcome, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.commit_inventory(update).await,
            Backend::Postgres(store) => Ok(store.commit_inventory(update).await?),
        }
    }

    pub async fn record_hello(&self, hello: AgentHello) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.record_hello(hello).await,
            Backend::Postgres(store) => Ok(store.record_hello(&hello).await?),
        }
    }

    /// Deletes rows older than `before_ms` in chunks, each its own
    /// transaction so ingest keeps flowing; returns, summed over chunks, the
    /// most rows any one table lost in a chunk.
    pub async fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.prune(before_ms).await,
            Backend::Postgres(store) => Ok(store.prune(before_ms).await?),
        }
    }

    /// Applies `policy` to everything that is not a sample, in small steps
    /// (each its own transaction, so ingest keeps flowing) until nothing is
    /// left to remove; returns what went.
    pub async fn prune_records(
        &self,
        policy: RetentionPolicy,
        now_ms: i64,
    ) -> Result<PruneReport, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.prune_records(policy, now_ms).await,
            Backend::Postgres(store) => Ok(store.prune_records(policy, now_ms).await?),
        }
    }

    /// Deletes rollups that end before `before_ms`, in steps like [`Self::prune`].
    pub async fn prune_rollups(&self, before_ms: i64) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.prune_rollups(before_ms).await,
            Backend::Postgres(store) => Ok(store.prune_rollups(before_ms).await?),
        }
    }

    /// Merges aged chunks and rollups into one row per series per UTC day
    /// that ended before `before_ms` (SQLite; PostgreSQL keeps no chunks and
    /// has nothing to do).
    pub async fn compact_aged(&self, before_ms: i64) -> Result<CompactReport, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.compact_aged(before_ms).await,
            Backend::Postgres(_) => Ok(CompactReport::default()),
        }
    }

    /// [`Self::compact_aged`] for the days starting at or after `since_ms`.
    pub async fn compact_days(
        &self,
        since_ms: i64,
        before_ms: i64,
    ) -> Result<CompactReport, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.compact_days(since_ms, before_ms).await,
            Backend::Postgres(_) => Ok(CompactReport::default()),
        }
    }

    /// Closes every open head chunk and writes it now (tests, benchmarks,
    /// and aging the head on demand); resolves after commit.
    pub async fn close_head_chunks(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.close_head_chunks().await,
            Backend::Postgres(store) => Ok(store.close_head_chunks().await?),
        }
    }

    /// Every stored point of one series, oldest first; a point stored twice
    /// shows twice. For tests and diagnostics.
    pub async fn series_points(&self, key: &SeriesKey) -> Result<Vec<(i64, f64)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.series_points(key).await,
            Backend::Postgres(store) => Ok(store.series_points(key).await?),
        }
    }

    /// Points of the series matching `query` (see [`HistoryQuery`]).
    pub async fn history(&self, query: HistoryQuery) -> Result<Vec<SeriesHistory>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.history(query).await,
            Backend::Postgres(store) => Ok(store.history(query).await?),
        }
    }

    /// Heap bytes the head holds in encoded points (for memory figures).
    pub fn head_encoded_bytes(&self) -> usize {
        match &self.backend {
            Backend::Sqlite(store) => store.head_encoded_bytes(),
            Backend::Postgres(store) => store.head_encoded_bytes(),
        }
    }

    /// Applies rule decisions in one transaction (one disk sync for a burst
    /// of a thousand breaches), in order.
    pub async fn apply_incident_changes(
        &self,
        changes: Vec<IncidentChange>,
    ) -> Result<Vec<AppliedChange>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.apply_incident_changes(changes).await,
            Backend::Postgres(store) => Ok(store.apply_incident_changes(changes).await?),
        }
    }

    /// Incident changes after the notification cursor, oldest first (on
    /// PostgreSQL: unrouted ones, claimed for this collector).
    pub async fn unnotified_journal(&self, limit: u32) -> Result<Vec<JournalEntry>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.unnotified_journal(limit).await,
            Backend::Postgres(store) => Ok(store.unnotified_journal(limit).await?),
        }
    }

    /// Queues notifications and advances the journal cursor to `position`
    /// atomically (on PostgreSQL: marks this collector's claimed entries up to
    /// `position` routed).
    pub async fn enqueue_notifications(
        &self,
        notifications: Vec<NewNotification>,
        position: i64,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => {
                store
                    .enqueue_notifications(notifications, position, now_ms)
                    .await
            }
            Backend::Postgres(store) => Ok(store
                .enqueue_notifications(notifications, position, now_ms)
                .await?),
        }
    }

    pub async fn due_notifications(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.due_notifications(now_ms, limit).await,
            Backend::Postgres(store) => Ok(store.due_notifications(now_ms, limit).await?),
        }
    }

    pub async fn next_notification_due(&self) -> Result<Option<i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.next_notification_due().await,
            Backend::Postgres(store) => Ok(store.next_notification_due().await?),
        }
    }

    pub async fn record_delivery(&self, attempt: DeliveryAttempt) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.record_delivery(attempt).await,
            Backend::Postgres(store) => {
                let id = attempt.id;
                if !store.record_delivery(attempt).await? {
                    // Our claim ran out and another collector took the row
                    // over: its result stands, and the loop goes on.
                    tracing::warn!(
                        message = "Delivery recorded too late: another collector took the notification over.",
                        id
                    );
                }
                Ok(())
            }
        }
    }

    /// Records a change and its maintenance window.
    pub async fn create_change(&self, change: ChangeRecord) -> Result<ChangeRecord, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.create_change(change).await,
            Backend::Postgres(store) => Ok(store.create_change(change).await?),
        }
    }

    pub async fn update_change(
        &self,
        id: i64,
        update: ChangeUpdate,
    ) -> Result<Option<ChangeRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.update_change(id, update).await,
            Backend::Postgres(store) => Ok(store.update_change(id, update).await?),
        }
    }

    pub async fn change(&self, id: i64) -> Result<Option<ChangeRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.change(id).await,
            Backend::Postgres(store) => Ok(store.change(id).await?),
        }
    }

    /// Changes with the number of incidents each links.
    pub async fn changes(
        &self,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(ChangeRecord, i64)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.changes(before_id, limit).await,
            Backend::Postgres(store) => Ok(store.changes(before_id, limit).await?),
        }
    }

    pub async fn changes_started_between(
        &self,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<ChangeRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.changes_started_between(since_ms, now_ms).await,
            Backend::Postgres(store) => Ok(store.changes_started_between(since_ms, now_ms).await?),
        }
    }

    /// (id, opened, resolved) of the incidents linked to a change.
    pub async fn change_incidents(
        &self,
        id: i64,
    ) -> Result<Vec<(i64, i64, Option<i64>)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.change_incidents(id).await,
            Backend::Postgres(store) => Ok(store.change_incidents(id).await?),
        }
    }

    pub async fn problem(&self, id: i64) -> Result<Option<ProblemRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.problem(id).await,
            Backend::Postgres(store) => Ok(store.problem(id).await?),
        }
    }

    /// Problems with the number of incidents each links.
    pub async fn problems(
        &self,
        filter: ProblemFilter,
    ) -> Result<Vec<(ProblemRecord, i64)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.problems(filter).await,
            Backend::Postgres(store) => Ok(store.problems(filter).await?),
        }
    }

    pub async fn problem_incidents(&self, id: i64) -> Result<Vec<i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.problem_incidents(id).await,
            Backend::Postgres(store) => Ok(store.problem_incidents(id).await?),
        }
    }

    pub async fn update_problem(
        &self,
        id: i64,
        update: ProblemUpdate,
    ) -> Result<Result<ProblemRecord, ProblemRefused>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.update_problem(id, update).await,
            Backend::Postgres(store) => Ok(store.update_problem(id, update).await?),
        }
    }

    /// Queues a group's message from the rows kept for it (see `outbox::flush_group`).
    pub async fn flush_group(&self, flush: GroupFlush) -> Result<Option<(i64, usize)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.flush_group(flush).await,
            Backend::Postgres(store) => Ok(store.flush_group(flush).await?),
        }
    }

    pub async fn group_members(&self, message: i64) -> Result<Vec<i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.group_members(message).await,
            Backend::Postgres(store) => Ok(store.group_members(message).await?),
        }
    }

    /// Queues escalation steps of groups as group messages (see `outbox`).
    pub async fn enqueue_group_escalations(
        &self,
        messages: Vec<GroupEscalationMessage>,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.enqueue_group_escalations(messages, now_ms).await,
            Backend::Postgres(store) => {
                Ok(store.enqueue_group_escalations(messages, now_ms).await?)
            }
        }
    }

    /// Incidents whose opening went (or is kept to go) into a message of
    /// group `group_key`, oldest first.
    pub async fn grouped_incidents(&self, group_key: String) -> Result<Vec<i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.grouped_incidents(group_key).await,
            Backend::Postgres(store) => Ok(store.grouped_incidents(group_key).await?),
        }
    }

    pub async fn kept_groups(&self) -> Result<Vec<(String, String)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.kept_groups().await,
            Backend::Postgres(store) => Ok(store.kept_groups().await?),
        }
    }

    pub async fn notification_state(
        &self,
        idempotency_key: String,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.notification_state(idempotency_key).await,
            Backend::Postgres(store) => Ok(store.notification_state(idempotency_key).await?),
        }
    }

    pub async fn create_maintenance(&self, window: MaintenanceWindow) -> Result<i64, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.create_maintenance(window).await,
            Backend::Postgres(store) => Ok(store.create_maintenance(window).await?),
        }
    }

    pub async fn end_maintenance(&self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.end_maintenance(id, now_ms).await,
            Backend::Postgres(store) => Ok(store.end_maintenance(id, now_ms).await?),
        }
    }

    /// Windows that end after `ending_after_ms` (current and future ones).
    pub async fn maintenance_windows(
        &self,
        ending_after_ms: i64,
    ) -> Result<Vec<MaintenanceWindow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.maintenance_windows(ending_after_ms).await,
            Backend::Postgres(store) => Ok(store.maintenance_windows(ending_after_ms).await?),
        }
    }

    pub async fn held_notifications(&self) -> Result<Vec<Notification>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.held_notifications().await,
            Backend::Postgres(store) => Ok(store.held_notifications().await?),
        }
    }

    pub async fn release_notification(
        &self,
        id: i64,
        state: &'static str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.release_notification(id, state, now_ms).await,
            Backend::Postgres(store) => Ok(store.release_notification(id, state, now_ms).await?),
        }
    }

    pub async fn notifications(
        &self,
        filter: NotificationFilter,
    ) -> Result<Vec<Notification>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.notifications(filter).await,
            Backend::Postgres(store) => Ok(store.notifications(filter).await?),
        }
    }

    /// Writes asset records, links and history in one transaction.
    pub async fn write_assets(&self, writes: Vec<AssetWrite>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.write_assets(writes).await,
            Backend::Postgres(store) => Ok(store.write_assets(writes).await?),
        }
    }

    pub async fn assets(&self) -> Result<Vec<AssetRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.assets().await,
            Backend::Postgres(store) => Ok(store.assets().await?),
        }
    }

    pub async fn asset(&self, id: &str) -> Result<Option<AssetRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.asset(id).await,
            Backend::Postgres(store) => Ok(store.asset(id).await?),
        }
    }

    /// The asset an agent belongs to, if any.
    pub async fn asset_link(&self, agent_id: &str) -> Result<Option<AssetLink>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.asset_link(agent_id).await,
            Backend::Postgres(store) => Ok(store.asset_link(agent_id).await?),
        }
    }

    pub async fn asset_links(&self) -> Result<Vec<AssetLink>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.asset_links().await,
            Backend::Postgres(store) => Ok(store.asset_links().await?),
        }
    }

    /// Newest first.
    /// An asset's history with row ids, newest first, below `before_id` when given.
    pub async fn asset_events(
        &self,
        id: &str,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, AssetEventRow)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.asset_events(id, before_id, limit).await,
            Backend::Postgres(store) => Ok(store.asset_events(id, before_id, limit).await?),
        }
    }

    pub async fn acknowledge_incident(
        &self,
        id: i64,
        by: String,
        note: Option<String>,
        now_ms: i64,
    ) -> Result<Result<IncidentRecord, ChangeRefused>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.acknowledge_incident(id, by, note, now_ms).await,
            Backend::Postgres(store) => {
                Ok(store.acknowledge_incident(id, by, note, now_ms).await?)
            }
        }
    }

    pub async fn resolve_incident(
        &self,
        id: i64,
        by: String,
        reason: String,
        value: Option<f64>,
        now_ms: i64,
    ) -> Result<Result<IncidentRecord, ChangeRefused>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.resolve_incident(id, by, reason, value, now_ms).await,
            Backend::Postgres(store) => Ok(store
                .resolve_incident(id, by, reason, value, now_ms)
                .await?),
        }
    }

    pub async fn add_incident_note(
        &self,
        id: i64,
        by: String,
        text: String,
        now_ms: i64,
    ) -> Result<Result<IncidentRecord, ChangeRefused>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.add_incident_note(id, by, text, now_ms).await,
            Backend::Postgres(store) => Ok(store.add_incident_note(id, by, text, now_ms).await?),
        }
    }

    pub async fn mark_sla_breaches(
        &self,
        now_ms: i64,
    ) -> Result<Vec<(IncidentRecord, &'static str)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.mark_sla_breaches(now_ms).await,
            Backend::Postgres(store) => Ok(store.mark_sla_breaches(now_ms).await?),
        }
    }

    /// Ends dependency holds that ran out: those incidents page now (see
    /// `parent_hold`); returns the ones released unacknowledged.
    pub async fn expire_parent_holds(
        &self,
        now_ms: i64,
    ) -> Result<Vec<IncidentRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.expire_parent_holds(now_ms).await,
            Backend::Postgres(store) => Ok(store.expire_parent_holds(now_ms).await?),
        }
    }

    pub async fn incident(&self, id: i64) -> Result<Option<IncidentRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.incident(id).await,
            Backend::Postgres(store) => Ok(store.incident(id).await?),
        }
    }

    pub async fn incidents(
        &self,
        filter: IncidentFilter,
    ) -> Result<Vec<IncidentRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.incidents(filter).await,
            Backend::Postgres(store) => Ok(store.incidents(filter).await?),
        }
    }

    pub async fn unresolved_incidents(&self) -> Result<Vec<IncidentRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.unresolved_incidents().await,
            Backend::Postgres(store) => Ok(store.unresolved_incidents().await?),
        }
    }

    pub async fn incident_timeline(&self, id: i64) -> Result<Vec<TimelineEntry>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.incident_timeline(id).await,
            Backend::Postgres(store) => Ok(store.incident_timeline(id).await?),
        }
    }

    pub async fn incidents_opened_since(
        &self,
        since_ms: i64,
    ) -> Result<Vec<IncidentRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.incidents_opened_since(since_ms).await,
            Backend::Postgres(store) => Ok(store.incidents_opened_since(since_ms).await?),
        }
    }

    /// The unrevoked API token with this hash, read now (no cache), so a
    /// token revoked by `steward-collector token revoke` fails its next request.
    pub async fn active_api_token(
        &self,
        hash: crate::access::TokenHash,
    ) -> Result<Option<ActiveToken>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.active_api_token(hash).await,
            Backend::Postgres(store) => Ok(store.active_api_token(hash).await?),
        }
    }

    /// Every API token, revoked ones included, oldest first (never a hash).
    pub async fn api_tokens(&self) -> Result<Vec<ApiTokenRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.api_tokens().await,
            Backend::Postgres(store) => Ok(store.api_tokens().await?),
        }
    }

    /// Adds an API token; `Ok(false)` if an unrevoked token has `name`.
    pub async fn create_api_token(
        &self,
        name: String,
        scope: crate::access::Scope,
        hash: crate::access::TokenHash,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.create_api_token(name, scope, hash, now_ms).await,
            Backend::Postgres(store) => {
                Ok(store.create_api_token(name, scope, hash, now_ms).await?)
            }
        }
    }

    /// Revokes the unrevoked API token named `name`; false if there is none.
    pub async fn revoke_api_token(&self, name: String, now_ms: i64) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.revoke_api_token(name, now_ms).await,
            Backend::Postgres(store) => Ok(store.revoke_api_token(name, now_ms).await?),
        }
    }

    /// Records when API token `id` was last used.
    pub async fn touch_api_token(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.touch_api_token(id, now_ms).await,
            Backend::Postgres(store) => Ok(store.touch_api_token(id, now_ms).await?),
        }
    }

    /// Highest committed sequence number for `(agent_id, epoch)`, 0 if none.
    /// On the hello path: reads on the ingest connection.
    pub async fn committed_seq(&self, agent_id: &str, epoch: u64) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.committed_seq(agent_id, epoch).await,
            Backend::Postgres(store) => Ok(store.committed_seq(agent_id, epoch).await?),
        }
    }

    pub async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.agents().await,
            Backend::Postgres(store) => Ok(store.agents().await?),
        }
    }

    /// Agents ordered by (hostname, id), after `after` (the last of the
    /// previous page), at most `limit`.
    pub async fn agents_page(
        &self,
        after: Option<(String, String)>,
        limit: u32,
    ) -> Result<Vec<AgentRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.agents_page(after, limit).await,
            Backend::Postgres(store) => Ok(store.agents_page(after, limit).await?),
        }
    }

    pub async fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.agent(agent_id).await,
            Backend::Postgres(store) => Ok(store.agent(agent_id).await?),
        }
    }

    pub async fn inventory(&self, agent_id: &str) -> Result<Option<InventorySnapshot>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.inventory(agent_id).await,
            Backend::Postgres(store) => Ok(store.inventory(agent_id).await?),
        }
    }

    pub async fn packages(&self, agent_id: &str) -> Result<BTreeMap<String, String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.packages(agent_id).await,
            Backend::Postgres(store) => Ok(store.packages(agent_id).await?),
        }
    }

    /// Newest first.
    /// Inventory changes of `agent_ids`, newest first, below `before_id` when
    /// given; `packages_only` keeps package changes.
    pub async fn inventory_events(
        &self,
        agent_ids: Vec<String>,
        packages_only: bool,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<InventoryEvent>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => {
                store
                    .inventory_events(agent_ids, packages_only, before_id, limit)
                    .await
            }
            Backend::Postgres(store) => Ok(store
                .inventory_events(agent_ids, packages_only, before_id, limit)
                .await?),
        }
    }

    /// Fingerprint of the stored package list (0: none), sent in the welcome.
    /// On the hello path: reads on the ingest connection.
    pub async fn packages_fingerprint(&self, agent_id: &str) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.packages_fingerprint(agent_id).await,
            Backend::Postgres(store) => Ok(store.packages_fingerprint(agent_id).await?),
        }
    }

    /// Total stored samples (head, chunks and pre-chunk rows) and batches,
    /// for tests and diagnostics. Reads every chunk's row: not for hot paths.
    pub async fn counts(&self) -> Result<(u64, u64), StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.counts().await,
            Backend::Postgres(store) => Ok(store.counts().await?),
        }
    }

    /// The latest value of one series, if known.
    pub fn latest_value(&self, key: &SeriesKey) -> Option<LatestValue> {
        match &self.backend {
            Backend::Sqlite(store) => store.latest_value(key),
            Backend::Postgres(store) => store.latest_value(key),
        }
    }

    /// Latest values, optionally for one agent, ordered by series key.
    pub fn latest(&self, agent_id: Option<&str>) -> Vec<(SeriesKey, LatestValue)> {
        match &self.backend {
            Backend::Sqlite(store) => store.latest(agent_id),
            Backend::Postgres(store) => store.latest(agent_id),
        }
    }

    /// Why writes cannot be stored now, if they cannot: the writer thread
    /// has stopped, or the last group of writes could not be committed
    /// (disk full, I/O error); cleared by the next group that commits.
    pub fn write_problem(&self) -> Option<String> {
        match &self.backend {
            Backend::Sqlite(store) => store.write_problem(),
            Backend::Postgres(store) => store.write_problem(),
        }
    }

    /// Resolves when the writer thread ends: `Err` with its panic message if
    /// it panicked.
    pub async fn writer_stopped(&self) -> Result<(), String> {
        match &self.backend {
            Backend::Sqlite(store) => store.writer_stopped().await,
            Backend::Postgres(store) => store.writer_stopped().await,
        }
    }

    /// Redeems an enrollment token for `certificate`; resolves after commit.
    pub async fn redeem_enrollment(
        &self,
        secret_sha256: String,
        certificate: IssuedCertificate,
        now_ms: i64,
    ) -> Result<Result<Vec<String>, EnrollRefusal>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => {
                store
                    .redeem_enrollment(secret_sha256, certificate, now_ms)
                    .await
            }
            Backend::Postgres(store) => Ok(store
                .redeem_enrollment(secret_sha256, certificate, now_ms)
                .await?),
        }
    }

    /// See [`token_usable`].
    pub async fn enrollment_token_usable(
        &self,
        secret_sha256: String,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.enrollment_token_usable(secret_sha256, now_ms).await,
            Backend::Postgres(store) => {
                Ok(store.enrollment_token_usable(secret_sha256, now_ms).await?)
            }
        }
    }

    pub async fn renew_certificate(
        &self,
        presented_sha256: String,
        certificate: IssuedCertificate,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.renew_certificate(presented_sha256, certificate).await,
            Backend::Postgres(store) => Ok(store
                .renew_certificate(presented_sha256, certificate)
                .await?),
        }
    }

    pub async fn identity_binding(
        &self,
        agent_id: &str,
    ) -> Result<Option<IdentityBinding>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.identity_binding(agent_id).await,
            Backend::Postgres(store) => Ok(store.identity_binding(agent_id).await?),
        }
    }

    pub async fn identity_events_after(
        &self,
        after_id: i64,
    ) -> Result<Vec<IdentityEvent>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.identity_events_after(after_id).await,
            Backend::Postgres(store) => Ok(store.identity_events_after(after_id).await?),
        }
    }

    pub async fn last_identity_event(&self) -> Result<i64, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.last_identity_event().await,
            Backend::Postgres(store) => Ok(store.last_identity_event().await?),
        }
    }

    pub async fn unapplied_identity_events(&self) -> Result<Vec<IdentityEvent>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.unapplied_identity_events().await,
            Backend::Postgres(store) => Ok(store.unapplied_identity_events().await?),
        }
    }

    pub async fn mark_identity_event_applied(&self, id: i64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.mark_identity_event_applied(id).await,
            Backend::Postgres(store) => Ok(store.mark_identity_event_applied(id).await?),
        }
    }

    /// Revokes from inside the collector (`POST /api/v1/agents/{id}/revoke`).
    pub async fn revoke_agent(
        &self,
        agent_id: String,
        by: String,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.revoke_agent(agent_id, by, now_ms).await,
            Backend::Postgres(store) => Ok(store.revoke_agent(agent_id, by, now_ms).await?),
        }
    }
}

/// How several collectors share agents (PostgreSQL only; see `postgres::cluster`).
impl Store {
    /// This collector's name among several; `None` on the embedded backend,
    /// where one collector owns every agent.
    pub fn cluster_instance(&self) -> Option<&str> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(store) => Some(store.collector()),
        }
    }

    /// Takes this collector's `instance` name among the collectors of the
    /// shared database: refused while another live process holds it (no-op
    /// on the embedded backend).
    pub async fn claim_instance(&self, dead_after: std::time::Duration) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(store) => Ok(store.claim_instance(millis(dead_after)).await?),
        }
    }

    /// Records that this collector is alive (no-op on the embedded backend).
    pub async fn heartbeat(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(store) => Ok(store.heartbeat().await?),
        }
    }

    /// Every agent with the collector it streams to, alive when its
    /// heartbeat (on the database's clock) is under `dead_after` old; empty
    /// on the embedded backend.
    pub async fn agent_owners(
        &self,
        dead_after: std::time::Duration,
    ) -> Result<Vec<super::postgres::AgentOwner>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(store) => Ok(store.agent_owners(millis(dead_after)).await?),
        }
    }

    /// The live collectors by name (empty on the embedded backend).
    pub async fn live_collectors(
        &self,
        dead_after: std::time::Duration,
    ) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(store) => Ok(store.live_collectors(millis(dead_after)).await?),
        }
    }
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
