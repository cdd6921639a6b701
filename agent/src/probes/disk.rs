//! Per-mount disk usage (`disk.*`, label `mount`).

use std::collections::HashSet;

use sysinfo::Disks;

use super::{Sample, percent};

pub(super) fn collect(disks: &mut Disks, now_ms: i64, out: &mut Vec<Sample>) {
    // `true` drops disks that were unmounted since the last round.
    disks.refresh(true);
    let mut seen = HashSet::new();
    for disk in disks.iter() {
        let mount = disk.mount_point().to_string_lossy().into_owned();
        // Bind mounts list one filesystem several times; report each mount once.
        if !seen.insert(mount.clone()) {
            continue;
        }
        let total = disk.total_space();
        let used = total.saturating_sub(disk.available_space());
        out.push(Sample::new("disk.used_bytes", used as f64, now_ms).label("mount", mount.clone()));
        out.push(
            Sample::new("disk.total_bytes", total as f64, now_ms).label("mount", mount.clone()),
        );
        out.push(
            Sample::new("disk.used_percent", percent(used, total), now_ms).label("mount", mount),
        );
    }
}
