//! The collector's own counters, exposed at `/metrics` in Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Telemetry {
    pub samples_ingested: AtomicU64,
    pub samples_rejected: AtomicU64,
    pub batches_committed: AtomicU64,
    pub batches_duplicate: AtomicU64,
    pub batches_failed: AtomicU64,
    pub inventory_updates: AtomicU64,
    pub notifications_sent: AtomicU64,
    pub notifications_failed: AtomicU64,
    pub notification_retries: AtomicU64,
    pub agents_rejected_auth: AtomicU64,
    pub streams_rejected_protocol: AtomicU64,
    pub streams_broken: AtomicU64,
    pub agents_connected: AtomicU64,
}

impl Telemetry {
    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, &AtomicU64); 13] = [
            (
                "steward_notifications_sent_total",
                "counter",
                "Notifications a receiver accepted.",
                &self.notifications_sent,
            ),
            (
                "steward_notifications_failed_total",
                "counter",
                "Notifications given up (refused, or retries exhausted).",
                &self.notifications_failed,
            ),
            (
                "steward_notification_retries_total",
                "counter",
                "Delivery attempts that failed and were scheduled again.",
                &self.notification_retries,
            ),
            (
                "steward_samples_ingested_total",
                "counter",
                "Samples durably stored.",
                &self.samples_ingested,
            ),
            (
                "steward_samples_rejected_total",
                "counter",
                "Samples dropped as invalid (bad name, label or value).",
                &self.samples_rejected,
            ),
            (
                "steward_batches_committed_total",
                "counter",
                "Batches committed and acknowledged.",
                &self.batches_committed,
            ),
            (
                "steward_batches_duplicate_total",
                "counter",
                "Resent batches already stored, acknowledged again.",
                &self.batches_duplicate,
            ),
            (
                "steward_batches_failed_total",
                "counter",
                "Batches that could not be stored (not acknowledged).",
                &self.batches_failed,
            ),
            (
                "steward_inventory_updates_total",
                "counter",
                "Inventory updates stored.",
                &self.inventory_updates,
            ),
            (
                "steward_agents_rejected_auth_total",
                "counter",
                "Agent streams refused for a missing or invalid token.",
                &self.agents_rejected_auth,
            ),
            (
                "steward_streams_rejected_protocol_total",
                "counter",
                "Agent streams refused for malformed or out-of-order messages.",
                &self.streams_rejected_protocol,
            ),
            (
                "steward_streams_broken_total",
                "counter",
                "Agent streams that ended with a transport or decode error.",
                &self.streams_broken,
            ),
            (
                "steward_agents_connected",
                "gauge",
                "Agents with an open stream.",
                &self.agents_connected,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }
}
