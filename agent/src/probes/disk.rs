//! Per-mount disk usage (`disk.*`, label `mount`).
//!
//! The figures are the ones `df -P` and `df -Pi` print, so an operator who
//! checks an alert with `df` sees the same number. "Used" is what is allocated
//! (all blocks minus free blocks), and the percentage is of what an
//! unprivileged user can fill (used plus available): blocks reserved for root
//! count as neither. Measuring against the total instead counts the reserve as
//! used, which on ext4 (5% by default, far more with a tuned reserve) reports
//! a disk as much fuller than `df` does.
//!
//! sysinfo lists the mounts (and leaves out pseudo and network filesystems,
//! whose `statvfs` can hang); on Unix the figures come from `statvfs(3)`,
//! because sysinfo reports only total and available. Elsewhere sysinfo's
//! total and available are all there is, and "used" is their difference.

use std::collections::HashSet;

use sysinfo::{Disk, DiskRefreshKind, Disks};

use super::{Sample, percent};

pub(super) fn collect(disks: &mut Disks, now_ms: i64, out: &mut Vec<Sample>) {
    // `true` drops disks that were unmounted since the last round.
    disks.refresh_specifics(true, refresh_kind());
    let mut seen = HashSet::new();
    for disk in disks.iter() {
        let mount = disk.mount_point().to_string_lossy().into_owned();
        // Bind mounts list one filesystem several times; report each mount once.
        if !seen.insert(mount.clone()) {
            continue;
        }
        let Some(stats) = filesystem_stats(disk) else {
            continue;
        };
        let usage = DiskUsage::from_stats(&stats);
        let sample =
            |metric, value: f64| Sample::new(metric, value, now_ms).label("mount", mount.clone());
        out.push(sample("disk.used_bytes", usage.used_bytes as f64));
        out.push(sample("disk.avail_bytes", usage.avail_bytes as f64));
        out.push(sample("disk.total_bytes", usage.total_bytes as f64));
        out.push(sample("disk.used_percent", usage.used_percent));
        if let Some(inodes) = usage.inodes_used_percent {
            out.push(sample("disk.inodes_used_percent", inodes));
        }
    }
}

/// A filesystem's counts as `statvfs(3)` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct FilesystemStats {
    /// The unit of the block counts (`f_frsize`), in bytes.
    pub fragment_size: u64,
    pub blocks: u64,
    /// Free blocks, including those reserved for root.
    pub blocks_free: u64,
    /// Free blocks an unprivileged user may use.
    pub blocks_available: u64,
    /// Inodes; 0 where the filesystem has no fixed inode table (btrfs, vfat).
    pub files: u64,
    pub files_free: u64,
    pub files_available: u64,
}

/// What the probe reports for one mount.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DiskUsage {
    pub total_bytes: u64,
    /// Allocated: all blocks minus free ones (df's "Used").
    pub used_bytes: u64,
    /// Free to unprivileged users (df's "Available").
    pub avail_bytes: u64,
    /// used / (used + available), as df computes its "Capacity" (df rounds
    /// up to a whole percent; this keeps the fraction).
    pub used_percent: f64,
    /// The same for inodes (df -i's "IUse%"); `None` when the filesystem
    /// reports no inodes.
    pub inodes_used_percent: Option<f64>,
}

impl DiskUsage {
    pub(crate) fn from_stats(stats: &FilesystemStats) -> Self {
        let bytes = |blocks: u64| blocks.saturating_mul(stats.fragment_size);
        let used = stats.blocks.saturating_sub(stats.blocks_free);
        let inodes_used_percent = (stats.files > 0).then(|| {
            let used = stats.files.saturating_sub(stats.files_free);
            percent(used, used.saturating_add(stats.files_available))
        });
        Self {
            total_bytes: bytes(stats.blocks),
            used_bytes: bytes(used),
            avail_bytes: bytes(stats.blocks_available),
            used_percent: percent(used, used.saturating_add(stats.blocks_available)),
            inodes_used_percent,
        }
    }
}

/// On Unix the list is all sysinfo must refresh; statvfs gives the figures.
#[cfg(unix)]
fn refresh_kind() -> DiskRefreshKind {
    DiskRefreshKind::nothing()
}

#[cfg(not(unix))]
fn refresh_kind() -> DiskRefreshKind {
    DiskRefreshKind::nothing().with_storage()
}

#[cfg(unix)]
fn filesystem_stats(disk: &Disk) -> Option<FilesystemStats> {
    match rustix::fs::statvfs(disk.mount_point()) {
        Ok(stat) => Some(FilesystemStats {
            fragment_size: stat.f_frsize,
            blocks: stat.f_blocks,
            blocks_free: stat.f_bfree,
            blocks_available: stat.f_bavail,
            files: stat.f_files,
            files_free: stat.f_ffree,
            files_available: stat.f_favail,
        }),
        Err(error) => {
            // Unmounted between listing and now, or not readable by the
            // agent's user: leave the mount out of this round.
            tracing::debug!(
                message = "Cannot read filesystem figures.",
                mount = %disk.mount_point().display(),
                %error,
            );
            None
        }
    }
}

