//! The fleet section of `/metrics` (`[server] fleet_metrics = true`): the
//! latest value of every agent series in the Prometheus text format, so an
//! existing Prometheus scrapes the whole fleet through the collector.
//!
//! Names and labels come from [`crate::prometheus_names`] (the mapping
//! remote_write uses too): `steward_cpu_usage_percent{agent_id="…",
//! host="web-1", cpu="total"} 12.5 1764669600000`. Each family gets one
//! `# HELP` and one `# TYPE` line and its series together; every sample
//! carries its own timestamp (ms), so a value an agent has not refreshed is
//! not presented as new. Host names come from the agents table through a
//! cache (one query per [`HOSTS_TTL`], or sooner when an unknown agent
//! appears), never a query per series.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::prometheus_names::{is_counter, labels, metric_name};
use crate::store::{LatestValue, SeriesKey, Store};

/// How long cached host names are used before the agents table is read again.
pub const HOSTS_TTL: Duration = Duration::from_secs(30);
/// An agent missing from the cache triggers a reload at most this often (an
/// agent id that is in no table must not cost a query per scrape).
const MISS_RELOAD_EVERY: Duration = Duration::from_secs(2);

/// Agent id → host name, as last read.
#[derive(Default)]
struct HostCache {
    names: Arc<HashMap<String, String>>,
    loaded: Option<Instant>,
}

/// State of the fleet section between scrapes: the host-name cache.
pub struct FleetMetrics {
    hosts: tokio::sync::Mutex<HostCache>,
    /// One body is built at a time: a large fleet's body is tens of MB, and
    /// scrapes that overlap wait rather than each holding a copy.
    building: tokio::sync::Semaphore,
}

impl Default for FleetMetrics {
    fn default() -> Self {
        Self {
            hosts: tokio::sync::Mutex::default(),
            building: tokio::sync::Semaphore::new(1),
        }
    }
}

impl std::fmt::Debug for FleetMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetMetrics").finish_non_exhaustive()
    }
}

impl FleetMetrics {
    /// `own` (the collector's counters) followed by the fleet series. A fleet
    /// family whose name the collector's own section already uses is left
    /// out: a second `# TYPE` for a name would make the whole scrape invalid.
    /// Never fails: without the agents table the cached host names serve,
    /// and if rendering fails the collector's own section is still answered.
    pub async fn append(&self, own: String, store: &Arc<Store>) -> String {
        let Ok(_building) = self.building.acquire().await else {
            return own;
        };
        let latest = {
            let store = Arc::clone(store);
            tokio::task::spawn_blocking(move || store.latest(None))
                .await
                .unwrap_or_default()
        };
        let hosts = self.hosts(store, &latest).await;
        let fallback = own.clone();
        let rendered = tokio::task::spawn_blocking(move || {
            let reserved = family_names(&own);
            let mut body = own;
            render(&latest, &hosts, &reserved, &mut body);
            body
        })
        .await;
        rendered.unwrap_or_else(|error| {
            tracing::error!(message = "Rendering the fleet metrics failed.", %error);
            fallback
        })
    }

    /// The cached host names, read again when stale or when `latest` holds
    /// an agent the cache does not know.
    async fn hosts(
        &self,
        store: &Store,
        latest: &[(SeriesKey, LatestValue)],
    ) -> Arc<HashMap<String, String>> {
        let mut cache = self.hosts.lock().await;
        let age = cache.loaded.map(|loaded| loaded.elapsed());
        let stale = age.is_none_or(|age| age >= HOSTS_TTL);
        let unknown_agent = || {
            let mut previous: Option<&str> = None;
            latest.iter().any(|(key, _)| {
                // `latest` is sorted by agent: look each one up once.
                if previous == Some(key.agent_id.as_str()) {
                    return false;
                }
                previous = Some(&key.agent_id);
                !cache.names.contains_key(&key.agent_id)
            })
        };
        if stale || (age.is_some_and(|age| age >= MISS_RELOAD_EVERY) && unknown_agent()) {
            match store.agents().await {
                Ok(agents) => {
                    let names = agents
                        .into_iter()
                        .map(|agent| (agent.id, agent.hostname))
                        .collect();
                    cache.names = Arc::new(names);
                }
                Err(error) => {
                    tracing::warn!(message = "Cannot read host names for the fleet metrics; using the cached ones.", %error);
                }
            }
            // Also after a failure: the next try waits its turn.
            cache.loaded = Some(Instant::now());
        }
        Arc::clone(&cache.names)
    }
}

/// The metric names a text-format body declares with `# TYPE`.
fn family_names(body: &str) -> HashSet<String> {
    body.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// One family: its Prometheus name and the indices of its series in `latest`.
struct Family<'a> {
    name: String,
    /// The Steward metric it came from (the first, if several map to one name).
    metric: &'a str,
    counter: bool,
    series: Vec<usize>,
}

