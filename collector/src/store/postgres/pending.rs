//! Store operations not yet implemented on PostgreSQL: each answers
//! [`PgError::NotYet`]. Implementations move from here into the module of
//! their subject (`ingest`, `incidents`, `outbox`, ...).

use std::collections::BTreeMap;

use super::super::*;
use super::{PgError, PgStore};

impl PgStore {
    /// Never resolves: PostgreSQL has no writer thread to stop.
    pub async fn writer_stopped(&self) -> Result<(), String> {
        std::future::pending().await
    }

    /// Closes the pool's idle connections.
    pub async fn close(&self) {
        self.pool.close();
    }

    pub async fn commit_inventory(
        &self,
        update: InventoryUpdate,
    ) -> Result<InventoryOutcome, PgError> {
        let _ = (update,);
        Err(PgError::NotYet("commit_inventory"))
    }

    pub async fn prune_records(
        &self,
        policy: RetentionPolicy,
        now_ms: i64,
    ) -> Result<PruneReport, PgError> {
        let _ = (policy, now_ms);
        Err(PgError::NotYet("prune_records"))
    }

    pub async fn apply_incident_changes(
        &self,
        changes: Vec<IncidentChange>,
    ) -> Result<Vec<AppliedChange>, PgError> {
        let _ = (changes,);
        Err(PgError::NotYet("apply_incident_changes"))
    }

    pub async fn unnotified_journal(&self, limit: u32) -> Result<Vec<JournalEntry>, PgError> {
        let _ = (limit,);
        Err(PgError::NotYet("unnotified_journal"))
    }

