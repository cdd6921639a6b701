//! Load average and uptime (`load.*`, `host.uptime_seconds`).

use sysinfo::System;

use super::Sample;

pub(super) fn collect(now_ms: i64, out: &mut Vec<Sample>) {
    // Windows has no load average; sysinfo reports an error there and we skip it.
    if let Ok(load) = System::load_average() {
        out.push(Sample::new("load.1m", load.one, now_ms));
        out.push(Sample::new("load.5m", load.five, now_ms));
        out.push(Sample::new("load.15m", load.fifteen, now_ms));
    }
    if let Ok(uptime) = System::uptime() {
        out.push(Sample::new("host.uptime_seconds", uptime as f64, now_ms));
    }
}
