//! The stable smoke of the fuzz targets: every file of every kept corpus
//! (`fuzz/corpus/<target>/`) through its target, so `cargo test --workspace`
//! exercises each target and keeps each found crash fixed without nightly
//! or `cargo fuzz`. A panic fails the test and names the file.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use steward_fuzz_targets::TARGETS;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(target)
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
    {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn every_corpus_file_runs_through_its_target_without_panicking() {
    for &(name, target) in TARGETS {
        let mut files = Vec::new();
        files_under(&corpus_dir(name), &mut files);
        assert!(!files.is_empty(), "corpus/{name} has no seeds");
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name} panicked on {}", file.display());
        }
    }
}

#[test]
fn every_target_has_a_corpus_and_a_libfuzzer_entry_point() {
    let fuzz_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for &(name, _) in TARGETS {
        assert!(corpus_dir(name).is_dir(), "missing fuzz/corpus/{name}/");
        let entry = fuzz_dir.join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&entry)
            .unwrap_or_else(|error| panic!("{}: {error}", entry.display()));
        assert!(
            text.contains(&format!("steward_fuzz_targets::{name}(")),
            "{} must call steward_fuzz_targets::{name}",
            entry.display()
        );
    }
}

/// The example configs among the seeds validate completely, so the config
/// targets start from inputs that reach the end of validation (the files
/// they name are in `fuzz/targets/files/`).
#[test]
fn example_config_seeds_pass_validation() {
    use steward_core::config_file::ConfigSource;
    use steward_fuzz_targets::config_path;

    let seed = |target: &str, file: &str| ConfigSource {
        path: config_path(file),
        text: std::fs::read_to_string(corpus_dir(target).join(file)).unwrap(),
    };
    steward_agent::AgentConfig::from_source(&seed("agent_config", "agent.toml")).unwrap();
    for file in [
        "collector.toml",
        "collector-full.toml",
        "loopback-plaintext.toml",
    ] {
        let config =
            steward_collector::CollectorConfig::from_source(&seed("collector_config", file))
                .unwrap();
        assert!(!config.rules.is_empty(), "{file}");
    }
}