    pub async fn due_notifications(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<Notification>, PgError> {
        let _ = (now_ms, limit);
        Err(PgError::NotYet("due_notifications"))
    }

    pub async fn next_notification_due(&self) -> Result<Option<i64>, PgError> {
        Err(PgError::NotYet("next_notification_due"))
    }

    pub async fn create_change(&self, change: ChangeRecord) -> Result<ChangeRecord, PgError> {
        let _ = (change,);
        Err(PgError::NotYet("create_change"))
    }

    pub async fn update_change(
        &self,
        id: i64,
        update: ChangeUpdate,
    ) -> Result<Option<ChangeRecord>, PgError> {
        let _ = (id, update);
        Err(PgError::NotYet("update_change"))
    }

    pub async fn change(&self, id: i64) -> Result<Option<ChangeRecord>, PgError> {
        let _ = (id,);
        Err(PgError::NotYet("change"))
    }

    pub async fn changes(
        &self,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(ChangeRecord, i64)>, PgError> {
        let _ = (before_id, limit);
        Err(PgError::NotYet("changes"))
    }

    pub async fn changes_started_between(
        &self,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<ChangeRecord>, PgError> {
        let _ = (since_ms, now_ms);
        Err(PgError::NotYet("changes_started_between"))
    }

    pub async fn change_incidents(&self, id: i64) -> Result<Vec<(i64, i64, Option<i64>)>, PgError> {
        let _ = (id,);
        Err(PgError::NotYet("change_incidents"))
    }

    pub async fn problem(&self, id: i64) -> Result<Option<ProblemRecord>, PgError> {
        let _ = (id,);
        Err(PgError::NotYet("problem"))
    }

    pub async fn problems(
        &self,
        filter: ProblemFilter,
    ) -> Result<Vec<(ProblemRecord, i64)>, PgError> {
        let _ = (filter,);
        Err(PgError::NotYet("problems"))
    }

    pub async fn problem_incidents(&self, id: i64) -> Result<Vec<i64>, PgError> {
        let _ = (id,);
        Err(PgError::NotYet("problem_incidents"))
    }

    pub async fn update_problem(
        &self,
        id: i64,
        update: ProblemUpdate,
    ) -> Result<Result<ProblemRecord, ProblemRefused>, PgError> {
        let _ = (id, update);
        Err(PgError::NotYet("update_problem"))
    }

    pub async fn flush_group(&self, flush: GroupFlush) -> Result<Option<(i64, usize)>, PgError> {
        let _ = (flush,);
        Err(PgError::NotYet("flush_group"))
    }

    pub async fn group_members(&self, message: i64) -> Result<Vec<i64>, PgError> {
        let _ = (message,);
        Err(PgError::NotYet("group_members"))
    }

    pub async fn enqueue_group_escalations(
        &self,
        messages: Vec<GroupEscalationMessage>,
        now_ms: i64,
    ) -> Result<usize, PgError> {
        let _ = (messages, now_ms);
        Err(PgError::NotYet("enqueue_group_escalations"))
    }

    pub async fn grouped_incidents(&self, group_key: String) -> Result<Vec<i64>, PgError> {
        let _ = (group_key,);
        Err(PgError::NotYet("grouped_incidents"))
    }

    pub async fn kept_groups(&self) -> Result<Vec<(String, String)>, PgError> {
        Err(PgError::NotYet("kept_groups"))
    }

    pub async fn notification_state(
        &self,
        idempotency_key: String,
    ) -> Result<Option<(String, Option<String>)>, PgError> {
        let _ = (idempotency_key,);
        Err(PgError::NotYet("notification_state"))
    }

    pub async fn create_maintenance(&self, window: MaintenanceWindow) -> Result<i64, PgError> {
        let _ = (window,);
        Err(PgError::NotYet("create_maintenance"))
    }

    pub async fn end_maintenance(&self, id: i64, now_ms: i64) -> Result<bool, PgError> {
        let _ = (id, now_ms);
        Err(PgError::NotYet("end_maintenance"))
    }

    pub async fn maintenance_windows(
        &self,
        ending_after_ms: i64,
    ) -> Result<Vec<MaintenanceWindow>, PgError> {
        let _ = (ending_after_ms,);
        Err(PgError::NotYet("maintenance_windows"))
    }

    pub async fn held_notifications(&self) -> Result<Vec<Notification>, PgError> {
        Err(PgError::NotYet("held_notifications"))
    }

    pub async fn release_notification(
        &self,
        id: i64,
        state: &'static str,
        now_ms: i64,
    ) -> Result<(), PgError> {
        let _ = (id, state, now_ms);
        Err(PgError::NotYet("release_notification"))
    }

    pub async fn notifications(
        &self,
        state: Option<String>,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Notification>, PgError> {
        let _ = (state, before_id, limit);
        Err(PgError::NotYet("notifications"))
    }

    pub async fn write_assets(&self, writes: Vec<AssetWrite>) -> Result<(), PgError> {
        let _ = (writes,);
        Err(PgError::NotYet("write_assets"))
    }

    pub async fn assets(&self) -> Result<Vec<AssetRow>, PgError> {
        Err(PgError::NotYet("assets"))
    }

    pub async fn asset(&self, id: &str) -> Result<Option<AssetRow>, PgError> {
        let _ = (id,);
        Err(PgError::NotYet("asset"))
    }

    pub async fn asset_link(&self, agent_id: &str) -> Result<Option<AssetLink>, PgError> {
        let _ = (agent_id,);
        Err(PgError::NotYet("asset_link"))
    }

    pub async fn asset_links(&self) -> Result<Vec<AssetLink>, PgError> {
        Err(PgError::NotYet("asset_links"))
    }

    pub async fn asset_events(
        &self,
        id: &str,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, AssetEventRow)>, PgError> {
        let _ = (id, before_id, limit);
        Err(PgError::NotYet("asset_events"))
    }

    pub async fn add_incident_note(
        &self,
        id: i64,
        by: String,
        text: String,
        now_ms: i64,
    ) -> Result<Result<IncidentRecord, ChangeRefused>, PgError> {
        let _ = (id, by, text, now_ms);
        Err(PgError::NotYet("add_incident_note"))
    }

    pub async fn expire_parent_holds(&self, now_ms: i64) -> Result<Vec<IncidentRecord>, PgError> {
        let _ = (now_ms,);
        Err(PgError::NotYet("expire_parent_holds"))
    }

    pub async fn incidents(&self, filter: IncidentFilter) -> Result<Vec<IncidentRecord>, PgError> {
        let _ = (filter,);
        Err(PgError::NotYet("incidents"))
    }

    pub async fn incident_timeline(&self, id: i64) -> Result<Vec<TimelineEntry>, PgError> {
        let _ = (id,);
        Err(PgError::NotYet("incident_timeline"))
    }

    pub async fn incidents_opened_since(
        &self,
        since_ms: i64,
    ) -> Result<Vec<IncidentRecord>, PgError> {
        let _ = (since_ms,);
        Err(PgError::NotYet("incidents_opened_since"))
    }

    pub async fn active_api_token(
        &self,
        hash: crate::access::TokenHash,
    ) -> Result<Option<ActiveToken>, PgError> {
        let _ = (hash,);
        Err(PgError::NotYet("active_api_token"))
    }

    pub async fn api_tokens(&self) -> Result<Vec<ApiTokenRow>, PgError> {
        Err(PgError::NotYet("api_tokens"))
    }

    pub async fn create_api_token(
        &self,
        name: String,
        scope: crate::access::Scope,
        hash: crate::access::TokenHash,
        now_ms: i64,
    ) -> Result<bool, PgError> {
        let _ = (name, scope, hash, now_ms);
        Err(PgError::NotYet("create_api_token"))
    }

    pub async fn revoke_api_token(&self, name: String, now_ms: i64) -> Result<bool, PgError> {
        let _ = (name, now_ms);
        Err(PgError::NotYet("revoke_api_token"))
    }

    pub async fn touch_api_token(&self, id: i64, now_ms: i64) -> Result<(), PgError> {
        let _ = (id, now_ms);
        Err(PgError::NotYet("touch_api_token"))
    }

    pub async fn inventory(&self, agent_id: &str) -> Result<Option<InventorySnapshot>, PgError> {
        let _ = (agent_id,);
        Err(PgError::NotYet("inventory"))
    }

    pub async fn packages(&self, agent_id: &str) -> Result<BTreeMap<String, String>, PgError> {
        let _ = (agent_id,);
        Err(PgError::NotYet("packages"))
    }

    pub async fn inventory_events(
        &self,
        agent_ids: Vec<String>,
        packages_only: bool,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<InventoryEvent>, PgError> {
        let _ = (agent_ids, packages_only, before_id, limit);
        Err(PgError::NotYet("inventory_events"))
    }

    pub async fn packages_fingerprint(&self, agent_id: &str) -> Result<u64, PgError> {
        let _ = (agent_id,);
        Err(PgError::NotYet("packages_fingerprint"))
    }

    pub async fn redeem_enrollment(
        &self,
        secret_sha256: String,
        certificate: IssuedCertificate,
        now_ms: i64,
    ) -> Result<Result<Vec<String>, EnrollRefusal>, PgError> {
        let _ = (secret_sha256, certificate, now_ms);
        Err(PgError::NotYet("redeem_enrollment"))
    }

    pub async fn enrollment_token_usable(
        &self,
        secret_sha256: String,
        now_ms: i64,
    ) -> Result<bool, PgError> {
        let _ = (secret_sha256, now_ms);
        Err(PgError::NotYet("enrollment_token_usable"))
    }

    pub async fn renew_certificate(
        &self,
        presented_sha256: String,
        certificate: IssuedCertificate,
    ) -> Result<bool, PgError> {
        let _ = (presented_sha256, certificate);
        Err(PgError::NotYet("renew_certificate"))
    }

    pub async fn identity_binding(
        &self,
        agent_id: &str,
    ) -> Result<Option<IdentityBinding>, PgError> {
        let _ = (agent_id,);
        Err(PgError::NotYet("identity_binding"))
    }

    pub async fn identity_events_after(
        &self,
        after_id: i64,
    ) -> Result<Vec<IdentityEvent>, PgError> {
        let _ = (after_id,);
        Err(PgError::NotYet("identity_events_after"))
    }

    pub async fn last_identity_event(&self) -> Result<i64, PgError> {
        Err(PgError::NotYet("last_identity_event"))
    }

    pub async fn unapplied_identity_events(&self) -> Result<Vec<IdentityEvent>, PgError> {
        Err(PgError::NotYet("unapplied_identity_events"))
    }

    pub async fn mark_identity_event_applied(&self, id: i64) -> Result<(), PgError> {
        let _ = (id,);
        Err(PgError::NotYet("mark_identity_event_applied"))
    }

    pub async fn revoke_agent(
        &self,
        agent_id: String,
        by: String,
        now_ms: i64,
    ) -> Result<bool, PgError> {
        let _ = (agent_id, by, now_ms);
        Err(PgError::NotYet("revoke_agent"))
    }
}
