//! Starts the package-manager processes the backends need, and nothing else.
//!
//! A patch probe shares the host with the workloads it watches, so every
//! command runs at the lowest CPU priority (`nice -n 19`) and, on Linux, idle
//! I/O class (`ionice -c3`) when those tools exist; it gets no stdin and
//! `LC_ALL=C` so the output is the untranslated format the parsers expect.
//! Each child is `kill_on_drop`: when [`super::scan`] times out it drops the
//! future and the child dies with it instead of piling up.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::PatchError;

/// Runs commands for one scan; carries the scan's deadline so in-process work
/// can check it too.
#[derive(Debug, Clone)]
pub struct CommandRunner {
    deadline: Instant,
    low_priority: bool,
}

/// What a finished command produced. A non-zero exit is not an error by
/// itself: `dnf check-update` exits 100 when updates exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub program: String,
    /// `None` when the process was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    /// Turns an exit code outside `accepted` into [`PatchError::CommandFailed`].
    pub fn accept(self, accepted: &[i32]) -> Result<Self, PatchError> {
        match self.code {
            Some(code) if accepted.contains(&code) => Ok(self),
            code => Err(PatchError::CommandFailed {
                status: code.map_or_else(
                    || "killed by a signal".to_string(),
                    |c| format!("exit code {c}"),
                ),
                stderr: first_lines(&self.stderr, 5),
                program: self.program,
            }),
        }
    }
}

impl CommandRunner {
    /// A runner whose commands must all finish within `timeout` of now.
    pub fn new(timeout: Duration) -> Self {
        Self {
            deadline: Instant::now() + timeout,
            low_priority: true,
        }
    }

    /// Tests that compare against apt itself run it at normal priority, so a
    /// busy parallel test run does not starve it.
    #[cfg(test)]
    pub(crate) fn at_normal_priority(timeout: Duration) -> Self {
        Self {
            low_priority: false,
            ..Self::new(timeout)
        }
    }

    /// The instant by which the whole scan must be done.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Runs `program` with `args` and collects its output. The scan's timeout
    /// is enforced by the caller dropping this future ([`super::scan`]);
    /// `kill_on_drop` makes that kill the child.
    pub async fn run(&self, program: &str, args: &[&str]) -> Result<CommandOutput, PatchError> {
        let (executable, full_args) = self.command_line(program, args)?;
        let mut command = tokio::process::Command::new(&executable);
        command
            .args(&full_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("LC_ALL", "C")
            .env("LANG", "C")
            .kill_on_drop(true);
        #[cfg(windows)]
        {
            // CREATE_NO_WINDOW | BELOW_NORMAL_PRIORITY_CLASS: no console
            // flashing up on a desktop, and the Windows analogue of `nice`.
            command.creation_flags(0x0800_0000 | 0x0000_4000);
        }
        let output = command.output().await.map_err(|source| PatchError::Spawn {
            program: program.to_string(),
            source,
        })?;
        Ok(CommandOutput {
            program: program.to_string(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// The argv to execute: `program` resolved in `PATH` (so a missing tool is
    /// [`PatchError::ProgramNotFound`], not a `nice` error), wrapped in the
    /// priority-lowering tools that exist on this host.
    fn command_line(
        &self,
        program: &str,
        args: &[&str],
    ) -> Result<(PathBuf, Vec<OsString>), PatchError> {
        if !cfg!(unix) {
            return Ok((
                PathBuf::from(program),
                args.iter().map(OsString::from).collect(),
            ));
        }
        let resolved = find_program(program).ok_or_else(|| PatchError::ProgramNotFound {
            program: program.to_string(),
        })?;
        let mut argv: Vec<OsString> = Vec::new();
        if self.low_priority {
            if let Some(nice) = existing(&["/usr/bin/nice", "/bin/nice"]) {
                argv.extend([nice.into_os_string(), "-n".into(), "19".into()]);
            }
            if cfg!(target_os = "linux")
                && let Some(ionice) = existing(&["/usr/bin/ionice", "/bin/ionice"])
            {
                argv.extend([ionice.into_os_string(), "-c3".into()]);
            }
        }
        argv.push(resolved.into_os_string());
        argv.extend(args.iter().map(OsString::from));
        let executable = PathBuf::from(argv.remove(0));
        Ok((executable, argv))
    }
}

fn existing(candidates: &[&str]) -> Option<PathBuf> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
}

/// Looks `program` up like a shell would: as given when it contains a `/`,
/// else in `PATH`, then in the sbin directories a service's `PATH` often
/// lacks (`needs-restarting`, `softwareupdate` live there).
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn first_lines(text: &str, count: usize) -> String {
    text.lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty())
        .take(count)
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_a_command_and_reports_its_exit_code() {
        let runner = CommandRunner::new(Duration::from_secs(10));
        let output = runner
            .run("sh", &["-c", "echo out; echo err >&2; exit 100"])
            .await
            .unwrap();
        assert_eq!(output.code, Some(100));
        assert_eq!(output.stdout, "out\n");
        assert_eq!(output.stderr, "err\n");
        assert!(output.clone().accept(&[0, 100]).is_ok());
        let error = output.accept(&[0]).unwrap_err();
        assert!(
            matches!(&error, PatchError::CommandFailed { status, stderr, .. } if status == "exit code 100" && stderr == "err"),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn commands_run_at_lowest_priority_and_in_the_c_locale() {
        let runner = CommandRunner::new(Duration::from_secs(10));
        let output = runner
            .run("sh", &["-c", "nice; echo $LC_ALL"])
            .await
            .unwrap();
        let expected_nice = if Path::new("/usr/bin/nice").is_file() {
            "19"
        } else {
            "0"
        };
        assert_eq!(output.stdout, format!("{expected_nice}\nC\n"));
    }

    #[tokio::test]
    async fn a_missing_program_is_named_in_the_error() {
        let runner = CommandRunner::new(Duration::from_secs(10));
        let error = runner.run("steward-no-such-tool", &[]).await.unwrap_err();
        assert!(
            matches!(&error, PatchError::ProgramNotFound { program } if program == "steward-no-such-tool"),
            "{error:?}"
        );
    }

    /// Regression guard: a timed-out scan must not leave its child running.
    #[tokio::test]
    async fn dropping_the_run_future_kills_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let script = format!("sleep 1; touch {}", marker.display());
        let runner = CommandRunner::new(Duration::from_secs(10));
        let result = tokio::time::timeout(
            Duration::from_millis(200),
            runner.run("sh", &["-c", &script]),
        )
        .await;
        assert!(
            result.is_err(),
            "the command should still have been running"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "the child outlived the scan");
    }
}
