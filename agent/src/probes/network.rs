//! Per-interface traffic counters (`net.*`, label `iface`). Values are
//! cumulative totals since boot, like Prometheus counters.

use sysinfo::Networks;

use super::Sample;

pub(super) fn collect(networks: &mut Networks, now_ms: i64, out: &mut Vec<Sample>) {
    networks.refresh(true);
    for (name, data) in networks.iter() {
        let iface = name.to_string_lossy().into_owned();
        let counters = [
            ("net.rx_bytes", data.total_received()),
            ("net.tx_bytes", data.total_transmitted()),
            ("net.rx_packets", data.total_packets_received()),
            ("net.tx_packets", data.total_packets_transmitted()),
            ("net.rx_errors", data.total_errors_on_received()),
            ("net.tx_errors", data.total_errors_on_transmitted()),
        ];
        for (metric, value) in counters {
            out.push(Sample::new(metric, value as f64, now_ms).label("iface", iface.clone()));
        }
    }
}