/// sysinfo knows only total and available, so available stands in for free:
/// "used" is total − available, as before statvfs was used on Unix.
#[cfg(not(unix))]
fn filesystem_stats(disk: &Disk) -> Option<FilesystemStats> {
    Some(FilesystemStats {
        fragment_size: 1,
        blocks: disk.total_space(),
        blocks_free: disk.available_space(),
        blocks_available: disk.available_space(),
        ..FilesystemStats::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    #[test]
    fn usage_matches_df_arithmetic() {
        struct Case {
            name: &'static str,
            stats: FilesystemStats,
            used_bytes: u64,
            avail_bytes: u64,
            used_percent: f64,
            inodes_used_percent: Option<f64>,
        }
        for case in [
            Case {
                // `stat -f /` on the development host: ext4 with a large
                // root reserve. df says 43%; total − available would say 79%.
                name: "ext4 with reserved blocks",
                stats: FilesystemStats {
                    fragment_size: 4096,
                    blocks: 66_053_021,
                    blocks_free: 55_834_989,
                    blocks_available: 13_603_440,
                    files: 16_777_216,
                    files_free: 16_300_320,
                    files_available: 16_300_320,
                },
                used_bytes: 40_872_128 * KIB,
                avail_bytes: 54_413_760 * KIB,
                used_percent: 10_218_032.0 * 100.0 / 23_821_472.0,
                inodes_used_percent: Some(476_896.0 * 100.0 / 16_777_216.0),
            },
            Case {
                name: "no reserve",
                stats: FilesystemStats {
                    fragment_size: 1024,
                    blocks: 1000,
                    blocks_free: 250,
                    blocks_available: 250,
                    files: 100,
                    files_free: 100,
                    files_available: 100,
                },
                used_bytes: 750 * KIB,
                avail_bytes: 250 * KIB,
                used_percent: 75.0,
                inodes_used_percent: Some(0.0),
            },
            Case {
                // Only the reserve is left: full for everyone but root.
                name: "only the reserve left",
                stats: FilesystemStats {
                    fragment_size: 4096,
                    blocks: 1000,
                    blocks_free: 50,
                    blocks_available: 0,
                    files: 10,
                    files_free: 0,
                    files_available: 0,
                },
                used_bytes: 950 * 4096,
                avail_bytes: 0,
                used_percent: 100.0,
                inodes_used_percent: Some(100.0),
            },
            Case {
                // Inodes reserved for root count like reserved blocks.
                name: "inodes reserved for root",
                stats: FilesystemStats {
                    fragment_size: 512,
                    blocks: 10,
                    blocks_free: 10,
                    blocks_available: 10,
                    files: 100,
                    files_free: 40,
                    files_available: 30,
                },
                used_bytes: 0,
                avail_bytes: 10 * 512,
                used_percent: 0.0,
                inodes_used_percent: Some(60.0 * 100.0 / 90.0),
            },
            Case {
                // btrfs and vfat report no inodes: no inode figure, not 0%.
                name: "no inode table",
                stats: FilesystemStats {
                    fragment_size: 4096,
                    blocks: 400,
                    blocks_free: 100,
                    blocks_available: 100,
                    ..FilesystemStats::default()
                },
                used_bytes: 300 * 4096,
                avail_bytes: 100 * 4096,
                used_percent: 75.0,
                inodes_used_percent: None,
            },
            Case {
                name: "empty filesystem",
                stats: FilesystemStats::default(),
                used_bytes: 0,
                avail_bytes: 0,
                used_percent: 0.0,
                inodes_used_percent: None,
            },
            Case {
                // A broken driver reporting more free than total blocks must
                // not underflow.
                name: "more free than total",
                stats: FilesystemStats {
                    fragment_size: 4096,
                    blocks: 10,
                    blocks_free: 20,
                    blocks_available: 20,
                    files: 5,
                    files_free: 9,
                    files_available: 9,
                },
                used_bytes: 0,
                avail_bytes: 20 * 4096,
                used_percent: 0.0,
                inodes_used_percent: Some(0.0),
            },
        ] {
            let usage = DiskUsage::from_stats(&case.stats);
            assert_eq!(
                usage.total_bytes,
                case.stats.blocks * case.stats.fragment_size,
                "{}",
                case.name
            );
            assert_eq!(usage.used_bytes, case.used_bytes, "{}", case.name);
            assert_eq!(usage.avail_bytes, case.avail_bytes, "{}", case.name);
            assert!(
                (usage.used_percent - case.used_percent).abs() < 1e-9,
                "{}: {usage:?}",
                case.name
            );
            match (usage.inodes_used_percent, case.inodes_used_percent) {
                (Some(got), Some(want)) => {
                    assert!((got - want).abs() < 1e-9, "{}: {usage:?}", case.name)
                }
                (got, want) => assert_eq!(got, want, "{}", case.name),
            }
        }
    }

    /// One row of `df -P` or `df -Pi`: (size, used, available, percent), the
    /// sizes in the unit of the header (1 KiB blocks with `-k`, inodes with
    /// `-i`), the percent without its `%`.
    fn parse_df_row(output: &str, mount: &str) -> Option<(u64, u64, u64, f64)> {
        output.lines().skip(1).find_map(|line| {
            // The filesystem name may contain spaces; the last five fields
            // never do (except the mount point, which must match whole).
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [.., size, used, avail, capacity, mounted_on] = fields.as_slice() else {
                return None;
            };
            if *mounted_on != mount {
                return None;
            }
            Some((
                size.parse().ok()?,
                used.parse().ok()?,
                avail.parse().ok()?,
                capacity.strip_suffix('%')?.parse().ok()?,
            ))
        })
    }

    #[test]
    fn parses_df_rows() {
        // `df -Pk` and `df -Pi` on the development host.
        let blocks = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n\
                      devtmpfs          12334192        0  12334192       0% /dev\n\
                      /dev/vda         264212084 40872124  54413764      43% /\n";
        assert_eq!(
            parse_df_row(blocks, "/"),
            Some((264_212_084, 40_872_124, 54_413_764, 43.0))
        );
        let inodes = "Filesystem       Inodes  IUsed    IFree IUse% Mounted on\n\
                      /dev/vda       16777216 476896 16300320    3% /\n";
        assert_eq!(
            parse_df_row(inodes, "/"),
            Some((16_777_216, 476_896, 16_300_320, 3.0))
        );
        assert_eq!(parse_df_row(blocks, "/home"), None);
        // df prints `-` where a filesystem has no inodes.
        assert_eq!(parse_df_row("h\nfs 0 0 0 - /boot/efi\n", "/boot/efi"), None);
    }

    fn run_df(args: &[&str]) -> String {
        let output = std::process::Command::new("df")
            .args(args)
            .env("LC_ALL", "C")
            .env_remove("POSIXLY_CORRECT")
            .output()
            .expect("df runs");
        assert!(output.status.success(), "df {args:?}: {output:?}");
        String::from_utf8(output.stdout).expect("df prints UTF-8")
    }

    fn root_samples(disks: &mut Disks) -> Vec<Sample> {
        let mut samples = Vec::new();
        collect(disks, 1, &mut samples);
        samples.retain(|sample| sample.labels == [("mount", "/".to_string())]);
        samples
    }

    fn value(samples: &[Sample], metric: &str) -> f64 {
        samples
            .iter()
            .find(|sample| sample.metric == metric)
            .unwrap_or_else(|| panic!("no {metric} for / in {samples:?}"))
            .value
    }

    /// Regression guard for percentages that counted root-reserved blocks as
    /// used: the agent's figures for `/` must be df's. The disk is shared and
    /// changes while the test runs, so byte figures are checked against the
    /// range the agent saw just before and just after df, widened by df's
    /// rounding to whole KiB and a little slack.
    #[test]
    fn root_figures_match_df_on_this_machine() {
        let mut disks = Disks::new_with_refreshed_list().expect("list disks");
        let before = root_samples(&mut disks);
        let blocks = run_df(&["-Pk", "/"]);
        let inodes = run_df(&["-Pi", "/"]);
        let after = root_samples(&mut disks);

        let (df_total, df_used, df_avail, df_percent) =
            parse_df_row(&blocks, "/").unwrap_or_else(|| panic!("no / in {blocks}"));
        let slack = 64.0 * 1024.0 * 1024.0;
        let within = |metric: &str, df_kib: u64| {
            let (a, b) = (value(&before, metric), value(&after, metric));
            let df_bytes = df_kib as f64 * 1024.0;
            assert!(
                a.min(b) - 1024.0 - slack <= df_bytes && df_bytes <= a.max(b) + 1024.0 + slack,
                "{metric}: agent {a}..{b}, df {df_bytes}"
            );
        };
        within("disk.total_bytes", df_total);
        within("disk.used_bytes", df_used);
        within("disk.avail_bytes", df_avail);
        // df rounds up to a whole percent.
        let percent = value(&before, "disk.used_percent");
        assert!(
            (df_percent - percent).abs() <= 1.0,
            "disk.used_percent: agent {percent}, df {df_percent}%"
        );

        let (_, _, _, df_inodes_percent) =
            parse_df_row(&inodes, "/").unwrap_or_else(|| panic!("no / in {inodes}"));
        let inodes_percent = value(&before, "disk.inodes_used_percent");
        assert!(
            (df_inodes_percent - inodes_percent).abs() <= 1.0,
            "disk.inodes_used_percent: agent {inodes_percent}, df {df_inodes_percent}%"
        );
        eprintln!(
            "df: {df_percent}% of blocks, {df_inodes_percent}% of inodes; \
             agent: {percent:.3}%, {inodes_percent:.3}%; \
             df used/avail KiB {df_used}/{df_avail}, agent {}/{}",
            value(&before, "disk.used_bytes") / 1024.0,
            value(&before, "disk.avail_bytes") / 1024.0,
        );
    }
}
