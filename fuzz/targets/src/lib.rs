//! The bodies of Steward's fuzz targets, one plain function per target.
//!
//! Each takes arbitrary bytes and runs them through parsers that read
//! untrusted or operator-written input: config files, rules, the text of
//! package managers and system files, and the agent messages the collector
//! decodes. A target never panics on any input; a panic (or an overflow, with
//! debug assertions) is a bug in the parser, not in the target.
//!
//! Two callers: libFuzzer through `fuzz/fuzz_targets/*.rs` (nightly,
//! `cargo fuzz`), and `tests/corpus.rs`, which feeds every file of every kept
//! corpus through [`TARGETS`] on stable as part of `cargo test --workspace`.
//! This crate must therefore never depend on libFuzzer.
//!
//! The targets read no files except the config targets, whose examples name
//! files beside them (see [`config_path`]) and which skip inputs that would
//! read anything outside `files/`.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::ops::ControlFlow;
use std::path::{Component, Path, PathBuf};

use steward_agent::AgentConfig;
use steward_agent::probes::inventory::{cpu, host, macos as inventory_macos, os_release};
use steward_agent::probes::inventory::{packages, windows as inventory_windows};
use steward_agent::probes::patch::{self, apt, dnf, macos as patch_macos, pacman};
use steward_agent::probes::patch::{windows as patch_windows, zypper};
use steward_collector::CollectorConfig;
use steward_collector::rules::summary::{self, SummaryContext};
use steward_collector::rules::{RawRule, RuleKind, validate_rules};
use steward_core::config_file::ConfigSource;

/// A fuzz target: its name (the `fuzz_targets/` file and `corpus/` directory)
/// and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order `run.sh` runs them.
pub const TARGETS: &[Target] = &[
    ("agent_config", agent_config),
    ("collector_config", collector_config),
    ("rules", rules),
    ("apt_text", apt_text),
    ("apt_lz4", apt_lz4),
    ("patch_other", patch_other),
    ("inventory", inventory),
    ("ingest_message", ingest_message),
];

/// Where a config under test pretends to live: `files/` beside this crate,
/// which holds the certificates, token files and rules the examples name.
pub fn config_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("files")
        .join(name)
}

/// `agent.toml`: TOML syntax and schema, then validation.
pub fn agent_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    if !reads_only_beside(&text, &[&["token_file"], &["ca"]]) {
        return;
    }
    let source = ConfigSource {
        path: config_path("agent.toml"),
        text,
    };
    let _ = AgentConfig::from_source(&source);
}

/// `collector.toml`: TOML syntax and schema, then validation of everything
/// (TLS, tokens, rules and included rule files, SLA, assets, notify).
pub fn collector_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let files: &[&[&str]] = &[
        &["include"],
        &["tls", "cert"],
        &["tls", "key"],
        &["auth", "agent_token_file"],
        &["auth", "api_token_file"],
    ];
    if !reads_only_beside(&text, files) {
        return;
    }
    let source = ConfigSource {
        path: config_path("collector.toml"),
        text,
    };
    let _ = CollectorConfig::from_source(&source);
}

/// A rules file (`[[rule]]` tables only, as `include` reads them), raw then
/// validated.
pub fn rules(data: &[u8]) {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RulesFile {
        #[serde(default)]
        rule: Vec<RawRule>,
    }
    let source = ConfigSource {
        path: config_path("rules.toml"),
        text: String::from_utf8_lossy(data).into_owned(),
    };
    let Ok(file) = source.parse::<RulesFile>() else {
        return;
    };
    let Ok(rules) = validate_rules(&source, file.rule) else {
        return;
    };
    // A validated summary renders, whatever the numbers it is given.
    for rule in &rules {
        let (op, threshold, silence_ms) = match &rule.kind {
            RuleKind::Threshold(threshold) => (Some(threshold.op), Some(threshold.threshold), None),
            RuleKind::Absent(absent) => (
                None,
                None,
                absent
                    .after
                    .map(|after| i64::try_from(after.as_millis()).unwrap_or(i64::MAX)),
            ),
        };
        let context = SummaryContext {
            rule: &rule.name,
            metric: &rule.metric,
            agent_id: "agent",
            host: "host",
            labels: &rule.matchers,
            severity: rule.severity,
            value: threshold,
            op,
            threshold,
            silence_ms,
        };
        let _ = summary::render(&rule.summary, &context);
    }
}

