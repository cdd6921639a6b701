//! The collector's own counters, exposed at `/metrics` in Prometheus text format,
//! and [`LogThrottle`], which keeps log lines about refused input from flooding
//! the log: the counters count every refusal, the log names a few.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// A certificate for one agent id claiming another, or a shared token
    /// claiming a certificate-bound id.
    pub agents_refused_identity: AtomicU64,
    /// A revoked (or superseded) certificate presented.
    pub agents_refused_revoked: AtomicU64,
    /// Open streams ended because their certificate was revoked.
    pub streams_ended_revoked: AtomicU64,
    pub enrollments: AtomicU64,
    pub enrollments_refused: AtomicU64,
    pub enrollments_rate_limited: AtomicU64,
    pub certificates_renewed: AtomicU64,
    pub streams_rejected_protocol: AtomicU64,
    pub streams_broken: AtomicU64,
    pub agents_connected: AtomicU64,
    // Limits (`[limits]` in collector.toml): every refusal has its counter.
    pub samples_refused_batch_limit: AtomicU64,
    pub samples_refused_series_limit: AtomicU64,
    pub samples_refused_labels: AtomicU64,
    pub inventory_items_dropped: AtomicU64,
    pub agent_strings_truncated: AtomicU64,
    pub streams_replaced: AtomicU64,
    pub streams_refused_agent_limit: AtomicU64,
    pub streams_refused_pending_hellos: AtomicU64,
    pub streams_hello_timeout: AtomicU64,
    pub streams_awaiting_hello: AtomicU64,
    pub grpc_connections_open: AtomicU64,
    pub grpc_connections_refused: AtomicU64,
    pub grpc_connections_silent: AtomicU64,
    pub grpc_connections_idle_closed: AtomicU64,
    pub grpc_accept_errors: AtomicU64,
    pub http_requests_refused_busy: AtomicU64,
    pub http_requests_timed_out: AtomicU64,
    pub http_requests_unauthenticated: AtomicU64,
    pub http_auth_failures: AtomicU64,
    pub http_auth_failures_throttled: AtomicU64,
    /// `[[export.remote_write]]`, summed over endpoints.
    pub remote_write: ExportCounters,
    /// `[[export.otlp]]`, summed over endpoints.
    pub otlp: ExportCounters,
}

/// One metric history exporter's counters (`steward_<exporter>_*`).
#[derive(Debug, Default)]
pub struct ExportCounters {
    pub samples_sent: AtomicU64,
    pub samples_refused: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_shutdown: AtomicU64,
    pub requests_failed: AtomicU64,
    pub retries: AtomicU64,
    pub queue_samples: AtomicU64,
}

impl ExportCounters {
    /// The `/metrics` rows: `prefix` is `remote_write` or `otlp`; `refusal`
    /// says what makes that exporter's receiver refuse for good.
    fn render(&self, out: &mut String, prefix: &str, refusal: &str) {
        let rows: [(&str, &str, String, &AtomicU64); 7] = [
            (
                "samples_sent_total",
                "counter",
                format!("Samples {prefix} receivers accepted."),
                &self.samples_sent,
            ),
            (
                "samples_refused_total",
                "counter",
                format!(
                    "Samples dropped because {prefix} receivers refused them for good ({refusal})."
                ),
                &self.samples_refused,
            ),
            (
                "samples_dropped_queue_full_total",
                "counter",
                "Samples dropped (oldest first) because an endpoint's queue was full.".into(),
                &self.dropped_queue_full,
            ),
            (
                "samples_dropped_shutdown_total",
                "counter",
                format!(
                    "Samples still queued or in flight for {prefix} when the collector stopped."
                ),
                &self.dropped_shutdown,
            ),
            (
                "requests_failed_total",
                "counter",
                format!(
                    "{prefix} requests that failed (no answer, a retryable error or a refusal)."
                ),
                &self.requests_failed,
            ),
            (
                "retries_total",
                "counter",
                format!("{prefix} requests sent again after a failure."),
                &self.retries,
            ),
            (
                "queue_samples",
                "gauge",
                format!("Committed samples waiting for {prefix}, over all endpoints."),
                &self.queue_samples,
            ),
        ];
        for (suffix, kind, help, value) in rows {
            let name = format!("steward_{prefix}_{suffix}");
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
    }
}

impl Telemetry {
    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    /// Adds one to a gauge now; the returned guard takes it back when dropped,
    /// so the gauge stays right whichever way its holder ends.
    pub fn hold(self: &Arc<Self>, gauge: fn(&Telemetry) -> &AtomicU64) -> GaugeHold {
        gauge(self).fetch_add(1, Ordering::Relaxed);
        GaugeHold {
            telemetry: Arc::clone(self),
            gauge,
        }
    }

