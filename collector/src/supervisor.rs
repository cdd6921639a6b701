//! Supervised tasks: every long-running task of the collector runs under a
//! name, and how it ended is accounted for.
//!
//! A task that panics, returns an error, or returns while the collector is
//! not shutting down has failed: the failure is logged with the task's name,
//! recorded for `/healthz` (503), and the shutdown token is cancelled so the
//! rest stops gracefully and the process exits non-zero. A task that ends
//! after shutdown was requested is normal.
//!
//! This module never restarts a task: a task's in-memory state (escalation
//! timers, rule engine) is rebuilt from the database at start, so the whole
//! process is restarted instead (systemd `Restart=`). It never maps a
//! failure to an HTTP status; `api` does.

use std::any::Any;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

/// Test hook: the named task panics as soon as it starts. Honoured in every
/// build (the end-to-end tests run the ordinary binary); setting it can do
/// no more than `kill`, and the collector warns at start when it is set.
pub const FAULT_ENV: &str = "STEWARD_FAULT_PANIC_TASK";

/// One supervised task that ended badly.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskFailure {
    pub task: &'static str,
    /// "panicked: …", "returned an error: …" or "stopped unexpectedly".
    pub reason: String,
}

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "task {} {}", self.task, self.reason)
    }
}

/// The failures recorded so far, in order; shared with `/healthz`.
#[derive(Debug, Clone, Default)]
pub struct TaskFailures(Arc<Mutex<Vec<TaskFailure>>>);

impl TaskFailures {
    pub fn list(&self) -> Vec<TaskFailure> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn is_empty(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_empty()
    }

    fn push(&self, failure: TaskFailure) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(failure);
    }
}

/// What a task's output says about how it ended.
pub trait TaskOutcome {
    fn into_result(self) -> Result<(), String>;
}

impl TaskOutcome for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: std::fmt::Display> TaskOutcome for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|error| error.to_string())
    }
}

/// A task's name and the watcher that accounts for its end.
type Watcher = (&'static str, JoinHandle<()>);

/// Spawns and watches the collector's named tasks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Supervisor {
    /// Cancelled on the first failure; also tells a normal end (after
    /// cancellation) from an unexpected one.
    shutdown: CancellationToken,
    failures: TaskFailures,
    /// One watcher per task, by name; a watcher ends once its task has ended
    /// and been accounted for.
    watchers: Arc<Mutex<Vec<Watcher>>>,
    /// The task [`FAULT_ENV`] names, if any.
    fault: Option<Arc<str>>,
}

impl Supervisor {
    /// A supervisor honouring [`FAULT_ENV`].
    pub fn new(shutdown: CancellationToken) -> Self {
        let fault = std::env::var(FAULT_ENV)
            .ok()
            .filter(|task| !task.is_empty());
        if let Some(task) = &fault {
            tracing::warn!(
                message = "Fault injection requested: this task will panic once started (a test hook).",
                task = %task,
                variable = FAULT_ENV,
            );
        }
        Self::with_fault(shutdown, fault.as_deref())
    }

    /// A supervisor that makes the task named `fault` panic (tests).
    pub fn with_fault(shutdown: CancellationToken, fault: Option<&str>) -> Self {
        Self {
            shutdown,
            failures: TaskFailures::default(),
            watchers: Arc::default(),
            fault: fault.map(Arc::from),
        }
    }

    /// The failures so far, for `/healthz`.
    pub fn failures(&self) -> TaskFailures {
        self.failures.clone()
    }

    pub fn has_failed(&self) -> bool {
        !self.failures.is_empty()
    }

    /// Spawns `task` as `name`.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future + Send + 'static,
        F::Output: TaskOutcome + Send + 'static,
    {
        let inject_fault = self.fault.as_deref() == Some(name);
        let handle = tokio::spawn(async move {
            if inject_fault {
                tokio::task::yield_now().await;
                panic!("fault injected by {FAULT_ENV}={name}");
            }
            task.await
        });
        self.watch(name, handle);
    }

    /// Watches a task spawned elsewhere (a module that owns its own spawn).
    pub fn watch<T>(&self, name: &'static str, task: JoinHandle<T>)
    where
        T: TaskOutcome + Send + 'static,
    {
        let this = self.clone();
        let watcher = tokio::spawn(async move {
            let ended = task.await;
            match classify(ended, this.shutdown.is_cancelled()) {
                None => tracing::debug!(message = "Task stopped.", task = %name),
                Some(reason) => this.fail(name, reason),
            }
        });
        self.watchers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((name, watcher));
    }

    /// Waits until every task has ended and been accounted for, or until
    /// `deadline`; returns the names of the tasks still running then.
    pub async fn join(&self, deadline: tokio::time::Instant) -> Vec<&'static str> {
        let mut still_running = Vec::new();
        loop {
            let watchers = std::mem::take(
                &mut *self
                    .watchers
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            );
            if watchers.is_empty() {
                return still_running;
            }
            for (name, watcher) in watchers {
                if tokio::time::timeout_at(deadline, watcher).await.is_err() {
                    still_running.push(name);
                }
            }
        }
    }