/// apt's text formats, each fed the whole input: dpkg's status file,
/// one-line and deb822 sources, Release files, `apt-get -s` output and an
/// uncompressed `Packages` index; then Debian version comparison of the
/// versions found.
pub fn apt_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let installed = apt::parse_dpkg_status(&text);
    let _ = apt::newest_kernel_from_dpkg(&installed);
    for entry in apt::parse_sources_list(&text)
        .iter()
        .chain(&apt::parse_deb822_sources(&text))
    {
        let files = entry.list_files();
        let _ = files.contains(&entry.suite);
    }
    let _ = apt::parse_release(&text).is_security();
    for install in apt::parse_apt_get_simulation(&text) {
        let _ = (install.is_upgrade(), install.is_security());
    }
    let _ = apt::uri_to_file_name(&text);
    let mut versions = Vec::new();
    let _ = apt::for_each_package_version(data, |_, _, version| {
        versions.push(version.to_string());
        ControlFlow::Continue(())
    });
    versions.extend(installed.into_iter().map(|package| package.version));
    for pair in versions.windows(2) {
        let _ = patch::compare_debian_versions(&pair[0], &pair[1]);
    }
    let _ = patch::newest_kernel_from_boot_names(text.lines());
    let _ = patch::linux_family(&text);
}

/// apt's `*_Packages.lz4` lists: LZ4 frames decoded as a stream and read as
/// a `Packages` index.
pub fn apt_lz4(data: &[u8]) {
    let reader = BufReader::new(apt::Lz4Frames::new(data));
    let _ = apt::for_each_package_version(reader, |_, _, _| ControlFlow::Continue(()));
    // The raw decoder too, without the line reader in between.
    let mut sink = Vec::new();
    let _ = apt::Lz4Frames::new(data).read_to_end(&mut sink);
}

/// The other patch backends' outputs: dnf/yum, zypper, pacman,
/// `softwareupdate`, the Windows Update script.
pub fn patch_other(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let updates = dnf::parse_dnf_check_update(&text);
    let advisories = dnf::parse_dnf_updateinfo_security(&text);
    let _ = dnf::count_security_updates(&updates, &advisories);
    let _ = dnf::split_nevra(&text);
    let _ = dnf::parse_needs_restarting(&text);
    for update in zypper::parse_zypper_updates(&text) {
        let _ = update.is_needed_security_patch();
    }
    let _ = pacman::parse_pacman_updates(&text);
    let _ = patch_macos::parse_softwareupdate_list(&text);
    if let Ok(scan) = patch_windows::parse_windows_update_output(&text) {
        for update in &scan.updates {
            let _ = update.is_security();
        }
    }
}

/// Inventory sources: package lists (dpkg, rpm, pacman, pkgutil),
/// os-release, `/proc/cpuinfo`, `/etc/hosts` and machine-id, macOS
/// `system_profiler` and Windows CIM output.
pub fn inventory(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for list in [
        packages::parse_dpkg_status(&text),
        packages::parse_rpm_query(&text),
        packages::parse_pacman_query(&text),
        packages::parse_pkgutil_pkgs(&text),
    ] {
        let _ = packages::packages_fingerprint(&list);
    }
    let fields: BTreeMap<String, String> = os_release::parse_os_release(&text);
    let _ = os_release::OsRelease::from_fields(&fields).facts().count();
    let _ = cpu::parse_cpuinfo(&text);
    let hostname = text.split_whitespace().nth(1).unwrap_or("host");
    let _ = host::canonical_name_in_hosts(&text, hostname);
    let _ = host::parse_machine_id(&text);
    let _ = inventory_macos::parse_hardware_overview(&text)
        .facts()
        .count();
    if let Ok(identity) = inventory_windows::parse_computer_system_product(&text) {
        let _ = identity.facts().count();
    }
}

/// The collector's handling of one decoded `AgentMessage`: protobuf decode,
/// then hello cleaning and checks, sample validation, inventory mapping.
pub fn ingest_message(data: &[u8]) {
    const NOW_MS: i64 = 1_800_000_000_000;
    let _ = steward_collector::ingest::screen_encoded_message(data, NOW_MS);
}

/// Whether every file the config names at these dotted keys (a string or an
/// array of strings) is a plain relative path, so it resolves inside
/// `files/`. An absolute path or `..` could name `/dev/zero` or a FIFO, and
/// the fuzzer would measure the machine instead of the parser. Text that is
/// not TOML passes: the parser refuses it before reading any file.
fn reads_only_beside(text: &str, keys: &[&[&str]]) -> bool {
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return true;
    };
    let plain = |value: &toml::Value| match value {
        toml::Value::String(path) => Path::new(path)
            .components()
            .all(|part| matches!(part, Component::Normal(_))),
        toml::Value::Array(paths) => paths.iter().all(|path| {
            path.as_str().is_none_or(|path| {
                Path::new(path)
                    .components()
                    .all(|part| matches!(part, Component::Normal(_)))
            })
        }),
        _ => true,
    };
    keys.iter().all(|key| {
        let mut value = None;
        let mut table = Some(&table);
        for part in *key {
            value = table.and_then(|table| table.get(*part));
            table = value.and_then(toml::Value::as_table);
        }
        value.is_none_or(plain)
    })
}
