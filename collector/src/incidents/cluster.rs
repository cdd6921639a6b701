//! Sharing agents with other collectors (the PostgreSQL backend).
//!
//! Only the collector an agent streams to sees its samples, so only that
//! collector may evaluate its rules: any other would take the silence for an
//! outage. Every few seconds this collector writes its heartbeat and reads
//! which collector each agent last said hello to (`store::postgres::cluster`):
//! - an agent now at another live collector is *released*: its series are
//!   dropped without resolving anything (that collector restores its open
//!   incidents and resolves them when they clear); a pending `for` restarts
//!   there from the first breaching sample it sees;
//! - an agent that says hello here, or whose collector stopped its heartbeat
//!   (an orphan: every live collector watches it until it says hello to one),
//!   is *adopted*: its `agent.up` last sighting is seeded, so absence rules
//!   notice a host that died with its collector, and its open incidents are
//!   restored. Two collectors adopting one orphan cannot open its incident
//!   twice: an open incident's key is unique in the database. An orphan's
//!   last sighting is re-seeded from the database at every sync (a
//!   collector whose heartbeat stalled may still be receiving its samples).
//! - every sync also restores the open incidents of the agents watched
//!   here, so one another collector opened meanwhile (say while it held an
//!   orphan) is known, and resolved, here. The heartbeat is written only
//!   after the ownership read succeeded: a collector that cannot read the
//!   database must not look alive to the others.

use std::collections::HashSet;
use std::time::Duration;

use crate::rules::RestoredIncident;
use crate::store::Labels;

use super::{AGENT_UP_METRIC, Worker};

/// How often the heartbeat is written and ownership re-read.
pub(super) const SYNC_EVERY: Duration = Duration::from_secs(2);

/// A collector silent this long is taken for dead and its agents adopted.
pub const DEAD_AFTER: Duration = Duration::from_secs(10);

/// This collector's view of which agents it evaluates.
#[derive(Debug, Default)]
pub(super) struct ClusterView {
    pub(super) instance: String,
    /// Agents whose rules this collector evaluates.
    pub(super) watched: HashSet<String>,
    pub(super) last_sync_ms: Option<i64>,
}

impl Worker {
    /// Heartbeat and ownership, at most every [`SYNC_EVERY`].
    pub(super) async fn sync_cluster(&mut self, now_ms: i64) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        if cluster
            .last_sync_ms
            .is_some_and(|last| now_ms - last < SYNC_EVERY.as_millis() as i64)
        {
            return;
        }
        let store = std::sync::Arc::clone(&self.handle.store);
        let owners = match store.agent_owners(DEAD_AFTER).await {
            Ok(owners) => owners,
            Err(error) => {
                tracing::warn!(message = "Cannot read which collector has which agent.", %error);
                return;
            }
        };
        if let Err(error) = store.heartbeat().await {
            tracing::warn!(message = "Cannot write this collector's heartbeat.", %error);
            return;
        }
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        cluster.last_sync_ms = Some(now_ms);
        // Agents retention removed (through any collector): forgotten here
        // too; the collector that removed them resolved their incidents.
        let listed: HashSet<&str> = owners.iter().map(|owner| owner.agent_id.as_str()).collect();
        let removed: Vec<String> = cluster
            .watched
            .iter()
            .filter(|agent_id| !listed.contains(agent_id.as_str()))
            .cloned()
            .collect();
        for agent_id in removed {
            self.engine.release_agent(&agent_id);
            cluster.watched.remove(&agent_id);
        }
        let mut adopt = Vec::new();
        for owner in owners {
            let mine = !owner.collector_alive
                || owner.collector.as_deref() == Some(cluster.instance.as_str());
            let watched = cluster.watched.contains(&owner.agent_id);
            if mine && !watched {
                adopt.push(owner);
            } else if !mine && watched {
                self.engine.release_agent(&owner.agent_id);
                cluster.watched.remove(&owner.agent_id);
                tracing::info!(message = "Agent is at another collector; released.", agent_id = %owner.agent_id, collector = owner.collector.as_deref().unwrap_or(""));
            } else if mine && !owner.collector_alive {
                // An orphan: its collector's heartbeat stopped, but that
                // collector may still be storing its samples.
                self.engine.seed_last_seen(
                    &owner.agent_id,
                    AGENT_UP_METRIC,
                    &Labels::new(),
                    owner.last_seen_ms,
                );
            }
        }
        for owner in adopt {
            // Its summaries name the host, though it never said hello here.
            self.engine.set_host_name(&owner.agent_id, &owner.hostname);
            self.engine.seed_last_seen(
                &owner.agent_id,
                AGENT_UP_METRIC,
                &Labels::new(),
                owner.last_seen_ms,
            );
            tracing::info!(message = "Watching agent here.", agent_id = %owner.agent_id);
            cluster.watched.insert(owner.agent_id.clone());
            self.hosts.insert(owner.agent_id, owner.hostname);
        }
        self.restore_watched(now_ms).await;
    }

    /// Starts evaluating `agent_id` here (it said hello, or its samples
    /// arrived) and restores its open incidents.
    pub(super) async fn adopt(&mut self, agent_id: &str, now_ms: i64) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if !cluster.watched.insert(agent_id.to_string()) {
            return;
        }
        self.engine
            .seed_last_seen(agent_id, AGENT_UP_METRIC, &Labels::new(), now_ms);
        tracing::info!(message = "Watching agent here.", %agent_id);
        self.restore_watched(now_ms).await;
    }

    /// Restores the open incidents of the agents watched here: restoring
    /// one the engine holds open already changes nothing.
    async fn restore_watched(&mut self, now_ms: i64) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let open = match self.handle.store.unresolved_incidents().await {
            Ok(open) => open,
            Err(error) => {
                tracing::warn!(message = "Cannot restore the open incidents of watched agents.", %error);
                return;
            }
        };
        let restored = self.engine.restore(
            open.iter()
                .filter(|incident| cluster.watched.contains(&incident.agent_id))
                .map(|incident| RestoredIncident {
                    dedup_key: incident.dedup_key.clone(),
                    opened_ms: incident.opened_at_ms,
                    flapping: incident.flapping,
                }),
        );
        self.apply(restored, now_ms).await;
    }
}
