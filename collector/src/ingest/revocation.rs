//! Applies identity events written by any process (the collector's API, or
//! `steward-collector agent revoke` writing the same database): a
//! revocation ends the agent's open stream within a second or two, and
//! enrollments and revocations are recorded in the agent's asset history.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::streams::StreamTable;
use crate::assets::service::{AssetHandle, IdentityChange};
use crate::store::{IdentityEvent, Store, StoreError};
use crate::telemetry::Telemetry;

/// How often the database is polled; revocation takes effect within this
/// (plus one store read).
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// An event whose agent still has no asset after this is no longer retried.
const GIVE_UP_AFTER_MS: i64 = 24 * 3600 * 1000;

pub struct RevocationWatcher {
    pub(super) store: Arc<Store>,
    pub(super) streams: Arc<StreamTable>,
    pub(super) assets: AssetHandle,
    pub(super) telemetry: Arc<Telemetry>,
}

impl RevocationWatcher {
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StoreError> {
        // Revocations before start need no stream ended: connects check the store.
        let mut seen = self.store.last_identity_event().await?;
        let mut ticker = tokio::time::interval(POLL_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
            match self.store.identity_events_after(seen).await {
                Ok(events) => {
                    for event in events {
                        seen = seen.max(event.id);
                        self.end_revoked_stream(&event);
                    }
                }
                Err(error) => {
                    tracing::warn!(message = "Cannot read identity events; retrying.", %error)
                }
            }
            if let Err(error) = self.record_on_assets().await {
                tracing::warn!(message = "Cannot record identity events on assets; retrying.", %error);
            }
        }
    }

    fn end_revoked_stream(&self, event: &IdentityEvent) {
        if event.kind == "revoked" && self.streams.revoke(&event.agent_id) {
            Telemetry::add(&self.telemetry.streams_ended_revoked, 1);
            tracing::warn!(
                message = "Ended a revoked agent's stream.",
                agent_id = %event.agent_id,
                detail = %event.detail,
            );
        }
    }

    async fn record_on_assets(&self) -> Result<(), StoreError> {
        let now_ms = steward_core::now_ms();
        for event in self.store.unapplied_identity_events().await? {
            let recorded = self
                .assets
                .identity_changed(IdentityChange {
                    agent_id: event.agent_id.clone(),
                    ts_ms: event.ts_ms,
                    tags: event.tags.clone(),
                    detail: event.detail.clone(),
                })
                .await;
            if recorded || now_ms - event.ts_ms > GIVE_UP_AFTER_MS {
                self.store.mark_identity_event_applied(event.id).await?;
            }
        }
        Ok(())
    }
}