    pub fn render(&self) -> String {
        let rows: &[(&str, &str, &str, &AtomicU64)] = &[
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
                "steward_agents_refused_identity_total",
                "counter",
                "Agent streams refused (PERMISSION_DENIED) for claiming an agent id their credential is not bound to.",
                &self.agents_refused_identity,
            ),
            (
                "steward_agents_refused_revoked_total",
                "counter",
                "Agent streams refused (UNAUTHENTICATED) for a revoked or superseded client certificate.",
                &self.agents_refused_revoked,
            ),
            (
                "steward_streams_ended_revoked_total",
                "counter",
                "Open agent streams ended because the agent's certificate was revoked.",
                &self.streams_ended_revoked,
            ),
            (
                "steward_enrollments_total",
                "counter",
                "Agents enrolled (client certificates signed for an enrollment token).",
                &self.enrollments,
            ),
            (
                "steward_enrollments_refused_total",
                "counter",
                "Enrollment attempts refused (bad token, bound agent id, bad request).",
                &self.enrollments_refused,
            ),
            (
                "steward_enrollments_rate_limited_total",
                "counter",
                "Enrollment and renewal attempts refused by the per-address rate limit.",
                &self.enrollments_rate_limited,
            ),
            (
                "steward_certificates_renewed_total",
                "counter",
                "Agent certificates renewed.",
                &self.certificates_renewed,
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
            (
                "steward_samples_refused_batch_limit_total",
                "counter",
                "Samples past limits.max_samples_per_batch in one batch, dropped (the rest is stored).",
                &self.samples_refused_batch_limit,
            ),
            (
                "steward_samples_refused_series_limit_total",
                "counter",
                "Samples of new series refused: their agent holds limits.max_series_per_agent series.",
                &self.samples_refused_series_limit,
            ),
            (
                "steward_samples_refused_labels_total",
                "counter",
                "Samples refused for more labels than limits.max_labels_per_sample or a label key or value over its length limit.",
                &self.samples_refused_labels,
            ),
            (
                "steward_inventory_items_dropped_total",
                "counter",
                "Facts, disks, interfaces, addresses or packages dropped from an inventory or hello: over a count limit, or a key or package name too long.",
                &self.inventory_items_dropped,
            ),
            (
                "steward_agent_strings_truncated_total",
                "counter",
                "Agent text (version, fact values, disk and interface fields) cut to its length limit.",
                &self.agent_strings_truncated,
            ),
            (
                "steward_streams_replaced_total",
                "counter",
                "Agent streams closed because a newer stream with the same agent id was accepted.",
                &self.streams_replaced,
            ),
            (
                "steward_streams_refused_agent_limit_total",
                "counter",
                "Streams of new agents refused: limits.max_agents agents connected.",
                &self.streams_refused_agent_limit,
            ),
            (
                "steward_streams_refused_pending_hellos_total",
                "counter",
                "Streams refused at once: limits.max_pending_hellos streams were already waiting for their hello.",
                &self.streams_refused_pending_hellos,
            ),
            (
                "steward_streams_hello_timeout_total",
                "counter",
                "Streams closed for sending no hello within limits.hello_timeout.",
                &self.streams_hello_timeout,
            ),
            (
                "steward_streams_awaiting_hello",
                "gauge",
                "Streams open and not yet authenticated.",
                &self.streams_awaiting_hello,
            ),
            (
                "steward_grpc_connections_open",
                "gauge",
                "TCP connections open on the gRPC listener.",
                &self.grpc_connections_open,
            ),
            (
                "steward_grpc_connections_refused_total",
                "counter",
                "gRPC connections closed on accept: limits.max_connections were open.",
                &self.grpc_connections_refused,
            ),
            (
                "steward_grpc_connections_silent_total",
                "counter",
                "gRPC connections that closed without sending a byte (port scans, slow-loris; cut after limits.handshake_timeout).",
                &self.grpc_connections_silent,
            ),
            (
                "steward_grpc_connections_idle_closed_total",
                "counter",
                "gRPC connections closed after receiving nothing for limits.idle_timeout (or limits.handshake_timeout before the first byte).",
                &self.grpc_connections_idle_closed,
            ),
            (
                "steward_grpc_accept_errors_total",
                "counter",
                "Failed accepts on the gRPC listener (e.g. out of file descriptors); accepting pauses briefly.",
                &self.grpc_accept_errors,
            ),
            (
                "steward_http_requests_refused_busy_total",
                "counter",
                "HTTP API requests refused with 503: limits.http_max_concurrent_requests in progress.",
                &self.http_requests_refused_busy,
            ),
            (
                "steward_http_requests_timed_out_total",
                "counter",
                "HTTP API requests answered 503 after running longer than limits.http_request_timeout.",
                &self.http_requests_timed_out,
            ),
            (
                "steward_http_requests_unauthenticated_total",
                "counter",
                "HTTP API requests answered 401 for lack of a bearer token.",
                &self.http_requests_unauthenticated,
            ),
            (
                "steward_http_auth_failures_total",
                "counter",
                "HTTP API requests answered 401 for an invalid or revoked token.",
                &self.http_auth_failures,
            ),
            (
                "steward_http_auth_failures_throttled_total",
                "counter",
                "Invalid tokens answered 429: their source address was over its failure budget.",
                &self.http_auth_failures_throttled,
            ),
        ];
        let mut out = String::new();
        for &(name, kind, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        self.remote_write
            .render(&mut out, "remote_write", "a 4xx answer other than 429");
        self.otlp.render(
            &mut out,
            "otlp",
            "a non-retryable gRPC status, or rejected_data_points in a partial success",
        );
        out
    }
}

/// One unit of a gauge, given back on drop (see [`Telemetry::hold`]).
pub struct GaugeHold {
    telemetry: Arc<Telemetry>,
    gauge: fn(&Telemetry) -> &AtomicU64,
}

impl Drop for GaugeHold {
    fn drop(&mut self) {
        (self.gauge)(&self.telemetry).fetch_sub(1, Ordering::Relaxed);
    }
}

/// How often one kind of refusal may be logged for one agent or peer.
pub const LOG_PERIOD: Duration = Duration::from_secs(60);

/// Most (kind, subject) pairs remembered. A flood of distinct subjects (many
/// source addresses) fills it: new subjects are then not logged until old
/// entries age out, and the counters still count them.
const MAX_THROTTLE_ENTRIES: usize = 4096;

/// What is throttled: a kind of log line, and the agent id or peer it is about.
type ThrottleKey = (&'static str, String);
/// When a line was last logged, and how many were held back since.
type Throttled = (Instant, u64);

/// Allows one log line per period per `(kind, subject)` and reports how many
/// were held back in between.
#[derive(Debug)]
pub struct LogThrottle {
    period: Duration,
    last: Mutex<HashMap<ThrottleKey, Throttled>>,
}

impl Default for LogThrottle {
    fn default() -> Self {
        Self::new(LOG_PERIOD)
    }
}

impl LogThrottle {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(held back since the last line)` if a line about `kind` for
    /// `subject` may be logged now; `None` if it must be skipped.
    pub fn allow(&self, kind: &'static str, subject: &str) -> Option<u64> {
        self.allow_at(kind, subject, Instant::now())
    }

    fn allow_at(&self, kind: &'static str, subject: &str, now: Instant) -> Option<u64> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((logged, held)) = last.get_mut(&(kind, subject.to_string())) {
            if now.duration_since(*logged) < self.period {
                *held += 1;
                return None;
            }
            let skipped = *held;
            *logged = now;
            *held = 0;
            return Some(skipped);
        }
        if last.len() >= MAX_THROTTLE_ENTRIES {
            let period = self.period;
            last.retain(|_, (logged, _)| now.duration_since(*logged) < period);
            if last.len() >= MAX_THROTTLE_ENTRIES {
                return None;
            }
        }
        last.insert((kind, subject.to_string()), (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_per_kind_and_subject_with_the_count_held_back() {
        let throttle = LogThrottle::new(Duration::from_secs(60));
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        assert_eq!(throttle.allow_at("series", "a1", at(0)), Some(0));
        assert_eq!(throttle.allow_at("series", "a1", at(1)), None);
        assert_eq!(throttle.allow_at("series", "a1", at(59)), None);
        assert_eq!(
            throttle.allow_at("series", "a2", at(59)),
            Some(0),
            "another agent"
        );
        assert_eq!(
            throttle.allow_at("batch", "a1", at(59)),
            Some(0),
            "another kind"
        );
        assert_eq!(throttle.allow_at("series", "a1", at(61)), Some(2));
        assert_eq!(throttle.allow_at("series", "a1", at(62)), None);
    }

    #[test]
    fn a_flood_of_subjects_is_bounded() {
        let throttle = LogThrottle::new(Duration::from_secs(60));
        let start = Instant::now();
        let allowed = (0..MAX_THROTTLE_ENTRIES + 100)
            .filter(|index| {
                throttle
                    .allow_at("peer", &index.to_string(), start)
                    .is_some()
            })
            .count();
        assert_eq!(allowed, MAX_THROTTLE_ENTRIES);
        let later = start + Duration::from_secs(61);
        assert_eq!(
            throttle.allow_at("peer", "new", later),
            Some(0),
            "old entries age out"
        );
    }

    #[test]
    fn gauges_held_are_given_back() {
        let telemetry = Arc::new(Telemetry::default());
        let first = telemetry.hold(|t| &t.grpc_connections_open);
        let second = telemetry.hold(|t| &t.grpc_connections_open);
        assert_eq!(telemetry.grpc_connections_open.load(Ordering::Relaxed), 2);
        drop(first);
        drop(second);
        assert_eq!(telemetry.grpc_connections_open.load(Ordering::Relaxed), 0);
        assert!(
            telemetry
                .render()
                .contains("\nsteward_grpc_connections_open 0\n")
        );
    }
}
