//! The agent's slower schedules, each in its own task: ping and port checks
//! every `check_interval`, patch scans every `patch.interval`, inventory every
//! `inventory.interval` (all also at start). Each pushes into the buffer as a
//! batch of its own; inventory travels as diffs against what was last pushed.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::buffer::{BatchBuffer, InventoryChange};
use crate::config::AgentConfig;
use crate::probes::inventory::{self, Inventory, InventoryDiff};
use crate::probes::{patch, ping, port};

/// Inventory shared between the inventory loop, the patch loop (kernel
/// facts) and the shipper (resync after the collector lost the package list).
#[derive(Debug, Default)]
pub struct InventoryState {
    /// The inventory last pushed into the buffer.
    current: Mutex<Option<Inventory>>,
    /// Facts other loops learn (kernels from the patch scan), merged in.
    extra_facts: Mutex<BTreeMap<String, String>>,
    /// Wakes the inventory loop early when extra facts change.
    refresh: Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A full snapshot expressed as a change from nothing.
fn full_change(inventory: &Inventory) -> InventoryChange {
    InventoryChange {
        full: true,
        diff: InventoryDiff {
            facts_changed: inventory.facts.clone(),
            facts_removed: Vec::new(),
            disks: Some(inventory.disks.clone()),
            interfaces: Some(inventory.interfaces.clone()),
            packages_upserted: inventory.packages.clone(),
            packages_removed: Vec::new(),
        },
        packages_fingerprint: inventory::packages_fingerprint(&inventory.packages),
        timestamp_ms: steward_core::now_ms(),
    }
}

impl InventoryState {
    /// Called by the shipper after a welcome: when the collector's package
    /// fingerprint differs from ours, queue a full snapshot.
    pub fn resync_if_needed(&self, buffer: &BatchBuffer, collector_fingerprint: u64) {
        let current = lock(&self.current);
        if let Some(inventory) = current.as_ref()
            && inventory::packages_fingerprint(&inventory.packages) != collector_fingerprint
        {
            tracing::info!(
                message = "Collector's package list differs from ours; sending a full inventory."
            );
            buffer.push_inventory(full_change(inventory));
        }
    }

    fn set_extra_facts(&self, facts: BTreeMap<String, String>) {
        let changed = {
            let mut extra = lock(&self.extra_facts);
            let changed = *extra != facts;
            *extra = facts;
            changed
        };
        if changed {
            self.refresh.notify_one();
        }
    }
}

pub(crate) async fn inventory(
    config: Arc<AgentConfig>,
    buffer: Arc<BatchBuffer>,
    state: Arc<InventoryState>,
    shutdown: CancellationToken,
) {
    if !config.inventory.enabled {
        return;
    }
    let mut ticker = ticker(config.inventory.interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = state.refresh.notified() => {}
            _ = shutdown.cancelled() => return,
        }
        // Reading /sys, /proc and the package database is blocking file I/O.
        let collected =
            tokio::task::spawn_blocking(|| inventory::collect(std::path::Path::new("/"))).await;
        let Ok(mut collected) = collected else {
            tracing::error!(message = "Inventory collection panicked; stopping inventory.");
            return;
        };
        collected.facts.extend(lock(&state.extra_facts).clone());
        // A configured host name is what this host is called everywhere.
        if let Some(hostname) = &config.hostname {
            collected
                .facts
                .insert(inventory::fact::HOSTNAME.to_string(), hostname.clone());
        }
        let mut current = lock(&state.current);
        // A failed package read yields no package facts and an empty list;
        // that means "unknown", not "everything was uninstalled".
        if !collected
            .facts
            .contains_key(inventory::fact::PACKAGE_MANAGER)
            && let Some(previous) = current.as_ref()
        {
            collected.packages = previous.packages.clone();
            for key in [
                inventory::fact::PACKAGE_MANAGER,
                inventory::fact::PACKAGE_COUNT,
            ] {
                if let Some(value) = previous.facts.get(key) {
                    collected.facts.insert(key.to_string(), value.clone());
                }
            }
        }
        let change = match current.as_ref() {
            None => Some(full_change(&collected)),
            Some(previous) => inventory::diff(previous, &collected).map(|diff| InventoryChange {
                full: false,
                diff,
                packages_fingerprint: inventory::packages_fingerprint(&collected.packages),
                timestamp_ms: steward_core::now_ms(),
            }),
        };
        if let Some(change) = change
            && let Some(seq) = buffer.push_inventory(change)
        {
            tracing::debug!(
                message = "Inventory changed.",
                seq,
                packages = collected.packages.len()
            );
        }
        *current = Some(collected);
        drop(current);
        // The package database was read whole; hand its pages back.
        crate::allocator::release_free_memory();
    }
}

/// A ticker whose first tick is immediate and which does not burst after a stall.
fn ticker(period: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

pub(crate) async fn checks(
    config: Arc<AgentConfig>,
    buffer: Arc<BatchBuffer>,
    shutdown: CancellationToken,
) {
    if config.ping.is_empty() && config.port.is_empty() {
        return;
    }
    let pinger = if config.ping.is_empty() {
        None
    } else {
        Some(ping::Pinger::new().await)
    };
    let mut ticker = ticker(config.check_interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now = steward_core::now_ms();
        let pings = async {
            match &pinger {
                Some(pinger) => pinger.probe_all(&config.ping, now).await,
                None => Vec::new(),
            }
        };
        let (mut samples, ports) = tokio::join!(pings, port::probe_all(&config.port, now));
        samples.extend(ports);
        if let Some(seq) = buffer.push(samples) {
            tracing::debug!(message = "Checked ping and port targets.", seq);
        }
    }
}

pub(crate) async fn patch(
    config: Arc<AgentConfig>,
    buffer: Arc<BatchBuffer>,
    state: Arc<InventoryState>,
    shutdown: CancellationToken,
) {
    if !config.patch.enabled {
        return;
    }
    let Some(backend) = patch::detect() else {
        tracing::info!(
            message = "No supported package manager found; patch level is not reported."
        );
        return;
    };
    let mut ticker = ticker(config.patch.interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let started = std::time::Instant::now();
        let scanned = tokio::select! {
            scanned = patch::scan(backend.as_ref(), config.patch.timeout) => scanned,
            _ = shutdown.cancelled() => return,
        };
        match scanned {
            Ok(report) => {
                tracing::info!(
                    message = "Patch scan finished.",
                    backend = report.backend,
                    pending = report.pending,
                    security = ?report.security,
                    reboot_required = ?report.reboot_required,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                );
                buffer.push(patch::to_samples(&report, steward_core::now_ms()));
                let mut facts =
                    BTreeMap::from([("patch_backend".to_string(), report.backend.to_string())]);
                if let Some(kernel) = &report.running_kernel {
                    facts.insert("running_kernel".into(), kernel.clone());
                }
                if let Some(kernel) = &report.newest_installed_kernel {
                    facts.insert("newest_installed_kernel".into(), kernel.clone());
                }
                state.set_extra_facts(facts);
            }
            Err(error) => {
                tracing::warn!(message = "Patch scan failed.", backend = backend.name(), %error);
            }
        }
        // The scan streamed the package indexes through big buffers.
        crate::allocator::release_free_memory();
    }
}
