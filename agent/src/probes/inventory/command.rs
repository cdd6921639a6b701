//! The only place in the inventory that starts processes (`rpm`, `pacman`,
//! `system_profiler`, `pkgutil`, PowerShell).
//!
//! Blocking by design: the inventory runs on a blocking thread, off the
//! sample path. Every run has a deadline because a package database lock
//! (rpm) or a wedged WMI service (Windows) can otherwise hang it forever; on
//! the deadline the child is killed. `LC_ALL=C` keeps output parseable; stdin
//! is closed so nothing can wait for input.

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::InventoryError;

/// Long enough for `rpm -qa` on a few thousand packages and a cold PowerShell
/// start, short enough that a hung command does not stall the next round.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How much of stderr ends up in an error message.
const STDERR_LIMIT: usize = 512;

/// Runs `program args...` and returns its stdout (lossily decoded) if it
/// exits successfully within `timeout`.
pub(crate) fn run<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    timeout: Duration,
) -> Result<String, InventoryError> {
    let mut child = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| InventoryError::Spawn {
            program: program.to_string(),
            source,
        })?;

    // Drain both pipes on their own threads: a child that fills a pipe
    // nobody reads would block and look like a timeout.
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);

    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                // Best effort: the child may have exited in between.
                let _ = child.kill();
                let _ = child.wait();
                // The reader threads end once the pipes close; not joined so a
                // grandchild holding a pipe open cannot block us.
                return Err(InventoryError::TimedOut {
                    program: program.to_string(),
                    timeout,
                });
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(source) => {
                let _ = child.kill();
                return Err(InventoryError::Spawn {
                    program: program.to_string(),
                    source,
                });
            }
        }
    };

    let collect = |reader: Option<thread::JoinHandle<Vec<u8>>>| {
        reader
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default()
    };
    let stdout = collect(stdout);
    let stderr = collect(stderr);
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        let mut stderr = stderr.trim().to_string();
        if stderr.len() > STDERR_LIMIT {
            let cut = (0..=STDERR_LIMIT)
                .rev()
                .find(|&i| stderr.is_char_boundary(i))
                .unwrap_or(0);
            stderr.truncate(cut);
            stderr.push('…');
        }
        return Err(InventoryError::CommandFailed {
            program: program.to_string(),
            status: status.to_string(),
            stderr,
        });
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

fn drain<R: Read + Send + 'static>(mut pipe: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buffer = Vec::new();
        // A read error just ends the output early; the exit status decides.
        let _ = pipe.read_to_end(&mut buffer);
        buffer
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_stdout_of_a_successful_command() {
        let out = run(
            "sh",
            &["-c", "printf 'a\\tb\\n'; echo noise >&2"],
            DEFAULT_TIMEOUT,
        )
        .unwrap();
        assert_eq!(out, "a\tb\n");
    }

    #[test]
    fn runs_with_the_c_locale() {
        let out = run("sh", &["-c", "echo $LC_ALL"], DEFAULT_TIMEOUT).unwrap();
        assert_eq!(out.trim(), "C");
    }

    #[test]
    fn a_failing_command_reports_status_and_stderr() {
        let error = run("sh", &["-c", "echo broken db >&2; exit 3"], DEFAULT_TIMEOUT).unwrap_err();
        match error {
            InventoryError::CommandFailed { status, stderr, .. } => {
                assert!(status.contains('3'), "{status}");
                assert_eq!(stderr, "broken db");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let error = run("steward-no-such-program", &["x"], DEFAULT_TIMEOUT).unwrap_err();
        assert!(matches!(error, InventoryError::Spawn { .. }), "{error}");
    }

    #[test]
    fn a_hung_command_is_killed_at_the_deadline() {
        let start = Instant::now();
        let error = run("sleep", &["30"], Duration::from_millis(200)).unwrap_err();
        assert!(matches!(error, InventoryError::TimedOut { .. }), "{error}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn output_larger_than_a_pipe_buffer_does_not_deadlock() {
        let out = run(
            "sh",
            &["-c", "head -c 1000000 /dev/zero | tr '\\0' x"],
            DEFAULT_TIMEOUT,
        )
        .unwrap();
        assert_eq!(out.len(), 1_000_000);
    }
}
