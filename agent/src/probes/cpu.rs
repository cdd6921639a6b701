//! CPU usage, total and per core (`cpu.usage_percent`, label `cpu`).

use sysinfo::System;

use super::Sample;

pub(super) fn collect(system: &mut System, now_ms: i64, out: &mut Vec<Sample>) {
    system.refresh_cpu_usage();
    out.push(
        Sample::new(
            "cpu.usage_percent",
            f64::from(system.global_cpu_usage()),
            now_ms,
        )
        .label("cpu", "total"),
    );
    for (index, cpu) in system.cpus().iter().enumerate() {
        out.push(
            Sample::new("cpu.usage_percent", f64::from(cpu.usage()), now_ms)
                .label("cpu", index.to_string()),
        );
    }
    out.push(Sample::new("cpu.cores", system.cpus().len() as f64, now_ms));
}