/// Appends the fleet families to `out`, sorted by name, series in `latest`'s
/// order (agent, then labels). Families named in `reserved` are skipped.
pub fn render(
    latest: &[(SeriesKey, LatestValue)],
    hosts: &HashMap<String, String>,
    reserved: &HashSet<String>,
    out: &mut String,
) {
    let mut families: Vec<Family<'_>> = Vec::new();
    let mut by_metric: HashMap<&str, usize> = HashMap::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (index, (key, _)) in latest.iter().enumerate() {
        let family = match by_metric.get(key.metric.as_str()) {
            Some(family) => *family,
            None => {
                let name = metric_name(&key.metric);
                let family = *by_name.entry(name.clone()).or_insert_with(|| {
                    families.push(Family {
                        name,
                        metric: &key.metric,
                        counter: is_counter(&key.metric),
                        series: Vec::new(),
                    });
                    families.len() - 1
                });
                by_metric.insert(&key.metric, family);
                family
            }
        };
        families[family].series.push(index);
    }
    families.sort_by(|a, b| a.name.cmp(&b.name));
    // About 120 bytes a series.
    out.reserve(latest.len() * 120);
    for family in families
        .iter()
        .filter(|family| !reserved.contains(&family.name))
    {
        out.push_str("# HELP ");
        out.push_str(&family.name);
        out.push_str(" Steward agent metric ");
        escape_help(family.metric, out);
        out.push_str(" (latest value of each series).\n# TYPE ");
        out.push_str(&family.name);
        out.push_str(if family.counter {
            " counter\n"
        } else {
            " gauge\n"
        });
        for &index in &family.series {
            let (key, latest) = &latest[index];
            let host = hosts.get(&key.agent_id).map(String::as_str);
            let labels = labels(
                &key.agent_id,
                host,
                key.labels
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str())),
            );
            out.push_str(&family.name);
            out.push('{');
            for (position, (name, value)) in labels.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                out.push_str(name);
                out.push_str("=\"");
                escape_label_value(value, out);
                out.push('"');
            }
            out.push_str("} ");
            push_value(latest.value, out);
            let _ = writeln!(out, " {}", latest.timestamp_ms);
        }
    }
}

/// Label values escape `\`, `"` and line feeds (the text format's rule).
fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes `\` and line feeds.
fn escape_help(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn push_value(value: f64, out: &mut String) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(
        agent: &str,
        metric: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> (SeriesKey, LatestValue) {
        (
            SeriesKey {
                agent_id: agent.into(),
                metric: metric.into(),
                labels: labels
                    .iter()
                    .map(|(name, value)| (name.to_string(), value.to_string()))
                    .collect(),
            },
            LatestValue {
                value,
                timestamp_ms: 1_000,
            },
        )
    }

    #[test]
    fn families_are_grouped_typed_and_escaped() {
        let mut latest = vec![
            series("a", "net.rx_bytes", &[("iface", "eth0")], 10.0),
            series(
                "a",
                "port.up",
                &[("name", "we\"b\\x\ny"), ("target", "t")],
                1.0,
            ),
            series("b", "net.rx_bytes", &[("iface", "eth0")], 20.0),
            series("b", "cpu.usage_percent", &[("cpu", "total")], f64::NAN),
        ];
        latest.sort_by(|a, b| a.0.cmp(&b.0));
        let hosts = HashMap::from([("a".to_string(), "web-1".to_string())]);
        let mut out = String::new();
        render(&latest, &hosts, &HashSet::new(), &mut out);
        assert_eq!(
            out,
            "# HELP steward_cpu_usage_percent Steward agent metric cpu.usage_percent (latest value of each series).\n\
             # TYPE steward_cpu_usage_percent gauge\n\
             steward_cpu_usage_percent{agent_id=\"b\",cpu=\"total\"} NaN 1000\n\
             # HELP steward_net_rx_bytes Steward agent metric net.rx_bytes (latest value of each series).\n\
             # TYPE steward_net_rx_bytes counter\n\
             steward_net_rx_bytes{agent_id=\"a\",host=\"web-1\",iface=\"eth0\"} 10 1000\n\
             steward_net_rx_bytes{agent_id=\"b\",iface=\"eth0\"} 20 1000\n\
             # HELP steward_port_up Steward agent metric port.up (latest value of each series).\n\
             # TYPE steward_port_up gauge\n\
             steward_port_up{agent_id=\"a\",host=\"web-1\",name=\"we\\\"b\\\\x\\ny\",target=\"t\"} 1 1000\n"
        );
    }

    #[test]
    fn a_family_the_collector_already_declares_is_left_out() {
        let latest = vec![series("a", "up", &[], 1.0)];
        let own = "# HELP steward_up x\n# TYPE steward_up gauge\nsteward_up 1\n";
        let mut out = String::new();
        render(&latest, &HashMap::new(), &family_names(own), &mut out);
        assert_eq!(out, "");
    }

    #[test]
    fn values_use_the_text_format_spellings() {
        for (value, shown) in [
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.5, "0.5"),
            (-3.0, "-3"),
        ] {
            let mut out = String::new();
            push_value(value, &mut out);
            assert_eq!(out, shown);
        }
    }
}
