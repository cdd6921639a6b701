//! Fault test: the collector's disk fills up. The database lives on a small
//! tmpfs; a filler file takes the rest. Nothing may be acknowledged that was
//! not committed, `/healthz` must say so, and ingest must resume by itself
//! when space returns, with every batch stored exactly once.
//!
//! Mounting needs root. Elsewhere the test says why and passes as skipped,
//! unless `STEWARD_REQUIRE_PRIVILEGED_TESTS=1` (set by `.ci/run`), which
//! turns the skip into a failure.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use steward_tests::{Collector, DEADLINE, http_request, poll};

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(path).map_err(|error| error.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|error| format!("cannot run mount: {error}"))?;
        if output.status.success() {
            Ok(Self(path.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// (min seq, max seq, rows) of the committed batches.
fn committed(database: &Path) -> (i64, i64, i64) {
    let connection =
        rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    connection
        .query_row(
            "SELECT coalesce(min(seq), 0), coalesce(max(seq), 0), count(*) FROM batches",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap()
}

/// Writes zeros into `path` until the file system refuses.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    let mut written = 0;
    while file.write_all(&block).is_ok() {
        written += block.len() as u64;
    }
    let _ = file.sync_all();
    written
}

#[test]
fn a_full_disk_stops_acknowledgements_turns_healthz_503_and_ingest_resumes_when_space_returns() {
    let mount_point = tempfile::tempdir().unwrap();
    let data = mount_point.path().join("data");
    let _tmpfs = match Tmpfs::mount(&data, "24m") {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            assert!(
                std::env::var("STEWARD_REQUIRE_PRIVILEGED_TESTS").is_err(),
                "cannot mount a tmpfs ({why}) but STEWARD_REQUIRE_PRIVILEGED_TESTS is set"
            );
            steward_tests::skipped(
                "disk-full test",
                &format!("mounting a tmpfs needs root ({why})"),
            );
            return;
        }
    };
    let database = data.join("steward.db");
    let collector = Collector::start_with(|text| {
        *text = text.replace(
            "sqlite = \"steward.db\"",
            &format!("sqlite = \"{}\"", database.display()),
        );
    });
    let agent = collector.start_agent("host", |_| {});
    poll(DEADLINE, "three committed batches", || {
        (committed(&database).2 >= 3).then_some(())
    });

    let filler = data.join("filler");
    let filled = fill(&filler);
    let healthz = poll(DEADLINE, "/healthz to report the store", || {
        let (status, body) = http_request(collector.http_addr, "GET", "/healthz", None, None);
        (status == 503).then_some(body)
    });
    assert!(healthz.contains("store-writer"), "{healthz}");
    assert!(healthz.contains("cannot commit"), "{healthz}");

    // While full, nothing more commits, and so nothing more is acknowledged:
    // the agent keeps its batches.
    let (_, stuck_at, rows_while_full) = committed(&database);
    poll(DEADLINE, "two more collection rounds while full", || {
        let collected = agent
            .log_text()
            .lines()
            .filter(|line| line.contains("Collected a batch."))
            .filter_map(|line| line.split("seq=").nth(1)?.trim().parse::<i64>().ok())
            .max()
            .unwrap_or(0);
        (collected >= stuck_at + 2).then_some(())
    });
    assert_eq!(
        committed(&database).2,
        rows_while_full,
        "nothing committed while full"
    );

    // Space returns: ingest resumes by itself and catches up.
    std::fs::remove_file(&filler).unwrap();
    poll(DEADLINE, "ingest to resume", || {
        (committed(&database).1 >= stuck_at + 2).then_some(())
    });
    poll(DEADLINE, "/healthz to recover", || {
        let (status, _) = http_request(collector.http_addr, "GET", "/healthz", None, None);
        (status == 200).then_some(())
    });
    let (min, max, rows) = committed(&database);
    assert_eq!(min, 1);
    assert_eq!(rows, max, "every batch 1..={max} stored exactly once");
    let integrity: String = rusqlite::Connection::open(&database)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    println!(
        "disk full: filler {filled} bytes; stuck at batch {stuck_at}; resumed to {max}, {rows} rows, none twice"
    );
}