    fn fail(&self, task: &'static str, reason: String) {
        tracing::error!(
            message = "A collector task failed; shutting down.",
            task = %task,
            reason = %reason,
        );
        // Recorded before cancelling: whoever sees the cancellation also sees why.
        self.failures.push(TaskFailure { task, reason });
        self.shutdown.cancel();
    }
}

/// `None` for a normal end; otherwise why the task failed.
fn classify<T: TaskOutcome>(ended: Result<T, JoinError>, shutting_down: bool) -> Option<String> {
    match ended {
        Ok(output) => match output.into_result() {
            Err(error) => Some(format!("returned an error: {error}")),
            Ok(()) if shutting_down => None,
            Ok(()) => Some("stopped unexpectedly".into()),
        },
        Err(error) if error.is_panic() => Some(format!(
            "panicked: {}",
            panic_message(error.into_panic().as_ref())
        )),
        // Aborted: only shutdown aborts tasks.
        Err(_) if shutting_down => None,
        Err(_) => Some("stopped unexpectedly".into()),
    }
}

/// The message a panic was raised with, when it has one.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "(no message)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn far() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(60)
    }

    fn failure(task: &'static str, reason: &str) -> TaskFailure {
        TaskFailure {
            task,
            reason: reason.to_string(),
        }
    }

    #[tokio::test]
    async fn a_task_that_panics_errs_or_returns_early_fails_and_cancels_shutdown() {
        type Task = std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
        let cases: [(&'static str, Task, &str); 3] = [
            (
                "notify",
                Box::pin(async { panic!("boom") }),
                "panicked: boom",
            ),
            (
                "grpc",
                Box::pin(async { Err("address in use".to_string()) }),
                "returned an error: address in use",
            ),
            ("prune", Box::pin(async { Ok(()) }), "stopped unexpectedly"),
        ];
        for (name, task, reason) in cases {
            let shutdown = CancellationToken::new();
            let supervisor = Supervisor::with_fault(shutdown.clone(), None);
            supervisor.spawn(name, task);
            assert_eq!(supervisor.join(far()).await, [] as [&str; 0]);
            assert_eq!(supervisor.failures().list(), [failure(name, reason)]);
            assert!(shutdown.is_cancelled(), "{name}: shutdown not requested");
        }
    }

    #[tokio::test]
    async fn ending_after_shutdown_is_normal() {
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::with_fault(shutdown.clone(), None);
        let token = shutdown.clone();
        supervisor.spawn("http", async move {
            token.cancelled().await;
            Ok::<(), String>(())
        });
        shutdown.cancel();
        assert_eq!(supervisor.join(far()).await, [] as [&str; 0]);
        assert!(!supervisor.has_failed(), "{:?}", supervisor.failures());
    }

    #[tokio::test]
    async fn an_error_during_shutdown_is_still_a_failure() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let supervisor = Supervisor::with_fault(shutdown.clone(), None);
        supervisor.spawn("http", async { Err::<(), _>("flush failed") });
        supervisor.join(far()).await;
        assert_eq!(
            supervisor.failures().list(),
            [failure("http", "returned an error: flush failed")]
        );
    }

    #[tokio::test]
    async fn a_watched_task_that_panics_is_named() {
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::with_fault(shutdown.clone(), None);
        let spawned: JoinHandle<()> = tokio::spawn(async { panic!("{} went wrong", "it") });
        supervisor.watch("incidents", spawned);
        supervisor.join(far()).await;
        assert_eq!(
            supervisor.failures().list(),
            [failure("incidents", "panicked: it went wrong")]
        );
    }

    #[tokio::test]
    async fn the_fault_hook_panics_only_the_named_task() {
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::with_fault(shutdown.clone(), Some("notify"));
        let forever = |token: CancellationToken| async move { token.cancelled().await };
        supervisor.spawn("assets", forever(shutdown.clone()));
        supervisor.spawn("notify", forever(shutdown.clone()));
        assert_eq!(supervisor.join(far()).await, [] as [&str; 0]);
        assert_eq!(
            supervisor.failures().list(),
            [failure(
                "notify",
                "panicked: fault injected by STEWARD_FAULT_PANIC_TASK=notify"
            )]
        );
    }

    #[tokio::test]
    async fn join_names_a_task_that_ignores_shutdown() {
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::with_fault(shutdown.clone(), None);
        supervisor.spawn("stuck", std::future::pending::<()>());
        let token = shutdown.clone();
        supervisor.spawn("prune", async move { token.cancelled().await });
        shutdown.cancel();
        // "stuck" never ends; "prune" has the whole second to.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        assert_eq!(supervisor.join(deadline).await, ["stuck"]);
        assert!(!supervisor.has_failed());
    }
}
