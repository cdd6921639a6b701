//! How a Steward series is named in the Prometheus world: the fleet section
//! of `/metrics` and remote_write both use this one mapping, so a series has
//! the same name and labels wherever Prometheus-compatible tools meet it.
//!
//! `cpu.usage_percent{cpu="total"}` of agent `A` on host `web-1` becomes
//! `steward_cpu_usage_percent{agent_id="A", host="web-1", cpu="total"}`.
//! Names keep to `[a-zA-Z_:][a-zA-Z0-9_:]*` and label names to
//! `[a-zA-Z_][a-zA-Z0-9_]*` (other characters become `_`); a sample label
//! that would clash with `agent_id`, `host` or a reserved `__` name is
//! prefixed `exported_`, as Prometheus does for clashing target labels.

/// Prefix of every fleet series name.
pub const PREFIX: &str = "steward_";

/// Label carrying the agent id.
pub const AGENT_LABEL: &str = "agent_id";
/// Label carrying the host name the agent reported.
pub const HOST_LABEL: &str = "host";

/// The Prometheus metric name for a dotted Steward metric name.
pub fn metric_name(metric: &str) -> String {
    let mut name = String::with_capacity(PREFIX.len() + metric.len());
    name.push_str(PREFIX);
    name.extend(metric.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            c
        } else {
            '_'
        }
    }));
    name
}

/// The Prometheus label name for a sample label key.
pub fn label_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    if name == AGENT_LABEL || name == HOST_LABEL || name.starts_with("__") {
        name.insert_str(0, "exported_");
    }
    name
}

/// Whether the metric is a cumulative counter (see docs/metrics.md); the
/// rest are gauges.
pub fn is_counter(metric: &str) -> bool {
    metric.starts_with("net.")
        && (metric.ends_with("_bytes")
            || metric.ends_with("_packets")
            || metric.ends_with("_errors"))
}

/// The full label set of a series, sorted by name as remote_write requires:
/// `agent_id`, `host` (when known) and the sample's labels, renamed.
pub fn labels<'a>(
    agent_id: &str,
    host: Option<&str>,
    sample_labels: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<(String, String)> {
    let mut labels = vec![(AGENT_LABEL.to_string(), agent_id.to_string())];
    if let Some(host) = host {
        labels.push((HOST_LABEL.to_string(), host.to_string()));
    }
    labels.extend(
        sample_labels
            .into_iter()
            .map(|(key, value)| (label_name(key), value.to_string())),
    );
    labels.sort();
    // Two keys that sanitise to the same name (`a.b` and `a_b`): keep the first.
    labels.dedup_by(|later, earlier| later.0 == earlier.0);
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_names_become_prefixed_snake_case() {
        assert_eq!(
            metric_name("cpu.usage_percent"),
            "steward_cpu_usage_percent"
        );
        assert_eq!(metric_name("ping.rtt-ms"), "steward_ping_rtt_ms");
    }

    #[test]
    fn label_names_are_valid_and_never_clash_with_the_identity_labels() {
        assert_eq!(label_name("mount"), "mount");
        assert_eq!(label_name("0day"), "_0day");
        assert_eq!(label_name("a.b"), "a_b");
        assert_eq!(label_name("host"), "exported_host");
        assert_eq!(label_name("agent_id"), "exported_agent_id");
        assert_eq!(label_name("__name__"), "exported___name__");
        assert_eq!(label_name(""), "_");
    }

    #[test]
    fn a_series_has_sorted_identity_and_sample_labels() {
        let labels = labels("A", Some("web-1"), [("mount", "/"), ("host", "x")]);
        assert_eq!(
            labels,
            vec![
                ("agent_id".into(), "A".into()),
                ("exported_host".into(), "x".into()),
                ("host".into(), "web-1".into()),
                ("mount".into(), "/".into()),
            ]
        );
    }

    #[test]
    fn network_totals_are_counters_and_the_rest_gauges() {
        assert!(is_counter("net.rx_bytes"));
        assert!(is_counter("net.tx_errors"));
        assert!(!is_counter("cpu.usage_percent"));
        assert!(!is_counter("disk.used_bytes"));
    }
}
