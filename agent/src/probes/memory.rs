//! Memory and swap (`mem.*`, `swap.*`).

use sysinfo::System;

use super::{Sample, percent};

pub(super) fn collect(system: &mut System, now_ms: i64, out: &mut Vec<Sample>) {
    system.refresh_memory();
    let (used, total) = (system.used_memory(), system.total_memory());
    out.push(Sample::new("mem.used_bytes", used as f64, now_ms));
    out.push(Sample::new("mem.total_bytes", total as f64, now_ms));
    out.push(Sample::new(
        "mem.available_bytes",
        system.available_memory() as f64,
        now_ms,
    ));
    out.push(Sample::new(
        "mem.used_percent",
        percent(used, total),
        now_ms,
    ));
    let (used, total) = (system.used_swap(), system.total_swap());
    out.push(Sample::new("swap.used_bytes", used as f64, now_ms));
    out.push(Sample::new("swap.total_bytes", total as f64, now_ms));
    out.push(Sample::new(
        "swap.used_percent",
        percent(used, total),
        now_ms,
    ));
}
